#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

mod config;
mod exec;
mod hooks;

pub use config::{DockerConfig, COMPOSE_PROJECT_LABEL, COMPOSE_SERVICE_LABEL, DEFAULT_SOCKET};
pub use exec::ContainerExec;
pub use hooks::{DockerHooks, Reporter};

#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod config;
mod exec;
mod hooks;

pub use config::{DockerConfig, COMPOSE_PROJECT_LABEL, COMPOSE_SERVICE_LABEL, DEFAULT_SOCKET};
pub use exec::{ContainerExec, DockerRuntime};
pub use hooks::{DockerHooks, Reporter};

/// Register the Docker [`ContainerRuntime`](amber_dr_core::tool::ContainerRuntime) with core, so
/// that a driver whose config names a container (Postgres's `via_container`) runs its tools
/// there through the Docker exec API. Call once at start, beside the drivers' `register`.
pub fn register_tool_runner() {
    amber_dr_core::tool::register_container_runtime(std::sync::Arc::new(DockerRuntime));
}

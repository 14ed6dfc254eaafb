#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod client;
mod component;
mod config;
mod drill;
mod error;
mod format;

pub use component::Etcd;
pub use config::EtcdConfig;

use std::sync::Arc;

use amber_dr_core::{Component, ComponentSpec, Registry, Result};

/// The driver kind.
pub const KIND: &str = "etcd";

/// Register the `etcd` driver.
pub fn register(registry: &mut Registry) {
    registry.register(KIND, factory);
}

fn factory(spec: &ComponentSpec) -> Result<Arc<dyn Component>> {
    let config: EtcdConfig = spec.parse()?;
    Ok(Arc::new(Etcd::new(spec.name.clone(), config)?))
}

#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

mod archive;
mod component;
mod config;
mod error;
mod foreign;

pub use component::Files;
pub use config::FilesConfig;

use std::sync::Arc;

use amber_dr_core::{Component, ComponentSpec, Registry, Result};

/// The driver kind.
pub const KIND: &str = "files";

/// Register the `files` driver.
pub fn register(registry: &mut Registry) {
    registry.register(KIND, factory);
}

fn factory(spec: &ComponentSpec) -> Result<Arc<dyn Component>> {
    let mut config: FilesConfig = spec.parse()?;
    config.path = spec.resolve_path(&config.path);
    Ok(Arc::new(Files::new(spec.name.clone(), config)))
}

#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod component;
mod config;
pub mod error;

pub use component::Files;
pub use config::{FilesConfig, FilesFormat};

use std::sync::Arc;

use amber_dr_core::{Component, ComponentSpec, Registry};

use crate::error::Result;

/// The driver kind.
pub const KIND: &str = "files";

/// The shell runbook's file this driver restores (`tar czf` of the uploads directory).
pub const RUNBOOK_FILE: &str = "uploads.tar.gz";

/// Register the `files` driver.
pub fn register(registry: &mut Registry) {
    registry.register(KIND, factory);
}

fn factory(spec: &ComponentSpec) -> Result<Arc<dyn Component>> {
    let mut config: FilesConfig = spec.parse()?;
    amber_dr_core::paths::check_not_empty(
        format!("{}: components.{}.path", spec.source, spec.name),
        &config.path,
    )?;
    config.path = spec.resolve_path(&config.path);
    config.config_dir = Some(spec.base_dir.clone());
    Ok(Arc::new(Files::new(spec.name.clone(), config)))
}

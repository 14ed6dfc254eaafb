#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod backup;
mod component;
mod config;
mod drill;
pub mod error;
mod index;
mod keys;
mod legacy;
mod restore;
pub mod s3;

pub use component::Minio;
pub use config::MinioConfig;

use std::sync::Arc;

use amber_dr_core::{Component, ComponentSpec, Registry, Result};

/// The driver kind.
pub const KIND: &str = "minio";

/// The shell runbook's file this driver restores with `legacy_data_dir` (`tar czf` of
/// MinIO's data volume).
pub const RUNBOOK_FILE: &str = "minio_data.tar.gz";

/// Register the `minio` driver.
pub fn register(registry: &mut Registry) {
    registry.register(KIND, factory);
}

fn factory(spec: &ComponentSpec) -> Result<Arc<dyn Component>> {
    let mut config: MinioConfig = spec.parse()?;
    config.legacy_data_dir = config.legacy_data_dir.map(|d| spec.resolve_path(d));
    Ok(Arc::new(Minio::new(spec.name.clone(), config)?))
}

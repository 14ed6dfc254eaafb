#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod binlog;
mod client;
mod component;
mod config;
mod error;
mod import;
mod pages;
mod storage;
mod version;

pub use component::Milvus;
pub use config::MilvusConfig;
pub use storage::MilvusStorageConfig;

use std::sync::Arc;

use amber_dr_core::{Component, ComponentSpec, Registry, Result};

/// The driver kind.
pub const KIND: &str = "milvus";

/// Register the `milvus` driver.
pub fn register(registry: &mut Registry) {
    registry.register(KIND, factory);
}

fn factory(spec: &ComponentSpec) -> Result<Arc<dyn Component>> {
    let config: MilvusConfig = spec.parse()?;
    Ok(Arc::new(Milvus::new(spec.name.clone(), config)?))
}

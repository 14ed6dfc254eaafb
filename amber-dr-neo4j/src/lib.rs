#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(test)]
extern crate self as amber_dr_neo4j;

mod component;
mod config;
mod drill;
mod error;
mod export;
mod keys;
mod legacy;
mod restore;
mod runbook;
mod tally;
pub mod value;

pub use component::Neo4j;
pub use config::Neo4jConfig;
pub use runbook::ReplayReport;

use std::sync::Arc;

use amber_dr_core::{Component, ComponentSpec, Registry, Result};

/// The driver kind.
pub const KIND: &str = "neo4j";

/// The shell runbook's file this driver restores (`apoc.export.cypher.all`).
pub const RUNBOOK_FILE: &str = "neo4j.cypher";

/// Register the `neo4j` driver.
pub fn register(registry: &mut Registry) {
    registry.register(KIND, factory);
}

fn factory(spec: &ComponentSpec) -> Result<Arc<dyn Component>> {
    let config: Neo4jConfig = spec.parse()?;
    Ok(Arc::new(Neo4j::new(spec.name.clone(), config)?))
}

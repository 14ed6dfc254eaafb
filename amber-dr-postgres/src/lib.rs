#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod backup;
mod catalog;
mod component;
mod config;
mod connect;
mod drill;
mod error;
mod keys;
mod legacy;
mod record;
mod restore;
mod roles;
mod scratch;
mod sequences;
mod stage;
mod toolcmd;
mod tools;
mod verify;

pub use component::Postgres;
pub use config::PostgresConfig;

use std::sync::Arc;

use amber_dr_core::{Component, ComponentSpec, Registry, Result};

/// The driver kind.
pub const KIND: &str = "postgres";

/// The shell runbook's file this driver restores (`pg_dump` as plain SQL).
pub const RUNBOOK_FILE: &str = "postgres.sql";

/// Register the `postgres` driver.
pub fn register(registry: &mut Registry) {
    registry.register(KIND, factory);
}

fn factory(spec: &ComponentSpec) -> Result<Arc<dyn Component>> {
    let mut config: PostgresConfig = spec.parse()?;
    config.bin_dir = config.bin_dir.map(|d| spec.resolve_path(d));
    config.temp_dir = config.temp_dir.map(|d| spec.resolve_path(d));
    Ok(Arc::new(Postgres::new(spec.name.clone(), config)?))
}

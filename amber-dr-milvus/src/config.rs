//! Configuration of the `milvus` driver.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::storage::MilvusStorageConfig;

/// `[components.NAME]` with `kind = "milvus"`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MilvusConfig {
    /// gRPC endpoint of the Milvus proxy, e.g. `http://127.0.0.1:19530`.
    pub endpoint: String,
    /// Databases to back up. Default: every database on the server (`ListDatabases`; just
    /// `default` on a server that has no databases, before Milvus 2.2.9).
    #[serde(default)]
    pub databases: Option<Vec<String>>,
    /// Collections to back up (in every selected database). Default: all of them.
    #[serde(default)]
    pub collections: Option<Vec<String>>,
    /// Entities per page when exporting, which are also the insert batches on restore.
    /// Pages shrink for wide rows (large vectors) to stay under 8 MiB. Default 1000.
    #[serde(default = "default_page_rows")]
    pub page_rows: usize,
    /// Insert calls in flight at once on restore (the next pages are read and decoded
    /// meanwhile). Default 2.
    #[serde(default = "default_insert_concurrency")]
    pub insert_concurrency: usize,
    /// Seconds to wait for a connection and for each call. Default 30.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Seconds to wait for a restored collection to load. Default 600.
    #[serde(default = "default_load_timeout")]
    pub load_timeout_secs: u64,
    /// Components that must not be restored in the same run as this one (e.g. an etcd component
    /// whose prefix covers Milvus's root path). Refused unless forced.
    #[serde(default)]
    pub conflicts_with: Vec<String>,
    /// Milvus's bucket. With it, collections are backed up as Milvus's own segment files and
    /// restored through its bulk import (any collection state; auto-id kept); without it,
    /// entities are exported with queries (see the crate docs).
    #[serde(default)]
    pub storage: Option<MilvusStorageConfig>,
}

fn default_page_rows() -> usize {
    1000
}
fn default_insert_concurrency() -> usize {
    2
}
fn default_timeout() -> u64 {
    30
}
fn default_load_timeout() -> u64 {
    600
}

impl MilvusConfig {
    /// A config for `endpoint`, everything else default.
    pub fn new(endpoint: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            databases: None,
            collections: None,
            page_rows: default_page_rows(),
            insert_concurrency: default_insert_concurrency(),
            timeout_secs: default_timeout(),
            load_timeout_secs: default_load_timeout(),
            conflicts_with: Vec::new(),
            storage: None,
        }
    }

    /// Only these collections.
    pub fn collections(mut self, c: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.collections = Some(c.into_iter().map(Into::into).collect());
        self
    }

    /// Back up through Milvus's bucket (segment files).
    pub fn storage(mut self, s: MilvusStorageConfig) -> Self {
        self.storage = Some(s);
        self
    }

    pub(crate) fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs.max(1))
    }
}

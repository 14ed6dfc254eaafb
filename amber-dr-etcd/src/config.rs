//! Configuration of the `etcd` driver.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[components.NAME]` with `kind = "etcd"`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdConfig {
    /// Client URLs of the cluster's members, e.g. `["http://127.0.0.1:2379"]` (the v3 JSON
    /// gateway is used). Requests go to the first that answers; the next is tried when one
    /// cannot be reached.
    pub endpoints: Vec<String>,
    /// Only keys starting with these bytes (UTF-8) are backed up, deleted and restored.
    /// Required; `""` means the whole keyspace.
    pub prefix: String,
    /// Keys per range request while reading (an upper bound: pages shrink when values are
    /// large, see the README). Default 1000.
    #[serde(default = "default_page_keys")]
    pub page_keys: usize,
    /// Operations per write transaction on restore (etcd's `--max-txn-ops` defaults to 128).
    /// Default 128.
    #[serde(default = "default_batch_ops")]
    pub batch_ops: usize,
    /// Bytes of keys and values per write transaction on restore (etcd's `--max-request-bytes`
    /// defaults to 1.5 MiB). Default 1 MiB; a larger single value is written alone.
    #[serde(default = "default_batch_bytes")]
    pub batch_bytes: usize,
    /// Seconds to wait for a connection and for each request. Default 10.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Also store etcd's own snapshot of the whole member database (maintenance API
    /// `Snapshot`: every key, not only the prefix, plus etcd's internal state) as a second
    /// artifact, `member.snapshot.db`, for operators who rebuild a member from it with
    /// `etcdutl snapshot restore`. amber-dr's restore never uses it. Default false.
    #[serde(default)]
    pub raw_snapshot: bool,
    /// Seconds the raw snapshot's transfer may take. Default 600.
    #[serde(default = "default_raw_snapshot_timeout")]
    pub raw_snapshot_timeout_secs: u64,
    /// Components that must be restored in the same run as this one (e.g. the object-store
    /// bucket whose content this prefix describes). Restoring this one without them is
    /// refused unless forced.
    #[serde(default)]
    pub restore_with: Vec<String>,
    /// Components that must not be restored in the same run as this one (e.g. a logical
    /// Milvus backup, which recreates this prefix's content itself). Refused unless forced.
    #[serde(default)]
    pub conflicts_with: Vec<String>,
}

fn default_page_keys() -> usize {
    1000
}
fn default_batch_ops() -> usize {
    128
}
fn default_batch_bytes() -> usize {
    1024 * 1024
}
fn default_raw_snapshot_timeout() -> u64 {
    600
}
fn default_timeout() -> u64 {
    10
}

impl EtcdConfig {
    /// A config for `endpoint` and `prefix`, everything else default.
    pub fn new(endpoint: impl Into<String>, prefix: impl Into<String>) -> Self {
        Self {
            endpoints: vec![endpoint.into()],
            prefix: prefix.into(),
            page_keys: default_page_keys(),
            batch_ops: default_batch_ops(),
            batch_bytes: default_batch_bytes(),
            timeout_secs: default_timeout(),
            raw_snapshot: false,
            raw_snapshot_timeout_secs: default_raw_snapshot_timeout(),
            restore_with: Vec::new(),
            conflicts_with: Vec::new(),
        }
    }

    pub(crate) fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs.max(1))
    }
}

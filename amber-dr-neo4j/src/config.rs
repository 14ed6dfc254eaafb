//! Configuration of the `neo4j` driver.

use std::time::Duration;

use amber_dr_core::Secret;
use serde::{Deserialize, Serialize};

/// `[components.NAME]` with `kind = "neo4j"`.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Neo4jConfig {
    /// Bolt address, `bolt://host:7687` (or `neo4j://`, taken as a direct connection).
    /// TLS is not supported yet: use a local or tunnelled port.
    pub uri: String,
    /// User name. Default `neo4j`.
    #[serde(default = "default_user")]
    pub user: String,
    /// Password.
    pub password: Secret,
    /// Database to back up and restore. Default `neo4j`.
    #[serde(default = "default_database")]
    pub database: String,
    /// Records fetched per round trip while exporting (Bolt PULL size). Default 10000.
    #[serde(default = "default_page_size")]
    pub page_size: usize,
    /// Nodes or relationships created per transaction on restore; also the batch size when
    /// emptying the database. Default 5000.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Seconds to wait for a connection. Default 10.
    #[serde(default = "default_timeout")]
    pub connect_timeout_secs: u64,
}

fn default_user() -> String {
    "neo4j".into()
}
fn default_database() -> String {
    "neo4j".into()
}
fn default_page_size() -> usize {
    10_000
}
fn default_batch_size() -> usize {
    5_000
}
fn default_timeout() -> u64 {
    10
}

impl Neo4jConfig {
    /// A config for `uri` with user `neo4j` and `password`, everything else default.
    pub fn new(uri: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            uri: uri.into(),
            user: default_user(),
            password: Secret::new(password),
            database: default_database(),
            page_size: default_page_size(),
            batch_size: default_batch_size(),
            connect_timeout_secs: default_timeout(),
        }
    }

    /// Use this database.
    pub fn database(mut self, db: impl Into<String>) -> Self {
        self.database = db.into();
        self
    }

    /// Use this user.
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = user.into();
        self
    }

    pub(crate) fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout_secs.max(1))
    }
}

impl std::fmt::Debug for Neo4jConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Neo4jConfig")
            .field("uri", &amber_dr_core::redact::redact(&self.uri))
            .field("user", &self.user)
            .field("password", &self.password)
            .field("database", &self.database)
            .field("page_size", &self.page_size)
            .field("batch_size", &self.batch_size)
            .field("connect_timeout_secs", &self.connect_timeout_secs)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_never_shown() {
        let c = Neo4jConfig::new("bolt://db:7687", "s3cret");
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("s3cret"), "{dbg}");
    }
}

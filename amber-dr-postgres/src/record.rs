//! What a snapshot's record keeps: per database, its dump artifact, the exported snapshot it
//! was taken in, its properties and exact counts.

use serde::{Deserialize, Serialize};

use crate::catalog::{Counts, DbInfo, DbProps};

/// The artifact of `pg_dumpall --globals-only` (roles and tablespaces).
pub(crate) const GLOBALS: &str = "globals.sql";

/// One database of a snapshot.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct DbRecord {
    pub(crate) info: DbInfo,
    /// Artifact name of its `pg_dump -Fc` dump.
    pub(crate) artifact: String,
    /// The exported snapshot the dump and the counts were taken in.
    pub(crate) snapshot: String,
    /// WAL position when the snapshot was taken (primary servers).
    pub(crate) wal_lsn: Option<String>,
    pub(crate) props: DbProps,
    pub(crate) counts: Counts,
    /// The sequences of `counts` are the positions the dump holds (read from its TOC); older
    /// records have the positions seen during the dump, which a restore only warns about.
    #[serde(default)]
    pub(crate) sequences_dumped: bool,
}

/// What the record keeps to restore and compare.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Details {
    pub(crate) server_version: String,
    pub(crate) tools_version: String,
    pub(crate) globals: Option<String>,
    pub(crate) databases: Vec<DbRecord>,
}

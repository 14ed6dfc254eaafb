//! The manifest: the one JSON document that describes a backup.
//!
//! A backup is complete if and only if its manifest exists and says `"status": "complete"`.
//! The manifest is written last. Its `format_version` is checked before anything else is read.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::{Error, Result};

/// The manifest format this version of amber-dr writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// The state of a whole backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackupStatus {
    /// Every selected component succeeded: the backup can be restored.
    Complete,
    /// At least one selected component failed; the others' records are kept for diagnosis.
    Failed,
}

/// Why a backup was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum BackupPurpose {
    /// An ordinary backup (`amber-dr backup`).
    #[default]
    Backup,
    /// The state of the components just before a restore overwrote them.
    Safety,
}

/// The state of one component within a backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ComponentStatus {
    /// Snapshot taken and every artifact written.
    Ok,
    /// The snapshot failed; `error` says why.
    Failed,
}

/// The manifest of one backup (`<id>/manifest.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Manifest format version; always [`FORMAT_VERSION`] when written by this tool.
    pub format_version: u32,
    /// The backup id (`YYYYMMDD_HHMMSS`, maybe with a `_N` suffix).
    pub id: String,
    /// Complete or failed.
    pub status: BackupStatus,
    /// Ordinary or safety backup.
    #[serde(default)]
    pub purpose: BackupPurpose,
    /// The amber-dr version that wrote it.
    pub tool_version: String,
    /// Host name of the machine that took it.
    pub host: String,
    /// When the backup started (UTC).
    pub started_at: DateTime<Utc>,
    /// When the manifest was written (UTC).
    pub finished_at: DateTime<Utc>,
    /// Free-form tags (`backup --tag`).
    #[serde(default)]
    pub tags: Vec<String>,
    /// One record per selected component, by component name.
    pub components: BTreeMap<String, ComponentRecord>,
    /// True when only the public part of a sealed manifest could be read (a host without the
    /// private key): host, tags, statistics and details are absent.
    #[serde(skip)]
    pub sealed: bool,
    /// With S3 Object Lock: every object of the backup is retained until then (`prune` does
    /// not delete it earlier).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locked_until: Option<DateTime<Utc>>,
    /// The backup's recovery point across its components: the earliest and latest cut and
    /// how the writes between them were handled (absent in backups of older versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cut: Option<CutSummary>,
    /// The declared `[[references]]` checked against this backup's content when it was taken.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<crate::references::ReferenceCheck>,
}

/// The cuts of a backup's components taken together (see docs/architecture.md, "Cuts").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CutSummary {
    /// The earliest component cut.
    pub earliest: DateTime<Utc>,
    /// The latest component cut.
    pub latest: DateTime<Utc>,
    /// `latest - earliest`, in milliseconds: how far apart the stores' states may be.
    pub skew_ms: u64,
    /// Whether the application could write between the cuts.
    pub class: ConsistencyClass,
}

/// How consistent a backup's components are with each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConsistencyClass {
    /// Writes were paused (run hooks, e.g. `[docker] pause_during_backup`) from before the
    /// first cut until every component reached its cut: the stores agree exactly.
    Quiesced,
    /// The application kept writing: each store is consistent in itself, and the stores
    /// differ by at most the writes made during the skew.
    CrashConsistent,
}

impl CutSummary {
    /// The summary of `records`' cuts (their `consistency.cut_at`), if any has one.
    pub fn of<'a>(
        records: impl IntoIterator<Item = &'a ComponentRecord>,
        quiesced: bool,
    ) -> Option<Self> {
        let cuts: Vec<DateTime<Utc>> = records
            .into_iter()
            .filter(|r| r.is_ok())
            .filter_map(ComponentRecord::cut_at)
            .collect();
        let earliest = *cuts.iter().min()?;
        let latest = *cuts.iter().max()?;
        Some(Self {
            earliest,
            latest,
            skew_ms: u64::try_from((latest - earliest).num_milliseconds()).unwrap_or(0),
            class: if quiesced {
                ConsistencyClass::Quiesced
            } else {
                ConsistencyClass::CrashConsistent
            },
        })
    }
}

impl Manifest {
    /// Parse a manifest, checking `format_version` before anything else.
    pub fn from_json(path: &str, bytes: &[u8]) -> Result<Self> {
        // A manifest that is not JSON at all is damage (verify exits 3); one of an unknown
        // version is not.
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| Error::Corrupt {
                artifact: path.to_string(),
                message: format!("the manifest is not valid JSON: {e}"),
            })?;
        let version = value
            .get("format_version")
            .and_then(|v| v.as_u64())
            .ok_or_else(|| Error::Manifest {
                path: path.to_string(),
                message: "no `format_version`: not an amber-dr manifest".into(),
            })?;
        if version != u64::from(FORMAT_VERSION) {
            return Err(Error::Manifest {
                path: path.to_string(),
                message: format!(
                    "format version {version} is not supported (this amber-dr {} reads version {FORMAT_VERSION}){}",
                    env!("CARGO_PKG_VERSION"),
                    if version > u64::from(FORMAT_VERSION) { "; upgrade amber-dr" } else { "" }
                ),
            });
        }
        serde_json::from_value(value).map_err(|e| Error::Manifest {
            path: path.to_string(),
            message: format!("invalid content: {e}"),
        })
    }

    /// Serialise as pretty JSON.
    pub fn to_json(&self) -> Vec<u8> {
        // Serialising plain data structures to JSON cannot fail.
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// [`Manifest::to_json`] with the free-text fields that can embed a server's or a tool's
    /// words (each component's `error` and `warnings`) redacted (see [`crate::redact`]): what
    /// is written to the repository. Data the restore reads (details, statistics) is kept as
    /// it is.
    pub fn to_redacted_json(&self) -> Vec<u8> {
        let mut m = self.clone();
        for rec in m.components.values_mut() {
            rec.error = rec.error.as_deref().map(crate::redact::redact);
            for w in &mut rec.warnings {
                *w = crate::redact::redact(w);
            }
        }
        m.to_json()
    }

    /// Total stored bytes of every artifact.
    pub fn stored_size(&self) -> u64 {
        self.components
            .values()
            .flat_map(|c| c.artifacts.iter())
            .map(|a| a.stored_size)
            .sum()
    }

    /// True if the backup is complete.
    pub fn is_complete(&self) -> bool {
        self.status == BackupStatus::Complete
    }
}

/// One stored artifact: a zstd-compressed stream in the repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactRecord {
    /// Name within the component (e.g. `data.tar`).
    pub name: String,
    /// Path relative to the repository root (`<id>/<component>/<name>.zst`).
    pub path: String,
    /// Uncompressed size in bytes.
    pub size: u64,
    /// Stored (compressed) size in bytes.
    pub stored_size: u64,
    /// Hex SHA-256 of the stored bytes.
    pub sha256: String,
    /// Compression of the stored bytes (`zstd`).
    pub compression: String,
    /// Encryption of the stored bytes: absent for plain artifacts, `amber-dr-stream-v1`
    /// for sealed ones (see `docs/repository-format.md`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<String>,
}

/// A component's section of the manifest.
///
/// The runner fills in identity, timing and status; the driver fills in artifacts, server
/// version, statistics, consistency markers and its own `details`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ComponentRecord {
    /// Driver kind (e.g. `files`).
    pub kind: String,
    /// Component name from the config.
    pub name: String,
    /// Ok or failed; absent while the driver is still building the record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ComponentStatus>,
    /// The error that failed the snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Server version (or tool version) the snapshot was taken from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_version: Option<String>,
    /// When the component's snapshot started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    /// When it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// The artifacts written.
    #[serde(default)]
    pub artifacts: Vec<ArtifactRecord>,
    /// Counts that verify and restore compare against (rows per table, files, bytes, ...).
    #[serde(default)]
    pub stats: BTreeMap<String, serde_json::Value>,
    /// Consistency markers (snapshot name, LSN, revision, transaction ids, ...).
    #[serde(default)]
    pub consistency: BTreeMap<String, serde_json::Value>,
    /// Things the operator should know (e.g. a file changed while it was read).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Driver-specific data needed to restore (typed by the driver, see [`Self::details`]).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub details: serde_json::Value,
}

impl ComponentRecord {
    /// The key of [`Self::consistency`] that holds the component's cut (RFC 3339, UTC).
    pub const CUT_AT: &'static str = "cut_at";

    /// When the component's snapshot was cut: the moment from which the store's writes no
    /// longer changed what it holds (its consistent point).
    pub fn cut_at(&self) -> Option<DateTime<Utc>> {
        self.consistency
            .get(Self::CUT_AT)
            .and_then(serde_json::Value::as_str)
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.with_timezone(&Utc))
    }

    /// A new, empty record for a component.
    pub fn new(kind: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            name: name.into(),
            ..Default::default()
        }
    }

    /// Find an artifact by name.
    pub fn artifact(&self, name: &str) -> Result<&ArtifactRecord> {
        self.artifacts
            .iter()
            .find(|a| a.name == name)
            .ok_or_else(|| Error::Manifest {
                path: format!("components.{}", self.name),
                message: format!("no artifact named `{name}` in the record"),
            })
    }

    /// Set a statistic.
    pub fn set_stat(&mut self, key: impl Into<String>, value: impl Serialize) {
        self.stats.insert(
            key.into(),
            serde_json::to_value(value).unwrap_or(serde_json::Value::Null),
        );
    }

    /// Read a statistic as an integer.
    pub fn stat_u64(&self, key: &str) -> Option<u64> {
        self.stats.get(key).and_then(|v| v.as_u64())
    }

    /// Store the driver's typed details.
    pub fn set_details<T: Serialize>(&mut self, details: &T) -> Result<()> {
        self.details = serde_json::to_value(details)
            .map_err(|e| Error::Other(format!("cannot serialise details of {}: {e}", self.name)))?;
        Ok(())
    }

    /// Read the driver's typed details.
    pub fn details<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_value(self.details.clone()).map_err(|e| Error::Manifest {
            path: format!("components.{}.details", self.name),
            message: format!("cannot be read by the {} driver: {e}", self.kind),
        })
    }

    /// True if the snapshot succeeded.
    pub fn is_ok(&self) -> bool {
        self.status == Some(ComponentStatus::Ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            format_version: FORMAT_VERSION,
            id: "20260101_000000".into(),
            status: BackupStatus::Complete,
            purpose: BackupPurpose::Backup,
            tool_version: "0.1.0".into(),
            host: "h".into(),
            started_at: Utc::now(),
            finished_at: Utc::now(),
            tags: vec![],
            components: BTreeMap::new(),
            sealed: false,
            locked_until: None,
            cut: None,
            references: Vec::new(),
        }
    }

    #[test]
    fn roundtrip() {
        let m = sample();
        let back = Manifest::from_json("m", &m.to_json()).expect("parse");
        assert_eq!(back.id, m.id);
    }

    #[test]
    fn newer_format_is_refused_before_content_is_read() {
        // Content that would not parse as version 1 must not matter: the version is checked first.
        let json = br#"{"format_version": 2, "something": "new"}"#;
        let err = Manifest::from_json("x/manifest.json", json).expect_err("must refuse");
        let msg = err.to_string();
        assert!(msg.contains("format version 2"), "{msg}");
        assert!(msg.contains("upgrade"), "{msg}");
    }

    #[test]
    fn missing_version_is_refused() {
        let err = Manifest::from_json("m", br#"{"id": "x"}"#).expect_err("must refuse");
        assert!(err.to_string().contains("format_version"));
    }
}

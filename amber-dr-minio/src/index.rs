//! The index artifact: one JSON line per object, and the bucket list of a backup.

use std::collections::BTreeMap;

use amber_dr_core::{ArtifactReader, Error, Progress, Repository, Result};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};

use crate::s3::ObjectHeaders;

/// The index artifact's name.
pub(crate) const INDEX: &str = "objects.jsonl";
/// The blob references artifact's name (read by `prune`'s mark and sweep).
pub(crate) const REFS: &str = "objects.blobrefs";

/// One object of a backup: where it was, what it looked like, and the blob holding its body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Entry {
    pub bucket: String,
    pub key: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// As the listing reported it (ISO 8601).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
    #[serde(flatten)]
    pub headers: Headers,
    /// Hex SHA-256 of the body: the blob's name.
    pub sha256: String,
}

/// [`ObjectHeaders`] as stored in the index.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Headers {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_disposition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_encoding: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_language: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

impl From<ObjectHeaders> for Headers {
    fn from(h: ObjectHeaders) -> Self {
        Self {
            content_type: h.content_type,
            cache_control: h.cache_control,
            content_disposition: h.content_disposition,
            content_encoding: h.content_encoding,
            content_language: h.content_language,
            metadata: h.metadata,
        }
    }
}

impl From<&Headers> for ObjectHeaders {
    fn from(h: &Headers) -> Self {
        ObjectHeaders {
            content_type: h.content_type.clone(),
            cache_control: h.cache_control.clone(),
            content_disposition: h.content_disposition.clone(),
            content_encoding: h.content_encoding.clone(),
            content_language: h.content_language.clone(),
            metadata: h.metadata.clone(),
        }
    }
}

/// One bucket of a backup (empty buckets have no index line, so they are listed here).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct BucketStat {
    pub name: String,
    pub objects: u64,
    pub bytes: u64,
}

/// The driver's `details` in the manifest.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Details {
    pub endpoint: String,
    pub buckets: Vec<BucketStat>,
    /// Configured buckets that did not exist (safety snapshots only): restoring this backup
    /// removes them, so that it brings back exactly the state it saw.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub absent: Vec<String>,
}

pub(crate) type EntryLines = Lines<BufReader<ArtifactReader>>;

pub(crate) async fn open_lines(
    repo: &Repository,
    art: &amber_dr_core::ArtifactRecord,
) -> Result<EntryLines> {
    Ok(BufReader::new(repo.open_artifact(art, Progress::none()).await?).lines())
}

/// The next entry of an index; the artifact's checks run when it reaches its end.
pub(crate) async fn next_entry(lines: &mut EntryLines, path: &str) -> Result<Option<Entry>> {
    loop {
        let Some(line) = lines
            .next_line()
            .await
            .map_err(|e| Error::from_io("read", path, e))?
        else {
            return Ok(None);
        };
        if line.trim().is_empty() {
            continue;
        }
        return serde_json::from_str(&line)
            .map(Some)
            .map_err(|e| Error::Corrupt {
                artifact: path.to_string(),
                message: format!("an index line does not decode: {e}"),
            });
    }
}

//! The index artifact of a chunked directory backup: one JSON line per entry (directory,
//! file, symlink), in walk order (depth first, names sorted bytewise — the order of
//! [`Path`]'s comparison), so that two indexes can be merged in one pass.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};

use crate::archive::tree::MTime;
use crate::{ArtifactReader, ArtifactRecord, Error, Progress, Repository, Result};

/// The index artifact.
pub(crate) const INDEX: &str = "tree.jsonl";
/// The blobs the index references, one hex SHA-256 a line (read by `prune`).
pub(crate) const REFS: &str = "tree.blobrefs";
/// The `format` of the record's details.
pub(crate) const FORMAT: &str = "chunked-v1";

/// A slice of a blob: `[hex sha256, blob length, offset, length]`. A chunk of a large file is
/// a whole blob (offset 0, its length); a small file is a slice of a pack blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Piece(pub String, pub u64, pub u64, pub u64);

/// One entry of the tree.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Entry {
    /// Path relative to the root, if valid UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p: Option<String>,
    /// Path relative to the root as hex bytes, if not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub px: Option<String>,
    /// `f` file, `d` directory, `l` symlink.
    pub t: String,
    /// Mode bits (07777).
    #[serde(default)]
    pub m: u32,
    #[serde(default)]
    pub u: u32,
    #[serde(default)]
    pub g: u32,
    /// mtime, nanoseconds.
    pub mt: MTime,
    /// ctime and inode of a file (to find it unchanged next time).
    #[serde(default, skip_serializing_if = "is_zero_time")]
    pub ct: MTime,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ino: u64,
    /// File length: the bytes read, which are the bytes stored.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub s: u64,
    /// Symlink target (UTF-8 or hex bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub l: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lx: Option<String>,
    /// The file's content, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub c: Vec<Piece>,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}
fn is_zero_time(v: &MTime) -> bool {
    *v == MTime::default()
}

/// Bytes as (UTF-8 text, hex).
pub(crate) fn encode(b: &[u8]) -> (Option<String>, Option<String>) {
    match std::str::from_utf8(b) {
        Ok(s) => (Some(s.to_string()), None),
        Err(_) => (None, Some(hex::encode(b))),
    }
}

fn decode(text: &Option<String>, hexed: &Option<String>) -> std::result::Result<Vec<u8>, String> {
    match (text, hexed) {
        (Some(s), None) => Ok(s.as_bytes().to_vec()),
        (None, Some(h)) => hex::decode(h).map_err(|e| format!("bad hex: {e}")),
        _ => Err("exactly one of the text and hex forms must be given".into()),
    }
}

impl Entry {
    /// Set the path.
    pub(crate) fn set_path(&mut self, rel: &Path) {
        (self.p, self.px) = encode(rel.as_os_str().as_bytes());
    }
    /// The raw path bytes.
    pub(crate) fn path_bytes(&self) -> std::result::Result<Vec<u8>, String> {
        decode(&self.p, &self.px)
    }
    /// The raw symlink target.
    pub(crate) fn link_bytes(&self) -> std::result::Result<Vec<u8>, String> {
        decode(&self.l, &self.lx)
    }
}

/// Compare an entry's path with `rel` in walk order; an undecodable path sorts first.
pub(crate) fn cmp_path(e: &Entry, rel: &Path) -> std::cmp::Ordering {
    match e.path_bytes() {
        Ok(b) => Path::new(OsStr::from_bytes(&b)).cmp(rel),
        Err(_) => std::cmp::Ordering::Less,
    }
}

/// An index read line by line (never whole); its length and hash are checked at its end.
pub(crate) struct IndexReader {
    lines: Lines<BufReader<ArtifactReader>>,
    path: String,
}

impl IndexReader {
    /// Open `art` of `repo`.
    pub(crate) async fn open(repo: &Repository, art: &ArtifactRecord) -> Result<Self> {
        Self::from_reader(repo.open_artifact(art, Progress::none()).await?, &art.path)
    }

    /// Read an index from an opened artifact.
    pub(crate) fn from_reader(r: ArtifactReader, path: &str) -> Result<Self> {
        Ok(Self {
            lines: BufReader::with_capacity(256 * 1024, r).lines(),
            path: path.to_string(),
        })
    }

    /// The next entry, or `None` at the end.
    pub(crate) async fn next(&mut self) -> Result<Option<Entry>> {
        loop {
            let Some(line) = self
                .lines
                .next_line()
                .await
                .map_err(|e| Error::from_io("read", &self.path, e))?
            else {
                return Ok(None);
            };
            if line.trim().is_empty() {
                continue;
            }
            return serde_json::from_str(&line)
                .map(Some)
                .map_err(|e| Error::Corrupt {
                    artifact: self.path.clone(),
                    message: format!("an index line cannot be decoded: {e}"),
                });
        }
    }
}

//! Content-addressed blobs shared by every backup of a repository.
//!
//! A driver that stores many independent items (S3 objects) writes each body once, under the
//! SHA-256 of its content: `blobs/<first two hex digits>/<sha256>.zst` (zstd, like artifacts).
//! A body already in the repository is never stored again, in this backup or any later one.
//!
//! Which blobs are still needed is declared by the backups themselves: a component lists the
//! hashes it references, one per line, in an artifact whose name ends with
//! [`BLOB_REFS_SUFFIX`]. `prune` (under the repository lock) reads those of every remaining
//! backup and deletes the blobs no one references (mark and sweep).
//!
//! Two ways in and out, one format: [`Repository::write_blob`] / [`Repository::open_blob`]
//! stream a body of any size; [`Repository::put_blob`] / [`Repository::read_blob`] take and
//! return a small body (up to [`SMALL_BLOB`]) whole, with one write or read of the repository
//! and no staging object. Either way a blob is one or more zstd frames with content checksums,
//! and either reader reads what either writer wrote.

use std::collections::HashSet;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncWrite, BufReader};

use crate::artifact::{ArtifactReader, ArtifactWriter};
use crate::manifest::ArtifactRecord;
use crate::progress::Progress;
use crate::repository::Repository;
use crate::{Error, Result};

/// Artifacts whose name ends with this list the blobs a backup references (one hex SHA-256 a line).
pub const BLOB_REFS_SUFFIX: &str = ".blobrefs";

/// Bodies up to this size are best stored with [`Repository::put_blob`] and read back with
/// [`Repository::read_blob`] (held whole in memory); larger ones are streamed.
pub const SMALL_BLOB: u64 = 1024 * 1024;

const BLOBS: &str = "blobs";
const TMP: &str = "blobs/tmp";

/// A stored blob: the SHA-256 and length of its content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRecord {
    /// Hex SHA-256 of the content (also its name).
    pub sha256: String,
    /// Content length in bytes.
    pub size: u64,
    /// True if this write found the blob already stored (nothing new was kept).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deduplicated: bool,
}

/// Where the blob of content hash `sha256` lives.
pub fn blob_path(sha256: &str) -> String {
    let prefix = sha256.get(..2).unwrap_or("00");
    format!("{BLOBS}/{prefix}/{sha256}.zst")
}

fn is_hash(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The hex SHA-256 of `content`: the name its blob has.
pub fn content_hash(content: &[u8]) -> String {
    hex::encode(Sha256::digest(content))
}

/// [`content_hash`] of the concatenation of `parts`.
pub fn content_hash_parts(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    hex::encode(h.finalize())
}

/// Writes one blob: compresses and hashes the content, then files it under its hash (or drops
/// it if that blob exists already). Dropping it without [`BlobWriter::finish`] stores nothing.
pub struct BlobWriter {
    inner: ArtifactWriter,
    content: Sha256,
    size: u64,
    repo: Repository,
}

impl std::fmt::Debug for BlobWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobWriter")
            .field("size", &self.size)
            .finish()
    }
}

impl AsyncWrite for BlobWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let n = ready!(Pin::new(&mut self.inner).poll_write(cx, buf))?;
        self.content.update(&buf[..n]);
        self.size += n as u64;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl BlobWriter {
    /// Complete the blob and file it under its content hash.
    pub async fn finish(self) -> Result<BlobRecord> {
        let tmp = self.inner.finish().await?;
        let sha256 = hex::encode(self.content.finalize());
        let final_path = Path::from(self.repo.blob_write_path(&sha256).await?);
        let tmp_path = Path::from(tmp.path.as_str());
        let store = self.repo.store();
        let deduplicated = match store.head(&final_path).await {
            Ok(_) => true,
            Err(object_store::Error::NotFound { .. }) => false,
            Err(source) => return Err(repo_err(&self.repo, "inspect", &final_path, source)),
        };
        if deduplicated {
            let _ = store.delete(&tmp_path).await;
        } else if self.repo.object_lock_until().is_some() {
            // The copy is written with the retention date; the staged object is not locked.
            self.repo
                .backup_store()
                .copy(&tmp_path, &final_path)
                .await
                .map_err(|source| repo_err(&self.repo, "file blob", &final_path, source))?;
            if let Some(api) = self.repo.object_lock() {
                api.ensure(final_path.as_ref(), api.until).await?;
            }
            let _ = store.delete(&tmp_path).await;
        } else {
            store
                .rename(&tmp_path, &final_path)
                .await
                .map_err(|source| repo_err(&self.repo, "file blob", &final_path, source))?;
        }
        Ok(BlobRecord {
            sha256,
            size: self.size,
            deduplicated,
        })
    }
}

fn repo_err(
    repo: &Repository,
    operation: &'static str,
    path: &Path,
    source: object_store::Error,
) -> Error {
    Error::Repository {
        repo: repo.url().to_string(),
        operation,
        path: path.to_string(),
        source: Box::new(source),
    }
}

impl Repository {
    /// Where a new blob of content hash `sha256` goes: in an encrypted repository under its
    /// keyed name (HMAC-SHA256 of the content hash), else under the content hash.
    pub async fn blob_write_path(&self, sha256: &str) -> Result<String> {
        let keys = self.keys().await?;
        if !keys.encrypted() {
            return Ok(blob_path(sha256));
        }
        let name = keys
            .blob_name(sha256)
            .map_err(|m| Error::config("repository.encryption", m))?;
        Ok(blob_path(&name))
    }

    /// Where the blob `sha256` may be stored, first choice first: its keyed name (encrypted
    /// repository), then its content-hash name (written before encryption was turned on).
    async fn blob_read_paths(&self, sha256: &str) -> Result<Vec<String>> {
        let keys = self.keys().await?;
        let mut out = Vec::new();
        if keys.encrypted() {
            // A host without the blob-name key (no keys configured) can still read the
            // plaintext blobs of the backups taken before encryption was turned on: their
            // names are their plain hashes. (A sealed backup is refused before its blobs are
            // looked for: its manifest needs the private key.)
            if let Ok(n) = keys.blob_name(sha256) {
                out.push(blob_path(&n));
            }
        }
        out.push(blob_path(sha256));
        Ok(out)
    }

    /// The stored path and size of blob `sha256`, if stored.
    pub(crate) async fn find_blob(&self, sha256: &str) -> Result<Option<(String, u64)>> {
        for path in self.blob_read_paths(sha256).await? {
            let p = Path::from(path.as_str());
            match self.store().head(&p).await {
                Ok(m) => return Ok(Some((path, m.size))),
                Err(object_store::Error::NotFound { .. }) => {}
                Err(source) => return Err(repo_err(self, "inspect", &p, source)),
            }
        }
        Ok(None)
    }

    /// True if the blob of content hash `sha256` is stored.
    pub async fn has_blob(&self, sha256: &str) -> Result<bool> {
        Ok(self.find_blob(sha256).await?.is_some())
    }

    async fn has_blob_at(&self, path: &str) -> Result<bool> {
        let p = Path::from(path);
        match self.store().head(&p).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(source) => Err(repo_err(self, "inspect", &p, source)),
        }
    }

    /// Store `content`, held whole in memory, as a blob (for bodies up to [`SMALL_BLOB`]).
    /// It is hashed first; if that blob is stored already nothing is compressed or written
    /// (`deduplicated`). Otherwise it is compressed into one zstd frame (content size and
    /// checksum included, the repository's level; runs that look random are kept in raw
    /// frames: [`crate::frames`]) and put under its final name in one write, which is atomic both on a
    /// local directory and on S3: no staging object, no rename.
    pub async fn put_blob(&self, content: Bytes, progress: Progress) -> Result<BlobRecord> {
        let sha256 = content_hash(&content);
        self.put_blob_hashed(sha256, content, progress).await
    }

    /// [`Repository::put_blob`] for a caller that has hashed `content` already (to decide
    /// something by its hash first). `sha256` must be [`content_hash`] of `content`.
    pub async fn put_blob_hashed(
        &self,
        sha256: String,
        content: Bytes,
        progress: Progress,
    ) -> Result<BlobRecord> {
        self.put_blob_parts(sha256, vec![content], progress).await
    }

    /// [`Repository::put_blob_hashed`] for a body held as consecutive parts (a pack whose
    /// compressible files come first and random-looking ones after): each part is made into
    /// frames of its own and stored without being copied into one buffer first (raw frames
    /// refer to the parts' bytes). `sha256` must be [`content_hash_parts`] of `parts`.
    pub async fn put_blob_parts(
        &self,
        sha256: String,
        parts: Vec<Bytes>,
        progress: Progress,
    ) -> Result<BlobRecord> {
        let size = parts.iter().map(|p| p.len() as u64).sum::<u64>();
        let path = Path::from(self.blob_write_path(&sha256).await?);
        if let Some(limit) = self.fail_writes_after {
            if size > limit {
                return Err(Error::from_io(
                    "write",
                    path.as_ref(),
                    io::Error::other(format!(
                        "injected write failure after {limit} bytes of {path} (testkit)"
                    )),
                ));
            }
        }
        progress.add_bytes(size);
        if self.has_blob_at(path.as_ref()).await? {
            return Ok(BlobRecord {
                sha256,
                size,
                deduplicated: true,
            });
        }
        let mut frames = Vec::new();
        for part in &parts {
            crate::frames::compress_parts(part, self.compression().level, &mut frames)
                .map_err(|e| Error::from_io("compress", path.as_ref(), e))?;
        }
        drop(parts);
        let payload = self.seal_small_parts(frames).await?;
        self.backup_store()
            .put(&path, payload)
            .await
            .map_err(|source| repo_err(self, "write blob", &path, source))?;
        Ok(BlobRecord {
            sha256,
            size,
            deduplicated: false,
        })
    }

    /// Read a blob whole into memory (for blobs up to [`SMALL_BLOB`]; see
    /// [`Repository::open_blob`] for larger ones). Its length, zstd checksums and content
    /// SHA-256 are checked; damage is an [`Error::Corrupt`] naming the blob, a missing blob an
    /// [`Error::MissingArtifact`].
    pub async fn read_blob(&self, blob: &BlobRecord, progress: Progress) -> Result<Bytes> {
        let (plain_path, _) = checked_blob_path(&blob.sha256)?;
        // One GET per candidate name (keyed first in an encrypted repository), no HEAD.
        let mut found = None;
        for candidate in self.blob_read_paths(&blob.sha256).await? {
            let p = Path::from(candidate.as_str());
            let got = match self.store().get(&p).await {
                Ok(got) => got.bytes().await,
                Err(e) => Err(e),
            };
            match got {
                Ok(b) => {
                    found = Some((candidate, b));
                    break;
                }
                Err(object_store::Error::NotFound { .. }) => {}
                Err(source) => return Err(repo_err(self, "read", &p, source)),
            }
        }
        let Some((path, stored)) = found else {
            return Err(Error::MissingArtifact {
                artifact: plain_path,
            });
        };
        let damaged = |message: String| Error::Corrupt {
            artifact: path.clone(),
            message,
        };
        let size = usize::try_from(blob.size)
            .map_err(|_| Error::Other(format!("blob {path} is too large to read whole")))?;
        // A sealed blob (encrypted repository) is opened first; its content hash below
        // authenticates a plaintext one.
        let stored = if crate::crypto::stream::sealed_key_id(&stored).is_some() {
            Bytes::from(self.open_small(&stored, &path).await?)
        } else {
            stored
        };
        // One byte more than expected: a longer content is found, not cut off.
        let content = zstd::bulk::Decompressor::new()
            .and_then(|mut d| d.decompress(&stored, size + 1))
            .map_err(|e| damaged(format!("cannot be decompressed: {e}")))?;
        if content.len() != size {
            return Err(damaged(format!(
                "decompressed length is {} bytes, the manifest says {}",
                content.len(),
                blob.size
            )));
        }
        let got = content_hash(&content);
        if got != blob.sha256 {
            return Err(damaged(format!(
                "content hashes to {got}, its name says {}",
                blob.sha256
            )));
        }
        progress.add_bytes(blob.size);
        Ok(Bytes::from(content))
    }

    /// Start writing a blob.
    pub async fn write_blob(&self, progress: Progress) -> Result<BlobWriter> {
        let token = format!("{:032x}", crate::repository::rand_token());
        let inner = self
            .create_stream_at(&format!("{TMP}/{token}.zst"), progress)
            .await?;
        Ok(BlobWriter {
            inner,
            content: Sha256::new(),
            size: 0,
            repo: self.clone(),
        })
    }

    /// Open a blob for reading; at the end of the stream its length and content hash are
    /// checked, and damage is an [`Error::Corrupt`] naming the blob.
    pub async fn open_blob(&self, blob: &BlobRecord, progress: Progress) -> Result<ArtifactReader> {
        let (path, _) = checked_blob_path(&blob.sha256)?;
        let Some((path, stored)) = self.find_blob(&blob.sha256).await? else {
            return Err(Error::MissingArtifact { artifact: path });
        };
        // Sealed iff it starts like a sealed object: the content hash checked at the end of
        // the stream authenticates a plaintext blob.
        let sealed = if self.keys().await?.encrypted() && stored >= 8 {
            let head = self
                .store()
                .get_range(&Path::from(path.as_str()), 0..8)
                .await
                .map_err(|source| repo_err(self, "read", &Path::from(path.as_str()), source))?;
            head.as_ref() == crate::crypto::stream::MAGIC
        } else {
            false
        };
        let record = ArtifactRecord {
            name: "blob".into(),
            path,
            size: blob.size,
            stored_size: stored,
            sha256: String::new(),
            compression: "zstd".into(),
            encryption: sealed.then(|| crate::crypto::STREAM_FORMAT.to_string()),
        };
        Ok(self
            .open_artifact(&record, progress)
            .await?
            .check_content_sha256(&blob.sha256))
    }

    /// Every blob hash referenced by the backups `ids` (through their `*.blobrefs` artifacts).
    pub async fn referenced_blobs(&self, ids: &[String]) -> Result<HashSet<String>> {
        let mut refs = HashSet::new();
        for id in ids {
            let m = self.read_manifest(id).await?;
            for rec in m.components.values() {
                for a in rec
                    .artifacts
                    .iter()
                    .filter(|a| a.name.ends_with(BLOB_REFS_SUFFIX))
                {
                    let reader = self.open_artifact(a, Progress::none()).await?;
                    let mut lines = BufReader::new(reader).lines();
                    while let Some(line) = lines
                        .next_line()
                        .await
                        .map_err(|e| Error::from_io("read", &a.path, e))?
                    {
                        let h = line.trim();
                        if is_hash(h) {
                            refs.insert(h.to_string());
                        }
                    }
                }
            }
        }
        Ok(refs)
    }

    /// Delete every blob not in `keep`, and every unfinished blob. Call under the repository
    /// lock. Returns how many blobs were (or, in a dry run, would be) deleted.
    pub async fn sweep_blobs(&self, keep: &HashSet<String>, dry_run: bool) -> Result<u64> {
        let prefix = Path::from(BLOBS);
        // In an encrypted repository the blobs kept are stored under their keyed names.
        let keys = self.keys().await?;
        let mut keyed = HashSet::new();
        if keys.encrypted() {
            for h in keep {
                let n = keys
                    .blob_name(h)
                    .map_err(|m| Error::config("repository.encryption", m))?;
                keyed.insert(n);
            }
        }
        let mut doomed = Vec::new();
        let mut listing = self.store().list(Some(&prefix));
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(|source| repo_err(self, "list", &prefix, source))?;
            let loc = meta.location.to_string();
            let name = loc.rsplit('/').next().unwrap_or("");
            let hash = name.strip_suffix(".zst").unwrap_or(name);
            if loc.starts_with(TMP) || !(keep.contains(hash) || keyed.contains(hash)) {
                doomed.push(meta.location);
            }
        }
        let n = doomed.len() as u64;
        if !dry_run && n > 0 {
            let stream = futures::stream::iter(doomed.into_iter().map(Ok)).boxed();
            self.store()
                .delete_stream(stream)
                .try_collect::<Vec<_>>()
                .await
                .map_err(|source| repo_err(self, "delete", &prefix, source))?;
        }
        Ok(n)
    }
}

/// The repository path of the blob `sha256` (as text and as an object path), or an error when
/// it is not a blob hash.
fn checked_blob_path(sha256: &str) -> Result<(String, Path)> {
    if !is_hash(sha256) {
        return Err(Error::Other(format!("`{sha256}` is not a blob hash")));
    }
    let path = blob_path(sha256);
    let p = Path::from(path.as_str());
    Ok((path, p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repository::RepositoryConfig;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn put(repo: &Repository, data: &[u8]) -> BlobRecord {
        let mut w = repo.write_blob(Progress::none()).await.expect("blob");
        w.write_all(data).await.expect("write");
        w.finish().await.expect("finish")
    }

    #[tokio::test]
    async fn blobs_dedup_verify_and_sweep() {
        let dir = tempfile::tempdir().expect("tmp");
        let repo =
            Repository::open(&RepositoryConfig::new(dir.path().to_string_lossy())).expect("open");
        let a = put(&repo, b"hello blob").await;
        assert!(!a.deduplicated);
        let again = put(&repo, b"hello blob").await;
        assert!(again.deduplicated && again.sha256 == a.sha256);
        let b = put(&repo, &vec![7u8; 300_000]).await;
        assert!(repo.has_blob(&a.sha256).await.expect("has"));

        let mut out = Vec::new();
        repo.open_blob(&a, Progress::none())
            .await
            .expect("open")
            .read_to_end(&mut out)
            .await
            .expect("read");
        assert_eq!(out, b"hello blob");

        // A blob whose content does not match its name is damage, named.
        let path = dir.path().join(blob_path(&b.sha256));
        let other = dir.path().join(blob_path(&a.sha256));
        std::fs::copy(&other, &path).expect("swap content");
        let forged = BlobRecord {
            size: 10,
            ..b.clone()
        };
        let mut r = repo
            .open_blob(&forged, Progress::none())
            .await
            .expect("open");
        let err = r.read_to_end(&mut Vec::new()).await.expect_err("forged");
        let err = Error::from_io("read", "x", err);
        assert!(
            err.is_damage() && err.to_string().contains(&b.sha256),
            "{err}"
        );

        // Sweep keeps what is referenced and removes the rest.
        let keep: HashSet<String> = [a.sha256.clone()].into_iter().collect();
        assert_eq!(repo.sweep_blobs(&keep, true).await.expect("dry"), 1);
        assert!(
            repo.has_blob(&b.sha256).await.expect("has"),
            "dry run deletes nothing"
        );
        assert_eq!(repo.sweep_blobs(&keep, false).await.expect("sweep"), 1);
        assert!(!repo.has_blob(&b.sha256).await.expect("has"));
        assert!(repo.has_blob(&a.sha256).await.expect("has"));
    }

    /// Whole-body blobs: the same names and format as streamed ones (each reader reads what
    /// either writer wrote), deduplicated, and damage is named.
    #[tokio::test]
    async fn whole_blobs_match_streamed_ones() {
        let dir = tempfile::tempdir().expect("tmp");
        let repo =
            Repository::open(&RepositoryConfig::new(dir.path().to_string_lossy())).expect("open");
        let text: Vec<u8> = b"amber document line\n".repeat(10_000);
        let whole = repo
            .put_blob(Bytes::from(text.clone()), Progress::none())
            .await
            .expect("put");
        assert!(!whole.deduplicated && whole.size == text.len() as u64);
        assert_eq!(whole.sha256, content_hash(&text));
        let stored = std::fs::metadata(dir.path().join(blob_path(&whole.sha256)))
            .expect("blob file")
            .len();
        assert!(stored < text.len() as u64 / 10, "not compressed: {stored}");
        // The streamed writer finds it (dedup), the streamed reader reads it.
        assert!(put(&repo, &text).await.deduplicated);
        let mut out = Vec::new();
        repo.open_blob(&whole, Progress::none())
            .await
            .expect("open")
            .read_to_end(&mut out)
            .await
            .expect("read");
        assert_eq!(out, text);
        // Stored twice whole: one blob.
        let again = repo
            .put_blob(Bytes::from(text.clone()), Progress::none())
            .await
            .expect("put");
        assert!(again.deduplicated && again.sha256 == whole.sha256);

        // A streamed blob (incompressible, zero-length) reads back whole.
        let noise: Vec<u8> = (0..300_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for body in [noise.as_slice(), b"".as_slice()] {
            let rec = put(&repo, body).await;
            let got = repo.read_blob(&rec, Progress::none()).await.expect("read");
            assert_eq!(got.as_ref(), body);
            let again = repo
                .put_blob(Bytes::copy_from_slice(body), Progress::none())
                .await
                .expect("put");
            assert!(again.deduplicated);
        }

        // Damage: another blob's content under this name, a wrong length, a missing blob.
        let other = put(&repo, b"other content").await;
        std::fs::copy(
            dir.path().join(blob_path(&other.sha256)),
            dir.path().join(blob_path(&whole.sha256)),
        )
        .expect("swap");
        let err = repo
            .read_blob(
                &BlobRecord {
                    size: 13,
                    ..whole.clone()
                },
                Progress::none(),
            )
            .await
            .expect_err("forged");
        assert!(
            err.is_damage() && err.to_string().contains(&whole.sha256),
            "{err}"
        );
        let err = repo
            .read_blob(
                &BlobRecord {
                    size: 5,
                    ..other.clone()
                },
                Progress::none(),
            )
            .await
            .expect_err("longer than recorded");
        assert!(err.is_damage(), "{err}");
        let missing = BlobRecord {
            sha256: "ab".repeat(32),
            size: 1,
            deduplicated: false,
        };
        let err = repo
            .read_blob(&missing, Progress::none())
            .await
            .expect_err("missing");
        assert!(matches!(err, Error::MissingArtifact { .. }), "{err}");
    }
}

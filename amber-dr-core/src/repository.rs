//! The repository: where backups live, over any `object_store` location.
//!
//! Layout (see `docs/repository-format.md`):
//!
//! ```text
//! <id>/manifest.json            written last; a backup is complete iff it says so
//! <id>/<component>/<artifact>   zstd streams
//! blobs/                        content-addressed shared blobs (drivers that deduplicate)
//! locks/repository.lock         the lock object of a running backup/restore/prune
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use crate::artifact::{ArtifactReader, ArtifactWriter, CompressionOptions};
pub use crate::host::host_name;
use crate::host::process_alive;
pub(crate) use crate::host::rand_token;
use crate::manifest::{ArtifactRecord, Manifest};
use crate::progress::Progress;
use crate::secret::Secret;
use crate::{Error, Result};

mod lock;

pub use lock::{LockInfo, RepoLock};

/// Where the repository is and how to reach it. `[repository]` in `amber-dr.toml`.
#[derive(Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RepositoryConfig {
    /// A local path (`./backups`, `/srv/backups`, `file:///srv/backups`) or `s3://bucket/prefix`.
    pub url: String,
    /// S3 endpoint for S3-compatible servers (MinIO, s3s-fs, ...). Default: AWS, or `AWS_ENDPOINT_URL`.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// S3 region. Default: `AWS_REGION` / `AWS_DEFAULT_REGION`, else `us-east-1`.
    #[serde(default)]
    pub region: Option<String>,
    /// S3 access key id. Default: `AWS_ACCESS_KEY_ID`.
    #[serde(default)]
    pub access_key_id: Option<String>,
    /// S3 secret access key. Default: `AWS_SECRET_ACCESS_KEY`.
    #[serde(default)]
    pub secret_access_key: Option<Secret>,
    /// S3 session token. Default: `AWS_SESSION_TOKEN`.
    #[serde(default)]
    pub session_token: Option<Secret>,
    /// Allow plain `http://` endpoints. Default: true when the endpoint is `http://`.
    #[serde(default)]
    pub allow_http: Option<bool>,
    /// zstd level for artifacts (1–19). Default 3.
    #[serde(default)]
    pub compression_level: Option<i32>,
    /// `[repository.encryption]`: encrypt everything this host writes (see `crate::crypto`).
    #[serde(default)]
    pub encryption: Option<crate::crypto::EncryptionConfig>,
    /// `object_lock = { mode, days }` (S3 only): every object of a backup gets a retention date.
    #[serde(default)]
    pub object_lock: Option<crate::object_lock::ObjectLockConfig>,
}

impl std::fmt::Debug for RepositoryConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RepositoryConfig")
            .field("url", &self.url)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &self.secret_access_key)
            .field("session_token", &self.session_token)
            .field("allow_http", &self.allow_http)
            .field("compression_level", &self.compression_level)
            .field("encryption", &self.encryption)
            .field("object_lock", &self.object_lock)
            .finish()
    }
}

impl RepositoryConfig {
    /// A config for a URL, everything else default.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ..Default::default()
        }
    }
}

/// One backup as seen by `list`.
#[derive(Debug, Clone, Serialize)]
pub struct BackupEntry {
    /// The backup id.
    pub id: String,
    /// The manifest, if the backup has one (an interrupted backup has none).
    pub manifest: Option<Manifest>,
    /// Why the manifest could not be read, if it exists but is unreadable.
    pub problem: Option<String>,
}

impl BackupEntry {
    /// `complete`, `failed`, `incomplete` (no manifest) or `unreadable`.
    pub fn status(&self) -> &'static str {
        match (&self.manifest, &self.problem) {
            (Some(m), _) if m.is_complete() => "complete",
            (Some(_), _) => "failed",
            (None, Some(_)) => "unreadable",
            (None, None) => "incomplete",
        }
    }
}

/// A backup repository. Cheap to clone.
#[derive(Clone)]
pub struct Repository {
    store: Arc<dyn ObjectStore>,
    url: String,
    compression: CompressionOptions,
    /// The directory of a local repository (to clear staging files of killed runs).
    local_root: Option<std::path::PathBuf>,
    /// Fault injection for the conformance suite: artifact writes fail past this many bytes.
    pub(crate) fail_writes_after: Option<u64>,
    /// This host's keys and their unlocked state.
    pub(crate) crypto: Arc<crate::crypto::repo::RepoCrypto>,
    /// Where the objects of backups are written: the store itself, or with Object Lock the
    /// same bucket through requests that carry a retention date.
    backup_store: Arc<dyn ObjectStore>,
    /// Object Lock: the retention date of what `backup_store` writes, and the S3 calls that
    /// read and extend retention dates.
    lock_api: Option<Arc<crate::object_lock::LockApi>>,
}

impl std::fmt::Debug for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repository")
            .field("url", &self.url)
            .finish()
    }
}

const MANIFEST: &str = "manifest.json";
const LOCK_PATH: &str = "locks/repository.lock";
/// `locks/takeover-<token>`: the run that creates it may remove the stale lock `<token>`.
const TAKEOVER_PREFIX: &str = "locks/takeover-";
/// Top-level names that are not backup ids.
const RESERVED: &[&str] = &["blobs", "drills", "keys", "locks"];

impl Repository {
    /// Open (and for a local path, create) the repository described by `config`.
    pub fn open(config: &RepositoryConfig) -> Result<Self> {
        let url = config.url.trim();
        if url.is_empty() {
            return Err(Error::config("repository.url", "is empty"));
        }
        // Unusable keys are an error before anything (even a directory) is made.
        let crypto = crate::crypto::repo::RepoCrypto::new(config.encryption.as_ref())?;
        let mut local_root = None;
        let mut locked = None;
        let store: Arc<dyn ObjectStore> = if let Some(rest) = url.strip_prefix("s3://") {
            let (s3, l) = Self::s3(config, rest)?;
            locked = l;
            Arc::new(s3)
        } else if config.object_lock.is_some() {
            return Err(Error::config(
                "repository.object_lock",
                "Object Lock is an S3 feature: it needs an s3:// repository",
            ));
        } else if url.contains("://") && !url.starts_with("file://") {
            return Err(Error::config(
                "repository.url",
                format!("`{url}`: unsupported scheme; use a local path, file:// or s3://"),
            ));
        } else {
            let path = url.strip_prefix("file://").unwrap_or(url);
            std::fs::create_dir_all(path)
                .map_err(|e| Error::io("create repository directory", path, e))?;
            let fs = object_store::local::LocalFileSystem::new_with_prefix(path)
                .map_err(|source| Error::Repository {
                    repo: url.to_string(),
                    operation: "open",
                    path: String::new(),
                    source: Box::new(source),
                })?
                .with_automatic_cleanup(true);
            local_root = Some(std::path::PathBuf::from(path));
            Arc::new(fs)
        };
        let mut compression = CompressionOptions::default();
        if let Some(level) = config.compression_level {
            if !(1..=19).contains(&level) {
                return Err(Error::config(
                    "repository.compression_level",
                    format!("{level} is out of range 1..=19"),
                ));
            }
            compression.level = level;
        }
        let (backup_store, lock_api) = match locked {
            Some((s, api)) => (s, Some(api)),
            None => (store.clone(), None),
        };
        let repo = Self {
            store,
            url: url.to_string(),
            compression,
            local_root,
            fail_writes_after: None,
            crypto: Arc::new(crypto),
            backup_store,
            lock_api,
        };
        repo.unlock_in_background();
        Ok(repo)
    }

    #[allow(clippy::type_complexity)]
    fn s3(
        config: &RepositoryConfig,
        rest: &str,
    ) -> Result<(
        object_store::prefix::PrefixStore<object_store::aws::AmazonS3>,
        Option<(Arc<dyn ObjectStore>, Arc<crate::object_lock::LockApi>)>,
    )> {
        use object_store::aws::AmazonS3Builder;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(Error::config(
                "repository.url",
                format!("`s3://{rest}` names no bucket"),
            ));
        }
        let mut b = AmazonS3Builder::from_env().with_bucket_name(bucket);
        let endpoint = config
            .endpoint
            .clone()
            .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok());
        let mut allow_http = config.allow_http;
        if let Some(ep) = &endpoint {
            b = b.with_endpoint(ep.trim_end_matches('/'));
            let http = config.allow_http.unwrap_or(ep.starts_with("http://"));
            allow_http = Some(http);
            b = b.with_allow_http(http);
        } else if let Some(http) = config.allow_http {
            b = b.with_allow_http(http);
        }
        let region = config
            .region
            .clone()
            .or_else(|| std::env::var("AWS_REGION").ok())
            .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
            .unwrap_or_else(|| "us-east-1".into());
        b = b.with_region(region);
        if let Some(k) = &config.access_key_id {
            b = b.with_access_key_id(k);
        }
        if let Some(s) = &config.secret_access_key {
            b = b.with_secret_access_key(s.expose());
        }
        if let Some(t) = &config.session_token {
            b = b.with_token(t.expose());
        }
        let locked = config
            .object_lock
            .as_ref()
            .map(|ol| crate::object_lock::locked_store(b.clone(), allow_http, prefix, ol))
            .transpose()?;
        let s3 = b.build().map_err(|source| Error::Repository {
            repo: format!("s3://{rest}"),
            operation: "configure",
            path: String::new(),
            source: Box::new(source),
        })?;
        Ok((
            object_store::prefix::PrefixStore::new(s3, Path::from(prefix.trim_matches('/'))),
            locked,
        ))
    }

    /// A repository over any object store (for embedding and tests).
    pub fn from_store(store: Arc<dyn ObjectStore>, url: impl Into<String>) -> Self {
        Self {
            backup_store: store.clone(),
            lock_api: None,
            store,
            url: url.into(),
            compression: CompressionOptions::default(),
            local_root: None,
            fail_writes_after: None,
            crypto: Default::default(),
        }
    }

    /// The repository's URL, for messages (never contains credentials).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The underlying object store (for drivers with shared blobs).
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The store the objects of backups are written through (with Object Lock: requests
    /// that carry the retention date).
    pub(crate) fn backup_store(&self) -> &Arc<dyn ObjectStore> {
        &self.backup_store
    }

    /// With Object Lock: the retention date of what this handle writes.
    pub fn object_lock_until(&self) -> Option<DateTime<Utc>> {
        self.lock_api.as_ref().map(|a| a.until)
    }

    /// With Object Lock: the S3 calls that read and extend retention dates.
    pub fn object_lock(&self) -> Option<&Arc<crate::object_lock::LockApi>> {
        self.lock_api.as_ref()
    }

    /// A handle on the same repository whose artifact writes fail once a stream would pass
    /// `bytes` (the conformance suite's interrupted snapshot).
    #[cfg(feature = "testkit")]
    pub fn with_write_failure_after(mut self, bytes: u64) -> Self {
        self.fail_writes_after = Some(bytes);
        self
    }

    /// The directory of a local repository (None for object stores).
    pub fn local_root(&self) -> Option<&std::path::Path> {
        self.local_root.as_deref()
    }

    /// The artifact compression settings.
    pub fn compression(&self) -> CompressionOptions {
        self.compression
    }

    /// Override the artifact compression settings.
    pub fn set_compression(&mut self, compression: CompressionOptions) {
        self.compression = compression;
    }

    fn err(&self, operation: &'static str, path: &Path, source: object_store::Error) -> Error {
        Error::Repository {
            repo: self.url.clone(),
            operation,
            path: path.to_string(),
            source: Box::new(source),
        }
    }

    /// Check that the repository answers (list its top level).
    pub async fn check_access(&self) -> Result<()> {
        self.store
            .list_with_delimiter(None)
            .await
            .map(|_| ())
            .map_err(|e| self.err("list", &Path::from(""), e))
    }

    /// Read a small object whole.
    pub async fn get_bytes(&self, path: &str) -> Result<Option<Bytes>> {
        let p = Path::from(path);
        match self.store.get(&p).await {
            Ok(r) => r
                .bytes()
                .await
                .map(Some)
                .map_err(|e| self.err("read", &p, e)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.err("read", &p, e)),
        }
    }

    /// Write a small object whole.
    pub async fn put_bytes(&self, path: &str, bytes: impl Into<Bytes>) -> Result<()> {
        let p = Path::from(path);
        self.store
            .put(&p, PutPayload::from(bytes.into()))
            .await
            .map(|_| ())
            .map_err(|e| self.err("write", &p, e))
    }

    /// The ids of every backup directory, sorted (oldest first).
    pub async fn backup_ids(&self) -> Result<Vec<String>> {
        let listing = self
            .store
            .list_with_delimiter(None)
            .await
            .map_err(|e| self.err("list", &Path::from(""), e))?;
        let mut ids: Vec<String> = listing
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .filter(|n| !RESERVED.contains(&n.as_str()) && looks_like_id(n))
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Every backup with its manifest (or why it has none), oldest first.
    pub async fn list(&self) -> Result<Vec<BackupEntry>> {
        let ids = self.backup_ids().await?;
        let entries = futures::stream::iter(ids)
            .map(|id| async move {
                match self.manifest_if_any(&id).await {
                    Ok(Some(m)) => BackupEntry {
                        id,
                        manifest: Some(m),
                        problem: None,
                    },
                    Ok(None) => BackupEntry {
                        id,
                        manifest: None,
                        problem: None,
                    },
                    Err(e) => BackupEntry {
                        id,
                        manifest: None,
                        problem: Some(e.to_string()),
                    },
                }
            })
            .buffered(8)
            .collect()
            .await;
        Ok(entries)
    }

    /// Read and check a backup's manifest: [`Error::Incomplete`] for a backup directory
    /// without one, [`Error::BackupNotFound`] for an id that is not in the repository.
    pub async fn read_manifest(&self, id: &str) -> Result<Manifest> {
        match self.manifest_if_any(id).await? {
            Some(m) => Ok(m),
            None if self.backup_ids().await?.iter().any(|i| i == id) => Err(Error::Incomplete {
                repo: self.url.clone(),
                id: id.to_string(),
            }),
            None => Err(Error::BackupNotFound {
                repo: self.url.clone(),
                id: id.to_string(),
            }),
        }
    }

    async fn manifest_if_any(&self, id: &str) -> Result<Option<Manifest>> {
        let path = format!("{id}/{MANIFEST}");
        match self.get_bytes(&path).await? {
            Some(bytes) => self.parse_manifest(&path, id, &bytes).await.map(Some),
            None => Ok(None),
        }
    }

    /// Write a backup's manifest: the last write of a backup. Its errors and warnings are
    /// redacted first (see [`Manifest::to_redacted_json`]).
    pub async fn write_manifest(&self, manifest: &Manifest) -> Result<()> {
        let mut m = manifest.clone();
        m.locked_until = self.object_lock_until();
        let body = self.manifest_bytes(&m).await?;
        let p = Path::from(format!("{}/{MANIFEST}", manifest.id));
        self.backup_store
            .put(&p, PutPayload::from(body))
            .await
            .map(|_| ())
            .map_err(|e| self.err("write", &p, e))
    }

    /// Resolve `latest` or an exact id. `latest` is the newest complete backup (not a safety
    /// backup) by start time (ids are start times), skipping failed ones and those without a
    /// manifest (interrupted or running); a newer backup whose manifest cannot be read is
    /// damage ([`Error::Corrupt`] naming it), never silently passed over for an older one.
    pub async fn resolve(&self, spec: &str) -> Result<String> {
        if spec != "latest" {
            return Ok(spec.to_string());
        }
        for e in self.list().await?.into_iter().rev() {
            match (&e.manifest, e.problem) {
                (Some(m), _) if m.is_complete() && m.purpose == crate::BackupPurpose::Backup => {
                    return Ok(e.id)
                }
                (None, Some(problem)) => return Err(Error::Corrupt {
                    artifact: format!("{}/{MANIFEST}", e.id),
                    message: format!("`latest` is backup {}, whose manifest cannot be read ({problem}); name an older backup by its id to use it instead", e.id),
                }),
                _ => {}
            }
        }
        Err(Error::BackupNotFound {
            repo: self.url.clone(),
            id: "latest (no complete backup)".into(),
        })
    }

    /// A new backup id for `now`: `YYYYMMDD_HHMMSS`, with `_2`, `_3`, ... if taken.
    pub async fn new_backup_id(&self, now: DateTime<Utc>) -> Result<String> {
        let base = now.format("%Y%m%d_%H%M%S").to_string();
        let taken = self.backup_ids().await?;
        let mut id = base.clone();
        let mut n = 2;
        while taken.contains(&id) {
            id = format!("{base}_{n}");
            n += 1;
        }
        Ok(id)
    }

    /// Delete every object of a backup (manifest first, so that a half-deleted backup is
    /// never listed as complete).
    pub async fn delete_backup(&self, id: &str) -> Result<()> {
        if !looks_like_id(id) {
            return Err(Error::Other(format!(
                "refusing to delete `{id}`: not a backup id"
            )));
        }
        let manifest = Path::from(format!("{id}/{MANIFEST}"));
        match self.store.delete(&manifest).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(self.err("delete", &manifest, e)),
        }
        let prefix = Path::from(id);
        let locations = self
            .store
            .list(Some(&prefix))
            .map_ok(|m| m.location)
            .boxed();
        self.store
            .delete_stream(locations)
            .try_collect::<Vec<_>>()
            .await
            .map_err(|e| self.err("delete", &prefix, e))?;
        // A killed run leaves multipart staging files (`name#N`) that the object store does not
        // list; on a local repository remove whatever is left of the backup's directory.
        if let Some(root) = &self.local_root {
            let dir = root.join(id);
            match tokio::fs::remove_dir_all(&dir).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("remove backup directory", dir, e)),
            }
        }
        Ok(())
    }

    /// Path of an artifact.
    pub fn artifact_path(id: &str, component: &str, name: &str) -> String {
        format!("{id}/{component}/{name}.zst")
    }

    /// Start writing an artifact.
    pub async fn create_artifact(
        &self,
        id: &str,
        component: &str,
        name: &str,
        progress: Progress,
    ) -> Result<ArtifactWriter> {
        validate_name(name)?;
        let path = Path::from(Self::artifact_path(id, component, name));
        let key = self.write_key().await?;
        ArtifactWriter::create(self, name, path, progress, key).await
    }

    /// Start writing a stream to an arbitrary path of the repository (blobs).
    pub(crate) async fn create_stream_at(
        &self,
        path: &str,
        progress: Progress,
    ) -> Result<ArtifactWriter> {
        let key = self.write_key().await?;
        ArtifactWriter::create(self, "blob", Path::from(path), progress, key).await
    }

    /// Open an artifact for checked reading.
    pub async fn open_artifact(
        &self,
        record: &ArtifactRecord,
        progress: Progress,
    ) -> Result<ArtifactReader> {
        let lookup = record
            .encryption
            .is_some()
            .then(|| self.key_lookup(&record.path));
        ArtifactReader::open(&self.store, &self.url, record, progress, lookup).await
    }

    /// Quick check of an artifact: present, with the stored size the manifest says.
    pub async fn check_artifact_present(&self, record: &ArtifactRecord) -> Result<()> {
        let p = Path::from(record.path.as_str());
        match self.store.head(&p).await {
            Ok(meta) if meta.size == record.stored_size => Ok(()),
            Ok(meta) => Err(Error::Corrupt {
                artifact: record.path.clone(),
                message: format!(
                    "stored size is {} bytes, the manifest says {}",
                    meta.size, record.stored_size
                ),
            }),
            Err(object_store::Error::NotFound { .. }) => Err(Error::MissingArtifact {
                artifact: record.path.clone(),
            }),
            Err(e) => Err(self.err("inspect", &p, e)),
        }
    }

    /// Take the repository lock for `operation`. See [`RepoLock`]. A backup or restore
    /// first checks that it may write here (keys usable, no plaintext into an encrypted
    /// repository): nothing, not even the lock, is written otherwise.
    pub async fn lock(&self, operation: &str) -> Result<RepoLock> {
        if matches!(operation, "backup" | "restore") {
            self.prepare_write().await?;
        }
        RepoLock::acquire(self.clone(), operation).await
    }

    /// Who holds the lock, if anyone.
    pub async fn lock_holder(&self) -> Result<Option<LockInfo>> {
        Ok(self
            .get_bytes(LOCK_PATH)
            .await?
            .map(|b| serde_json::from_slice(&b).unwrap_or_else(|_| LockInfo::unreadable())))
    }

    /// Remove the lock whoever holds it (`amber-dr unlock`). Returns the holder removed.
    pub async fn break_lock(&self) -> Result<Option<LockInfo>> {
        let holder = self.lock_holder().await?;
        let p = Path::from(LOCK_PATH);
        match self.store.delete(&p).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(self.err("delete", &p, e)),
        }
        // Takeover markers left by a run that died while taking over a stale lock.
        let locks = Path::from("locks");
        let markers: Vec<Path> = self
            .store
            .list(Some(&locks))
            .try_filter(|m| {
                futures::future::ready(m.location.as_ref().starts_with(TAKEOVER_PREFIX))
            })
            .map_ok(|m| m.location)
            .try_collect()
            .await
            .map_err(|e| self.err("list", &locks, e))?;
        for m in markers {
            let _ = self.store.delete(&m).await;
        }
        Ok(holder)
    }
}

/// True for names of the form `YYYYMMDD_HHMMSS` or `YYYYMMDD_HHMMSS_N`.
pub fn looks_like_id(name: &str) -> bool {
    let b = name.as_bytes();
    if b.len() < 15 {
        return false;
    }
    let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    digits(&b[..8])
        && b[8] == b'_'
        && digits(&b[9..15])
        && (b.len() == 15 || (b.len() > 16 && b[15] == b'_' && digits(&b[16..])))
}

fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..")
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Error::Other(format!(
            "invalid artifact name `{name}`: use ASCII letters, digits, `-`, `_`, `.` and `/`"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert!(looks_like_id("20260101_120000"));
        assert!(looks_like_id("20260101_120000_2"));
        assert!(!looks_like_id("20260101_12000"));
        assert!(!looks_like_id("blobs"));
        assert!(!looks_like_id("20260101_120000_"));
        assert!(!looks_like_id("20260101-120000"));
    }

    #[tokio::test]
    async fn unique_ids_and_manifest_written_last() {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo =
            Repository::open(&RepositoryConfig::new(dir.path().to_string_lossy())).expect("open");
        let now = Utc::now();
        let a = repo.new_backup_id(now).await.expect("id");
        repo.put_bytes(&format!("{a}/x/y.zst"), "data")
            .await
            .expect("put");
        let b = repo.new_backup_id(now).await.expect("id");
        assert_ne!(a, b);
        assert!(b.ends_with("_2"), "{b}");
        // Without a manifest the backup is listed as incomplete.
        let list = repo.list().await.expect("list");
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].status(), "incomplete");
        assert!(repo.resolve("latest").await.is_err());
        // A killed run's staging file (invisible to the object store) goes with the backup.
        std::fs::write(dir.path().join(&a).join("x/y.zst#1"), b"partial").expect("staging");
        repo.delete_backup(&a).await.expect("delete");
        assert!(!dir.path().join(&a).exists());
        assert!(repo.list().await.expect("list").is_empty());
    }

    #[tokio::test]
    async fn lock_excludes_and_names_holder_and_stale_lock_is_taken_over() {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo =
            Repository::open(&RepositoryConfig::new(dir.path().to_string_lossy())).expect("open");
        let lock = repo.lock("backup").await.expect("lock");
        let err = repo
            .lock("restore")
            .await
            .expect_err("second lock must fail");
        let msg = err.to_string();
        assert!(msg.contains("pid"), "{msg}");
        assert!(msg.contains("amber-dr unlock"), "{msg}");
        lock.release().await.expect("release");
        let lock = repo.lock("restore").await.expect("lock after release");
        std::mem::forget(lock);

        // A lock of a process that does not exist on this host is stale.
        let stale = LockInfo {
            host: host_name(),
            pid: 999_999_999,
            operation: "backup".into(),
            since: Utc::now(),
            token: "old".into(),
            extra: BTreeMap::new(),
        };
        repo.put_bytes(LOCK_PATH, serde_json::to_vec(&stale).expect("json"))
            .await
            .expect("put");
        let lock = repo.lock("backup").await.expect("stale lock taken over");
        assert_eq!(lock.took_over.as_ref().map(|h| h.pid), Some(999_999_999));
        lock.release().await.expect("release");

        // Many runs finding the same stale lock at once: exactly one takes it over.
        repo.put_bytes(LOCK_PATH, serde_json::to_vec(&stale).expect("json"))
            .await
            .expect("put");
        let attempts = futures::future::join_all((0..8).map(|_| repo.lock("backup"))).await;
        let winners: Vec<&RepoLock> = attempts.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(winners.len(), 1, "exactly one run holds the lock");
        for l in attempts.into_iter().flatten() {
            l.release().await.expect("release");
        }

        // A lock of another host is never taken over.
        let other = LockInfo {
            host: "elsewhere".into(),
            ..stale
        };
        repo.put_bytes(LOCK_PATH, serde_json::to_vec(&other).expect("json"))
            .await
            .expect("put");
        let err = repo.lock("backup").await.expect_err("held elsewhere");
        assert!(err.to_string().contains("elsewhere"));
    }
}

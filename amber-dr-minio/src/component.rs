//! The `minio` component: the [`Component`] implementation (probe, verify, and the entry
//! points of snapshot and restore: see `backup.rs` and `restore.rs`).

use std::collections::{BTreeMap, HashSet};

use amber_dr_core::blobs::SMALL_BLOB;
use amber_dr_core::LegacyImport;
use amber_dr_core::{
    async_trait, BlobRecord, Capabilities, Component, ComponentRecord, Error, Probe, Progress,
    Repository, RestoreContext, RestoreOptions, RestoreReport, Result, SnapshotContext,
    SnapshotPurpose, VerifyContext, VerifyLevel, VerifyReport,
};
use futures::stream::FuturesUnordered;
use futures::{StreamExt, TryStreamExt};

use crate::config::MinioConfig;
use crate::error::S3Error;
use crate::index::{next_entry, open_lines, Entry, INDEX, REFS};
use crate::s3::S3Client;
use crate::KIND;

/// A MinIO / S3 store: the configured buckets of one endpoint.
#[derive(Debug, Clone)]
pub struct Minio {
    pub(crate) name: String,
    pub(crate) config: MinioConfig,
    pub(crate) client: S3Client,
}

impl Minio {
    /// A component named `name` (the config section's name).
    pub fn new(name: impl Into<String>, config: MinioConfig) -> Result<Self> {
        let name = name.into();
        let client = S3Client::new(config.s3())
            .map_err(|e| Error::config(format!("[components.{name}] endpoint"), e.to_string()))?;
        Ok(Self {
            name,
            config,
            client,
        })
    }

    /// The config.
    pub fn config(&self) -> &MinioConfig {
        &self.config
    }

    pub(crate) fn err(&self, operation: &str, e: impl std::fmt::Display) -> Error {
        Error::component(&self.name, KIND, operation, e.to_string())
    }

    pub(crate) fn s3_err(&self, operation: &str) -> impl Fn(S3Error) -> Error + '_ {
        let operation = operation.to_string();
        move |e| Error::Component {
            component: self.name.clone(),
            kind: KIND.into(),
            operation: operation.clone(),
            message: e.to_string(),
            source: Some(Box::new(e)),
        }
    }
}

#[async_trait]
impl Component for Minio {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::new()
            .online_snapshot(true)
            .consistent_snapshot(false)
            .restore_to_target(true)
            .restore_needs_downtime(false)
            .restore_parts(true)
            .deep_verify(true)
            .reference_keys(true)
    }

    async fn probe(&self) -> Result<Probe> {
        let (buckets, _) = self.select_buckets(SnapshotPurpose::Backup).await?;
        let mut per_bucket = BTreeMap::new();
        let (mut objects, mut bytes) = (0u64, 0u64);
        for b in &buckets {
            let (n, size) = self
                .client
                .list_all(b, None)
                .try_fold(
                    (0u64, 0u64),
                    |(n, s), o| async move { Ok((n + 1, s + o.size)) },
                )
                .await
                .map_err(self.s3_err("probe"))?;
            objects += n;
            bytes += size;
            per_bucket.insert(b.clone(), serde_json::json!({"objects": n, "bytes": size}));
        }
        let mut p = Probe {
            reachable: true,
            version: None,
            size_estimate: Some(bytes),
            ..Default::default()
        };
        p.details
            .insert("endpoint".into(), self.config.endpoint.clone().into());
        p.details
            .insert("buckets".into(), serde_json::json!(per_bucket));
        p.details.insert("objects".into(), objects.into());
        Ok(p)
    }

    async fn snapshot(&self, cx: &SnapshotContext) -> Result<ComponentRecord> {
        if let Some(record) = self.data_dir_safety_snapshot(cx).await? {
            return Ok(record);
        }
        let mut record = ComponentRecord::new(KIND, &self.name);
        let mut index = cx.create_artifact(INDEX).await?;
        let mut refs = match cx.create_artifact(REFS).await {
            Ok(r) => r,
            Err(e) => {
                index.abort().await;
                return Err(e);
            }
        };
        match self
            .snapshot_into(cx, &mut index, &mut refs, &mut record)
            .await
        {
            Ok(()) => {
                record.artifacts.push(index.finish().await?);
                record.artifacts.push(refs.finish().await?);
                Ok(record)
            }
            Err(e) => {
                index.abort().await;
                refs.abort().await;
                Err(e)
            }
        }
    }

    async fn verify(
        &self,
        cx: &VerifyContext,
        record: &ComponentRecord,
        level: VerifyLevel,
    ) -> Result<VerifyReport> {
        if let Some(report) = self.verify_data_dir(cx, record, level).await? {
            return Ok(report);
        }
        // Core's skeleton for the artifacts (presence and sizes; every byte at full); then the
        // blobs the index references, which are not artifacts of the record.
        let mut report = amber_dr_core::verify::verify_component(self, cx, record, level).await?;
        if !report.is_ok() {
            return Ok(report);
        }
        let index = record.artifact(INDEX)?;
        let repo = cx.repository();
        let mut lines = open_lines(repo, index).await?;
        let mut seen = HashSet::new();
        let mut running = FuturesUnordered::new();
        let (mut blobs, mut bytes) = (0u64, 0u64);
        let mut reading = true;
        loop {
            while reading && running.len() < self.config.concurrency() {
                match next_entry(&mut lines, &index.path).await {
                    Ok(Some(entry)) => {
                        if !seen.insert(entry.sha256.clone()) {
                            continue;
                        }
                        let repo = repo.clone();
                        let progress = cx.progress().clone();
                        running.push(tokio::spawn(async move {
                            let res = check_blob(&repo, &entry, level, progress).await;
                            (entry, res)
                        }));
                    }
                    Ok(None) => reading = false,
                    Err(e) if e.is_damage() => {
                        report.problems.push(e.to_string());
                        reading = false;
                    }
                    Err(e) => return Err(e),
                }
            }
            let Some(done) = running.next().await else {
                break;
            };
            let (entry, res) = done.map_err(|e| self.err("verify", format!("task failed: {e}")))?;
            blobs += 1;
            match res {
                Ok(()) => {
                    if level == VerifyLevel::Full {
                        bytes += entry.size;
                    }
                }
                Err(e) if e.is_damage() => report.problems.push(format!(
                    "s3://{}/{}: blob {}: {e}",
                    entry.bucket,
                    entry.key,
                    amber_dr_core::blobs::blob_path(&entry.sha256)
                )),
                Err(e) => return Err(e),
            }
        }
        report.bytes_read += bytes;
        report.notes.push(match level {
            VerifyLevel::Quick => format!("{blobs} referenced blob(s) present"),
            VerifyLevel::Full => {
                format!("{blobs} referenced blob(s) read and their SHA-256 checked")
            }
        });
        Ok(report)
    }

    async fn restore(
        &self,
        cx: &RestoreContext,
        record: &ComponentRecord,
        opts: &RestoreOptions,
    ) -> Result<RestoreReport> {
        self.restore_buckets(cx, record, opts).await
    }

    fn legacy(&self) -> Option<&dyn LegacyImport> {
        Some(self)
    }

    async fn backup_keys(
        &self,
        cx: &amber_dr_core::ReadContext,
        record: &ComponentRecord,
        set: &amber_dr_core::references::KeySet,
    ) -> Result<amber_dr_core::references::KeyStream> {
        self.index_keys(cx, record, set).await
    }

    async fn live_keys(
        &self,
        set: &amber_dr_core::references::KeySet,
    ) -> Result<amber_dr_core::references::KeyStream> {
        self.listed_keys(set).await
    }

    fn scratch_plan(
        &self,
        record: &ComponentRecord,
        scratch: &amber_dr_core::drill::Scratch,
    ) -> Result<amber_dr_core::drill::ScratchPlan> {
        self.plan_scratch(record, scratch)
    }

    async fn remove_scratch(&self, target: &str) -> Result<()> {
        self.remove_scratch_buckets(target).await
    }

    async fn scratch_keys(
        &self,
        set: &amber_dr_core::references::KeySet,
        restores: &[amber_dr_core::drill::ScratchRestore],
    ) -> Result<amber_dr_core::references::KeyStream> {
        self.scratch_listed_keys(set, restores).await
    }
}

/// The runbook's file, restored without a record (see [`LegacyImport`]).
#[async_trait]
impl LegacyImport for Minio {
    fn legacy_files(&self) -> Vec<&'static str> {
        self.legacy_data_files()
    }
    fn legacy_hints(&self) -> Vec<(&'static str, String)> {
        self.legacy_data_hints()
    }
    async fn check_restore_legacy(
        &self,
        file: &std::path::Path,
        opts: &RestoreOptions,
    ) -> Result<()> {
        self.check_legacy_data(file, opts).await
    }
    /// The runbook's `minio_data.tar.gz`, extracted into `legacy_data_dir` (see `legacy.rs`).
    async fn restore_legacy(
        &self,
        cx: &RestoreContext,
        file: &std::path::Path,
        opts: &RestoreOptions,
    ) -> Result<RestoreReport> {
        self.restore_legacy_data(cx, file, opts).await
    }
}

/// Quick: the blob is present. Full: its content reads back with the recorded hash and size.
async fn check_blob(
    repo: &Repository,
    entry: &Entry,
    level: VerifyLevel,
    progress: Progress,
) -> Result<()> {
    let path = amber_dr_core::blobs::blob_path(&entry.sha256);
    match level {
        VerifyLevel::Quick => {
            if repo.has_blob(&entry.sha256).await? {
                Ok(())
            } else {
                Err(Error::MissingArtifact { artifact: path })
            }
        }
        VerifyLevel::Full => {
            let blob = BlobRecord {
                sha256: entry.sha256.clone(),
                size: entry.size,
                deduplicated: false,
            };
            if entry.size <= SMALL_BLOB {
                return repo.read_blob(&blob, progress).await.map(|_| ());
            }
            let mut r = repo.open_blob(&blob, progress).await?;
            tokio::io::copy(&mut r, &mut tokio::io::sink())
                .await
                .map(|_| ())
                .map_err(|e| Error::from_io("read", path, e))
        }
    }
}

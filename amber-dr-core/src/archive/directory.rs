//! [`Directory`]: a directory on disk backed up as one tar artifact and restored through a
//! staging directory and a swap, on behalf of a component (the `files` driver's directory,
//! MinIO's data volume).

use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio_util::io::SyncIoBridge;

use super::extract::{apply_root_meta, read_archive, ReadMode};
use super::swap;
use super::tree::{root_meta, scan_tree, write_tree, MTime, TreeStats};
use crate::{
    ComponentRecord, Error, Probe, RestoreContext, RestoreOptions, RestoreReport, Result,
    SnapshotContext, SnapshotPurpose, VerifyContext, VerifyLevel, VerifyReport,
};

/// The artifact of a directory snapshot.
pub(super) const ARTIFACT: &str = "files.tar";
/// The paths of the files and symlinks in the archive, one JSON string per line (absent in
/// backups of versions before it).
pub(super) const PATHS: &str = "paths.jsonl";
pub(super) const IO_BUFFER: usize = 1024 * 1024;

/// What the record keeps beyond stats: enough to rebuild and check the tree.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Details {
    /// The directory did not exist when the (safety) snapshot was taken.
    pub(super) absent: bool,
    /// The directory backed up.
    pub(super) source: String,
    pub(super) root_mode: u32,
    pub(super) root_mtime: MTime,
    /// The root directory's owner (uid, gid), given back to it by a restore (as root); absent
    /// in records written before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) root_owner: Option<(u32, u32)>,
    /// SHA-256 over every entry's path, type, mode, size, mtime and link target.
    pub(super) fingerprint: String,
    pub(super) stats: TreeStats,
    /// The format of the backup: absent for a tar archive (`files.tar`), `chunked-v1` for the
    /// content-addressed format (see [`super::chunked`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) format: Option<String>,
}

/// What can go wrong with the directory itself (converted into [`Error::Component`]).
#[derive(Debug, thiserror::Error)]
pub(super) enum DirError {
    #[error("directory `{}` does not exist", .0.display())]
    Missing(PathBuf),
    #[error("`{}` is not a directory", .0.display())]
    NotADirectory(PathBuf),
    #[error("restored tree differs from the backup record: {0}")]
    Mismatch(String),
}

/// A directory on disk handled as a tree on behalf of component `name` of `kind`: its records
/// carry that kind and its errors name that component. See the [module](super) docs for what
/// is kept and checked.
#[derive(Debug, Clone)]
pub struct Directory {
    pub(super) kind: &'static str,
    pub(super) name: String,
    pub(super) path: PathBuf,
    /// Never replaced by a restore (the config file's directory).
    pub(super) config_dir: Option<PathBuf>,
    /// Snapshots use the chunked, content-addressed format (restores read either format).
    pub(super) chunked: bool,
}

impl Directory {
    /// The directory `path` of component `name` of `kind`.
    pub fn new(kind: &'static str, name: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        Self {
            kind,
            name: name.into(),
            path: path.into(),
            config_dir: None,
            chunked: false,
        }
    }

    /// Write snapshots in the chunked, content-addressed, incremental format (see
    /// docs/repository-format.md) instead of one tar archive. Restores and verification read
    /// both formats, whatever this says.
    pub fn chunked(mut self, chunked: bool) -> Self {
        self.chunked = chunked;
        self
    }

    /// Never let a restore replace `dir` (the directory of the config file the component came
    /// from) or a directory holding it.
    pub fn protect(mut self, dir: Option<PathBuf>) -> Self {
        self.config_dir = dir;
        self
    }

    /// The directory, as configured.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The component's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// True if `record` was written by [`Directory::snapshot`]: its details describe a
    /// directory tree. Lets a driver that keeps other records too tell them apart.
    pub fn owns_record(record: &ComponentRecord) -> bool {
        record.details::<Details>().is_ok()
    }

    pub(super) fn err(&self, op: &str, e: DirError) -> Error {
        Error::component(&self.name, self.kind, op, e.to_string())
    }

    /// Size and counts of the directory (every entry is listed, no file is read).
    pub async fn probe(&self) -> Result<Probe> {
        let root = self.root();
        let r = root.clone();
        let summary = tokio::task::spawn_blocking(move || scan_tree(&r))
            .await
            .map_err(join_err)?;
        let mut p = Probe::default();
        match summary {
            Ok(s) => {
                p.reachable = true;
                p.size_estimate = Some(s.stats.bytes);
                p.details
                    .insert("path".into(), root.display().to_string().into());
                p.details.insert("files".into(), s.stats.files.into());
                p.details
                    .insert("directories".into(), s.stats.directories.into());
                p.warnings = s.warnings;
            }
            Err(e) => {
                return Err(self.err(
                    "probe",
                    match e.kind() {
                        std::io::ErrorKind::NotFound => DirError::Missing(root),
                        _ => DirError::Mismatch(format!("cannot read `{}`: {e}", root.display())),
                    },
                ))
            }
        }
        Ok(p)
    }

    /// Archive the directory into one artifact. A safety snapshot of a directory that does not
    /// exist records its absence (restoring it removes the directory again).
    pub async fn snapshot(&self, cx: &SnapshotContext) -> Result<ComponentRecord> {
        let root = self.root();
        let mut rec = ComponentRecord::new(self.kind, &self.name);
        rec.server_version = Some(format!("amber-dr-files {}", env!("CARGO_PKG_VERSION")));
        match tokio::fs::symlink_metadata(&root).await {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if cx.purpose() == SnapshotPurpose::Safety {
                    // Nothing to save: record that the directory did not exist, so that
                    // restoring this safety backup removes it again.
                    rec.set_details(&Details {
                        absent: true,
                        source: root.display().to_string(),
                        root_mode: 0,
                        root_mtime: MTime::default(),
                        root_owner: None,
                        fingerprint: String::new(),
                        stats: TreeStats::default(),
                        format: None,
                    })?;
                    stats_into(&mut rec, &TreeStats::default());
                    return Ok(rec);
                }
                return Err(self.err("snapshot", DirError::Missing(root)));
            }
            Err(e) => return Err(Error::io("inspect", root, e)),
            Ok(m) if !m.is_dir() => return Err(self.err("snapshot", DirError::NotADirectory(root))),
            Ok(_) => {}
        }
        let root_owner = {
            use std::os::unix::fs::MetadataExt;
            let m = tokio::fs::symlink_metadata(&root)
                .await
                .map_err(|e| Error::io("inspect", &root, e))?;
            Some((m.uid(), m.gid()))
        };
        self.refuse_repository_overlap("snapshot", &root, cx.repository())?;
        if self.chunked {
            return self.snapshot_chunked(cx, rec, root, root_owner).await;
        }
        cx.progress().set_phase("archiving");
        let writer = cx.create_artifact(ARTIFACT).await?;
        let bridge = SyncIoBridge::new(writer);
        // The paths of the files, beside the archive: the key set of `[[references]]`.
        let paths = SyncIoBridge::new(cx.create_artifact(PATHS).await?);
        let progress = cx.progress().clone();
        let r = root.clone();
        let (bridge, paths, summary) = tokio::task::spawn_blocking(move || {
            let out = BufWriter::with_capacity(IO_BUFFER, bridge);
            let mut paths = BufWriter::with_capacity(256 * 1024, paths);
            let (out, summary) = write_tree(&r, out, &progress, Some(&mut paths))?;
            let bridge = out.into_inner().map_err(|e| e.into_error())?;
            let paths = paths.into_inner().map_err(|e| e.into_error())?;
            Ok::<_, std::io::Error>((bridge, paths, summary))
        })
        .await
        .map_err(join_err)?
        .map_err(|e| Error::from_io("archive", &root, e))?;
        let artifact = bridge.into_inner().finish().await?;
        let paths = paths.into_inner().finish().await?;
        // The root's metadata the fingerprint was made with, not as it is now.
        let (root_mode, root_mtime) = match summary.root {
            Some(r) => r,
            None => root_meta(&root).map_err(|e| Error::io("inspect", &root, e))?,
        };
        rec.artifacts.push(artifact);
        rec.artifacts.push(paths);
        stats_into(&mut rec, &summary.stats);
        rec.warnings = summary.warnings;
        rec.set_details(&Details {
            absent: false,
            source: root.display().to_string(),
            root_mode,
            root_mtime,
            root_owner,
            fingerprint: summary.fingerprint,
            stats: summary.stats,
            format: None,
        })?;
        Ok(rec)
    }

    async fn snapshot_chunked(
        &self,
        cx: &SnapshotContext,
        mut rec: ComponentRecord,
        root: PathBuf,
        root_owner: Option<(u32, u32)>,
    ) -> Result<ComponentRecord> {
        cx.progress().set_phase("reading files");
        let root_meta = root_meta(&root).map_err(|e| Error::io("inspect", &root, e))?;
        let snap = super::chunked::backup::snapshot(cx, &mut rec, &root, root_meta).await?;
        let summary = snap.summary;
        stats_into(&mut rec, &summary.stats);
        rec.set_stat("files_read", snap.files_read);
        rec.set_stat("bytes_read", snap.bytes_read);
        rec.set_stat("files_unchanged", snap.files_unchanged);
        rec.set_stat("blobs", snap.blobs);
        rec.warnings = summary.warnings;
        rec.set_details(&Details {
            absent: false,
            source: root.display().to_string(),
            root_mode: root_meta.0,
            root_mtime: root_meta.1,
            root_owner,
            fingerprint: summary.fingerprint,
            stats: summary.stats,
            format: Some(super::chunked::index::FORMAT.to_string()),
        })?;
        Ok(rec)
    }

    /// The chunked format's index of `record`, if it is in that format.
    fn chunked_index<'r>(
        &self,
        record: &'r ComponentRecord,
        details: &Details,
    ) -> Result<Option<&'r crate::ArtifactRecord>> {
        match details.format.as_deref() {
            None => Ok(None),
            Some(super::chunked::index::FORMAT) => {
                record.artifact(super::chunked::index::INDEX).map(Some)
            }
            Some(other) => Err(Error::component(
                &self.name,
                self.kind,
                "read backup",
                format!("unknown backup format `{other}` (written by a newer amber-dr?)"),
            )),
        }
    }

    /// `quick`: the artifact is there with its size. `full`: every byte read and hashed, every
    /// entry decoded and checked for safety, counts and fingerprint compared with the record.
    pub async fn verify(
        &self,
        cx: &VerifyContext,
        record: &ComponentRecord,
        level: VerifyLevel,
    ) -> Result<VerifyReport> {
        let mut report = cx.verify_artifacts(record, VerifyLevel::Quick).await?;
        if level == VerifyLevel::Quick || !report.is_ok() {
            return Ok(report);
        }
        let details: Details = record.details()?;
        if details.absent {
            report
                .notes
                .push("the directory did not exist when this snapshot was taken".into());
            return Ok(report);
        }
        if let Some(index) = self.chunked_index(record, &details)?.cloned() {
            let reader = super::chunked::index::IndexReader::from_reader(
                cx.open_artifact(&index).await?,
                &index.path,
            )?;
            let res = super::chunked::restore::read_index(
                cx.repository(),
                reader,
                &index.path,
                super::chunked::restore::Mode::Check,
                (details.root_mode, details.root_mtime),
                cx.progress(),
            )
            .await;
            match res {
                Ok(summary) => compare_summary(&mut report, &index.path, &summary, &details),
                Err(e)
                    if e.is_damage()
                        || matches!(e, Error::Unsafe { .. } | Error::MissingArtifact { .. }) =>
                {
                    report.problems.push(e.to_string())
                }
                Err(e) => return Err(e),
            }
            return Ok(report);
        }
        let art = record.artifact(ARTIFACT)?.clone();
        let reader = cx.open_artifact(&art).await?;
        let bridge = SyncIoBridge::new(reader);
        let progress = cx.progress().clone();
        let path = art.path.clone();
        let res = tokio::task::spawn_blocking(move || {
            read_archive(
                BufReader::with_capacity(IO_BUFFER, bridge),
                &path,
                ReadMode::Check,
                details.root_mode,
                details.root_mtime,
                None,
                &progress,
            )
        })
        .await
        .map_err(join_err)?;
        let (summary, reader) = match res {
            Ok(x) => x,
            Err(e) if e.is_damage() || matches!(e, Error::Unsafe { .. }) => {
                report.problems.push(e.to_string());
                return Ok(report);
            }
            Err(e) => return Err(e),
        };
        // Drain to the end so that the stored length and SHA-256 are checked.
        if let Err(e) = reader.into_inner().into_inner().finish().await {
            report.problems.push(e.to_string());
            return Ok(report);
        }
        report.bytes_read += art.stored_size;
        compare_summary(&mut report, &art.path, &summary, &details);
        Ok(report)
    }

    /// Restore a record of [`Directory::snapshot`] into the directory (or `opts.target`):
    /// extracted into a staging directory, compared with the record, swapped in.
    pub async fn restore(
        &self,
        cx: &RestoreContext,
        record: &ComponentRecord,
        opts: &RestoreOptions,
    ) -> Result<RestoreReport> {
        let details: Details = record.details()?;
        self.refuse_items(opts)?;
        let target = self.restore_target(opts, cx.repository())?;
        let mut report = RestoreReport::default();
        let exists = tokio::fs::symlink_metadata(&target).await.is_ok();
        if opts.dry_run {
            report.actions.push(if details.absent {
                format!(
                    "remove `{}` (it did not exist when the backup was taken)",
                    target.display()
                )
            } else {
                format!(
                    "{} `{}` with {} files, {} directories, {} symlinks, {} bytes from `{}`",
                    if exists && swap::is_mount_point(&target) {
                        "replace the contents of the mount point"
                    } else if exists {
                        "replace"
                    } else {
                        "create"
                    },
                    target.display(),
                    details.stats.files,
                    details.stats.directories,
                    details.stats.symlinks,
                    details.stats.bytes,
                    details.source,
                )
            });
            return Ok(report);
        }
        if details.absent {
            swap::remove_dir(self.kind, &self.name, &target, exists).await?;
            report
                .actions
                .push(format!("removed `{}`", target.display()));
            return Ok(report);
        }

        let summary = swap::replace_dir(
            self.kind,
            &self.name,
            &target,
            exists,
            &mut report,
            |staging| async move { self.extract_and_check(cx, record, &details, &staging).await },
        )
        .await?;
        report_restored(&mut report, &target, &summary, "the backup");
        Ok(report)
    }

    /// The prepare phase of a restore (see [`crate::Component::stage`]): the artifact
    /// extracted into a staging directory beside the target and compared with the record; the
    /// commit only swaps it in. `None` (nothing to stage) for a dry run and for a record of a
    /// directory that did not exist (its restore removes the target).
    pub async fn stage(
        &self,
        cx: &RestoreContext,
        record: &ComponentRecord,
        opts: &RestoreOptions,
    ) -> Result<Option<Box<dyn crate::StagedRestore>>> {
        let details: Details = record.details()?;
        self.refuse_items(opts)?;
        if opts.dry_run || details.absent {
            return Ok(None);
        }
        let target = self.restore_target(opts, cx.repository())?;
        let mut report = RestoreReport::default();
        let (dir, stats) = swap::stage_dir(
            self.kind,
            &self.name,
            &target,
            &mut report,
            |staging| async move { self.extract_and_check(cx, record, &details, &staging).await },
        )
        .await?;
        Ok(Some(Box::new(StagedTree { dir, stats, report })))
    }

    /// Extract the artifact into `staging`, drain it (hash check), apply the root's metadata
    /// and compare the tree on disk with the record.
    async fn extract_and_check(
        &self,
        cx: &RestoreContext,
        record: &ComponentRecord,
        details: &Details,
        staging: &Path,
    ) -> Result<TreeStats> {
        cx.progress().set_phase("extracting");
        if let Some(index) = self.chunked_index(record, details)?.cloned() {
            cx.progress().set_total_bytes(details.stats.bytes);
            let reader = super::chunked::index::IndexReader::from_reader(
                cx.open_artifact(&index).await?,
                &index.path,
            )?;
            super::chunked::restore::read_index(
                cx.repository(),
                reader,
                &index.path,
                super::chunked::restore::Mode::Extract(staging),
                (details.root_mode, details.root_mtime),
                cx.progress(),
            )
            .await?;
            return self.check_staged(staging, details).await;
        }
        let art = record.artifact(ARTIFACT)?.clone();
        cx.progress().set_total_bytes(art.size);
        let reader = cx.open_artifact(&art).await?;
        let bridge = SyncIoBridge::new(reader);
        let progress = cx.progress().clone();
        let (st, path) = (staging.to_path_buf(), art.path.clone());
        let (root_mode, root_mtime) = (details.root_mode, details.root_mtime);
        let (_, reader) = tokio::task::spawn_blocking(move || {
            read_archive(
                BufReader::with_capacity(IO_BUFFER, bridge),
                &path,
                ReadMode::Extract(&st),
                root_mode,
                root_mtime,
                None,
                &progress,
            )
        })
        .await
        .map_err(join_err)??;
        reader.into_inner().into_inner().finish().await?;
        self.check_staged(staging, details).await
    }

    /// Apply the root's metadata to the staging directory and compare its tree with the record.
    async fn check_staged(&self, staging: &Path, details: &Details) -> Result<TreeStats> {
        let (root_mode, root_mtime) = (details.root_mode, details.root_mtime);
        let root_owner = details.root_owner;
        let st = staging.to_path_buf();
        let scanned = tokio::task::spawn_blocking(move || {
            if let Some((uid, gid)) = root_owner {
                // Best effort, like every entry's owner: only root may give a directory away.
                match std::os::unix::fs::lchown(&st, Some(uid), Some(gid)) {
                    Err(e) if e.kind() != std::io::ErrorKind::PermissionDenied => return Err(e),
                    _ => {}
                }
            }
            apply_root_meta(&st, root_mode, root_mtime)?;
            scan_tree(&st)
        })
        .await
        .map_err(join_err)?
        .map_err(|e| Error::io("scan restored tree", staging, e))?;
        if scanned.fingerprint != details.fingerprint || scanned.stats != details.stats {
            return Err(self.err(
                "restore",
                DirError::Mismatch(format!(
                    "on disk {:?}, in the record {:?}; the old directory is unchanged",
                    scanned.stats, details.stats
                )),
            ));
        }
        Ok(scanned.stats)
    }
}

/// Compare a decoded tree with the record: a problem, or a note of what matched.
fn compare_summary(
    report: &mut VerifyReport,
    artifact: &str,
    summary: &super::tree::TreeSummary,
    details: &Details,
) {
    if summary.fingerprint != details.fingerprint || summary.stats != details.stats {
        report.problems.push(format!(
            "artifact `{artifact}` decodes to a tree that differs from the record ({:?} vs {:?})",
            summary.stats, details.stats
        ));
    } else {
        report.notes.push(format!(
            "{} files, {} directories, {} symlinks, {} bytes decoded and match the record",
            summary.stats.files,
            summary.stats.directories,
            summary.stats.symlinks,
            summary.stats.bytes
        ));
    }
}

fn stats_into(rec: &mut ComponentRecord, s: &TreeStats) {
    rec.set_stat("files", s.files);
    rec.set_stat("directories", s.directories);
    rec.set_stat("symlinks", s.symlinks);
    rec.set_stat("bytes", s.bytes);
}

/// A tree extracted and checked in its staging directory ([`Directory::stage`]).
struct StagedTree {
    dir: swap::StagedDir,
    stats: TreeStats,
    report: RestoreReport,
}

#[async_trait::async_trait]
impl crate::StagedRestore for StagedTree {
    async fn commit(self: Box<Self>) -> Result<RestoreReport> {
        let StagedTree {
            dir,
            stats,
            mut report,
        } = *self;
        let target = dir.target().to_path_buf();
        let exists = tokio::fs::symlink_metadata(&target).await.is_ok();
        dir.swap_in(exists, &mut report).await?;
        report_restored(
            &mut report,
            &target,
            &stats,
            "the backup (staged in the prepare phase)",
        );
        Ok(report)
    }
}

/// Actions and stats of a restored tree.
pub(super) fn report_restored(
    report: &mut RestoreReport,
    target: &Path,
    summary: &TreeStats,
    from: &str,
) {
    report.actions.push(format!(
        "restored `{}` from {from}: {} files, {} directories, {} symlinks, {} bytes",
        target.display(),
        summary.files,
        summary.directories,
        summary.symlinks,
        summary.bytes
    ));
    report.stats.insert("files".into(), summary.files.into());
    report
        .stats
        .insert("directories".into(), summary.directories.into());
    report
        .stats
        .insert("symlinks".into(), summary.symlinks.into());
    report.stats.insert("bytes".into(), summary.bytes.into());
}

pub(super) fn join_err(e: tokio::task::JoinError) -> Error {
    Error::Other(format!("files worker failed: {e}"))
}

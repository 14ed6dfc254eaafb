//! The `files` component.

use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};

use amber_dr_core::{
    async_trait, Capabilities, Component, ComponentRecord, Error, Probe, RestoreContext,
    RestoreOptions, RestoreReport, Result, SnapshotContext, SnapshotPurpose, VerifyContext,
    VerifyLevel, VerifyReport,
};
use serde::{Deserialize, Serialize};
use tokio_util::io::SyncIoBridge;

use amber_dr_core::paths;

use crate::archive::{self, MTime, ReadMode, TreeStats};
use crate::config::FilesConfig;
use crate::error::FilesError;

const ARTIFACT: &str = "files.tar";
/// The runbook's archive of the uploads directory (`tar czf`).
const LEGACY_ARCHIVE: &str = "uploads.tar.gz";
const IO_BUFFER: usize = 1024 * 1024;

/// What the record keeps beyond stats: enough to rebuild and check the tree.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Details {
    /// The directory did not exist when the (safety) snapshot was taken.
    absent: bool,
    /// The directory backed up.
    source: String,
    root_mode: u32,
    root_mtime: MTime,
    /// SHA-256 over every entry's path, type, mode, size, mtime and link target.
    fingerprint: String,
    stats: TreeStats,
}

/// A directory on disk. See the crate docs.
#[derive(Debug, Clone)]
pub struct Files {
    name: String,
    config: FilesConfig,
    /// The kind its records and errors carry: `files`, or the driver it is embedded in.
    kind: &'static str,
}

impl Files {
    /// A `files` component named `name`.
    pub fn new(name: impl Into<String>, config: FilesConfig) -> Self {
        Self {
            name: name.into(),
            config,
            kind: crate::KIND,
        }
    }

    /// The directory of another driver's store (MinIO's data volume), handled with this
    /// driver's mechanism on that driver's behalf: snapshot, verify and restore work as for a
    /// `files` component, but records are written with kind `kind` and errors name it, so the
    /// embedding driver can hand its own records over (see [`Files::owns_record`]).
    pub fn embedded(kind: &'static str, name: impl Into<String>, config: FilesConfig) -> Self {
        Self {
            name: name.into(),
            config,
            kind,
        }
    }

    /// True if `record` was written by a snapshot of this driver (a [`Files::embedded`] one
    /// included): its details describe a directory tree. Lets an embedding driver tell its
    /// directory records from its own.
    pub fn owns_record(record: &ComponentRecord) -> bool {
        record.details::<Details>().is_ok()
    }

    fn err(&self, op: &str, e: FilesError) -> Error {
        e.into_core(&self.name, self.kind, op)
    }

    /// Refuse a directory that holds the local repository or lies inside it: backing it up
    /// would archive the backups themselves, and restoring it would replace them.
    fn refuse_repository_overlap(
        &self,
        op: &str,
        dir: &Path,
        repo: &amber_dr_core::Repository,
    ) -> Result<()> {
        if let Some(r) = repo.local_root() {
            let r = resolved(r);
            if overlaps(dir, &r) {
                return Err(Error::config(
                    format!("{op} of `{}`", self.name),
                    format!(
                        "directory `{}` overlaps the backup repository `{}`; keep the repository outside the directories it backs up (and restores)",
                        dir.display(),
                        r.display()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Where a restore writes, checked so that it can never replace `/`, the repository,
    /// the live directory (when restoring elsewhere), or something that is not a directory.
    fn restore_target(
        &self,
        opts: &RestoreOptions,
        repo: &amber_dr_core::Repository,
    ) -> Result<PathBuf> {
        let root = self.root();
        let target = match &opts.target {
            Some(t) if t.trim().is_empty() => {
                return Err(Error::config(
                    format!("restore of `{}`", self.name),
                    "the target directory is empty",
                ))
            }
            Some(t) => resolved(Path::new(t)),
            None => root.clone(),
        };
        let refuse = |why: String| Err(Error::config(format!("restore of `{}`", self.name), why));
        if paths::is_system_dir(&target) {
            return refuse(format!(
                "refusing to restore into `{}`: a restore replaces its target whole, and this is a system directory",
                target.display()
            ));
        }
        self.refuse_repository_overlap("restore", &target, repo)?;
        if opts.target.is_some() && target != root && overlaps(&target, &root) {
            return refuse(format!(
                "target `{}` overlaps the configured directory `{}`; restore beside it, not into or over it",
                target.display(),
                root.display()
            ));
        }
        if let Ok(m) = std::fs::symlink_metadata(&target) {
            if !m.is_dir() {
                return refuse(format!(
                    "target `{}` exists and is not a directory; refusing to replace it",
                    target.display()
                ));
            }
        }
        let protected: Vec<_> = (self.config.config_dir.iter())
            .map(|d| ("the config file's directory", resolved(d)))
            .collect();
        match &opts.target {
            Some(raw) => {
                if let Err(why) =
                    paths::refuse_restore_dir(Path::new(raw), &target, opts.force, &protected)
                {
                    return refuse(why);
                }
            }
            None if protected.iter().any(|(_, p)| p.starts_with(&target)) => {
                return refuse(format!(
                    "refusing to restore into `{}`: a restore replaces it whole, and it holds the config file",
                    target.display()
                ));
            }
            None => {}
        }
        Ok(target)
    }

    /// The directory, with a symlinked root resolved (a link to the data is followed once).
    fn root(&self) -> PathBuf {
        resolved(&self.config.path)
    }
}

/// `p` made absolute with symlinks resolved as far as it exists (a path that does not exist
/// yet is resolved through its parent), so that overlap checks compare real locations.
fn resolved(p: &Path) -> PathBuf {
    if let Ok(c) = std::fs::canonicalize(p) {
        return c;
    }
    let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    match (abs.parent(), abs.file_name()) {
        (Some(parent), Some(name)) => std::fs::canonicalize(parent)
            .map(|c| c.join(name))
            .unwrap_or(abs),
        _ => abs,
    }
}

/// One directory is the other or lies inside it.
fn overlaps(a: &Path, b: &Path) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

fn stats_into(rec: &mut ComponentRecord, s: &TreeStats) {
    rec.set_stat("files", s.files);
    rec.set_stat("directories", s.directories);
    rec.set_stat("symlinks", s.symlinks);
    rec.set_stat("bytes", s.bytes);
}

/// Actions and stats of a restored tree.
fn report_restored(report: &mut RestoreReport, target: &Path, summary: &TreeStats, from: &str) {
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

fn join_err(e: tokio::task::JoinError) -> Error {
    Error::Other(format!("files worker failed: {e}"))
}

#[async_trait]
impl Component for Files {
    fn kind(&self) -> &'static str {
        self.kind
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
            .restore_parts(false)
            .deep_verify(true)
    }

    async fn probe(&self) -> Result<Probe> {
        let root = self.root();
        let r = root.clone();
        let summary = tokio::task::spawn_blocking(move || archive::scan_tree(&r))
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
                        std::io::ErrorKind::NotFound => FilesError::Missing(root),
                        _ => FilesError::Mismatch(format!("cannot read `{}`: {e}", root.display())),
                    },
                ))
            }
        }
        Ok(p)
    }

    async fn snapshot(&self, cx: &SnapshotContext) -> Result<ComponentRecord> {
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
                        fingerprint: String::new(),
                        stats: TreeStats::default(),
                    })?;
                    stats_into(&mut rec, &TreeStats::default());
                    return Ok(rec);
                }
                return Err(self.err("snapshot", FilesError::Missing(root)));
            }
            Err(e) => return Err(Error::io("inspect", root, e)),
            Ok(m) if !m.is_dir() => {
                return Err(self.err("snapshot", FilesError::NotADirectory(root)))
            }
            Ok(_) => {}
        }
        self.refuse_repository_overlap("snapshot", &root, cx.repository())?;
        cx.progress().set_phase("archiving");
        let writer = cx.create_artifact(ARTIFACT).await?;
        let bridge = SyncIoBridge::new(writer);
        let progress = cx.progress().clone();
        let r = root.clone();
        let (bridge, summary) = tokio::task::spawn_blocking(move || {
            let out = BufWriter::with_capacity(IO_BUFFER, bridge);
            let (out, summary) = archive::write_tree(&r, out, &progress)?;
            let bridge = out.into_inner().map_err(|e| e.into_error())?;
            Ok::<_, std::io::Error>((bridge, summary))
        })
        .await
        .map_err(join_err)?
        .map_err(|e| Error::from_io("archive", &root, e))?;
        let artifact = bridge.into_inner().finish().await?;
        // The root's metadata the fingerprint was made with, not as it is now.
        let (root_mode, root_mtime) = match summary.root {
            Some(r) => r,
            None => archive::root_meta(&root).map_err(|e| Error::io("inspect", &root, e))?,
        };
        rec.artifacts.push(artifact);
        stats_into(&mut rec, &summary.stats);
        rec.warnings = summary.warnings;
        rec.set_details(&Details {
            absent: false,
            source: root.display().to_string(),
            root_mode,
            root_mtime,
            fingerprint: summary.fingerprint,
            stats: summary.stats,
        })?;
        Ok(rec)
    }

    async fn verify(
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
        let art = record.artifact(ARTIFACT)?.clone();
        let reader = cx.open_artifact(&art).await?;
        let bridge = SyncIoBridge::new(reader);
        let progress = cx.progress().clone();
        let path = art.path.clone();
        let res = tokio::task::spawn_blocking(move || {
            archive::read_archive(
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
        if summary.fingerprint != details.fingerprint || summary.stats != details.stats {
            report.problems.push(format!(
                "artifact `{}` decodes to a tree that differs from the record ({:?} vs {:?})",
                art.path, summary.stats, details.stats
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
        Ok(report)
    }

    fn legacy_files(&self) -> Vec<&'static str> {
        vec![LEGACY_ARCHIVE]
    }

    /// The runbook's `uploads.tar.gz` (`tar czf` of the directory, with or without its own
    /// name or a longer path as prefix): see [`Files::restore_foreign_archive`].
    async fn restore_legacy(
        &self,
        cx: &RestoreContext,
        file: &Path,
        opts: &RestoreOptions,
    ) -> Result<RestoreReport> {
        self.restore_foreign_archive(cx, file, opts, &["uploads"])
            .await
    }
    async fn restore(
        &self,
        cx: &RestoreContext,
        record: &ComponentRecord,
        opts: &RestoreOptions,
    ) -> Result<RestoreReport> {
        let details: Details = record.details()?;
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
                    if exists { "replace" } else { "create" },
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
        let parent = target
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let Some(name) = target.file_name().map(|n| n.to_string_lossy().into_owned()) else {
            return Err(self.err("restore", FilesError::NoParent(target)));
        };
        let pid = std::process::id();
        let aside = parent.join(format!(".{name}.amber-dr-old-{pid}"));

        if details.absent {
            if exists {
                tokio::fs::rename(&target, &aside).await.map_err(|source| {
                    self.err(
                        "restore",
                        FilesError::Swap {
                            path: target.clone(),
                            source,
                        },
                    )
                })?;
                tokio::fs::remove_dir_all(&aside)
                    .await
                    .map_err(|e| Error::io("remove old directory", &aside, e))?;
            }
            report
                .actions
                .push(format!("removed `{}`", target.display()));
            return Ok(report);
        }

        let summary = self
            .replace_dir(&target, exists, &mut report, |staging| async move {
                self.extract_and_check(cx, record, &details, &staging).await
            })
            .await?;
        report_restored(&mut report, &target, &summary, "the backup");
        Ok(report)
    }
}

impl Files {
    /// Replace the directory with the tree of a gzip-compressed tar archive written by another
    /// tool (`tar czf`, e.g. the shell runbook's `uploads.tar.gz` or `minio_data.tar.gz`).
    ///
    /// The archive may hold the tree as `./...`, under one directory (`uploads/...`) or under a
    /// longer path (`srv/amber/uploads/...`): the longest directory prefix common to every
    /// entry, cut after its last component named like the target directory, the configured
    /// directory or one of `root_names`, is the tree's root. `file` is read through once
    /// first (gzip and tar framing, every path checked: no absolute paths, no `..`), then
    /// extracted into a staging directory beside the target with every safety check of an
    /// amber-dr archive (nothing written through symlinks or outside the staging directory),
    /// compared with what the archive held (counts and bytes), and swapped in with two
    /// renames. A damaged, truncated or hostile archive fails before the swap and leaves the
    /// old directory as it was. `opts.target` restores into another directory; `opts.dry_run`
    /// only reads the archive through and says what would be done.
    pub async fn restore_foreign_archive(
        &self,
        cx: &RestoreContext,
        file: &Path,
        opts: &RestoreOptions,
        root_names: &[&str],
    ) -> Result<RestoreReport> {
        let target = self.restore_target(opts, cx.repository())?;
        let exists = tokio::fs::symlink_metadata(&target).await.is_ok();
        let mut report = RestoreReport::default();
        let open = |file: &Path| -> Result<flate2::read::MultiGzDecoder<BufReader<std::fs::File>>> {
            let f = std::fs::File::open(file).map_err(|e| Error::io("open", file, e))?;
            Ok(flate2::read::MultiGzDecoder::new(BufReader::with_capacity(
                IO_BUFFER, f,
            )))
        };
        cx.progress().set_phase("reading runbook archive");
        let names: Vec<std::ffi::OsString> = [
            target.file_name().map(|n| n.to_os_string()),
            self.config.path.file_name().map(|n| n.to_os_string()),
        ]
        .into_iter()
        .flatten()
        .chain(root_names.iter().map(std::ffi::OsString::from))
        .collect();
        let (f, label) = (file.to_path_buf(), file.display().to_string());
        let layout = tokio::task::spawn_blocking(move || {
            let refs: Vec<&std::ffi::OsStr> = names.iter().map(|n| n.as_os_str()).collect();
            crate::foreign::foreign_layout(open(&f)?, &label, &refs)
        })
        .await
        .map_err(join_err)??;
        if opts.dry_run {
            report.actions.push(format!(
                "{} `{}` with the {} entries of runbook archive `{}`{}",
                if exists { "replace" } else { "create" },
                target.display(),
                layout.entries,
                file.display(),
                layout
                    .strip
                    .as_ref()
                    .map(|p| format!(" under `{}/`", p.display()))
                    .unwrap_or_default()
            ));
            return Ok(report);
        }
        let (root_mode, root_mtime) = layout.root.unwrap_or((0o755, MTime::default()));
        let summary = self
            .replace_dir(&target, exists, &mut report, |staging| {
                let (f, label, strip) = (
                    file.to_path_buf(),
                    file.display().to_string(),
                    layout.strip.clone(),
                );
                let progress = cx.progress().clone();
                async move {
                    cx.progress().set_phase("extracting runbook archive");
                    let st = staging.clone();
                    let from_archive = tokio::task::spawn_blocking(move || {
                        let (summary, mut rest) = archive::read_archive(
                            open(&f)?,
                            &label,
                            ReadMode::Extract(&st),
                            root_mode,
                            root_mtime,
                            strip.as_deref(),
                            &progress,
                        )?;
                        // To the end of the gzip stream, so that its CRC is checked.
                        std::io::copy(&mut rest, &mut std::io::sink()).map_err(|e| {
                            Error::Corrupt {
                                artifact: label.clone(),
                                message: format!("damaged gzip stream: {e}"),
                            }
                        })?;
                        Ok::<_, Error>(summary)
                    })
                    .await
                    .map_err(join_err)??;
                    let st = staging.clone();
                    let on_disk = tokio::task::spawn_blocking(move || {
                        archive::apply_root_meta(&st, root_mode, root_mtime)?;
                        archive::scan_tree(&st)
                    })
                    .await
                    .map_err(join_err)?
                    .map_err(|e| Error::io("scan restored tree", &staging, e))?;
                    if on_disk.stats != from_archive.stats {
                        return Err(self.err(
                            "restore",
                            FilesError::Mismatch(format!(
                                "on disk {:?}, in the archive {:?}; the old directory is unchanged",
                                on_disk.stats, from_archive.stats
                            )),
                        ));
                    }
                    Ok(on_disk.stats)
                }
            })
            .await?;
        report_restored(
            &mut report,
            &target,
            &summary,
            &format!("runbook archive `{}`", file.display()),
        );
        Ok(report)
    }
}

impl Files {
    /// Fill a staging directory beside `target` with `fill`, then swap it in: target → aside,
    /// staging → target (undone if the second rename fails), aside removed. A failed `fill`
    /// removes the staging directory and leaves the target as it was.
    async fn replace_dir<F, Fut>(
        &self,
        target: &Path,
        exists: bool,
        report: &mut RestoreReport,
        fill: F,
    ) -> Result<TreeStats>
    where
        F: FnOnce(PathBuf) -> Fut,
        Fut: std::future::Future<Output = Result<TreeStats>>,
    {
        let parent = target
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let Some(name) = target.file_name().map(|n| n.to_string_lossy().into_owned()) else {
            return Err(self.err("restore", FilesError::NoParent(target.to_path_buf())));
        };
        if !parent.is_dir() {
            return Err(self.err("restore", FilesError::NoParent(target.to_path_buf())));
        }
        let pid = std::process::id();
        let aside = parent.join(format!(".{name}.amber-dr-old-{pid}"));
        let staging = parent.join(format!(".{name}.amber-dr-staging-{pid}"));
        self.clear_leftovers(&parent, &name, report).await?;
        tokio::fs::create_dir(&staging)
            .await
            .map_err(|e| Error::io("create staging directory", &staging, e))?;
        let result = fill(staging.clone()).await;
        let summary = match result {
            Ok(s) => s,
            Err(e) => {
                let _ = tokio::fs::remove_dir_all(&staging).await;
                return Err(e);
            }
        };
        if exists {
            if let Err(source) = tokio::fs::rename(target, &aside).await {
                let _ = tokio::fs::remove_dir_all(&staging).await;
                return Err(self.err(
                    "restore",
                    FilesError::Swap {
                        path: target.to_path_buf(),
                        source,
                    },
                ));
            }
        }
        if let Err(source) = tokio::fs::rename(&staging, target).await {
            if exists {
                let _ = tokio::fs::rename(&aside, target).await;
            }
            let _ = tokio::fs::remove_dir_all(&staging).await;
            return Err(self.err(
                "restore",
                FilesError::Swap {
                    path: target.to_path_buf(),
                    source,
                },
            ));
        }
        if exists {
            if let Err(e) = tokio::fs::remove_dir_all(&aside).await {
                report.warnings.push(format!(
                    "restored, but the old directory `{}` could not be removed: {e}",
                    aside.display()
                ));
            }
        }
        Ok(summary)
    }

    /// Remove staging directories of earlier restores whose process is gone (an interrupted
    /// restore), and point out directories set aside by a restore that died between its two
    /// renames: those may hold the only copy of the old data, so they are never deleted here.
    async fn clear_leftovers(
        &self,
        parent: &Path,
        name: &str,
        report: &mut RestoreReport,
    ) -> Result<()> {
        let staging_prefix = format!(".{name}.amber-dr-staging-");
        let old_prefix = format!(".{name}.amber-dr-old-");
        let mut rd = match tokio::fs::read_dir(parent).await {
            Ok(rd) => rd,
            Err(e) => return Err(Error::io("list", parent, e)),
        };
        while let Ok(Some(e)) = rd.next_entry().await {
            let n = e.file_name().to_string_lossy().into_owned();
            let pid_of = |prefix: &str| n.strip_prefix(prefix).and_then(|p| p.parse::<u32>().ok());
            if let Some(pid) = pid_of(&staging_prefix) {
                if pid == std::process::id() || !Path::new(&format!("/proc/{pid}")).exists() {
                    tokio::fs::remove_dir_all(e.path()).await.map_err(|err| {
                        Error::io("remove stale staging directory", e.path(), err)
                    })?;
                }
            } else if pid_of(&old_prefix).is_some_and(|pid| pid != std::process::id()) {
                report.warnings.push(format!(
                    "`{}` was set aside by an interrupted restore and may hold older data; remove it when it is no longer needed",
                    e.path().display()
                ));
            }
        }
        Ok(())
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
        let art = record.artifact(ARTIFACT)?.clone();
        cx.progress().set_phase("extracting");
        cx.progress().set_total_bytes(art.size);
        let reader = cx.open_artifact(&art).await?;
        let bridge = SyncIoBridge::new(reader);
        let progress = cx.progress().clone();
        let (st, path) = (staging.to_path_buf(), art.path.clone());
        let (root_mode, root_mtime) = (details.root_mode, details.root_mtime);
        let (_, reader) = tokio::task::spawn_blocking(move || {
            archive::read_archive(
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

        cx.progress().set_phase("comparing");
        let st = staging.to_path_buf();
        let scanned = tokio::task::spawn_blocking(move || {
            archive::apply_root_meta(&st, root_mode, root_mtime)?;
            archive::scan_tree(&st)
        })
        .await
        .map_err(join_err)?
        .map_err(|e| Error::io("scan restored tree", staging, e))?;
        if scanned.fingerprint != details.fingerprint || scanned.stats != details.stats {
            return Err(self.err(
                "restore",
                FilesError::Mismatch(format!(
                    "on disk {:?}, in the record {:?}; the old directory is unchanged",
                    scanned.stats, details.stats
                )),
            ));
        }
        Ok(scanned.stats)
    }
}

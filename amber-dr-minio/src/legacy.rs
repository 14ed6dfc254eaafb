//! MinIO's data directory: the shell runbook's `minio_data.tar.gz` (a `tar czf` of MinIO's
//! data volume) restored into the config's `legacy_data_dir`, and the safety backup taken of
//! that directory while MinIO is stopped for it.
//!
//! The directory work itself (safe extraction, staging, swap, tree archives) is core's
//! ([`Directory`], `amber_dr_core::archive`), the same the `files` driver uses; this module
//! decides when it applies and makes sure MinIO is not running while its files are replaced.

use std::net::ToSocketAddrs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use amber_dr_core::archive::Directory;
use amber_dr_core::{
    Component, ComponentRecord, Error, RestoreContext, RestoreOptions, RestoreReport, Result,
    SnapshotContext, SnapshotPurpose, VerifyContext, VerifyLevel, VerifyReport,
};

use crate::{Minio, KIND};

/// The runbook's archive of MinIO's data volume.
pub(crate) use crate::RUNBOOK_FILE as LEGACY_ARCHIVE;
/// Names the volume's root may have inside the archive besides the data directory's own:
/// `data/` (`tar czf ... /data` in a container that mounts the volume at `/data`) and `_data/`
/// (`tar czf ... -C /var/lib/docker/volumes/<volume> _data`).
const ROOT_NAMES: &[&str] = &["data", "_data"];
/// How long a TCP connect to the endpoint may take before it counts as not answering.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

impl Minio {
    /// The data directory as a directory tree of this component, if configured.
    fn data_dir(&self) -> Option<(PathBuf, Directory)> {
        let dir = self.config().legacy_data_dir.clone()?;
        let tree = Directory::new(KIND, self.name(), &dir);
        Some((dir, tree))
    }

    fn legacy_err(&self, operation: &str, message: String) -> Error {
        Error::component(self.name(), KIND, operation, message)
    }

    /// Whether something accepts TCP connections at the endpoint's host and port (any answer
    /// counts: MinIO is running). A refused or timed-out connection, or a host that does not
    /// resolve, counts as not answering.
    pub(crate) async fn endpoint_answers(&self) -> bool {
        let Ok(url) = reqwest::Url::parse(&self.config().endpoint) else {
            return false;
        };
        let (Some(host), Some(port)) = (
            url.host_str().map(str::to_string),
            url.port_or_known_default(),
        ) else {
            return false;
        };
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        tokio::task::spawn_blocking(move || {
            let Ok(addrs) = (host.as_str(), port).to_socket_addrs() else {
                return false;
            };
            addrs
                .into_iter()
                .any(|a| std::net::TcpStream::connect_timeout(&a, CONNECT_TIMEOUT).is_ok())
        })
        .await
        .unwrap_or(false)
    }

    /// Refuse to touch the data directory while MinIO serves it. Replacing the files of a
    /// running MinIO corrupts what it holds in memory and what it writes meanwhile.
    async fn refuse_running(&self, operation: &str, dir: &Path) -> Result<()> {
        if self.endpoint_answers().await {
            return Err(self.legacy_err(
                operation,
                format!(
                    "MinIO still answers at {} and would be running while its data directory `{}` is replaced; nothing was changed. Stop MinIO first, or list its container under [docker] stop_during_runbook_restore so that amber-dr stops it for the restore and starts it again after",
                    self.config().endpoint,
                    dir.display()
                ),
            ));
        }
        Ok(())
    }

    /// The runbook file this driver restores: only with `legacy_data_dir` configured.
    pub(crate) fn legacy_data_files(&self) -> Vec<&'static str> {
        if self.config().legacy_data_dir.is_some() {
            vec![LEGACY_ARCHIVE]
        } else {
            Vec::new()
        }
    }

    /// Without `legacy_data_dir`: what to set to restore `minio_data.tar.gz`.
    pub(crate) fn legacy_data_hints(&self) -> Vec<(&'static str, String)> {
        if self.config().legacy_data_dir.is_some() {
            return Vec::new();
        }
        vec![(
            LEGACY_ARCHIVE,
            "set `legacy_data_dir` to MinIO's data directory on this host (e.g. /var/lib/docker/volumes/amber_minio_data/_data) to restore it"
                .into(),
        )]
    }

    /// Before anything changes: MinIO must be stopped when its own data directory is the
    /// target (a `--target` directory is a drill beside it).
    pub(crate) async fn check_legacy_data(&self, file: &Path, opts: &RestoreOptions) -> Result<()> {
        let Some((dir, _)) = self.data_dir() else {
            return Err(self.no_data_dir(file));
        };
        if opts.target.is_none() {
            self.refuse_running("restore", &dir).await?;
        }
        Ok(())
    }

    fn no_data_dir(&self, file: &Path) -> Error {
        self.legacy_err(
            "restore",
            format!(
                "`{}` is an archive of MinIO's data directory: set `legacy_data_dir` in [components.{}] to restore it",
                file.display(),
                self.name()
            ),
        )
    }

    /// Extract the runbook's `minio_data.tar.gz` into the data directory (see the crate docs).
    pub(crate) async fn restore_legacy_data(
        &self,
        cx: &RestoreContext,
        file: &Path,
        opts: &RestoreOptions,
    ) -> Result<RestoreReport> {
        let Some((dir, tree)) = self.data_dir() else {
            return Err(self.no_data_dir(file));
        };
        let running_note = self.dry_run_note(opts, &dir).await;
        if !opts.dry_run && opts.target.is_none() {
            // Checked again right before the extraction (the runner checked before the
            // safety backup): MinIO may have been started in between.
            self.refuse_running("restore", &dir).await?;
        }
        let mut report = tree
            .restore_foreign_archive(cx, file, opts, ROOT_NAMES)
            .await?;
        report.warnings.extend(running_note);
        if !opts.dry_run && opts.target.is_none() {
            report.warnings.push(format!(
                "MinIO's data directory `{}` was replaced: start MinIO (a container that bind-mounts it must be restarted)",
                dir.display()
            ));
        }
        Ok(report)
    }

    /// In a dry run, say that MinIO must be stopped if it answers now.
    async fn dry_run_note(&self, opts: &RestoreOptions, dir: &Path) -> Option<String> {
        (opts.dry_run && opts.target.is_none() && self.endpoint_answers().await).then(|| {
            format!(
                "MinIO answers at {} now: it must be stopped while `{}` is replaced (list its container under [docker] stop_during_runbook_restore, or stop it), else the restore is refused",
                self.config().endpoint,
                dir.display()
            )
        })
    }

    /// A safety snapshot taken while MinIO's endpoint does not answer (stopped for a restore
    /// of its data directory): an archive of the data directory (core's [`Directory`]).
    /// `None`: take the ordinary S3 snapshot.
    pub(crate) async fn data_dir_safety_snapshot(
        &self,
        cx: &SnapshotContext,
    ) -> Result<Option<ComponentRecord>> {
        if cx.purpose() != SnapshotPurpose::Safety {
            return Ok(None);
        }
        let Some((dir, tree)) = self.data_dir() else {
            return Ok(None);
        };
        if self.endpoint_answers().await {
            return Ok(None);
        }
        let mut rec = tree.snapshot(cx).await?;
        rec.warnings.push(format!(
            "MinIO did not answer at {}: this safety backup is an archive of its data directory `{}`; restore it with MinIO stopped",
            self.config().endpoint,
            dir.display()
        ));
        Ok(Some(rec))
    }

    /// Verify a data-directory record (see [`Self::data_dir_safety_snapshot`]); `None` for an
    /// ordinary record.
    pub(crate) async fn verify_data_dir(
        &self,
        cx: &VerifyContext,
        record: &ComponentRecord,
        level: VerifyLevel,
    ) -> Result<Option<VerifyReport>> {
        if !Directory::owns_record(record) {
            return Ok(None);
        }
        let dir = self
            .config()
            .legacy_data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(recorded_source(record)));
        let tree = Directory::new(KIND, self.name(), dir);
        let mut report = tree.verify(cx, record, level).await?;
        report
            .notes
            .push("an archive of MinIO's data directory (taken while MinIO was stopped)".into());
        Ok(Some(report))
    }

    /// Restore a data-directory record into the data directory, MinIO stopped; `None` for an
    /// ordinary record.
    pub(crate) async fn restore_data_dir(
        &self,
        cx: &RestoreContext,
        record: &ComponentRecord,
        opts: &RestoreOptions,
    ) -> Result<Option<RestoreReport>> {
        if !Directory::owns_record(record) {
            return Ok(None);
        }
        let Some((dir, tree)) = self.data_dir() else {
            return Err(self.legacy_err(
                "restore",
                format!(
                    "this snapshot is an archive of MinIO's data directory `{}` (taken while MinIO was stopped); set `legacy_data_dir` in [components.{}] to restore it",
                    recorded_source(record),
                    self.name()
                ),
            ));
        };
        let running_note = self.dry_run_note(opts, &dir).await;
        if !opts.dry_run && opts.target.is_none() {
            self.refuse_running("restore", &dir).await?;
        }
        let mut report = tree.restore(cx, record, opts).await?;
        report.warnings.extend(running_note);
        Ok(Some(report))
    }
}

/// The directory a data-directory record was taken from, as recorded.
fn recorded_source(record: &ComponentRecord) -> String {
    record
        .details
        .get("source")
        .and_then(|s| s.as_str())
        .unwrap_or("?")
        .to_string()
}

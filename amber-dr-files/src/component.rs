//! The `files` component: a directory on disk, handled by core's directory-tree mechanism
//! ([`amber_dr_core::archive::Directory`] in its chunked, content-addressed, incremental
//! format; exact metadata, hostile-input guards, staged swap; older tar backups still read). This driver adds the config, the capabilities and the runbook's
//! `uploads.tar.gz`.

use std::path::Path;

use amber_dr_core::archive::Directory;
use amber_dr_core::drill::{Scratch, ScratchPlan, ScratchRestore};
use amber_dr_core::references::{KeySet, KeyStream};
use amber_dr_core::LegacyImport;
use amber_dr_core::{
    async_trait, Capabilities, Component, ComponentRecord, Probe, ReadContext, RestoreContext,
    RestoreOptions, RestoreReport, Result, SnapshotContext, StagedRestore, VerifyContext,
    VerifyLevel, VerifyReport,
};

use crate::config::FilesConfig;

/// The runbook's archive of the uploads directory (`tar czf`).
use crate::RUNBOOK_FILE as LEGACY_ARCHIVE;

/// A directory on disk. See the crate docs.
#[derive(Debug, Clone)]
pub struct Files {
    dir: Directory,
    config: FilesConfig,
}

impl Files {
    /// A `files` component named `name`.
    pub fn new(name: impl Into<String>, config: FilesConfig) -> Self {
        let dir = Directory::new(crate::KIND, name, &config.path)
            .protect(config.config_dir.clone())
            .chunked(config.format == crate::config::FilesFormat::Chunked);
        Self { dir, config }
    }

    /// The config.
    pub fn config(&self) -> &FilesConfig {
        &self.config
    }

    /// Replace the directory with the tree of a gzip-compressed tar archive written by another
    /// tool (`tar czf`): see [`Directory::restore_foreign_archive`].
    pub async fn restore_foreign_archive(
        &self,
        cx: &RestoreContext,
        file: &Path,
        opts: &RestoreOptions,
        root_names: &[&str],
    ) -> Result<RestoreReport> {
        self.dir
            .restore_foreign_archive(cx, file, opts, root_names)
            .await
    }
}

#[async_trait]
impl Component for Files {
    fn kind(&self) -> &'static str {
        crate::KIND
    }

    fn name(&self) -> &str {
        self.dir.name()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::new()
            .online_snapshot(true)
            .consistent_snapshot(false)
            .restore_to_target(true)
            .restore_needs_downtime(false)
            .restore_parts(false)
            .staged_restore(true)
            .deep_verify(true)
            .reference_keys(true)
    }

    async fn probe(&self) -> Result<Probe> {
        self.dir.probe().await
    }

    async fn snapshot(&self, cx: &SnapshotContext) -> Result<ComponentRecord> {
        self.dir.snapshot(cx).await
    }

    async fn decode(&self, cx: &VerifyContext, record: &ComponentRecord) -> Result<VerifyReport> {
        self.dir.verify(cx, record, VerifyLevel::Full).await
    }

    async fn restore(
        &self,
        cx: &RestoreContext,
        record: &ComponentRecord,
        opts: &RestoreOptions,
    ) -> Result<RestoreReport> {
        self.dir.restore(cx, record, opts).await
    }

    async fn stage(
        &self,
        cx: &RestoreContext,
        record: &ComponentRecord,
        opts: &RestoreOptions,
    ) -> Result<Option<Box<dyn StagedRestore>>> {
        self.dir.stage(cx, record, opts).await
    }

    fn legacy(&self) -> Option<&dyn LegacyImport> {
        Some(self)
    }

    async fn backup_keys(
        &self,
        cx: &ReadContext,
        record: &ComponentRecord,
        set: &KeySet,
    ) -> Result<KeyStream> {
        set.refuse_fields(crate::KIND, &[])?;
        self.dir.backup_keys(cx, record).await
    }

    async fn live_keys(&self, set: &KeySet) -> Result<KeyStream> {
        set.refuse_fields(crate::KIND, &[])?;
        self.dir.live_keys().await
    }

    fn scratch_plan(&self, _record: &ComponentRecord, scratch: &Scratch) -> Result<ScratchPlan> {
        Ok(self.dir.scratch_plan(scratch))
    }

    async fn remove_scratch(&self, target: &str) -> Result<()> {
        self.dir.remove_scratch(target).await
    }

    async fn scratch_keys(&self, set: &KeySet, restores: &[ScratchRestore]) -> Result<KeyStream> {
        set.refuse_fields(crate::KIND, &[])?;
        self.dir.scratch_keys(restores).await
    }
}

/// The runbook's file, restored without a record (see [`LegacyImport`]).
#[async_trait]
impl LegacyImport for Files {
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
}

//! A backup whose manifest cannot be written (here: the manifest's path is taken by a
//! directory, as a full disk or a read-only directory would refuse the write) fails with an
//! error that names its id, so that the CLI can still print the id as the README promises.
#![allow(missing_docs, clippy::unwrap_used)]

use std::sync::Arc;

use amber_dr_core::{
    async_trait, BackupOptions, Capabilities, Component, ComponentRecord, Error, Probe,
    ReadContext, Repository, RepositoryConfig, RestoreOptions, RestoreReport, Result, Runner,
    SnapshotContext,
};
use tokio::io::AsyncWriteExt;

#[derive(Debug)]
struct BlocksItsManifest;

#[async_trait]
impl Component for BlocksItsManifest {
    fn kind(&self) -> &'static str {
        "fake"
    }
    fn name(&self) -> &str {
        "blocker"
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::new()
    }
    async fn probe(&self) -> Result<Probe> {
        Ok(Probe::default())
    }
    async fn snapshot(&self, cx: &SnapshotContext) -> Result<ComponentRecord> {
        let mut w = cx
            .repository()
            .create_artifact(cx.backup_id(), self.name(), "data", cx.progress().clone())
            .await?;
        w.write_all(b"some data").await.unwrap();
        let mut rec = ComponentRecord::new("fake", self.name());
        rec.artifacts.push(w.finish().await?);
        let root = cx.repository().local_root().unwrap();
        std::fs::create_dir_all(root.join(cx.backup_id()).join("manifest.json/x")).unwrap();
        Ok(rec)
    }
    async fn restore(
        &self,
        _: &ReadContext,
        _: &ComponentRecord,
        _: &RestoreOptions,
    ) -> Result<RestoreReport> {
        Ok(RestoreReport::default())
    }
}

#[tokio::test]
async fn a_manifest_that_cannot_be_written_still_names_the_backup() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repository::open(&RepositoryConfig::new(dir.path().to_string_lossy())).unwrap();
    let runner = Runner::new(
        repo.clone(),
        vec![Arc::new(BlocksItsManifest) as Arc<dyn Component>],
    );
    let err = runner.backup(&BackupOptions::default()).await.unwrap_err();
    let Error::BackupUnfinished { id, message } = &err else {
        panic!("not BackupUnfinished: {err}");
    };
    assert_eq!(repo.backup_ids().await.unwrap(), vec![id.clone()]);
    assert!(err.to_string().contains(id.as_str()), "{err}");
    assert!(
        message.contains("manifest could not be written"),
        "{message}"
    );
    assert!(repo.read_manifest(id).await.is_err());
}

//! Shared blobs through the runner: written once, deduplicated across backups, and swept by
//! prune once no remaining backup references them.
#![allow(missing_docs, clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

use amber_dr_core::{
    async_trait, BackupOptions, Capabilities, Component, ComponentRecord, Probe, ReadContext,
    Repository, RepositoryConfig, RestoreOptions, RestoreReport, Result, RetentionPolicy, Runner,
    SnapshotContext, BLOB_REFS_SUFFIX,
};
use tokio::io::AsyncWriteExt;

/// Stores its current content as one blob and lists it in a refs artifact.
#[derive(Debug)]
struct Blobby(Mutex<Vec<u8>>);

#[async_trait]
impl Component for Blobby {
    fn kind(&self) -> &'static str {
        "blobby"
    }
    fn name(&self) -> &str {
        "blobby"
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::new()
    }
    async fn probe(&self) -> Result<Probe> {
        Ok(Probe::default())
    }
    async fn snapshot(&self, cx: &SnapshotContext) -> Result<ComponentRecord> {
        let data = self.0.lock().unwrap().clone();
        let mut w = cx.repository().write_blob(cx.progress().clone()).await?;
        w.write_all(&data).await.unwrap();
        let blob = w.finish().await?;
        let mut refs = cx
            .create_artifact(&format!("objects{BLOB_REFS_SUFFIX}"))
            .await?;
        refs.write_all(format!("{}\n", blob.sha256).as_bytes())
            .await
            .unwrap();
        let mut rec = ComponentRecord::new("blobby", "blobby");
        rec.artifacts.push(refs.finish().await?);
        rec.set_stat("deduplicated", blob.deduplicated);
        rec.set_details(&blob)?;
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
async fn blobs_are_shared_and_swept_by_prune() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repository::open(&RepositoryConfig::new(dir.path().to_string_lossy())).unwrap();
    let c = Arc::new(Blobby(Mutex::new(b"version A".to_vec())));
    let runner = Runner::new(repo.clone(), vec![c.clone() as Arc<dyn Component>]);
    let blob_of = |m: &amber_dr_core::Manifest| -> amber_dr_core::BlobRecord {
        m.components["blobby"].details().unwrap()
    };

    let m1 = runner.backup(&BackupOptions::default()).await.unwrap();
    let a = blob_of(&m1);
    let m2 = runner.backup(&BackupOptions::default()).await.unwrap();
    assert!(blob_of(&m2).deduplicated, "same content is stored once");
    *c.0.lock().unwrap() = b"version B".to_vec();
    let m3 = runner.backup(&BackupOptions::default()).await.unwrap();
    let b = blob_of(&m3);
    assert!(repo.has_blob(&a.sha256).await.unwrap() && repo.has_blob(&b.sha256).await.unwrap());

    // Keeping m2 and m3: both blobs are referenced.
    let out = runner
        .prune(
            &RetentionPolicy {
                keep_last: 2,
                ..Default::default()
            },
            false,
        )
        .await
        .unwrap();
    assert_eq!(out.deleted, vec![m1.id.clone()]);
    assert_eq!(out.blobs_deleted, 0);
    // Keeping m3 only: A goes.
    let out = runner
        .prune(
            &RetentionPolicy {
                keep_last: 1,
                ..Default::default()
            },
            false,
        )
        .await
        .unwrap();
    assert_eq!(out.deleted, vec![m2.id.clone()]);
    assert_eq!(out.blobs_deleted, 1);
    assert!(!repo.has_blob(&a.sha256).await.unwrap());
    assert!(repo.has_blob(&b.sha256).await.unwrap());
}

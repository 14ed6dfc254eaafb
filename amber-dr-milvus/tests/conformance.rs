//! The core conformance suite against the real Milvus 2.3.5, with the awkward data set
//! (every scalar type, JSON, arrays, a dynamic field, float and binary vectors, an auto-id
//! and a varchar key, a partition, a partition key, indexes, an alias, loaded and not).
// test-lane: milvus (uses Milvus and its etcd)
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;

use amber_dr_core::testkit::{self, Fixture};
use amber_dr_core::{async_trait, Component, Result};
use amber_dr_milvus::{Milvus, MilvusConfig};
use common::Mv;

struct Fx {
    mv: Mv,
    /// Tests of this file run at once: each has its own collections.
    base: &'static str,
    /// Milvus's bucket: back up segment files instead of entities.
    storage: Option<amber_dr_milvus::MilvusStorageConfig>,
}

impl Fx {
    /// Collections of `slot` (each test its own, as tests run at the same time).
    fn prefix(&self, slot: usize) -> String {
        let kind = if self.storage.is_some() { "seg" } else { "ent" };
        format!("{}_{kind}_{slot}", self.base)
    }
}

#[async_trait]
impl Fixture for Fx {
    fn component(&self, slot: usize) -> Arc<dyn Component> {
        let p = self.prefix(slot);
        let mut cfg =
            MilvusConfig::new(&self.mv.endpoint).collections([format!("{p}_a"), format!("{p}_b")]);
        cfg.page_rows = 37; // many pages
        cfg.storage = self.storage.clone();
        Arc::new(Milvus::new(format!("milvus{slot}"), cfg).unwrap())
    }
    fn failing_component(&self) -> Arc<dyn Component> {
        let mut cfg = MilvusConfig::new("http://127.0.0.1:1");
        cfg.timeout_secs = 2;
        Arc::new(Milvus::new("milvus-down", cfg).unwrap())
    }
    async fn populate(&self, slot: usize) -> Result<()> {
        self.mv.fixture("populate", &self.prefix(slot));
        Ok(())
    }
    async fn make_empty(&self, slot: usize) -> Result<()> {
        self.mv.fixture("empty", &self.prefix(slot));
        Ok(())
    }
    async fn destroy(&self, slot: usize) -> Result<()> {
        self.mv.fixture("destroy", &self.prefix(slot));
        Ok(())
    }
    async fn fingerprint(&self, slot: usize) -> Result<String> {
        Ok(self.mv.fixture("fingerprint", &self.prefix(slot)))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn milvus_driver_passes_the_conformance_suite() {
    let Some(mv) = Mv::from_env() else { return };
    let (repo, _guard) = testkit::temp_repo();
    let fx = Fx {
        mv,
        base: "amber_conf",
        storage: None,
    };
    if let Err(e) = testkit::run_all(&fx, &repo).await {
        panic!("{e}");
    }
}

/// The same suite with Milvus's bucket configured: collections backed up as segment files and
/// restored through Milvus's backup import.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn milvus_driver_passes_the_conformance_suite_with_segment_files() {
    let Some(mv) = Mv::from_env() else { return };
    let Some(storage) = common::milvus_storage() else {
        return;
    };
    let (repo, _guard) = testkit::temp_repo();
    let fx = Fx {
        mv,
        base: "amber_conf",
        storage: Some(storage),
    };
    if let Err(e) = testkit::run_all(&fx, &repo).await {
        panic!("{e}");
    }
}

/// An application inserting and deleting entities while the backup runs (pymilvus, another
/// client than the driver).
struct App {
    mv: Mv,
    dir: tempfile::TempDir,
    /// The fixture's slot 0.
    prefix: String,
}

#[async_trait]
impl testkit::Writer for App {
    async fn write_until(&self, _: usize, stop: &AtomicBool, changes: &AtomicU64) -> Result<()> {
        let stop_file = self.dir.path().join("stop");
        let mut cmd = tokio::process::Command::new(&self.mv.python);
        cmd.args([
            "-c",
            common::FIXTURE,
            &self.mv.host,
            &self.mv.port,
            "write-until",
        ])
        .arg(&self.prefix)
        .arg(&stop_file);
        testkit::writer_process(cmd, None, &stop_file, stop, changes).await
    }

    async fn check_restored(&self, _: usize) -> Result<()> {
        self.mv.fixture("check-live", &self.prefix);
        Ok(())
    }
}

/// Issue 18: a backup taken while entities are inserted and deleted either fails clearly or
/// is complete, verifies and restores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_the_application_writes_restores() {
    let Some(mv) = Mv::from_env() else { return };
    let fx = Fx {
        mv: mv.clone(),
        base: "amber_online",
        storage: None,
    };
    let app = App {
        mv,
        dir: tempfile::tempdir().unwrap(),
        prefix: fx.prefix(0),
    };
    let (repo, _guard) = testkit::temp_repo();
    match testkit::writers_during_backup(&fx, &app, &repo).await {
        Ok(outcome) => eprintln!("{outcome:?}"),
        Err(e) => panic!("{e}"),
    }
}

/// Issue 18: TLS is not supported yet, so an https:// endpoint is a config error saying so.
#[test]
fn an_https_endpoint_is_refused_naming_tls() {
    let e = Milvus::new("mv", MilvusConfig::new("https://127.0.0.1:19530"))
        .err()
        .unwrap();
    assert!(e.is_usage(), "{e}");
    assert!(e.to_string().contains("TLS"), "{e}");
}

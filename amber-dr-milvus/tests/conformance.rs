//! The core conformance suite against the real Milvus 2.3.5, with the awkward data set
//! (every scalar type, JSON, arrays, a dynamic field, float and binary vectors, an auto-id
//! and a varchar key, a partition, a partition key, indexes, an alias, loaded and not).
// test-lane: milvus (uses Milvus and its etcd)
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;

use amber_dr_core::plan::ComponentPlan;
use amber_dr_core::testkit::{self, Fixture};
use amber_dr_core::{async_trait, Component, ComponentRecord, Result};
use amber_dr_milvus::{Milvus, MilvusConfig};
use common::Mv;

struct Fx {
    mv: Mv,
    /// Tests of this file run at once: each has its own collections.
    base: &'static str,
    /// Milvus's bucket: back up segment files instead of entities.
    storage: Option<amber_dr_milvus::MilvusStorageConfig>,
    /// The failing component's endpoint: a port that refuses connections.
    closed: testkit::ClosedPort,
}

impl Fx {
    fn new(
        mv: Mv,
        base: &'static str,
        storage: Option<amber_dr_milvus::MilvusStorageConfig>,
    ) -> Self {
        Self {
            mv,
            base,
            storage,
            closed: testkit::closed_port(),
        }
    }
    /// The prefix of `restore_to_target`'s collection `{prefix}_b`.
    fn target_prefix(&self) -> String {
        format!("{}_t", self.prefix(0))
    }
    /// The blocks of the fixture's fingerprint of `prefix` (one per collection, each starting
    /// with `NAME:`): the one of collection `name`, and the others.
    fn split(&self, prefix: &str, name: &str) -> (String, String) {
        let fp = self.mv.fixture("fingerprint", prefix);
        let (mut part, mut rest) = (String::new(), String::new());
        let mut in_part = false;
        for line in fp.lines() {
            if !line.starts_with(' ') {
                in_part = line.starts_with(&format!("{name}:"));
            }
            let out = if in_part { &mut part } else { &mut rest };
            out.push_str(line);
            out.push('\n');
        }
        (part, rest)
    }
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
        let mut cfg = MilvusConfig::new(format!("http://127.0.0.1:{}", self.closed.port));
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
    /// Collection `_b` of slot 0 (no alias, not loaded) under a new name (dropped first): a
    /// target name restores one collection.
    async fn other_target(&self) -> Result<Option<ComponentPlan>> {
        let t = format!("{}_b", self.target_prefix());
        self.mv.py(&format!(
            "if utility.has_collection({t:?}): utility.drop_collection({t:?})"
        ));
        Ok(Some(ComponentPlan {
            target: Some(t),
            items: vec![format!("{}_b", self.prefix(0))],
        }))
    }
    /// The target collection, described under the name of slot 0's collection `_b`.
    async fn target_fingerprint(&self, plan: &ComponentPlan) -> Result<String> {
        let t = plan.target.as_deref().unwrap();
        let (block, _) = self.split(&self.target_prefix(), t);
        let b = format!("{}_b", self.prefix(0));
        Ok(block
            .strip_prefix(t)
            .map(|r| format!("{b}{r}"))
            .unwrap_or(block))
    }
    /// Collection `_b` of slot 0 (destroy drops it and changes `_a`).
    fn one_part(&self) -> Option<String> {
        Some(format!("{}_b", self.prefix(0)))
    }
    async fn part_fingerprint(&self, slot: usize, part: &str) -> Result<(String, String)> {
        Ok(self.split(&self.prefix(slot), part))
    }
    /// What the restore compares with the record: the entities of a partition (entities
    /// path: checked when the pages are decoded, and again after the insert), or the segment
    /// files of a collection (segment path: checked when the artifact is decoded; nothing
    /// restored is compared with the record after the import).
    fn falsify(&self, record: &mut ComponentRecord) -> bool {
        let Some(c) = record.details.pointer_mut("/collections/0") else {
            return false;
        };
        let field = if c.get("binlogs").is_some_and(|b| !b.is_null()) {
            "/binlogs/files"
        } else {
            "/partitions/0/entities"
        };
        let Some(n) = c.pointer_mut(field) else {
            return false;
        };
        *n = (n.as_u64().unwrap_or(0) + 1).into();
        true
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn milvus_driver_passes_the_conformance_suite() {
    let Some(mv) = Mv::from_env() else { return };
    let (repo, _guard) = testkit::temp_repo();
    let fx = Fx::new(mv, "amber_conf", None);
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
    let fx = Fx::new(mv, "amber_conf", Some(storage));
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
    let fx = Fx::new(mv.clone(), "amber_online", None);
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

//! The core conformance suite against the real S3 server (s3s-fs), with the awkward data set.
// test-lane: minio (long, CPU-bound S3 tests)
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;

use amber_dr_core::plan::ComponentPlan;
use amber_dr_core::testkit::{self, Fixture};
use amber_dr_core::{async_trait, Component, ComponentRecord, Result};
use amber_dr_minio::{Minio, MinioConfig};
use common::S3;

struct Fx {
    s3: S3,
    prefix: String,
    /// The failing component's endpoint: a port that refuses connections.
    closed: testkit::ClosedPort,
}

impl Fx {
    fn buckets(&self, slot: usize) -> [String; 2] {
        [
            format!("{}-s{slot}-a", self.prefix),
            format!("{}-s{slot}-b", self.prefix),
        ]
    }
    fn new(s3: S3, prefix: String) -> Self {
        Self {
            s3,
            prefix,
            closed: testkit::closed_port(),
        }
    }
    /// The buckets of `restore_to_target`, one per bucket of slot 0.
    fn targets(&self) -> [String; 2] {
        [
            format!("{}-t-a", self.prefix),
            format!("{}-t-b", self.prefix),
        ]
    }
    fn tool(&self, cmd: &str, slot: usize) -> String {
        let [a, b] = self.buckets(slot);
        self.s3.tool(&[cmd, &a, &b])
    }
}

#[async_trait]
impl Fixture for Fx {
    fn component(&self, slot: usize) -> Arc<dyn Component> {
        let [a, b] = self.buckets(slot);
        Arc::new(self.s3.component(&format!("minio{slot}"), &[&a, &b]))
    }
    fn failing_component(&self) -> Arc<dyn Component> {
        let url = format!("http://127.0.0.1:{}", self.closed.port);
        let cfg = MinioConfig::new(&url, "x", "y").buckets(["none"]);
        Arc::new(Minio::new("minio-down", cfg).unwrap())
    }
    async fn populate(&self, slot: usize) -> Result<()> {
        self.tool("populate", slot);
        Ok(())
    }
    async fn make_empty(&self, slot: usize) -> Result<()> {
        self.tool("empty", slot);
        Ok(())
    }
    async fn destroy(&self, slot: usize) -> Result<()> {
        self.tool("destroy", slot);
        Ok(())
    }
    async fn fingerprint(&self, slot: usize) -> Result<String> {
        Ok(self.tool("fingerprint", slot))
    }
    /// Two other buckets (emptied), one for each of slot 0's: `SRC:DST,SRC:DST`.
    async fn other_target(&self) -> Result<Option<ComponentPlan>> {
        let [ta, tb] = self.targets();
        self.s3.tool(&["empty", &ta, &tb]);
        let [a, b] = self.buckets(0);
        Ok(Some(ComponentPlan {
            target: Some(format!("{a}:{ta},{b}:{tb}")),
            items: Vec::new(),
        }))
    }
    /// The target buckets described under the names of slot 0's.
    async fn target_fingerprint(&self, _: &ComponentPlan) -> Result<String> {
        let ([ta, tb], [a, b]) = (self.targets(), self.buckets(0));
        let fp = self.s3.fingerprint(&[&ta, &tb]);
        Ok(fp
            .lines()
            .map(|l| {
                if let Some(r) = l.strip_prefix(ta.as_str()) {
                    format!("{a}{r}")
                } else if let Some(r) = l.strip_prefix(tb.as_str()) {
                    format!("{b}{r}")
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
            + "\n")
    }
    /// The first bucket of slot 0 (populate and destroy change both).
    fn one_part(&self) -> Option<String> {
        Some(self.buckets(0)[0].clone())
    }
    async fn part_fingerprint(&self, slot: usize, part: &str) -> Result<(String, String)> {
        let [a, b] = self.buckets(slot);
        let other = if part == a { b } else { a };
        Ok((self.s3.fingerprint(&[part]), self.s3.fingerprint(&[&other])))
    }
    /// The object count of the first bucket, compared after the objects are put.
    fn falsify(&self, record: &mut ComponentRecord) -> bool {
        let Some(n) = record.details.pointer_mut("/buckets/0/objects") else {
            return false;
        };
        *n = (n.as_u64().unwrap_or(0) + 1).into();
        true
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minio_driver_passes_the_conformance_suite() {
    let Some(s3) = S3::s3s() else { return };
    let fx = Fx::new(s3, common::unique("conf"));
    let (repo, _guard) = testkit::temp_repo();
    if let Err(e) = testkit::run_all(&fx, &repo).await {
        panic!("{e}");
    }
}

/// The same suite with the repository itself on S3 (another prefix of the same s3s-fs): blobs,
/// index and manifests all stored remotely, as for off-site backups.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minio_driver_passes_the_conformance_suite_with_repository_on_s3() {
    let Some(s3) = S3::s3s() else { return };
    let repo = common::s3_repository(&s3, "minio-conf");
    repo.check_access().await.unwrap();
    let fx = Fx::new(s3, common::unique("confs3"));
    if let Err(e) = testkit::run_all(&fx, &repo).await {
        panic!("{e}");
    }
}

/// An application writing to a bucket while it is backed up (boto3, another client than the
/// driver): objects put, overwritten and deleted during the listing.
struct App {
    s3: S3,
    bucket: String,
    dir: tempfile::TempDir,
}

#[async_trait]
impl testkit::Writer for App {
    async fn write_until(&self, _: usize, stop: &AtomicBool, changes: &AtomicU64) -> Result<()> {
        let stop_file = self.dir.path().join("stop");
        let mut cmd = tokio::process::Command::new(&self.s3.python);
        cmd.arg("-")
            .args([&self.s3.endpoint, &self.s3.access_key, &self.s3.secret_key])
            .args(["write-until", &self.bucket])
            .arg(&stop_file);
        let tool = common::TOOL.as_bytes();
        testkit::writer_process(cmd, Some(tool), &stop_file, stop, changes).await
    }

    async fn check_restored(&self, _: usize) -> Result<()> {
        self.s3
            .try_tool(&["check-live", &self.bucket])
            .map(|_| ())
            .map_err(amber_dr_core::Error::Other)
    }
}

/// Issue 18: a backup taken while objects are put, overwritten and deleted either fails
/// clearly or is complete, verifies, and restores only whole objects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_the_application_writes_restores() {
    let Some(s3) = S3::s3s() else { return };
    let fx = Fx::new(s3.clone(), common::unique("online"));
    let app = App {
        s3,
        bucket: fx.buckets(0)[0].clone(),
        dir: tempfile::tempdir().unwrap(),
    };
    for round in 0..2 {
        let (repo, _guard) = testkit::temp_repo();
        match testkit::writers_during_backup(&fx, &app, &repo).await {
            Ok(outcome) => eprintln!("round {round}: {outcome:?}"),
            Err(e) => panic!("round {round}: {e}"),
        }
    }
}

//! The core conformance suite against the real S3 server (s3s-fs), with the awkward data set.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use amber_dr_core::testkit::{self, Fixture};
use amber_dr_core::{async_trait, Component, Result};
use amber_dr_minio::{Minio, MinioConfig};
use common::S3;

struct Fx {
    s3: S3,
    prefix: String,
}

impl Fx {
    fn buckets(&self, slot: usize) -> [String; 2] {
        [
            format!("{}-s{slot}-a", self.prefix),
            format!("{}-s{slot}-b", self.prefix),
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
        let cfg = MinioConfig::new("http://127.0.0.1:1", "x", "y").buckets(["none"]);
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minio_driver_passes_the_conformance_suite() {
    let Some(s3) = S3::s3s() else { return };
    let fx = Fx {
        s3,
        prefix: common::unique("conf"),
    };
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
    let fx = Fx {
        s3,
        prefix: common::unique("confs3"),
    };
    if let Err(e) = testkit::run_all(&fx, &repo).await {
        panic!("{e}");
    }
}

//! The core conformance suite against real directories.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use amber_dr_core::testkit::{self, Fixture};
use amber_dr_core::{async_trait, Component, Result};
use amber_dr_files::{Files, FilesConfig};

struct Dirs {
    base: tempfile::TempDir,
}

impl Dirs {
    fn dir(&self, slot: usize) -> PathBuf {
        self.base.path().join(format!("uploads-{slot}"))
    }
}

#[async_trait]
impl Fixture for Dirs {
    fn component(&self, slot: usize) -> Arc<dyn Component> {
        Arc::new(Files::new(
            format!("uploads{slot}"),
            FilesConfig::new(self.dir(slot)),
        ))
    }
    fn failing_component(&self) -> Arc<dyn Component> {
        Arc::new(Files::new(
            "missing",
            FilesConfig::new(self.base.path().join("no-such-dir")),
        ))
    }
    async fn populate(&self, slot: usize) -> Result<()> {
        common::unlock(&self.dir(slot));
        common::populate(&self.dir(slot), slot as u8 + 1);
        Ok(())
    }
    async fn make_empty(&self, slot: usize) -> Result<()> {
        common::make_empty(&self.dir(slot));
        Ok(())
    }
    async fn destroy(&self, slot: usize) -> Result<()> {
        common::destroy(&self.dir(slot));
        Ok(())
    }
    async fn fingerprint(&self, slot: usize) -> Result<String> {
        Ok(common::fingerprint(&self.dir(slot)))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_driver_passes_the_conformance_suite() {
    let fx = Dirs {
        base: tempfile::tempdir().unwrap(),
    };
    let (repo, _guard) = testkit::temp_repo();
    if let Err(e) = testkit::run_all(&fx, &repo).await {
        panic!("{e}");
    }
    common::unlock(fx.base.path());
}

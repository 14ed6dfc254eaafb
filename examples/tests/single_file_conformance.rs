//! The example driver runs the core conformance suite, like every real driver does.
#![allow(missing_docs, clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::Arc;

use amber_dr_core::plan::ComponentPlan;
use amber_dr_core::testkit::{self, Fixture};
use amber_dr_core::{async_trait, Component, ComponentRecord, Result};
use amber_dr_examples::single_file::{SingleFile, SingleFileConfig};

struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn path(&self, slot: usize) -> PathBuf {
        self.dir.path().join(format!("data-{slot}.bin"))
    }
}

#[async_trait]
impl Fixture for Files {
    fn component(&self, slot: usize) -> Arc<dyn Component> {
        Arc::new(SingleFile::new(
            format!("file{slot}"),
            SingleFileConfig {
                path: self.path(slot),
            },
        ))
    }
    fn failing_component(&self) -> Arc<dyn Component> {
        Arc::new(SingleFile::new(
            "missing",
            SingleFileConfig {
                path: self.dir.path().join("nope"),
            },
        ))
    }
    async fn populate(&self, slot: usize) -> Result<()> {
        let data: Vec<u8> = (0..500_000u32)
            .map(|i| (i % 253) as u8 ^ slot as u8)
            .collect();
        std::fs::write(self.path(slot), data).unwrap();
        Ok(())
    }
    async fn make_empty(&self, slot: usize) -> Result<()> {
        std::fs::write(self.path(slot), b"").unwrap();
        Ok(())
    }
    async fn destroy(&self, slot: usize) -> Result<()> {
        std::fs::write(self.path(slot), b"ransomware was here").unwrap();
        Ok(())
    }
    /// The file's length and SHA-256, computed here (not by the driver): a content hash, so
    /// that any changed, reordered or missing byte shows. New drivers copy this: a fingerprint
    /// must change whenever anything the driver claims to restore changes.
    async fn fingerprint(&self, slot: usize) -> Result<String> {
        use sha2::Digest;
        let d = std::fs::read(self.path(slot)).unwrap();
        Ok(format!(
            "{} bytes, sha256 {}",
            d.len(),
            hex::encode(sha2::Sha256::digest(&d))
        ))
    }
    /// Another file beside the slots', absent.
    async fn other_target(&self) -> Result<Option<ComponentPlan>> {
        let t = self.dir.path().join("other-target.bin");
        let _ = std::fs::remove_file(&t);
        Ok(Some(ComponentPlan {
            target: Some(t.display().to_string()),
            items: Vec::new(),
        }))
    }
    async fn target_fingerprint(&self, plan: &ComponentPlan) -> Result<String> {
        use sha2::Digest;
        let d = std::fs::read(plan.target.as_deref().unwrap()).unwrap_or_default();
        Ok(format!(
            "{} bytes, sha256 {}",
            d.len(),
            hex::encode(sha2::Sha256::digest(&d))
        ))
    }
    /// The byte count the restore compares before it renames the restored file into place.
    fn falsify(&self, record: &mut ComponentRecord) -> bool {
        let Some(n) = record.stats.get_mut("bytes") else {
            return false;
        };
        *n = (n.as_u64().unwrap_or(0) + 1).into();
        true
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_file_driver_conforms() {
    let fx = Files {
        dir: tempfile::tempdir().unwrap(),
    };
    let (repo, _guard) = testkit::temp_repo();
    testkit::run_all(&fx, &repo).await.unwrap();
}

//! The core conformance suite against the real Milvus 2.3.5, with the awkward data set
//! (every scalar type, JSON, arrays, a dynamic field, float and binary vectors, an auto-id
//! and a varchar key, a partition, a partition key, indexes, an alias, loaded and not).
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use amber_dr_core::testkit::{self, Fixture};
use amber_dr_core::{async_trait, Component, Result};
use amber_dr_milvus::{Milvus, MilvusConfig};
use common::Mv;

struct Fx {
    mv: Mv,
}

fn prefix(slot: usize) -> String {
    format!("amber_conf_{slot}")
}

#[async_trait]
impl Fixture for Fx {
    fn component(&self, slot: usize) -> Arc<dyn Component> {
        let p = prefix(slot);
        let mut cfg =
            MilvusConfig::new(&self.mv.endpoint).collections([format!("{p}_a"), format!("{p}_b")]);
        cfg.page_rows = 37; // many pages
        Arc::new(Milvus::new(format!("milvus{slot}"), cfg).unwrap())
    }
    fn failing_component(&self) -> Arc<dyn Component> {
        let mut cfg = MilvusConfig::new("http://127.0.0.1:1");
        cfg.timeout_secs = 2;
        Arc::new(Milvus::new("milvus-down", cfg).unwrap())
    }
    async fn populate(&self, slot: usize) -> Result<()> {
        self.mv.fixture("populate", &prefix(slot));
        Ok(())
    }
    async fn make_empty(&self, slot: usize) -> Result<()> {
        self.mv.fixture("empty", &prefix(slot));
        Ok(())
    }
    async fn destroy(&self, slot: usize) -> Result<()> {
        self.mv.fixture("destroy", &prefix(slot));
        Ok(())
    }
    async fn fingerprint(&self, slot: usize) -> Result<String> {
        Ok(self.mv.fixture("fingerprint", &prefix(slot)))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn milvus_driver_passes_the_conformance_suite() {
    let Some(mv) = Mv::from_env() else { return };
    let (repo, _guard) = testkit::temp_repo();
    let fx = Fx { mv };
    if let Err(e) = testkit::run_all(&fx, &repo).await {
        panic!("{e}");
    }
}

//! The core conformance suite against the real Neo4j, with the awkward graph.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use amber_dr_core::testkit::{self, Fixture};
use amber_dr_core::{async_trait, Component, Result};
use amber_dr_neo4j::{Neo4j, Neo4jConfig};
use common::Neo;

struct Fx {
    neo: Neo,
}

#[async_trait]
impl Fixture for Fx {
    fn component(&self, slot: usize) -> Arc<dyn Component> {
        Arc::new(Neo4j::new(format!("graph{slot}"), self.neo.config(slot)).unwrap())
    }
    fn failing_component(&self) -> Arc<dyn Component> {
        let mut cfg = Neo4jConfig::new("bolt://127.0.0.1:1", self.neo.password.clone());
        cfg.connect_timeout_secs = 2;
        Arc::new(Neo4j::new("graph-down", cfg).unwrap())
    }
    async fn populate(&self, slot: usize) -> Result<()> {
        self.neo.populate(slot).await;
        Ok(())
    }
    async fn make_empty(&self, slot: usize) -> Result<()> {
        self.neo.make_empty(slot).await;
        Ok(())
    }
    async fn destroy(&self, slot: usize) -> Result<()> {
        self.neo.destroy(slot).await;
        Ok(())
    }
    async fn fingerprint(&self, slot: usize) -> Result<String> {
        Ok(self.neo.fingerprint(slot).await)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn neo4j_driver_passes_the_conformance_suite() {
    let Some(neo) = Neo::from_env().await else {
        return;
    };
    let _lock = common::SERVER_LOCK.lock().await;
    let fx = Fx { neo };
    let (repo, _guard) = testkit::temp_repo();
    if let Err(e) = testkit::run_all(&fx, &repo).await {
        panic!("{e}");
    }
}

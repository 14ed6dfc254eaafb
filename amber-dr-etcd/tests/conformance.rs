//! The core conformance suite against the real etcd, with the awkward data set.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use amber_dr_core::testkit::{self, Fixture};
use amber_dr_core::{async_trait, Component, Result};
use amber_dr_etcd::{Etcd, EtcdConfig};
use common::EtcdCtl;

struct Fx {
    e: EtcdCtl,
}

fn prefix(slot: usize) -> String {
    format!("amber-conf/{slot}/")
}

#[async_trait]
impl Fixture for Fx {
    fn component(&self, slot: usize) -> Arc<dyn Component> {
        let mut cfg = EtcdConfig::new(&self.e.endpoint, prefix(slot));
        // Small pages and transactions: the data set spans many of each.
        cfg.page_keys = 97;
        cfg.batch_ops = 50;
        cfg.batch_bytes = 64 * 1024;
        Arc::new(Etcd::new(format!("etcd{slot}"), cfg).unwrap())
    }
    fn failing_component(&self) -> Arc<dyn Component> {
        let mut cfg = EtcdConfig::new("http://127.0.0.1:1", "x/");
        cfg.timeout_secs = 2;
        Arc::new(Etcd::new("etcd-down", cfg).unwrap())
    }
    async fn populate(&self, slot: usize) -> Result<()> {
        common::populate(&self.e, &prefix(slot));
        Ok(())
    }
    async fn make_empty(&self, slot: usize) -> Result<()> {
        self.e.delete_prefix(prefix(slot).as_bytes());
        Ok(())
    }
    async fn destroy(&self, slot: usize) -> Result<()> {
        common::destroy(&self.e, &prefix(slot));
        Ok(())
    }
    async fn fingerprint(&self, slot: usize) -> Result<String> {
        Ok(self.e.describe(prefix(slot).as_bytes()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_driver_passes_the_conformance_suite() {
    let Some(e) = EtcdCtl::from_env() else { return };
    let (repo, _guard) = testkit::temp_repo();
    let fx = Fx { e };
    if let Err(err) = testkit::run_all(&fx, &repo).await {
        panic!("{err}");
    }
}

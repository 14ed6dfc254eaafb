//! The core conformance suite against the real Postgres, with the awkward data set.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use amber_dr_core::testkit::{self, Fixture};
use amber_dr_core::{async_trait, Component, Result};
use amber_dr_postgres::{Postgres, PostgresConfig};
use common::Pg;

struct Fx {
    pg: Pg,
    prefix: String,
    restore_jobs: u32,
}

impl Fx {
    fn db(&self, slot: usize) -> String {
        format!("{}_{slot}", self.prefix)
    }
}

#[async_trait]
impl Fixture for Fx {
    fn component(&self, slot: usize) -> Arc<dyn Component> {
        let mut cfg = PostgresConfig::new(self.pg.url("postgres")).databases([self.db(slot)]);
        cfg.restore_jobs = self.restore_jobs;
        Arc::new(Postgres::new(format!("pg{slot}"), cfg).unwrap())
    }
    fn failing_component(&self) -> Arc<dyn Component> {
        let mut cfg = PostgresConfig::new(format!(
            "postgres://postgres:{}@127.0.0.1:1/postgres",
            self.pg.password
        ));
        cfg.connect_timeout_secs = 2;
        Arc::new(Postgres::new("pg-down", cfg).unwrap())
    }
    async fn populate(&self, slot: usize) -> Result<()> {
        self.pg.populate(&self.db(slot));
        Ok(())
    }
    async fn make_empty(&self, slot: usize) -> Result<()> {
        self.pg.recreate(&self.db(slot));
        Ok(())
    }
    async fn destroy(&self, slot: usize) -> Result<()> {
        self.pg.destroy(&self.db(slot));
        Ok(())
    }
    async fn fingerprint(&self, slot: usize) -> Result<String> {
        Ok(self.pg.fingerprint(&self.db(slot)))
    }
}

/// Both restore paths, one after the other (they share the cluster's roles, so not at once):
/// one job, the default, streams the artifact straight into pg_restore (damage shows at its
/// end); two jobs first write the dump to a temporary file for a parallel pg_restore.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_driver_passes_the_conformance_suite() {
    let Some(pg) = Pg::from_env() else { return };
    for restore_jobs in [1, 2] {
        let fx = Fx {
            pg: pg.clone(),
            prefix: format!("amber_conf_j{restore_jobs}"),
            restore_jobs,
        };
        let (repo, _guard) = testkit::temp_repo();
        if let Err(e) = testkit::run_all(&fx, &repo).await {
            panic!("restore_jobs = {restore_jobs}: {e}");
        }
    }
}

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

/// Parallel restore (`restore_jobs = 2`): the dump goes to a temporary file first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_driver_passes_the_conformance_suite() {
    let Some(pg) = Pg::from_env() else { return };
    let fx = Fx {
        pg,
        prefix: "amber_conf".into(),
        restore_jobs: 2,
    };
    let (repo, _guard) = testkit::temp_repo();
    if let Err(e) = testkit::run_all(&fx, &repo).await {
        panic!("{e}");
    }
}

/// One job (the default): the artifact streams straight into pg_restore (damage shows at its end).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_driver_conforms_with_streamed_restore() {
    let Some(pg) = Pg::from_env() else { return };
    let fx = Fx {
        pg,
        prefix: "amber_conf_stream".into(),
        restore_jobs: 1,
    };
    let (repo, _guard) = testkit::temp_repo();
    if let Err(e) = testkit::run_all(&fx, &repo).await {
        panic!("{e}");
    }
}

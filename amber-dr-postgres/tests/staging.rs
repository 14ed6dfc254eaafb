//! The prepare phase stages a Postgres restore: the scratch database is built and checked
//! before the restore's hooks run (before the application is stopped, i.e. before downtime)
//! and before the safety backup; damage in another component of the same restore drops it
//! again and leaves the live database as it was. Checked with psql, against the real Postgres.
// test-lane: stores (uses the Postgres cluster or Neo4j, whose global state other tests change)
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};

use amber_dr_core::testkit::Fake;
use amber_dr_core::{
    async_trait, testkit, BackupOptions, Component, HookContext, RestoreOptions,
    RestorePlanOptions, Result, RunHooks, Runner, Selection,
};
use amber_dr_postgres::{Postgres, PostgresConfig};
use common::Pg;
use object_store::{path::Path, ObjectStoreExt, PutPayload};

const DB: &str = "amber_stage_db";
const SCRATCH: &str = "amber_stage_db__amber_dr_restore";

/// Records, when the restore's `before_restore` hook runs, whether the scratch database exists.
#[derive(Debug)]
struct SeeScratch {
    pg: Pg,
    seen: Mutex<Option<String>>,
}

#[async_trait]
impl RunHooks for SeeScratch {
    async fn before_restore(&self, _cx: &HookContext) -> Result<()> {
        let n = self.pg.psql(
            "postgres",
            &format!("SELECT count(*) FROM pg_database WHERE datname = '{SCRATCH}'"),
        );
        *self.seen.lock().unwrap() = Some(n.trim().to_string());
        Ok(())
    }
}

fn scratch_count(pg: &Pg) -> String {
    pg.psql(
        "postgres",
        &format!("SELECT count(*) FROM pg_database WHERE datname = '{SCRATCH}'"),
    )
    .trim()
    .to_string()
}

fn plan() -> RestorePlanOptions {
    RestorePlanOptions {
        selection: Selection::all(),
        options: RestoreOptions::new(),
        safety_backup: true,
        components: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scratch_database_is_built_before_downtime_and_dropped_when_another_part_is_damaged() {
    let Some(pg) = Pg::from_env() else { return };
    pg.populate(DB);
    let original = pg.fingerprint(DB);
    let postgres: Arc<dyn Component> = Arc::new(
        Postgres::new(
            "postgres",
            PostgresConfig::new(pg.url("postgres")).databases([DB]),
        )
        .unwrap(),
    );
    let other: Arc<dyn Component> = Arc::new(Fake::new("other"));
    let (repo, _guard) = testkit::temp_repo();
    let m = Runner::new(repo.clone(), vec![postgres.clone(), other.clone()])
        .backup(&BackupOptions::default())
        .await
        .unwrap();
    assert!(m.is_complete());

    // Damage in the other component: the staged scratch database is dropped again, the live
    // database keeps its (destroyed) state.
    pg.destroy(DB);
    let destroyed = pg.fingerprint(DB);
    let art = m.components["other"].artifacts[0].path.clone();
    let path = Path::from(art.as_str());
    let good = repo
        .store()
        .get(&path)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let mut bad = good.to_vec();
    bad[0] ^= 0x01;
    repo.store()
        .put(&path, PutPayload::from(bad))
        .await
        .unwrap();
    let err = Runner::new(repo.clone(), vec![postgres.clone(), other.clone()])
        .restore(&m.id, &plan())
        .await
        .unwrap_err();
    assert!(err.is_damage(), "{err}");
    assert_eq!(
        scratch_count(&pg),
        "0",
        "the staged scratch database was left"
    );
    assert_eq!(
        pg.fingerprint(DB),
        destroyed,
        "a refused restore changed the database"
    );
    repo.store()
        .put(&path, PutPayload::from(good))
        .await
        .unwrap();

    // Undamaged: the scratch database exists when the hooks run (the application would be
    // stopped only now), and the restore brings the database back.
    let hooks = Arc::new(SeeScratch {
        pg: pg.clone(),
        seen: Mutex::new(None),
    });
    let out = Runner::new(repo, vec![postgres, other])
        .with_hooks(hooks.clone())
        .restore(&m.id, &plan())
        .await
        .unwrap();
    assert!(out.is_ok(), "{:?}", out.components);
    assert_eq!(
        hooks.seen.lock().unwrap().as_deref(),
        Some("1"),
        "the scratch database was not built before the hooks"
    );
    assert_eq!(pg.fingerprint(DB), original);
    assert_eq!(scratch_count(&pg), "0");
    pg.psql(
        "postgres",
        &format!("DROP DATABASE IF EXISTS {DB} WITH (FORCE)"),
    );
}

//! The runbook's `postgres.sql` (plain `pg_dump > postgres.sql`) restored through
//! `Runner::restore_legacy` on the real Postgres; broken and foreign SQL files change nothing.
// test-lane: stores (uses the Postgres cluster or Neo4j, whose global state other tests change)
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::fs;
use std::sync::Arc;

use amber_dr_core::{testkit, Component, RestorePlanOptions, Runner, Selection};
use amber_dr_postgres::{Postgres, PostgresConfig};
use common::Pg;

fn plan(dry_run: bool) -> RestorePlanOptions {
    let mut p = RestorePlanOptions {
        selection: Selection {
            only: vec!["postgres".into()],
            skip: vec![],
        },
        ..Default::default()
    };
    p.options = p.options.dry_run(dry_run);
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runbook_sql_dump_restores_and_bad_files_change_nothing() {
    let Some(pg) = Pg::from_env() else { return };
    let db = "amber_legacy";
    pg.populate(db);
    let original = pg.fingerprint(db);
    let runbook = tempfile::tempdir().unwrap();
    let sql = runbook.path().join("postgres.sql");
    // The runbook's command: a plain pg_dump of the application database.
    let out = pg.cmd("pg_dump", db).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    fs::write(&sql, &out.stdout).unwrap();

    let (repo, _g) = testkit::temp_repo();
    let c: Arc<dyn Component> =
        Arc::new(Postgres::new("postgres", PostgresConfig::new(pg.url(db))).unwrap());
    let runner = Runner::new(repo, vec![c]);

    // Disaster, then the runbook restore.
    pg.destroy(db);
    let destroyed = pg.fingerprint(db);
    assert_ne!(destroyed, original);
    let dry = runner
        .restore_legacy(runbook.path(), &plan(true))
        .await
        .unwrap();
    assert!(dry.is_ok(), "{:?}", dry.components);
    assert_eq!(pg.fingerprint(db), destroyed, "a dry run changes nothing");
    let out = runner
        .restore_legacy(runbook.path(), &plan(false))
        .await
        .unwrap();
    assert!(out.is_ok(), "{:?}", out.components);
    assert_eq!(pg.fingerprint(db), original, "the runbook dump is back");

    // A dump that fails half way (a broken statement near the end) leaves the database as it
    // was and no scratch database behind.
    pg.psql(db, "CREATE TABLE after_restore (x int)");
    let before = pg.fingerprint(db);
    let mut broken = fs::read(&sql).unwrap();
    broken.extend_from_slice(b"\nINSERT INTO no_such_table VALUES (1);\n");
    fs::write(&sql, &broken).unwrap();
    let out = runner
        .restore_legacy(runbook.path(), &plan(false))
        .await
        .unwrap();
    let err = out.components[0].error.clone().unwrap_or_default();
    assert!(
        err.contains("no_such_table") && err.contains("postgres.sql"),
        "{err}"
    );
    assert_eq!(pg.fingerprint(db), before, "live database untouched");
    assert_eq!(
        pg.psql(
            "postgres",
            "SELECT count(*) FROM pg_database WHERE datname LIKE 'amber_legacy__amber_dr%'"
        )
        .trim(),
        "0",
        "no scratch database left"
    );

    // A pg_dumpall cluster dump is refused before anything happens.
    let all = pg
        .cmd("pg_dumpall", "postgres")
        .arg("--globals-only")
        .output()
        .unwrap();
    fs::write(&sql, &all.stdout).unwrap();
    let out = runner
        .restore_legacy(runbook.path(), &plan(false))
        .await
        .unwrap();
    let err = out.components[0].error.clone().unwrap_or_default();
    assert!(err.contains("pg_dumpall"), "{err}");
    assert_eq!(pg.fingerprint(db), before);
    pg.psql(
        "postgres",
        &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
    );
}

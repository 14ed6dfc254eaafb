//! Bad credentials, unknown databases, unreachable and silent servers, and a server newer than
//! every pg_dump: clear errors, nothing complete written — against the real Postgres.
// test-lane: stores (uses the Postgres cluster or Neo4j, whose global state other tests change)
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use amber_dr_core::{testkit, BackupOptions, Component, Runner};
use amber_dr_postgres::{Postgres, PostgresConfig};
use common::Pg;

async fn backup_error(
    cfg: PostgresConfig,
) -> (String, amber_dr_core::Repository, tempfile::TempDir) {
    let c: Arc<dyn Component> = Arc::new(Postgres::new("postgres", cfg).unwrap());
    let (repo, guard) = testkit::temp_repo();
    let m = Runner::new(repo.clone(), vec![c])
        .backup(&BackupOptions::default())
        .await
        .unwrap();
    assert!(
        !m.is_complete(),
        "a failed snapshot must not make a complete backup"
    );
    let err = m.components["postgres"].error.clone().unwrap();
    assert!(
        m.components["postgres"].artifacts.is_empty(),
        "no artifact recorded"
    );
    (err, repo, guard)
}

#[tokio::test]
async fn wrong_password_is_named_and_never_printed() {
    let Some(pg) = Pg::from_env() else { return };
    let url = format!(
        "postgres://postgres:not-the-password@{}:{}/postgres",
        pg.host, pg.port
    );
    let (err, _, _g) = backup_error(PostgresConfig::new(url)).await;
    assert!(err.contains("password authentication failed"), "{err}");
    assert!(!err.contains("not-the-password"), "{err}");
}

#[tokio::test]
async fn unknown_database_lists_the_existing_ones() {
    let Some(pg) = Pg::from_env() else { return };
    let (err, _, _g) =
        backup_error(PostgresConfig::new(pg.url("postgres")).databases(["no_such_db"])).await;
    assert!(
        err.contains("no_such_db") && err.contains("postgres"),
        "{err}"
    );
}

#[tokio::test]
async fn unreachable_and_silent_servers_fail_within_the_timeout() {
    let Some(pg) = Pg::from_env() else { return };
    // Nothing listens: refused at once.
    let closed = amber_dr_core::testkit::closed_port();
    let (err, _, _g) = backup_error(PostgresConfig::new(format!(
        "postgres://postgres:x@127.0.0.1:{}/postgres",
        closed.port
    )))
    .await;
    assert!(err.contains(&format!("127.0.0.1:{}", closed.port)), "{err}");
    // Something accepts the connection but never answers: bounded by connect_timeout_secs.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut cfg = PostgresConfig::new(format!("postgres://postgres:x@127.0.0.1:{port}/postgres"));
    cfg.connect_timeout_secs = 2;
    let t = Instant::now();
    let (err, _, _g) = backup_error(cfg).await;
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "took {:?}",
        t.elapsed()
    );
    assert!(
        err.contains("timed out") || err.contains("timeout"),
        "{err}"
    );
    drop(listener);
    let _ = pg;
}

#[tokio::test]
async fn server_newer_than_every_pg_dump_fails_before_writing() {
    let Some(pg) = Pg::from_env() else { return };
    // A tool directory whose tools say they are version 9.6 (older than the server).
    let dir = tempfile::tempdir().unwrap();
    for t in ["pg_dump", "pg_restore", "pg_dumpall", "psql"] {
        let p = dir.path().join(t);
        std::fs::write(&p, format!("#!/bin/sh\necho '{t} (PostgreSQL) 9.6.24'\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let cfg = PostgresConfig::new(pg.url("postgres")).bin_dir(dir.path());
    let (err, repo, _g) = backup_error(cfg).await;
    assert!(err.contains("9.6.24"), "names the versions found: {err}");
    assert!(
        err.contains("PostgreSQL 15") || err.contains("PostgreSQL 1"),
        "names the server version: {err}"
    );
    // Nothing was written for the component.
    let ids = repo.backup_ids().await.unwrap();
    let listing: Vec<String> = std::fs::read_dir(repo.url())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for id in ids {
        assert!(
            !std::path::Path::new(repo.url())
                .join(&id)
                .join("postgres")
                .exists(),
            "{listing:?}"
        );
    }
}

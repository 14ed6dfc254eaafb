//! The core conformance suite against the real Postgres, with the awkward data set.
// test-lane: stores (uses the Postgres cluster or Neo4j, whose global state other tests change)
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use amber_dr_core::plan::ComponentPlan;
use amber_dr_core::testkit::{self, Fixture};
use amber_dr_core::{async_trait, Component, ComponentRecord, Result};
use amber_dr_postgres::{Postgres, PostgresConfig};
use common::Pg;

/// The tests of this binary create, alter and comment on the same cluster-wide roles
/// (`amber_app`, `amber_readonly`): run at the same time, Postgres fails one of them with
/// "tuple concurrently updated". They take turns.
static ROLES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Fx {
    pg: Pg,
    prefix: String,
    restore_jobs: u32,
    /// The failing component's port: one that refuses connections.
    closed: testkit::ClosedPort,
}

/// The small second database of each slot: a table, changed by `destroy`.
const EXTRA_SQL: &str = "CREATE TABLE t (k int PRIMARY KEY, v text); \
    INSERT INTO t VALUES (1, 'one'), (2, 'two'), (3, 'three');";
const EXTRA_DESTROY: &str = "UPDATE t SET v = 'changed' WHERE k = 1; DELETE FROM t WHERE k = 2; \
    INSERT INTO t VALUES (9, 'not in the backup');";

impl Fx {
    fn new(pg: Pg, prefix: impl Into<String>, restore_jobs: u32) -> Self {
        Self {
            pg,
            prefix: prefix.into(),
            restore_jobs,
            closed: testkit::closed_port(),
        }
    }
    /// The awkward database of `slot` (its part of `restore_parts`).
    fn db(&self, slot: usize) -> String {
        format!("{}_{slot}", self.prefix)
    }
    /// The small second database of `slot`: with it, each component has two parts.
    fn extra(&self, slot: usize) -> String {
        format!("{}_{slot}_x", self.prefix)
    }
    /// The database of `restore_to_target`.
    fn target(&self) -> String {
        format!("{}_target", self.prefix)
    }
}

#[async_trait]
impl Fixture for Fx {
    fn component(&self, slot: usize) -> Arc<dyn Component> {
        let mut cfg = PostgresConfig::new(self.pg.url("postgres"))
            .databases([self.db(slot), self.extra(slot)]);
        cfg.restore_jobs = self.restore_jobs;
        Arc::new(Postgres::new(format!("pg{slot}"), cfg).unwrap())
    }
    fn failing_component(&self) -> Arc<dyn Component> {
        let mut cfg = PostgresConfig::new(format!(
            "postgres://postgres:{}@127.0.0.1:{}/postgres",
            self.pg.password, self.closed.port
        ));
        cfg.connect_timeout_secs = 2;
        Arc::new(Postgres::new("pg-down", cfg).unwrap())
    }
    async fn populate(&self, slot: usize) -> Result<()> {
        self.pg.populate(&self.db(slot));
        self.pg.recreate(&self.extra(slot));
        self.pg.script(&self.extra(slot), EXTRA_SQL);
        Ok(())
    }
    async fn make_empty(&self, slot: usize) -> Result<()> {
        self.pg.recreate(&self.db(slot));
        self.pg.recreate(&self.extra(slot));
        Ok(())
    }
    async fn destroy(&self, slot: usize) -> Result<()> {
        self.pg.destroy(&self.db(slot));
        self.pg.script(&self.extra(slot), EXTRA_DESTROY);
        Ok(())
    }
    async fn fingerprint(&self, slot: usize) -> Result<String> {
        let (db, extra) = self.part_fingerprint(slot, &self.db(slot)).await?;
        Ok(format!("{db}\n--- the second database\n{extra}"))
    }
    /// A new database: the awkward one of slot 0 restored under another name (a target takes
    /// exactly one database).
    async fn other_target(&self) -> Result<Option<ComponentPlan>> {
        self.pg.psql(
            "postgres",
            &format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.target()),
        );
        Ok(Some(ComponentPlan {
            target: Some(self.target()),
            items: vec![self.db(0)],
        }))
    }
    async fn target_fingerprint(&self, plan: &ComponentPlan) -> Result<String> {
        Ok(self.pg.fingerprint(plan.target.as_deref().unwrap()))
    }
    fn one_part(&self) -> Option<String> {
        Some(self.db(0))
    }
    async fn part_fingerprint(&self, slot: usize, part: &str) -> Result<(String, String)> {
        let other = if part == self.db(slot) {
            self.extra(slot)
        } else {
            self.db(slot)
        };
        Ok((self.pg.fingerprint(part), self.pg.fingerprint(&other)))
    }
    /// The row count of a table, compared by the staged restore in its scratch database.
    fn falsify(&self, record: &mut ComponentRecord) -> bool {
        let Some(tables) = record
            .details
            .pointer_mut("/databases/0/counts/tables")
            .and_then(|t| t.as_object_mut())
        else {
            return false;
        };
        let Some((_, n)) = tables.iter_mut().next() else {
            return false;
        };
        *n = (n.as_i64().unwrap_or(0) + 1).into();
        true
    }
}

/// Both restore paths, one after the other (they share the cluster's roles, so not at once):
/// one job, the default, streams the artifact straight into pg_restore (damage shows at its
/// end); two jobs first write the dump to a temporary file for a parallel pg_restore.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_driver_passes_the_conformance_suite() {
    let Some(pg) = Pg::from_env() else { return };
    let _roles = ROLES.lock().await;
    for restore_jobs in [1, 2] {
        let fx = Fx::new(
            pg.clone(),
            format!("amber_conf_j{restore_jobs}"),
            restore_jobs,
        );
        let (repo, _guard) = testkit::temp_repo();
        if let Err(e) = testkit::run_all(&fx, &repo).await {
            panic!("restore_jobs = {restore_jobs}: {e}");
        }
    }
}

/// An application writing while the backup runs: inserts through a `bigserial`, an identity
/// column and a cached sequence of its own, updates, deletes, money moved between accounts, and
/// inserts rolled back (which burn sequence values). Sequences move outside transactions, so
/// the dump holds later positions than the snapshot's queries see.
struct App {
    pg: Pg,
    db: String,
}

const APP_SETUP: &str = "DROP SCHEMA IF EXISTS live CASCADE; CREATE SCHEMA live; \
    CREATE TABLE live.items (id bigserial PRIMARY KEY, payload text NOT NULL, n int NOT NULL); \
    CREATE TABLE live.accounts (id int PRIMARY KEY, balance bigint NOT NULL); \
    INSERT INTO live.accounts SELECT g, 100 FROM generate_series(1, 10) g; \
    CREATE SEQUENCE live.tickets CACHE 5; \
    CREATE TABLE live.events (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, note text); \
    INSERT INTO live.items (payload, n) SELECT md5(g::text), g FROM generate_series(1, 300) g;";

impl App {
    async fn psql(&self, sql: String) -> Result<String> {
        let mut cmd = tokio::process::Command::from(self.pg.cmd("psql", &self.db));
        let out = cmd
            .args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-c", &sql])
            .output()
            .await
            .map_err(|e| amber_dr_core::Error::Other(format!("psql: {e}")))?;
        if !out.status.success() {
            return Err(amber_dr_core::Error::Other(format!(
                "psql failed: {}\nSQL: {sql}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }
}

#[async_trait]
impl testkit::Writer for App {
    async fn write_until(
        &self,
        _slot: usize,
        stop: &AtomicBool,
        changes: &AtomicU64,
    ) -> Result<()> {
        self.psql(APP_SETUP.into()).await?;
        let mut i: u64 = 0;
        while !stop.load(Ordering::SeqCst) {
            let (a, b) = (1 + i % 10, 1 + (i * 7 + 3) % 10);
            self.psql(format!(
                "BEGIN; \
                 INSERT INTO live.items (payload, n) SELECT md5(random()::text), g FROM generate_series(1, 3) g; \
                 UPDATE live.items SET n = n + 1, payload = payload || 'u' WHERE id = (SELECT max(id) - 5 FROM live.items); \
                 DELETE FROM live.items WHERE id = (SELECT min(id) FROM live.items); \
                 UPDATE live.accounts SET balance = balance - 7 WHERE id = {a}; \
                 UPDATE live.accounts SET balance = balance + 7 WHERE id = {b}; \
                 INSERT INTO live.events (note) VALUES ('event {i}'); \
                 SELECT nextval('live.tickets'); \
                 COMMIT; \
                 BEGIN; INSERT INTO live.items (payload, n) VALUES ('rolled back', 0); ROLLBACK;"
            ))
            .await?;
            changes.fetch_add(1, Ordering::SeqCst);
            i += 1;
        }
        Ok(())
    }

    async fn check_restored(&self, _slot: usize) -> Result<()> {
        let fail = |what: String| Err(amber_dr_core::Error::Other(what));
        let total = self
            .psql("SELECT sum(balance) FROM live.accounts".into())
            .await?;
        if total != "1000" {
            return fail(format!("money was lost or made: total {total}"));
        }
        // Every sequence is at or past every key it handed out: the application can insert.
        let ahead = self
            .psql(
                "SELECT (SELECT last_value FROM live.items_id_seq) >= (SELECT max(id) FROM live.items) \
                 AND (SELECT last_value FROM live.events_id_seq) >= coalesce((SELECT max(id) FROM live.events), 0) \
                 AND (SELECT is_called FROM live.tickets)"
                    .into(),
            )
            .await?;
        if ahead != "t" {
            return fail(format!("a sequence is behind its table's keys: {ahead}"));
        }
        let rows = self
            .psql("SELECT count(*) FROM live.items WHERE payload = 'rolled back'".into())
            .await?;
        if rows != "0" {
            return fail(format!("{rows} rolled-back rows came back"));
        }
        self.psql(
            "INSERT INTO live.items (payload, n) VALUES ('after the restore', 0); \
             INSERT INTO live.events (note) VALUES ('after the restore')"
                .into(),
        )
        .await?;
        Ok(())
    }
}

/// Issue 18: a backup taken while the application writes is complete and restores (the
/// restore compares each sequence with the position the dump holds, not the one the snapshot
/// saw), and the restored data holds the application's invariants, checked with psql.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_the_application_writes_restores() {
    let Some(pg) = Pg::from_env() else { return };
    let _roles = ROLES.lock().await;
    let fx = Fx::new(pg.clone(), "amber_online", 1);
    let app = App { pg, db: fx.db(0) };
    for round in 0..3 {
        let (repo, _guard) = testkit::temp_repo();
        match testkit::writers_during_backup(&fx, &app, &repo).await {
            Ok(testkit::OnlineOutcome::Restored {
                changes_during_backup,
            }) => eprintln!(
                "round {round}: restored; {changes_during_backup} changes during the backup"
            ),
            Ok(other) => panic!("round {round}: the online backup failed: {other:?}"),
            Err(e) => panic!("round {round}: {e}"),
        }
    }
}

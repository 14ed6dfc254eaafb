//! `via_container`: pg_dump, pg_dumpall, pg_restore and psql run inside a container through the
//! Docker exec API. The container (busybox, host network) sees the host's PostgreSQL client
//! tools at /opt/amber-pgbin, a path that does not exist on the host: a tool run on the host by
//! mistake fails. The whole conformance suite runs through it against the stack's Postgres.
//!
//! Here, in the integration crate, because it needs the Postgres driver and amber-dr-docker
//! together: the driver asks core for a tool runner, and the Docker one is registered by
//! `amber_dr_docker::register_tool_runner()` as the `amber-dr` binary does.
// test-lane: stores (the conformance suite against the stack's Postgres cluster)
#![allow(missing_docs, clippy::unwrap_used)]

#[path = "../../amber-dr-postgres/tests/common/mod.rs"]
mod common;

use std::process::Command;
use std::sync::Arc;

use amber_dr_core::plan::ComponentPlan;
use amber_dr_core::testkit::{self, Fixture};
use amber_dr_core::{async_trait, Component, ComponentRecord, Result};
use amber_dr_postgres::{Postgres, PostgresConfig};
use common::Pg;

const BIN_IN_CONTAINER: &str = "/opt/amber-pgbin";
static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A running tools container, removed on drop.
struct ToolsContainer {
    host: String,
    name: String,
}

impl ToolsContainer {
    fn start(pg: &Pg) -> Option<ToolsContainer> {
        let Ok(host) = std::env::var("AMBER_DR_DOCKER_HOST") else {
            testkit::service_missing("Docker engine (AMBER_DR_DOCKER_HOST from scripts/stack.sh)");
            return None;
        };
        let image = std::env::var("AMBER_DR_DOCKER_IMAGE")
            .unwrap_or_else(|_| "amber-dr-busybox:latest".into());
        let name = format!(
            "amberdr-pgtools-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        );
        let docker = |args: &[&str]| {
            Command::new("docker")
                .arg("-H")
                .arg(&host)
                .args(args)
                .output()
                .unwrap()
        };
        let _ = docker(&["rm", "-f", &name]);
        let bin = format!("{}:{BIN_IN_CONTAINER}:ro", pg.bindir);
        let out = docker(&[
            "run",
            "-d",
            "--name",
            &name,
            "--network",
            "host",
            "-v",
            &bin,
            "-v",
            "/usr/lib:/usr/lib:ro",
            "-v",
            "/usr/lib:/lib:ro",
            "-v",
            "/usr/lib64:/lib64:ro",
            "-v",
            "/etc/ld.so.cache:/etc/ld.so.cache:ro",
            &image,
            "sleep",
            "100000",
        ]);
        if !out.status.success() {
            testkit::service_missing(&format!(
                "a tools container on {host}: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
            return None;
        }
        assert!(
            !std::path::Path::new(BIN_IN_CONTAINER).exists(),
            "{BIN_IN_CONTAINER} must not exist on the host"
        );
        Some(ToolsContainer { host, name })
    }
}

impl Drop for ToolsContainer {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["-H", &self.host, "rm", "-f", &self.name])
            .output();
    }
}

struct Fx {
    pg: Pg,
    tools: (String, String),
    /// The failing component's port: one that refuses connections.
    closed: testkit::ClosedPort,
}

/// The small second database of each slot: a table, changed by `destroy`.
const EXTRA_SQL: &str = "CREATE TABLE t (k int PRIMARY KEY, v text); \
    INSERT INTO t VALUES (1, 'one'), (2, 'two'), (3, 'three');";
const EXTRA_DESTROY: &str = "UPDATE t SET v = 'changed' WHERE k = 1; DELETE FROM t WHERE k = 2; \
    INSERT INTO t VALUES (9, 'not in the backup');";

impl Fx {
    fn db(&self, slot: usize) -> String {
        format!("amber_via_{slot}")
    }
    /// The small second database of `slot`: with it, each component has two parts.
    fn extra(&self, slot: usize) -> String {
        format!("amber_via_{slot}_x")
    }
    fn config(&self, slot: usize) -> PostgresConfig {
        PostgresConfig::new(self.pg.url("postgres"))
            .databases([self.db(slot), self.extra(slot)])
            .bin_dir(BIN_IN_CONTAINER)
            .via_container(&self.tools.1, Some(self.tools.0.clone()))
    }
}

#[async_trait]
impl Fixture for Fx {
    fn component(&self, slot: usize) -> Arc<dyn Component> {
        Arc::new(Postgres::new(format!("pg{slot}"), self.config(slot)).unwrap())
    }
    fn failing_component(&self) -> Arc<dyn Component> {
        let mut cfg = PostgresConfig::new(format!(
            "postgres://postgres:{}@127.0.0.1:{}/postgres",
            self.pg.password, self.closed.port
        ))
        .via_container(&self.tools.1, Some(self.tools.0.clone()));
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
    async fn other_target(&self) -> Result<Option<ComponentPlan>> {
        self.pg.psql(
            "postgres",
            "DROP DATABASE IF EXISTS amber_via_target WITH (FORCE)",
        );
        Ok(Some(ComponentPlan {
            target: Some("amber_via_target".into()),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite_with_the_tools_in_a_container() {
    amber_dr_docker::register_tool_runner();
    let Some(pg) = Pg::from_env() else { return };
    let Some(tc) = ToolsContainer::start(&pg) else {
        return;
    };
    let fx = Fx {
        pg,
        tools: (tc.host.clone(), tc.name.clone()),
        closed: testkit::closed_port(),
    };
    let (repo, _guard) = testkit::temp_repo();
    testkit::run_all(&fx, &repo).await.unwrap();
}

#[tokio::test]
async fn a_missing_container_or_tools_are_clear_errors() {
    amber_dr_docker::register_tool_runner();
    let Some(pg) = Pg::from_env() else { return };
    let Some(tc) = ToolsContainer::start(&pg) else {
        return;
    };
    let (repo, _guard) = testkit::temp_repo();
    let run = |cfg: PostgresConfig| {
        let repo = repo.clone();
        async move {
            let c: Arc<dyn Component> = Arc::new(Postgres::new("pg", cfg).unwrap());
            let m = amber_dr_core::Runner::new(repo, vec![c])
                .backup(&Default::default())
                .await
                .unwrap();
            m.components["pg"].error.clone().unwrap_or_default()
        }
    };
    let missing = format!("amberdr-no-such-{}", std::process::id());
    let err = run(PostgresConfig::new(pg.url("postgres"))
        .bin_dir(BIN_IN_CONTAINER)
        .via_container(&missing, Some(tc.host.clone())))
    .await;
    assert!(err.contains(&format!("container `{missing}`")), "{err}");
    // The container exists but has no pg_dump where it is looked for.
    let err = run(PostgresConfig::new(pg.url("postgres"))
        .bin_dir("/nowhere")
        .via_container(&tc.name, Some(tc.host.clone())))
    .await;
    assert!(err.contains("no usable pg_dump in container"), "{err}");
    assert!(err.contains("/nowhere"), "{err}");
    // restore_jobs > 1 cannot work through exec.
    let mut cfg = PostgresConfig::new(pg.url("postgres")).via_container(&tc.name, None);
    cfg.restore_jobs = 2;
    let e = Postgres::new("pg", cfg).unwrap_err().to_string();
    assert!(e.contains("restore_jobs"), "{e}");
}

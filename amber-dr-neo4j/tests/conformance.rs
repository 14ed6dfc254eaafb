//! The core conformance suite against the real Neo4j, with the awkward graph.
// test-lane: stores (uses the Postgres cluster or Neo4j, whose global state other tests change)
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use amber_dr_core::testkit::{self, Fixture};
use amber_dr_core::{async_trait, Component, ComponentRecord, Result};
use amber_dr_neo4j::{Neo4j, Neo4jConfig};
use common::Neo;

struct Fx {
    neo: Neo,
    /// The failing component's address: a port that refuses connections.
    closed: testkit::ClosedPort,
}

impl Fx {
    fn new(neo: Neo) -> Self {
        Self {
            neo,
            closed: testkit::closed_port(),
        }
    }
}

#[async_trait]
impl Fixture for Fx {
    /// Community has one database: the drill's scratch copy goes to the other server.
    async fn drill_config(&self) -> amber_dr_core::drill::DrillConfig {
        amber_dr_core::drill::DrillConfig {
            neo4j_uri: Some(self.neo.uris[1].clone()),
            ..Default::default()
        }
    }
    fn component(&self, slot: usize) -> Arc<dyn Component> {
        Arc::new(Neo4j::new(format!("graph{slot}"), self.neo.config(slot)).unwrap())
    }
    fn failing_component(&self) -> Arc<dyn Component> {
        let uri = format!("bolt://127.0.0.1:{}", self.closed.port);
        let mut cfg = Neo4jConfig::new(uri, self.neo.password.clone());
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
    /// Another server (the stack's second Neo4j, slot 1's) as the target URI: Neo4j
    /// Community has one user database, so another database of the same server is not
    /// available here.
    async fn other_target(&self) -> Result<Option<amber_dr_core::ComponentPlan>> {
        self.neo.make_empty(1).await;
        Ok(Some(amber_dr_core::ComponentPlan {
            target: Some(self.neo.config(1).uri.clone()),
            items: Vec::new(),
        }))
    }
    async fn target_fingerprint(&self, _plan: &amber_dr_core::ComponentPlan) -> Result<String> {
        Ok(self.neo.fingerprint(1).await)
    }
    /// The node count: compared with the decoded artifacts in the prepare phase (and with the
    /// restored graph after the restore).
    fn falsify(&self, record: &mut ComponentRecord) -> bool {
        let Some(n) = record.stats.get_mut("nodes") else {
            return false;
        };
        *n = (n.as_i64().unwrap_or(0) + 1).into();
        true
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn neo4j_driver_passes_the_conformance_suite() {
    let Some(neo) = Neo::from_env().await else {
        return;
    };
    let _lock = common::SERVER_LOCK.lock().await;
    let fx = Fx::new(neo);
    let (repo, _guard) = testkit::temp_repo();
    if let Err(e) = testkit::run_all(&fx, &repo).await {
        panic!("{e}");
    }
}

/// An application changing the graph while it is exported (Cypher over neo4rs, another client
/// than the driver): each round creates a node linked to the previous one, deletes the node
/// five rounds old with its relationships, and updates a property. `rest` is the rest of the
/// graph (the fixture's awkward graph, which it does not touch) described by independent
/// Cypher before the backup.
struct App {
    neo: Neo,
    rest: String,
}

#[async_trait]
impl testkit::Writer for App {
    async fn write_until(&self, _: usize, stop: &AtomicBool, changes: &AtomicU64) -> Result<()> {
        let g = self.neo.graph(0).await;
        let err = |e: neo4rs::Error| amber_dr_core::Error::Other(format!("writer: {e}"));
        let mut i: i64 = 0;
        while !stop.load(Ordering::SeqCst) {
            g.run(
                neo4rs::query("CREATE (:Live {i: $i, payload: 'payload ' + toString($i)})")
                    .param("i", i),
            )
            .await
            .map_err(err)?;
            g.run(
                neo4rs::query(
                    "MATCH (p:Live {i: $prev}), (n:Live {i: $i}) \
                     CREATE (p)-[:NEXT {from: $prev, to: $i}]->(n)",
                )
                .param("prev", i - 1)
                .param("i", i),
            )
            .await
            .map_err(err)?;
            g.run(neo4rs::query("MATCH (o:Live {i: $old}) DETACH DELETE o").param("old", i - 5))
                .await
                .map_err(err)?;
            g.run(neo4rs::query("MATCH (n:Live {i: $i}) SET n.touched = true").param("i", i - 1))
                .await
                .map_err(err)?;
            changes.fetch_add(1, Ordering::SeqCst);
            i += 1;
        }
        Ok(())
    }

    /// Every restored node and relationship holds what was written for it, and the rest of
    /// the graph is restored exactly.
    async fn check_restored(&self, _: usize) -> Result<()> {
        let now = self.neo.fingerprint_without(0, Some("Live")).await;
        if now != self.rest {
            return Err(amber_dr_core::Error::Other(format!(
                "the restored graph (without the application's :Live nodes) differs from the populated one:\n{}",
                line_diff(&self.rest, &now)
            )));
        }
        let bad = self
            .neo
            .rows(
                0,
                neo4rs::query(
                    "MATCH (n:Live) WHERE n.payload <> 'payload ' + toString(n.i) RETURN count(n) AS c \
                     UNION ALL MATCH (a:Live)-[r:NEXT]->(b:Live) WHERE r.from <> a.i OR r.to <> b.i RETURN count(r) AS c",
                ),
            )
            .await;
        let counts: Vec<i64> = bad.iter().map(|r| r.get("c").unwrap()).collect();
        if counts.iter().any(|c| *c != 0) {
            return Err(amber_dr_core::Error::Other(format!(
                "restored nodes or relationships differ from what was written: {counts:?}"
            )));
        }
        Ok(())
    }
}

/// The lines whose number of occurrences differs between `want` and `got`, as `-N line`
/// (missing N times) or `+N line` (N times too many), at most 20.
fn line_diff(want: &str, got: &str) -> String {
    let mut counts: std::collections::BTreeMap<&str, i64> = Default::default();
    for l in want.lines() {
        *counts.entry(l).or_default() -= 1;
    }
    for l in got.lines() {
        *counts.entry(l).or_default() += 1;
    }
    let diff: Vec<String> = counts
        .into_iter()
        .filter(|(_, n)| *n != 0)
        .map(|(l, n)| format!("{n:+} {l}"))
        .collect();
    let more = diff.len().saturating_sub(20);
    let mut out = diff.into_iter().take(20).collect::<Vec<_>>().join("\n");
    if more > 0 {
        out.push_str(&format!("\n… and {more} more"));
    }
    out
}

/// Issue 18: every backup taken while nodes and relationships are created and deleted is
/// complete (relationships whose end node the export did not read are left out and counted),
/// verifies and restores: the application's nodes and relationships hold what was written, the
/// rest of the graph is exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_the_application_writes_restores() {
    let Some(neo) = Neo::from_env().await else {
        return;
    };
    let _lock = common::SERVER_LOCK.lock().await;
    neo.populate(0).await;
    let rest = neo.fingerprint_without(0, Some("Live")).await;
    let fx = Fx::new(neo.clone());
    let app = App { neo, rest };
    for round in 0..6 {
        let (repo, _guard) = testkit::temp_repo();
        match testkit::writers_during_backup(&fx, &app, &repo).await {
            Ok(outcome @ testkit::OnlineOutcome::Restored { .. }) => {
                eprintln!("round {round}: {outcome:?}")
            }
            Ok(testkit::OnlineOutcome::Failed(msg)) => {
                panic!("round {round}: the backup failed while the application wrote: {msg}")
            }
            Err(e) => panic!("round {round}: {e}"),
        }
    }
}

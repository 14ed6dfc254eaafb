//! The graph changes between the export's node and relationship queries, on the real server.
// test-lane: stores (the unit tests of the export use Neo4j, whose database other tests empty)
#![allow(clippy::unwrap_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use amber_dr_core::runner::{BackupOptions, RestorePlanOptions, Runner, Selection};
use amber_dr_core::{Component, RestoreOptions, VerifyLevel};
use neo4rs::query;

use super::{AFTER_NODES, KEEP_DANGLING};
use crate::Neo4j;
use common::Neo;

async fn count(neo: &Neo, q: &str) -> i64 {
    neo.rows(0, query(q)).await[0].get("c").unwrap()
}

/// Issue 18: between the node and the relationship query, a node is created with a
/// relationship from a node already read (that relationship dangles: its end was not read)
/// and a node already read is deleted with its relationships. The backup is complete, counts
/// and warns about the one relationship left out, verifies, and restores everything else: the
/// graph as the node query saw it, without the deleted node's relationships.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relationship_to_a_node_created_during_the_export_is_left_out_and_counted() {
    let Some(neo) = Neo::from_env().await else {
        return;
    };
    let _lock = common::SERVER_LOCK.lock().await;
    // What the restore must bring back: the graph with Bob's relationships gone, Bob kept.
    neo.populate(0).await;
    neo.run(0, query("MATCH (:Person {name: 'Bob'})-[r]-() DELETE r"))
        .await;
    let expected = neo.fingerprint(0).await;
    let expected_rels = count(&neo, "MATCH ()-[r]->() RETURN count(r) AS c").await;

    neo.populate(0).await;
    let app = neo.clone();
    *AFTER_NODES.lock().unwrap() = Some(Box::pin(async move {
        app.run(
            0,
            query("MATCH (h:Hub) CREATE (h)-[:LATE {k: 1}]->(:Late {k: 1})"),
        )
        .await;
        app.run(0, query("MATCH (b:Person {name: 'Bob'}) DETACH DELETE b"))
            .await;
    }));

    let (repo, _dir) = amber_dr_core::testkit::temp_repo();
    let comp: Arc<dyn Component> = Arc::new(Neo4j::new("graph", neo.config(0)).unwrap());
    let r = Runner::new(repo, vec![comp]);
    let m = r.backup(&BackupOptions::default()).await.unwrap();
    assert!(
        AFTER_NODES.lock().unwrap().is_none(),
        "the hook did not run"
    );
    assert!(m.is_complete(), "{:?}", m.components);
    let rec = &m.components["graph"];
    assert_eq!(rec.stat_u64("relationships.left_out"), Some(1), "{rec:?}");
    assert_eq!(
        rec.stat_u64("relationships"),
        Some(expected_rels as u64),
        "{rec:?}"
    );
    assert!(
        rec.warnings
            .iter()
            .any(|w| w.contains("1 relationship(s) left out") && w.contains(":LATE]")),
        "{:?}",
        rec.warnings
    );
    let v = r
        .verify(&m.id, &Selection::all(), VerifyLevel::Full)
        .await
        .unwrap();
    assert!(v.is_ok(), "{:?}", v.components);

    neo.destroy(0).await;
    neo.make_empty(0).await;
    let plan = RestorePlanOptions {
        selection: Selection::all(),
        options: RestoreOptions::default(),
        safety_backup: false,
        components: Default::default(),
    };
    let out = r.restore(&m.id, &plan).await.unwrap();
    assert!(out.is_ok(), "{:?}", out.components);
    assert_eq!(count(&neo, "MATCH (n:Late) RETURN count(n) AS c").await, 0);
    assert_eq!(
        count(&neo, "MATCH (n:Person {name: 'Bob'}) RETURN count(n) AS c").await,
        1
    );
    // Compared by independent Cypher (not the driver's own fingerprint).
    assert!(
        neo.fingerprint(0).await == expected,
        "the restored graph differs"
    );
}

/// A backup written by a version before issue 18 can hold a relationship to a node it does not
/// hold (here: one created between the queries, kept as those versions did). It is complete;
/// verify passes and says so; the restore leaves that relationship out, warns, and brings back
/// the rest exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_earlier_backup_with_a_dangling_relationship_restores_without_it() {
    let Some(neo) = Neo::from_env().await else {
        return;
    };
    let _lock = common::SERVER_LOCK.lock().await;
    neo.populate(0).await;
    let expected = neo.fingerprint(0).await;
    let app = neo.clone();
    *AFTER_NODES.lock().unwrap() = Some(Box::pin(async move {
        app.run(
            0,
            query("MATCH (h:Hub) CREATE (h)-[:LATE {k: 1}]->(:Late {k: 1})"),
        )
        .await;
    }));
    KEEP_DANGLING.store(true, Ordering::SeqCst);
    let (repo, _dir) = amber_dr_core::testkit::temp_repo();
    let comp: Arc<dyn Component> = Arc::new(Neo4j::new("graph", neo.config(0)).unwrap());
    let r = Runner::new(repo, vec![comp]);
    let m = r.backup(&BackupOptions::default()).await;
    KEEP_DANGLING.store(false, Ordering::SeqCst);
    let m = m.unwrap();
    assert!(m.is_complete(), "{:?}", m.components);
    assert_eq!(
        m.components["graph"].stat_u64("relationships.left_out"),
        Some(0)
    );
    let v = r
        .verify(&m.id, &Selection::all(), VerifyLevel::Full)
        .await
        .unwrap();
    assert!(v.is_ok(), "{:?}", v.components);
    let notes = format!("{:?}", v.components);
    assert!(
        notes.contains("1 relationship(s) end at nodes the backup does not hold"),
        "{notes}"
    );

    neo.destroy(0).await;
    let plan = RestorePlanOptions {
        selection: Selection::all(),
        options: RestoreOptions::default(),
        safety_backup: false,
        components: Default::default(),
    };
    let out = r.restore(&m.id, &plan).await.unwrap();
    assert!(out.is_ok(), "{:?}", out.components);
    let report = format!("{:?}", out.components);
    assert!(report.contains("restored without them"), "{report}");
    assert_eq!(count(&neo, "MATCH (n:Late) RETURN count(n) AS c").await, 0);
    assert!(
        neo.fingerprint(0).await == expected,
        "the restored graph differs"
    );
}

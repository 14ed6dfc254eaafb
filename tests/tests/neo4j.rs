//! Neo4j in the whole stack: the graph (entities and relationships that reference Postgres
//! document ids, plus the driver's awkward graph) and Postgres backed up together into a
//! repository on S3, both destroyed, restored, and compared with psql and independent Cypher;
//! the graph's document ids still resolve in the restored Postgres.
#![allow(missing_docs, clippy::unwrap_used)]

#[path = "../../amber-dr-neo4j/tests/common/mod.rs"]
mod neo_common;
#[path = "../../amber-dr-postgres/tests/common/mod.rs"]
mod pg_common;

use std::sync::Arc;

use amber_dr_core::{
    testkit, BackupOptions, Component, Repository, RestorePlanOptions, Runner, Selection,
    VerifyLevel,
};
use amber_dr_e2e::{s3_repository, unique_prefix};
use amber_dr_neo4j::Neo4j;
use amber_dr_postgres::{Postgres, PostgresConfig};
use neo4rs::query;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn neo4j_and_postgres_into_s3_and_back() {
    let Some(pg) = pg_common::Pg::from_env() else {
        return;
    };
    let Some(neo) = neo_common::Neo::from_env().await else {
        return;
    };
    let Some(cfg) = s3_repository(&unique_prefix("neo4j")) else {
        testkit::service_missing("the S3 endpoint (AMBER_DR_S3_ENDPOINT)");
        return;
    };
    let _lock = neo_common::SERVER_LOCK.lock().await;
    let repo = Repository::open(&cfg).unwrap();
    let db = "amber_e2e_neo4j";
    pg.populate(db);
    neo.populate(0).await;
    // Amber's graph: entities mentioned in documents, by the documents' Postgres ids.
    let ids: Vec<i64> = pg
        .psql(db, "SELECT id FROM app.documents ORDER BY id")
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert!(!ids.is_empty());
    neo.run(
        0,
        query(
            "UNWIND $ids AS id MERGE (d:Document {pg_document_id: id}) \
             CREATE (e:Entity {name: 'entity ' + toString(id)})-[:MENTIONED_IN {score: 0.5}]->(d)",
        )
        .param("ids", ids.clone()),
    )
    .await;
    let (pg0, neo0) = (pg.fingerprint(db), neo.fingerprint(0).await);

    let components: Vec<Arc<dyn Component>> = vec![
        Arc::new(
            Postgres::new(
                "postgres",
                PostgresConfig::new(pg.url("postgres")).databases([db]),
            )
            .unwrap(),
        ),
        Arc::new(Neo4j::new("neo4j", neo.config(0)).unwrap()),
    ];
    let runner = Runner::new(repo.clone(), components);
    let m = runner.backup(&BackupOptions::default()).await.unwrap();
    assert!(m.is_complete(), "{:?}", m.components);
    let v = runner
        .verify("latest", &Selection::all(), VerifyLevel::Full)
        .await
        .unwrap();
    assert!(v.is_ok(), "{:?}", v.components);

    pg.destroy(db);
    neo.destroy(0).await;
    neo.run(0, query("MATCH (d:Document) DETACH DELETE d"))
        .await;
    assert_ne!(neo.fingerprint(0).await, neo0);

    let out = runner
        .restore(
            &m.id,
            &RestorePlanOptions {
                selection: Selection::all(),
                options: Default::default(),
                safety_backup: true,
            },
        )
        .await
        .unwrap();
    assert!(out.is_ok(), "{:?}", out.components);
    assert_eq!(pg.fingerprint(db), pg0);
    assert_eq!(neo.fingerprint(0).await, neo0);

    // Every document the graph points at exists in the restored Postgres.
    let rows = neo
        .rows(
            0,
            query("MATCH (:Entity)-[:MENTIONED_IN]->(d:Document) RETURN collect(toString(d.pg_document_id)) AS ids"),
        )
        .await;
    let graph_ids: Vec<String> = rows[0].get("ids").unwrap();
    assert_eq!(graph_ids.len(), ids.len());
    for id in graph_ids {
        let n = pg.psql(
            db,
            &format!("SELECT count(*) FROM app.documents WHERE id = {id}"),
        );
        assert_eq!(
            n.trim(),
            "1",
            "document {id} referenced by the graph is missing"
        );
    }
}

//! The full-stack drill of the runbook, through the library.
//!
//! Every store of the local stack — Postgres, Neo4j, two S3 buckets (the `minio` driver on
//! s3s-fs), Milvus (the logical path, an auto-id collection) and the uploads directory — is
//! loaded with one data set in which Postgres `app.documents` rows point into every other store
//! (`minio_key` → an object, `milvus_id` → an auto-generated Milvus primary key, `upload_path`
//! → a file; Neo4j nodes carry the documents' ids). It is backed up into a repository on the
//! stack's S3, verified, destroyed (references broken first, then stores lost), restored, and
//! every store is compared with the original through a tool independent of amber-dr (psql,
//! Cypher over neo4rs, boto3, pymilvus, a tree hash); every cross-store reference must resolve
//! again.
//!
//! Then the partial drill: newer data in every store, a second backup, and Neo4j alone restored
//! from the first (older, not latest) backup: Neo4j equals the first state, every other store
//! keeps its newer data.
//!
//! etcd is not a component here: Amber keeps nothing in etcd but Milvus's own metadata, which
//! the logical Milvus backup covers (its prefix must never be restored beside it).
// test-lane: last (the whole stack, alone after every other lane)
#![allow(missing_docs, clippy::unwrap_used)]

#[path = "../../amber-dr-files/tests/common/mod.rs"]
mod files_common;
#[path = "../../amber-dr-minio/tests/common/mod.rs"]
mod minio_common;
#[path = "../../amber-dr-milvus/tests/common/mod.rs"]
mod mv_common;
#[path = "../../amber-dr-neo4j/tests/common/mod.rs"]
mod neo_common;
#[path = "../../amber-dr-postgres/tests/common/mod.rs"]
mod pg_common;

mod stack_fixture;

use amber_dr_core::drill::{ComponentResult, DrillConfig, DrillReport, DrillState};
use amber_dr_core::references::ReferenceCheck;
use amber_dr_core::{
    testkit, DrillOptions, Repository, RestorePlanOptions, Runner, Selection, VerifyLevel,
};
use amber_dr_e2e::{s3_repository, unique_prefix};
use stack_fixture::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_stack_drill_and_partial_restore_of_neo4j_from_an_older_backup() {
    let base = tempfile::tempdir().unwrap();
    let Some(stack) = Stack::from_env(uploads_dir(base.path())).await else {
        return;
    };
    let Some(cfg) = s3_repository(&unique_prefix("stack")) else {
        testkit::service_missing("the S3 endpoint (AMBER_DR_S3_ENDPOINT)");
        return;
    };
    let _lock = neo_common::SERVER_LOCK.lock().await;
    let repo = Repository::open(&cfg).unwrap();
    let runner = Runner::new(repo.clone(), stack.components())
        .with_references(stack.references())
        .unwrap();
    // Phase timings, shown with --nocapture or on failure.
    let t0 = std::time::Instant::now();
    let lap = |what: &str| eprintln!("drill {:>6.1}s  {what}", t0.elapsed().as_secs_f64());

    stack.load().await;
    lap("loaded the data set");
    let (original, refs) = stack.checkpoint().await;
    assert!(refs.is_empty(), "{refs:?}");
    assert!(refs.checked > 1000, "{refs:?}");
    lap("checked references, described every store");

    // Full backup into the repository on S3, verified end to end.
    let m1 = backup(&runner, "drill").await;
    lap("backup 1");
    // The product's reference check agrees with the independent one: all resolve.
    let docs = stack.documents().len() as u64;
    assert_references(&m1.references, &refs, docs);
    let v = runner
        .verify(&m1.id, &Selection::all(), VerifyLevel::Full)
        .await
        .unwrap();
    assert!(v.is_ok(), "{:?}", v.components);
    lap("verified (full)");

    // The drill: backup 1 restored into scratch targets (a scratch database, buckets,
    // collections, directory, and the other Neo4j server), checked there, timed, removed; the
    // live stores are not written.
    let scratch_dir = base.path().join("drills");
    let drill_opts = DrillOptions {
        config: DrillConfig {
            dir: Some(scratch_dir.clone()),
            neo4j_uri: Some(stack.neo.uris[1 - NEO].clone()),
            ..Default::default()
        },
        ..Default::default()
    };
    let d = runner.drill(&m1.id, &drill_opts).await.unwrap();
    assert!(d.passed(), "{d:#?}");
    let drilled: Vec<(&str, ComponentResult)> = d
        .components
        .iter()
        .map(|c| (c.name.as_str(), c.result))
        .collect();
    assert_eq!(drilled.len(), 5, "{drilled:?}");
    assert!(
        drilled.iter().all(|(_, r)| *r == ComponentResult::Passed),
        "{drilled:?}"
    );
    // The references, checked in the scratch copies, count what the backup counted.
    assert_eq!(d.references.len(), 4, "{:?}", d.references);
    for r in &d.references {
        let b = m1
            .references
            .iter()
            .find(|x| x.spec.name == r.spec.name)
            .unwrap();
        assert!(r.resolves() && r.checked == b.checked, "{r:?} vs {b:?}");
    }
    assert!(d.rto_seconds.unwrap() > 0.0);
    assert!(
        d.phases.iter().any(|p| p.component == "milvus"),
        "{:?}",
        d.phases
    );
    assert!(
        d.scratch.iter().all(|s| s.state == "removed"),
        "{:?}",
        d.scratch
    );
    assert!(repo
        .get_bytes(&DrillReport::json_path(&d.id))
        .await
        .unwrap()
        .is_some());
    assert!(repo
        .get_bytes(&DrillReport::html_path(&d.id))
        .await
        .unwrap()
        .is_some());
    assert_eq!(stack.drill_leftovers(&scratch_dir), Vec::<String>::new());
    assert_each_equal(&stack.state().await, &original, "unchanged by the drill");
    lap("drilled backup 1 into scratch targets: passed, nothing left, live stores unchanged");

    // The disaster: first every kind of reference breaks (so the check can fail), then the
    // stores are lost.
    stack.break_references().await;
    let broken = stack.dangling().await;
    assert!(!broken.minio_keys.is_empty(), "{broken:?}");
    assert!(!broken.milvus_ids.is_empty(), "{broken:?}");
    assert!(!broken.neo4j_doc_ids.is_empty(), "{broken:?}");
    assert!(!broken.upload_paths.is_empty(), "{broken:?}");
    // A backup of the broken stores (Milvus's `_b` is gone): the product finds exactly the
    // references the independent check found dangling.
    let broken_runner = Runner::new(repo.clone(), stack.components_with(&["a"]))
        .with_references(stack.references())
        .unwrap();
    let mb = backup(&broken_runner, "broken").await;
    assert_references(&mb.references, &broken, stack.documents().len() as u64);
    let again = broken_runner.verify_references(&mb.id).await.unwrap();
    let strip = |v: &[ReferenceCheck]| {
        v.iter()
            .map(|r| ReferenceCheck {
                millis: 0,
                ..r.clone()
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&again.checks), strip(&mb.references));
    assert!(!again.resolves());
    lap("backup of the broken stores: its references checked");
    // A drill of that backup fails on the references that dangle in its scratch copies.
    let live = stack.state().await;
    let d = broken_runner.drill(&mb.id, &drill_opts).await.unwrap();
    assert_eq!(d.state, DrillState::Failed, "{d:#?}");
    assert!(
        d.components
            .iter()
            .all(|c| c.result == ComponentResult::Passed),
        "{d:#?}"
    );
    for r in &d.references {
        let b = mb
            .references
            .iter()
            .find(|x| x.spec.name == r.spec.name)
            .unwrap();
        assert_eq!(
            (r.checked, r.dangling),
            (b.checked, b.dangling),
            "{}",
            r.spec.name
        );
    }
    assert!(d.dangling());
    assert_eq!(stack.drill_leftovers(&scratch_dir), Vec::<String>::new());
    assert_each_equal(&stack.state().await, &live, "unchanged by the failed drill");
    lap("drilled the broken backup: failed on its dangling references");
    stack.lose_stores().await;
    lap("broke references, lost the stores");
    assert_each_differs(&stack.state().await, &original, "destroyed");
    lap("described the destroyed stores");

    let out = runner
        .restore(
            &m1.id,
            &RestorePlanOptions {
                safety_backup: true,
                components: Default::default(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(out.is_ok(), "{:?}", out.components);
    assert_eq!(out.components.len(), 5);
    assert!(out.safety_backup.is_some());
    assert_eq!(out.references.len(), 4, "{:?}", out.references);
    assert!(
        out.references.iter().all(ReferenceCheck::resolves),
        "live references after the restore: {:?}",
        out.references
    );
    lap("restored everything");
    let (now, refs) = stack.checkpoint().await;
    assert_each_equal(&now, &original, "restored identical");
    assert!(refs.is_empty(), "references after the restore: {refs:?}");

    lap("compared every store, checked references");

    // Partial drill: newer data everywhere and a newer backup; then Neo4j alone back to the
    // older backup.
    stack.add_newer_data().await;
    let newer = stack.state().await;
    lap("newer data, described every store");
    assert_each_differs(&newer, &original, "changed by the newer data");
    let m2 = backup(&runner, "newer").await;
    lap("backup 2");
    assert_eq!(repo.resolve("latest").await.unwrap(), m2.id);
    assert_ne!(m1.id, m2.id);
    let only_neo4j = RestorePlanOptions {
        selection: Selection {
            only: vec!["neo4j".into()],
            skip: vec![],
        },
        ..Default::default()
    };
    let out = runner.restore(&m1.id, &only_neo4j).await.unwrap();
    assert!(out.is_ok(), "{:?}", out.components);
    let restored: Vec<&str> = out
        .components
        .iter()
        .map(|c| c.component.as_str())
        .collect();
    assert_eq!(restored, ["neo4j"]);
    lap("restored Neo4j from backup 1");
    let (now, refs) = stack.checkpoint().await;
    assert_eq!(
        now.neo4j, original.neo4j,
        "Neo4j is back at the older backup"
    );
    assert_eq!(
        now.postgres, newer.postgres,
        "Postgres keeps its newer data"
    );
    assert_eq!(now.buckets, newer.buckets, "buckets keep their newer data");
    assert_eq!(now.milvus, newer.milvus, "Milvus keeps its newer data");
    assert_eq!(now.uploads, newer.uploads, "uploads keep their newer data");
    // The older graph points at documents that all still exist.
    assert!(
        refs.is_empty(),
        "references after the partial restore: {refs:?}"
    );
    lap("compared every store, checked references");

    // All or nothing: with any one component's artifact damaged (each in turn, the last in
    // restore order too), the whole restore is refused before anything changes: no safety
    // backup, every store as it was (compared with the independent clients below).
    let before = stack.state().await;
    let backups = repo.list().await.unwrap().len();
    let names: Vec<String> = m2.components.keys().cloned().collect();
    let everything = RestorePlanOptions {
        safety_backup: true,
        ..Default::default()
    };
    for name in &names {
        use object_store::ObjectStoreExt;
        let art = m2.components[name]
            .artifacts
            .iter()
            .max_by_key(|a| a.stored_size)
            .unwrap();
        let path = object_store::path::Path::from(art.path.as_str());
        let good = repo
            .store()
            .get(&path)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let mut bad = good.to_vec();
        let i = bad.len() / 2;
        bad[i] ^= 0x55;
        repo.store().put(&path, bad.into()).await.unwrap();
        if name == "uploads" {
            // A drill of the damaged backup fails on damage, naming the artifact.
            let only = DrillOptions {
                selection: Selection {
                    only: vec![name.clone()],
                    skip: vec![],
                },
                ..drill_opts.clone()
            };
            let d = runner.drill(&m2.id, &only).await.unwrap();
            assert_eq!(d.state, DrillState::Failed, "{d:#?}");
            assert!(d.damage(), "{d:#?}");
            let err = d.components[0].error.clone().unwrap();
            assert!(err.contains(&format!("{}/{name}", m2.id)), "{err}");
            assert_eq!(stack.drill_leftovers(&scratch_dir), Vec::<String>::new());
        }
        let err = runner.restore(&m2.id, &everything).await.unwrap_err();
        assert!(
            err.is_damage(),
            "damaged `{name}`: not refused as damage: {err}"
        );
        let msg = err.to_string();
        assert!(msg.contains(&format!("{}/{name}", m2.id)), "{msg}");
        assert_eq!(
            repo.list().await.unwrap().len(),
            backups,
            "a safety backup was taken"
        );
        repo.store().put(&path, good.into()).await.unwrap();
        lap(&format!("damaged `{name}`: whole-stack restore refused"));
    }
    let after = stack.state().await;
    assert_each_equal(&after, &before, "unchanged by the refused restores");
    // Nothing staged is left behind: no scratch database, no staging directory.
    let scratch = stack.pg.psql(
        "postgres",
        "SELECT count(*) FROM pg_database WHERE datname LIKE '%amber_dr_restore%'",
    );
    assert_eq!(scratch.trim(), "0", "scratch databases left");
    let parent = stack.uploads.parent().unwrap();
    let staged: Vec<String> = std::fs::read_dir(parent)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("amber-dr-staging"))
        .collect();
    assert!(staged.is_empty(), "staging directories left: {staged:?}");
    lap("every store unchanged");
    files_common::unlock(base.path());
}

//! Milvus-specific behaviour on the real server: auto-id keys kept, restore of one collection
//! under another name, probe, a server that is down or silent, a collection dropped during
//! the export, a damaged artifact of the last collection, a collection in a dropped database.
// test-lane: milvus (uses Milvus and its etcd)
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use amber_dr_core::testkit;
use amber_dr_core::{
    BackupOptions, Component, ProgressEvent, ProgressSink, RestoreOptions, RestorePlanOptions,
    Runner, Selection,
};
use amber_dr_milvus::{Milvus, MilvusConfig};
use common::Mv;

fn plan(opts: RestoreOptions) -> RestorePlanOptions {
    RestorePlanOptions {
        selection: Selection::all(),
        options: opts,
        safety_backup: false,
        components: Default::default(),
    }
}

/// Auto-id keys survive a restore (the collection comes back with auto_id off), and a drill
/// restore under another name leaves the original alone and gets the same keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_kept_and_a_copy_can_be_restored_under_another_name() {
    let Some(mv) = Mv::from_env() else { return };
    mv.fixture("populate", "amber_keys");
    let ids = |coll: &str| {
        mv.py(&format!(
            "c = Collection('{coll}'); c.load(); print(sorted(r['id'] for r in c.query('id > 0', output_fields=['id'], limit=16384)))"
        ))
    };
    let before = ids("amber_keys_a");
    assert!(before.len() > 100, "{before}");
    let cfg = MilvusConfig::new(&mv.endpoint).collections(["amber_keys_a", "amber_keys_b"]);
    let c: Arc<dyn Component> = Arc::new(Milvus::new("mv", cfg).unwrap());
    let probe = c.probe().await.unwrap();
    assert!(
        probe.version.as_deref().unwrap_or("").contains("2.3"),
        "{probe:?}"
    );
    assert_eq!(
        probe.details["entities.default.amber_keys_a"],
        serde_json::json!(210)
    );
    let (repo, _g) = testkit::temp_repo();
    let r = Runner::new(repo, vec![c]);
    let m = r.backup(&BackupOptions::default()).await.unwrap();
    assert!(m.is_complete(), "{:?}", m.components);
    // The flush's server timestamp is recorded as the point every exported write precedes:
    // within the backup's run (same machine's clock).
    let cons = &m.components["mv"].consistency;
    let at = cons["flushed_at.default.amber_keys_a"].as_str().unwrap();
    let at = chrono::DateTime::parse_from_rfc3339(at).unwrap();
    let slack = chrono::Duration::seconds(5);
    assert!(
        at >= m.started_at - slack && at <= m.finished_at + slack,
        "{at} not within {} .. {}",
        m.started_at,
        m.finished_at
    );
    assert!(cons["flush_ts.default.amber_keys_b"].as_u64().unwrap() > 1 << 40);

    mv.py("utility.drop_collection('amber_keys_a')");
    let out = r
        .restore(&m.id, &plan(RestoreOptions::new()))
        .await
        .unwrap();
    assert!(out.is_ok(), "{:?}", out.components);
    let warnings = &out.components[0].report.as_ref().unwrap().warnings;
    assert!(
        warnings.iter().any(|w| w.contains("auto_id = false")),
        "{warnings:?}"
    );
    assert_eq!(ids("amber_keys_a"), before, "primary keys changed");
    assert_eq!(
        mv.py("print(Collection('amber_keys_a').schema.auto_id)"),
        "False"
    );

    mv.py(
        "utility.has_collection('amber_keys_copy') and utility.drop_collection('amber_keys_copy')",
    );
    let out = r
        .restore(
            &m.id,
            &plan(
                RestoreOptions::new()
                    .items(vec!["amber_keys_a".into()])
                    .target(Some("amber_keys_copy".into())),
            ),
        )
        .await
        .unwrap();
    assert!(out.is_ok(), "{:?}", out.components);
    assert_eq!(ids("amber_keys_copy"), before);
    assert_eq!(
        mv.py("print(sorted(utility.list_aliases('amber_keys_a')), sorted(utility.list_aliases('amber_keys_copy')))"),
        "['amber_keys_alias'] []",
        "the alias stays with the original"
    );
    // A target name with several collections selected is refused.
    let out = r
        .restore(&m.id, &plan(RestoreOptions::new().target(Some("x".into()))))
        .await;
    let refused = match out {
        Err(e) => e.to_string(),
        Ok(o) => o.components[0].error.clone().unwrap_or_default(),
    };
    assert!(refused.contains("restores one collection"), "{refused}");
}

/// Nothing listens: a clear error at once. A server that accepts and never answers: an error
/// after the configured timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn milvus_down_or_silent_fails_in_bounded_time() {
    let closed = testkit::closed_port();
    let down_url = format!("http://127.0.0.1:{}", closed.port);
    let mut cfg = MilvusConfig::new(&down_url);
    cfg.timeout_secs = 2;
    let t = Instant::now();
    let err = Milvus::new("down", cfg)
        .unwrap()
        .probe()
        .await
        .unwrap_err()
        .to_string();
    assert!(t.elapsed() < Duration::from_secs(5));
    assert!(
        err.contains(&format!("cannot reach Milvus at {down_url}")),
        "{err}"
    );

    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let _keep = std::thread::spawn(move || {
        let mut conns = Vec::new();
        for c in silent.incoming() {
            conns.push(c);
        }
    });
    let mut cfg = MilvusConfig::new(format!("http://{addr}"));
    cfg.timeout_secs = 2;
    let t = Instant::now();
    let err = Milvus::new("silent", cfg)
        .unwrap()
        .probe()
        .await
        .unwrap_err()
        .to_string();
    assert!(t.elapsed() < Duration::from_secs(8), "{:?}", t.elapsed());
    assert!(err.contains(&addr.to_string()), "{err}");
}

/// Drops a collection (with pymilvus) once the export reaches a given phase and item count:
/// the driver is blocked meanwhile, so the drop lands at a known point of the export.
struct DropWhen {
    mv: Mv,
    phase: String,
    items: u64,
    victim: String,
    done: AtomicBool,
}

impl ProgressSink for DropWhen {
    fn update(&self, e: &ProgressEvent) {
        if e.phase == self.phase && e.items >= self.items && !self.done.swap(true, Ordering::SeqCst)
        {
            let v = &self.victim;
            self.mv.py(&format!(
                "[utility.drop_alias(a) for a in utility.list_aliases('{v}')]; utility.drop_collection('{v}')"
            ));
        }
    }
}

/// A collection dropped in the middle of its export, or after the collections were listed but
/// before its export began: the snapshot fails with an error naming it, and the backup is not
/// complete (`latest` does not move).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collection_dropped_during_the_export_fails_the_backup() {
    let Some(mv) = Mv::from_env() else { return };
    let (repo, _g) = testkit::temp_repo();
    for (victim, phase, items) in [
        ("amber_drop_a", "exporting default.amber_drop_a", 20),
        ("amber_drop_b", "exporting default.amber_drop_b", 0),
    ] {
        mv.fixture("populate", "amber_drop");
        let mut cfg = MilvusConfig::new(&mv.endpoint).collections(["amber_drop_a", "amber_drop_b"]);
        cfg.page_rows = 10;
        let c: Arc<dyn Component> = Arc::new(Milvus::new("mv", cfg).unwrap());
        let sink = Arc::new(DropWhen {
            mv: mv.clone(),
            phase: phase.into(),
            items,
            victim: victim.into(),
            done: AtomicBool::new(false),
        });
        let r = Runner::new(repo.clone(), vec![c]).with_progress(sink.clone());
        let m = r.backup(&BackupOptions::default()).await.unwrap();
        assert!(
            sink.done.load(Ordering::SeqCst),
            "{victim} was never dropped"
        );
        assert!(!m.is_complete(), "{victim}: {:?}", m.components);
        let err = m.components["mv"].error.clone().unwrap_or_default();
        assert!(
            err.contains(&format!("`default.{victim}` was dropped")),
            "{victim}: {err}"
        );
        assert!(repo.resolve("latest").await.is_err(), "latest moved");
    }
}

/// Damage in the artifact of the last collection of a backup is found before the first
/// collection is dropped: a failed restore leaves every collection as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_last_artifact_stops_the_restore_before_anything_is_dropped() {
    let Some(mv) = Mv::from_env() else { return };
    mv.fixture("populate", "amber_dmg");
    let cfg = MilvusConfig::new(&mv.endpoint).collections(["amber_dmg_a", "amber_dmg_b"]);
    let c: Arc<dyn Component> = Arc::new(Milvus::new("mv", cfg).unwrap());
    let (repo, dir) = testkit::temp_repo();
    let r = Runner::new(repo, vec![c]);
    let m = r.backup(&BackupOptions::default()).await.unwrap();
    assert!(m.is_complete(), "{:?}", m.components);
    let last = m.components["mv"].artifacts.last().unwrap().path.clone();
    assert!(last.contains("c001-"), "{last}");
    let file = dir.path().join(&last);
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&file, bytes).unwrap();

    mv.fixture("destroy", "amber_dmg");
    let before = mv.fixture("fingerprint", "amber_dmg");
    // The runner reads every artifact through before the restore starts (issue 18).
    let err = r
        .restore(&m.id, &plan(RestoreOptions::new()))
        .await
        .expect_err("a damaged artifact must stop the restore");
    assert!(err.is_damage(), "{err}");
    let err = err.to_string();
    assert!(err.contains(&last), "{err}");
    assert_eq!(
        mv.fixture("fingerprint", "amber_dmg"),
        before,
        "a failed restore changed a collection"
    );
}

/// With the default config every database is backed up (a collection outside `default`
/// included, with the key i64::MIN), and a restore after its database was dropped creates the
/// database again; a
/// configured collection or database that does not exist fails the backup, naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_database_comes_back_with_its_collections() {
    let Some(mv) = Mv::from_env() else { return };
    // pymilvus: `using_database` switches this fixture process's connection.
    let drop_db = "from pymilvus import db
if 'amber_db2' in db.list_database():
    db.using_database('amber_db2')
    for n in utility.list_collections():
        utility.drop_collection(n)
    db.using_database('default')
    db.drop_database('amber_db2')";
    mv.py(drop_db);
    mv.py("from pymilvus import db
import random
db.create_database('amber_db2')
db.using_database('amber_db2')
s = CollectionSchema([FieldSchema('id', DataType.INT64, is_primary=True),
                      FieldSchema('v', DataType.FLOAT_VECTOR, dim=4),
                      FieldSchema('t', DataType.VARCHAR, max_length=64)])
c = Collection('amber_db2_docs', s, consistency_level='Strong')
# The extreme keys: i64::MIN cannot be written in a Milvus expression.
ids = [-2**63, -2**63 + 1] + list(range(7, 3007, 10))
c.insert([ids, [[i, 0.5, -1.0, i / 3] for i in ids], [f'doc {i}' for i in ids]])
c.create_index('v', {'index_type': 'FLAT', 'metric_type': 'L2', 'params': {}})
c.load()
db.using_database('default')");
    let content = "from pymilvus import db
db.using_database('amber_db2')
c = Collection('amber_db2_docs')
c.load()
rows = sorted(c.query('id < 100000', output_fields=['id', 'v', 't'], limit=16384), key=lambda r: r['id'])
print(len(rows), sum(r['id'] for r in rows), rows[3]['t'], [round(x, 3) for x in rows[3]['v']])
db.using_database('default')";
    let before = mv.py(content);
    assert!(before.starts_with("302 "), "{before}");

    let cfg = MilvusConfig::new(&mv.endpoint).collections(["amber_db2/amber_db2_docs"]);
    assert!(cfg.databases.is_none(), "the default is every database");
    let c: Arc<dyn Component> = Arc::new(Milvus::new("mv", cfg).unwrap());
    let (repo, _g) = testkit::temp_repo();
    let r = Runner::new(repo.clone(), vec![c]);
    let m = r.backup(&BackupOptions::default()).await.unwrap();
    assert!(m.is_complete(), "{:?}", m.components);
    assert_eq!(
        m.components["mv"].stats["entities.amber_db2.amber_db2_docs"],
        serde_json::json!(302)
    );

    mv.py(drop_db);
    let out = r
        .restore(&m.id, &plan(RestoreOptions::new()))
        .await
        .unwrap();
    assert!(out.is_ok(), "{:?}", out.components);
    let actions = &out.components[0].report.as_ref().unwrap().actions;
    assert!(
        actions.iter().any(|a| a == "created database `amber_db2`"),
        "{actions:?}"
    );
    assert_eq!(mv.py(content), before, "the collection did not come back");
    assert_eq!(
        mv.py("print(utility.has_collection('amber_db2_docs'))"),
        "False",
        "restored into `default` instead of its own database"
    );

    // What the config names must exist.
    for (cfg, named) in [
        (
            MilvusConfig::new(&mv.endpoint).collections(["amber_db2/amber_nothing"]),
            "collection `amber_db2.amber_nothing` does not exist",
        ),
        (
            MilvusConfig::new(&mv.endpoint).collections(["amber_nothing_anywhere"]),
            "collection `amber_nothing_anywhere` does not exist in any database",
        ),
        (
            MilvusConfig {
                databases: Some(vec!["amber_no_db".into()]),
                ..MilvusConfig::new(&mv.endpoint)
            },
            "database `amber_no_db` (config `databases`) does not exist",
        ),
    ] {
        let c: Arc<dyn Component> = Arc::new(Milvus::new("mv", cfg).unwrap());
        let m = Runner::new(repo.clone(), vec![c])
            .backup(&BackupOptions::default())
            .await
            .unwrap();
        let err = m.components["mv"].error.clone().unwrap_or_default();
        assert!(err.contains(named), "{err}");
    }
    mv.py(drop_db);
}

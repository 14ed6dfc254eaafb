//! Issue 15 on the real Milvus 2.3.5, with Milvus's bucket configured (segment files):
//! collections in every state back up completely without changing their load states, and
//! after dropping everything a restore brings back schemas (auto-id included), indexes,
//! aliases, load states, partitions, every primary key and every field; then an insert
//! without a primary key into the auto-id collection gets a new id. Everything is written and
//! compared with pymilvus (tests/common/states.py), never with the driver.
// test-lane: milvus (uses Milvus and its etcd)
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use amber_dr_core::testkit;
use amber_dr_core::{
    BackupOptions, Component, RestoreOptions, RestorePlanOptions, Runner, Selection, VerifyLevel,
};
use amber_dr_milvus::{Milvus, MilvusConfig};
use common::Mv;

const STATES: &str = include_str!("common/states.py");

fn plan(opts: RestoreOptions) -> RestorePlanOptions {
    RestorePlanOptions {
        selection: Selection::all(),
        options: opts,
        safety_backup: false,
        components: Default::default(),
    }
}

fn states(mv: &Mv, call: &str) -> String {
    mv.py(&format!("{STATES}\n{call}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_collection_state_backs_up_and_auto_id_survives_a_restore() {
    let Some(mv) = Mv::from_env() else { return };
    let Some(storage) = common::milvus_storage() else {
        return;
    };
    let p = "amber_st";
    states(&mv, &format!("setup('{p}')"));
    let loads = states(&mv, &format!("load_states('{p}')"));
    assert!(loads.contains(r#""auto": "Loaded""#), "{loads}");
    assert!(loads.contains(r#""noindex": "NotLoad""#), "{loads}");
    let before = states(&mv, &format!("dump('{p}')"));
    assert_eq!(states(&mv, &format!("load_states('{p}')")), loads);

    let names: Vec<String> = ["empty", "unloaded", "noindex", "auto", "bin"]
        .iter()
        .map(|n| format!("{p}_{n}"))
        .collect();
    let cfg = MilvusConfig::new(&mv.endpoint)
        .collections(names.clone())
        .storage(storage);
    let c: Arc<dyn Component> = Arc::new(Milvus::new("mv", cfg).unwrap());
    let probe = c.probe().await.unwrap();
    assert!(
        probe.version.as_deref().unwrap().contains("2.3"),
        "{probe:?}"
    );
    let (repo, _g) = testkit::temp_repo();
    let r = Runner::new(repo, vec![c]);
    let m = r.backup(&BackupOptions::default()).await.unwrap();
    assert!(m.is_complete(), "{:?}", m.components);
    assert_eq!(
        states(&mv, &format!("load_states('{p}')")),
        loads,
        "the backup changed load states"
    );
    let v = r
        .verify(&m.id, &Selection::all(), VerifyLevel::Full)
        .await
        .unwrap();
    assert!(v.is_ok(), "{:?}", v.components);

    // Writes after the backup are not in it; then everything is dropped.
    states(&mv, &format!("drop_all('{p}')"));
    let out = r
        .restore(&m.id, &plan(RestoreOptions::new()))
        .await
        .unwrap();
    assert!(out.is_ok(), "{:?}", out.components);
    let report = out.components[0].report.as_ref().unwrap();
    assert!(
        !report.warnings.iter().any(|w| w.contains("auto_id")),
        "{:?}",
        report.warnings
    );
    assert_eq!(states(&mv, &format!("load_states('{p}')")), loads);
    let after = states(&mv, &format!("dump('{p}')"));
    assert_eq!(
        after, before,
        "the restored collections differ (pymilvus dump)"
    );
    assert!(after.contains(r#""auto_id": true"#), "{after}");

    // The application's next insert, without a primary key, works and gets a new id.
    let got = mv.py(&format!(
        "c = Collection('{p}_auto')\n\
         old = set(r['id'] for r in c.query('id > 0', output_fields=['id'], limit=16384))\n\
         res = c.insert([{{'tenant': 'acme', 'emb': [0.5] * 8, 'b': True, 'i8': 1, 'i16': 2, 'i32': 3, 'f32': 1.0, 'f64': 2.0, 'doc': {{}}, 'tags': []}}])\n\
         new = res.primary_keys[0]\n\
         c.flush()\n\
         now = c.query('id > 0', output_fields=['count(*)'], consistency_level='Strong')[0]['count(*)']\n\
         print(new not in old, now == len(old) + 1, len(old))"
    ));
    assert!(got.starts_with("True True "), "{got}");
    states(&mv, &format!("drop_all('{p}')"));
}

/// A restore of one collection leaves the others alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_of_one_collection_leaves_the_others_untouched() {
    let Some(mv) = Mv::from_env() else { return };
    let Some(storage) = common::milvus_storage() else {
        return;
    };
    let p = "amber_one";
    states(&mv, &format!("setup('{p}')"));
    let cfg = MilvusConfig::new(&mv.endpoint)
        .collections([format!("{p}_auto"), format!("{p}_bin")])
        .storage(storage);
    let c: Arc<dyn Component> = Arc::new(Milvus::new("mv", cfg).unwrap());
    let (repo, _g) = testkit::temp_repo();
    let r = Runner::new(repo, vec![c]);
    let m = r.backup(&BackupOptions::default()).await.unwrap();
    assert!(m.is_complete(), "{:?}", m.components);
    // Change both; restore only `_auto`.
    mv.py(&format!(
        "Collection('{p}_auto').delete('id > 0'); Collection('{p}_bin').delete('key in [\"k1\", \"k2\"]')"
    ));
    let count = |n: &str| {
        mv.py(&format!(
            "print(Collection('{p}_{n}').query('', output_fields=['count(*)'], consistency_level='Strong')[0]['count(*)'])"
        ))
    };
    assert_eq!(count("bin"), "138");
    let out = r
        .restore(
            &m.id,
            &plan(RestoreOptions::new().items(vec![format!("{p}_auto")])),
        )
        .await
        .unwrap();
    assert!(out.is_ok(), "{:?}", out.components);
    assert_eq!(count("auto"), "390");
    assert_eq!(count("bin"), "138", "the other collection was touched");
    // A copy under another name (a drill): its own collection, the original left alone.
    let out = r
        .restore(
            &m.id,
            &plan(
                RestoreOptions::new()
                    .items(vec![format!("{p}_bin")])
                    .target(Some(format!("{p}_copy"))),
            ),
        )
        .await
        .unwrap();
    assert!(out.is_ok(), "{:?}", out.components);
    assert_eq!(count("copy"), "140");
    assert_eq!(count("bin"), "138");
    assert_eq!(
        mv.py(&format!(
            "print(sorted(p.name for p in Collection('{p}_copy').partitions), utility.load_state('{p}_copy'))"
        )),
        "['_default', 'p1'] Loaded"
    );
    mv.py(&format!("utility.drop_collection('{p}_copy')"));
    states(&mv, &format!("drop_all('{p}')"));
}

/// A backup written as entity pages (without `storage`, or before segment files existed)
/// still restores when `storage` is configured; a probe whose bucket is not there fails,
/// naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entity_backups_still_restore_and_probe_checks_the_bucket() {
    let Some(mv) = Mv::from_env() else { return };
    let Some(storage) = common::milvus_storage() else {
        return;
    };
    let name = "amber_old_pages";
    mv.py(&format!(
        "{STATES}\n\
         c = _fresh('{name}', CollectionSchema([FieldSchema('id', DataType.INT64, is_primary=True), FieldSchema('v', DataType.FLOAT_VECTOR, dim=4)]))\n\
         c.insert([list(range(1, 51)), [_vec(i, 4) for i in range(1, 51)]])\n\
         c.create_index('v', {{'index_type': 'FLAT', 'metric_type': 'L2', 'params': {{}}}})\n\
         c.load()"
    ));
    let (repo, _g) = testkit::temp_repo();
    let old: Arc<dyn Component> =
        Arc::new(Milvus::new("mv", MilvusConfig::new(&mv.endpoint).collections([name])).unwrap());
    let m = Runner::new(repo.clone(), vec![old])
        .backup(&BackupOptions::default())
        .await
        .unwrap();
    assert!(m.is_complete(), "{:?}", m.components);
    mv.py(&format!("utility.drop_collection('{name}')"));
    let cfg = MilvusConfig::new(&mv.endpoint)
        .collections([name])
        .storage(storage.clone());
    let new: Arc<dyn Component> = Arc::new(Milvus::new("mv", cfg).unwrap());
    let out = Runner::new(repo, vec![new])
        .restore(&m.id, &plan(RestoreOptions::new()))
        .await
        .unwrap();
    assert!(out.is_ok(), "{:?}", out.components);
    assert_eq!(
        mv.py(&format!(
            "c = Collection('{name}'); print(sorted(r['id'] for r in c.query('id > 0', output_fields=['id'], limit=100)) == list(range(1, 51)))"
        )),
        "True"
    );
    mv.py(&format!("utility.drop_collection('{name}')"));

    let mut wrong = storage;
    wrong.bucket = "no-such-milvus-bucket".into();
    let cfg = MilvusConfig::new(&mv.endpoint).storage(wrong);
    let e = Milvus::new("mv", cfg).unwrap().probe().await.unwrap_err();
    assert!(e.to_string().contains("no-such-milvus-bucket"), "{e}");
}

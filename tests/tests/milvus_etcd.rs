//! Milvus's own etcd prefix configured as a component (the `etcd` driver) beside the logical
//! Milvus backup (the `milvus` driver): the runbook's known failure when both are restored
//! together. Here, not in either driver's suite, because it needs both drivers (a driver depends
//! on no other driver).
// test-lane: milvus (Milvus and its etcd: it backs up Milvus's own etcd prefix)
#![allow(missing_docs, clippy::unwrap_used)]

#[path = "../../amber-dr-milvus/tests/common/mod.rs"]
mod mv_common;

use std::sync::Arc;

use amber_dr_core::testkit;
use amber_dr_core::{
    BackupOptions, Component, RestoreOptions, RestorePlanOptions, Runner, Selection,
};
use amber_dr_milvus::{Milvus, MilvusConfig};
use mv_common::Mv;

fn plan(opts: RestoreOptions) -> RestorePlanOptions {
    RestorePlanOptions {
        selection: Selection::all(),
        options: opts,
        safety_backup: false,
        components: Default::default(),
    }
}

/// Milvus's own etcd prefix configured as a component beside the logical Milvus backup (the
/// runbook's known failure when restored together): both back up, but restoring both, or the
/// prefix without its bucket, is refused before anything changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn milvus_metadata_prefix_is_never_restored_with_the_logical_backup() {
    let Some(mv) = Mv::from_env() else { return };
    let Ok(etcd) = std::env::var("AMBER_DR_ETCD_ENDPOINT") else {
        testkit::service_missing("etcd (AMBER_DR_ETCD_ENDPOINT)");
        return;
    };
    let root = std::env::var("AMBER_DR_MILVUS_ETCD_ROOT").unwrap_or_else(|_| "by-dev".into());
    mv.fixture("populate", "amber_pair");
    let before = mv.fixture("fingerprint", "amber_pair");
    let mut ecfg = amber_dr_etcd::EtcdConfig::new(etcd, format!("{root}/"));
    ecfg.restore_with = vec!["milvus-bucket".into()];
    ecfg.conflicts_with = vec!["milvus".into()];
    let etcd_c: Arc<dyn Component> =
        Arc::new(amber_dr_etcd::Etcd::new("milvus-etcd", ecfg).unwrap());
    let mut mcfg = MilvusConfig::new(&mv.endpoint).collections(["amber_pair_a"]);
    mcfg.conflicts_with = vec!["milvus-etcd".into()];
    let milvus_c: Arc<dyn Component> = Arc::new(Milvus::new("milvus", mcfg).unwrap());
    let (repo, _g) = testkit::temp_repo();
    let r = Runner::new(repo, vec![milvus_c, etcd_c]);
    let m = r.backup(&BackupOptions::default()).await.unwrap();
    assert!(m.is_complete(), "{:?}", m.components);
    assert!(m.components["milvus-etcd"].stat_u64("keys").unwrap() > 10);

    let all = r
        .restore(&m.id, &plan(RestoreOptions::new()))
        .await
        .unwrap_err()
        .to_string();
    assert!(all.contains("must not be restored together with"), "{all}");
    let only_prefix = RestorePlanOptions {
        selection: Selection {
            only: vec!["milvus-etcd".into()],
            skip: vec![],
        },
        options: RestoreOptions::new(),
        safety_backup: false,
        components: Default::default(),
    };
    let alone = r
        .restore(&m.id, &only_prefix)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        alone.contains("must be restored together with `milvus-bucket`"),
        "{alone}"
    );
    assert!(alone.contains("--force"), "{alone}");
    assert_eq!(
        mv.fixture("fingerprint", "amber_pair"),
        before,
        "nothing changed"
    );
}

//! Every component's cut (its consistent point) is recorded in the manifest, with the
//! backup's skew (latest cut − earliest cut) and its consistency class: `quiesced` when the run
//! hooks paused the writers until every component was cut, `crash-consistent` otherwise.
#![allow(missing_docs, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use amber_dr_core::testkit::Fake;
use amber_dr_core::{
    async_trait, BackupOptions, Component, ComponentRecord, ConsistencyClass, HookContext,
    Repository, RepositoryConfig, RunHooks, Runner,
};

#[derive(Debug)]
struct Pausing;

#[async_trait]
impl RunHooks for Pausing {
    fn quiesces(&self, _: &HookContext) -> bool {
        true
    }
}

fn fakes() -> Vec<Arc<dyn Component>> {
    vec![
        // Cut at once, then 200 ms of writing.
        Arc::new(Fake::new("early").delays(Duration::ZERO, Duration::from_millis(200))),
        // Cut after 300 ms.
        Arc::new(Fake::new("late").delays(Duration::from_millis(300), Duration::ZERO)),
    ]
}

#[tokio::test]
async fn cuts_skew_and_class_are_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repository::open(&RepositoryConfig::new(dir.path().to_string_lossy())).unwrap();

    let m = Runner::new(repo.clone(), fakes())
        .backup(&BackupOptions::default())
        .await
        .unwrap();
    let early = m.components["early"].cut_at().unwrap();
    let late = m.components["late"].cut_at().unwrap();
    for rec in m.components.values() {
        let at = rec.cut_at().unwrap();
        assert!(
            rec.started_at.unwrap() <= at && at <= rec.finished_at.unwrap(),
            "{rec:?}"
        );
        assert!(rec.consistency.contains_key(ComponentRecord::CUT_AT));
    }
    // The early fake marked its cut before its 200 ms of writing, the late one after 300 ms.
    assert!(
        late - early >= chrono::Duration::milliseconds(250),
        "{early} {late}"
    );
    let cut = m.cut.clone().unwrap();
    assert_eq!((cut.earliest, cut.latest), (early, late));
    assert_eq!(cut.skew_ms, (late - early).num_milliseconds() as u64);
    assert_eq!(cut.class, ConsistencyClass::CrashConsistent);
    // It is in the manifest as written.
    let read = repo.read_manifest(&m.id).await.unwrap();
    assert_eq!(read.cut, m.cut);

    let q = Runner::new(repo.clone(), fakes())
        .with_hooks(Arc::new(Pausing))
        .backup(&BackupOptions::default())
        .await
        .unwrap();
    assert_eq!(q.cut.unwrap().class, ConsistencyClass::Quiesced);
}

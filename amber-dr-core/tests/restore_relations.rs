//! Declared restore relations: the runner refuses a plan that restores a component without the
//! one it must be restored with, or together with one it conflicts with — before anything is
//! restored — unless forced. Per-component choices (another target, some parts) are checked
//! against the drivers' declared capabilities the same way.
#![allow(missing_docs, clippy::unwrap_used)]

use std::sync::Arc;

use amber_dr_core::testkit::{Fake, FakeLog};
use amber_dr_core::{
    BackupOptions, Capabilities, Component, Repository, RepositoryConfig, RestoreOptions,
    RestorePlanOptions, RestoreRelation, Runner, Selection,
};

/// The restores the fakes logged (`NAME: restored ...`), without the name prefix's colon.
fn restored(log: &FakeLog) -> Vec<String> {
    log.entries()
        .into_iter()
        .filter(|e| e.contains(": restored"))
        .map(|e| e.replacen(": restored", "", 1))
        .collect()
}

fn plan(only: &[&str], force: bool) -> RestorePlanOptions {
    RestorePlanOptions {
        selection: Selection {
            only: only.iter().map(|s| s.to_string()).collect(),
            skip: vec![],
        },
        options: RestoreOptions::new().force(force),
        safety_backup: false,
        components: Default::default(),
    }
}

#[tokio::test]
async fn relations_are_enforced_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repository::open(&RepositoryConfig::new(dir.path().to_string_lossy())).unwrap();
    let log = FakeLog::new();
    let comp = |name: &str, relations| {
        Arc::new(Fake::new(name).relations(relations).log(log.clone())) as Arc<dyn Component>
    };
    let runner = Runner::new(
        repo,
        vec![
            comp(
                "meta",
                vec![
                    RestoreRelation::RestoreWith {
                        component: "bucket".into(),
                        reason: "metadata and segments form one physical pair".into(),
                    },
                    RestoreRelation::ConflictsWith {
                        component: "logical".into(),
                        reason: "the logical restore writes this metadata itself".into(),
                    },
                ],
            ),
            comp("bucket", vec![]),
            comp("logical", vec![]),
        ],
    );
    let m = runner.backup(&BackupOptions::default()).await.unwrap();
    assert!(m.is_complete());

    // Without its pair: refused, nothing restored, the message names both and the way out.
    let err = runner
        .restore(&m.id, &plan(&["meta"], false))
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(err.is_usage(), "{msg}");
    assert!(
        msg.contains("`meta` must be restored together with `bucket`"),
        "{msg}"
    );
    assert!(
        msg.contains("physical pair") && msg.contains("--force"),
        "{msg}"
    );
    assert!(restored(&log).is_empty());

    // Everything at once: the conflict with the logical component is refused.
    let err = runner.restore(&m.id, &plan(&[], false)).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("must not be restored together with `logical`"),
        "{err}"
    );
    assert!(restored(&log).is_empty());

    // The pair alone is fine; the logical one alone is fine.
    let out = runner
        .restore(&m.id, &plan(&["meta", "bucket"], false))
        .await
        .unwrap();
    assert!(out.is_ok() && out.forced.is_empty());
    runner
        .restore(&m.id, &plan(&["logical"], false))
        .await
        .unwrap();

    // Forced: restored, and the broken relation is reported.
    log.clear();
    let out = runner.restore(&m.id, &plan(&["meta"], true)).await.unwrap();
    assert!(out.is_ok());
    assert_eq!(out.forced.len(), 1, "{:?}", out.forced);
    assert_eq!(restored(&log), vec!["meta".to_string()]);
}

#[tokio::test]
async fn per_component_plans_are_checked_against_capabilities() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repository::open(&RepositoryConfig::new(dir.path().to_string_lossy())).unwrap();
    let log = FakeLog::new();
    let comp = |name: &str, caps| {
        Arc::new(Fake::new(name).capabilities(caps).log(log.clone())) as Arc<dyn Component>
    };
    let runner = Runner::new(
        repo,
        vec![
            comp("plain", Capabilities::new()),
            comp(
                "capable",
                Capabilities::new()
                    .restore_to_target(true)
                    .restore_parts(true),
            ),
        ],
    );
    let m = runner.backup(&BackupOptions::default()).await.unwrap();
    let with = |name: &str, target: Option<&str>, items: &[&str]| {
        let mut p = plan(&[], false);
        p.components.insert(
            name.to_string(),
            amber_dr_core::ComponentPlan {
                target: target.map(str::to_string),
                items: items.iter().map(|s| s.to_string()).collect(),
            },
        );
        p
    };
    for (p, want) in [
        (
            with("plain", Some("elsewhere"), &[]),
            "--target plain=...: the fake driver of `plain` cannot restore into another target",
        ),
        (
            with("plain", None, &["x"]),
            "--only plain/x: the fake driver of `plain` has no parts to restore separately",
        ),
        (
            with("nowhere", Some("t"), &[]),
            "`nowhere` is not among the components to restore (capable, plain)",
        ),
    ] {
        let err = runner.restore(&m.id, &p).await.unwrap_err();
        assert!(err.is_usage(), "{err}");
        assert!(err.to_string().contains(want), "{err}");
        assert!(restored(&log).is_empty(), "restored despite {err}");
    }
    // Accepted: each driver gets its own options, the others the plan's.
    let out = runner
        .restore(&m.id, &with("capable", Some("elsewhere"), &["a", "b"]))
        .await
        .unwrap();
    assert!(out.is_ok(), "{:?}", out.components);
    let mut got = restored(&log);
    got.sort();
    assert_eq!(got, ["capable into elsewhere only a,b", "plain"]);
}

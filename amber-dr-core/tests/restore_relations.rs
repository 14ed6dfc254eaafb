//! Declared restore relations: the runner refuses a plan that restores a component without the
//! one it must be restored with, or together with one it conflicts with — before anything is
//! restored — unless forced. Per-component choices (another target, some parts) are checked
//! against the drivers' declared capabilities the same way.
#![allow(missing_docs, clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

use amber_dr_core::{
    async_trait, BackupOptions, Capabilities, Component, ComponentRecord, Probe, ReadContext,
    Repository, RepositoryConfig, RestoreOptions, RestorePlanOptions, RestoreRelation,
    RestoreReport, Result, Runner, Selection, SnapshotContext, VerifyLevel, VerifyReport,
};

/// Records its restores; declares the relations it is given.
#[derive(Debug)]
struct Rel {
    name: &'static str,
    relations: Vec<RestoreRelation>,
    caps: Capabilities,
    restored: Arc<Mutex<Vec<String>>>,
}

#[async_trait]
impl Component for Rel {
    fn kind(&self) -> &'static str {
        "rel"
    }
    fn name(&self) -> &str {
        self.name
    }
    fn capabilities(&self) -> Capabilities {
        self.caps
    }
    fn restore_relations(&self) -> Vec<RestoreRelation> {
        self.relations.clone()
    }
    async fn probe(&self) -> Result<Probe> {
        Ok(Probe::default())
    }
    async fn snapshot(&self, _: &SnapshotContext) -> Result<ComponentRecord> {
        Ok(ComponentRecord::new("rel", self.name))
    }
    async fn verify(
        &self,
        cx: &ReadContext,
        rec: &ComponentRecord,
        level: VerifyLevel,
    ) -> Result<VerifyReport> {
        cx.verify_artifacts(rec, level).await
    }
    async fn restore(
        &self,
        _: &ReadContext,
        _: &ComponentRecord,
        opts: &RestoreOptions,
    ) -> Result<RestoreReport> {
        let mut what = self.name.to_string();
        if let Some(t) = &opts.target {
            what.push_str(&format!(" into {t}"));
        }
        if !opts.items.is_empty() {
            what.push_str(&format!(" only {}", opts.items.join(",")));
        }
        self.restored.lock().unwrap().push(what);
        Ok(RestoreReport::default())
    }
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
    let restored = Arc::new(Mutex::new(Vec::new()));
    let comp = |name, relations| {
        Arc::new(Rel {
            name,
            relations,
            caps: Capabilities::new(),
            restored: restored.clone(),
        }) as Arc<dyn Component>
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
    assert!(restored.lock().unwrap().is_empty());

    // Everything at once: the conflict with the logical component is refused.
    let err = runner.restore(&m.id, &plan(&[], false)).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("must not be restored together with `logical`"),
        "{err}"
    );
    assert!(restored.lock().unwrap().is_empty());

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
    restored.lock().unwrap().clear();
    let out = runner.restore(&m.id, &plan(&["meta"], true)).await.unwrap();
    assert!(out.is_ok());
    assert_eq!(out.forced.len(), 1, "{:?}", out.forced);
    assert_eq!(*restored.lock().unwrap(), vec!["meta".to_string()]);
}

#[tokio::test]
async fn per_component_plans_are_checked_against_capabilities() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repository::open(&RepositoryConfig::new(dir.path().to_string_lossy())).unwrap();
    let restored = Arc::new(Mutex::new(Vec::new()));
    let comp = |name, caps| {
        Arc::new(Rel {
            name,
            relations: vec![],
            caps,
            restored: restored.clone(),
        }) as Arc<dyn Component>
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
            "--target plain=...: the rel driver of `plain` cannot restore into another target",
        ),
        (
            with("plain", None, &["x"]),
            "--only plain/x: the rel driver of `plain` has no parts to restore separately",
        ),
        (
            with("nowhere", Some("t"), &[]),
            "`nowhere` is not among the components to restore (capable, plain)",
        ),
    ] {
        let err = runner.restore(&m.id, &p).await.unwrap_err();
        assert!(err.is_usage(), "{err}");
        assert!(err.to_string().contains(want), "{err}");
        assert!(
            restored.lock().unwrap().is_empty(),
            "restored despite {err}"
        );
    }
    // Accepted: each driver gets its own options, the others the plan's.
    let out = runner
        .restore(&m.id, &with("capable", Some("elsewhere"), &["a", "b"]))
        .await
        .unwrap();
    assert!(out.is_ok(), "{:?}", out.components);
    let mut got = restored.lock().unwrap().clone();
    got.sort();
    assert_eq!(got, ["capable into elsewhere only a,b", "plain"]);
}

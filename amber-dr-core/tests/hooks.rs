//! The order in which the runner calls its hooks, with fake components that record what
//! happens into one shared log.
#![allow(missing_docs, clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use amber_dr_core::{
    async_trait, BackupOptions, Capabilities, Component, ComponentRecord, Error, HookContext,
    Probe, ReadContext, Repository, RepositoryConfig, RestoreOptions, RestorePlanOptions,
    RestoreReport, Result, RunHooks, Runner, SnapshotContext, VerifyLevel, VerifyReport,
};

type Log = Arc<Mutex<Vec<String>>>;

fn push(log: &Log, s: impl Into<String>) {
    log.lock().unwrap().push(s.into());
}

fn has(log: &Log, s: &str) -> bool {
    log.lock().unwrap().iter().any(|e| e == s)
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    /// Marks its consistent point, then finishes only once `all_consistent` has run: proves
    /// the hook does not wait for the snapshots to finish.
    MarksThenWaits,
    /// Never marks: consistent when its snapshot returns.
    Plain,
    /// The snapshot (and the restore) fail.
    Fails,
}

#[derive(Debug)]
struct Fake {
    name: &'static str,
    mode: Mode,
    log: Log,
}

#[async_trait]
impl Component for Fake {
    fn kind(&self) -> &'static str {
        "fake"
    }
    fn name(&self) -> &str {
        self.name
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::new()
    }
    async fn probe(&self) -> Result<Probe> {
        Ok(Probe::default())
    }
    async fn snapshot(&self, cx: &SnapshotContext) -> Result<ComponentRecord> {
        push(&self.log, format!("{}: start", self.name));
        match self.mode {
            Mode::MarksThenWaits => {
                cx.mark_consistent();
                push(&self.log, format!("{}: consistent", self.name));
                let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
                while !has(&self.log, "all_consistent") {
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "all_consistent never came while {} was still running",
                        self.name
                    );
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            Mode::Plain => tokio::time::sleep(Duration::from_millis(20)).await,
            Mode::Fails => {
                push(&self.log, format!("{}: failed", self.name));
                return Err(Error::Other("boom".into()));
            }
        }
        push(&self.log, format!("{}: done", self.name));
        Ok(ComponentRecord::new("fake", self.name))
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
        _: &RestoreOptions,
    ) -> Result<RestoreReport> {
        push(&self.log, format!("{}: restored", self.name));
        Ok(RestoreReport::default())
    }
}

#[derive(Debug)]
struct Hooks {
    log: Log,
    fail_before_backup: bool,
    fail_after_restore: bool,
}

#[async_trait]
impl RunHooks for Hooks {
    async fn before_backup(&self, cx: &HookContext) -> Result<()> {
        push(&self.log, format!("before_backup {:?}", cx.components));
        if self.fail_before_backup {
            return Err(Error::Other("no pause".into()));
        }
        Ok(())
    }
    async fn all_consistent(&self, _: &HookContext) -> Result<()> {
        push(&self.log, "all_consistent");
        Ok(())
    }
    async fn after_backup(&self, _: &HookContext) -> Result<()> {
        push(&self.log, "after_backup");
        Ok(())
    }
    async fn before_restore(&self, cx: &HookContext) -> Result<()> {
        push(&self.log, format!("before_restore {:?}", cx.components));
        Ok(())
    }
    async fn after_restore(&self, _: &HookContext) -> Result<()> {
        push(&self.log, "after_restore");
        if self.fail_after_restore {
            return Err(Error::Other("container did not start".into()));
        }
        Ok(())
    }
}

fn setup(
    comps: &[(&'static str, Mode)],
    parallelism: usize,
    fail_before_backup: bool,
) -> (tempfile::TempDir, Runner, Log) {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repository::open(&RepositoryConfig::new(dir.path().to_string_lossy())).unwrap();
    let log: Log = Arc::default();
    let components = comps
        .iter()
        .map(|(name, mode)| {
            Arc::new(Fake {
                name,
                mode: *mode,
                log: log.clone(),
            }) as Arc<dyn Component>
        })
        .collect();
    let hooks = Hooks {
        log: log.clone(),
        fail_before_backup,
        fail_after_restore: false,
    };
    let runner = Runner::new(repo, components)
        .with_parallelism(parallelism)
        .with_hooks(Arc::new(hooks));
    (dir, runner, log)
}

fn pos(log: &[String], e: &str) -> usize {
    log.iter()
        .position(|x| x == e)
        .unwrap_or_else(|| panic!("`{e}` missing from {log:?}"))
}

#[tokio::test]
async fn consistent_hook_runs_once_every_component_is_consistent_before_the_snapshots_end() {
    let (_d, runner, log) = setup(&[("a", Mode::MarksThenWaits), ("b", Mode::Plain)], 4, false);
    let m = runner.backup(&BackupOptions::default()).await.unwrap();
    assert!(m.is_complete());
    let log = log.lock().unwrap().clone();
    assert_eq!(log[0], r#"before_backup ["a", "b"]"#);
    assert!(pos(&log, "a: consistent") < pos(&log, "all_consistent"));
    // `b` never marks: it is consistent only when its snapshot returns.
    assert!(pos(&log, "b: done") < pos(&log, "all_consistent"));
    // `a` was still running when the hook came (it waits for it).
    assert!(pos(&log, "all_consistent") < pos(&log, "a: done"));
    assert_eq!(log.last().unwrap(), "after_backup");
    assert_eq!(log.iter().filter(|e| *e == "all_consistent").count(), 1);
}

#[tokio::test]
async fn a_component_waiting_for_a_slot_is_not_consistent_yet() {
    // Parallelism 1: `b` starts only after `a` ended, so the hook comes after `b` ran.
    let (_d, runner, log) = setup(&[("a", Mode::Plain), ("b", Mode::Plain)], 1, false);
    runner.backup(&BackupOptions::default()).await.unwrap();
    let log = log.lock().unwrap().clone();
    assert!(
        pos(&log, "b: done") < pos(&log, "all_consistent"),
        "{log:?}"
    );
    assert!(pos(&log, "all_consistent") < pos(&log, "after_backup"));
}

#[tokio::test]
async fn a_failed_snapshot_counts_as_consistent_and_the_after_hook_still_runs() {
    let (_d, runner, log) = setup(&[("a", Mode::MarksThenWaits), ("x", Mode::Fails)], 4, false);
    let m = runner.backup(&BackupOptions::default()).await.unwrap();
    assert!(!m.is_complete());
    let log = log.lock().unwrap().clone();
    assert!(pos(&log, "x: failed") < pos(&log, "all_consistent"));
    assert_eq!(log.last().unwrap(), "after_backup");
}

#[tokio::test]
async fn a_failing_before_hook_stops_the_backup_before_any_snapshot() {
    let (_d, runner, log) = setup(&[("a", Mode::Plain)], 4, true);
    let err = runner.backup(&BackupOptions::default()).await.unwrap_err();
    assert!(err.to_string().contains("no pause"), "{err}");
    let log = log.lock().unwrap().clone();
    assert!(!log.iter().any(|e| e.starts_with("a:")), "{log:?}");
    assert_eq!(log.last().unwrap(), "after_backup");
    assert!(runner.repository().list().await.unwrap().is_empty());
}

#[tokio::test]
async fn restore_hooks_wrap_the_safety_backup_and_the_restore() {
    let (_d, runner, log) = setup(&[("a", Mode::Plain), ("b", Mode::Plain)], 4, false);
    let m = runner.backup(&BackupOptions::default()).await.unwrap();
    log.lock().unwrap().clear();
    let plan = RestorePlanOptions {
        safety_backup: true,
        components: Default::default(),
        ..Default::default()
    };
    let o = runner.restore(&m.id, &plan).await.unwrap();
    assert!(o.is_ok());
    let log = log.lock().unwrap().clone();
    assert_eq!(log[0], r#"before_restore ["a", "b"]"#);
    assert!(pos(&log, "before_backup [\"a\", \"b\"]") > 0);
    assert!(pos(&log, "after_backup") < pos(&log, "a: restored"));
    assert_eq!(log.last().unwrap(), "after_restore");

    // A dry run calls no hook.
    let before = log.len();
    let dry = RestorePlanOptions {
        options: RestoreOptions::new().dry_run(true),
        ..Default::default()
    };
    runner.restore(&m.id, &dry).await.unwrap();
    assert_eq!(before, log.len());
}

#[tokio::test]
async fn an_after_restore_failure_makes_the_outcome_fail() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repository::open(&RepositoryConfig::new(dir.path().to_string_lossy())).unwrap();
    let log: Log = Arc::default();
    let c = Arc::new(Fake {
        name: "a",
        mode: Mode::Plain,
        log: log.clone(),
    }) as Arc<dyn Component>;
    let runner = Runner::new(repo, vec![c]).with_hooks(Arc::new(Hooks {
        log: log.clone(),
        fail_before_backup: false,
        fail_after_restore: true,
    }));
    let m = runner.backup(&BackupOptions::default()).await.unwrap();
    let o = runner
        .restore(&m.id, &RestorePlanOptions::default())
        .await
        .unwrap();
    assert!(o.components.iter().all(|c| c.error.is_none()));
    assert!(!o.is_ok());
    assert_eq!(o.hook_errors, vec!["container did not start".to_string()]);
}

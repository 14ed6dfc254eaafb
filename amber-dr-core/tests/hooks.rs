//! The order in which the runner calls its hooks, with fake components that record what
//! happens into one shared log.
#![allow(missing_docs, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use amber_dr_core::testkit::{Fake, FakeLog};
use amber_dr_core::{
    async_trait, BackupOptions, Component, Error, HookContext, Repository, RepositoryConfig,
    RestoreOptions, RestorePlanOptions, Result, RunHooks, Runner,
};

type Log = FakeLog;

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

/// The shared test kit's fake, set up for `mode`.
fn fake(name: &str, mode: Mode, log: &Log) -> Arc<dyn Component> {
    let f = Fake::new(name).log(log.clone());
    Arc::new(match mode {
        Mode::MarksThenWaits => {
            let log = log.clone();
            f.hold_until(move || log.contains("all_consistent"))
        }
        Mode::Plain => f
            .unmarked()
            .delays(Duration::ZERO, Duration::from_millis(20)),
        Mode::Fails => f.failing(),
    })
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
        self.log.push(format!("before_backup {:?}", cx.components));
        if self.fail_before_backup {
            return Err(Error::Other("no pause".into()));
        }
        Ok(())
    }
    async fn all_consistent(&self, _: &HookContext) -> Result<()> {
        self.log.push("all_consistent");
        Ok(())
    }
    async fn after_backup(&self, _: &HookContext) -> Result<()> {
        self.log.push("after_backup");
        Ok(())
    }
    async fn before_restore(&self, cx: &HookContext) -> Result<()> {
        self.log.push(format!("before_restore {:?}", cx.components));
        Ok(())
    }
    async fn after_restore(&self, _: &HookContext) -> Result<()> {
        self.log.push("after_restore");
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
    let log = Log::new();
    let components = comps
        .iter()
        .map(|(name, mode)| fake(name, *mode, &log))
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
    let log = log.entries();
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
    let log = log.entries();
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
    let log = log.entries();
    assert!(pos(&log, "x: failed") < pos(&log, "all_consistent"));
    assert_eq!(log.last().unwrap(), "after_backup");
}

#[tokio::test]
async fn a_failing_before_hook_stops_the_backup_before_any_snapshot() {
    let (_d, runner, log) = setup(&[("a", Mode::Plain)], 4, true);
    let err = runner.backup(&BackupOptions::default()).await.unwrap_err();
    assert!(err.to_string().contains("no pause"), "{err}");
    let log = log.entries();
    assert!(!log.iter().any(|e| e.starts_with("a:")), "{log:?}");
    assert_eq!(log.last().unwrap(), "after_backup");
    assert!(runner.repository().list().await.unwrap().is_empty());
}

#[tokio::test]
async fn restore_hooks_wrap_the_safety_backup_and_the_restore() {
    let (_d, runner, log) = setup(&[("a", Mode::Plain), ("b", Mode::Plain)], 4, false);
    let m = runner.backup(&BackupOptions::default()).await.unwrap();
    log.clear();
    let plan = RestorePlanOptions {
        safety_backup: true,
        components: Default::default(),
        ..Default::default()
    };
    let o = runner.restore(&m.id, &plan).await.unwrap();
    assert!(o.is_ok());
    let entries = log.entries();
    assert_eq!(entries[0], r#"before_restore ["a", "b"]"#);
    assert!(pos(&entries, "before_backup [\"a\", \"b\"]") > 0);
    assert!(pos(&entries, "after_backup") < pos(&entries, "a: restored"));
    assert_eq!(entries.last().unwrap(), "after_restore");

    // A dry run calls no hook (and restores nothing).
    let before = log.entries().len();
    let dry = RestorePlanOptions {
        options: RestoreOptions::new().dry_run(true),
        ..Default::default()
    };
    runner.restore(&m.id, &dry).await.unwrap();
    assert_eq!(before, log.entries().len(), "{:?}", log.entries());
}

#[tokio::test]
async fn an_after_restore_failure_makes_the_outcome_fail() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repository::open(&RepositoryConfig::new(dir.path().to_string_lossy())).unwrap();
    let log = Log::new();
    let c = fake("a", Mode::Plain, &log);
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

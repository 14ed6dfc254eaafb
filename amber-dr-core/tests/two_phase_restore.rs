//! A restore of several components brings all of them back or changes none: damage anywhere
//! refuses the whole restore in its prepare phase; a failed commit rolls the committed
//! components back from the safety backup; a cancellation during prepare changes nothing, and
//! during commit finishes the component in flight and rolls it back.
//!
//! The components here keep their live data in memory (`Cell`), so that every state can be
//! checked directly; the drivers' own restores are tested against their servers elsewhere.
#![allow(missing_docs, clippy::unwrap_used)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use amber_dr_core::cancel::CancellationToken;
use amber_dr_core::{
    async_trait, BackupOptions, Capabilities, CommitState, Component, ComponentRecord, Error,
    Probe, ReadContext, Repository, RepositoryConfig, RestoreOptions, RestorePlanOptions,
    RestoreReport, Result, Runner, Selection, SnapshotContext, VerifyReport,
};
use object_store::{path::Path, ObjectStoreExt, PutPayload};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A store whose live data is one byte string.
#[derive(Debug, Clone)]
struct Cell {
    name: String,
    live: Arc<Mutex<Vec<u8>>>,
    /// Its next commit fails (before it writes anything).
    fail_commit: Arc<AtomicBool>,
    /// Its next commit writes half of the data in place, then fails.
    fail_after_write: Arc<AtomicBool>,
    /// Its next commit (or its prepare) waits until the flag is cleared, after logging.
    hold_commit: Arc<AtomicBool>,
    hold_prepare: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<String>>>,
}

impl Cell {
    fn new(name: &str, log: &Arc<Mutex<Vec<String>>>) -> Self {
        Self {
            name: name.into(),
            live: Arc::new(Mutex::new(format!("{name} v1").into_bytes())),
            fail_commit: Arc::default(),
            fail_after_write: Arc::default(),
            hold_commit: Arc::default(),
            hold_prepare: Arc::default(),
            log: log.clone(),
        }
    }
    fn live(&self) -> String {
        String::from_utf8(self.live.lock().unwrap().clone()).unwrap()
    }
    fn set(&self, s: &str) {
        *self.live.lock().unwrap() = s.as_bytes().to_vec();
    }
    fn entry(&self, what: &str) {
        self.log
            .lock()
            .unwrap()
            .push(format!("{}: {what}", self.name));
    }
    async fn hold(&self, flag: &AtomicBool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while flag.load(Ordering::SeqCst) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

#[async_trait]
impl Component for Cell {
    fn kind(&self) -> &'static str {
        "cell"
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::new()
    }
    async fn probe(&self) -> Result<Probe> {
        Ok(Probe {
            reachable: true,
            ..Default::default()
        })
    }
    async fn snapshot(&self, cx: &SnapshotContext) -> Result<ComponentRecord> {
        let data = self.live.lock().unwrap().clone();
        let mut w = cx.create_artifact("data").await?;
        w.write_all(&data)
            .await
            .map_err(|e| Error::io("write", "data", e))?;
        let mut rec = ComponentRecord::new("cell", &self.name);
        rec.artifacts.push(w.finish().await?);
        Ok(rec)
    }
    async fn decode(&self, _cx: &ReadContext, _rec: &ComponentRecord) -> Result<VerifyReport> {
        self.entry("preparing");
        self.hold(&self.hold_prepare).await;
        Ok(VerifyReport::default())
    }
    async fn restore(
        &self,
        cx: &ReadContext,
        rec: &ComponentRecord,
        opts: &RestoreOptions,
    ) -> Result<RestoreReport> {
        let art = rec.artifact("data")?;
        let mut r = cx.open_artifact(art).await?;
        let mut got = Vec::new();
        r.read_to_end(&mut got)
            .await
            .map_err(|e| Error::from_io("read", &art.path, e))?;
        if opts.dry_run {
            return Ok(RestoreReport::default());
        }
        self.entry(&format!("committing from {}", cx.backup_id()));
        if self.hold_commit.load(Ordering::SeqCst) {
            self.hold(&self.hold_commit).await;
        }
        if self.fail_commit.swap(false, Ordering::SeqCst) {
            return Err(Error::Other(format!(
                "`{}`: the target is not writable",
                self.name
            )));
        }
        if self.fail_after_write.swap(false, Ordering::SeqCst) {
            *self.live.lock().unwrap() = got[..got.len() / 2].to_vec();
            return Err(Error::Other(format!(
                "`{}`: the write broke off halfway",
                self.name
            )));
        }
        *self.live.lock().unwrap() = got;
        self.entry("committed");
        Ok(RestoreReport::default())
    }
}

struct Stack {
    cells: Vec<Cell>,
    repo: Repository,
    log: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

fn stack() -> Stack {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repository::open(&RepositoryConfig::new(dir.path().to_string_lossy())).unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let cells = ["a", "b", "c"].iter().map(|n| Cell::new(n, &log)).collect();
    Stack {
        cells,
        repo,
        log,
        _dir: dir,
    }
}

impl Stack {
    fn runner(&self) -> Runner {
        let comps = self
            .cells
            .iter()
            .map(|c| Arc::new(c.clone()) as Arc<dyn Component>)
            .collect();
        Runner::new(self.repo.clone(), comps).with_parallelism(1)
    }
    fn lives(&self) -> Vec<String> {
        self.cells.iter().map(Cell::live).collect()
    }
    /// Back up (v1), then change every store (v2).
    async fn backup_then_change(&self) -> String {
        let m = self
            .runner()
            .backup(&BackupOptions::default())
            .await
            .unwrap();
        assert!(m.is_complete());
        for c in &self.cells {
            c.set(&format!("{} v2", c.name));
        }
        m.id
    }
    async fn backups(&self) -> usize {
        self.repo.list().await.unwrap().len()
    }
    fn logged(&self, what: &str) -> bool {
        self.log.lock().unwrap().iter().any(|e| e == what)
    }
}

fn plan(safety: bool) -> RestorePlanOptions {
    RestorePlanOptions {
        selection: Selection::all(),
        options: RestoreOptions::new(),
        safety_backup: safety,
        components: Default::default(),
    }
}

fn v2() -> Vec<String> {
    vec!["a v2".into(), "b v2".into(), "c v2".into()]
}

#[tokio::test]
async fn damage_in_any_component_refuses_the_whole_restore() {
    for victim in 0..3 {
        let s = stack();
        let id = s.backup_then_change().await;
        let m = s.repo.read_manifest(&id).await.unwrap();
        let name = &s.cells[victim].name;
        let art = &m.components[name].artifacts[0];
        let path = Path::from(art.path.as_str());
        let mut bytes = s
            .repo
            .store()
            .get(&path)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .to_vec();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x40;
        s.repo
            .store()
            .put(&path, PutPayload::from(bytes))
            .await
            .unwrap();
        let before = s.backups().await;

        let err = s.runner().restore(&id, &plan(true)).await.unwrap_err();
        assert!(err.is_damage(), "{err}");
        let msg = err.to_string();
        assert!(msg.contains(&format!("{id}/{name}")), "{msg}");
        assert!(msg.contains("nothing was restored"), "{msg}");
        // Nothing changed: no store, no safety backup, no commit started.
        assert_eq!(s.lives(), v2(), "victim {name}");
        assert_eq!(s.backups().await, before, "a safety backup was taken");
        assert!(!s
            .log
            .lock()
            .unwrap()
            .iter()
            .any(|e| e.contains("committing")));
        // Every component was prepared (the victim among them), and the lock is free.
        assert!(s.logged(&format!("{name}: preparing")));
        s.repo.lock("test").await.unwrap().release().await.unwrap();
    }
}

#[tokio::test]
async fn a_failed_commit_rolls_back_the_committed_components() {
    let s = stack();
    let id = s.backup_then_change().await;
    s.cells[1].fail_commit.store(true, Ordering::SeqCst);
    let out = s.runner().restore(&id, &plan(true)).await.unwrap();
    let states: Vec<CommitState> = out.components.iter().map(|c| c.state).collect();
    // `b` writes in place (no staging): its failed restore is rolled back too.
    assert_eq!(
        states,
        [
            CommitState::RolledBack,
            CommitState::RolledBack,
            CommitState::Untouched
        ]
    );
    assert!(!out.is_ok());
    assert!(out.unchanged());
    // `a` was committed (v1), then restored from the safety backup (v2); `c` never started.
    assert!(s.logged("a: committed"));
    let safety = out.safety_backup.clone().unwrap();
    assert!(s.logged(&format!("a: committing from {safety}")));
    assert!(!s
        .log
        .lock()
        .unwrap()
        .iter()
        .any(|e| e.starts_with("c: committing")));
    assert_eq!(s.lives(), v2());
    assert_eq!(out.to_retry(), ["a", "b", "c"]);
    assert!(out.components[1]
        .error
        .as_deref()
        .unwrap()
        .contains("not writable"));
}

#[tokio::test]
async fn a_component_that_fails_after_writing_in_place_is_rolled_back_too() {
    let s = stack();
    let id = s.backup_then_change().await;
    s.cells[0].fail_after_write.store(true, Ordering::SeqCst);
    let out = s.runner().restore(&id, &plan(true)).await.unwrap();
    assert_eq!(out.components[0].state, CommitState::RolledBack, "{out:?}");
    assert!(out.components[0]
        .error
        .as_deref()
        .unwrap()
        .contains("halfway"));
    assert!(out.unchanged(), "{out:?}");
    // Not left half written: the state before the restore, from the safety backup.
    assert_eq!(s.lives(), v2());
    // Without a safety backup it stays as the driver left it, and says so.
    let s = stack();
    let id = s.backup_then_change().await;
    s.cells[0].fail_after_write.store(true, Ordering::SeqCst);
    let out = s.runner().restore(&id, &plan(false)).await.unwrap();
    assert_eq!(out.components[0].state, CommitState::Failed);
    assert!(out.components[0]
        .rollback_error
        .as_deref()
        .unwrap()
        .contains("no safety backup"));
    assert_eq!(s.lives()[0], "a ");
}

#[tokio::test]
async fn without_rollback_or_safety_backup_the_committed_stay_and_say_why() {
    for (safety, rollback, why) in [
        (true, false, "--no-rollback"),
        (false, true, "no safety backup"),
    ] {
        let s = stack();
        let id = s.backup_then_change().await;
        s.cells[2].fail_commit.store(true, Ordering::SeqCst);
        let out = s
            .runner()
            .with_rollback(rollback)
            .restore(&id, &plan(safety))
            .await
            .unwrap();
        for c in &out.components[..2] {
            assert_eq!(c.state, CommitState::NotRolledBack, "{why}");
            assert!(c.rollback_error.as_deref().unwrap().contains(why), "{c:?}");
        }
        assert_eq!(out.components[2].state, CommitState::Failed);
        assert_eq!(s.lives(), ["a v1", "b v1", "c v2"]);
        assert_eq!(out.to_retry(), ["c"]);
    }
}

#[tokio::test]
async fn cancelled_during_prepare_nothing_changes() {
    let s = stack();
    let id = s.backup_then_change().await;
    s.cells[0].hold_prepare.store(true, Ordering::SeqCst);
    let token = CancellationToken::new();
    let runner = s.runner().with_cancellation(token.clone());
    let before = s.backups().await;
    let task = {
        let id = id.clone();
        tokio::spawn(async move { runner.restore(&id, &plan(true)).await })
    };
    while !s.logged("a: preparing") {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    token.cancel();
    let res = task.await.unwrap();
    assert!(matches!(res, Err(Error::Interrupted)), "{res:?}");
    s.cells[0].hold_prepare.store(false, Ordering::SeqCst);
    assert_eq!(s.lives(), v2());
    assert_eq!(s.backups().await, before);
    s.repo.lock("test").await.unwrap().release().await.unwrap();
}

#[tokio::test]
async fn cancelled_during_commit_the_one_in_flight_finishes_then_everything_rolls_back() {
    let s = stack();
    let id = s.backup_then_change().await;
    s.cells[1].hold_commit.store(true, Ordering::SeqCst);
    let token = CancellationToken::new();
    let runner = s.runner().with_cancellation(token.clone());
    let task = {
        let id = id.clone();
        tokio::spawn(async move { runner.restore(&id, &plan(true)).await })
    };
    while !s
        .log
        .lock()
        .unwrap()
        .iter()
        .any(|e| e.starts_with("b: committing"))
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    token.cancel();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The commit in flight was not dropped: it finishes when its store lets it.
    assert!(!task.is_finished());
    s.cells[1].hold_commit.store(false, Ordering::SeqCst);
    let out = task.await.unwrap().unwrap();
    assert!(out.interrupted);
    assert!(s.logged("b: committed"));
    let states: Vec<CommitState> = out.components.iter().map(|c| c.state).collect();
    assert_eq!(
        states,
        [
            CommitState::RolledBack,
            CommitState::RolledBack,
            CommitState::Untouched
        ]
    );
    assert!(out.unchanged());
    assert_eq!(s.lives(), v2());
    s.repo.lock("test").await.unwrap().release().await.unwrap();
}

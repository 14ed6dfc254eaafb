//! [`Fake`]: a component without a store, for tests of the runner, the hooks, the plan checks
//! and anything else that needs components but no server. One shared fake instead of a copy
//! per test file.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::component::{
    Capabilities, Component, Probe, ReadContext, RestoreOptions, RestoreRelation, RestoreReport,
    SnapshotContext,
};
use crate::manifest::ComponentRecord;
use crate::{Error, Result};

/// What fake components did, in order, shared between them (and with test hooks):
/// `NAME: start`, `NAME: consistent`, `NAME: done`, `NAME: failed`, `NAME: restored[ into
/// TARGET][ only PART,PART]`.
#[derive(Debug, Clone, Default)]
pub struct FakeLog(Arc<Mutex<Vec<String>>>);

impl FakeLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }
    /// Append `entry`.
    pub fn push(&self, entry: impl Into<String>) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(entry.into());
    }
    /// Every entry so far.
    pub fn entries(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
    /// Forget every entry.
    pub fn clear(&self) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
    /// True if `entry` was logged.
    pub fn contains(&self, entry: &str) -> bool {
        self.entries().iter().any(|e| e == entry)
    }
}

/// A component of kind `fake` whose snapshot stores `content` as its one artifact `data`, and
/// whose restore reads it back (length and hash checked) and compares it with `content`.
/// Configured with builder methods; everything it does goes into its [`FakeLog`].
#[derive(Clone)]
pub struct Fake {
    name: String,
    caps: Capabilities,
    relations: Vec<RestoreRelation>,
    content: Vec<u8>,
    before: Duration,
    after: Duration,
    fail: bool,
    mark: bool,
    hold: Option<Arc<dyn Fn() -> bool + Send + Sync>>,
    log: FakeLog,
}

impl std::fmt::Debug for Fake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fake").field("name", &self.name).finish()
    }
}

impl Fake {
    /// A fake named `name`: no capabilities, no relations, content `name`, immediate, marks
    /// its consistent point.
    pub fn new(name: impl Into<String>) -> Self {
        let name = name.into();
        Self {
            content: name.as_bytes().to_vec(),
            name,
            caps: Capabilities::new(),
            relations: Vec::new(),
            before: Duration::ZERO,
            after: Duration::ZERO,
            fail: false,
            mark: true,
            hold: None,
            log: FakeLog::new(),
        }
    }
    /// Declare `caps`.
    pub fn capabilities(mut self, caps: Capabilities) -> Self {
        self.caps = caps;
        self
    }
    /// Declare `relations`.
    pub fn relations(mut self, relations: Vec<RestoreRelation>) -> Self {
        self.relations = relations;
        self
    }
    /// What the snapshot stores.
    pub fn content(mut self, content: impl Into<Vec<u8>>) -> Self {
        self.content = content.into();
        self
    }
    /// The snapshot reaches its consistent point after `before`, and finishes `after` later.
    pub fn delays(mut self, before: Duration, after: Duration) -> Self {
        self.before = before;
        self.after = after;
        self
    }
    /// The snapshot and the restore fail.
    pub fn failing(mut self) -> Self {
        self.fail = true;
        self
    }
    /// The snapshot never marks its consistent point (it counts as consistent when it returns).
    pub fn unmarked(mut self) -> Self {
        self.mark = false;
        self
    }
    /// After its consistent point, the snapshot waits (10 s at most, then fails) until `until`
    /// holds.
    pub fn hold_until(mut self, until: impl Fn() -> bool + Send + Sync + 'static) -> Self {
        self.hold = Some(Arc::new(until));
        self
    }
    /// Log into `log` (shared with other fakes and the test).
    pub fn log(mut self, log: FakeLog) -> Self {
        self.log = log;
        self
    }
    fn entry(&self, what: &str) {
        self.log.push(format!("{}: {what}", self.name));
    }
}

#[async_trait]
impl Component for Fake {
    fn kind(&self) -> &'static str {
        "fake"
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn capabilities(&self) -> Capabilities {
        self.caps
    }
    fn restore_relations(&self) -> Vec<RestoreRelation> {
        self.relations.clone()
    }
    async fn probe(&self) -> Result<Probe> {
        Ok(Probe {
            reachable: true,
            ..Default::default()
        })
    }
    async fn snapshot(&self, cx: &SnapshotContext) -> Result<ComponentRecord> {
        self.entry("start");
        tokio::time::sleep(self.before).await;
        if self.fail {
            self.entry("failed");
            return Err(Error::Other(format!("fake `{}` failed", self.name)));
        }
        if self.mark {
            cx.mark_consistent();
            self.entry("consistent");
        }
        if let Some(hold) = &self.hold {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while !hold() {
                if tokio::time::Instant::now() > deadline {
                    return Err(Error::Other(format!(
                        "fake `{}`: still held after 10 s",
                        self.name
                    )));
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        tokio::time::sleep(self.after).await;
        let mut w = cx.create_artifact("data").await?;
        w.write_all(&self.content)
            .await
            .map_err(|e| Error::io("write", "data", e))?;
        let art = w.finish().await?;
        let mut rec = ComponentRecord::new("fake", &self.name);
        rec.artifacts.push(art);
        self.entry("done");
        Ok(rec)
    }
    async fn restore(
        &self,
        cx: &ReadContext,
        rec: &ComponentRecord,
        opts: &RestoreOptions,
    ) -> Result<RestoreReport> {
        if self.fail {
            return Err(Error::Other(format!(
                "fake `{}`: restore failed",
                self.name
            )));
        }
        if let Ok(art) = rec.artifact("data") {
            let mut r = cx.open_artifact(art).await?;
            let mut got = Vec::new();
            r.read_to_end(&mut got)
                .await
                .map_err(|e| Error::from_io("read", &art.path, e))?;
            if got != self.content {
                return Err(Error::Corrupt {
                    artifact: art.path.clone(),
                    message: "the content differs from what the fake stored".into(),
                });
            }
        }
        if opts.dry_run {
            return Ok(RestoreReport::default());
        }
        let mut what = "restored".to_string();
        if let Some(t) = &opts.target {
            what.push_str(&format!(" into {t}"));
        }
        if !opts.items.is_empty() {
            what.push_str(&format!(" only {}", opts.items.join(",")));
        }
        self.entry(&what);
        Ok(RestoreReport::default())
    }
}

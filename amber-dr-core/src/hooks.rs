//! Run hooks: code that acts on the surroundings of the stores (pausing the application's
//! containers, stopping them around a restore) at fixed points of a backup or restore.
//!
//! The [`crate::Runner`] calls the hooks given with [`crate::Runner::with_hooks`] in this order:
//!
//! - backup (and the safety backup a restore takes first):
//!   [`RunHooks::before_backup`] → every selected component starts its snapshot →
//!   [`RunHooks::all_consistent`] once every component has reached its *consistent point* →
//!   the snapshots finish → [`RunHooks::after_backup`] (always, also when a snapshot or an
//!   earlier hook failed).
//! - restore (not a dry run): [`RunHooks::before_restore`] → safety backup (with the backup hooks
//!   above) → the components are restored → [`RunHooks::after_restore`] (always).
//!
//! A component's consistent point is the moment from which what its snapshot will contain no
//! longer depends on writes made by the store's clients. A driver marks it by calling
//! [`crate::SnapshotContext::mark_consistent`]; a driver that never calls it reaches its
//! consistent point when its snapshot returns (successfully or not). Components waiting for a
//! free slot (more components than the runner's parallelism) are not consistent before they
//! have run.
//!
//! When the run's future is dropped (Ctrl-C, SIGTERM) the `after_*` hooks do not run: whoever
//! drops it must call [`RunHooks::cleanup`], which undoes everything still in effect.

use std::collections::BTreeSet;

use async_trait::async_trait;
use serde::Serialize;
use tokio::sync::watch;

use crate::manifest::BackupPurpose;
use crate::Result;

/// What a hook is told about the run.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct HookContext {
    /// Backup hooks: why the backup is taken. Restore hooks: `None`.
    pub purpose: Option<BackupPurpose>,
    /// Restore hooks: the backup id (or runbook directory) being restored.
    pub source: Option<String>,
    /// The components of the run, in config order.
    pub components: Vec<String>,
    /// Restore hooks: true when `source` is a runbook backup directory (see
    /// [`crate::Runner::restore_legacy`]), whose parts may need more stopped than a restore of
    /// an amber-dr backup (e.g. MinIO while its data volume is replaced).
    pub runbook: bool,
}

impl HookContext {
    /// The context of a backup of `components`.
    pub fn backup(purpose: BackupPurpose, components: Vec<String>) -> Self {
        Self {
            purpose: Some(purpose),
            source: None,
            components,
            runbook: false,
        }
    }
    /// The context of a restore of `source` into `components`.
    pub fn restore(source: impl Into<String>, components: Vec<String>) -> Self {
        Self {
            purpose: None,
            source: Some(source.into()),
            components,
            runbook: false,
        }
    }
    /// The context of a restore of the runbook directory `dir` into `components`.
    pub fn runbook_restore(dir: impl Into<String>, components: Vec<String>) -> Self {
        Self {
            runbook: true,
            ..Self::restore(dir, components)
        }
    }
}

/// Hooks around backups and restores. Every method defaults to doing nothing. See the module
/// documentation for when each is called.
#[async_trait]
pub trait RunHooks: Send + Sync + std::fmt::Debug {
    /// Before any snapshot starts. An error fails the backup before anything is read
    /// ([`Self::after_backup`] still runs, so a hook that changed something half-way is undone).
    async fn before_backup(&self, cx: &HookContext) -> Result<()> {
        let _ = cx;
        Ok(())
    }
    /// Every component of the backup has reached its consistent point. An error is logged;
    /// the backup goes on, and [`Self::after_backup`] runs as usual.
    async fn all_consistent(&self, cx: &HookContext) -> Result<()> {
        let _ = cx;
        Ok(())
    }
    /// Every snapshot has finished (whatever the outcome). An error fails the backup command
    /// after its manifest is written.
    async fn after_backup(&self, cx: &HookContext) -> Result<()> {
        let _ = cx;
        Ok(())
    }
    /// Whether these hooks pause the application's writes from [`Self::before_backup`] until
    /// [`Self::all_consistent`] for the backup of `cx` (the backup is then
    /// [`crate::ConsistencyClass::Quiesced`]). Default false.
    fn quiesces(&self, cx: &HookContext) -> bool {
        let _ = cx;
        false
    }

    /// Before the safety backup and the restore. An error fails the restore before anything
    /// is changed ([`Self::after_restore`] still runs).
    async fn before_restore(&self, cx: &HookContext) -> Result<()> {
        let _ = cx;
        Ok(())
    }
    /// After every component was restored (whatever the outcome). Errors are reported in
    /// [`crate::RestoreOutcome::hook_errors`].
    async fn after_restore(&self, cx: &HookContext) -> Result<()> {
        let _ = cx;
        Ok(())
    }
    /// The run was abandoned (its future dropped) before the `after_*` hook ran: undo
    /// everything the hooks changed that is still in effect. Must be safe to call at any time,
    /// also twice. Returns what it did, one line each.
    async fn cleanup(&self) -> Result<Vec<String>> {
        Ok(Vec::new())
    }
    /// `doctor`: check, changing nothing, that the hooks can do their work (e.g. the Docker
    /// engine answers and every container named exists). `None`: nothing to check.
    async fn doctor(&self) -> Option<crate::doctor::HookCheck> {
        None
    }
}

/// Tracks which components of a backup have not reached their consistent point yet.
#[derive(Debug, Clone)]
pub(crate) struct ConsistencyTracker {
    pending: watch::Sender<BTreeSet<String>>,
}

impl ConsistencyTracker {
    /// Waiting for every one of `names`.
    pub(crate) fn new(names: impl IntoIterator<Item = String>) -> Self {
        let (pending, _) = watch::channel(names.into_iter().collect());
        Self { pending }
    }

    /// `name` has reached its consistent point (idempotent).
    pub(crate) fn mark(&self, name: &str) {
        self.pending.send_if_modified(|p| p.remove(name));
    }

    /// Resolves once every one of `names` is marked.
    pub(crate) async fn wait_for(&self, names: &std::collections::BTreeSet<String>) {
        let mut rx = self.pending.subscribe();
        let _ = rx.wait_for(|p| p.is_disjoint(names)).await;
    }

    /// Resolves once every component is marked.
    pub(crate) async fn all(&self) {
        let mut rx = self.pending.subscribe();
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = rx.wait_for(BTreeSet::is_empty).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tracker_resolves_once_every_name_is_marked() {
        let t = ConsistencyTracker::new(["a".to_string(), "b".to_string()]);
        let waiter = tokio::spawn({
            let t = t.clone();
            async move { t.all().await }
        });
        t.mark("a");
        t.mark("a");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "resolved with `b` still pending");
        t.mark("b");
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("did not resolve")
            .expect("task");
        // Empty from the start: resolves at once.
        ConsistencyTracker::new(Vec::new()).all().await;
    }
}

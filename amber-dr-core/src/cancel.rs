//! Cancelling a run: a [`CancellationToken`] handed to [`crate::Runner::with_cancellation`].
//!
//! When the token is cancelled (or the future of a run is dropped), core abandons the run and
//! cleans up after it, so that an embedding program gets what the CLI's Ctrl-C gets:
//!
//! - the work is dropped: snapshot and restore tasks are aborted, and every artifact being
//!   written aborts its upload (a local staging file or an S3 multipart upload is removed,
//!   see [`crate::uploads`]);
//! - the [`crate::RunHooks`] undo what is still in effect ([`crate::RunHooks::cleanup`]: paused
//!   containers unpaused, stopped ones started);
//! - the repository lock taken by the run is released.
//!
//! The run then returns [`crate::Error::Interrupted`]. [`cancel_on_signals`] gives a token
//! that Ctrl-C (SIGINT) or SIGTERM cancels.
//!
//! A restore is the exception once its commit phase has begun (see [`CommitGate`]): live data
//! is being changed, so the run is not dropped halfway. The components being committed
//! finish, no other starts, the committed ones are rolled back from the safety backup, and
//! the restore returns its outcome with [`crate::RestoreOutcome::interrupted`] set.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

pub use tokio_util::sync::CancellationToken;

use crate::hooks::RunHooks;
use crate::repository::RepoLock;
use crate::{Error, Result};

/// How long an abandoned run waits for its uploads to be aborted.
const SETTLE: Duration = Duration::from_secs(10);

/// Where a restore is between its phases, for cancellation: before the commit phase a
/// cancelled restore is dropped (nothing live has changed); once the commit has begun, a
/// cancellation asks it to stop ([`Self::stop_requested`]) instead: the components in flight
/// finish, no other starts, and the committed ones are rolled back.
#[derive(Debug, Clone, Default)]
pub struct CommitGate {
    inner: Arc<GateInner>,
}

#[derive(Debug, Default)]
struct GateInner {
    committing: std::sync::atomic::AtomicBool,
    stop: CancellationToken,
}

impl CommitGate {
    /// The commit phase begins: from now on a cancellation stops it instead of dropping it.
    pub fn begin_commit(&self) {
        self.inner
            .committing
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// A cancellation came during the commit phase.
    pub fn stop_requested(&self) -> bool {
        self.inner.stop.is_cancelled()
    }

    /// On cancellation: true (and the stop is requested) when the commit phase has begun.
    fn request_stop(&self) -> bool {
        if self
            .inner
            .committing
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            self.inner.stop.cancel();
            true
        } else {
            false
        }
    }
}

/// Resolves when Ctrl-C (SIGINT) or SIGTERM arrives; never if the handlers cannot be set up.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// A token cancelled by the first Ctrl-C or SIGTERM. Call it inside a Tokio runtime.
pub fn cancel_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let child = token.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = shutdown_signal() => child.cancel(),
            _ = child.cancelled() => {}
        }
    });
    token
}

/// Undoes the hooks' changes when dropped armed: a run whose future is dropped half-way
/// (before its `after_*` hook ran) leaves no container paused or stopped.
pub(crate) struct HookGuard {
    hooks: Option<Arc<dyn RunHooks>>,
}

impl HookGuard {
    /// Armed for `hooks` (nothing to do without hooks).
    pub(crate) fn new(hooks: Option<Arc<dyn RunHooks>>) -> Self {
        Self { hooks }
    }

    /// The run reached its `after_*` hook: nothing to undo.
    pub(crate) fn disarm(mut self) {
        self.hooks = None;
    }
}

impl Drop for HookGuard {
    fn drop(&mut self) {
        let Some(hooks) = self.hooks.take() else {
            return;
        };
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                if let Err(e) = hooks.cleanup().await {
                    tracing::error!(error = %e, "the hooks could not undo their changes after an abandoned run");
                }
            });
        }
    }
}

/// Run `fut` (holding `lock`, if any) until it finishes or `token` is cancelled. Finished: the
/// lock is released and the result returned. Cancelled: `fut` is dropped, `hooks` undo their
/// changes, abandoned uploads are given time to abort, the lock is released, and the result
/// is [`Error::Interrupted`].
pub(crate) async fn run<T, F>(
    token: Option<&CancellationToken>,
    hooks: Option<&Arc<dyn RunHooks>>,
    lock: Option<RepoLock>,
    gate: Option<&CommitGate>,
    fut: F,
) -> Result<T>
where
    F: Future<Output = Result<T>>,
{
    let never = CancellationToken::new();
    let token = token.unwrap_or(&never);
    let res = {
        let mut fut = std::pin::pin!(fut);
        let mut stopping = false;
        loop {
            tokio::select! {
                r = &mut fut => break Some(r),
                _ = token.cancelled(), if !stopping => {
                    if gate.is_some_and(CommitGate::request_stop) {
                        // Live data is being changed: the work is not dropped halfway; it
                        // finishes the components in flight, starts no other, rolls back.
                        tracing::warn!("interrupted during the commit: finishing the components in flight, then rolling back the committed ones");
                        stopping = true;
                    } else {
                        break None;
                    }
                }
            }
        }
        // Cancelled: the work is dropped here; its task sets abort their tasks, and the
        // artifacts they were writing abort their uploads.
    };
    match res {
        Some(r) => {
            if let Some(lock) = lock {
                lock.release().await?;
            }
            r
        }
        None => {
            tracing::warn!("run cancelled: undoing the hooks' changes and releasing the lock");
            if let Some(h) = hooks {
                match h.cleanup().await {
                    Ok(done) => {
                        for line in done {
                            tracing::info!("{line}");
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "the hooks could not undo all their changes")
                    }
                }
            }
            let open = crate::uploads::settle(SETTLE).await;
            if open > 0 {
                tracing::warn!(
                    open,
                    "some partial artifacts may remain until the next `prune`"
                );
            }
            if let Some(lock) = lock {
                if let Err(e) = lock.release().await {
                    tracing::warn!(error = %e, "could not remove the repository lock");
                }
            }
            Err(Error::Interrupted)
        }
    }
}

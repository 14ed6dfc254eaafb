//! Writers during the backup: an online backup either fails clearly or is complete, verifies,
//! and restores into data that holds the invariants of what the application wrote.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;

use super::{check, plan, runner, Fixture};
use crate::component::VerifyLevel;
use crate::repository::Repository;
use crate::runner::{BackupOptions, Selection};
use crate::{Error, Result};

/// An application writing to a fixture's store, for [`writers_during_backup`].
#[async_trait]
pub trait Writer: Send + Sync {
    /// Change instance `slot` until `stop` is set — create, overwrite, grow, shrink and delete,
    /// as an application would — adding one to `changes` for each change made. Must not block
    /// the async runtime (use async clients, `tokio::process` or `spawn_blocking`).
    async fn write_until(&self, slot: usize, stop: &AtomicBool, changes: &AtomicU64) -> Result<()>;

    /// What must hold in instance `slot` restored from a backup taken while the writer ran,
    /// whatever moment the backup saw (e.g. a total that every write keeps, a sequence ahead
    /// of every key, every object whole), checked without the driver under test.
    async fn check_restored(&self, slot: usize) -> Result<()>;
}

/// How a backup taken while the writer ran ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnlineOutcome {
    /// Complete; it verified (full), restored, and the restored data passed the writer's check.
    Restored {
        /// Changes the writer made while the backup ran.
        changes_during_backup: u64,
    },
    /// The backup failed, with this message; a backup taken after the writer stopped is
    /// complete and restores.
    Failed(String),
}

/// populate → writer starts → backup while it writes → writer stops → the backup either failed
/// with a message (and the next backup, without writers, restores) or it is complete, passes a
/// full verify, and after `destroy` restores into data that passes [`Writer::check_restored`].
/// A backup during which the writer made no change is taken again (5 attempts); fails when
/// none had a change (the check would prove nothing).
pub async fn writers_during_backup(
    fx: &dyn Fixture,
    writer: &dyn Writer,
    repo: &Repository,
) -> Result<OnlineOutcome> {
    let r = runner(repo, vec![fx.component(0)]);
    // A backup can be over before the writer's next change (a small store, a fast machine):
    // that attempt proves nothing, so it is taken again, a few times at most.
    let mut attempt = 0;
    let (backup, during) = loop {
        attempt += 1;
        fx.populate(0).await?;
        let stop = AtomicBool::new(false);
        let changes = AtomicU64::new(0);
        let write = async {
            let res = writer.write_until(0, &stop, &changes).await;
            stop.store(true, Ordering::SeqCst);
            res
        };
        let backup = async {
            // Let the writer get going first.
            let start = std::time::Instant::now();
            while changes.load(Ordering::SeqCst) < 3
                && !stop.load(Ordering::SeqCst)
                && start.elapsed() < Duration::from_secs(30)
            {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let before = changes.load(Ordering::SeqCst);
            let res = r.backup(&BackupOptions::default()).await;
            let after = changes.load(Ordering::SeqCst);
            stop.store(true, Ordering::SeqCst);
            (res, after.saturating_sub(before))
        };
        let (written, (backup, during)) = tokio::join!(write, backup);
        written.map_err(|e| Error::Other(format!("online: the writer failed: {e}")))?;
        if during > 0 || attempt == 5 {
            break (backup, during);
        }
        tracing::info!(
            attempt,
            "online: no change while the backup ran; taking it again"
        );
    };
    check(during > 0, || {
        "online: the writer made no change while the backup ran; the check proves nothing".into()
    })?;
    // A backup that ends incomplete (a component failed) failed too: its message is the
    // components' errors.
    let backup = backup.and_then(|m| {
        if m.is_complete() {
            return Ok(m);
        }
        let errors: Vec<String> = m
            .components
            .values()
            .filter_map(|c| c.error.clone())
            .collect();
        Err(Error::Other(errors.join("; ")))
    });
    let m = match backup {
        Err(e) => {
            let msg = e.to_string();
            check(!msg.trim().is_empty(), || {
                "online: the backup failed without a message".into()
            })?;
            let again = r.backup(&BackupOptions::default()).await?;
            check(again.is_complete(), || {
                format!(
                    "online: after a failed online backup, a quiet one is not complete: {:?}",
                    again.components
                )
            })?;
            return Ok(OnlineOutcome::Failed(msg));
        }
        Ok(m) => m,
    };
    check(m.is_complete(), || {
        format!(
            "online: a backup that did not fail is not complete: {:?}",
            m.components
        )
    })?;
    let v = r
        .verify(&m.id, &Selection::all(), VerifyLevel::Full)
        .await?;
    check(v.is_ok(), || {
        format!("online: the backup fails verify: {:?}", v.components)
    })?;
    fx.destroy(0).await?;
    let out = r.restore(&m.id, &plan(&[], false)).await?;
    check(out.is_ok(), || {
        format!(
            "online: a complete backup taken while writers ran does not restore: {:?}",
            out.components
        )
    })?;
    writer.check_restored(0).await?;
    Ok(OnlineOutcome::Restored {
        changes_during_backup: during,
    })
}

/// For a [`Writer`] that is a child process (a Python client, say): runs `cmd` (fed `input` on
/// stdin, if any), counts each line it prints as a change, and once `stop` is set creates
/// `stop_file` — which the process must watch to exit — and waits for it. Fails if the process
/// fails.
pub async fn writer_process(
    mut cmd: tokio::process::Command,
    input: Option<&[u8]>,
    stop_file: &std::path::Path,
    stop: &AtomicBool,
    changes: &AtomicU64,
) -> Result<()> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let _ = std::fs::remove_file(stop_file);
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Error::Other(format!("online: cannot start the writer: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        if let Some(input) = input {
            stdin
                .write_all(input)
                .await
                .map_err(|e| Error::Other(format!("online: writer stdin: {e}")))?;
        }
    }
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| Error::Other("online: writer has no stdout".into()))?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let mut signalled = false;
    loop {
        if stop.load(Ordering::SeqCst) && !signalled {
            std::fs::write(stop_file, b"")
                .map_err(|e| Error::Other(format!("online: cannot write the stop file: {e}")))?;
            signalled = true;
        }
        tokio::select! {
            line = lines.next_line() => match line {
                Ok(Some(_)) => {
                    changes.fetch_add(1, Ordering::SeqCst);
                }
                _ => break,
            },
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    }
    stop.store(true, Ordering::SeqCst);
    let status = child
        .wait()
        .await
        .map_err(|e| Error::Other(format!("online: writer: {e}")))?;
    check(status.success(), || {
        format!("online: the writer process failed ({status})")
    })
}

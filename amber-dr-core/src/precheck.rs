//! The prepare phase of a restore: before anything live changes, every artifact of every
//! component to restore is read end to end and checked against the manifest (length and
//! SHA-256), and decoded by its driver (a full [`Component::verify`]), components concurrently.
//! A damaged backup is refused as a whole before the hooks, the safety backup or any change.

use std::sync::Arc;

use tokio::task::JoinSet;

use crate::component::{Component, ReadContext, VerifyLevel};
use crate::manifest::ComponentRecord;
use crate::progress::{Progress, ProgressSink};
use crate::repository::Repository;
use crate::{Error, Result};

/// Prepare `components` (each with its record in backup `id`), up to `parallelism` at once.
/// The first damage found is an [`Error::Corrupt`] (exit code 3) that names the component and
/// the artifact and says that nothing was changed; the other checks are then abandoned.
pub async fn prepare(
    repo: &Repository,
    id: &str,
    components: &[(Arc<dyn Component>, ComponentRecord)],
    sink: Arc<dyn ProgressSink>,
    parallelism: usize,
) -> Result<()> {
    let mut set: JoinSet<Result<()>> = JoinSet::new();
    let mut queue = components.iter().cloned();
    loop {
        while set.len() < parallelism.max(1) {
            let Some((c, rec)) = queue.next() else { break };
            let cx = ReadContext::new(
                repo.clone(),
                id.to_string(),
                Progress::new(&rec.name, sink.clone()),
            );
            let id = id.to_string();
            set.spawn(async move { prepare_one(c.as_ref(), &cx, &rec, &id).await });
        }
        match set.join_next().await {
            Some(Ok(Ok(()))) => {}
            Some(Ok(Err(e))) => return Err(e),
            Some(Err(e)) => return Err(Error::Other(format!("a prepare task died: {e}"))),
            None => return Ok(()),
        }
    }
}

async fn prepare_one(
    c: &dyn Component,
    cx: &ReadContext,
    rec: &ComponentRecord,
    id: &str,
) -> Result<()> {
    cx.progress().set_phase("preparing: reading the backup");
    let refuse = |problem: String| {
        Error::Corrupt {
        artifact: format!("{id}/{}", rec.name),
        message: format!(
            "{problem}; the whole restore was refused in its prepare phase: nothing was restored and no safety backup was taken (run `amber-dr verify {id}` for every problem, or restore another backup)"
        ),
    }
    };
    match c.verify(cx, rec, VerifyLevel::Full).await {
        Ok(report) => match report.problems.into_iter().next() {
            Some(problem) => Err(refuse(problem)),
            None => Ok(()),
        },
        Err(e) if e.is_damage() => Err(refuse(e.to_string())),
        Err(e) => {
            // A driver decoding a stream meets damaged bytes before the stream's hash is
            // checked at its end: its error is then about the content ("not a blob hash").
            // The hashes decide whether that is damage.
            match cx.verify_artifacts(rec, VerifyLevel::Full).await {
                Ok(hashes) if !hashes.is_ok() => Err(refuse(format!(
                    "{} (decoding it failed: {e})",
                    hashes.problems.join("; ")
                ))),
                Err(d) if d.is_damage() => Err(refuse(format!("{d} (decoding it failed: {e})"))),
                _ => Err(e),
            }
        }
    }
}

//! The prepare phase of a restore: before anything live changes, every artifact of every
//! component to restore is read end to end and checked against the manifest (length and
//! SHA-256) and decoded by its driver, components concurrently. A driver that can stage does it
//! from that one read ([`Component::stage`]: files extracts into its staging directory and
//! compares the tree); the others get a full [`Component::verify`]. A damaged backup is refused
//! as a whole before the hooks, the safety backup or any change, and whatever was staged is
//! removed.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::task::JoinSet;

use crate::component::{Component, ReadContext, RestoreOptions, StagedRestore, VerifyLevel};
use crate::manifest::ComponentRecord;
use crate::progress::{Progress, ProgressSink};
use crate::repository::Repository;
use crate::{Error, Result};

/// What the prepare phase staged, by component name (components without staging are absent).
pub type Staged = HashMap<String, Box<dyn StagedRestore>>;

/// What preparing one component gives: its staged restore, if its driver stages.
type Prepared = Result<Option<Box<dyn StagedRestore>>>;

/// One component to prepare: the driver, its record in the backup, its restore options.
pub type Preparation = (Arc<dyn Component>, ComponentRecord, RestoreOptions);

/// Prepare `components` of backup `id`, up to `parallelism` at once. The first damage found
/// is an [`Error::Corrupt`] (exit code 3) that names the component and the artifact and says
/// that nothing was changed; the components already under way finish first (so that no
/// staging is still being written), then everything staged is discarded.
pub async fn prepare(
    repo: &Repository,
    id: &str,
    components: &[Preparation],
    sink: Arc<dyn ProgressSink>,
    parallelism: usize,
) -> Result<Staged> {
    let mut set: JoinSet<(String, Prepared)> = JoinSet::new();
    let mut queue = components.iter().cloned();
    let mut staged = Staged::new();
    let mut first_error = None;
    loop {
        while set.len() < parallelism.max(1) && first_error.is_none() {
            let Some((c, rec, opts)) = queue.next() else {
                break;
            };
            let cx = ReadContext::new(
                repo.clone(),
                id.to_string(),
                Progress::new(&rec.name, sink.clone()),
            );
            let id = id.to_string();
            set.spawn(async move {
                let res = prepare_one(c.as_ref(), &cx, &rec, &opts, &id).await;
                (rec.name.clone(), res)
            });
        }
        match set.join_next().await {
            Some(Ok((name, Ok(Some(s))))) => {
                staged.insert(name, s);
            }
            Some(Ok((_, Ok(None)))) => {}
            Some(Ok((_, Err(e)))) => {
                first_error.get_or_insert(e);
            }
            Some(Err(e)) => {
                first_error.get_or_insert(Error::Other(format!("a prepare task died: {e}")));
            }
            None => break,
        }
    }
    match first_error {
        None => Ok(staged),
        Some(e) => {
            discard(staged).await;
            Err(e)
        }
    }
}

/// Remove everything `staged` holds.
pub async fn discard(staged: Staged) {
    for (_, s) in staged {
        s.discard().await;
    }
}

async fn prepare_one(
    c: &dyn Component,
    cx: &ReadContext,
    rec: &ComponentRecord,
    opts: &RestoreOptions,
    id: &str,
) -> Prepared {
    cx.progress().set_phase("preparing: reading the backup");
    let refuse = |problem: String| {
        Error::Corrupt {
        artifact: format!("{id}/{}", rec.name),
        message: format!(
            "{problem}; the whole restore was refused in its prepare phase: nothing was restored and no safety backup was taken (run `amber-dr verify {id}` for every problem, or restore another backup)"
        ),
    }
    };
    let res = match c.stage(cx, rec, opts).await {
        Ok(Some(staged)) => {
            // What the driver did not read to its end (e.g. the keys of references) is
            // hashed too: a backup with any damaged artifact is refused.
            let mut unread = crate::component::VerifyReport::default();
            let hashed = crate::verify::hash_unread(cx, rec, &mut unread).await;
            match (hashed, unread.problems.into_iter().next()) {
                (Ok(()), None) => return Ok(Some(staged)),
                (Ok(()), Some(problem)) => {
                    staged.discard().await;
                    return Err(refuse(problem));
                }
                (Err(e), _) => {
                    staged.discard().await;
                    return Err(e);
                }
            }
        }
        Ok(None) => c
            .verify(cx, rec, VerifyLevel::Full)
            .await
            .map(|report| report.problems.into_iter().next()),
        Err(e) => Err(e),
    };
    match res {
        Ok(None) => Ok(None),
        Ok(Some(problem)) => Err(refuse(problem)),
        Err(e) if e.is_damage() => Err(refuse(e.to_string())),
        Err(e) => match crate::verify::damage_behind(cx, rec, e).await {
            Ok(hashes) => Err(refuse(format!(
                "{} ({})",
                hashes.problems.join("; "),
                hashes.notes.join("; ")
            ))),
            Err(d) if d.is_damage() => Err(refuse(d.to_string())),
            Err(e) => Err(e),
        },
    }
}

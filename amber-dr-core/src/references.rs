//! References between stores: declared in `[[references]]`, checked at backup, verify and
//! restore.
//!
//! A reference says that every key of one component's key set (its *from* end, e.g. the
//! `upload_path` column of Postgres's `documents` table) must name an entry of another key set
//! (its *to* end: a file of the uploads directory, an object of a bucket, a primary key of a
//! Milvus collection, the result of another query). An end with a `query` is evaluated by its
//! component inside its snapshot ([`crate::SnapshotContext::key_queries`]) and stored as an artifact
//! of the backup; an end without one is the component's own key set, read from the backup by
//! [`Component::backup_keys`]. After a restore both ends come from the live stores
//! ([`Component::live_keys`]).
//!
//! The check sorts both key sets in bounded memory (spilling sorted runs to temporary files)
//! and merges them: a *from* key with no equal *to* key dangles. Keys are compared as exact
//! strings (a driver turns numbers into their decimal text).
//!
//! Ordering: with references declared, the runner starts a referred component's snapshot only
//! after every component referring to it has reached its cut, so that what a referrer's
//! snapshot names was created before the referred snapshot started (see
//! docs/architecture.md, "References").

pub mod keys;
mod sort;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

use crate::component::{Component, ReadContext};
use crate::manifest::ComponentRecord;
use crate::progress::Progress;
use crate::repository::Repository;
use crate::{Error, Result};
pub use keys::{read_keys, KeyQuery, KeyWriter};

/// A stream of keys (unordered, duplicates allowed).
pub type KeyStream = BoxStream<'static, Result<String>>;

/// Dangling keys kept in a result (the smallest ones).
pub const FIRST_DANGLING: usize = 10;

/// Bytes of keys each side of a check keeps in memory before it spills a sorted run to disk.
pub const SORT_BUDGET: usize = 64 * 1024 * 1024;

/// One `[[references]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferenceSpec {
    /// A name for messages and reports, unique in the file.
    pub name: String,
    /// The referring keys.
    pub from: KeySet,
    /// The keys they must name.
    pub to: KeySet,
    /// Fail the backup when a reference dangles (default: a warning).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fail_on_dangling: bool,
}

/// One end of a reference: a component's key set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySet {
    /// The component's name (`[components.NAME]`).
    pub component: String,
    /// Postgres: the database the query runs in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// A query returning one column of keys (SQL for Postgres, Cypher for Neo4j), run inside
    /// the component's snapshot. NULLs are skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// Milvus: the collection (`database.collection`) whose primary keys are the key set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collection: Option<String>,
}

impl KeySet {
    /// Whether the component records this key set inside its snapshot (an end with a `query`,
    /// or a `collection`'s primary keys), rather than core reading it from the component's
    /// backup with [`Component::backup_keys`].
    pub fn recorded_in_snapshot(&self) -> bool {
        self.query.is_some() || self.collection.is_some()
    }

    /// Refuse the fields a driver does not use (`allowed` names those it does, of
    /// `database`, `collection`).
    pub fn refuse_fields(&self, kind: &str, allowed: &[&str]) -> Result<()> {
        for (field, set) in [
            ("database", self.database.is_some()),
            ("collection", self.collection.is_some()),
        ] {
            if set && !allowed.contains(&field) {
                return Err(Error::config(
                    format!("references: {}", self.component),
                    format!("the {kind} driver has no `{field}` in a reference end"),
                ));
            }
        }
        Ok(())
    }

    /// `component`, `component/database`, with the collection if any.
    pub fn describe(&self) -> String {
        let mut s = self.component.clone();
        for part in [&self.database, &self.collection].into_iter().flatten() {
            s.push('/');
            s.push_str(part);
        }
        s
    }
}

/// The result of checking one reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferenceCheck {
    /// The reference as declared when the backup was taken.
    pub spec: ReferenceSpec,
    /// The artifact (of the *from* component) holding the *from* query's keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_artifact: Option<String>,
    /// The artifact (of the *to* component) holding the *to* query's keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_artifact: Option<String>,
    /// Referring keys checked (duplicates included).
    pub checked: u64,
    /// Referring keys that name nothing.
    pub dangling: u64,
    /// The first dangling keys (at most [`FIRST_DANGLING`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub first_dangling: Vec<String>,
    /// Why the check could not be made (then `checked` and `dangling` mean nothing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Wall time of the check, in milliseconds.
    #[serde(default)]
    pub millis: u64,
}

impl ReferenceCheck {
    fn new(spec: &ReferenceSpec) -> Self {
        Self {
            spec: spec.clone(),
            from_artifact: None,
            to_artifact: None,
            checked: 0,
            dangling: 0,
            first_dangling: Vec::new(),
            error: None,
            millis: 0,
        }
    }

    /// True when the check ran and every referring key resolved.
    pub fn resolves(&self) -> bool {
        self.error.is_none() && self.dangling == 0
    }

    /// One line for people: `name: N checked, M dangling (first: a, b)` or the error.
    pub fn summary(&self) -> String {
        let arrow = format!(
            "{} -> {}",
            self.spec.from.describe(),
            self.spec.to.describe()
        );
        if let Some(e) = &self.error {
            return format!("{} ({arrow}): NOT CHECKED: {e}", self.spec.name);
        }
        let mut s = format!(
            "{} ({arrow}): {} checked, {} dangling",
            self.spec.name, self.checked, self.dangling
        );
        if !self.first_dangling.is_empty() {
            s.push_str(&format!(" (first: {})", self.first_dangling.join(", ")));
        }
        s
    }
}

/// The artifact name of reference `index`'s `side` ("from" or "to") query keys.
fn artifact_name(index: usize, side: &str) -> String {
    format!("refkeys-{index:03}-{side}.jsonl")
}

/// Checks the declared references against the components: names unique, components present,
/// each end supported by its driver (a query end needs [`Capabilities::reference_queries`],
/// another end [`Capabilities::reference_keys`]), no cycle between components (the cut order
/// would be impossible).
///
/// [`Capabilities::reference_queries`]: crate::Capabilities::reference_queries
/// [`Capabilities::reference_keys`]: crate::Capabilities::reference_keys
pub fn validate(specs: &[ReferenceSpec], components: &[Arc<dyn Component>]) -> Result<()> {
    let mut names = BTreeSet::new();
    for (i, r) in specs.iter().enumerate() {
        let at = format!("references[{i}] ({})", r.name);
        if r.name.trim().is_empty() {
            return Err(Error::config(at, "`name` is empty"));
        }
        if !names.insert(r.name.as_str()) {
            return Err(Error::config(at, "a second reference has this name"));
        }
        for (side, set) in [("from", &r.from), ("to", &r.to)] {
            let Some(c) = components.iter().find(|c| c.name() == set.component) else {
                return Err(Error::config(
                    format!("{at}.{side}.component"),
                    format!("no component named `{}`", set.component),
                ));
            };
            let caps = c.capabilities();
            let ok = if set.recorded_in_snapshot() {
                caps.reference_queries
            } else {
                caps.reference_keys
            };
            if !ok {
                let what = if set.recorded_in_snapshot() {
                    "cannot run a reference `query` (or list a `collection`)"
                } else {
                    "cannot list its keys for a reference (give a `query`?)"
                };
                return Err(Error::config(
                    format!("{at}.{side}"),
                    format!("the {} driver of `{}` {what}", c.kind(), set.component),
                ));
            }
        }
    }
    let order = referrers(specs);
    // A cycle leaves components that never become ready.
    let mut done: BTreeSet<&str> = BTreeSet::new();
    let all: BTreeSet<&str> = order
        .iter()
        .flat_map(|(k, v)| std::iter::once(k.as_str()).chain(v.iter().map(String::as_str)))
        .collect();
    loop {
        let ready: Vec<&str> = all
            .iter()
            .copied()
            .filter(|n| !done.contains(n))
            .filter(|n| {
                order
                    .get(*n)
                    .is_none_or(|rs| rs.iter().all(|r| done.contains(r.as_str())))
            })
            .collect();
        if ready.is_empty() {
            break;
        }
        done.extend(ready);
    }
    if done.len() < all.len() {
        let stuck: Vec<&str> = all.difference(&done).copied().collect();
        return Err(Error::config(
            "references",
            format!(
                "the references make a cycle between components {}: no order of snapshots can satisfy them",
                stuck.join(", ")
            ),
        ));
    }
    Ok(())
}

/// For each referred component, the components referring to it (other than itself): their
/// snapshots must reach their cuts before its snapshot starts.
pub fn referrers(specs: &[ReferenceSpec]) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in specs {
        if r.from.component != r.to.component {
            out.entry(r.to.component.clone())
                .or_default()
                .insert(r.from.component.clone());
        }
    }
    out
}

/// The queries component `name` runs in its snapshot for `specs`.
pub(crate) fn queries_of(specs: &[ReferenceSpec], name: &str) -> Vec<KeyQuery> {
    let mut out = Vec::new();
    for (i, r) in specs.iter().enumerate() {
        for (side, set) in [("from", &r.from), ("to", &r.to)] {
            if set.component == name && set.recorded_in_snapshot() {
                out.push(KeyQuery {
                    reference: r.name.clone(),
                    artifact: artifact_name(i, side),
                    set: set.clone(),
                });
            }
        }
    }
    out
}

/// Where the keys of one end come from.
enum Keys<'a> {
    /// A backup: `records` by component, read through `repo`.
    Backup {
        repo: &'a Repository,
        id: &'a str,
        records: &'a BTreeMap<String, ComponentRecord>,
    },
    /// The live stores.
    Live,
    /// A drill's scratch copies: the restores of each drilled component.
    Scratch(&'a BTreeMap<String, Vec<crate::drill::ScratchRestore>>),
}

impl Keys<'_> {
    async fn open(
        &self,
        spec_index: usize,
        side: &str,
        set: &KeySet,
        driver: Option<&Arc<dyn Component>>,
        result: &mut ReferenceCheck,
    ) -> Result<KeyStream> {
        match self {
            Keys::Live => {
                let d = driver.ok_or_else(|| no_driver(set))?;
                d.live_keys(set).await
            }
            Keys::Scratch(copies) => {
                let d = driver.ok_or_else(|| no_driver(set))?;
                let restores = copies.get(&set.component).ok_or_else(|| {
                    Error::Other(format!(
                        "`{}` has no scratch copy in this drill",
                        set.component
                    ))
                })?;
                d.scratch_keys(set, restores).await
            }
            Keys::Backup { repo, id, records } => {
                let rec = records.get(&set.component).ok_or_else(|| {
                    Error::Other(format!(
                        "component `{}` is not in this backup",
                        set.component
                    ))
                })?;
                if !rec.is_ok() {
                    return Err(Error::Other(format!(
                        "the snapshot of `{}` failed",
                        set.component
                    )));
                }
                let cx = ReadContext::new((*repo).clone(), *id, Progress::none());
                if set.recorded_in_snapshot() {
                    let stored = match side {
                        "from" => result.from_artifact.clone(),
                        _ => result.to_artifact.clone(),
                    };
                    let name = stored.unwrap_or_else(|| artifact_name(spec_index, side));
                    let art = rec.artifact(&name).map_err(|_| {
                        Error::Other(format!(
                            "the backup of `{}` has no keys of this query (artifact {name})",
                            set.component
                        ))
                    })?;
                    match side {
                        "from" => result.from_artifact = Some(name.clone()),
                        _ => result.to_artifact = Some(name.clone()),
                    }
                    read_keys(&cx, art).await
                } else {
                    let d = driver.ok_or_else(|| no_driver(set))?;
                    d.backup_keys(&cx, rec, set).await
                }
            }
        }
    }
}

fn no_driver(set: &KeySet) -> Error {
    Error::Other(format!(
        "no component named `{}` is configured",
        set.component
    ))
}

/// Check one reference: both key sets sorted, merged.
async fn check_one(
    index: usize,
    mut result: ReferenceCheck,
    source: &Keys<'_>,
    components: &[Arc<dyn Component>],
) -> ReferenceCheck {
    let started = std::time::Instant::now();
    let driver = |set: &KeySet| components.iter().find(|c| c.name() == set.component);
    let spec = result.spec.clone();
    let res: Result<sort::Joined> = async {
        let from = source
            .open(index, "from", &spec.from, driver(&spec.from), &mut result)
            .await?;
        let to = source
            .open(index, "to", &spec.to, driver(&spec.to), &mut result)
            .await?;
        let (from, to) = tokio::join!(
            sort::SortedKeys::collect(from, SORT_BUDGET),
            sort::SortedKeys::collect(to, SORT_BUDGET)
        );
        let (from, to) = (from?, to?);
        tokio::task::spawn_blocking(move || {
            sort::join(from.into_sorted()?, to.into_sorted()?, FIRST_DANGLING)
        })
        .await
        .map_err(|e| Error::Other(format!("a reference check task died: {e}")))?
        .map_err(|e| Error::io("merge sorted keys in", std::env::temp_dir(), e))
    }
    .await;
    match res {
        Ok(j) => {
            result.checked = j.checked;
            result.dangling = j.dangling;
            result.first_dangling = j.first;
        }
        Err(e) => result.error = Some(e.to_string()),
    }
    result.millis = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    tracing::info!(reference = %result.spec.name, summary = %result.summary(), "reference checked");
    result
}

/// Check the references of `specs` that touch backup `id` (its component `records`), reading
/// only the repository. A reference with one end outside the backup is reported with an error;
/// one with both ends outside it is left out.
pub async fn check_backup(
    specs: &[ReferenceSpec],
    repo: &Repository,
    id: &str,
    records: &BTreeMap<String, ComponentRecord>,
    components: &[Arc<dyn Component>],
) -> Vec<ReferenceCheck> {
    let source = Keys::Backup { repo, id, records };
    let mut out = Vec::with_capacity(specs.len());
    for (i, spec) in specs.iter().enumerate() {
        let touches = |c: &str| records.contains_key(c);
        if !touches(&spec.from.component) && !touches(&spec.to.component) {
            continue;
        }
        out.push(check_one(i, ReferenceCheck::new(spec), &source, components).await);
    }
    out
}

/// Re-check the references recorded in a backup (`recorded`: its manifest's results), from
/// its artifacts alone.
pub async fn recheck_backup(
    recorded: &[ReferenceCheck],
    repo: &Repository,
    id: &str,
    records: &BTreeMap<String, ComponentRecord>,
    components: &[Arc<dyn Component>],
) -> Vec<ReferenceCheck> {
    let source = Keys::Backup { repo, id, records };
    let mut out = Vec::with_capacity(recorded.len());
    for (i, r) in recorded.iter().enumerate() {
        let mut fresh = ReferenceCheck::new(&r.spec);
        fresh.from_artifact = r.from_artifact.clone();
        fresh.to_artifact = r.to_artifact.clone();
        out.push(check_one(i, fresh, &source, components).await);
    }
    out
}

/// Check the references of `specs` that touch one of `touched` against the live stores.
pub async fn check_live(
    specs: &[ReferenceSpec],
    touched: &[String],
    components: &[Arc<dyn Component>],
) -> Vec<ReferenceCheck> {
    let mut out = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        if touched.contains(&spec.from.component) || touched.contains(&spec.to.component) {
            out.push(check_one(i, ReferenceCheck::new(spec), &Keys::Live, components).await);
        }
    }
    out
}

/// Check the references of `specs` that touch one of the drilled components against their
/// scratch copies (`copies`: the restores of each drilled component). A reference with an end
/// that was not drilled is reported with an error.
pub async fn check_scratch(
    specs: &[ReferenceSpec],
    copies: &BTreeMap<String, Vec<crate::drill::ScratchRestore>>,
    components: &[Arc<dyn Component>],
) -> Vec<ReferenceCheck> {
    let mut out = Vec::new();
    let source = Keys::Scratch(copies);
    for (i, spec) in specs.iter().enumerate() {
        if copies.contains_key(&spec.from.component) || copies.contains_key(&spec.to.component) {
            out.push(check_one(i, ReferenceCheck::new(spec), &source, components).await);
        }
    }
    out
}

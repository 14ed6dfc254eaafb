//! The `Component` trait that every driver implements, and the contexts the runner hands it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::artifact::{ArtifactReader, ArtifactWriter};
use crate::manifest::{ArtifactRecord, ComponentRecord};
use crate::progress::Progress;
use crate::repository::Repository;
use crate::{Error, Result};

/// What a driver supports. The CLI and the conformance suite gate on it.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// Snapshots can be taken while the store keeps serving.
    pub online_snapshot: bool,
    /// The snapshot is one consistent point in time (not just per-object consistent).
    pub consistent_snapshot: bool,
    /// Restore can target another database/bucket/directory (`RestoreOptions::target`).
    pub restore_to_target: bool,
    /// Restore needs the store's clients stopped (downtime).
    pub restore_needs_downtime: bool,
    /// `verify --full` decodes the content, beyond checking hashes.
    pub deep_verify: bool,
    /// A restore can be limited to named parts (databases, buckets, collections:
    /// [`RestoreOptions::items`]); the runner refuses parts for a driver without them.
    pub restore_parts: bool,
    /// The prepare phase of a restore builds the restored data beside the live data
    /// ([`Component::stage`]); the commit only swaps it in (its downtime is the swap).
    #[serde(default)]
    pub staged_restore: bool,
    /// The component lists its own keys for a `[[references]]` end without a query, from a
    /// backup ([`Component::backup_keys`]) and live ([`Component::live_keys`]): e.g. file
    /// paths, `bucket/key`, a collection's primary keys.
    #[serde(default)]
    pub reference_keys: bool,
    /// The component records a reference end's key set inside its snapshot
    /// ([`SnapshotContext::key_queries`]: the result of its `query`, or the primary keys of
    /// its `collection`), and lists it live ([`Component::live_keys`]).
    #[serde(default)]
    pub reference_queries: bool,
}

impl Capabilities {
    /// All false; set fields with the builder methods.
    pub fn new() -> Self {
        Self::default()
    }
    /// Set [`Self::online_snapshot`].
    pub fn online_snapshot(mut self, v: bool) -> Self {
        self.online_snapshot = v;
        self
    }
    /// Set [`Self::consistent_snapshot`].
    pub fn consistent_snapshot(mut self, v: bool) -> Self {
        self.consistent_snapshot = v;
        self
    }
    /// Set [`Self::restore_to_target`].
    pub fn restore_to_target(mut self, v: bool) -> Self {
        self.restore_to_target = v;
        self
    }
    /// Set [`Self::restore_needs_downtime`].
    pub fn restore_needs_downtime(mut self, v: bool) -> Self {
        self.restore_needs_downtime = v;
        self
    }
    /// Set [`Self::deep_verify`].
    pub fn deep_verify(mut self, v: bool) -> Self {
        self.deep_verify = v;
        self
    }
    /// Set [`Self::reference_keys`].
    pub fn reference_keys(mut self, v: bool) -> Self {
        self.reference_keys = v;
        self
    }
    /// Set [`Self::reference_queries`].
    pub fn reference_queries(mut self, v: bool) -> Self {
        self.reference_queries = v;
        self
    }
    /// Set [`Self::restore_parts`].
    pub fn restore_parts(mut self, v: bool) -> Self {
        self.restore_parts = v;
        self
    }
    /// Set [`Self::staged_restore`].
    pub fn staged_restore(mut self, v: bool) -> Self {
        self.staged_restore = v;
        self
    }
}

/// What `probe` (and `amber-dr doctor`) found.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Probe {
    /// The server answered and accepted our credentials.
    pub reachable: bool,
    /// Server (or data) version.
    pub version: Option<String>,
    /// A size estimate of what a snapshot would read, in bytes.
    pub size_estimate: Option<u64>,
    /// Other facts worth showing (tools found, counts, ...).
    pub details: BTreeMap<String, serde_json::Value>,
    /// Problems that do not stop a backup but should be looked at.
    pub warnings: Vec<String>,
}

/// How deep `verify` goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerifyLevel {
    /// Every artifact present with the stored size the manifest says.
    Quick,
    /// Every byte read, SHA-256 checked, and the content decoded by the driver.
    Full,
}

/// Options of a restore.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RestoreOptions {
    /// Describe what would be done, change nothing.
    pub dry_run: bool,
    /// Restore into another database/bucket/directory than the configured one.
    pub target: Option<String>,
    /// Restore only these parts of the component (databases, buckets, collections); empty
    /// means all of it. The runner only hands a non-empty list to a driver that declares
    /// [`Capabilities::restore_parts`].
    pub items: Vec<String>,
    /// Drivers that mirror (S3 buckets) leave items that are not in the backup instead of
    /// deleting them.
    pub keep_extra: bool,
    /// Restore even when the plan breaks a component's declared [`RestoreRelation`]s (the
    /// runner refuses such plans otherwise), and replace a [`Self::target`] that exists and
    /// holds data (see [`crate::paths::refuse_restore_dir`]).
    pub force: bool,
    /// A drill's restore into a scratch target (see [`crate::drill`]): write nothing outside
    /// the target (e.g. Postgres leaves the cluster's roles alone; they are checked, not
    /// applied).
    #[serde(default)]
    pub scratch: bool,
}

impl RestoreOptions {
    /// Default options.
    pub fn new() -> Self {
        Self::default()
    }
    /// Set [`Self::dry_run`].
    pub fn dry_run(mut self, v: bool) -> Self {
        self.dry_run = v;
        self
    }
    /// Set [`Self::target`].
    pub fn target(mut self, t: Option<String>) -> Self {
        self.target = t;
        self
    }
    /// Set [`Self::keep_extra`].
    pub fn keep_extra(mut self, v: bool) -> Self {
        self.keep_extra = v;
        self
    }
    /// Set [`Self::force`].
    pub fn force(mut self, v: bool) -> Self {
        self.force = v;
        self
    }
    /// Set [`Self::items`].
    pub fn items(mut self, items: Vec<String>) -> Self {
        self.items = items;
        self
    }
    /// Set [`Self::scratch`].
    pub fn scratch(mut self, v: bool) -> Self {
        self.scratch = v;
        self
    }
}

/// How restoring a component relates to other components of the same config, declared by
/// the component ([`Component::restore_relations`]) and enforced by the runner's restore
/// planning: a plan that breaks a relation is refused unless [`RestoreOptions::force`] is set.
///
/// Example: an etcd prefix holding a store's metadata is only consistent with that store's
/// bucket when both are restored together, and must never be restored under a logical restore
/// of the same store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "relation")]
pub enum RestoreRelation {
    /// This component must be restored in the same run as `component`.
    RestoreWith {
        /// The other component's name in the config.
        component: String,
        /// Why, in words, for the refusal message.
        reason: String,
    },
    /// This component must not be restored in the same run as `component`.
    ConflictsWith {
        /// The other component's name in the config.
        component: String,
        /// Why, in words, for the refusal message.
        reason: String,
    },
}

impl RestoreRelation {
    /// The problem with restoring `name` when `selected` components are restored in the same
    /// run, if any.
    pub fn violation(&self, name: &str, selected: &[String]) -> Option<String> {
        match self {
            RestoreRelation::RestoreWith { component, reason } => {
                (!selected.iter().any(|s| s == component)).then(|| {
                    format!("`{name}` must be restored together with `{component}`, which this restore leaves out: {reason}")
                })
            }
            RestoreRelation::ConflictsWith { component, reason } => {
                (selected.iter().any(|s| s == component) && component != name).then(|| {
                    format!("`{name}` must not be restored together with `{component}`: {reason}")
                })
            }
        }
    }
}

/// What `verify` found for one component.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct VerifyReport {
    /// Artifacts checked.
    pub artifacts_checked: u64,
    /// Stored bytes read (full verification).
    pub bytes_read: u64,
    /// Damage found; empty means all good.
    pub problems: Vec<String>,
    /// What was checked, in words.
    pub notes: Vec<String>,
}

impl VerifyReport {
    /// True when nothing is damaged.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// What `restore` did (or, in a dry run, would do).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RestoreReport {
    /// One line per step done or planned.
    pub actions: Vec<String>,
    /// Counts after the restore, as compared with the record.
    pub stats: BTreeMap<String, serde_json::Value>,
    /// Things the operator should know.
    pub warnings: Vec<String>,
}

/// What a snapshot is for; lets a driver treat a missing source differently for a safety
/// backup (nothing to save) than for an ordinary backup (an error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotPurpose {
    /// `amber-dr backup`.
    Backup,
    /// The state of a component just before a restore replaces it.
    Safety,
}

/// Handed to [`Component::snapshot`]: where to write artifacts and how to report progress.
#[derive(Debug, Clone)]
pub struct SnapshotContext {
    repo: Repository,
    backup_id: String,
    component: String,
    progress: Progress,
    purpose: SnapshotPurpose,
    consistency: Option<crate::hooks::ConsistencyTracker>,
    /// When the snapshot reached its consistent point (the first [`Self::mark_consistent`]).
    cut_at: Arc<std::sync::OnceLock<chrono::DateTime<chrono::Utc>>>,
    /// The reference queries to run inside the snapshot.
    key_queries: Arc<Vec<crate::references::KeyQuery>>,
}

impl SnapshotContext {
    /// A context for one component of one backup.
    pub fn new(
        repo: Repository,
        backup_id: impl Into<String>,
        component: impl Into<String>,
        progress: Progress,
        purpose: SnapshotPurpose,
    ) -> Self {
        Self {
            repo,
            backup_id: backup_id.into(),
            component: component.into(),
            progress,
            purpose,
            consistency: None,
            cut_at: Arc::default(),
            key_queries: Arc::default(),
        }
    }
    /// The same context with the reference queries the component must run in its snapshot.
    pub fn with_key_queries(mut self, queries: Vec<crate::references::KeyQuery>) -> Self {
        self.key_queries = Arc::new(queries);
        self
    }
    /// The reference queries this component must run inside its snapshot, each written with
    /// [`Self::key_writer`] into its artifact (which the driver adds to its record). Empty
    /// unless the config declares references with a `query` on this component.
    pub fn key_queries(&self) -> &[crate::references::KeyQuery] {
        &self.key_queries
    }
    pub(crate) fn with_consistency(mut self, tracker: crate::hooks::ConsistencyTracker) -> Self {
        self.consistency = Some(tracker);
        self
    }
    /// Tell the runner that this component has reached its consistent point: from now on,
    /// writes by the store's clients no longer change what this snapshot will contain (e.g.
    /// Postgres: a snapshot is exported in every database being dumped). The runner resumes
    /// the application (see [`crate::hooks`]) once every component of the backup has called
    /// this or finished its snapshot. Call it as early as that is true; calling it again does
    /// nothing. A driver that never calls it counts as consistent when its snapshot returns.
    pub fn mark_consistent(&self) {
        self.cut_at.get_or_init(chrono::Utc::now);
        if let Some(t) = &self.consistency {
            t.mark(&self.component);
        }
    }
    /// When this snapshot reached its consistent point (its cut), once it has.
    pub fn cut_at(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        self.cut_at.get().copied()
    }
    /// The backup being written.
    pub fn backup_id(&self) -> &str {
        &self.backup_id
    }
    /// The repository (for drivers that keep shared blobs).
    pub fn repository(&self) -> &Repository {
        &self.repo
    }
    /// Progress of this component.
    pub fn progress(&self) -> &Progress {
        &self.progress
    }
    /// Why the snapshot is taken.
    pub fn purpose(&self) -> SnapshotPurpose {
        self.purpose
    }
    /// Start a new artifact `name` (e.g. `data.tar`) of this component.
    pub async fn create_artifact(&self, name: &str) -> Result<ArtifactWriter> {
        self.repo
            .create_artifact(
                &self.backup_id,
                &self.component,
                name,
                self.progress.clone(),
            )
            .await
    }
}

/// Handed to [`Component::verify`] and [`Component::restore`]: where to read artifacts from.
#[derive(Debug, Clone)]
pub struct ReadContext {
    repo: Repository,
    backup_id: String,
    progress: Progress,
    /// The artifacts read to their end through [`Self::open_artifact`], checks passed.
    read: crate::artifact::ReadLog,
}

/// The context of a verify.
pub type VerifyContext = ReadContext;
/// The context of a restore.
pub type RestoreContext = ReadContext;

impl ReadContext {
    /// A context for reading one component of one backup.
    pub fn new(repo: Repository, backup_id: impl Into<String>, progress: Progress) -> Self {
        Self {
            repo,
            backup_id: backup_id.into(),
            progress,
            read: Arc::default(),
        }
    }
    /// The same context with an empty log of the artifacts read (see [`Self::was_read`]).
    pub(crate) fn fresh(&self) -> Self {
        Self::new(
            self.repo.clone(),
            self.backup_id.clone(),
            self.progress.clone(),
        )
    }
    /// Whether artifact `path` was read to its end through this context, every check passed.
    pub(crate) fn was_read(&self, path: &str) -> bool {
        self.read.lock().is_ok_and(|l| l.contains(path))
    }
    /// The backup being read.
    pub fn backup_id(&self) -> &str {
        &self.backup_id
    }
    /// The repository.
    pub fn repository(&self) -> &Repository {
        &self.repo
    }
    /// Progress of this component.
    pub fn progress(&self) -> &Progress {
        &self.progress
    }
    /// Open an artifact for checked, decompressed reading.
    pub async fn open_artifact(&self, record: &ArtifactRecord) -> Result<ArtifactReader> {
        self.repo
            .open_artifact(record, self.progress.clone())
            .await
            .map(|r| r.log_into(self.read.clone()))
    }
    /// The generic part of verification that every driver shares: at `Quick`, every artifact
    /// is present with its size; at `Full`, every artifact is read and its hash checked. Drivers
    /// that decode their artifacts at `Full` read them through [`Self::open_artifact`] instead.
    pub async fn verify_artifacts(
        &self,
        record: &ComponentRecord,
        level: VerifyLevel,
    ) -> Result<VerifyReport> {
        let mut report = VerifyReport::default();
        for a in &record.artifacts {
            let res = match level {
                VerifyLevel::Quick => self.repo.check_artifact_present(a).await,
                VerifyLevel::Full => match self.open_artifact(a).await {
                    Ok(r) => r.finish().await,
                    Err(e) => Err(e),
                },
            };
            report.artifacts_checked += 1;
            match res {
                Ok(()) => {
                    if level == VerifyLevel::Full {
                        report.bytes_read += a.stored_size;
                    }
                }
                Err(e) if e.is_damage() => report.problems.push(e.to_string()),
                Err(e) => return Err(e),
            }
        }
        Ok(report)
    }
}

/// A restore staged by [`Component::stage`], waiting for the commit phase.
#[async_trait]
pub trait StagedRestore: Send + Sync {
    /// Put the staged data in place of the live data (e.g. swap the staging directory in).
    async fn commit(self: Box<Self>) -> Result<RestoreReport>;

    /// Remove what was staged; the live data stays as it was. Default: drop it (a staged
    /// restore removes its staging when dropped, so a cancelled run cleans up too).
    async fn discard(self: Box<Self>) {}
}

/// A store that amber-dr can back up and restore. Object safe: the runner only ever sees
/// `Arc<dyn Component>`. See `docs/writing-a-driver.md`.
#[async_trait]
pub trait Component: Send + Sync + std::fmt::Debug {
    /// The driver kind (`files`, `postgres`, ...).
    fn kind(&self) -> &'static str;

    /// The instance name from the config (`uploads`).
    fn name(&self) -> &str;

    /// What this driver supports.
    fn capabilities(&self) -> Capabilities;

    /// Reachable, authenticated, versions, size estimate. Must not change anything.
    async fn probe(&self) -> Result<Probe>;

    /// Stream the store into artifacts of `cx` and return the component's record.
    async fn snapshot(&self, cx: &SnapshotContext) -> Result<ComponentRecord>;

    /// How restoring this component relates to other components (restore together, never
    /// together). Default: no relations.
    fn restore_relations(&self) -> Vec<RestoreRelation> {
        Vec::new()
    }

    /// Check a stored snapshot. Damage goes into the report's problems (or is returned as an
    /// error for which [`Error::is_damage`] holds); other errors mean verify could not run.
    ///
    /// Default: core's one verify skeleton ([`crate::verify::verify_component`]): presence and
    /// sizes at `Quick`; at `Full` the driver's [`Self::decode`], then every artifact it did
    /// not read to its end is hashed. Drivers implement `decode`, not this.
    async fn verify(
        &self,
        cx: &VerifyContext,
        record: &ComponentRecord,
        level: VerifyLevel,
    ) -> Result<VerifyReport> {
        crate::verify::verify_component(self, cx, record, level).await
    }

    /// The driver's own checks of a full verify: decode the artifacts it understands (read
    /// through [`ReadContext::open_artifact`] to their end, so that their length and hash are
    /// checked on the way) and compare what they hold with the record. Damage goes into the
    /// report's problems. Artifacts it does not read are hashed by the skeleton. Default:
    /// nothing to decode.
    async fn decode(&self, cx: &VerifyContext, record: &ComponentRecord) -> Result<VerifyReport> {
        let _ = (cx, record);
        Ok(VerifyReport::default())
    }

    /// Replace the store's content with the snapshot, then compare the result with the record.
    /// A failed restore must leave the existing data in place wherever the store allows it.
    async fn restore(
        &self,
        cx: &RestoreContext,
        record: &ComponentRecord,
        opts: &RestoreOptions,
    ) -> Result<RestoreReport>;

    /// The prepare phase of a restore (see `runner::restore`): read every artifact of
    /// `record` end to end (hashes checked, content decoded) and stage what the store allows
    /// beside the live data, **without changing the live data**. The runner commits what is
    /// returned only when every component of the restore prepared; otherwise it is dropped
    /// (or discarded), and the live data stays as it was.
    ///
    /// Default `Ok(None)`: nothing staged; the runner runs a full [`Self::verify`] instead and
    /// calls [`Self::restore`] at commit. A driver that stages (files: the staging directory)
    /// reads its artifacts once.
    async fn stage(
        &self,
        cx: &RestoreContext,
        record: &ComponentRecord,
        opts: &RestoreOptions,
    ) -> Result<Option<Box<dyn StagedRestore>>> {
        let _ = (cx, record, opts);
        Ok(None)
    }

    /// The keys of reference end `set` (one without a `query`) in a backup of this component,
    /// read from its artifacts (e.g. the paths of the files in the archive, `bucket/key` of
    /// the objects in the index). Declared by [`Capabilities::reference_keys`]; default: not
    /// supported.
    async fn backup_keys(
        &self,
        cx: &ReadContext,
        record: &ComponentRecord,
        set: &crate::references::KeySet,
    ) -> Result<crate::references::KeyStream> {
        let _ = (cx, record, set);
        Err(Error::Other(format!(
            "the {} driver cannot list keys for references",
            self.kind()
        )))
    }

    /// The keys of reference end `set` in the live store: its own keys, or the result of the
    /// end's `query` run now. Used after a restore. Default: not supported.
    async fn live_keys(
        &self,
        set: &crate::references::KeySet,
    ) -> Result<crate::references::KeyStream> {
        let _ = set;
        Err(Error::Other(format!(
            "the {} driver cannot list live keys for references",
            self.kind()
        )))
    }

    /// Where a drill restores this component (see [`crate::drill`]): one or more restores
    /// into scratch targets derived from [`crate::drill::Scratch::token`] (every derived name
    /// must contain it), or `scratch.configured` when the config names one. Default: not
    /// drilled, saying why.
    fn scratch_plan(
        &self,
        record: &ComponentRecord,
        scratch: &crate::drill::Scratch,
    ) -> Result<crate::drill::ScratchPlan> {
        let _ = (record, scratch);
        Ok(crate::drill::ScratchPlan::NotDrilled(format!(
            "the {} driver has no scratch targets",
            self.kind()
        )))
    }

    /// Remove scratch target `target` that a drill planned with [`Self::scratch_plan`]
    /// (whether or not it was created: an absent target is not an error). Must refuse the
    /// component's configured live location.
    async fn remove_scratch(&self, target: &str) -> Result<()> {
        let _ = target;
        Err(Error::Other(format!(
            "the {} driver has no scratch targets",
            self.kind()
        )))
    }

    /// The keys of reference end `set` in this component's scratch copy (`restores`, from
    /// [`Self::scratch_plan`]), in the same form as [`Self::live_keys`] gives them for the
    /// live store (e.g. S3 keys under the original bucket names). Default: not supported.
    async fn scratch_keys(
        &self,
        set: &crate::references::KeySet,
        restores: &[crate::drill::ScratchRestore],
    ) -> Result<crate::references::KeyStream> {
        let _ = (set, restores);
        Err(Error::Other(format!(
            "the {} driver cannot list keys in a scratch copy",
            self.kind()
        )))
    }

    /// The import of the shell runbook's backup files, if this driver opts in (see
    /// [`crate::legacy::LegacyImport`]; `Some(self)` from a driver that implements it).
    /// Default: none.
    fn legacy(&self) -> Option<&dyn crate::legacy::LegacyImport> {
        None
    }
}

/// What the registry hands a driver's factory: the component's name and its config section.
#[derive(Debug, Clone)]
pub struct ComponentSpec {
    /// The component's name (`[components.NAME]`).
    pub name: String,
    /// The kind (`kind = "..."`).
    pub kind: String,
    /// The rest of the section, as JSON (the `kind` key removed).
    pub config: serde_json::Value,
    /// The directory relative paths in the config are relative to (the config file's).
    pub base_dir: PathBuf,
    /// Where the config came from, for messages (`amber-dr.toml`).
    pub source: String,
}

impl ComponentSpec {
    /// Deserialize the section into a driver's config struct (use `deny_unknown_fields`),
    /// naming the file and key on error.
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_value(self.config.clone()).map_err(|e| {
            Error::config(
                format!("{}: [components.{}]", self.source, self.name),
                e.to_string(),
            )
        })
    }

    /// Resolve a possibly relative path against [`Self::base_dir`].
    pub fn resolve_path(&self, p: impl AsRef<std::path::Path>) -> PathBuf {
        let p = p.as_ref();
        let joined = if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        };
        // Drop `.` segments so that messages show `/srv/amber/uploads`, not `/srv/amber/./uploads`.
        joined
            .components()
            .filter(|c| !matches!(c, std::path::Component::CurDir))
            .collect()
    }
}

/// A driver's factory: builds a component from its config section.
pub type Factory = fn(&ComponentSpec) -> Result<Arc<dyn Component>>;

/// The known drivers. Registration is explicit: each driver crate exports
/// `register(&mut Registry)`, and the binary calls it.
#[derive(Default, Clone)]
pub struct Registry {
    factories: BTreeMap<&'static str, Factory>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.factories.keys()).finish()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Register a driver kind.
    pub fn register(&mut self, kind: &'static str, factory: Factory) {
        self.factories.insert(kind, factory);
    }

    /// The registered kinds.
    pub fn kinds(&self) -> Vec<&'static str> {
        self.factories.keys().copied().collect()
    }

    /// Build a component; an unknown kind is an error that lists the known ones.
    pub fn build(&self, spec: &ComponentSpec) -> Result<Arc<dyn Component>> {
        let factory = self
            .factories
            .get(spec.kind.as_str())
            .ok_or_else(|| Error::UnknownKind {
                component: spec.name.clone(),
                kind: spec.kind.clone(),
                known: self.kinds().join(", "),
            })?;
        factory(spec)
    }
}

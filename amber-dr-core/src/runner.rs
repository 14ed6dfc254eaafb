//! The runner: backup, verify, restore and prune over a set of components.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Utc;
use serde::Serialize;
use tokio::task::JoinSet;

use crate::cancel::{CancellationToken, HookGuard};
use crate::component::{
    Component, ReadContext, SnapshotContext, SnapshotPurpose, VerifyLevel, VerifyReport,
};
use crate::hooks::{ConsistencyTracker, HookContext, RunHooks};
use crate::manifest::{
    BackupPurpose, BackupStatus, ComponentRecord, ComponentStatus, CutSummary, Manifest,
    FORMAT_VERSION,
};
mod drill;
mod prune;
mod restore;

pub use crate::plan::{ComponentPlan, RestorePlanOptions};
use crate::progress::{NoProgress, Progress, ProgressSink};
use crate::references::{ReferenceCheck, ReferenceSpec};
use crate::repository::{host_name, Repository};
use crate::retention::RetentionPolicy;
pub use crate::selection::Selection;
use crate::{Error, Result};
pub use drill::{CleanupOutcome, DrillOptions};
pub use prune::PruneOutcome;
pub use restore::{CommitState, ComponentRestore, RestoreOutcome};

/// What a component is restored from.
enum Source {
    /// A snapshot of an amber-dr backup.
    Record(Box<ComponentRecord>),
    /// A file of a runbook backup directory.
    Legacy(std::path::PathBuf),
}

/// Options of a backup.
#[derive(Debug, Clone, Default)]
pub struct BackupOptions {
    /// Components to include.
    pub selection: Selection,
    /// Tags to record.
    pub tags: Vec<String>,
}

/// The result of `verify` for a backup.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyOutcome {
    /// The backup verified.
    pub id: String,
    /// Level used.
    pub level: VerifyLevel,
    /// Per component.
    pub components: BTreeMap<String, VerifyReport>,
}

impl VerifyOutcome {
    /// True when no component has problems.
    pub fn is_ok(&self) -> bool {
        self.components.values().all(VerifyReport::is_ok)
    }
}

/// The result of [`Runner::verify_references`].
#[derive(Debug, Clone, Serialize)]
pub struct ReferencesOutcome {
    /// The backup checked.
    pub id: String,
    /// One check per reference.
    pub checks: Vec<ReferenceCheck>,
}

impl ReferencesOutcome {
    /// True when every reference was checked and resolves.
    pub fn resolves(&self) -> bool {
        self.checks.iter().all(ReferenceCheck::resolves)
    }
}

/// Runs commands over the configured components.
#[derive(Clone)]
pub struct Runner {
    repo: Repository,
    components: Vec<Arc<dyn Component>>,
    sink: Arc<dyn ProgressSink>,
    parallelism: usize,
    hooks: Option<Arc<dyn RunHooks>>,
    cancel: Option<CancellationToken>,
    runbook_files: Vec<&'static str>,
    rollback: bool,
    references: Arc<Vec<ReferenceSpec>>,
    check_references_after_restore: bool,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("repo", &self.repo)
            .field("components", &self.components)
            .field("parallelism", &self.parallelism)
            .field("hooks", &self.hooks)
            .field("cancel", &self.cancel)
            .finish()
    }
}

impl Runner {
    /// A runner over `components` (in config order) and `repo`.
    pub fn new(repo: Repository, components: Vec<Arc<dyn Component>>) -> Self {
        Self {
            repo,
            components,
            sink: Arc::new(NoProgress),
            parallelism: 4,
            hooks: None,
            cancel: None,
            runbook_files: Vec::new(),
            rollback: true,
            references: Arc::default(),
            check_references_after_restore: true,
        }
    }

    /// Check `references` (`[[references]]`, see [`crate::references`]) at every backup (and
    /// order the snapshots by them), with [`Self::verify_references`], and after every
    /// restore. Refused (a configuration error) when an end names no configured component, its
    /// driver cannot produce its keys, or the references make a cycle.
    pub fn with_references(mut self, references: Vec<ReferenceSpec>) -> Result<Self> {
        crate::references::validate(&references, &self.components)?;
        self.references = Arc::new(references);
        Ok(self)
    }

    /// The declared references.
    pub fn references(&self) -> &[ReferenceSpec] {
        &self.references
    }

    /// Whether a restore checks the references touching the restored components against the
    /// live stores once it is done (default true; the CLI's `--no-check-references`).
    pub fn with_reference_check_after_restore(mut self, check: bool) -> Self {
        self.check_references_after_restore = check;
        self
    }

    /// The files of a complete shell-runbook backup directory, named by the drivers that
    /// restore them (the CLI: `postgres.sql`, `neo4j.cypher`, `minio_data.tar.gz`,
    /// `uploads.tar.gz`). [`Self::restore_legacy`] without a selection refuses a directory in
    /// which one of them is missing or unclaimed. Default: none (only the files the
    /// configured drivers claim).
    pub fn with_runbook_files(mut self, files: Vec<&'static str>) -> Self {
        self.runbook_files = files;
        self
    }

    /// See [`Self::with_runbook_files`].
    pub fn runbook_files(&self) -> &[&'static str] {
        &self.runbook_files
    }

    /// Abandon a run when `token` is cancelled: its work is dropped, the hooks undo their
    /// changes, the repository lock is released, and it returns [`Error::Interrupted`] (see
    /// [`crate::cancel`]). A dropped run future cleans up the same way, in the background.
    pub fn with_cancellation(mut self, token: CancellationToken) -> Self {
        self.cancel = Some(token);
        self
    }

    /// Whether a restore whose commit fails (or is interrupted) restores the components it
    /// already committed from its safety backup (default true; see
    /// [`CommitState::RolledBack`]). `false` leaves them as they are.
    pub fn with_rollback(mut self, rollback: bool) -> Self {
        self.rollback = rollback;
        self
    }

    /// Call `hooks` around backups and restores (see [`crate::hooks`]).
    pub fn with_hooks(mut self, hooks: Arc<dyn RunHooks>) -> Self {
        self.hooks = Some(hooks);
        self
    }

    /// The hooks given with [`Self::with_hooks`].
    pub fn hooks(&self) -> Option<&Arc<dyn RunHooks>> {
        self.hooks.as_ref()
    }

    /// Send progress to `sink`.
    pub fn with_progress(mut self, sink: Arc<dyn ProgressSink>) -> Self {
        self.sink = sink;
        self
    }

    /// How many components run at once (default 4).
    pub fn with_parallelism(mut self, n: usize) -> Self {
        self.parallelism = n.max(1);
        self
    }

    /// The repository.
    pub fn repository(&self) -> &Repository {
        &self.repo
    }

    /// The configured components.
    pub fn components(&self) -> &[Arc<dyn Component>] {
        &self.components
    }

    fn component(&self, name: &str) -> Option<&Arc<dyn Component>> {
        self.components.iter().find(|c| c.name() == name)
    }

    fn select(&self, selection: &Selection) -> Result<Vec<Arc<dyn Component>>> {
        let names = selection.apply(self.components.iter().map(|c| c.name()))?;
        Ok(names
            .iter()
            .filter_map(|n| self.component(n).cloned())
            .collect())
    }

    /// Take a backup of the selected components. Returns the manifest written; its status says
    /// whether every component succeeded.
    pub async fn backup(&self, opts: &BackupOptions) -> Result<Manifest> {
        let selected = self.select(&opts.selection)?;
        let lock = self.repo.lock("backup").await?;
        self.guarded(
            Some(lock),
            self.backup_locked(&selected, &opts.tags, BackupPurpose::Backup),
        )
        .await
    }

    /// Run `fut` under this runner's cancellation token, holding `lock` (see [`crate::cancel`]).
    async fn guarded<T>(
        &self,
        lock: Option<crate::repository::RepoLock>,
        fut: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        crate::cancel::run(self.cancel.as_ref(), self.hooks.as_ref(), lock, None, fut).await
    }

    async fn backup_locked(
        &self,
        selected: &[Arc<dyn Component>],
        tags: &[String],
        purpose: BackupPurpose,
    ) -> Result<Manifest> {
        let names: Vec<String> = selected.iter().map(|c| c.name().to_string()).collect();
        let hook_cx = HookContext::backup(purpose, names.clone());
        let guard = HookGuard::new(self.hooks.clone());
        let res = match &self.hooks {
            Some(h) => match h.before_backup(&hook_cx).await {
                Ok(()) => self.backup_hooked(selected, tags, purpose, &hook_cx).await,
                Err(e) => Err(e),
            },
            None => self.backup_hooked(selected, tags, purpose, &hook_cx).await,
        };
        // The buffers kept for the drivers' blobs are freed once the backup is over (this one,
        // or a restore's safety backup).
        crate::buffers::release();
        let Some(h) = &self.hooks else { return res };
        let after = h.after_backup(&hook_cx).await;
        guard.disarm();
        match (after, res) {
            (Ok(()), res) => res,
            (Err(e), Ok(m)) => Err(Error::Other(format!(
                "backup {} was written (status {:?}), but the step after it failed: {e}",
                m.id, m.status
            ))),
            (Err(e), Err(first)) => Err(Error::Other(format!(
                "{first}; and the step after the backup failed too: {e}"
            ))),
        }
    }

    /// The backup proper, between the `before_backup` and `after_backup` hooks.
    async fn backup_hooked(
        &self,
        selected: &[Arc<dyn Component>],
        tags: &[String],
        purpose: BackupPurpose,
        hook_cx: &HookContext,
    ) -> Result<Manifest> {
        let started_at = Utc::now();
        let id = self.repo.new_backup_id(started_at).await?;
        tracing::info!(backup = %id, components = selected.len(), "backup started");
        let snapshot_purpose = match purpose {
            BackupPurpose::Backup => SnapshotPurpose::Backup,
            BackupPurpose::Safety => SnapshotPurpose::Safety,
        };
        let tracker = ConsistencyTracker::new(hook_cx.components.iter().cloned());
        let mut consistent = false;
        let mut records = BTreeMap::new();
        let mut set: JoinSet<ComponentRecord> = JoinSet::new();
        // References: referrers first, and a referred component starts only once its
        // referrers are cut (safety backups have no references).
        let specs: &[ReferenceSpec] = match purpose {
            BackupPurpose::Backup => &self.references,
            BackupPurpose::Safety => &[],
        };
        let (ordered, waits) = cut_order(selected, specs);
        let mut queue = ordered.into_iter();
        loop {
            while set.len() < self.parallelism {
                let Some(c) = queue.next() else { break };
                let cx = SnapshotContext::new(
                    self.repo.clone(),
                    id.clone(),
                    c.name().to_string(),
                    Progress::new(c.name(), self.sink.clone()),
                    snapshot_purpose,
                )
                .with_consistency(tracker.clone())
                .with_key_queries(crate::references::queries_of(specs, c.name()));
                let wait = waits.get(c.name()).cloned().unwrap_or_default();
                let tracker = tracker.clone();
                set.spawn(async move {
                    if !wait.is_empty() {
                        cx.progress().set_phase("waiting for referrers' cuts");
                        tracker.wait_for(&wait).await;
                    }
                    snapshot_one(c, cx).await
                });
            }
            let joined = tokio::select! {
                j = set.join_next() => j,
                _ = tracker.all(), if !consistent => {
                    consistent = true;
                    tracing::info!(backup = %id, "every component has reached its consistent point");
                    if let Some(h) = &self.hooks {
                        if let Err(e) = h.all_consistent(hook_cx).await {
                            tracing::error!(backup = %id, error = %e, "the hook at the consistent point failed");
                        }
                    }
                    continue;
                }
            };
            match joined {
                Some(Ok(rec)) => {
                    records.insert(rec.name.clone(), rec);
                }
                Some(Err(e)) => return Err(Error::Other(format!("a snapshot task died: {e}"))),
                None => break,
            }
        }
        if !consistent {
            // Every snapshot has returned, so every component is marked: the hook still runs,
            // in order, before `after_backup`.
            tracker.all().await;
            if let Some(h) = &self.hooks {
                if let Err(e) = h.all_consistent(hook_cx).await {
                    tracing::error!(backup = %id, error = %e, "the hook at the consistent point failed");
                }
            }
        }
        let references = if specs.is_empty() {
            Vec::new()
        } else {
            crate::references::check_backup(specs, &self.repo, &id, &records, &self.components)
                .await
        };
        let refused = references
            .iter()
            .any(|r| r.spec.fail_on_dangling && !r.resolves());
        let status = if records.values().all(ComponentRecord::is_ok) && !refused {
            BackupStatus::Complete
        } else {
            BackupStatus::Failed
        };
        let cut = CutSummary::of(
            records.values(),
            self.hooks.as_ref().is_some_and(|h| h.quiesces(hook_cx)),
        );
        let manifest = Manifest {
            format_version: FORMAT_VERSION,
            id,
            status,
            purpose,
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            host: host_name(),
            started_at,
            finished_at: Utc::now(),
            tags: tags.to_vec(),
            components: records,
            sealed: false,
            locked_until: self.repo.object_lock_until(),
            cut,
            references,
        };
        if let Err(e) = self.repo.write_manifest(&manifest).await {
            let message = format!(
                "its manifest could not be written, so it is incomplete (`prune` deletes it): {e}"
            );
            return Err(Error::BackupUnfinished {
                id: manifest.id,
                message,
            });
        }
        tracing::info!(backup = %manifest.id, status = ?manifest.status, "backup finished");
        Ok(manifest)
    }

    /// Re-check a backup's references (`verify --references`) from its artifacts alone: those
    /// recorded when it was taken, or, for a backup taken without any, the declared ones.
    pub async fn verify_references(&self, spec: &str) -> Result<ReferencesOutcome> {
        self.guarded(None, async {
            let id = self.repo.resolve(spec).await?;
            let manifest = self.repo.read_manifest(&id).await?;
            if manifest.sealed {
                let what = format!("backup {id}");
                return Err(self.repo.keys().await?.need_private_key(&what));
            }
            let checks = if manifest.references.is_empty() {
                crate::references::check_backup(
                    &self.references,
                    &self.repo,
                    &id,
                    &manifest.components,
                    &self.components,
                )
                .await
            } else {
                crate::references::recheck_backup(
                    &manifest.references,
                    &self.repo,
                    &id,
                    &manifest.components,
                    &self.components,
                )
                .await
            };
            Ok(ReferencesOutcome { id, checks })
        })
        .await
    }

    /// Verify a backup (`id` or `latest`) at `level`.
    pub async fn verify(
        &self,
        spec: &str,
        selection: &Selection,
        level: VerifyLevel,
    ) -> Result<VerifyOutcome> {
        self.guarded(None, self.verify_inner(spec, selection, level))
            .await
    }

    async fn verify_inner(
        &self,
        spec: &str,
        selection: &Selection,
        level: VerifyLevel,
    ) -> Result<VerifyOutcome> {
        let id = self.repo.resolve(spec).await?;
        let manifest = self.repo.read_manifest(&id).await?;
        if manifest.sealed && level == VerifyLevel::Full {
            let what = format!("backup {id}");
            return Err(self.repo.keys().await?.need_private_key(&what));
        }
        let names = selection.apply(manifest.components.keys().map(String::as_str))?;
        let mut components = BTreeMap::new();
        let mut set: JoinSet<(String, Result<VerifyReport>)> = JoinSet::new();
        let mut queue = names.into_iter();
        loop {
            while set.len() < self.parallelism {
                let Some(name) = queue.next() else { break };
                let Some(rec) = manifest.components.get(&name).cloned() else {
                    continue;
                };
                let cx = ReadContext::new(
                    self.repo.clone(),
                    id.clone(),
                    Progress::new(&name, self.sink.clone()),
                );
                // A host without the private key checks the artifacts' presence and sizes.
                let driver = self
                    .component(&name)
                    .filter(|c| c.kind() == rec.kind && !manifest.sealed)
                    .cloned();
                let sealed = manifest.sealed;
                set.spawn(async move {
                    if !rec.is_ok() {
                        let mut r = VerifyReport::default();
                        r.problems.push(format!(
                            "the snapshot of `{name}` failed when the backup was taken: {}",
                            rec.error.as_deref().unwrap_or("no error recorded")
                        ));
                        return (name, Ok(r));
                    }
                    cx.progress().set_phase(match level {
                        VerifyLevel::Quick => "checking presence",
                        VerifyLevel::Full => "reading",
                    });
                    let res = match driver {
                        Some(d) => d.verify(&cx, &rec, level).await,
                        None => {
                            // No driver configured under this name: hashes only.
                            let mut r = cx.verify_artifacts(&rec, level).await;
                            if let Ok(r) = &mut r {
                                r.notes.push(if sealed {
                                    "encrypted backup, no private key on this host: checked the artifacts' presence and sizes only (verify --full needs the key)".to_string()
                                } else {
                                    format!(
                                        "no `{}` component named `{name}` in the config: checked artifacts only",
                                        rec.kind
                                    )
                                });
                            }
                            r
                        }
                    };
                    (name, res)
                });
            }
            match set.join_next().await {
                Some(Ok((name, Ok(report)))) => {
                    components.insert(name, report);
                }
                Some(Ok((name, Err(e)))) if e.is_damage() => {
                    let mut r = VerifyReport::default();
                    r.problems.push(e.to_string());
                    components.insert(name, r);
                }
                Some(Ok((_, Err(e)))) => return Err(e),
                Some(Err(e)) => return Err(Error::Other(format!("a verify task died: {e}"))),
                None => break,
            }
        }
        if !manifest.is_complete() {
            components
                .entry("(backup)".to_string())
                .or_default()
                .problems
                .push(format!(
                    "backup {id} is not complete (status {:?})",
                    manifest.status
                ));
        }
        Ok(VerifyOutcome {
            id,
            level,
            components,
        })
    }
}

async fn snapshot_one(c: Arc<dyn Component>, cx: SnapshotContext) -> ComponentRecord {
    let started = Utc::now();
    let res = c.snapshot(&cx).await;
    cx.mark_consistent();
    let mut rec = match res {
        Ok(mut rec) => {
            rec.status = Some(ComponentStatus::Ok);
            rec
        }
        Err(e) => {
            tracing::error!(component = c.name(), error = %e, "snapshot failed");
            let mut rec = ComponentRecord::new(c.kind(), c.name());
            rec.status = Some(ComponentStatus::Failed);
            rec.error = Some(e.to_string());
            rec
        }
    };
    rec.kind = c.kind().to_string();
    rec.name = c.name().to_string();
    if let Some(at) = cx.cut_at() {
        rec.consistency.insert(
            ComponentRecord::CUT_AT.into(),
            at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                .into(),
        );
    }
    rec.started_at = Some(started);
    rec.finished_at = Some(Utc::now());
    rec
}

/// For each referred component, the referrers whose cuts its snapshot waits for.
type Waits = BTreeMap<String, std::collections::BTreeSet<String>>;

/// `selected` with every referrer before what it refers to (otherwise in the given order), and
/// for each referred component the selected referrers it waits for. [`crate::references`]
/// refused cycles when the references were given.
fn cut_order(
    selected: &[Arc<dyn Component>],
    specs: &[ReferenceSpec],
) -> (Vec<Arc<dyn Component>>, Waits) {
    let names: std::collections::BTreeSet<&str> = selected.iter().map(|c| c.name()).collect();
    let waits: Waits = crate::references::referrers(specs)
        .into_iter()
        .filter(|(to, _)| names.contains(to.as_str()))
        .map(|(to, from)| {
            let from = from
                .into_iter()
                .filter(|f| names.contains(f.as_str()))
                .collect::<std::collections::BTreeSet<_>>();
            (to, from)
        })
        .filter(|(_, from)| !from.is_empty())
        .collect();
    let mut left: Vec<Arc<dyn Component>> = selected.to_vec();
    let mut ordered = Vec::with_capacity(left.len());
    while !left.is_empty() {
        let placed: std::collections::BTreeSet<String> = ordered
            .iter()
            .map(|c: &Arc<dyn Component>| c.name().to_string())
            .collect();
        let next = left
            .iter()
            .position(|c| {
                waits
                    .get(c.name())
                    .is_none_or(|w| w.iter().all(|f| placed.contains(f)))
            })
            // A cycle (refused earlier): keep the given order.
            .unwrap_or(0);
        ordered.push(left.remove(next));
    }
    (ordered, waits)
}

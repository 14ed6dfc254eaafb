//! Restores in two phases, so that a restore of several components brings all of them back or
//! changes none of them:
//!
//! 1. **prepare** ([`crate::precheck::prepare`]): every artifact of every selected component is
//!    read end to end and decoded by its driver, components concurrently; a driver that can
//!    stage does so from that read ([`Component::stage`]: files builds its staging directory),
//!    the others are fully verified. No live data changes, no safety backup is taken, no hook
//!    runs. Any damage refuses the whole restore, naming the component and the artifact, and
//!    what was staged is removed.
//! 2. **commit**: the hooks run (e.g. containers stopped), the safety backup of the selected
//!    components' current state is taken, then the drivers restore (swap in what was staged,
//!    or write, delete extras), up to `parallelism` at once. After the first failure no other component starts
//!    (they stay [`CommitState::Untouched`]); the components already committed are then
//!    restored from the safety backup ([`CommitState::RolledBack`]) unless
//!    [`Runner::with_rollback`] turned it off or there is no safety backup.
//!
//! A cancellation during prepare drops the run (nothing changed). Once the commit has begun
//! it stops the commit instead (see [`crate::cancel::CommitGate`]): the components in flight
//! finish, none other starts, the committed ones are rolled back, and the outcome says
//! [`RestoreOutcome::interrupted`].

use std::sync::Arc;

use serde::Serialize;
use tokio::task::JoinSet;

use super::{Runner, Source};
use crate::cancel::CommitGate;
use crate::component::{Component, ReadContext, RestoreReport};
use crate::hooks::HookContext;
use crate::legacy::LegacyPlan;
use crate::manifest::BackupPurpose;
use crate::plan::{check_relations, legacy_import, RestorePlanOptions};
use crate::precheck::Staged;
use crate::progress::Progress;
use crate::{Error, Result};

/// Where a component stands at the end of a restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CommitState {
    /// A dry run: the driver described what it would do; nothing changed.
    Planned,
    /// Restored from the backup.
    Committed,
    /// Its restore failed (its error says how far it got).
    Failed,
    /// It was committed, then restored from the safety backup because another component's
    /// commit failed or the restore was interrupted: it is as it was before the restore. Also
    /// a component whose own restore failed after writing in place (a driver without
    /// staging): its `error` says why it failed.
    RolledBack,
    /// It was committed and another commit failed, but it was not rolled back (see
    /// [`ComponentRestore::rollback_error`]: `--no-rollback`, no safety backup, restored into
    /// another target, or the rollback itself failed).
    NotRolledBack,
    /// Never started: an earlier commit failed or the restore was interrupted first.
    Untouched,
}

impl CommitState {
    /// How the CLI names the state.
    pub fn label(self) -> &'static str {
        match self {
            CommitState::Planned => "planned",
            CommitState::Committed => "committed",
            CommitState::Failed => "FAILED",
            CommitState::RolledBack => "rolled back",
            CommitState::NotRolledBack => "committed, NOT rolled back",
            CommitState::Untouched => "untouched",
        }
    }
}

/// The result of one component's restore.
#[derive(Debug, Clone, Serialize)]
pub struct ComponentRestore {
    /// The component.
    pub component: String,
    /// Its kind.
    pub kind: String,
    /// Where it stands.
    pub state: CommitState,
    /// The report of its restore, if that succeeded.
    pub report: Option<RestoreReport>,
    /// The error, if its restore failed.
    pub error: Option<String>,
    /// Why a committed component was not rolled back, or why its rollback failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback_error: Option<String>,
    /// The error is a refusal of the plan (a bad target or option: exit code 2).
    #[serde(skip)]
    pub usage_error: bool,
}

impl ComponentRestore {
    fn untouched(c: &Arc<dyn Component>) -> Self {
        Self {
            component: c.name().to_string(),
            kind: c.kind().to_string(),
            state: CommitState::Untouched,
            report: None,
            error: None,
            rollback_error: None,
            usage_error: false,
        }
    }
}

/// The result of `restore`.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreOutcome {
    /// The backup restored.
    pub id: String,
    /// Dry run: nothing changed.
    pub dry_run: bool,
    /// The safety backup taken first, if any.
    pub safety_backup: Option<String>,
    /// Per component, in selection order.
    pub components: Vec<ComponentRestore>,
    /// Declared restore relations this restore broke because it was forced.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forced: Vec<String>,
    /// Errors of the run hooks after the restore (e.g. a container that did not start again).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hook_errors: Vec<String>,
    /// The restore was cancelled during its commit phase (see [`crate::cancel::CommitGate`]).
    pub interrupted: bool,
    /// The declared references touching the restored components, checked against the live
    /// stores after the restore (see [`Runner::with_reference_check_after_restore`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<crate::references::ReferenceCheck>,
}

impl RestoreOutcome {
    /// True when every component restored (or, in a dry run, planned) and the hooks after it
    /// succeeded.
    pub fn is_ok(&self) -> bool {
        !self.interrupted
            && self.hook_errors.is_empty()
            && self
                .components
                .iter()
                .all(|c| matches!(c.state, CommitState::Committed | CommitState::Planned))
    }

    /// True when every component is as it was before the restore: none committed (and left
    /// so), none failed.
    pub fn unchanged(&self) -> bool {
        self.components
            .iter()
            .all(|c| matches!(c.state, CommitState::RolledBack | CommitState::Untouched))
    }

    /// The components a retry has to restore: all of them when the failed restore left the
    /// stores as they were; otherwise those not committed.
    pub fn to_retry(&self) -> Vec<&str> {
        let restored = |s: CommitState| {
            matches!(
                s,
                CommitState::Committed | CommitState::NotRolledBack | CommitState::Planned
            )
        };
        let all_back = !self.components.iter().any(|c| restored(c.state));
        self.components
            .iter()
            .filter(|c| all_back || !restored(c.state))
            .map(|c| c.component.as_str())
            .collect()
    }
}

impl Runner {
    /// Restore a backup (`id` or `latest`) in two phases (see the module doc of
    /// `runner::restore`): prepare every selected component (read and decode every artifact;
    /// nothing changes), then take a safety backup of their current state (unless disabled or
    /// a dry run) and commit them; a failed commit rolls back the committed ones.
    pub async fn restore(&self, spec: &str, plan: &RestorePlanOptions) -> Result<RestoreOutcome> {
        let id = self.repo.resolve(spec).await?;
        let manifest = self.repo.read_manifest(&id).await?;
        if manifest.sealed {
            let what = format!("backup {id}");
            return Err(self.repo.keys().await?.need_private_key(&what));
        }
        let names = plan
            .selection
            .apply(manifest.components.keys().map(String::as_str))?;
        let mut targets = Vec::new();
        for name in &names {
            let rec = &manifest.components[name];
            if !rec.is_ok() {
                return Err(Error::Other(format!(
                    "backup {id}: the snapshot of `{name}` failed when it was taken, so it cannot be restored; choose another backup or leave it out with --skip {name}"
                )));
            }
            let c = self.component(name).ok_or_else(|| {
                Error::config(
                    format!("components.{name}"),
                    format!("backup {id} has component `{name}` ({}), but the config has no component of that name to restore into; add it or leave it out with --skip {name}", rec.kind),
                )
            })?;
            if c.kind() != rec.kind {
                return Err(Error::config(
                    format!("components.{name}"),
                    format!(
                        "is of kind `{}` in the config but `{}` in backup {id}",
                        c.kind(),
                        rec.kind
                    ),
                ));
            }
            targets.push((c.clone(), Source::Record(Box::new(rec.clone()))));
        }
        plan.check(&targets.iter().map(|(c, _)| c.clone()).collect::<Vec<_>>())?;
        if !manifest.is_complete() {
            tracing::warn!(backup = %id, "backup is not complete; restoring only components whose snapshot succeeded");
        }
        let forced = check_relations(&targets, &names, plan.options.force)?;
        let preparations: Vec<crate::precheck::Preparation> = targets
            .iter()
            .filter_map(|(c, s)| match s {
                Source::Record(r) => Some((c.clone(), (**r).clone(), plan.options_for(c.name()))),
                Source::Legacy(_) => None,
            })
            .collect();
        let gate = CommitGate::default();
        let work = async {
            // Phase 1: damage is found before the hooks, the safety backup or any change.
            let staged = if plan.options.dry_run {
                Staged::new()
            } else {
                crate::precheck::prepare(
                    &self.repo,
                    &id,
                    &preparations,
                    self.sink.clone(),
                    self.parallelism,
                )
                .await?
            };
            self.restore_locked(&id, targets, staged, plan, &gate).await
        };
        let result = self.restore_lock(plan, &gate, work).await;
        let mut outcome = result.map(|mut r| {
            r.forced = forced;
            r
        })?;
        self.check_references_after(&mut outcome, plan).await;
        Ok(outcome)
    }

    /// After a restore that committed every component: the references touching the restored
    /// components (those restored in place) checked against the live stores.
    async fn check_references_after(
        &self,
        outcome: &mut RestoreOutcome,
        plan: &RestorePlanOptions,
    ) {
        if self.references.is_empty()
            || !self.check_references_after_restore
            || outcome.dry_run
            || !outcome.is_ok()
        {
            return;
        }
        let touched: Vec<String> = outcome
            .components
            .iter()
            .filter(|c| plan.options_for(&c.component).target.is_none())
            .map(|c| c.component.clone())
            .collect();
        outcome.references =
            crate::references::check_live(&self.references, &touched, &self.components).await;
    }

    /// Restore a runbook backup directory (`postgres.sql`, `uploads.tar.gz`, ...) through the
    /// drivers that claim its files: plan (see [`LegacyPlan::select`]), each driver's check of
    /// its file, safety backup of the selected components' current state (unless disabled or
    /// a dry run), then the commit, rolled back like [`Self::restore`]'s.
    pub async fn restore_legacy(
        &self,
        dir: &std::path::Path,
        plan: &RestorePlanOptions,
    ) -> Result<RestoreOutcome> {
        let legacy = LegacyPlan::inspect(dir, &self.components, &self.runbook_files)?;
        let mut targets = Vec::new();
        for part in legacy.select(&plan.selection)? {
            let name = part.component.as_deref().unwrap_or_default();
            let c = self
                .component(name)
                .ok_or_else(|| Error::Other(format!("component `{name}` vanished")))?;
            targets.push((c.clone(), Source::Legacy(part.path.clone())));
        }
        plan.check(&targets.iter().map(|(c, _)| c.clone()).collect::<Vec<_>>())?;
        let names: Vec<String> = targets.iter().map(|(c, _)| c.name().to_string()).collect();
        let forced = check_relations(&targets, &names, plan.options.force)?;
        let gate = CommitGate::default();
        let id = dir.display().to_string();
        let work = self.restore_locked(&id, targets, Staged::new(), plan, &gate);
        let result = self.restore_lock(plan, &gate, work).await;
        result.map(|mut r| {
            r.forced = forced;
            r
        })
    }

    /// Run a restore's `work` under the repository lock (none for a dry run) and this
    /// runner's cancellation, stopped rather than dropped once `gate`'s commit has begun.
    async fn restore_lock(
        &self,
        plan: &RestorePlanOptions,
        gate: &CommitGate,
        work: impl std::future::Future<Output = Result<RestoreOutcome>>,
    ) -> Result<RestoreOutcome> {
        let lock = if plan.options.dry_run {
            None
        } else {
            Some(self.repo.lock("restore").await?)
        };
        crate::cancel::run(
            self.cancel.as_ref(),
            self.hooks.as_ref(),
            lock,
            Some(gate),
            work,
        )
        .await
    }

    async fn restore_locked(
        &self,
        id: &str,
        targets: Vec<(Arc<dyn Component>, Source)>,
        staged: Staged,
        plan: &RestorePlanOptions,
        gate: &CommitGate,
    ) -> Result<RestoreOutcome> {
        let hooks = self.hooks.as_ref().filter(|_| !plan.options.dry_run);
        let Some(h) = hooks else {
            return self.restore_hooked(id, targets, staged, plan, gate).await;
        };
        let names = targets.iter().map(|(c, _)| c.name().to_string()).collect();
        let hook_cx = if targets.iter().any(|(_, s)| matches!(s, Source::Legacy(_))) {
            HookContext::runbook_restore(id, names)
        } else {
            HookContext::restore(id, names)
        };
        let guard = crate::cancel::HookGuard::new(Some(h.clone()));
        let res = match h.before_restore(&hook_cx).await {
            Ok(()) => self.restore_hooked(id, targets, staged, plan, gate).await,
            Err(e) => Err(e),
        };
        let after = h.after_restore(&hook_cx).await;
        guard.disarm();
        match (after, res) {
            (Ok(()), res) => res,
            (Err(e), Ok(mut outcome)) => {
                outcome.hook_errors.push(e.to_string());
                Ok(outcome)
            }
            (Err(e), Err(first)) => Err(Error::Other(format!(
                "{first}; and the step after the restore failed too: {e}"
            ))),
        }
    }

    /// Between the `before_restore` and `after_restore` hooks: the drivers' checks of runbook
    /// files, the safety backup, the commit and the rollback.
    async fn restore_hooked(
        &self,
        id: &str,
        targets: Vec<(Arc<dyn Component>, Source)>,
        staged: Staged,
        plan: &RestorePlanOptions,
        gate: &CommitGate,
    ) -> Result<RestoreOutcome> {
        if !plan.options.dry_run {
            // The hooks have prepared the surroundings: a driver refuses now, before the
            // safety backup and before any component is touched.
            for (c, src) in &targets {
                if let Source::Legacy(file) = src {
                    legacy_import(c)?
                        .check_restore_legacy(file, &plan.options_for(c.name()))
                        .await?;
                }
            }
        }
        let mut safety_backup = None;
        if plan.safety_backup && !plan.options.dry_run {
            let comps: Vec<Arc<dyn Component>> = targets.iter().map(|(c, _)| c.clone()).collect();
            let m = self
                .backup_locked(
                    &comps,
                    &[format!("safety backup before restoring {id}")],
                    BackupPurpose::Safety,
                )
                .await?;
            if !m.is_complete() {
                let errs: Vec<String> = m
                    .components
                    .values()
                    .filter_map(|r| r.error.as_ref().map(|e| format!("{}: {e}", r.name)))
                    .collect();
                return Err(Error::Other(format!(
                    "the safety backup {} of the current state failed, so nothing was restored ({}); fix it, or pass --no-safety-backup to restore without one",
                    m.id,
                    errs.join("; ")
                )));
            }
            safety_backup = Some(m.id);
        }
        if !plan.options.dry_run {
            gate.begin_commit();
        }
        let mut results = self.commit(id, targets, staged, plan, gate).await?;
        let interrupted = !plan.options.dry_run && gate.stop_requested();
        let failed = results.iter().any(|r| r.state == CommitState::Failed);
        if failed || interrupted {
            self.roll_back(&mut results, safety_backup.as_deref(), plan)
                .await;
        }
        Ok(RestoreOutcome {
            id: id.to_string(),
            dry_run: plan.options.dry_run,
            safety_backup,
            components: results,
            forced: Vec::new(),
            hook_errors: Vec::new(),
            interrupted,
            references: Vec::new(),
        })
    }

    /// Phase 2: the drivers restore, up to `parallelism` at once, in selection order; after a
    /// failure (or a stop request) no other component starts.
    async fn commit(
        &self,
        id: &str,
        targets: Vec<(Arc<dyn Component>, Source)>,
        mut staged: Staged,
        plan: &RestorePlanOptions,
        gate: &CommitGate,
    ) -> Result<Vec<ComponentRestore>> {
        let dry_run = plan.options.dry_run;
        let order: Vec<String> = targets.iter().map(|(c, _)| c.name().to_string()).collect();
        let mut set: JoinSet<ComponentRestore> = JoinSet::new();
        let mut results = Vec::new();
        let mut failed = false;
        let mut queue = targets.into_iter();
        loop {
            while set.len() < self.parallelism && !(failed || gate.stop_requested()) {
                let Some((c, src)) = queue.next() else { break };
                let cx = ReadContext::new(
                    self.repo.clone(),
                    id.to_string(),
                    Progress::new(c.name(), self.sink.clone()),
                );
                let opts = plan.options_for(c.name());
                let stage = staged.remove(c.name());
                set.spawn(async move {
                    let res = match (&src, stage) {
                        (_, Some(stage)) => {
                            cx.progress()
                                .set_phase("committing (swapping in what was staged)");
                            stage.commit().await
                        }
                        (Source::Record(rec), None) => c.restore(&cx, rec, &opts).await,
                        (Source::Legacy(file), None) => match legacy_import(&c) {
                            Ok(l) => l.restore_legacy(&cx, file, &opts).await,
                            Err(e) => Err(e),
                        },
                    };
                    let mut r = ComponentRestore::untouched(&c);
                    match res {
                        Ok(report) => {
                            r.state = if dry_run {
                                CommitState::Planned
                            } else {
                                CommitState::Committed
                            };
                            r.report = Some(report);
                        }
                        Err(e) => {
                            r.state = CommitState::Failed;
                            r.usage_error = e.is_usage();
                            r.error = Some(e.to_string());
                        }
                    }
                    r
                });
            }
            match set.join_next().await {
                Some(Ok(r)) => {
                    // A dry run describes every component, whatever the others say.
                    failed |= r.state == CommitState::Failed && !dry_run;
                    results.push(r);
                }
                Some(Err(e)) => return Err(Error::Other(format!("a restore task died: {e}"))),
                None => break,
            }
        }
        results.extend(queue.map(|(c, _)| ComponentRestore::untouched(&c)));
        // What was staged for the components that never started.
        crate::precheck::discard(staged).await;
        results.sort_by_key(|r| order.iter().position(|n| *n == r.component));
        Ok(results)
    }

    /// After a failed or interrupted commit: restore every committed component from the safety
    /// backup (one at a time), unless rollback is off or impossible; each one's state says
    /// what happened.
    async fn roll_back(
        &self,
        results: &mut [ComponentRestore],
        safety: Option<&str>,
        plan: &RestorePlanOptions,
    ) {
        // A component whose restore failed after writing in place (a driver without staging)
        // may be half restored: it is rolled back too. A staged one failed before or at its
        // swap, and its live data is as it was.
        let in_place = |name: &str| {
            self.component(name)
                .is_some_and(|c| !c.capabilities().staged_restore)
        };
        let to_roll_back = results.iter_mut().filter(|r| {
            r.state == CommitState::Committed
                || (r.state == CommitState::Failed && !r.usage_error && in_place(&r.component))
        });
        let manifest = match safety {
            Some(id) if self.rollback => Some(self.repo.read_manifest(id).await),
            _ => None,
        };
        for r in to_roll_back {
            if r.state == CommitState::Committed {
                r.state = CommitState::NotRolledBack;
            }
            let why = match (&manifest, safety) {
                (_, None) => {
                    r.rollback_error =
                        Some("no safety backup was taken (--no-safety-backup)".into());
                    continue;
                }
                (None, Some(_)) => {
                    r.rollback_error = Some("rollback turned off (--no-rollback)".into());
                    continue;
                }
                (Some(Err(e)), Some(id)) => {
                    format!("cannot read the safety backup {id}: {e}")
                }
                (Some(Ok(m)), Some(id)) => {
                    match self.roll_back_one(&r.component, m, id, plan).await {
                        Ok(()) => {
                            r.state = CommitState::RolledBack;
                            continue;
                        }
                        Err(e) => e,
                    }
                }
            };
            tracing::error!(component = %r.component, error = %why, "rollback failed");
            r.rollback_error = Some(why);
        }
    }

    async fn roll_back_one(
        &self,
        name: &str,
        safety: &crate::manifest::Manifest,
        id: &str,
        plan: &RestorePlanOptions,
    ) -> std::result::Result<(), String> {
        let opts = plan.options_for(name).dry_run(false);
        if let Some(t) = &opts.target {
            return Err(format!(
                "it was restored into target `{t}`, and the safety backup holds the configured store, not that target"
            ));
        }
        let c = self
            .component(name)
            .ok_or_else(|| format!("component `{name}` is not configured"))?;
        let rec = safety
            .components
            .get(name)
            .ok_or_else(|| format!("the safety backup {id} has no `{name}`"))?;
        tracing::warn!(component = name, safety = id, "rolling back");
        let cx = ReadContext::new(
            self.repo.clone(),
            id.to_string(),
            Progress::new(name, self.sink.clone()),
        );
        cx.progress().set_phase("rolling back");
        c.restore(&cx, rec, &opts)
            .await
            .map(|_| ())
            .map_err(|e| format!("rolling back from the safety backup {id} failed: {e}"))
    }
}

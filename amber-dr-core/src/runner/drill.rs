//! [`Runner::drill`]: restore a backup into scratch targets, check it there, time it, and
//! remove the scratch targets (see [`crate::drill`]).
//!
//! Order: under the repository lock (held for the whole drill, so that no prune removes the
//! backup and no other drill's cleanup removes this one's targets), the leftovers of drills
//! that were killed are removed first; then every scratch target is planned and recorded in
//! the report in the repository, *before* anything is created; the components are restored
//! concurrently (each: prepare — every artifact read and checked, staged where the driver
//! stages —, then commit into its scratch targets, which the driver compares with the record);
//! the backup's references are checked across the scratch copies; the scratch targets are
//! removed (unless kept); the report is written as JSON and HTML.
//!
//! A cancellation (Ctrl-C, SIGTERM) drops the restores and still removes the scratch targets.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use tokio::task::JoinSet;

use super::{Runner, Selection};
use crate::component::{Component, ReadContext, RestoreOptions, RestoreReport};
use crate::drill::{
    ComponentDrill, ComponentResult, DrillConfig, DrillReport, DrillState, Scratch, ScratchEntry,
    ScratchPlan, ScratchRestore, Timeline,
};
use crate::manifest::ComponentRecord;
use crate::progress::Progress;
use crate::repository::host_name;
use crate::{Error, Result};

/// Options of [`Runner::drill`].
#[derive(Debug, Clone, Default)]
pub struct DrillOptions {
    /// Which components of the backup.
    pub selection: Selection,
    /// `[drill]` of the config.
    pub config: DrillConfig,
    /// Leave the scratch targets in place (for inspection) instead of removing them.
    pub keep: bool,
}

/// What became of the leftovers of earlier drills.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CleanupOutcome {
    /// Scratch targets removed, as `drill id: component target`.
    pub removed: Vec<String>,
    /// Scratch targets that could not be removed, with why.
    pub failed: Vec<String>,
}

/// One component's drill: its driver, its record, its scratch restores.
type Planned = (Arc<dyn Component>, ComponentRecord, Vec<ScratchRestore>);

/// The result of one component's restores.
struct Restored {
    name: String,
    prepare_seconds: f64,
    commit_seconds: f64,
    result: Result<RestoreReport>,
}

impl Runner {
    /// Drill backup `spec` (an id or `latest`): see the module docs. The report is returned
    /// whatever the result (and stored in the repository); an error means the drill could not
    /// run at all (no such backup, repository locked, ...).
    pub async fn drill(&self, spec: &str, opts: &DrillOptions) -> Result<DrillReport> {
        let lock = self.repo.lock("drill").await?;
        let res = self.drill_locked(spec, opts).await;
        if let Err(e) = lock.release().await {
            tracing::warn!(error = %e, "could not remove the repository lock");
        }
        res
    }

    /// Remove the scratch targets that earlier drills recorded and did not remove (a drill
    /// killed with SIGKILL, a removal that failed), under the repository lock.
    pub async fn drill_cleanup(&self, config: &DrillConfig) -> Result<CleanupOutcome> {
        let lock = self.repo.lock("drill cleanup").await?;
        let res = self.cleanup_leftovers(config).await;
        if let Err(e) = lock.release().await {
            tracing::warn!(error = %e, "could not remove the repository lock");
        }
        res
    }

    async fn cleanup_leftovers(&self, config: &DrillConfig) -> Result<CleanupOutcome> {
        let mut out = CleanupOutcome::default();
        for mut report in crate::drill::list_reports(&self.repo).await? {
            let pending: Vec<usize> = (0..report.scratch.len())
                .filter(|&i| {
                    let s = &report.scratch[i].state;
                    s == "planned" || s.starts_with("remove failed")
                })
                .collect();
            if pending.is_empty() {
                continue;
            }
            for i in pending {
                let entry = report.scratch[i].clone();
                let what = format!("{}: {} {}", report.id, entry.component, entry.target);
                // A configured target is on record redacted: the config gives it again.
                let real = match entry.configured {
                    false => Ok(entry.target.clone()),
                    true => self.configured_again(config, &entry),
                };
                let removed = match real {
                    Ok(target) => {
                        let e = ScratchEntry {
                            target,
                            ..entry.clone()
                        };
                        self.remove_one(&e, &report.token).await
                    }
                    Err(e) => Err(e),
                };
                match removed {
                    Ok(()) => {
                        report.scratch[i].state = "removed".into();
                        out.removed.push(what);
                    }
                    Err(e) => {
                        report.scratch[i].state = format!("remove failed: {e}");
                        out.failed.push(format!("{what}: {e}"));
                    }
                }
            }
            if report.state == DrillState::Running {
                report.state = DrillState::Failed;
                report.error.get_or_insert_with(|| {
                    "the drill did not finish (killed?); its scratch targets were removed by a later cleanup".into()
                });
            }
            report.save(&self.repo).await?;
        }
        Ok(out)
    }

    /// The configured scratch target `entry` (stored redacted) stands for, from `config`.
    fn configured_again(&self, config: &DrillConfig, entry: &ScratchEntry) -> Result<String> {
        let kind = self
            .component(&entry.component)
            .map(|c| c.kind())
            .unwrap_or_default();
        config
            .configured_target(&entry.component, kind)
            .filter(|t| crate::redact::redact(t) == entry.target)
            .ok_or_else(|| {
                Error::Other(format!(
                    "the configured scratch target `{}` of `{}` is no longer in [drill]; remove it by hand",
                    entry.target, entry.component
                ))
            })
    }

    /// Remove one scratch target through its driver, refusing one that is neither configured
    /// nor marked with its drill's token.
    async fn remove_one(&self, entry: &ScratchEntry, token: &str) -> Result<()> {
        if !entry.configured && !Scratch::marks(&entry.target, token) {
            return Err(Error::Other(format!(
                "refusing to remove `{}`: it does not contain the drill's token {token}",
                entry.target
            )));
        }
        let c = self.component(&entry.component).ok_or_else(|| {
            Error::Other(format!(
                "no component `{}` is configured to remove it with",
                entry.component
            ))
        })?;
        c.remove_scratch(&entry.target).await
    }

    async fn drill_locked(&self, spec: &str, opts: &DrillOptions) -> Result<DrillReport> {
        match self.cleanup_leftovers(&opts.config).await {
            Ok(c) => {
                for r in &c.removed {
                    tracing::warn!(target = %r, "removed a scratch target an earlier drill left");
                }
                for f in &c.failed {
                    tracing::error!(target = %f, "could not remove a scratch target an earlier drill left");
                }
            }
            Err(e) => tracing::error!(error = %e, "could not look for earlier drills' leftovers"),
        }
        let id = self.repo.resolve(spec).await?;
        let manifest = self.repo.read_manifest(&id).await?;
        if manifest.sealed {
            let what = format!("backup {id}");
            return Err(self.repo.keys().await?.need_private_key(&what));
        }
        let names = opts
            .selection
            .apply(manifest.components.keys().map(String::as_str))?;
        let token = Scratch::new_token();
        let started_at = Utc::now();
        let start = Instant::now();
        let mut report = DrillReport {
            id: format!(
                "{}_{}",
                started_at.format("%Y%m%d_%H%M%S"),
                &token["drill_".len()..]
            ),
            backup: id.clone(),
            backup_taken_at: manifest.started_at,
            host: host_name(),
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            token: token.clone(),
            started_at,
            finished_at: None,
            state: DrillState::Running,
            rto_seconds: None,
            rto_budget_seconds: opts.config.rto_budget_seconds,
            backup_age_seconds: (started_at - manifest.started_at).num_milliseconds() as f64
                / 1000.0,
            components: Vec::new(),
            references: Vec::new(),
            references_not_checked: Vec::new(),
            scratch: Vec::new(),
            phases: Vec::new(),
            error: None,
        };
        let planned = self.plan_drill(&manifest, &names, &token, opts, &mut report)?;
        // The targets as planned (the report holds configured ones redacted), in report order.
        let real_targets: Vec<String> = planned
            .iter()
            .flat_map(|(_, _, rs)| rs.iter().map(|r| r.target.clone()))
            .collect();
        // The journal: every target is on record before the first one is created.
        report.save(&self.repo).await?;

        let timeline = Arc::new(Timeline::new(start, self.sink.clone()));
        let copies: BTreeMap<String, Vec<ScratchRestore>> = planned
            .iter()
            .map(|(c, _, rs)| (c.name().to_string(), rs.clone()))
            .collect();
        let work = async {
            let restored = self
                .drill_restores(&id, planned, timeline.clone(), opts)
                .await?;
            for r in restored {
                apply(&mut report, r);
            }
            let passed: BTreeMap<String, Vec<ScratchRestore>> = copies
                .iter()
                .filter(|(n, _)| {
                    report
                        .components
                        .iter()
                        .any(|c| &c.name == *n && c.result == ComponentResult::Passed)
                })
                .map(|(n, r)| (n.clone(), r.clone()))
                .collect();
            let specs: Vec<crate::references::ReferenceSpec> = if manifest.references.is_empty() {
                self.references.to_vec()
            } else {
                manifest.references.iter().map(|r| r.spec.clone()).collect()
            };
            // A reference is checked when both its ends were drilled; one with an end left out
            // (`--only`, not drilled) is listed as not checked. An end whose component failed
            // has failed the drill already.
            let (checked, skipped): (Vec<_>, Vec<_>) = specs.into_iter().partition(|s| {
                passed.contains_key(&s.from.component) && passed.contains_key(&s.to.component)
            });
            for s in skipped {
                let missing: Vec<&str> = [&s.from.component, &s.to.component]
                    .into_iter()
                    .filter(|c| !passed.contains_key(*c))
                    .map(String::as_str)
                    .collect();
                report.references_not_checked.push(format!(
                    "{}: {} not drilled (or failed)",
                    s.name,
                    missing.join(" and ")
                ));
            }
            if !checked.is_empty() {
                let t0 = timeline.now();
                report.references =
                    crate::references::check_scratch(&checked, &passed, &self.components).await;
                timeline.push("drill", "checking references", t0, timeline.now(), 0);
            }
            Ok::<(), Error>(())
        };
        let res = crate::cancel::run(self.cancel.as_ref(), None, None, None, work).await;
        let rto = timeline.now();
        match res {
            Ok(()) => {
                report.rto_seconds = Some(rto);
                let drilled: Vec<&ComponentDrill> = report
                    .components
                    .iter()
                    .filter(|c| c.result != ComponentResult::NotDrilled)
                    .collect();
                let ok = !drilled.is_empty()
                    && drilled.iter().all(|c| c.result == ComponentResult::Passed)
                    && !report.dangling();
                if drilled.is_empty() {
                    report.error = Some("no component could be drilled".into());
                }
                report.state = if ok {
                    DrillState::Passed
                } else {
                    DrillState::Failed
                };
            }
            Err(e) => {
                let why = match e {
                    Error::Interrupted => {
                        report.state = DrillState::Interrupted;
                        "interrupted by a signal".to_string()
                    }
                    e => {
                        report.state = DrillState::Failed;
                        e.to_string()
                    }
                };
                // The components it was restoring did not finish.
                for c in &mut report.components {
                    if c.result == ComponentResult::NotDrilled && !c.targets.is_empty() {
                        c.result = ComponentResult::Failed;
                        c.error = Some(format!("did not finish: {why}"));
                    }
                }
                report.error = Some(why);
            }
        }
        // Cleanup: always, whatever happened above (unless kept).
        let t0 = timeline.now();
        for (slot, real) in report.scratch.iter_mut().zip(&real_targets) {
            if opts.keep {
                slot.state = "kept".into();
                continue;
            }
            let entry = ScratchEntry {
                target: real.clone(),
                ..slot.clone()
            };
            slot.state = match self.remove_one(&entry, &token).await {
                Ok(()) => "removed".into(),
                Err(e) => {
                    tracing::error!(component = %entry.component, target = %entry.target, error = %e, "could not remove a scratch target");
                    format!("remove failed: {e}")
                }
            };
        }
        if !report.scratch.is_empty() && !opts.keep {
            timeline.push("drill", "removing scratch targets", t0, timeline.now(), 0);
        }
        report.phases = timeline.spans();
        report.finished_at = Some(Utc::now());
        report.save(&self.repo).await?;
        report.save_html(&self.repo).await?;
        Ok(report)
    }

    /// Each selected component's scratch plan; the report gets one entry per component and
    /// one per scratch target.
    fn plan_drill(
        &self,
        manifest: &crate::manifest::Manifest,
        names: &[String],
        token: &str,
        opts: &DrillOptions,
        report: &mut DrillReport,
    ) -> Result<Vec<Planned>> {
        let dir = opts.config.dir.clone().unwrap_or_else(std::env::temp_dir);
        let mut planned = Vec::new();
        for name in names {
            let rec = &manifest.components[name];
            let mut cd = ComponentDrill {
                name: name.clone(),
                kind: rec.kind.clone(),
                result: ComponentResult::NotDrilled,
                error: None,
                damage: false,
                targets: Vec::new(),
                prepare_seconds: 0.0,
                commit_seconds: 0.0,
                stored_bytes: rec.artifacts.iter().map(|a| a.stored_size).sum(),
                checks: Vec::new(),
                warnings: Vec::new(),
            };
            let c = match self.component(name) {
                _ if !rec.is_ok() => {
                    cd.result = ComponentResult::Failed;
                    cd.error = Some(
                        "its snapshot failed when the backup was taken: nothing to restore".into(),
                    );
                    None
                }
                None => {
                    cd.error = Some(format!(
                        "the config has no component `{name}` ({}) to restore it with",
                        rec.kind
                    ));
                    None
                }
                Some(c) if c.kind() != rec.kind => {
                    cd.error = Some(format!(
                        "`{name}` is of kind `{}` in the config but `{}` in the backup",
                        c.kind(),
                        rec.kind
                    ));
                    None
                }
                Some(c) => Some(c.clone()),
            };
            if let Some(c) = c {
                let scratch = Scratch {
                    token: token.to_string(),
                    dir: dir.clone(),
                    configured: opts.config.configured_target(name, c.kind()),
                };
                match c.scratch_plan(rec, &scratch)? {
                    ScratchPlan::NotDrilled(why) => cd.error = Some(why),
                    ScratchPlan::Restores(rs) => {
                        for r in &rs {
                            let configured = scratch.configured.as_deref() == Some(&r.target);
                            if !configured && !Scratch::marks(&r.target, token) {
                                return Err(Error::Other(format!(
                                    "the {} driver planned the scratch target `{}` for `{name}` without the drill's token {token}: refusing to drill",
                                    c.kind(),
                                    r.target
                                )));
                            }
                            report.scratch.push(ScratchEntry {
                                component: name.clone(),
                                target: crate::redact::redact(&r.target),
                                configured,
                                state: "planned".into(),
                            });
                        }
                        cd.targets = rs
                            .iter()
                            .map(|r| ScratchRestore {
                                items: r.items.clone(),
                                target: crate::redact::redact(&r.target),
                            })
                            .collect();
                        planned.push((c, rec.clone(), rs));
                    }
                }
            }
            report.components.push(cd);
        }
        Ok(planned)
    }

    /// Restore every planned component into its scratch targets, up to `parallelism`
    /// components at once (each one's restores one after the other).
    async fn drill_restores(
        &self,
        id: &str,
        planned: Vec<Planned>,
        timeline: Arc<Timeline>,
        opts: &DrillOptions,
    ) -> Result<Vec<Restored>> {
        let _ = opts;
        let mut set: JoinSet<Restored> = JoinSet::new();
        let mut queue = planned.into_iter();
        let mut out = Vec::new();
        loop {
            while set.len() < self.parallelism.max(1) {
                let Some((c, rec, restores)) = queue.next() else {
                    break;
                };
                let repo = self.repo.clone();
                let id = id.to_string();
                let tl = timeline.clone();
                set.spawn(async move { restore_scratch(repo, id, c, rec, restores, tl).await });
            }
            match set.join_next().await {
                Some(Ok(r)) => out.push(r),
                Some(Err(e)) => return Err(Error::Other(format!("a drill task died: {e}"))),
                None => break,
            }
        }
        Ok(out)
    }
}

/// One component's scratch restores, each prepared (read, checked, staged) then committed.
async fn restore_scratch(
    repo: crate::repository::Repository,
    id: String,
    c: Arc<dyn Component>,
    rec: ComponentRecord,
    restores: Vec<ScratchRestore>,
    timeline: Arc<Timeline>,
) -> Restored {
    let name = c.name().to_string();
    let (mut prepare_seconds, mut commit_seconds) = (0.0, 0.0);
    let mut report = RestoreReport::default();
    let sink: Arc<dyn crate::progress::ProgressSink> = timeline.clone();
    let mut result = Ok(());
    for r in &restores {
        let opts = RestoreOptions::new()
            .target(Some(r.target.clone()))
            .items(r.items.clone())
            .force(true)
            .scratch(true);
        let t0 = Instant::now();
        let prep = (c.clone(), rec.clone(), opts.clone());
        let staged = crate::precheck::prepare(&repo, &id, &[prep], sink.clone(), 1).await;
        prepare_seconds += t0.elapsed().as_secs_f64();
        let mut staged = match staged {
            Ok(s) => s,
            Err(e) => {
                result = Err(e);
                break;
            }
        };
        let t1 = Instant::now();
        let res = match staged.remove(&name) {
            Some(stage) => {
                Progress::new(&name, sink.clone())
                    .set_phase("committing (swapping in what was staged)");
                stage.commit().await
            }
            None => {
                let cx =
                    ReadContext::new(repo.clone(), id.clone(), Progress::new(&name, sink.clone()));
                c.restore(&cx, &rec, &opts).await
            }
        };
        commit_seconds += t1.elapsed().as_secs_f64();
        timeline.close(&name);
        match res {
            Ok(rep) => {
                report.actions.extend(rep.actions);
                report.warnings.extend(rep.warnings);
                report.stats.extend(rep.stats);
            }
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    timeline.close(&name);
    Restored {
        name,
        prepare_seconds,
        commit_seconds,
        result: result.map(|()| report),
    }
}

/// Put one component's restore result into the report.
fn apply(report: &mut DrillReport, r: Restored) {
    let Some(cd) = report.components.iter_mut().find(|c| c.name == r.name) else {
        return;
    };
    cd.prepare_seconds = r.prepare_seconds;
    cd.commit_seconds = r.commit_seconds;
    match r.result {
        Ok(rep) => {
            cd.result = ComponentResult::Passed;
            cd.checks = rep.actions;
            cd.warnings = rep.warnings;
        }
        Err(e) => {
            cd.result = ComponentResult::Failed;
            cd.damage = e.is_damage();
            cd.error = Some(e.to_string());
        }
    }
}

//! `restore`: the plan, the confirmation, the restore and its report.

use super::*;

// ---------------------------------------------------------------------------------------
// restore
// ---------------------------------------------------------------------------------------

/// What `restore` restores from.
pub(super) enum RestoreSource {
    /// An amber-dr backup.
    Backup(Box<Manifest>),
    /// A runbook backup directory.
    Legacy(amber_dr_core::LegacyPlan),
}

impl RestoreSource {
    async fn restore(
        &self,
        runner: &Runner,
        plan: &RestorePlanOptions,
    ) -> amber_dr_core::Result<RestoreOutcome> {
        match self {
            RestoreSource::Backup(m) => runner.restore(&m.id, plan).await,
            RestoreSource::Legacy(lp) => runner.restore_legacy(&lp.dir, plan).await,
        }
    }
}

pub(super) async fn restore(ctx: &Ctx, args: &RestoreArgs) -> CmdResult {
    // A runbook backup directory (`./backups/YYYYMMDD_HHMMSS/` with postgres.sql, ...).
    let legacy_dir = (args.backup != "latest"
        && !looks_like_id(&args.backup)
        && Path::new(&args.backup).is_dir())
    .then(|| PathBuf::from(&args.backup));
    let cfg = ctx.load_config(Needs::Config)?;
    // A runbook restore still takes its safety backup into the repository, so it needs one
    // (created if it is a new local directory).
    let repo = ctx.open_repo(cfg.as_ref(), legacy_dir.is_some())?;
    let runner = ctx.runner(cfg.as_ref(), repo.clone(), None)?;
    let docker = ctx.docker_hooks(cfg.as_ref())?;

    // Resolve and plan.
    let selection = args.select.selection();
    let (source, names) = match &legacy_dir {
        Some(dir) => {
            let lp = amber_dr_core::LegacyPlan::inspect(
                dir,
                runner.components(),
                runner.runbook_files(),
            )?;
            let names: Vec<String> = lp
                .select(&selection)?
                .iter()
                .filter_map(|p| p.component.clone())
                .collect();
            (RestoreSource::Legacy(lp), names)
        }
        None => {
            let manifest = inspect::read_manifest(&repo, &args.backup).await?;
            let names = selection.apply(manifest.components.keys().map(String::as_str))?;
            (RestoreSource::Backup(Box::new(manifest)), names)
        }
    };
    // Per-component choices: checked by the runner against the drivers' capabilities.
    let mut components: std::collections::BTreeMap<String, ComponentPlan> = args
        .select
        .items()
        .into_iter()
        .map(|(name, items)| {
            let plan = ComponentPlan {
                target: None,
                items,
            };
            (name, plan)
        })
        .collect();
    for (name, target) in &args.target {
        components.entry(name.clone()).or_default().target = Some(target.clone());
    }
    let safety = !args.no_safety_backup;
    let out = &ctx.out;
    let plan_json = plan_header(out, &source, &names, &args.target, safety);
    // What each driver would do (a dry run changes nothing and takes no lock).
    let plan = |dry_run: bool| RestorePlanOptions {
        selection: Selection {
            only: names.clone(),
            skip: Vec::new(),
        },
        options: RestoreOptions::new()
            .dry_run(dry_run)
            .keep_extra(args.keep_extra)
            .force(args.force),
        components: components.clone(),
        safety_backup: safety && !dry_run,
    };
    let retargeted = plan(true).retargeted();
    let dry = interruptible(
        async { Ok(source.restore(&runner, &plan(true)).await?) },
        "interrupted: nothing was restored",
    )
    .await?;
    print_restore_components(out, &dry, &args.target);
    let caps: Vec<(String, Capabilities)> = names
        .iter()
        .filter_map(|n| {
            let c = runner.components().iter().find(|c| c.name() == n)?;
            Some((n.clone(), c.capabilities()))
        })
        .collect();
    print_phases(out, &source, &caps, safety, args.no_rollback, args.dry_run);
    if let Some(d) = cfg
        .as_ref()
        .map(config::docker)
        .transpose()?
        .flatten()
        .as_ref()
    {
        let list = |v: &[String]| {
            if v.is_empty() {
                "none".to_string()
            } else {
                v.join(", ")
            }
        };
        let mut stop = d.stop_during_restore.clone();
        if matches!(source, RestoreSource::Legacy(_)) {
            stop.extend(d.stop_during_runbook_restore.iter().cloned());
        }
        out.line(format!(
            "  docker: stop before and start after: {}; restart after: {}{}",
            list(&stop),
            list(&d.restart_after_restore),
            if args.dry_run {
                " (not in a dry run)"
            } else {
                ""
            }
        ));
    }
    if safety && !retargeted.is_empty() {
        out.line(format!(
            "  note: the safety backup covers the configured data of {}, not the --target locations",
            retargeted.join(", ")
        ));
    }
    if args.dry_run || !dry.is_ok() {
        let ok = dry.is_ok();
        if out.json {
            out.json(&json!({ "ok": ok, "dry_run": true, "plan": plan_json, "outcome": dry }));
        } else if ok {
            out.info("dry run: nothing was changed");
        } else {
            out.note("error: the plan failed for some components (see above); nothing was changed");
        }
        return Ok(restore_plan_code(&dry));
    }

    // Confirmation.
    if !args.yes {
        confirm().await?;
    }

    // The restore itself.
    let bars = if out.bars() {
        Some(BarSink::new(&names))
    } else {
        None
    };
    let mut runner = match &bars {
        Some(b) => runner.clone().with_progress(b.clone()),
        None => runner.clone(),
    }
    .with_rollback(!args.no_rollback)
    .with_reference_check_after_restore(!args.no_check_references);
    if let Some(d) = &docker {
        runner = runner.with_hooks(Arc::new(d.clone()));
    }
    let res = interrupted_as(
        source
            .restore(&runner, &plan(false))
            .await
            .map_err(Failure::from),
        "interrupted in the prepare phase: nothing was restored and nothing is left staged",
    );
    if let Some(b) = &bars {
        b.finish();
    }
    let outcome = res?;
    let ok = outcome.is_ok();
    // Undo a restore that committed: the safety backup, for the components it changed.
    let rollback_names: Vec<&str> = outcome
        .components
        .iter()
        .filter(|c| matches!(c.state, CommitState::Committed | CommitState::NotRolledBack))
        .map(|c| c.component.as_str())
        .filter(|n| !retargeted.iter().any(|r| r == n))
        .collect();
    let rollback = outcome
        .safety_backup
        .as_ref()
        .filter(|_| !rollback_names.is_empty())
        .map(|id| {
            hints::restore_command(&ctx.config_path(), ctx.repo.as_deref(), id, &rollback_names)
        });
    // Finish a restore that did not: the same backup, for what it did not bring back.
    let retry_names = outcome.to_retry();
    let retry = (!ok && !retry_names.is_empty()).then(|| {
        let mut cmd = hints::restore_command(
            &ctx.config_path(),
            ctx.repo.as_deref(),
            &outcome.id,
            &retry_names,
        );
        for (name, target) in &args.target {
            if retry_names.contains(&name.as_str()) {
                cmd.push_str(&format!(
                    " --target {}",
                    hints::shell_quote(&format!("{name}={target}"))
                ));
            }
        }
        cmd
    });
    print_outcome(out, &outcome, plan_json, rollback, retry, &args.target);
    let dangling = outcome.references.iter().any(|r| !r.resolves());
    Ok(if outcome.interrupted {
        INTERRUPTED
    } else if ok && dangling {
        DANGLING
    } else if ok {
        OK
    } else {
        FAILURE
    })
}

/// The plan's phases, per component: what prepare checks, what commit changes, where downtime
/// starts, and what happens when a commit fails.
fn print_phases(
    out: &Output,
    source: &RestoreSource,
    components: &[(String, Capabilities)],
    safety: bool,
    no_rollback: bool,
    dry_run: bool,
) {
    let names = |staged: bool| -> String {
        components
            .iter()
            .filter(|(_, c)| c.staged_restore == staged)
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (staged, in_place) = (names(true), names(false));
    out.line("  1. prepare (nothing live changes; any damage refuses the whole restore):");
    match source {
        RestoreSource::Backup(_) => {
            if !staged.is_empty() {
                out.line(format!(
                    "     {staged}: restored beside the live data (staging directory, scratch database) from one read of the backup, and compared with it"
                ));
            }
            if !in_place.is_empty() {
                out.line(format!(
                    "     {in_place}: every artifact read end to end, hashes checked, contents decoded"
                ));
            }
        }
        RestoreSource::Legacy(_) => out.line(format!(
            "     {}: each runbook file read through and checked by its driver",
            components
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
    out.line(format!(
        "  2. commit{}: {}",
        if dry_run { " (not in a dry run)" } else { "" },
        if safety {
            "safety backup of the current state, then"
        } else {
            "NO safety backup (--no-safety-backup), then"
        }
    ));
    if matches!(source, RestoreSource::Backup(_)) && !staged.is_empty() {
        out.line(format!(
            "     {staged}: swapped in (their downtime is the swap)"
        ));
    }
    let written = match source {
        RestoreSource::Backup(_) => in_place,
        RestoreSource::Legacy(_) => names(true) + &names(false),
    };
    if !written.is_empty() {
        out.line(format!(
            "     {written}: written in place (downtime for their users from here until done)"
        ));
    }
    out.line(format!(
        "  if a commit fails: no other component starts; {}",
        match (safety, no_rollback) {
            (true, false) => "the committed ones are rolled back from the safety backup",
            (true, true) => "the committed ones are left as they are (--no-rollback)",
            (false, _) => "the committed ones CANNOT be rolled back (no safety backup)",
        }
    ));
}

pub(super) fn print_restore_components(
    out: &Output,
    outcome: &RestoreOutcome,
    targets: &[(String, String)],
) {
    for c in &outcome.components {
        let target = targets
            .iter()
            .find(|(n, _)| *n == c.component)
            .map(|(_, t)| format!(" into target `{t}`"))
            .unwrap_or_default();
        let extra = c
            .rollback_error
            .as_ref()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default();
        match (&c.report, &c.error) {
            (_, Some(e)) => {
                out.line(format!(
                    "  {} ({}){target}: FAILED: {e}",
                    c.component, c.kind
                ));
            }
            (None, None) => {
                out.line(format!(
                    "  {} ({}){target}: {}",
                    c.component,
                    c.kind,
                    c.state.label()
                ));
            }
            (Some(_), None) if c.state != CommitState::Committed && !outcome.dry_run => {
                // Rolled back (or not): what the restore did is undone or reported below.
                out.line(format!(
                    "  {} ({}){target}: {}{extra}",
                    c.component,
                    c.kind,
                    c.state.label()
                ));
            }
            (Some(r), None) => {
                out.line(format!(
                    "  {} ({}){target}:{}",
                    c.component,
                    c.kind,
                    if outcome.dry_run { "" } else { " restored" }
                ));
                for a in &r.actions {
                    out.line(format!("    {a}"));
                }
                if !r.stats.is_empty() && !outcome.dry_run {
                    out.info(format!("    now: {}", output::inline_map(&r.stats)));
                }
                for w in &r.warnings {
                    out.line(format!("    warning: {w}"));
                }
            }
        }
    }
}

/// Print the plan's first line and return the plan as JSON (for `--json`).
fn plan_header(
    out: &Output,
    source: &RestoreSource,
    names: &[String],
    targets: &[(String, String)],
    safety: bool,
) -> serde_json::Value {
    let target_of = |n: &str| targets.iter().find(|(t, _)| t == n).map(|(_, v)| v.clone());
    match source {
        RestoreSource::Backup(manifest) => {
            out.line(format!(
                "restore plan: backup {} ({}, taken {} on host {})",
                manifest.id,
                if manifest.is_complete() {
                    "complete"
                } else {
                    "FAILED, only its good components"
                },
                output::time(&manifest.started_at),
                manifest.host
            ));
            json!({
                "backup": manifest.id,
                "backup_status": if manifest.is_complete() { "complete" } else { "failed" },
                "taken_at": manifest.started_at,
                "host": manifest.host,
                "components": names.iter().map(|n| json!({
                    "name": n,
                    "kind": manifest.components.get(n).map(|r| r.kind.clone()),
                    "target": target_of(n),
                })).collect::<Vec<_>>(),
                "safety_backup": safety,
            })
        }
        RestoreSource::Legacy(lp) => {
            out.line(format!(
                "restore plan: runbook backup directory {} (no checksums: each file is read through before anything is replaced)",
                lp.dir.display()
            ));
            json!({
                "runbook_directory": lp.dir,
                "parts": lp.parts,
                "components": names.iter().map(|n| json!({
                    "name": n,
                    "file": lp.parts.iter().find(|p| p.component.as_deref() == Some(n)).map(|p| p.file.clone()),
                    "target": target_of(n),
                })).collect::<Vec<_>>(),
                "safety_backup": safety,
            })
        }
    }
}

/// Ask "Type y to continue" on the terminal; anything but `y` aborts, nothing changed.
async fn confirm() -> Result<(), Failure> {
    if !std::io::stdin().is_terminal() {
        return Err(Failure::usage(
            "refusing to restore without confirmation: standard input is not a terminal; pass --yes to restore without asking (or --dry-run to see the plan only)",
        ));
    }
    let answer = interruptible(
        async {
            tokio::task::spawn_blocking(|| {
                use std::io::Write;
                eprint!("Type y to continue: ");
                let _ = std::io::stderr().flush();
                let mut line = String::new();
                std::io::stdin().read_line(&mut line).map(|_| line)
            })
            .await
            .map_err(|e| Failure::failed(format!("prompt failed: {e}")))?
            .map_err(|e| Failure::failed(format!("cannot read the answer: {e}")))
            .map(|line| {
                if matches!(line.trim(), "y" | "Y") {
                    OK
                } else {
                    FAILURE
                }
            })
        },
        "interrupted: nothing was restored",
    )
    .await?;
    if answer != OK {
        return Err(Failure::failed("aborted: nothing was restored"));
    }
    Ok(())
}

/// Print the result of a restore (not a dry run).
fn print_outcome(
    out: &Output,
    outcome: &RestoreOutcome,
    plan_json: serde_json::Value,
    rollback: Option<String>,
    retry: Option<String>,
    targets: &[(String, String)],
) {
    let ok = outcome.is_ok();
    if out.json {
        out.json(&json!({
            "ok": ok,
            "dry_run": false,
            "plan": plan_json,
            "outcome": outcome,
            "rollback": rollback,
            "retry": retry,
        }));
    } else {
        out.line("");
        print_restore_components(out, outcome, targets);
        for f in &outcome.forced {
            out.note(format!("warning: restored anyway (--force): {f}"));
        }
        if let Some(id) = &outcome.safety_backup {
            out.line(format!("safety backup taken before the restore: {id}"));
        }
        if let Some(cmd) = &rollback {
            out.line(format!("to roll back: {cmd}"));
        }
        print_references(out, &outcome.references);
        if ok && outcome.references.iter().any(|r| !r.resolves()) {
            out.note(format!(
                "warning: restored backup {}, but references touching the restored components do not resolve in the live stores (see above)",
                outcome.id
            ));
        } else if ok {
            out.info(format!("restored backup {}", outcome.id));
        } else {
            let failed: Vec<&str> = outcome
                .components
                .iter()
                .filter(|c| c.error.is_some())
                .map(|c| c.component.as_str())
                .collect();
            if outcome.interrupted {
                out.note("interrupted during the commit: the components in flight finished, no other started");
            }
            if !failed.is_empty() {
                out.note(format!(
                    "error: restore of {} failed (see above)",
                    failed.join(", ")
                ));
            }
            if outcome.unchanged() {
                out.note("every component is as it was before the restore");
            }
            if let Some(cmd) = &retry {
                out.line(format!("to retry: {cmd}"));
            }
            for e in &outcome.hook_errors {
                out.note(format!("error: after the restore: {e}"));
            }
        }
    }
}

//! `drill` (restore a backup into scratch targets, check, time, clean up) and `report` (the
//! history page).

use amber_dr_core::drill::{ComponentResult, DrillReport, DrillState};
use amber_dr_core::DrillOptions;

use super::*;
use crate::args::{DrillArgs, ReportArgs};

/// Where a report stored in the repository can be opened: a file path for a local
/// repository, else the repository URL and the object's path.
fn repo_location(repo: &Repository, path: &str) -> String {
    match repo.local_root() {
        Some(root) => root.join(path).display().to_string(),
        None => format!("{}/{path}", repo.url().trim_end_matches('/')),
    }
}

pub(super) async fn drill(ctx: &Ctx, args: &DrillArgs) -> CmdResult {
    let cfg = ctx.load_config(Needs::Config)?;
    let repo = ctx.open_repo(cfg.as_ref(), false)?;
    let runner = ctx.runner(cfg.as_ref(), repo.clone(), None)?;
    let out = &ctx.out;
    if args.cleanup {
        let c = interruptible(
            async {
                let config = cfg.as_ref().map(|c| c.drill.clone()).unwrap_or_default();
                Ok(runner.drill_cleanup(&config).await?)
            },
            "interrupted: some leftovers may remain; run `amber-dr drill --cleanup` again",
        )
        .await?;
        if out.json {
            out.json(
                &json!({ "ok": c.failed.is_empty(), "removed": c.removed, "failed": c.failed }),
            );
        } else {
            for r in &c.removed {
                out.line(format!("removed {r}"));
            }
            for f in &c.failed {
                out.note(format!("error: could not remove {f}"));
            }
            if c.removed.is_empty() && c.failed.is_empty() {
                out.info("no leftovers of earlier drills");
            }
        }
        return Ok(if c.failed.is_empty() { OK } else { FAILURE });
    }
    let spec = args.backup.clone().unwrap_or_else(|| "latest".into());
    let opts = DrillOptions {
        selection: args.select.selection(),
        config: cfg.as_ref().map(|c| c.drill.clone()).unwrap_or_default(),
        keep: args.keep,
    };
    out.info(format!(
        "drill of backup {spec}: restoring into scratch targets (the live stores are not written)"
    ));
    // The drill handles Ctrl-C/SIGTERM itself: it stops restoring and still cleans up.
    let report = runner.drill(&spec, &opts).await?;
    ctx.metrics(|m| m.record_drill(&report, chrono::Utc::now()));
    let json_at = repo_location(&repo, &DrillReport::json_path(&report.id));
    let html_at = repo_location(&repo, &DrillReport::html_path(&report.id));
    if let Some(path) = &args.html {
        let page = amber_dr_core::drill::html::drill_page(&report.stored());
        std::fs::write(path, page).map_err(|e| {
            Failure::failed(format!(
                "cannot write the report page to {}: {e}",
                path.display()
            ))
        })?;
    }
    let leftovers = report.leftovers().len();
    let cleanup_failed = report
        .scratch
        .iter()
        .any(|s| s.state.starts_with("remove failed"));
    if out.json {
        out.json(&json!({
            "ok": report.passed() && !cleanup_failed,
            "report": report,
            "report_json": json_at,
            "report_html": html_at,
        }));
    } else {
        print_drill(out, &report, args.keep);
        out.line(format!("report: {html_at}"));
        out.info(format!("       {json_at}"));
    }
    Ok(match report.state {
        DrillState::Interrupted => INTERRUPTED,
        DrillState::Passed if !cleanup_failed => OK,
        _ if report.damage() => DAMAGE,
        DrillState::Failed
            if report.dangling()
                && report
                    .components
                    .iter()
                    .all(|c| c.result != ComponentResult::Failed) =>
        {
            DANGLING
        }
        _ => {
            if leftovers > 0 && !args.keep {
                out.note("run `amber-dr drill --cleanup` to retry removing what is left");
            }
            FAILURE
        }
    })
}

fn print_drill(out: &Output, r: &DrillReport, keep: bool) {
    out.line(format!(
        "drill {} of backup {} (taken {}, {} old): {}",
        r.id,
        r.backup,
        output::time(&r.backup_taken_at),
        amber_dr_core::drill::html::duration(r.backup_age_seconds.max(0.0)),
        r.state.label()
    ));
    for c in &r.components {
        let targets: Vec<&str> = c.targets.iter().map(|t| t.target.as_str()).collect();
        match c.result {
            ComponentResult::Passed => out.line(format!(
                "  {} ({}): passed — restored into {} and compared with the backup (prepare {}, commit {})",
                c.name,
                c.kind,
                targets.join(", "),
                amber_dr_core::drill::html::duration(c.prepare_seconds),
                amber_dr_core::drill::html::duration(c.commit_seconds),
            )),
            ComponentResult::Failed => out.line(format!(
                "  {} ({}): FAILED: {}",
                c.name,
                c.kind,
                c.error.as_deref().unwrap_or("?")
            )),
            ComponentResult::NotDrilled => out.line(format!(
                "  {} ({}): not drilled: {}",
                c.name,
                c.kind,
                c.error.as_deref().unwrap_or("?")
            )),
        }
        for w in &c.warnings {
            out.info(format!("    warning: {w}"));
        }
    }
    print_references(out, &r.references);
    for n in &r.references_not_checked {
        out.line(format!("  reference not checked: {n}"));
    }
    if let Some(e) = &r.error {
        out.note(format!("error: {e}"));
    }
    if let Some(rto) = r.rto_seconds {
        let budget = match r.rto_budget_seconds {
            Some(b) if rto > b => format!(
                " — OVER the budget of {}",
                amber_dr_core::drill::html::duration(b)
            ),
            Some(b) => format!(" (budget {})", amber_dr_core::drill::html::duration(b)),
            None => String::new(),
        };
        out.line(format!(
            "measured RTO: {}{budget}",
            amber_dr_core::drill::html::duration(rto)
        ));
    }
    let removed = r.scratch.iter().filter(|s| s.state == "removed").count();
    if keep {
        out.line("scratch targets kept (--keep); remove them with `amber-dr drill --cleanup`:");
        for s in &r.scratch {
            out.line(format!("  {}: {}", s.component, s.target));
        }
    } else if removed == r.scratch.len() {
        out.info(format!("scratch targets removed: {removed}"));
    } else {
        for s in r.scratch.iter().filter(|s| s.state != "removed") {
            out.note(format!(
                "error: scratch target of {} NOT removed: {} ({})",
                s.component, s.target, s.state
            ));
        }
    }
}

pub(super) async fn report(ctx: &Ctx, args: &ReportArgs) -> CmdResult {
    let cfg = ctx.load_config(Needs::RepoOnly)?;
    let repo = ctx.open_repo(cfg.as_ref(), false)?;
    let backups = repo.list().await?;
    let drills = amber_dr_core::drill::list_reports(&repo).await?;
    let page = amber_dr_core::drill::html::history_page(repo.url(), &backups, &drills);
    std::fs::write(&args.output, page).map_err(|e| {
        Failure::failed(format!(
            "cannot write the report to {}: {e}",
            args.output.display()
        ))
    })?;
    if ctx.out.json {
        ctx.out.json(&json!({ "ok": true, "path": args.output, "backups": backups.len(), "drills": drills.len() }));
    } else {
        ctx.out.line(format!(
            "wrote {} ({} backups, {} drills)",
            args.output.display(),
            backups.len(),
            drills.len()
        ));
    }
    Ok(OK)
}

//! `backup` and `prune`: writing and deleting backups.

use super::*;

// ---------------------------------------------------------------------------------------
// backup
// ---------------------------------------------------------------------------------------

pub(super) async fn backup(ctx: &Ctx, args: &BackupArgs) -> CmdResult {
    let cfg = ctx.load_config(Needs::Config)?;
    let repo = ctx.open_repo(cfg.as_ref(), true)?;
    let selection = args.select.selection();
    let bars = if ctx.out.bars() {
        let names: Vec<String> = cfg
            .as_ref()
            .map(|c| {
                c.components
                    .iter()
                    .map(|s| s.name.clone())
                    .collect::<Vec<_>>()
            })
            .and_then(|names| selection.apply(names.iter().map(String::as_str)).ok())
            .unwrap_or_default();
        Some(BarSink::new(&names))
    } else {
        None
    };
    let docker = ctx.docker_hooks(cfg.as_ref())?;
    let mut runner = ctx.runner(
        cfg.as_ref(),
        repo.clone(),
        bars.clone().map(|b| b as Arc<dyn ProgressSink>),
    )?;
    if let Some(d) = &docker {
        runner = runner.with_hooks(Arc::new(d.clone()));
    }
    let opts = BackupOptions {
        selection,
        tags: args.tag.clone(),
    };
    let res = interrupted_as(
        async {
            let m = runner.backup(&opts).await.inspect_err(|e| {
                if let amber_dr_core::Error::BackupUnfinished { id, .. } = e {
                    ctx.out.line(id); // the README's promise: the id on the last stdout line
                }
            })?;
            if let Some(b) = &bars {
                b.finish();
            }
            ctx.metrics(|f| f.record_backup(&m));
            print_backup(ctx, &m);
            let refused = m
                .references
                .iter()
                .any(|r| r.spec.fail_on_dangling && !r.resolves());
            Ok(if m.is_complete() {
                OK
            } else if refused && m.components.values().all(ComponentRecord::is_ok) {
                DANGLING
            } else {
                FAILURE
            })
        }
        .await,
        "interrupted: no backup was completed",
    );
    if let Some(b) = &bars {
        b.finish();
    }
    res
}

pub(super) fn print_backup(ctx: &Ctx, m: &Manifest) {
    let out = &ctx.out;
    if out.json {
        let mut v = serde_json::to_value(m).unwrap_or_else(|_| json!({}));
        if let Some(obj) = v.as_object_mut() {
            obj.insert("ok".into(), json!(m.is_complete()));
        }
        out.json(&v);
        return;
    }
    let status = if m.is_complete() {
        "complete"
    } else {
        "FAILED"
    };
    out.info(format!(
        "backup {}: {status} in {} ({} stored)",
        m.id,
        output::elapsed(&m.started_at, &m.finished_at),
        human_bytes(m.stored_size())
    ));
    for rec in m.components.values() {
        out.info(component_summary(rec));
        for w in &rec.warnings {
            out.info(format!("    warning: {w}"));
        }
        if let Some(e) = &rec.error {
            out.info(format!("    error: {e}"));
        }
    }
    print_references(out, &m.references);
    for r in m.references.iter().filter(|r| !r.resolves()) {
        out.note(format!(
            "warning: reference `{}` does not resolve in backup {}{}",
            r.spec.name,
            m.id,
            if r.spec.fail_on_dangling {
                " (fail_on_dangling = true: the backup is failed)"
            } else {
                ""
            }
        ));
    }
    let components_ok = m.components.values().all(ComponentRecord::is_ok);
    if !m.is_complete() && components_ok {
        out.note(format!(
            "error: backup {} failed: a reference with fail_on_dangling = true does not resolve (see above)",
            m.id
        ));
    } else if !m.is_complete() {
        let failed: Vec<&str> = m
            .components
            .values()
            .filter(|r| !r.is_ok())
            .map(|r| r.name.as_str())
            .collect();
        out.note(format!(
            "error: backup {} failed: {} did not snapshot (see above); it is kept for diagnosis but cannot be restored as a whole",
            m.id,
            failed.join(", ")
        ));
    }
    // The id alone on the last stdout line: `id=$(amber-dr backup | tail -1)`.
    out.line(&m.id);
}

pub(super) fn component_summary(rec: &ComponentRecord) -> String {
    let stored: u64 = rec.artifacts.iter().map(|a| a.stored_size).sum();
    let n = rec.artifacts.len();
    let mut s = format!(
        "  {:<12} {:<9} {:<6} {n} artifact{}, {} stored",
        rec.name,
        rec.kind,
        if rec.is_ok() { "ok" } else { "FAILED" },
        if n == 1 { "" } else { "s" },
        human_bytes(stored)
    );
    if !rec.stats.is_empty() {
        s.push_str("; ");
        s.push_str(&output::inline_map(&rec.stats));
    }
    s
}

// ---------------------------------------------------------------------------------------
// prune
// ---------------------------------------------------------------------------------------

pub(super) async fn prune(ctx: &Ctx, args: &PruneArgs) -> CmdResult {
    let policy = RetentionPolicy {
        keep_last: args.keep_last,
        keep_daily: args.keep_daily,
        keep_weekly: args.keep_weekly,
        keep_monthly: args.keep_monthly,
    };
    if policy.is_empty() {
        return Err(Failure::usage(
            "prune needs at least one rule greater than 0 (--keep-last, --keep-daily, --keep-weekly, --keep-monthly): without one it would delete every backup",
        ));
    }
    let cfg = ctx.load_config(Needs::RepoOnly)?;
    let repo = ctx.open_repo(cfg.as_ref(), false)?;
    let runner = Runner::new(repo.clone(), Vec::new()).with_cancellation(ctx.cancel.clone());
    let o = interrupted_as(
        runner
            .prune(&policy, args.dry_run)
            .await
            .map_err(Failure::from),
        "interrupted: prune did not finish; run it again (a backup whose manifest was deleted is listed as incomplete and deleted by the next prune)",
    )?;
    let out = &ctx.out;
    if out.json {
        let mut v = serde_json::to_value(&o).unwrap_or_else(|_| json!({}));
        if let Some(obj) = v.as_object_mut() {
            obj.insert("ok".into(), json!(true));
        }
        out.json(&v);
        return Ok(OK);
    }
    out.line(format!(
        "prune{}: keeping {}, {} {}",
        if o.dry_run { " (dry run)" } else { "" },
        o.kept.len(),
        if o.dry_run { "would delete" } else { "deleted" },
        o.deleted.len()
    ));
    for id in &o.kept {
        out.info(format!("  keep    {id}"));
    }
    for (id, until) in &o.locked {
        out.line(format!(
            "  locked  {id}: S3 Object Lock retains it until {}; prune deletes it after that",
            output::time(until)
        ));
    }
    if let Some(x) = &o.lock_extension {
        out.line(format!(
            "  S3 Object Lock of the {} kept backups: {} objects {} until {}, {} already retained that long{}",
            x.backups.len(),
            x.extended,
            if o.dry_run { "would be extended" } else { "extended" },
            output::time(&x.until),
            x.unchanged,
            x.blobs_skipped
                .as_ref()
                .map(|w| format!(" (shared blobs not extended: {w})"))
                .unwrap_or_default()
        ));
    }
    for id in &o.deleted {
        out.line(format!(
            "  {} {id}",
            if o.dry_run { "would delete" } else { "deleted" }
        ));
    }
    if o.blobs_deleted > 0 {
        out.line(format!(
            "  {} {} shared blobs no remaining backup references",
            if o.dry_run { "would delete" } else { "deleted" },
            o.blobs_deleted
        ));
    }
    Ok(OK)
}

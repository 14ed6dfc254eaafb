//! `list`, `show` and `verify`: reading what the repository holds.

use super::*;
use amber_dr_core::{ConsistencyClass, CutSummary};

// ---------------------------------------------------------------------------------------
// list
// ---------------------------------------------------------------------------------------

pub(super) async fn list(ctx: &Ctx) -> CmdResult {
    let cfg = ctx.load_config(Needs::RepoOnly)?;
    let repo = ctx.open_repo(cfg.as_ref(), false)?;
    let entries = repo.list().await?;
    // Each backup's last drill (a repository without drills, or unreadable ones: none).
    let drills = amber_dr_core::drill::list_reports(&repo)
        .await
        .unwrap_or_default();
    let last_drill = |id: &str| {
        drills
            .iter()
            .rev()
            .find(|d| d.backup == id && d.state != amber_dr_core::drill::DrillState::Running)
    };
    if ctx.out.json {
        let items: Vec<serde_json::Value> = entries
            .iter()
            .map(|e| {
                let mut v = entry_json(e);
                v["last_drill"] = match last_drill(&e.id) {
                    Some(d) => json!({
                        "id": d.id,
                        "state": d.state,
                        "rto_seconds": d.rto_seconds,
                        "finished_at": d.finished_at,
                    }),
                    None => serde_json::Value::Null,
                };
                v
            })
            .collect();
        ctx.out.json(&items);
        return Ok(OK);
    }
    if entries.is_empty() {
        ctx.out.info(format!("no backups in {}", repo.url()));
        return Ok(OK);
    }
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            let m = e.manifest.as_ref();
            vec![
                e.id.clone(),
                m.map(|m| m.started_at.format("%Y-%m-%d %H:%M:%S").to_string())
                    .or_else(|| time_of_id(&e.id))
                    .unwrap_or_else(|| "-".into()),
                e.status().to_string(),
                m.map(|m| purpose(m).to_string())
                    .unwrap_or_else(|| "-".into()),
                m.map(|m| m.components.keys().cloned().collect::<Vec<_>>().join(","))
                    .unwrap_or_else(|| "-".into()),
                m.map(|m| human_bytes(m.stored_size()))
                    .unwrap_or_else(|| "-".into()),
                last_drill(&e.id)
                    .map(|d| {
                        format!(
                            "{}{}",
                            d.state.label(),
                            d.rto_seconds
                                .map(|r| format!(" ({:.0} s)", r))
                                .unwrap_or_default()
                        )
                    })
                    .unwrap_or_else(|| "-".into()),
                m.map(|m| m.tags.join(", ")).unwrap_or_default(),
            ]
        })
        .collect();
    ctx.out.line(output::table(
        &[
            "ID",
            "TIME (UTC)",
            "STATUS",
            "PURPOSE",
            "COMPONENTS",
            "SIZE",
            "LAST DRILL",
            "TAGS",
        ],
        &rows,
    ));
    for e in &entries {
        if let Some(p) = &e.problem {
            ctx.out.note(format!("warning: {}: {p}", e.id));
        }
    }
    Ok(OK)
}

pub(super) fn purpose(m: &Manifest) -> &'static str {
    match m.purpose {
        amber_dr_core::BackupPurpose::Backup => "backup",
        amber_dr_core::BackupPurpose::Safety => "safety",
    }
}

pub(super) fn time_of_id(id: &str) -> Option<String> {
    let head = id.get(..15)?;
    chrono::NaiveDateTime::parse_from_str(head, "%Y%m%d_%H%M%S")
        .ok()
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
}

/// A backup's recovery point: its consistency class and the skew between its cuts.
fn cut_line(c: &CutSummary) -> String {
    format!(
        "{}, skew {:.3} s (stores cut between {} and {})",
        match c.class {
            ConsistencyClass::Quiesced => "quiesced (writes paused until every store was cut)",
            ConsistencyClass::CrashConsistent => "crash-consistent (the application kept writing)",
        },
        c.skew_ms as f64 / 1000.0,
        c.earliest.format("%H:%M:%S%.3f"),
        c.latest.format("%H:%M:%S%.3f UTC"),
    )
}

pub(super) fn entry_json(e: &BackupEntry) -> serde_json::Value {
    let m = e.manifest.as_ref();
    json!({
        "id": e.id,
        "status": e.status(),
        "purpose": m.map(purpose),
        "started_at": m.map(|m| m.started_at),
        "finished_at": m.map(|m| m.finished_at),
        "host": m.map(|m| m.host.clone()),
        "components": m.map(|m| m.components.keys().cloned().collect::<Vec<_>>()).unwrap_or_default(),
        "stored_size": m.map(Manifest::stored_size),
        "tags": m.map(|m| m.tags.clone()).unwrap_or_default(),
        "cut": m.and_then(|m| m.cut.clone()),
        "references": m.map(|m| m.references.iter().map(|r| json!({
            "name": r.spec.name,
            "checked": r.checked,
            "dangling": r.dangling,
            "resolves": r.resolves(),
        })).collect::<Vec<_>>()).unwrap_or_default(),
        "problem": e.problem,
    })
}

// ---------------------------------------------------------------------------------------
// show
// ---------------------------------------------------------------------------------------

/// Read a backup's manifest; a backup directory without one is reported as incomplete.
pub(super) async fn read_manifest(repo: &Repository, spec: &str) -> Result<Manifest, Failure> {
    let id = repo.resolve(spec).await?;
    Ok(repo.read_manifest(&id).await?)
}

pub(super) async fn show(ctx: &Ctx, args: &ShowArgs) -> CmdResult {
    let cfg = ctx.load_config(Needs::RepoOnly)?;
    let repo = ctx.open_repo(cfg.as_ref(), false)?;
    let m = read_manifest(&repo, &args.backup).await?;
    let encrypted = crate::key::backup_encrypted(&m);
    if ctx.out.json {
        let mut v = serde_json::to_value(&m).unwrap_or_default();
        v["encrypted"] = json!(encrypted);
        ctx.out.json(&v);
        return Ok(OK);
    }
    let out = &ctx.out;
    let n_artifacts: usize = m.components.values().map(|c| c.artifacts.len()).sum();
    out.line(format!("backup {}", m.id));
    out.line(format!(
        "  status:   {} ({})",
        if m.is_complete() {
            "complete"
        } else {
            "failed"
        },
        purpose(&m)
    ));
    out.line(format!(
        "  taken:    {} to {} ({}) on host {} by amber-dr {}",
        output::time(&m.started_at),
        output::time(&m.finished_at),
        output::elapsed(&m.started_at, &m.finished_at),
        m.host,
        m.tool_version
    ));
    if !m.tags.is_empty() {
        out.line(format!("  tags:     {}", m.tags.join(", ")));
    }
    if let Some(c) = &m.cut {
        out.line(format!("  cut:      {}", cut_line(c)));
    }
    for r in &m.references {
        out.line(format!("  reference {}", r.summary()));
    }
    out.line(crate::key::show_line(&m, encrypted));
    out.line(format!(
        "  stored:   {} in {n_artifacts} artifact{}",
        human_bytes(m.stored_size()),
        if n_artifacts == 1 { "" } else { "s" }
    ));
    for rec in m.components.values() {
        out.line("");
        out.line(format!(
            "component {} ({}): {}",
            rec.name,
            rec.kind,
            if rec.is_ok() { "ok" } else { "FAILED" }
        ));
        if let Some(v) = &rec.server_version {
            out.line(format!("  server version: {v}"));
        }
        if let (Some(s), Some(f)) = (&rec.started_at, &rec.finished_at) {
            out.line(format!("  took: {}", output::elapsed(s, f)));
        }
        if !rec.artifacts.is_empty() {
            out.line("  artifacts:");
            let rows: Vec<Vec<String>> = rec
                .artifacts
                .iter()
                .map(|a| {
                    vec![
                        format!("    {}", a.name),
                        human_bytes(a.size),
                        format!("{} stored", human_bytes(a.stored_size)),
                        format!("sha256 {}", a.sha256.get(..12).unwrap_or(&a.sha256)),
                        a.path.clone(),
                    ]
                })
                .collect();
            let t = output::table(&["", "", "", "", ""], &rows);
            for l in t.lines().skip(1) {
                out.line(l);
            }
        }
        if !rec.stats.is_empty() {
            out.line(format!("  stats: {}", output::inline_map(&rec.stats)));
        }
        if !rec.consistency.is_empty() {
            out.line(format!(
                "  consistency: {}",
                output::inline_map(&rec.consistency)
            ));
        }
        for w in &rec.warnings {
            out.line(format!("  warning: {w}"));
        }
        if let Some(e) = &rec.error {
            out.line(format!("  error: {e}"));
        }
    }
    Ok(OK)
}

// ---------------------------------------------------------------------------------------
// verify
// ---------------------------------------------------------------------------------------

pub(super) async fn verify(ctx: &Ctx, args: &VerifyArgs) -> CmdResult {
    let cfg = ctx.load_config(Needs::RepoOnly)?;
    let repo = ctx.open_repo(cfg.as_ref(), false)?;
    let runner = ctx.runner(cfg.as_ref(), repo, None)?;
    if args.references {
        return verify_references(ctx, &runner, &args.backup).await;
    }
    let level = if args.quick {
        VerifyLevel::Quick
    } else {
        VerifyLevel::Full
    };
    let outcome = runner
        .verify(&args.backup, &args.select.selection(), level)
        .await?;
    ctx.metrics(|f| f.record_verify(&outcome, chrono::Utc::now()));
    let ok = outcome.is_ok();
    if ctx.out.json {
        let mut v = serde_json::to_value(&outcome).unwrap_or_else(|_| json!({}));
        if let Some(obj) = v.as_object_mut() {
            obj.insert("ok".into(), json!(ok));
        }
        ctx.out.json(&v);
    } else {
        let out = &ctx.out;
        out.info(format!(
            "verify {} ({})",
            outcome.id,
            match level {
                VerifyLevel::Quick => "quick: presence and sizes",
                VerifyLevel::Full => "full: every byte read and hashed",
            }
        ));
        for (name, report) in &outcome.components {
            print_verify_component(out, name, report);
        }
        if ok {
            out.info(format!("backup {} checks out", outcome.id));
        } else {
            let damaged = outcome
                .components
                .iter()
                .filter(|(_, r)| !r.is_ok())
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            out.note(format!(
                "error: backup {} is DAMAGED ({damaged}); do not rely on it",
                outcome.id
            ));
        }
    }
    Ok(if ok { OK } else { DAMAGE })
}

/// `verify --references`: the backup's references re-checked from its artifacts.
async fn verify_references(ctx: &Ctx, runner: &Runner, backup: &str) -> CmdResult {
    let outcome = runner.verify_references(backup).await?;
    let ok = outcome.resolves();
    if ctx.out.json {
        let mut v = serde_json::to_value(&outcome).unwrap_or_else(|_| json!({}));
        if let Some(obj) = v.as_object_mut() {
            obj.insert("ok".into(), json!(ok));
        }
        ctx.out.json(&v);
    } else if outcome.checks.is_empty() {
        ctx.out.info(format!(
            "backup {}: no references recorded and none declared in the config",
            outcome.id
        ));
    } else {
        ctx.out.info(format!("verify --references {}", outcome.id));
        print_references(&ctx.out, &outcome.checks);
        if ok {
            ctx.out
                .info(format!("every reference of backup {} resolves", outcome.id));
        } else {
            ctx.out.note(format!(
                "error: backup {} has references that do not resolve (see above)",
                outcome.id
            ));
        }
    }
    Ok(if ok { OK } else { DANGLING })
}

pub(super) fn print_verify_component(out: &Output, name: &str, report: &VerifyReport) {
    if report.is_ok() {
        if out.quiet {
            return;
        }
        let mut s = format!(
            "  {name:<12} OK       {} artifact{} checked",
            report.artifacts_checked,
            if report.artifacts_checked == 1 {
                ""
            } else {
                "s"
            }
        );
        if report.bytes_read > 0 {
            s.push_str(&format!(", {} read", human_bytes(report.bytes_read)));
        }
        out.line(s);
    } else {
        out.line(format!("  {name:<12} DAMAGED"));
        for p in &report.problems {
            out.line(format!("    - {p}"));
        }
    }
    for n in &report.notes {
        out.info(format!("    note: {n}"));
    }
}

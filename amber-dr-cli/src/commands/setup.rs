//! `init`, `doctor` and `unlock`: setting up and checking a site.

use super::*;

// ---------------------------------------------------------------------------------------
// init
// ---------------------------------------------------------------------------------------

pub(super) fn init(ctx: &Ctx, args: &InitArgs) -> CmdResult {
    let path = ctx.config_path();
    let source = path.display().to_string();
    if path.exists() && !args.force {
        return Err(Failure::usage(format!(
            "{source} already exists; pass --force to overwrite it"
        )));
    }
    let repo_url = ctx.repo.as_ref().map(|u| {
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        config::resolve_local_url(u, &cwd)
    });
    let text = config::template(&ctx.registry, repo_url.as_deref());
    std::fs::write(&path, &text)
        .map_err(|e| Failure::usage(format!("cannot write the config file {source}: {e}")))?;
    // Check that what we wrote loads (it must, with this build's drivers).
    let cfg = config::loader().parse(&text, &path, &|_| Some(String::new()))?;
    let live: Vec<String> = cfg.components.iter().map(|c| c.name.clone()).collect();
    let kinds = ctx.registry.kinds();
    let commented: Vec<&str> = ["postgres", "neo4j", "minio", "milvus", "files"]
        .into_iter()
        .filter(|k| !kinds.contains(k))
        .collect();
    if ctx.out.json {
        ctx.out.json(&json!({
            "ok": true,
            "path": source,
            "components": live,
            "kinds_not_available": commented,
        }));
    } else {
        ctx.out.line(format!("wrote {source}"));
        ctx.out.info(format!("  components: {}", live.join(", ")));
        if !commented.is_empty() {
            ctx.out.info(format!(
                "  commented out (driver not available yet in this build): {}",
                commented.join(", ")
            ));
        }
        ctx.out
            .info("  next: edit it, then run `amber-dr doctor` and `amber-dr backup`");
    }
    Ok(OK)
}

// ---------------------------------------------------------------------------------------
// doctor
// ---------------------------------------------------------------------------------------

pub(super) async fn doctor(ctx: &Ctx) -> CmdResult {
    let cfg = ctx.load_config(Needs::Config)?;
    let cfg = cfg.as_ref();
    let rc = ctx.repo_config(cfg)?;
    let components = match cfg {
        Some(c) => c.build_components(&ctx.registry)?,
        None => Vec::new(),
    };
    let docker = ctx.docker_hooks(cfg)?;
    let report = amber_dr_core::doctor::doctor(
        &rc,
        &components,
        docker.as_ref().map(|d| d as &dyn amber_dr_core::RunHooks),
        PROBE_TIMEOUT,
    )
    .await;
    if ctx.out.json {
        ctx.out.json(&json!({
            "ok": report.ok,
            "repository": report.repository,
            "components": report.components,
            "docker": report.hooks,
            "drivers": ctx.registry.kinds(),
        }));
    } else {
        for l in &report.lines {
            ctx.out.line(l);
        }
        ctx.out.info(format!(
            "drivers in this build: {}",
            ctx.registry.kinds().join(", ")
        ));
        if !report.ok {
            ctx.out.note("error: something is unreachable (see above)");
        }
    }
    Ok(if report.ok { OK } else { FAILURE })
}

// ---------------------------------------------------------------------------------------
// unlock
// ---------------------------------------------------------------------------------------

pub(super) async fn unlock(ctx: &Ctx) -> CmdResult {
    let cfg = ctx.load_config(Needs::RepoOnly)?;
    let repo = ctx.open_repo(cfg.as_ref(), false)?;
    let removed = repo.break_lock().await?;
    let alive_here = removed
        .as_ref()
        .map(|h| h.host == host_name() && h.pid != 0 && !h.is_stale_here())
        .unwrap_or(false);
    if ctx.out.json {
        ctx.out.json(&json!({
            "ok": true,
            "removed": removed,
            "holder_still_running": alive_here,
        }));
        return Ok(OK);
    }
    match &removed {
        Some(h) => {
            ctx.out
                .line(format!("removed the lock of {} held by {h}", repo.url()));
            if alive_here {
                ctx.out.note(format!(
                    "warning: process {} on this host is still running; if it is an amber-dr run, it no longer excludes others",
                    h.pid
                ));
            }
        }
        None => ctx.out.line(format!("{} was not locked", repo.url())),
    }
    Ok(OK)
}

//! One function per command. Each prints its own result (human or JSON) and returns the exit
//! code; errors travel up as [`Failure`] and are printed by [`crate::run`].

use std::future::Future;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use amber_dr_core::repository::{host_name, looks_like_id};
use amber_dr_core::{
    async_trait, BackupEntry, BackupOptions, Capabilities, Component, ComponentRecord, Manifest,
    Probe, ProgressSink, Registry, Repository, RepositoryConfig, RestoreContext, RestoreOptions,
    RestoreOutcome, RestorePlanOptions, RestoreReport, RetentionPolicy, Runner, Selection,
    SnapshotContext, VerifyContext, VerifyLevel, VerifyReport,
};
use serde_json::json;

use crate::args::{
    BackupArgs, Cli, Command, InitArgs, PruneArgs, RestoreArgs, ShowArgs, VerifyArgs,
    DEFAULT_CONFIG,
};
use crate::config::{self, Config};
use crate::exit::{restore_plan_code, Failure, DAMAGE, FAILURE, INTERRUPTED, OK};
use crate::hints;
use crate::output::{self, human_bytes, BarSink, Output};
use amber_dr_docker::DockerHooks;

/// How long `doctor` waits for one component's probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(60);

type CmdResult = Result<i32, Failure>;

/// Everything a command needs from the command line.
#[derive(Debug)]
pub struct Ctx {
    /// `--config` (or `AMBER_DR_CONFIG`), if given.
    pub config: Option<PathBuf>,
    /// `--repo`, if given.
    pub repo: Option<String>,
    /// How to print.
    pub out: Output,
    /// The registered drivers.
    pub registry: Registry,
    /// `--metrics-file`, if given.
    pub metrics_file: Option<PathBuf>,
    /// Set once this run's result went into the metrics file.
    pub metrics_done: std::sync::atomic::AtomicBool,
}

/// Run the command of `cli`.
pub async fn dispatch(cli: Cli, registry: Registry) -> CmdResult {
    let ctx = Ctx {
        config: cli.config,
        repo: cli.repo,
        out: Output {
            json: cli.json,
            quiet: cli.quiet,
        },
        registry,
        metrics_file: cli.metrics_file,
        metrics_done: Default::default(),
    };
    match cli.command {
        Command::Init(a) => init(&ctx, &a),
        Command::Doctor => interruptible(doctor(&ctx), "interrupted").await,
        Command::Backup(a) => {
            let res = backup(&ctx, &a).await;
            ctx.metrics_failure("backup", &res);
            res
        }
        Command::List => interruptible(list(&ctx), "interrupted").await,
        Command::Show(a) => interruptible(show(&ctx, &a), "interrupted").await,
        Command::Verify(a) => {
            let res =
                interruptible(verify(&ctx, &a), "interrupted: verification did not finish").await;
            ctx.metrics_failure("verify", &res);
            res
        }
        Command::Restore(a) => restore(&ctx, &a).await,
        Command::Prune(a) => prune(&ctx, &a).await,
        Command::Unlock => interruptible(unlock(&ctx), "interrupted").await,
        Command::Key(a) => interruptible(crate::key::key(&ctx, &a), "interrupted").await,
    }
}

// ---------------------------------------------------------------------------------------
// Config and repository
// ---------------------------------------------------------------------------------------

/// What a command needs from the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Needs {
    /// The command cannot run without it (backup, restore, doctor).
    Config,
    /// `--repo` alone is enough when the default config file does not exist.
    RepoOnly,
}

impl Ctx {
    /// Update the metrics file (if one was asked for) with `f`. A file that cannot be written
    /// is reported and does not change the exit code.
    fn metrics(&self, f: impl FnOnce(&mut amber_dr_core::metrics::MetricsFile)) {
        let Some(path) = &self.metrics_file else {
            return;
        };
        self.metrics_done
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let mut m = amber_dr_core::metrics::MetricsFile::load(path);
        f(&mut m);
        if let Err(e) = m.write(path) {
            self.out
                .note(format!("warning: metrics file not updated: {e}"));
        }
    }

    /// A run that ended without a result (bad config, repository unreachable, lock held,
    /// interrupted) drops its success gauge to 0.
    fn metrics_failure(&self, what: &str, res: &CmdResult) {
        if self.metrics_done.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        if res.as_ref().map(|c| *c != OK).unwrap_or(true) {
            self.metrics(|m| m.record_failure(what, chrono::Utc::now()));
        }
    }

    fn config_path(&self) -> PathBuf {
        self.config
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG))
    }

    pub(crate) fn load_config(&self, needs: Needs) -> Result<Option<Config>, Failure> {
        let path = self.config_path();
        if needs == Needs::RepoOnly && self.config.is_none() && !path.exists() {
            if self.repo.is_some() {
                return Ok(None);
            }
            return Err(Failure::usage(format!(
                "configuration error in {}: the config file does not exist; pass --repo URL, name a config file with --config FILE, or write one with `amber-dr init`",
                path.display()
            )));
        }
        let cfg = Config::load(&path)?;
        // Every command checks the whole file: a bad component section is a usage error even
        // for `list`, rather than a confusing failure later.
        cfg.build_components(&self.registry)?;
        Ok(Some(cfg))
    }

    fn repo_config(&self, cfg: Option<&Config>) -> Result<RepositoryConfig, Failure> {
        let mut rc = cfg.and_then(|c| c.repository.clone()).unwrap_or_default();
        if let Some(url) = &self.repo {
            let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
            rc.url = config::resolve_local_url(url, &cwd);
        }
        if rc.url.trim().is_empty() {
            let where_ = cfg
                .map(|c| format!("set `url` under [repository] in {}, or ", c.source()))
                .unwrap_or_default();
            return Err(Failure::usage(format!(
                "no repository given: {where_}pass --repo URL"
            )));
        }
        Ok(rc)
    }

    /// Open the repository. For a local path that does not exist, `create` decides between
    /// creating it (backup) and an error (commands that read).
    pub(crate) fn open_repo(
        &self,
        cfg: Option<&Config>,
        create: bool,
    ) -> Result<Repository, Failure> {
        let rc = self.repo_config(cfg)?;
        if !create {
            if let Some(path) = local_path(&rc.url) {
                if !path.exists() {
                    return Err(Failure::failed(format!(
                        "repository {}: the directory does not exist (no backup was taken there yet?)",
                        rc.url
                    )));
                }
            }
        }
        Repository::open(&rc).map_err(|e| match (e, cfg) {
            // Name the file: `[repository]` values come from it (unless --repo gave the URL).
            (amber_dr_core::Error::Config { location, message }, Some(c)) => {
                amber_dr_core::Error::Config {
                    location: format!("{}: {location}", c.source()),
                    message,
                }
                .into()
            }
            (e, _) => e.into(),
        })
    }

    /// The `[docker]` hooks of the config, if it names any container. Their lines go to
    /// stderr (human mode).
    fn docker_hooks(&self, cfg: Option<&Config>) -> Result<Option<DockerHooks>, Failure> {
        let Some(d) = cfg.and_then(|c| c.docker.clone()) else {
            return Ok(None);
        };
        let json = self.out.json;
        let report: amber_dr_docker::Reporter = Arc::new(move |line: &str| {
            if !json {
                output::eprint_line(line);
            }
        });
        Ok(Some(DockerHooks::new(d, report)?))
    }

    fn runner(
        &self,
        cfg: Option<&Config>,
        repo: Repository,
        sink: Option<Arc<dyn ProgressSink>>,
    ) -> Result<Runner, Failure> {
        let components = match cfg {
            Some(c) => c.build_components(&self.registry)?,
            None => Vec::new(),
        };
        let mut runner = Runner::new(repo, components).with_parallelism(
            cfg.map(|c| c.parallelism)
                .unwrap_or(config::DEFAULT_PARALLELISM),
        );
        if let Some(sink) = sink {
            runner = runner.with_progress(sink);
        }
        Ok(runner)
    }
}

/// The local directory of a repository URL, if it is local.
fn local_path(url: &str) -> Option<PathBuf> {
    let url = url.trim();
    if let Some(rest) = url.strip_prefix("file://") {
        Some(PathBuf::from(rest))
    } else if url.contains("://") {
        None
    } else {
        Some(PathBuf::from(url))
    }
}

// ---------------------------------------------------------------------------------------
// Interruption
// ---------------------------------------------------------------------------------------

/// Resolves when Ctrl-C (SIGINT) or SIGTERM arrives; never if the handlers cannot be set up.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// Run `fut` unless a signal comes first; then drop it and fail with exit code 130.
async fn interruptible<T, F>(fut: F, message: &str) -> Result<T, Failure>
where
    F: Future<Output = Result<T, Failure>>,
{
    tokio::select! {
        r = fut => r,
        _ = shutdown_signal() => Err(Failure::new(INTERRUPTED, message)),
    }
}

/// Like [`interruptible`] for commands that take the repository lock: after an interruption
/// the command's future is dropped (its tasks are aborted), the `[docker]` hooks undo what is
/// still in effect (paused or stopped containers, each reported), and if the lock is still ours
/// it is removed before exiting.
async fn interruptible_locked<T, F>(
    fut: F,
    repo: &Repository,
    hooks: Option<&DockerHooks>,
    message: &str,
) -> Result<T, Failure>
where
    F: Future<Output = Result<T, Failure>>,
{
    let res = {
        let fut = std::pin::pin!(fut);
        tokio::select! {
            r = fut => Some(r),
            _ = shutdown_signal() => None,
        }
        // The command future is dropped here: its JoinSets abort their tasks, and the
        // artifacts they were writing abort their uploads (removing the partial data).
    };
    match res {
        Some(r) => r,
        None => {
            let mut message = message.to_string();
            if let Some(h) = hooks {
                // The hooks print each container they bring back.
                if let Err(e) = amber_dr_core::RunHooks::cleanup(h).await {
                    message.push_str(&format!(
                        "; and some containers could not be brought back: {e}"
                    ));
                }
            }
            if amber_dr_core::uploads::settle(Duration::from_secs(10)).await > 0 {
                message.push_str("; some partial artifacts may remain until the next `prune`");
            }
            release_own_lock(repo).await;
            Err(Failure::new(INTERRUPTED, message))
        }
    }
}

async fn release_own_lock(repo: &Repository) {
    // The lock's Drop releases it in the background; make sure of it before exiting.
    for _ in 0..3 {
        match repo.lock_holder().await {
            Ok(Some(h)) if h.pid == std::process::id() && h.host == host_name() => {
                if let Err(e) = repo.break_lock().await {
                    tracing::warn!(error = %e, "could not remove our repository lock");
                }
            }
            _ => return,
        }
    }
}

// ---------------------------------------------------------------------------------------
// init
// ---------------------------------------------------------------------------------------

fn init(ctx: &Ctx, args: &InitArgs) -> CmdResult {
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
    let cfg = Config::parse(&text, &path, &|_| Some(String::new()))?;
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

async fn doctor(ctx: &Ctx) -> CmdResult {
    let cfg = ctx.load_config(Needs::Config)?;
    let cfg = cfg.as_ref();
    let rc = ctx.repo_config(cfg)?;
    let components = match cfg {
        Some(c) => c.build_components(&ctx.registry)?,
        None => Vec::new(),
    };
    let mut ok = true;

    // The repository.
    let mut repo_json = json!({ "url": rc.url });
    let mut repo_lines = Vec::new();
    let missing_local = local_path(&rc.url).filter(|p| !p.exists());
    if let Some(p) = &missing_local {
        let parent_ok = p
            .parent()
            .map(|d| d.as_os_str().is_empty() || d.exists())
            .unwrap_or(true);
        repo_json["exists"] = json!(false);
        repo_json["reachable"] = json!(parent_ok);
        if parent_ok {
            repo_lines.push(format!(
                "repository {}: does not exist yet; the first backup creates it",
                rc.url
            ));
        } else {
            ok = false;
            repo_lines.push(format!(
                "repository {}: UNREACHABLE: neither it nor its parent directory exists",
                rc.url
            ));
        }
    } else {
        let access = match Repository::open(&rc) {
            Ok(repo) => match repo.check_access().await {
                Ok(()) => Ok(repo),
                Err(e) => Err(Failure::from(e)),
            },
            Err(e) => Err(Failure::from(e)),
        };
        match access {
            Ok(repo) => {
                repo_json["reachable"] = json!(true);
                repo_lines.push(format!("repository {}: reachable", rc.url));
                match repo.lock_holder().await {
                    Ok(Some(h)) => {
                        let stale = h.is_stale_here();
                        repo_lines.push(format!(
                            "  lock: held by {h}{}",
                            if stale {
                                " (stale: that process no longer runs; the next run takes it over)"
                            } else {
                                ""
                            }
                        ));
                        repo_json["lock"] = json!({ "holder": h, "stale": stale });
                    }
                    Ok(None) => {
                        repo_lines.push("  lock: none".to_string());
                        repo_json["lock"] = serde_json::Value::Null;
                    }
                    Err(e) => {
                        let f = Failure::from(e);
                        repo_lines.push(format!("  lock: cannot be read: {f}"));
                        repo_json["lock_error"] = json!(f.message);
                    }
                }
                let (line, enc, enc_ok) = crate::key::doctor_line(&repo).await;
                repo_lines.push(line);
                repo_json["encryption"] = enc;
                ok &= enc_ok;
            }
            Err(f) => {
                ok = false;
                repo_json["reachable"] = json!(false);
                repo_json["error"] = json!(f.message);
                repo_lines.push(format!("repository {}: UNREACHABLE: {f}", rc.url));
            }
        }
    }

    // The components, probed concurrently.
    let mut set = tokio::task::JoinSet::new();
    for (i, c) in components.iter().enumerate() {
        let c = c.clone();
        set.spawn(async move {
            let res = tokio::time::timeout(PROBE_TIMEOUT, c.probe()).await;
            (i, res)
        });
    }
    let mut probes: Vec<Option<Result<Probe, String>>> = vec![None; components.len()];
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok((i, Ok(Ok(p)))) => probes[i] = Some(Ok(p)),
            Ok((i, Ok(Err(e)))) => probes[i] = Some(Err(Failure::from(e).message)),
            Ok((i, Err(_))) => {
                probes[i] = Some(Err(format!(
                    "no answer within {} s",
                    PROBE_TIMEOUT.as_secs()
                )))
            }
            Err(e) => return Err(Failure::failed(format!("a probe task died: {e}"))),
        }
    }
    // The Docker engine and the containers of `[docker]`.
    let mut docker_json = serde_json::Value::Null;
    if let Some(d) = ctx.docker_hooks(cfg)? {
        let res = tokio::time::timeout(PROBE_TIMEOUT, d.check()).await;
        let err = match res {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(Failure::from(e).message),
            Err(_) => Some(format!("no answer within {} s", PROBE_TIMEOUT.as_secs())),
        };
        docker_json = json!({ "socket": d.socket(), "ok": err.is_none(), "error": err });
        match err {
            None => repo_lines.push(format!(
                "docker unix://{}: reachable, every container in [docker] exists",
                d.socket()
            )),
            Some(e) => {
                ok = false;
                repo_lines.push(format!("docker: PROBLEM: {e}"));
            }
        }
    }
    let mut comp_json = Vec::new();
    let mut comp_lines = Vec::new();
    for (c, probe) in components.iter().zip(probes) {
        let probe = probe.unwrap_or_else(|| Err("not probed".into()));
        match probe {
            Ok(p) => {
                if !p.reachable {
                    ok = false;
                }
                comp_lines.push(format!(
                    "component {} ({}): {}",
                    c.name(),
                    c.kind(),
                    if p.reachable {
                        "reachable"
                    } else {
                        "UNREACHABLE"
                    }
                ));
                if let Some(v) = &p.version {
                    comp_lines.push(format!("  version: {v}"));
                }
                if let Some(s) = p.size_estimate {
                    comp_lines.push(format!("  size estimate: {}", human_bytes(s)));
                }
                for (k, v) in &p.details {
                    let v = match v {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    comp_lines.push(format!("  {k}: {v}"));
                }
                for w in &p.warnings {
                    comp_lines.push(format!("  warning: {w}"));
                }
                comp_json.push(json!({
                    "name": c.name(),
                    "kind": c.kind(),
                    "capabilities": c.capabilities(),
                    "reachable": p.reachable,
                    "version": p.version,
                    "size_estimate": p.size_estimate,
                    "details": p.details,
                    "warnings": p.warnings,
                }));
            }
            Err(message) => {
                ok = false;
                comp_lines.push(format!(
                    "component {} ({}): UNREACHABLE: {message}",
                    c.name(),
                    c.kind()
                ));
                comp_json.push(json!({
                    "name": c.name(),
                    "kind": c.kind(),
                    "reachable": false,
                    "error": message,
                }));
            }
        }
    }
    if ctx.out.json {
        ctx.out.json(&json!({
            "ok": ok,
            "repository": repo_json,
            "components": comp_json,
            "docker": docker_json,
            "drivers": ctx.registry.kinds(),
        }));
    } else {
        for l in repo_lines.iter().chain(&comp_lines) {
            ctx.out.line(l);
        }
        if components.is_empty() {
            ctx.out.line("no components configured");
        }
        ctx.out.info(format!(
            "drivers in this build: {}",
            ctx.registry.kinds().join(", ")
        ));
        if !ok {
            ctx.out.note("error: something is unreachable (see above)");
        }
    }
    Ok(if ok { OK } else { FAILURE })
}

// ---------------------------------------------------------------------------------------
// backup
// ---------------------------------------------------------------------------------------

async fn backup(ctx: &Ctx, args: &BackupArgs) -> CmdResult {
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
    let res = interruptible_locked(
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
            Ok(if m.is_complete() { OK } else { FAILURE })
        },
        &repo,
        docker.as_ref(),
        "interrupted: no backup was completed",
    )
    .await;
    if let Some(b) = &bars {
        b.finish();
    }
    res
}

fn print_backup(ctx: &Ctx, m: &Manifest) {
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
    if !m.is_complete() {
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

fn component_summary(rec: &ComponentRecord) -> String {
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
// list
// ---------------------------------------------------------------------------------------

async fn list(ctx: &Ctx) -> CmdResult {
    let cfg = ctx.load_config(Needs::RepoOnly)?;
    let repo = ctx.open_repo(cfg.as_ref(), false)?;
    let entries = repo.list().await?;
    if ctx.out.json {
        let items: Vec<serde_json::Value> = entries.iter().map(entry_json).collect();
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

fn purpose(m: &Manifest) -> &'static str {
    match m.purpose {
        amber_dr_core::BackupPurpose::Backup => "backup",
        amber_dr_core::BackupPurpose::Safety => "safety",
    }
}

fn time_of_id(id: &str) -> Option<String> {
    let head = id.get(..15)?;
    chrono::NaiveDateTime::parse_from_str(head, "%Y%m%d_%H%M%S")
        .ok()
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
}

fn entry_json(e: &BackupEntry) -> serde_json::Value {
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
        "problem": e.problem,
    })
}

// ---------------------------------------------------------------------------------------
// show
// ---------------------------------------------------------------------------------------

/// Read a backup's manifest; a backup directory without one is reported as incomplete.
async fn read_manifest(repo: &Repository, spec: &str) -> Result<Manifest, Failure> {
    let id = repo.resolve(spec).await?;
    Ok(repo.read_manifest(&id).await?)
}

async fn show(ctx: &Ctx, args: &ShowArgs) -> CmdResult {
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

async fn verify(ctx: &Ctx, args: &VerifyArgs) -> CmdResult {
    let cfg = ctx.load_config(Needs::RepoOnly)?;
    let repo = ctx.open_repo(cfg.as_ref(), false)?;
    let runner = ctx.runner(cfg.as_ref(), repo, None)?;
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

fn print_verify_component(out: &Output, name: &str, report: &VerifyReport) {
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

// ---------------------------------------------------------------------------------------
// restore
// ---------------------------------------------------------------------------------------

/// A component whose restore goes to another target (`restore --target NAME=VALUE`) or covers
/// only some of its parts (`restore --only NAME/PART`).
#[derive(Debug)]
struct Overridden {
    inner: Arc<dyn Component>,
    target: Option<String>,
    items: Vec<String>,
}

#[async_trait]
impl Component for Overridden {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn probe(&self) -> amber_dr_core::Result<Probe> {
        self.inner.probe().await
    }
    async fn snapshot(&self, cx: &SnapshotContext) -> amber_dr_core::Result<ComponentRecord> {
        self.inner.snapshot(cx).await
    }
    async fn verify(
        &self,
        cx: &VerifyContext,
        record: &ComponentRecord,
        level: VerifyLevel,
    ) -> amber_dr_core::Result<VerifyReport> {
        self.inner.verify(cx, record, level).await
    }
    async fn restore(
        &self,
        cx: &RestoreContext,
        record: &ComponentRecord,
        opts: &RestoreOptions,
    ) -> amber_dr_core::Result<RestoreReport> {
        self.inner.restore(cx, record, &self.options(opts)).await
    }
    fn legacy_files(&self) -> Vec<&'static str> {
        self.inner.legacy_files()
    }
    fn legacy_hints(&self) -> Vec<(&'static str, String)> {
        self.inner.legacy_hints()
    }
    async fn check_restore_legacy(
        &self,
        file: &Path,
        opts: &RestoreOptions,
    ) -> amber_dr_core::Result<()> {
        self.inner
            .check_restore_legacy(file, &self.options(opts))
            .await
    }
    fn restore_relations(&self) -> Vec<amber_dr_core::RestoreRelation> {
        self.inner.restore_relations()
    }
    async fn restore_legacy(
        &self,
        cx: &RestoreContext,
        file: &Path,
        opts: &RestoreOptions,
    ) -> amber_dr_core::Result<RestoreReport> {
        self.inner
            .restore_legacy(cx, file, &self.options(opts))
            .await
    }
}

impl Overridden {
    fn options(&self, opts: &RestoreOptions) -> RestoreOptions {
        let mut opts = opts.clone();
        if self.target.is_some() {
            opts.target = self.target.clone();
        }
        if !self.items.is_empty() {
            opts.items = self.items.clone();
        }
        opts
    }
}

/// What `restore` restores from.
enum RestoreSource {
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

async fn restore(ctx: &Ctx, args: &RestoreArgs) -> CmdResult {
    // A runbook backup directory (`./backups/YYYYMMDD_HHMMSS/` with postgres.sql, ...).
    let legacy_dir = (args.backup != "latest"
        && !looks_like_id(&args.backup)
        && Path::new(&args.backup).is_dir())
    .then(|| PathBuf::from(&args.backup));
    let cfg = ctx.load_config(Needs::Config)?;
    // A runbook restore still takes its safety backup into the repository, so it needs one
    // (created if it is a new local directory).
    let repo = ctx.open_repo(cfg.as_ref(), legacy_dir.is_some())?;
    let mut runner = ctx.runner(cfg.as_ref(), repo.clone(), None)?;
    let docker = ctx.docker_hooks(cfg.as_ref())?;

    // Resolve and plan.
    let selection = args.select.selection();
    let (source, names) = match &legacy_dir {
        Some(dir) => {
            let lp = amber_dr_core::LegacyPlan::inspect(dir, runner.components())?;
            let names: Vec<String> = lp
                .select(&selection)?
                .iter()
                .filter_map(|p| p.component.clone())
                .collect();
            (RestoreSource::Legacy(lp), names)
        }
        None => {
            let manifest = read_manifest(&repo, &args.backup).await?;
            let names = selection.apply(manifest.components.keys().map(String::as_str))?;
            (RestoreSource::Backup(Box::new(manifest)), names)
        }
    };
    let mut retargeted = Vec::new();
    let items = args.select.items();
    if !args.target.is_empty() || !items.is_empty() {
        let mut components = runner.components().to_vec();
        for (name, parts) in &items {
            let Some(slot) = components.iter_mut().find(|c| c.name() == name) else {
                continue; // the runner reports a component missing from the config
            };
            *slot = Arc::new(Overridden {
                inner: slot.clone(),
                target: None,
                items: parts.clone(),
            });
        }
        for (name, target) in &args.target {
            if !names.contains(name) {
                return Err(Failure::usage(format!(
                    "--target {name}=...: `{name}` is not among the components to restore ({})",
                    names.join(", ")
                )));
            }
            let Some(slot) = components.iter_mut().find(|c| c.name() == name) else {
                continue; // the runner reports a component missing from the config
            };
            if !slot.capabilities().restore_to_target {
                return Err(Failure::usage(format!(
                    "--target {name}=...: the {} driver of `{name}` cannot restore into another target",
                    slot.kind()
                )));
            }
            *slot = Arc::new(Overridden {
                inner: slot.clone(),
                target: Some(target.clone()),
                items: items.get(name).cloned().unwrap_or_default(),
            });
            retargeted.push(name.clone());
        }
        runner = Runner::new(repo.clone(), components).with_parallelism(
            cfg.as_ref()
                .map(|c| c.parallelism)
                .unwrap_or(config::DEFAULT_PARALLELISM),
        );
    }
    let safety = !args.no_safety_backup;
    let target_of = |n: &str| {
        args.target
            .iter()
            .find(|(t, _)| t == n)
            .map(|(_, v)| v.clone())
    };
    let out = &ctx.out;
    let plan_json = match &source {
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
    };
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
        safety_backup: safety && !dry_run,
    };
    let dry = interruptible(
        async { Ok(source.restore(&runner, &plan(true)).await?) },
        "interrupted: nothing was restored",
    )
    .await?;
    print_restore_components(out, &dry, &args.target);
    out.line(format!(
        "  safety backup of the current state first: {}",
        match (safety, args.dry_run) {
            (true, false) => "yes",
            (true, true) => "yes (not in a dry run)",
            (false, _) => "NO (--no-safety-backup)",
        }
    ));
    if let Some(d) = cfg.as_ref().and_then(|c| c.docker.as_ref()) {
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
    };
    if let Some(d) = &docker {
        runner = runner.with_hooks(Arc::new(d.clone()));
    }
    let res = interruptible_locked(
        async { Ok(source.restore(&runner, &plan(false)).await?) },
        &repo,
        docker.as_ref(),
        "interrupted: the restore did not finish; the components being restored may be incomplete (see `amber-dr list` for a safety backup to restore from)",
    )
    .await;
    if let Some(b) = &bars {
        b.finish();
    }
    let outcome = res?;
    let ok = outcome.is_ok();
    let rollback_names: Vec<&str> = outcome
        .components
        .iter()
        .map(|c| c.component.as_str())
        .filter(|n| !retargeted.iter().any(|r| r == n))
        .collect();
    let rollback = outcome
        .safety_backup
        .as_ref()
        .filter(|_| !rollback_names.is_empty())
        .map(|id| {
            hints::rollback_command(&ctx.config_path(), ctx.repo.as_deref(), id, &rollback_names)
        });
    if out.json {
        out.json(&json!({
            "ok": ok,
            "dry_run": false,
            "plan": plan_json,
            "outcome": outcome,
            "rollback": rollback,
        }));
    } else {
        out.line("");
        print_restore_components(out, &outcome, &args.target);
        for f in &outcome.forced {
            out.note(format!("warning: restored anyway (--force): {f}"));
        }
        if let Some(id) = &outcome.safety_backup {
            out.line(format!("safety backup taken before the restore: {id}"));
        }
        if let Some(cmd) = &rollback {
            out.line(format!("to roll back: {cmd}"));
        }
        if ok {
            out.info(format!("restored backup {}", outcome.id));
        } else {
            let failed: Vec<&str> = outcome
                .components
                .iter()
                .filter(|c| c.error.is_some())
                .map(|c| c.component.as_str())
                .collect();
            if !failed.is_empty() {
                out.note(format!(
                    "error: restore of {} failed (see above)",
                    failed.join(", ")
                ));
            }
            for e in &outcome.hook_errors {
                out.note(format!("error: after the restore: {e}"));
            }
        }
    }
    Ok(if ok { OK } else { FAILURE })
}

fn print_restore_components(out: &Output, outcome: &RestoreOutcome, targets: &[(String, String)]) {
    for c in &outcome.components {
        let target = targets
            .iter()
            .find(|(n, _)| *n == c.component)
            .map(|(_, t)| format!(" into target `{t}`"))
            .unwrap_or_default();
        match (&c.report, &c.error) {
            (_, Some(e)) => {
                out.line(format!(
                    "  {} ({}){target}: FAILED: {e}",
                    c.component, c.kind
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
            (None, None) => {}
        }
    }
}

// ---------------------------------------------------------------------------------------
// prune
// ---------------------------------------------------------------------------------------

async fn prune(ctx: &Ctx, args: &PruneArgs) -> CmdResult {
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
    let runner = Runner::new(repo.clone(), Vec::new());
    let o = interruptible_locked(
        async { Ok(runner.prune(&policy, args.dry_run).await?) },
        &repo,
        None,
        "interrupted: prune did not finish; run it again (a backup whose manifest was deleted is listed as incomplete and deleted by the next prune)",
    )
    .await?;
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

// ---------------------------------------------------------------------------------------
// unlock
// ---------------------------------------------------------------------------------------

async fn unlock(ctx: &Ctx) -> CmdResult {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_paths() {
        assert_eq!(local_path("./b"), Some(PathBuf::from("./b")));
        assert_eq!(local_path("file:///srv/b"), Some(PathBuf::from("/srv/b")));
        assert_eq!(local_path("s3://bucket/x"), None);
    }

    #[test]
    fn time_of_ids() {
        assert_eq!(
            time_of_id("20260102_030405_2").as_deref(),
            Some("2026-01-02 03:04:05")
        );
        assert_eq!(time_of_id("x"), None);
    }

    #[test]
    fn usage_is_exit_2() {
        assert_eq!(Failure::usage("x").code, crate::exit::USAGE);
    }
}

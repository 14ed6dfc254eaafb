//! One function per command. Each prints its own result (human or JSON) and returns the exit
//! code; errors travel up as [`Failure`] and are printed by [`crate::run`].

use std::future::Future;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use amber_dr_core::repository::{host_name, looks_like_id};
use amber_dr_core::{
    BackupEntry, BackupOptions, Capabilities, CommitState, ComponentPlan, ComponentRecord,
    Manifest, ProgressSink, Registry, Repository, RepositoryConfig, RestoreOptions, RestoreOutcome,
    RestorePlanOptions, RetentionPolicy, Runner, Selection, VerifyLevel, VerifyReport,
};
use serde_json::json;

use crate::args::{
    BackupArgs, Cli, Command, InitArgs, PruneArgs, RestoreArgs, ShowArgs, VerifyArgs,
    DEFAULT_CONFIG,
};
use crate::config;
use crate::exit::{restore_plan_code, Failure, DAMAGE, DANGLING, FAILURE, INTERRUPTED, OK};
use crate::hints;
use crate::output::{self, human_bytes, BarSink, Output};

mod backup;
mod drill;
mod inspect;
mod restore;
mod setup;

use amber_dr_core::config::Config;
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
    /// Cancelled by Ctrl-C or SIGTERM; handed to every runner.
    pub cancel: amber_dr_core::cancel::CancellationToken,
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
        cancel: amber_dr_core::cancel::cancel_on_signals(),
    };
    match cli.command {
        Command::Init(a) => setup::init(&ctx, &a),
        Command::Doctor => interruptible(setup::doctor(&ctx), "interrupted").await,
        Command::Backup(a) => {
            let res = backup::backup(&ctx, &a).await;
            ctx.metrics_failure("backup", &res);
            res
        }
        Command::List => interruptible(inspect::list(&ctx), "interrupted").await,
        Command::Show(a) => interruptible(inspect::show(&ctx, &a), "interrupted").await,
        Command::Verify(a) => {
            let res = interruptible(
                inspect::verify(&ctx, &a),
                "interrupted: verification did not finish",
            )
            .await;
            ctx.metrics_failure("verify", &res);
            res
        }
        Command::Restore(a) => restore::restore(&ctx, &a).await,
        Command::Prune(a) => backup::prune(&ctx, &a).await,
        Command::Drill(a) => {
            let res = drill::drill(&ctx, &a).await;
            ctx.metrics_failure("drill", &res);
            res
        }
        Command::Report(a) => interruptible(drill::report(&ctx, &a), "interrupted").await,
        Command::Unlock => interruptible(setup::unlock(&ctx), "interrupted").await,
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
        let cfg = config::loader().load(&path)?;
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
            if let Some(path) = amber_dr_core::doctor::local_path(&rc.url) {
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
        let Some(d) = cfg.map(config::docker).transpose()?.flatten() else {
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
        let references = cfg.map(|c| c.references.clone()).unwrap_or_default();
        let mut runner = Runner::new(repo, components)
            .with_parallelism(
                cfg.map(|c| c.parallelism)
                    .unwrap_or(config::DEFAULT_PARALLELISM),
            )
            .with_cancellation(self.cancel.clone())
            .with_runbook_files(runbook_files());
        if let Some(sink) = sink {
            runner = runner.with_progress(sink);
        }
        if !references.is_empty() {
            let source = cfg.map(Config::source).unwrap_or_default();
            runner = runner.with_references(references).map_err(|e| match e {
                amber_dr_core::Error::Config { location, message } => {
                    amber_dr_core::Error::Config {
                        location: format!("{source}: {location}"),
                        message,
                    }
                }
                e => e,
            })?;
        }
        Ok(runner)
    }
}

/// The reference checks of a backup, verify or restore: one line each (to stdout when one
/// dangles or could not be checked).
pub(super) fn print_references(out: &Output, checks: &[amber_dr_core::references::ReferenceCheck]) {
    if checks.is_empty() {
        return;
    }
    let dangling = checks.iter().filter(|c| !c.resolves()).count();
    out.info(format!(
        "  references: {} declared, {}",
        checks.len(),
        if dangling == 0 {
            "all resolve".to_string()
        } else {
            format!("{dangling} do NOT resolve")
        }
    ));
    for c in checks {
        let state = if c.resolves() {
            "ok"
        } else if c.error.is_some() {
            "NOT CHECKED"
        } else {
            "DANGLING"
        };
        let line = format!("    {state:<11} {}", c.summary());
        if c.resolves() {
            out.info(line);
        } else {
            out.line(line);
        }
    }
}

/// The files of a complete runbook backup directory, named by the drivers that restore them.
fn runbook_files() -> Vec<&'static str> {
    vec![
        amber_dr_postgres::RUNBOOK_FILE,
        amber_dr_neo4j::RUNBOOK_FILE,
        amber_dr_minio::RUNBOOK_FILE,
        amber_dr_files::RUNBOOK_FILE,
    ]
}

// ---------------------------------------------------------------------------------------
// Interruption
// ---------------------------------------------------------------------------------------

/// Run `fut` unless a signal comes first; then drop it and fail with exit code 130.
async fn interruptible<T, F>(fut: F, message: &str) -> Result<T, Failure>
where
    F: Future<Output = Result<T, Failure>>,
{
    tokio::select! {
        r = fut => r,
        _ = amber_dr_core::cancel::shutdown_signal() => Err(Failure::new(INTERRUPTED, message)),
    }
}

/// The result of a command whose runner was cancelled by Ctrl-C or SIGTERM: core has dropped
/// the work, undone the `[docker]` hooks (each container brought back is printed) and released
/// the repository lock; `message` says what that means for this command.
fn interrupted_as<T>(res: Result<T, Failure>, message: &str) -> Result<T, Failure> {
    match res {
        Err(f) if f.code == INTERRUPTED => {
            let mut message = message.to_string();
            if amber_dr_core::uploads::open_uploads() > 0 {
                message.push_str("; some partial artifacts may remain until the next `prune`");
            }
            Err(Failure::new(INTERRUPTED, message))
        }
        res => res,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_of_ids() {
        assert_eq!(
            inspect::time_of_id("20260102_030405_2").as_deref(),
            Some("2026-01-02 03:04:05")
        );
        assert_eq!(inspect::time_of_id("x"), None);
    }

    #[test]
    fn usage_is_exit_2() {
        assert_eq!(Failure::usage("x").code, crate::exit::USAGE);
    }
}

//! Running external tools (pg_dump, pg_restore, psql, ...) with their input and output
//! streamed, never held in memory, and the tail of their stderr kept for messages — written
//! once here for every driver.
//!
//! A driver describes the invocation as a [`ToolCommand`] and asks [`runner`] where to run it:
//! on this host ([`LocalRunner`], a child process), or inside a running container when its
//! config names one (e.g. Postgres's `via_container`). The container variant is supplied by a
//! [`ContainerRuntime`] that the program registers at start with
//! [`register_container_runtime`] (`amber-dr-docker` provides the Docker one:
//! `amber_dr_docker::register_tool_runner()`), so that a driver never names a container engine.
//! Both variants implement [`ToolRunner`] and behave alike:
//!
//! - the input (if any) is read to its end even when the tool stops reading early, so that an
//!   artifact reader's length and hash checks run; an error of the input comes first;
//! - stdout is streamed into the caller's writer (or discarded);
//! - a tool that exits unsuccessfully is an error that carries the tail of its stderr
//!   ([`STDERR_TAIL`] bytes); a successful run returns that tail (for warnings).

mod local;
mod stream;

use std::ffi::OsStr;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::artifact::ArtifactWriter;
use crate::manifest::ArtifactRecord;
use crate::{Error, Result};

pub use local::LocalRunner;
pub use stream::{feed_input, StderrTail};

/// How much of a tool's stderr is kept for messages.
pub const STDERR_TAIL: usize = 16 * 1024;
/// Copy buffer between a tool and an artifact.
pub const COPY_BUFFER: usize = 256 * 1024;

/// A tool with its arguments and environment, not started yet. Arguments and values are kept
/// as (lossily decoded) strings: they must also travel to a container.
#[derive(Debug, Clone, Default)]
pub struct ToolCommand {
    program: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    env_remove: Vec<String>,
}

impl ToolCommand {
    /// Run `program` (a path or a name looked up in `PATH` where the tool runs).
    pub fn new(program: impl AsRef<OsStr>) -> Self {
        Self {
            program: program.as_ref().to_string_lossy().into_owned(),
            ..Self::default()
        }
    }

    /// Add an argument.
    pub fn arg(&mut self, a: impl AsRef<OsStr>) -> &mut Self {
        self.args.push(a.as_ref().to_string_lossy().into_owned());
        self
    }

    /// Add arguments.
    pub fn args<I, S>(&mut self, args: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        for a in args {
            self.arg(a);
        }
        self
    }

    /// Set an environment variable for the tool.
    pub fn env(&mut self, k: impl Into<String>, v: impl AsRef<OsStr>) -> &mut Self {
        self.env
            .push((k.into(), v.as_ref().to_string_lossy().into_owned()));
        self
    }

    /// Remove a variable of this program's environment from the tool's (local runs: a tool in
    /// a container starts from the container's environment, not this program's).
    pub fn env_remove(&mut self, k: impl Into<String>) -> &mut Self {
        self.env_remove.push(k.into());
        self
    }

    /// The program.
    pub fn program(&self) -> &str {
        &self.program
    }

    /// The arguments, without the program.
    pub fn get_args(&self) -> &[String] {
        &self.args
    }

    /// The variables set, in order.
    pub fn get_env(&self) -> &[(String, String)] {
        &self.env
    }

    /// The variables removed.
    pub fn get_env_removed(&self) -> &[String] {
        &self.env_remove
    }

    /// The program followed by its arguments.
    pub fn argv(&self) -> Vec<String> {
        std::iter::once(self.program.clone())
            .chain(self.args.iter().cloned())
            .collect()
    }
}

/// Somewhere tools run: this host, or a container. See the [module](self) docs for the
/// behaviour every runner keeps.
#[async_trait]
pub trait ToolRunner: Send + Sync + std::fmt::Debug {
    /// Where the tools run, for messages: `this host`, `container `NAME``.
    fn location(&self) -> String;

    /// True when the tools see this host's files (a path on this host can be given to them).
    fn sees_host_files(&self) -> bool;

    /// Run `cmd`: `input` (if any) streamed into its stdin and closed at its end; its stdout
    /// streamed into `out` (discarded when `None`). `what` names the run in errors
    /// (`pg_dump of database `app``). Fails with the tail of stderr when the tool fails;
    /// returns that tail otherwise.
    async fn run(
        &self,
        cmd: &ToolCommand,
        input: Option<&mut (dyn AsyncRead + Unpin + Send)>,
        out: Option<&mut (dyn AsyncWrite + Unpin + Send)>,
        what: &str,
    ) -> Result<String>;
}

/// What a finished tool printed on stderr (its tail), for warnings.
#[derive(Debug, Clone, Default)]
pub struct ToolOutput {
    /// The last bytes of stderr, lossily decoded.
    pub stderr: String,
}

/// Supplies [`ToolRunner`]s that run tools inside a container of a container engine. Registered
/// once per program with [`register_container_runtime`].
pub trait ContainerRuntime: Send + Sync + std::fmt::Debug {
    /// A runner for `container`, through the engine at `engine` (the driver config's engine
    /// address, e.g. `unix:///var/run/docker.sock`; `None`: the runtime's default). Fails on a
    /// malformed engine address; an unreachable engine or a missing container fails the first
    /// run.
    fn runner(&self, engine: Option<&str>, container: &str) -> Result<Arc<dyn ToolRunner>>;
}

static CONTAINER_RUNTIME: RwLock<Option<Arc<dyn ContainerRuntime>>> = RwLock::new(None);

/// Make `runtime` the one [`runner`] uses for tools in containers (replaces an earlier one).
pub fn register_container_runtime(runtime: Arc<dyn ContainerRuntime>) {
    let mut slot = CONTAINER_RUNTIME
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    *slot = Some(runtime);
}

/// Where a driver's tools run: inside `container` (through the registered
/// [`ContainerRuntime`], at engine address `engine`) when the driver's config names one, else
/// on this host. `setting` names the config key that named the container, for the error when
/// no runtime is registered.
pub fn runner(
    container: Option<&str>,
    engine: Option<&str>,
    setting: &str,
) -> Result<Arc<dyn ToolRunner>> {
    let Some(container) = container else {
        return Ok(Arc::new(LocalRunner));
    };
    let runtime = CONTAINER_RUNTIME
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone();
    match runtime {
        Some(rt) => rt.runner(engine, container),
        None => Err(Error::config(
            setting,
            format!(
                "running tools in container `{container}` needs a container runtime, and this program registered none (amber-dr-docker provides one: amber_dr_docker::register_tool_runner())"
            ),
        )),
    }
}

/// Run `cmd` on `runner` with its stdout streamed into `writer`; the artifact is completed only
/// if the tool succeeds (otherwise it is abandoned and the tool's stderr is in the error).
pub async fn stdout_into_artifact(
    runner: &dyn ToolRunner,
    cmd: &ToolCommand,
    mut writer: ArtifactWriter,
    what: &str,
) -> Result<(ArtifactRecord, ToolOutput)> {
    let stderr = runner.run(cmd, None, Some(&mut writer), what).await?;
    let rec = writer.finish().await?;
    Ok((rec, ToolOutput { stderr }))
}

/// Run `cmd` on `runner` with its stdout streamed into any writer (e.g. an artifact writer
/// wrapped by a driver that looks at the bytes as they pass). Fails if the tool fails; the
/// caller completes or abandons what it wrote into.
pub async fn stdout_into(
    runner: &dyn ToolRunner,
    cmd: &ToolCommand,
    writer: &mut (dyn AsyncWrite + Unpin + Send),
    what: &str,
) -> Result<ToolOutput> {
    let stderr = runner.run(cmd, None, Some(writer), what).await?;
    Ok(ToolOutput { stderr })
}

/// Run `cmd` on `runner` with `input` streamed into its stdin (read to its end, see the
/// [module](self) docs); stdout is discarded.
pub async fn stdin_from(
    runner: &dyn ToolRunner,
    cmd: &ToolCommand,
    mut input: impl AsyncRead + Unpin + Send,
    what: &str,
) -> Result<ToolOutput> {
    let stderr = runner.run(cmd, Some(&mut input), None, what).await?;
    Ok(ToolOutput { stderr })
}

/// Run `cmd` on `runner` to completion and return its stdout (short outputs only, such as
/// `--version`).
pub async fn output(runner: &dyn ToolRunner, cmd: &ToolCommand, what: &str) -> Result<String> {
    let mut out = Vec::new();
    runner.run(cmd, None, Some(&mut out), what).await?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

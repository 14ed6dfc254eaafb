//! [`ContainerExec`]: run a tool inside a running container through the Docker exec API,
//! with its stdin and stdout streamed (never held in memory) — the container variant of core's
//! [`ToolRunner`], supplied to the drivers through [`DockerRuntime`] (see
//! [`crate::register_tool_runner`]).

use std::sync::Arc;

use amber_dr_core::tool::{feed_input, ContainerRuntime, StderrTail, ToolCommand, ToolRunner};
use amber_dr_core::{async_trait, Error, Result};
use bollard::container::LogOutput;
use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::ExecConfig;
use bollard::Docker;
use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::OnceCell;

use crate::config::DockerConfig;

/// Runs commands in one container (`docker exec`, through the API).
#[derive(Debug, Clone)]
pub struct ContainerExec {
    socket: String,
    container: String,
    client: Arc<OnceCell<Docker>>,
}

impl ContainerExec {
    /// Commands in `container`, through the engine at `host` (as `[docker] host`: default
    /// `$DOCKER_HOST` if unix://, else `/var/run/docker.sock`).
    pub fn new(host: Option<String>, container: impl Into<String>) -> Result<Self> {
        let cfg = DockerConfig {
            host,
            ..Default::default()
        };
        let socket = cfg
            .socket_path()
            .map_err(|m| Error::config("docker host", m))?;
        Ok(Self {
            socket,
            container: container.into(),
            client: Arc::default(),
        })
    }

    /// The container.
    pub fn container(&self) -> &str {
        &self.container
    }

    fn err(&self, what: impl std::fmt::Display) -> Error {
        Error::Other(format!(
            "docker (unix://{}), container `{}`: {what}",
            self.socket, self.container
        ))
    }

    async fn client(&self) -> Result<&Docker> {
        self.client
            .get_or_try_init(|| crate::hooks::connect(&self.socket))
            .await
    }
}

#[async_trait]
impl ToolRunner for ContainerExec {
    fn location(&self) -> String {
        format!("container `{}`", self.container)
    }

    /// The container has its own filesystem.
    fn sees_host_files(&self) -> bool {
        false
    }

    /// `cmd` run in the container (`docker exec`): its variables set there (those it removes
    /// are this host's and do not apply), `input` streamed into its stdin and closed at its
    /// end, its stdout streamed into `out`. Fails, with the tail of the tool's stderr, when it
    /// exits with a non-zero code.
    async fn run(
        &self,
        cmd: &ToolCommand,
        input: Option<&mut (dyn AsyncRead + Unpin + Send)>,
        out: Option<&mut (dyn AsyncWrite + Unpin + Send)>,
        what: &str,
    ) -> Result<String> {
        let argv = cmd.argv();
        let env: Vec<String> = cmd
            .get_env()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let docker = self.client().await?;
        let created = docker
            .create_exec(
                &self.container,
                ExecConfig {
                    attach_stdin: Some(input.is_some()),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    env: Some(env),
                    cmd: Some(argv),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| self.err(format!("cannot run {what}: {e}")))?;
        let started = docker
            .start_exec(
                &created.id,
                Some(StartExecOptions {
                    detach: false,
                    ..Default::default()
                }),
            )
            .await
            .map_err(|e| self.err(format!("cannot start {what}: {e}")))?;
        let StartExecResults::Attached {
            mut output,
            input: mut sink,
        } = started
        else {
            return Err(self.err(format!("{what}: the engine did not attach")));
        };

        let feed = async {
            match input {
                Some(input) => feed_input(input, &mut sink, what).await,
                None => Ok(()),
            }
        };
        let drain = async {
            let mut out = out;
            let mut tail = StderrTail::default();
            while let Some(item) = output.next().await {
                match item.map_err(|e| self.err(format!("{what}: reading its output: {e}")))? {
                    LogOutput::StdOut { message } => {
                        if let Some(out) = out.as_mut() {
                            out.write_all(&message)
                                .await
                                .map_err(|e| Error::from_io("stream output of", what, e))?;
                        }
                    }
                    LogOutput::StdErr { message } => tail.push(&message),
                    _ => {}
                }
            }
            if let Some(out) = out.as_mut() {
                out.flush()
                    .await
                    .map_err(|e| Error::from_io("stream output of", what, e))?;
            }
            Ok::<String, Error>(tail.finish())
        };
        let (fed, drained) = tokio::join!(feed, drain);
        fed?;
        let stderr = drained?;
        let info = docker
            .inspect_exec(&created.id)
            .await
            .map_err(|e| self.err(format!("{what}: {e}")))?;
        match info.exit_code {
            Some(0) => Ok(stderr),
            code => Err(self.err(format!(
                "{what} failed (exit code {}){}",
                code.map(|c| c.to_string())
                    .unwrap_or_else(|| "unknown".into()),
                if stderr.is_empty() {
                    String::new()
                } else {
                    format!(": {stderr}")
                }
            ))),
        }
    }
}

/// The Docker [`ContainerRuntime`]: tools in containers of a Docker engine, through its exec
/// API. Registered by [`crate::register_tool_runner`].
#[derive(Debug, Clone, Copy, Default)]
pub struct DockerRuntime;

impl ContainerRuntime for DockerRuntime {
    /// A [`ContainerExec`] for `container` through the engine at `engine` (as `[docker] host`:
    /// default `$DOCKER_HOST` if unix://, else `/var/run/docker.sock`).
    fn runner(&self, engine: Option<&str>, container: &str) -> Result<Arc<dyn ToolRunner>> {
        Ok(Arc::new(ContainerExec::new(
            engine.map(str::to_string),
            container,
        )?))
    }
}

//! [`ContainerExec`]: run a tool inside a running container through the Docker exec API,
//! with its stdin and stdout streamed (never held in memory).

use std::sync::Arc;

use amber_dr_core::{Error, Result};
use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::ExecConfig;
use bollard::Docker;
use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::OnceCell;

use crate::config::DockerConfig;

/// How much of a tool's stderr is kept for messages.
const STDERR_TAIL: usize = 4096;

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

    /// Run `argv` with `env` (`KEY=value`) in the container: `input` (if any) streamed into
    /// its stdin and closed at its end, its stdout streamed into `out`. The input is read to
    /// its end even when the tool stops reading, and its errors come first. Fails, with the
    /// tail of the tool's stderr, when it exits with a non-zero code. Returns that tail.
    pub async fn run(
        &self,
        argv: &[String],
        env: &[String],
        input: Option<&mut (dyn AsyncRead + Unpin + Send)>,
        out: &mut (dyn AsyncWrite + Unpin + Send),
        what: &str,
    ) -> Result<String> {
        let docker = self.client().await?;
        let created = docker
            .create_exec(
                &self.container,
                ExecConfig {
                    attach_stdin: Some(input.is_some()),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    env: Some(env.to_vec()),
                    cmd: Some(argv.to_vec()),
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
            let Some(input) = input else {
                return Ok(());
            };
            let mut buf = vec![0u8; 256 * 1024];
            let mut open = true;
            loop {
                let n = match input.read(&mut buf).await {
                    Ok(n) => n,
                    Err(e) => {
                        // Close the tool's stdin so that it ends (on a truncated input)
                        // and the output stream with it.
                        let _ = sink.shutdown().await;
                        return Err(Error::from_io("read input of", what, e));
                    }
                };
                if n == 0 {
                    break;
                }
                if open && sink.write_all(&buf[..n]).await.is_err() {
                    // The tool stopped reading: keep draining the input for its checks.
                    open = false;
                }
            }
            if open {
                let _ = sink.shutdown().await;
            }
            Ok::<(), Error>(())
        };
        let drain = async {
            let mut tail: Vec<u8> = Vec::new();
            while let Some(item) = output.next().await {
                match item.map_err(|e| self.err(format!("{what}: reading its output: {e}")))? {
                    bollard::container::LogOutput::StdOut { message } => out
                        .write_all(&message)
                        .await
                        .map_err(|e| Error::from_io("stream output of", what, e))?,
                    bollard::container::LogOutput::StdErr { message } => {
                        tail.extend_from_slice(&message);
                        if tail.len() > STDERR_TAIL {
                            tail.drain(..tail.len() - STDERR_TAIL);
                        }
                    }
                    _ => {}
                }
            }
            out.flush()
                .await
                .map_err(|e| Error::from_io("stream output of", what, e))?;
            Ok::<String, Error>(String::from_utf8_lossy(&tail).trim().to_string())
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

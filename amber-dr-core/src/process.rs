//! Running external tools (pg_dump, pg_restore, ...) with their output streamed into an
//! artifact, or an artifact streamed into their input. Never buffers a stream; keeps only the
//! tail of stderr for the error message.

use std::process::Stdio;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

use crate::artifact::ArtifactWriter;
use crate::manifest::ArtifactRecord;
use crate::{Error, Result};

/// How much of a tool's stderr is kept for messages.
const STDERR_TAIL: usize = 16 * 1024;
/// Copy buffer between a tool and an artifact.
const COPY_BUFFER: usize = 256 * 1024;

/// What a finished tool printed on stderr (its tail), for warnings.
#[derive(Debug, Clone, Default)]
pub struct ToolOutput {
    /// The last bytes of stderr, lossily decoded.
    pub stderr: String,
}

fn spawn(cmd: &mut Command, what: &str, stdin: bool, stdout: bool) -> Result<Child> {
    cmd.stdin(if stdin { Stdio::piped() } else { Stdio::null() })
        .stdout(if stdout {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd.spawn()
        .map_err(|e| Error::Other(format!("cannot start {what}: {e}")))
}

/// Collect the tail of a child's stderr.
fn stderr_task(child: &mut Child) -> tokio::task::JoinHandle<String> {
    let stderr = child.stderr.take();
    tokio::spawn(async move {
        let Some(mut s) = stderr else {
            return String::new();
        };
        let mut tail: Vec<u8> = Vec::new();
        let mut buf = vec![0u8; 8192];
        while let Ok(n) = s.read(&mut buf).await {
            if n == 0 {
                break;
            }
            tail.extend_from_slice(&buf[..n]);
            if tail.len() > 2 * STDERR_TAIL {
                tail.drain(..tail.len() - STDERR_TAIL);
            }
        }
        if tail.len() > STDERR_TAIL {
            tail.drain(..tail.len() - STDERR_TAIL);
        }
        String::from_utf8_lossy(&tail).trim().to_string()
    })
}

async fn finish(
    mut child: Child,
    stderr: tokio::task::JoinHandle<String>,
    what: &str,
) -> Result<ToolOutput> {
    let status = child
        .wait()
        .await
        .map_err(|e| Error::Other(format!("{what}: cannot wait for the process: {e}")))?;
    let stderr = stderr.await.unwrap_or_default();
    if !status.success() {
        return Err(Error::Other(format!(
            "{what} failed ({status}){}",
            if stderr.is_empty() {
                String::new()
            } else {
                format!(": {stderr}")
            }
        )));
    }
    Ok(ToolOutput { stderr })
}

/// Run `cmd` and stream its stdout into `writer`; the artifact is completed only if the tool
/// exits successfully (otherwise it is abandoned and the tool's stderr is in the error).
pub async fn stdout_into_artifact(
    cmd: Command,
    mut writer: ArtifactWriter,
    what: &str,
) -> Result<(ArtifactRecord, ToolOutput)> {
    let out = stdout_into(cmd, &mut writer, what).await?;
    let rec = writer.finish().await?;
    Ok((rec, out))
}

/// Run `cmd` and stream its stdout into any writer (e.g. an artifact writer wrapped by a
/// driver that looks at the bytes as they pass). Fails if the tool fails; the caller completes
/// or abandons what it wrote into.
pub async fn stdout_into<W: tokio::io::AsyncWrite + Unpin + ?Sized>(
    mut cmd: Command,
    writer: &mut W,
    what: &str,
) -> Result<ToolOutput> {
    let mut child = spawn(&mut cmd, what, false, true)?;
    let stderr = stderr_task(&mut child);
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| Error::Other(format!("{what}: no stdout")))?;
    let mut reader = BufReader::with_capacity(COPY_BUFFER, stdout);
    let copied = tokio::io::copy_buf(&mut reader, writer).await;
    if let Err(e) = copied {
        let _ = child.kill().await;
        let err = finish(child, stderr, what).await.err();
        return Err(err.unwrap_or_else(|| Error::from_io("stream output of", what, e)));
    }
    finish(child, stderr, what).await
}

/// Run `cmd` with `input` streamed into its stdin. The input is always read to its end, even
/// when the tool stops reading early, so that an artifact reader's checks run. Errors of the
/// input (damage) take precedence over the tool's own failure.
pub async fn stdin_from<R: AsyncRead + Unpin>(
    mut cmd: Command,
    mut input: R,
    what: &str,
) -> Result<ToolOutput> {
    let mut child = spawn(&mut cmd, what, true, false)?;
    let stderr = stderr_task(&mut child);
    let mut stdin = child.stdin.take();
    let mut buf = vec![0u8; COPY_BUFFER];
    loop {
        let n = match input.read(&mut buf).await {
            Ok(n) => n,
            Err(e) => {
                drop(stdin);
                let _ = child.kill().await;
                let _ = child.wait().await;
                return Err(Error::from_io("read input of", what, e));
            }
        };
        if n == 0 {
            break;
        }
        if let Some(s) = stdin.as_mut() {
            if s.write_all(&buf[..n]).await.is_err() {
                // The tool stopped reading (exited or closed stdin): keep draining the input.
                stdin = None;
            }
        }
    }
    if let Some(mut s) = stdin {
        let _ = s.shutdown().await;
    }
    finish(child, stderr, what).await
}

/// Run `cmd` to completion and return its stdout (for short outputs such as `--version`).
pub async fn output(mut cmd: Command, what: &str) -> Result<String> {
    cmd.stdin(Stdio::null()).kill_on_drop(true);
    let out = cmd
        .output()
        .await
        .map_err(|e| Error::Other(format!("cannot run {what}: {e}")))?;
    if !out.status.success() {
        return Err(Error::Other(format!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

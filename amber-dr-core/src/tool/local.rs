//! [`LocalRunner`]: tools run on this host as child processes.

use std::process::Stdio;

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

use super::{feed_input, StderrTail, ToolCommand, ToolRunner, COPY_BUFFER};
use crate::{Error, Result};

/// Runs tools on this host, as child processes (killed when the run is dropped).
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalRunner;

fn command(cmd: &ToolCommand) -> Command {
    let mut c = Command::new(cmd.program());
    for k in cmd.get_env_removed() {
        c.env_remove(k);
    }
    c.args(cmd.get_args());
    for (k, v) in cmd.get_env() {
        c.env(k, v);
    }
    c
}

/// Collect the tail of a child's stderr.
fn stderr_task(child: &mut Child) -> tokio::task::JoinHandle<String> {
    let stderr = child.stderr.take();
    tokio::spawn(async move {
        let Some(mut s) = stderr else {
            return String::new();
        };
        let mut tail = StderrTail::default();
        let mut buf = vec![0u8; 8192];
        while let Ok(n) = s.read(&mut buf).await {
            if n == 0 {
                break;
            }
            tail.push(&buf[..n]);
        }
        tail.finish()
    })
}

async fn finish(
    mut child: Child,
    stderr: tokio::task::JoinHandle<String>,
    what: &str,
) -> Result<String> {
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
    Ok(stderr)
}

#[async_trait]
impl ToolRunner for LocalRunner {
    fn location(&self) -> String {
        "this host".into()
    }

    fn sees_host_files(&self) -> bool {
        true
    }

    async fn run(
        &self,
        cmd: &ToolCommand,
        input: Option<&mut (dyn AsyncRead + Unpin + Send)>,
        out: Option<&mut (dyn AsyncWrite + Unpin + Send)>,
        what: &str,
    ) -> Result<String> {
        let mut c = command(cmd);
        let piped = |yes: bool| if yes { Stdio::piped() } else { Stdio::null() };
        c.stdin(piped(input.is_some()))
            .stdout(piped(out.is_some()))
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = c
            .spawn()
            .map_err(|e| Error::Other(format!("cannot start {what}: {e}")))?;
        let stderr = stderr_task(&mut child);
        let (stdin, stdout) = (child.stdin.take(), child.stdout.take());
        let feed = async move {
            match (input, stdin) {
                // `stdin` is dropped at the end of this block: the tool sees the end of input.
                (Some(input), Some(mut stdin)) => feed_input(input, &mut stdin, what).await,
                _ => Ok(()),
            }
        };
        let drain = async move {
            let (Some(out), Some(stdout)) = (out, stdout) else {
                return Ok(());
            };
            let mut reader = BufReader::with_capacity(COPY_BUFFER, stdout);
            tokio::io::copy_buf(&mut reader, out).await?;
            out.flush().await
        };
        let (fed, drained) = tokio::join!(feed, drain);
        if let Err(e) = fed {
            // Damage of the input first: the tool's failure on a truncated input follows it.
            let _ = child.kill().await;
            let _ = child.wait().await;
            return Err(e);
        }
        if let Err(e) = drained {
            let _ = child.kill().await;
            let err = finish(child, stderr, what).await.err();
            return Err(err.unwrap_or_else(|| Error::from_io("stream output of", what, e)));
        }
        finish(child, stderr, what).await
    }
}

#[cfg(test)]
mod tests {
    use super::super::{output, stdin_from, stdout_into};
    use super::*;

    fn sh(script: &str) -> ToolCommand {
        let mut c = ToolCommand::new("sh");
        c.args(["-c", script]);
        c
    }

    #[tokio::test]
    async fn streams_stdin_through_to_stdout() {
        // 3 MiB in and back out: more than any pipe buffer, so both sides must stream.
        let input: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
        let mut out = Vec::new();
        let mut reader = input.as_slice();
        let stderr = LocalRunner
            .run(
                &ToolCommand::new("cat"),
                Some(&mut reader),
                Some(&mut out),
                "cat",
            )
            .await
            .expect("cat");
        assert!(stderr.is_empty(), "{stderr}");
        assert!(out == input, "{} bytes back of {}", out.len(), input.len());
    }

    #[tokio::test]
    async fn environment_and_a_failure_with_the_tail_of_stderr() {
        let mut cmd = sh("echo $X; echo boom >&2; exit 3");
        cmd.env("X", "hello");
        let mut out = Vec::new();
        let err = stdout_into(&LocalRunner, &cmd, &mut out, "sh")
            .await
            .expect_err("exit 3")
            .to_string();
        assert_eq!(String::from_utf8_lossy(&out), "hello\n");
        assert!(err.starts_with("sh failed (exit status: 3)"), "{err}");
        assert!(err.ends_with(": boom"), "{err}");
        // Only the tail of a long stderr is kept.
        let err = output(
            &LocalRunner,
            &sh("i=0; while [ $i -lt 3000 ]; do echo line-$i >&2; i=$((i+1)); done; exit 1"),
            "noisy",
        )
        .await
        .expect_err("exit 1")
        .to_string();
        assert!(err.contains("line-2999"), "{err}");
        assert!(!err.contains("line-10\n"), "the head was kept");
        assert!(err.len() < super::super::STDERR_TAIL + 100, "{}", err.len());
    }

    #[tokio::test]
    async fn the_input_is_read_to_its_end_when_the_tool_stops_reading() {
        struct Counting<'a>(&'a [u8], usize);
        impl AsyncRead for Counting<'_> {
            fn poll_read(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &mut tokio::io::ReadBuf<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                let before = buf.filled().len();
                let r = std::pin::Pin::new(&mut self.0).poll_read(cx, buf);
                self.1 += buf.filled().len() - before;
                r
            }
        }
        let data = vec![7u8; 4 * 1024 * 1024];
        let mut input = Counting(&data, 0);
        stdin_from(
            &LocalRunner,
            &sh("head -c 10 >/dev/null"),
            &mut input,
            "head",
        )
        .await
        .expect("head succeeds");
        assert_eq!(input.1, data.len(), "the input was not read to its end");
    }

    #[tokio::test]
    async fn an_input_error_comes_before_the_tools_failure() {
        struct Broken;
        impl AsyncRead for Broken {
            fn poll_read(
                self: std::pin::Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
                _: &mut tokio::io::ReadBuf<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::task::Poll::Ready(Err(std::io::Error::other("artifact damaged")))
            }
        }
        let err = stdin_from(&LocalRunner, &sh("cat >/dev/null; exit 5"), Broken, "cat")
            .await
            .expect_err("broken input")
            .to_string();
        assert!(err.contains("artifact damaged"), "{err}");
        assert!(!err.contains("exit status"), "{err}");
    }

    #[tokio::test]
    async fn a_missing_program_names_the_run() {
        let err = output(
            &LocalRunner,
            &ToolCommand::new("/nonexistent/amber-dr-tool"),
            "pg_dump --version",
        )
        .await
        .expect_err("missing")
        .to_string();
        assert!(err.starts_with("cannot start pg_dump --version:"), "{err}");
    }

    #[test]
    fn no_container_runtime_is_a_config_error_naming_the_setting() {
        let e = super::super::runner(Some("db"), None, "components.pg.via_container")
            .expect_err("none registered");
        assert!(e.is_usage(), "{e}");
        assert!(e.to_string().contains("components.pg.via_container"), "{e}");
        assert!(super::super::runner(None, None, "x")
            .expect("local")
            .sees_host_files());
    }
}

//! A client tool invocation that runs on this host (a child process) or, with `via_container`,
//! inside the Postgres container through the Docker exec API. Same streaming either way.

use std::ffi::OsStr;

use amber_dr_core::{process, ArtifactRecord, ArtifactWriter, Result};
use amber_dr_docker::ContainerExec;
use tokio::io::AsyncRead;
use tokio::process::Command;

use crate::sequences::{DumpedSequences, TocTap};

/// A tool with its arguments and environment, not started yet.
pub(crate) struct ToolCmd {
    program: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    env_remove: Vec<String>,
    exec: Option<ContainerExec>,
}

impl ToolCmd {
    pub(crate) fn new(program: impl AsRef<OsStr>, exec: Option<ContainerExec>) -> Self {
        Self {
            program: program.as_ref().to_string_lossy().into_owned(),
            args: Vec::new(),
            env: Vec::new(),
            env_remove: Vec::new(),
            exec,
        }
    }

    pub(crate) fn arg(&mut self, a: impl AsRef<OsStr>) -> &mut Self {
        self.args.push(a.as_ref().to_string_lossy().into_owned());
        self
    }

    pub(crate) fn args<I, S>(&mut self, args: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        for a in args {
            self.arg(a);
        }
        self
    }

    pub(crate) fn env(&mut self, k: impl Into<String>, v: impl AsRef<OsStr>) -> &mut Self {
        self.env
            .push((k.into(), v.as_ref().to_string_lossy().into_owned()));
        self
    }

    /// Local runs only: the container's environment is its own.
    pub(crate) fn env_remove(&mut self, k: impl Into<String>) -> &mut Self {
        self.env_remove.push(k.into());
        self
    }

    /// True when the tool runs in a container (host paths are not visible to it).
    pub(crate) fn in_container(&self) -> bool {
        self.exec.is_some()
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        for k in &self.env_remove {
            cmd.env_remove(k);
        }
        cmd.args(&self.args);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    fn remote(&self, exec: &ContainerExec) -> (ContainerExec, Vec<String>, Vec<String>) {
        let mut argv = vec![self.program.clone()];
        argv.extend(self.args.iter().cloned());
        let env = self.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        (exec.clone(), argv, env)
    }

    /// Stream the tool's stdout into `writer`; the artifact completes only on success.
    pub(crate) async fn stdout_into_artifact(
        self,
        mut writer: ArtifactWriter,
        what: &str,
    ) -> Result<ArtifactRecord> {
        match &self.exec {
            None => Ok(process::stdout_into_artifact(self.command(), writer, what)
                .await?
                .0),
            Some(exec) => {
                let (exec, argv, env) = self.remote(exec);
                exec.run(&argv, &env, None, &mut writer, what).await?;
                writer.finish().await
            }
        }
    }

    /// Stream a custom-format `pg_dump` into `writer`, reading the sequence positions of its
    /// table of contents as it passes; the artifact completes only on success.
    pub(crate) async fn dump_into_artifact(
        self,
        writer: ArtifactWriter,
        what: &str,
    ) -> Result<(ArtifactRecord, DumpedSequences)> {
        let mut tap = TocTap::new(writer);
        match &self.exec {
            None => {
                process::stdout_into(self.command(), &mut tap, what).await?;
            }
            Some(exec) => {
                let (exec, argv, env) = self.remote(exec);
                exec.run(&argv, &env, None, &mut tap, what).await?;
            }
        }
        let (writer, sequences) = tap.into_parts();
        Ok((writer.finish().await?, sequences))
    }

    /// Stream `input` into the tool's stdin; returns the tail of its stderr.
    pub(crate) async fn stdin_from<R: AsyncRead + Unpin + Send>(
        self,
        mut input: R,
        what: &str,
    ) -> Result<String> {
        match &self.exec {
            None => process::stdin_from(self.command(), input, what)
                .await
                .map(|o| o.stderr),
            Some(exec) => {
                let (exec, argv, env) = self.remote(exec);
                exec.run(&argv, &env, Some(&mut input), &mut tokio::io::sink(), what)
                    .await
            }
        }
    }

    /// Run to completion and return stdout (short outputs only).
    pub(crate) async fn output(self, what: &str) -> Result<String> {
        match &self.exec {
            None => process::output(self.command(), what).await,
            Some(exec) => {
                let (exec, argv, env) = self.remote(exec);
                let mut out = Vec::new();
                exec.run(&argv, &env, None, &mut out, what).await?;
                Ok(String::from_utf8_lossy(&out).into_owned())
            }
        }
    }
}

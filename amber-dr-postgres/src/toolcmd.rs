//! A client tool invocation, run where core's tool runner says: on this host (a child process)
//! or, with `via_container`, inside a container (the runner registered by the program, e.g.
//! amber-dr-docker's). Same streaming either way: the mechanics are core's (`amber_dr_core::tool`).

use std::ffi::OsStr;
use std::sync::Arc;

use amber_dr_core::tool::{self, ToolCommand, ToolRunner};
use amber_dr_core::{ArtifactRecord, ArtifactWriter, Result};
use tokio::io::AsyncRead;

use crate::sequences::{DumpedSequences, TocTap};

/// A tool with its arguments and environment, not started yet, and where it runs.
pub(crate) struct ToolCmd {
    cmd: ToolCommand,
    runner: Arc<dyn ToolRunner>,
}

impl ToolCmd {
    pub(crate) fn new(program: impl AsRef<OsStr>, runner: Arc<dyn ToolRunner>) -> Self {
        Self {
            cmd: ToolCommand::new(program),
            runner,
        }
    }

    pub(crate) fn arg(&mut self, a: impl AsRef<OsStr>) -> &mut Self {
        self.cmd.arg(a);
        self
    }

    pub(crate) fn args<I, S>(&mut self, args: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.cmd.args(args);
        self
    }

    pub(crate) fn env(&mut self, k: impl Into<String>, v: impl AsRef<OsStr>) -> &mut Self {
        self.cmd.env(k, v);
        self
    }

    /// Local runs only: the container's environment is its own.
    pub(crate) fn env_remove(&mut self, k: impl Into<String>) -> &mut Self {
        self.cmd.env_remove(k);
        self
    }

    /// True when the tool runs in a container (host paths are not visible to it).
    pub(crate) fn in_container(&self) -> bool {
        !self.runner.sees_host_files()
    }

    /// Stream the tool's stdout into `writer`; the artifact completes only on success.
    pub(crate) async fn stdout_into_artifact(
        self,
        writer: ArtifactWriter,
        what: &str,
    ) -> Result<ArtifactRecord> {
        Ok(
            tool::stdout_into_artifact(self.runner.as_ref(), &self.cmd, writer, what)
                .await?
                .0,
        )
    }

    /// Stream a custom-format `pg_dump` into `writer`, reading the sequence positions of its
    /// table of contents as it passes; the artifact completes only on success.
    pub(crate) async fn dump_into_artifact(
        self,
        writer: ArtifactWriter,
        what: &str,
    ) -> Result<(ArtifactRecord, DumpedSequences)> {
        let mut tap = TocTap::new(writer);
        tool::stdout_into(self.runner.as_ref(), &self.cmd, &mut tap, what).await?;
        let (writer, sequences) = tap.into_parts();
        Ok((writer.finish().await?, sequences))
    }

    /// Stream `input` into the tool's stdin; returns the tail of its stderr.
    pub(crate) async fn stdin_from<R: AsyncRead + Unpin + Send>(
        self,
        input: R,
        what: &str,
    ) -> Result<String> {
        Ok(
            tool::stdin_from(self.runner.as_ref(), &self.cmd, input, what)
                .await?
                .stderr,
        )
    }

    /// Run to completion and return stdout (short outputs only).
    pub(crate) async fn output(self, what: &str) -> Result<String> {
        tool::output(self.runner.as_ref(), &self.cmd, what).await
    }
}

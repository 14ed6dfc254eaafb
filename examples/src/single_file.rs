//! A minimal driver: one file, one artifact. Everything a driver needs, nothing more.

use std::path::PathBuf;
use std::sync::Arc;

use amber_dr_core::{
    async_trait, Capabilities, Component, ComponentRecord, ComponentSpec, Error, Probe, Registry,
    RestoreContext, RestoreOptions, RestoreReport, Result, SnapshotContext,
};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The kind name, as written in `amber-dr.toml`.
pub const KIND: &str = "single-file";

/// `[components.NAME]` with `kind = "single-file"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SingleFileConfig {
    /// The file to back up.
    pub path: PathBuf,
}

/// Register the driver (the binary calls this next to the built-in drivers).
pub fn register(registry: &mut Registry) {
    registry.register(KIND, |spec: &ComponentSpec| {
        let mut cfg: SingleFileConfig = spec.parse()?;
        cfg.path = spec.resolve_path(&cfg.path);
        Ok(Arc::new(SingleFile::new(spec.name.clone(), cfg)) as Arc<dyn Component>)
    });
}

/// The component.
#[derive(Debug)]
pub struct SingleFile {
    name: String,
    config: SingleFileConfig,
}

impl SingleFile {
    /// A component named `name`.
    pub fn new(name: impl Into<String>, config: SingleFileConfig) -> Self {
        Self {
            name: name.into(),
            config,
        }
    }

    fn fail(&self, op: &str, msg: String) -> Error {
        Error::component(&self.name, KIND, op, msg)
    }
}

const ARTIFACT: &str = "file";

#[async_trait]
impl Component for SingleFile {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::new()
            .online_snapshot(true)
            .restore_to_target(true)
            .deep_verify(true)
    }

    async fn probe(&self) -> Result<Probe> {
        let meta = tokio::fs::metadata(&self.config.path).await.map_err(|e| {
            self.fail(
                "probe",
                format!("cannot read `{}`: {e}", self.config.path.display()),
            )
        })?;
        Ok(Probe {
            reachable: true,
            size_estimate: Some(meta.len()),
            ..Default::default()
        })
    }

    async fn snapshot(&self, cx: &SnapshotContext) -> Result<ComponentRecord> {
        let mut file = tokio::fs::File::open(&self.config.path)
            .await
            .map_err(|e| {
                self.fail(
                    "snapshot",
                    format!("cannot open `{}`: {e}", self.config.path.display()),
                )
            })?;
        cx.progress().set_phase("copying");
        // Stream: the artifact compresses, hashes and uploads as we write.
        let mut out = cx.create_artifact(ARTIFACT).await?;
        let mut content = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = file
                .read(&mut buf)
                .await
                .map_err(|e| Error::io("read", &self.config.path, e))?;
            if n == 0 {
                break;
            }
            content.update(&buf[..n]);
            out.write_all(&buf[..n])
                .await
                .map_err(|e| Error::from_io("write", out.path(), e))?;
        }
        let mut rec = ComponentRecord::new(KIND, &self.name);
        let art = out.finish().await?;
        rec.set_stat("bytes", art.size);
        rec.set_stat("content_sha256", hex::encode(content.finalize()));
        rec.artifacts.push(art);
        Ok(rec)
    }

    async fn restore(
        &self,
        cx: &RestoreContext,
        rec: &ComponentRecord,
        opts: &RestoreOptions,
    ) -> Result<RestoreReport> {
        let target = opts
            .target
            .as_ref()
            .map(PathBuf::from)
            .unwrap_or_else(|| self.config.path.clone());
        let mut report = RestoreReport::default();
        if opts.dry_run {
            report
                .actions
                .push(format!("replace `{}`", target.display()));
            return Ok(report);
        }
        // Write beside the target, check, then rename over it: a failure leaves the old file.
        let tmp = target.with_extension("amber-dr-restore");
        let mut reader = cx.open_artifact(rec.artifact(ARTIFACT)?).await?;
        let mut out = tokio::fs::File::create(&tmp)
            .await
            .map_err(|e| Error::io("create", &tmp, e))?;
        let copied = tokio::io::copy(&mut reader, &mut out).await;
        let checked = match copied {
            Ok(n) if Some(n) == rec.stat_u64("bytes") => {
                out.sync_all().await.map_err(|e| Error::io("sync", &tmp, e))
            }
            Ok(n) => Err(self.fail(
                "restore",
                format!(
                    "restored {n} bytes, the record says {:?}",
                    rec.stat_u64("bytes")
                ),
            )),
            Err(e) => Err(Error::from_io("restore", &tmp, e)),
        };
        if let Err(e) = checked {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e);
        }
        tokio::fs::rename(&tmp, &target)
            .await
            .map_err(|e| Error::io("rename", &target, e))?;
        report
            .actions
            .push(format!("restored `{}`", target.display()));
        Ok(report)
    }
}

//! A directory's scratch copies for drills (see [`crate::drill`]): a directory named after
//! the drill's token under `[drill] dir`, removed whole afterwards.

use std::path::{Path, PathBuf};

use super::Directory;
use crate::drill::{Scratch, ScratchPlan, ScratchRestore};
use crate::references::KeyStream;
use crate::{Error, Result};

impl Directory {
    /// Where a drill restores this directory: `[drill.targets] NAME`, or
    /// `<drill dir>/<token>/<name>`.
    pub fn scratch_plan(&self, scratch: &Scratch) -> ScratchPlan {
        let target = scratch.configured.clone().unwrap_or_else(|| {
            scratch
                .dir
                .join(&scratch.token)
                .join(&self.name)
                .display()
                .to_string()
        });
        ScratchPlan::Restores(vec![ScratchRestore {
            items: Vec::new(),
            target,
        }])
    }

    /// Remove scratch directory `target` (and the token directory holding it, with whatever a
    /// killed restore staged beside it). Refuses the configured directory, anything holding
    /// it, and the config file's directory.
    pub async fn remove_scratch(&self, target: &str) -> Result<()> {
        let target = PathBuf::from(target);
        if !target.is_absolute() || target.parent().is_none() {
            return Err(Error::Other(format!(
                "refusing to remove scratch directory {}: not an absolute path below a directory",
                target.display()
            )));
        }
        let live = self.root();
        let real = super::target::resolved(&target);
        let protected = std::iter::once(live.clone()).chain(self.config_dir.clone());
        for p in protected {
            if p.starts_with(&real) {
                return Err(Error::Other(format!(
                    "refusing to remove scratch directory {}: it holds {}, which is live",
                    target.display(),
                    p.display()
                )));
            }
        }
        // `<dir>/<token>/<name>`: the token directory goes too.
        let doomed = match target.parent() {
            Some(parent)
                if parent
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("drill_"))
                    && !live.starts_with(super::target::resolved(parent)) =>
            {
                parent.to_path_buf()
            }
            _ => target.clone(),
        };
        remove_all(&doomed).await
    }

    /// The keys (file paths) of the scratch copy at `restores[0]`.
    pub async fn scratch_keys(&self, restores: &[ScratchRestore]) -> Result<KeyStream> {
        let r = restores
            .first()
            .ok_or_else(|| Error::Other(format!("`{}` has no scratch copy", self.name)))?;
        let copy = Directory {
            path: PathBuf::from(&r.target),
            ..self.clone()
        };
        copy.live_keys().await
    }
}

async fn remove_all(p: &Path) -> Result<()> {
    match tokio::fs::symlink_metadata(p).await {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("inspect scratch directory", p, e)),
        Ok(m) if !m.is_dir() => {
            return tokio::fs::remove_file(p)
                .await
                .map_err(|e| Error::io("remove scratch path", p, e))
        }
        Ok(_) => {}
    }
    // A restore that was cancelled may still be writing into it for a moment (a blocking
    // extraction finishes its current file): try again a few times.
    let mut tries = 0;
    loop {
        match tokio::fs::remove_dir_all(p).await {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(_) if tries < 20 => {
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(e) => return Err(Error::io("remove scratch directory", p, e)),
        }
    }
}

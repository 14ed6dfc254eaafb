//! Where a directory restore may write: never `/` or a system directory, the repository, the
//! config file's directory, or (restoring elsewhere) the live directory; and what a directory
//! backup refuses (a directory holding the repository).

use std::path::{Path, PathBuf};

use super::Directory;
use crate::{paths, Error, RestoreOptions, Result};

impl Directory {
    /// Refuse a directory that holds the local repository or lies inside it: backing it up
    /// would archive the backups themselves, and restoring it would replace them.
    pub(super) fn refuse_repository_overlap(
        &self,
        op: &str,
        dir: &Path,
        repo: &crate::Repository,
    ) -> Result<()> {
        if let Some(r) = repo.local_root() {
            let r = resolved(r);
            if overlaps(dir, &r) {
                return Err(Error::config(
                    format!("{op} of `{}`", self.name),
                    format!(
                        "directory `{}` overlaps the backup repository `{}`; keep the repository outside the directories it backs up (and restores)",
                        dir.display(),
                        r.display()
                    ),
                ));
            }
        }
        Ok(())
    }

    pub(super) fn refuse_items(&self, opts: &RestoreOptions) -> Result<()> {
        if opts.items.is_empty() {
            return Ok(());
        }
        Err(Error::config(
            format!("restore of `{}`", self.name),
            format!(
                "the directory `{}` has no parts to choose from (asked for {}); restore it whole",
                self.path.display(),
                opts.items.join(", ")
            ),
        ))
    }

    /// Where a restore writes, checked so that it can never replace `/`, the repository,
    /// the live directory (when restoring elsewhere), or something that is not a directory.
    pub(super) fn restore_target(
        &self,
        opts: &RestoreOptions,
        repo: &crate::Repository,
    ) -> Result<PathBuf> {
        let root = self.root();
        let target = match &opts.target {
            Some(t) if t.trim().is_empty() => {
                return Err(Error::config(
                    format!("restore of `{}`", self.name),
                    "the target directory is empty",
                ))
            }
            Some(t) => {
                // A drill's scratch directory lives in a directory of its own, made here (it
                // is on the drill's record already, and removed with it).
                if let Some(parent) = Path::new(t)
                    .parent()
                    .filter(|_| opts.scratch && !opts.dry_run)
                {
                    std::fs::create_dir_all(parent).map_err(|e| {
                        Error::io("create the drill's scratch directory", parent, e)
                    })?;
                }
                resolved(Path::new(t))
            }
            None => root.clone(),
        };
        let refuse = |why: String| Err(Error::config(format!("restore of `{}`", self.name), why));
        if paths::is_system_dir(&target) {
            return refuse(format!(
                "refusing to restore into `{}`: a restore replaces its target whole, and this is a system directory",
                target.display()
            ));
        }
        self.refuse_repository_overlap("restore", &target, repo)?;
        if opts.target.is_some() && target != root && overlaps(&target, &root) {
            return refuse(format!(
                "target `{}` overlaps the configured directory `{}`; restore beside it, not into or over it",
                target.display(),
                root.display()
            ));
        }
        if let Ok(m) = std::fs::symlink_metadata(&target) {
            if !m.is_dir() {
                return refuse(format!(
                    "target `{}` exists and is not a directory; refusing to replace it",
                    target.display()
                ));
            }
        }
        let protected: Vec<_> = (self.config_dir.iter())
            .map(|d| ("the config file's directory", resolved(d)))
            .collect();
        match &opts.target {
            Some(raw) => {
                if let Err(why) =
                    paths::refuse_restore_dir(Path::new(raw), &target, opts.force, &protected)
                {
                    return refuse(why);
                }
            }
            None if protected.iter().any(|(_, p)| p.starts_with(&target)) => {
                return refuse(format!(
                    "refusing to restore into `{}`: a restore replaces it whole, and it holds the config file",
                    target.display()
                ));
            }
            None => {}
        }
        Ok(target)
    }

    /// The directory, with a symlinked root resolved (a link to the data is followed once).
    pub(super) fn root(&self) -> PathBuf {
        resolved(&self.path)
    }
}

/// `p` made absolute with symlinks resolved as far as it exists (a path that does not exist
/// yet is resolved through its parent), so that overlap checks compare real locations.
pub(super) fn resolved(p: &Path) -> PathBuf {
    if let Ok(c) = std::fs::canonicalize(p) {
        return c;
    }
    let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    match (abs.parent(), abs.file_name()) {
        (Some(parent), Some(name)) => std::fs::canonicalize(parent)
            .map(|c| c.join(name))
            .unwrap_or(abs),
        _ => abs,
    }
}

/// One directory is the other or lies inside it.
fn overlaps(a: &Path, b: &Path) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

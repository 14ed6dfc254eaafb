//! The shell runbook's backup directories (`./backups/YYYYMMDD_HHMMSS/`), restored through
//! the drivers that opt in with a [`LegacyImport`] ([`crate::Component::legacy`]).
//!
//! Core knows no runbook file name: each driver names the files it restores (or could, if
//! configured), and the program says which files make up a complete runbook backup
//! ([`crate::Runner::with_runbook_files`]; the CLI passes the four of Amber's runbook, named
//! by the driver crates).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;

use crate::component::{Component, RestoreContext, RestoreOptions, RestoreReport};
use crate::selection::Selection;
use crate::{Error, Result};

/// A driver's import of a file of the shell runbook's backup directories: optional, separate
/// from the [`Component`] trait; a driver opts in by returning itself from
/// [`Component::legacy`].
#[async_trait]
pub trait LegacyImport: Send + Sync {
    /// The runbook files (`postgres.sql`, `uploads.tar.gz`, ...) this component restores with
    /// [`Self::restore_legacy`], as configured.
    fn legacy_files(&self) -> Vec<&'static str>;

    /// Runbook files this driver could restore if its config said how, each with what to set
    /// (e.g. `minio_data.tar.gz`: "set `legacy_data_dir` ..."). A runbook restore that finds
    /// such a file unclaimed names it in its refusal. Default: none.
    fn legacy_hints(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }

    /// Called by the runner before a (not dry-run) runbook restore changes anything: after the
    /// `before_restore` run hooks (containers of `[docker] stop_during_restore` are stopped)
    /// and before the safety backup. An error refuses the whole restore, nothing changed: the
    /// place to refuse what would make [`Self::restore_legacy`] fail half-way through a run
    /// (a server that must be stopped still answering). Default: nothing to check.
    async fn check_restore_legacy(&self, file: &Path, opts: &RestoreOptions) -> Result<()> {
        let _ = (file, opts);
        Ok(())
    }

    /// Restore from `file`, one of [`Self::legacy_files`] in a runbook backup directory.
    /// There is no record to compare with: the driver must prove the whole file decodes before
    /// it replaces live data. `cx` gives the repository (for overlap checks) and progress; its
    /// backup id is the directory's path.
    async fn restore_legacy(
        &self,
        cx: &RestoreContext,
        file: &Path,
        opts: &RestoreOptions,
    ) -> Result<RestoreReport>;
}

fn legacy_files_of(c: &Arc<dyn Component>) -> Vec<&'static str> {
    c.legacy().map(|l| l.legacy_files()).unwrap_or_default()
}

fn legacy_hints_of(c: &Arc<dyn Component>) -> Vec<(&'static str, String)> {
    c.legacy().map(|l| l.legacy_hints()).unwrap_or_default()
}

/// One file of a runbook directory and what restores it.
#[derive(Debug, Clone, Serialize)]
pub struct LegacyPart {
    /// The file name (`postgres.sql`).
    pub file: String,
    /// Its full path.
    pub path: PathBuf,
    /// Its size; `None` when the file is missing.
    pub size: Option<u64>,
    /// The configured component that restores it, if any.
    pub component: Option<String>,
    /// When no component restores it: what to configure so that one does (from
    /// [`LegacyImport::legacy_hints`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// What a runbook directory holds, matched against the configured components.
#[derive(Debug, Clone, Serialize)]
pub struct LegacyPlan {
    /// The directory.
    pub dir: PathBuf,
    /// Every file of a complete runbook backup (present or not), every file a configured
    /// driver claims, and every file one could restore if configured.
    pub parts: Vec<LegacyPart>,
}

/// The component that restores `file`: the one claiming it; among several, the one named like
/// the file (`postgres` for `postgres.sql`, `uploads` for `uploads.tar.gz`).
fn claimant(components: &[Arc<dyn Component>], file: &str) -> Result<Option<String>> {
    let claiming: Vec<&Arc<dyn Component>> = components
        .iter()
        .filter(|c| legacy_files_of(c).contains(&file))
        .collect();
    match claiming.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one.name().to_string())),
        many => {
            let stem = file.split(['.', '_']).next().unwrap_or(file);
            if let Some(c) = many.iter().find(|c| c.name() == stem) {
                return Ok(Some(c.name().to_string()));
            }
            Err(Error::config(
                "legacy restore",
                format!(
                    "`{file}` could be restored by {}; name one of them `{stem}` in the config",
                    many.iter()
                        .map(|c| format!("`{}`", c.name()))
                        .collect::<Vec<_>>()
                        .join(" or ")
                ),
            ))
        }
    }
}

/// How a hint names its component (`component `minio`: set ...`).
fn hint_prefix(component: &str) -> String {
    format!("component `{component}`: ")
}

impl LegacyPlan {
    /// Look at `dir` and match its files with `components`. `runbook_files` are the files of a
    /// complete runbook backup (see [`crate::Runner::with_runbook_files`]): without `--only`,
    /// each must be there and restored.
    pub fn inspect(
        dir: &Path,
        components: &[Arc<dyn Component>],
        runbook_files: &[&'static str],
    ) -> Result<Self> {
        let meta =
            std::fs::metadata(dir).map_err(|e| Error::io("open runbook directory", dir, e))?;
        if !meta.is_dir() {
            return Err(Error::config(
                "legacy restore",
                format!("`{}` is not a directory", dir.display()),
            ));
        }
        let mut files: Vec<&'static str> = runbook_files.to_vec();
        for c in components {
            let hinted = legacy_hints_of(c).into_iter().map(|(f, _)| f);
            for f in legacy_files_of(c).into_iter().chain(hinted) {
                if !files.contains(&f) {
                    files.push(f);
                }
            }
        }
        let mut parts = Vec::new();
        for file in files {
            let path = dir.join(file);
            let size = match std::fs::metadata(&path) {
                Ok(m) if m.is_file() => Some(m.len()),
                Ok(_) => None,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(Error::io("inspect", &path, e)),
            };
            let component = claimant(components, file)?;
            let hint = if component.is_none() {
                components.iter().find_map(|c| {
                    legacy_hints_of(c)
                        .into_iter()
                        .find(|(f, _)| *f == file)
                        .map(|(_, h)| format!("{}{h}", hint_prefix(c.name())))
                })
            } else {
                None
            };
            parts.push(LegacyPart {
                file: file.to_string(),
                path,
                size,
                component,
                hint,
            });
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            parts,
        })
    }

    /// The parts to restore for `selection`. Without `--only`/`--skip`, every part (every
    /// runbook file, and every file a configured driver claims or could claim) must be present,
    /// non-empty and claimed by a configured component; otherwise the restore is refused with
    /// the list of what is missing. With a selection, only the selected components' files must
    /// be there.
    pub fn select(&self, selection: &Selection) -> Result<Vec<&LegacyPart>> {
        let claimed: Vec<&str> = self
            .parts
            .iter()
            .filter_map(|p| p.component.as_deref())
            .collect();
        let explicit = !selection.only.is_empty() || !selection.skip.is_empty();
        // `--only minio` where `minio` is configured but not set up to restore its file.
        for n in &selection.only {
            if claimed.contains(&n.as_str()) {
                continue;
            }
            let prefix = hint_prefix(n);
            if let Some(p) = self.parts.iter().find(|p| {
                p.size.is_some() && p.hint.as_ref().is_some_and(|h| h.starts_with(&prefix))
            }) {
                return Err(Error::config(
                    format!("runbook backup {}", self.dir.display()),
                    format!(
                        "refused, nothing was changed: `{n}` does not restore `{}` as configured: {}",
                        p.file,
                        p.hint.as_deref().unwrap_or_default().trim_start_matches(&prefix)
                    ),
                ));
            }
        }
        // Nothing claimed and nothing selected: list every problem below rather than "selects
        // no component".
        let names = if claimed.is_empty() && !explicit {
            Vec::new()
        } else {
            selection.apply(claimed.iter().copied())?
        };
        let mut problems = Vec::new();
        let mut chosen = Vec::new();
        for p in &self.parts {
            let selected = p
                .component
                .as_deref()
                .is_some_and(|c| names.iter().any(|n| n == c));
            if !selected && explicit {
                continue;
            }
            match (p.size, &p.component) {
                (None, _) => problems.push(format!("`{}` is missing", p.file)),
                (Some(0), _) => problems.push(format!("`{}` is empty", p.file)),
                (Some(_), None) => problems.push(match &p.hint {
                    Some(h) => format!("no configured component restores `{}` ({h})", p.file),
                    None => format!("no configured component restores `{}`", p.file),
                }),
                (Some(_), Some(_)) => chosen.push(p),
            }
        }
        if !problems.is_empty() {
            return Err(Error::config(
                format!("runbook backup {}", self.dir.display()),
                {
                    let there: Vec<&str> = chosen
                        .iter()
                        .filter_map(|p| p.component.as_deref())
                        .collect();
                    let hint = if there.is_empty() {
                        String::new()
                    } else {
                        format!(
                            ". Restore the parts that are there with --only {}",
                            there.join(",")
                        )
                    };
                    format!(
                        "refused, nothing was changed: {}{hint}",
                        problems.join("; ")
                    )
                },
            ));
        }
        Ok(chosen)
    }
}

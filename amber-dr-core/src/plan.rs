//! Restore plans: what a restore does with each component, checked before anything is read —
//! per-component choices against the drivers' declared capabilities, and the declared restore
//! relations between components.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::component::{Component, RestoreOptions};
use crate::selection::Selection;
use crate::{Error, Result};

/// Options of a restore.
#[derive(Debug, Clone, Default)]
pub struct RestorePlanOptions {
    /// Components to restore.
    pub selection: Selection,
    /// Options handed to each driver.
    pub options: RestoreOptions,
    /// Per-component choices (another target, some parts only), by component name. The
    /// runner checks each against the component's declared [`crate::Capabilities`] and the
    /// selection before anything is read or changed.
    pub components: BTreeMap<String, ComponentPlan>,
    /// Take a safety backup of the current state first (default true in the CLI).
    pub safety_backup: bool,
}

/// What a restore does with one component, beyond [`RestorePlanOptions::options`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ComponentPlan {
    /// Restore into this target (a database, bucket, directory, ... as the driver names it)
    /// instead of the configured one; needs [`crate::Capabilities::restore_to_target`].
    pub target: Option<String>,
    /// Restore only these parts; needs [`crate::Capabilities::restore_parts`].
    pub items: Vec<String>,
}

impl RestorePlanOptions {
    /// The options handed to component `name`'s driver.
    pub fn options_for(&self, name: &str) -> RestoreOptions {
        let mut opts = self.options.clone();
        if let Some(cp) = self.components.get(name) {
            if cp.target.is_some() {
                opts.target = cp.target.clone();
            }
            if !cp.items.is_empty() {
                opts.items = cp.items.clone();
            }
        }
        opts
    }

    /// The components restored into another target than their configured one.
    pub fn retargeted(&self) -> Vec<String> {
        self.components
            .iter()
            .filter(|(_, cp)| cp.target.is_some())
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Refuse per-component choices that the plan or the drivers cannot honour: a component
    /// that is not restored, a target or parts for a driver that does not declare them.
    pub fn check(&self, restored: &[Arc<dyn Component>]) -> Result<()> {
        let names: Vec<&str> = restored.iter().map(|c| c.name()).collect();
        for (name, cp) in &self.components {
            let what = match (&cp.target, cp.items.is_empty()) {
                (Some(_), _) => format!("--target {name}=..."),
                (None, false) => format!("--only {name}/{}", cp.items.join(",")),
                (None, true) => continue,
            };
            let Some(c) = restored.iter().find(|c| c.name() == name) else {
                return Err(Error::config(
                    "restore plan",
                    format!(
                        "{what}: `{name}` is not among the components to restore ({})",
                        names.join(", ")
                    ),
                ));
            };
            let caps = c.capabilities();
            if cp.target.is_some() && !caps.restore_to_target {
                return Err(Error::config(
                    "restore plan",
                    format!(
                        "{what}: the {} driver of `{name}` cannot restore into another target",
                        c.kind()
                    ),
                ));
            }
            if !cp.items.is_empty() && !caps.restore_parts {
                return Err(Error::config(
                    "restore plan",
                    format!(
                        "--only {name}/{}: the {} driver of `{name}` has no parts to restore separately; restore all of it with --only {name}",
                        cp.items.join(","),
                        c.kind()
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// The runbook import of `c` (the legacy plan only picks components that have one).
pub(crate) fn legacy_import(c: &Arc<dyn Component>) -> Result<&dyn crate::legacy::LegacyImport> {
    c.legacy().ok_or_else(|| {
        Error::config(
            format!("restore of `{}`", c.name()),
            format!("the {} driver cannot restore runbook files", c.kind()),
        )
    })
}

/// The declared restore relations of the selected components that this plan breaks: an error
/// naming each of them, or (forced) the list, logged as warnings.
pub(crate) fn check_relations<T>(
    targets: &[(Arc<dyn Component>, T)],
    selected: &[String],
    force: bool,
) -> Result<Vec<String>> {
    let problems: Vec<String> = targets
        .iter()
        .flat_map(|(c, _)| {
            c.restore_relations()
                .into_iter()
                .filter_map(|r| r.violation(c.name(), selected))
                .collect::<Vec<_>>()
        })
        .collect();
    if problems.is_empty() {
        return Ok(problems);
    }
    if !force {
        return Err(Error::config(
            "restore plan",
            format!(
                "refused, nothing was changed: {}. Change the selection (--only/--skip), or pass --force to restore anyway",
                problems.join("; ")
            ),
        ));
    }
    for p in &problems {
        tracing::warn!("restoring anyway (--force): {p}");
    }
    Ok(problems)
}

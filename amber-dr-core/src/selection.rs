//! [`Selection`]: which components a command applies to (`--only`, `--skip`).

use crate::{Error, Result};

/// Which components a command applies to (`--only`, `--skip`).
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Only these component names (empty: all).
    pub only: Vec<String>,
    /// Not these.
    pub skip: Vec<String>,
}

impl Selection {
    /// Everything.
    pub fn all() -> Self {
        Self::default()
    }

    /// Apply to a list of names; names in `only`/`skip` that are not in `available` are an error.
    pub fn apply<'a>(&self, available: impl IntoIterator<Item = &'a str>) -> Result<Vec<String>> {
        let available: Vec<&str> = available.into_iter().collect();
        if available.is_empty() {
            return Err(Error::config("[components]", "there are no components: add a [components.NAME] section to the config (or name the config with --config FILE)"));
        }
        for n in self.only.iter().chain(&self.skip) {
            if !available.contains(&n.as_str()) {
                return Err(Error::config(
                    "--only/--skip",
                    format!(
                        "no component named `{n}` here; available: {}",
                        available.join(", ")
                    ),
                ));
            }
        }
        let chosen: Vec<String> = available
            .iter()
            .filter(|n| self.only.is_empty() || self.only.iter().any(|o| o == *n))
            .filter(|n| !self.skip.iter().any(|s| s == *n))
            .map(|s| s.to_string())
            .collect();
        (!chosen.is_empty())
            .then_some(chosen)
            .ok_or_else(|| Error::config("--only/--skip", "selects no component"))
    }
}

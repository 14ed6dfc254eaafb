//! Configuration of the `files` driver.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `[components.NAME]` with `kind = "files"`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FilesConfig {
    /// The directory to back up and restore.
    pub path: PathBuf,
}

impl FilesConfig {
    /// A config for `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }
}

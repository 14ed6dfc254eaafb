//! Configuration of the `files` driver.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `[components.NAME]` with `kind = "files"`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FilesConfig {
    /// The directory to back up and restore.
    pub path: PathBuf,
    /// The directory of the config file this came from (set by the factory, not read from
    /// the file): a restore never replaces it.
    #[serde(skip)]
    pub config_dir: Option<PathBuf>,
}

impl FilesConfig {
    /// A config for `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            config_dir: None,
        }
    }
}

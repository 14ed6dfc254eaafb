//! Configuration of the `files` driver.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `[components.NAME]` with `kind = "files"`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FilesConfig {
    /// The directory to back up and restore.
    pub path: PathBuf,
    /// The backup format: `chunked` (the default: content-addressed chunks and packs, shared
    /// between backups; a backup reads only the files that changed) or `tar` (one zstd tar
    /// archive of the whole directory per backup). Either format's backups always restore,
    /// whatever this says now.
    #[serde(default)]
    pub format: FilesFormat,
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
            format: FilesFormat::default(),
            config_dir: None,
        }
    }

    /// Set [`Self::format`].
    pub fn format(mut self, format: FilesFormat) -> Self {
        self.format = format;
        self
    }
}

/// How the `files` driver stores a backup (see [`FilesConfig::format`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FilesFormat {
    /// One zstd-compressed tar archive per backup.
    Tar,
    /// Content-defined chunks and packed small files, stored once as shared blobs; a backup
    /// reads only files that changed since the previous one (the default).
    #[default]
    Chunked,
}

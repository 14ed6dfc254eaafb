//! Errors of the `files` driver, converted into [`amber_dr_core::Error`].

use std::path::PathBuf;

use amber_dr_core::Error;

#[derive(Debug, thiserror::Error)]
pub(crate) enum FilesError {
    #[error("directory `{}` does not exist", .0.display())]
    Missing(PathBuf),
    #[error("`{}` is not a directory", .0.display())]
    NotADirectory(PathBuf),
    #[error("restored tree differs from the backup record: {0}")]
    Mismatch(String),
    #[error("target `{}` has no parent directory to restore beside", .0.display())]
    NoParent(PathBuf),
    #[error("cannot swap the restored directory into `{}`: {source}; the old directory is unchanged", path.display())]
    Swap {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl FilesError {
    pub(crate) fn into_core(self, component: &str, kind: &str, operation: &str) -> Error {
        Error::Component {
            component: component.to_string(),
            kind: kind.to_string(),
            operation: operation.to_string(),
            message: self.to_string(),
            source: None,
        }
    }
}

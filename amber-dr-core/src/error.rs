//! The one error type of amber-dr.

use std::path::PathBuf;

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in amber-dr.
///
/// Drivers keep their own private error types and convert into this one, choosing the
/// variant that tells the operator what to do. Every variant names what failed and where.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is invalid (exit code 2).
    #[error("configuration error in {location}: {}", crate::redact::redact(.message))]
    Config {
        /// Where: a file and key, or a component name.
        location: String,
        /// What is wrong and how to fix it.
        message: String,
    },

    /// A component kind that no registered driver provides (exit code 2).
    #[error("unknown component kind `{kind}` for component `{component}`; known kinds: {known}")]
    UnknownKind {
        /// The component's name in the config.
        component: String,
        /// The kind asked for.
        kind: String,
        /// The registered kinds, comma separated.
        known: String,
    },

    /// The repository could not be read or written.
    #[error("repository {repo}: {operation} `{path}` failed: {}", crate::redact::redact(&.source.to_string()))]
    Repository {
        /// The repository URL (without credentials).
        repo: String,
        /// What was being done.
        operation: &'static str,
        /// The object path inside the repository.
        path: String,
        /// The underlying object store error.
        #[source]
        source: Box<object_store::Error>,
    },

    /// A backup id (or `latest`) that the repository does not hold.
    #[error("backup `{id}` not found in repository {repo}")]
    BackupNotFound {
        /// The repository URL.
        repo: String,
        /// The id asked for.
        id: String,
    },

    /// A backup directory without a manifest: its run was interrupted, or is still going.
    #[error("backup {id} in {repo} is incomplete: it has no manifest (its run was interrupted, or is still going)")]
    Incomplete {
        /// The repository URL.
        repo: String,
        /// The backup's id.
        id: String,
    },

    /// A backup whose artifacts were written but whose run could not finish it (e.g. its
    /// manifest could not be written for lack of space); the CLI still prints its id.
    #[error("backup {id}: {}", crate::redact::redact(.message))]
    BackupUnfinished {
        /// The backup's id.
        id: String,
        /// What happened.
        message: String,
    },

    /// A manifest that cannot be used: unknown format version, not JSON, missing fields.
    #[error("manifest `{path}`: {}", crate::redact::redact(.message))]
    Manifest {
        /// The manifest path in the repository.
        path: String,
        /// What is wrong with it.
        message: String,
    },

    /// Stored data is damaged: a checksum or length mismatch, or content that does not decode.
    /// `verify` reports these as damage (exit code 3).
    #[error("artifact `{artifact}` is damaged: {}", crate::redact::redact(.message))]
    Corrupt {
        /// The artifact path in the repository.
        artifact: String,
        /// What was found.
        message: String,
    },

    /// An artifact that the manifest lists is missing from the repository (damage, exit code 3).
    #[error("artifact `{artifact}` is missing from the repository")]
    MissingArtifact {
        /// The artifact path in the repository.
        artifact: String,
    },

    /// Another run holds the repository lock.
    #[error("repository {repo} is locked by {holder} (lock object `{path}`); {hint}")]
    Locked {
        /// The repository URL.
        repo: String,
        /// Who holds it: host, pid, operation, since when.
        holder: String,
        /// The lock object's path.
        path: String,
        /// What to do about it.
        hint: String,
    },

    /// A component failed while talking to its server or its data.
    #[error("component `{component}` ({kind}): {operation}: {}", crate::redact::redact(.message))]
    Component {
        /// The component's name.
        component: String,
        /// The component's kind.
        kind: String,
        /// What was being done (e.g. `snapshot`, `restore`).
        operation: String,
        /// What went wrong, said so that an operator can act on it.
        message: String,
        /// The underlying error, if any.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },

    /// Data to restore was refused because it is unsafe (e.g. a hostile archive entry).
    #[error("refused unsafe content in `{artifact}`: {}", crate::redact::redact(.message))]
    Unsafe {
        /// The artifact the content came from.
        artifact: String,
        /// What was refused and why.
        message: String,
    },

    /// A local file-system operation failed.
    #[error("{operation} `{}`: {source}", path.display())]
    Io {
        /// What was being done.
        operation: &'static str,
        /// The local path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// The operation is not supported by this component or repository.
    #[error("not supported: {}", crate::redact::redact(.0))]
    NotSupported(String),

    /// The run was interrupted (Ctrl-C, SIGTERM).
    #[error("interrupted")]
    Interrupted,

    /// Anything else, with context.
    #[error("{}", crate::redact::redact(.0))]
    Other(String),
}

impl Error {
    /// A [`Error::Component`] without an underlying source.
    pub fn component(
        component: impl Into<String>,
        kind: impl Into<String>,
        operation: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Error::Component {
            component: component.into(),
            kind: kind.into(),
            operation: operation.into(),
            message: message.into(),
            source: None,
        }
    }

    /// A [`Error::Io`] for a local path.
    pub fn io(operation: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            operation,
            path: path.into(),
            source,
        }
    }

    /// A [`Error::Config`].
    pub fn config(location: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Config {
            location: location.into(),
            message: message.into(),
        }
    }

    /// True when the error means stored data is damaged or missing (verify exits 3).
    pub fn is_damage(&self) -> bool {
        matches!(self, Error::Corrupt { .. } | Error::MissingArtifact { .. })
    }

    /// The message with every cause it does not already include, redacted: what a program
    /// shows its operator.
    pub fn full_message(&self) -> String {
        let mut message = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(s) = source {
            let text = s.to_string();
            if !text.is_empty() && !message.contains(&text) {
                message.push_str(": ");
                message.push_str(&text);
            }
            source = s.source();
        }
        crate::redact::redact(&message)
    }

    /// A usage error: the configuration or the command line is wrong (exit code 2).
    pub fn is_usage(&self) -> bool {
        matches!(self, Error::Config { .. } | Error::UnknownKind { .. })
    }

    /// Recover an [`Error`] that travelled through an [`std::io::Error`] (e.g. out of an
    /// `AsyncRead`), or wrap the I/O error with context.
    pub fn from_io(operation: &'static str, path: impl Into<PathBuf>, err: std::io::Error) -> Self {
        if err
            .get_ref()
            .map(|inner| inner.is::<Error>())
            .unwrap_or(false)
        {
            match err.into_inner().map(|b| b.downcast::<Error>()) {
                Some(Ok(e)) => return *e,
                Some(Err(other)) => return Error::Other(other.to_string()),
                None => return Error::Other("I/O error".into()),
            }
        }
        Error::io(operation, path, err)
    }

    /// Wrap this error into an [`std::io::Error`] so that it can travel through `AsyncRead`
    /// and `Write` implementations and be recovered with [`Error::from_io`].
    pub fn into_io(self) -> std::io::Error {
        let kind = match &self {
            Error::Corrupt { .. } | Error::Unsafe { .. } => std::io::ErrorKind::InvalidData,
            _ => std::io::ErrorKind::Other,
        };
        std::io::Error::new(kind, self)
    }
}

//! Errors of the `postgres` driver, converted into [`amber_dr_core::Error`].

use amber_dr_core::Error;

#[derive(Debug, thiserror::Error)]
pub(crate) enum PgError {
    #[error("cannot connect to {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("timed out after {secs}s connecting to {url}")]
    ConnectTimeout { url: String, secs: u64 },
    #[error("query failed on database `{db}` ({what}): {source}")]
    Query {
        db: String,
        what: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("database `{0}` does not exist on the server; it has: {1}")]
    UnknownDatabase(String, String),
    #[error("{0}")]
    Tools(String),
    #[error("database `{db}` restored, but it differs from the backup: {detail}")]
    Mismatch { db: String, detail: String },
}

impl PgError {
    /// The message with the server's own words where there are some.
    pub(crate) fn server_message(&self) -> String {
        match self {
            PgError::Connect { url, source } => {
                format!("cannot connect to {url}: {}", db_message(source))
            }
            PgError::Query { db, what, source } => {
                format!(
                    "query failed on database `{db}` ({what}): {}",
                    db_message(source)
                )
            }
            other => other.to_string(),
        }
    }

    pub(crate) fn into_core(self, component: &str, operation: &str) -> Error {
        // tokio_postgres's Display hides the server's message; show it.
        let msg = self.server_message();
        Error::Component {
            component: component.to_string(),
            kind: crate::KIND.to_string(),
            operation: operation.to_string(),
            message: msg,
            source: Some(Box::new(self)),
        }
    }
}

/// The server's own error message when there is one (e.g. "password authentication failed").
pub(crate) fn db_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => {
            let mut s = e.to_string();
            let mut src = std::error::Error::source(e);
            while let Some(inner) = src {
                s.push_str(&format!(": {inner}"));
                src = inner.source();
            }
            s
        }
    }
}

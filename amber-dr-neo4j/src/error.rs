//! Errors of the `neo4j` driver, converted into [`amber_dr_core::Error`].

use amber_dr_core::Error;

#[derive(Debug, thiserror::Error)]
pub(crate) enum Neo4jError {
    #[error("cannot connect to {uri} as `{user}`: {message}")]
    Connect {
        uri: String,
        user: String,
        message: String,
    },
    #[error("timed out after {secs}s talking to {uri} ({what})")]
    Timeout {
        uri: String,
        secs: u64,
        what: String,
    },
    #[error("query failed on {uri}, database `{db}` ({what}): {message}")]
    Query {
        uri: String,
        db: String,
        what: String,
        message: String,
    },
    #[error("database `{db}` on {uri}: {message}")]
    Data {
        uri: String,
        db: String,
        message: String,
    },
    #[error("database `{db}` on {uri} restored, but it differs from the backup: {detail}")]
    Mismatch {
        uri: String,
        db: String,
        detail: String,
    },
}

impl Neo4jError {
    pub(crate) fn into_core(self, component: &str, operation: &str) -> Error {
        Error::Component {
            component: component.to_string(),
            kind: crate::KIND.to_string(),
            operation: operation.to_string(),
            message: self.to_string(),
            source: None,
        }
    }
}

/// The server's own words for a neo4rs error (code and message), or the error chain.
pub(crate) fn bolt_message(e: &neo4rs::Error) -> String {
    match e {
        neo4rs::Error::Neo4j(n) => format!("{}: {}", n.code(), n.message()),
        other => {
            let mut s = other.to_string();
            let mut src = std::error::Error::source(other);
            while let Some(inner) = src {
                s.push_str(&format!(": {inner}"));
                src = inner.source();
            }
            s
        }
    }
}

//! Errors of the `milvus` driver, converted into [`amber_dr_core::Error`] where they surface.

/// What went wrong talking to Milvus.
#[derive(Debug, thiserror::Error)]
pub(crate) enum MilvusError {
    #[error("cannot reach Milvus at {endpoint}: {message}")]
    Unreachable { endpoint: String, message: String },
    #[error("Milvus at {endpoint} failed {what}: {message}")]
    Call {
        endpoint: String,
        what: String,
        message: String,
    },
}

/// An error with its causes.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        let m = inner.to_string();
        if !s.contains(&m) {
            s.push_str(&format!(": {m}"));
        }
        src = inner.source();
    }
    s
}

//! Errors of the `etcd` driver, converted into [`amber_dr_core::Error`] where they surface.

/// What went wrong talking to etcd.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EtcdError {
    #[error("cannot reach etcd at {endpoint} ({what}): {message}")]
    Unreachable {
        endpoint: String,
        what: String,
        message: String,
    },
    #[error("etcd at {endpoint} refused {what}: {message}")]
    Server {
        endpoint: String,
        what: String,
        message: String,
    },
    #[error("etcd at {endpoint} sent an answer to {what} that cannot be read: {message}")]
    Protocol {
        endpoint: String,
        what: String,
        message: String,
    },
}

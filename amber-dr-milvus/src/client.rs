//! The gRPC client: the generated Milvus service of `milvus-sdk-rust` (its `proto` module),
//! called directly so that requests carry exactly the fields Milvus 2.3 understands.

use milvus::proto::common::Status;
use milvus::proto::milvus::milvus_service_client::MilvusServiceClient;
use tonic::transport::{Channel, Endpoint};

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

/// A connected client.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    pub svc: MilvusServiceClient<Channel>,
    pub endpoint: String,
}

impl Client {
    pub(crate) async fn connect(
        endpoint: &str,
        timeout: std::time::Duration,
    ) -> Result<Self, MilvusError> {
        let unreachable = |message: String| MilvusError::Unreachable {
            endpoint: endpoint.to_string(),
            message,
        };
        let ep = Endpoint::from_shared(endpoint.to_string())
            .map_err(|e| unreachable(e.to_string()))?
            .connect_timeout(timeout)
            .timeout(timeout);
        let channel = tokio::time::timeout(timeout, ep.connect())
            .await
            .map_err(|_| unreachable(format!("no connection within {}s", timeout.as_secs())))?
            .map_err(|e| unreachable(error_chain(&e)))?;
        let svc = MilvusServiceClient::new(channel)
            .max_decoding_message_size(512 * 1024 * 1024)
            .max_encoding_message_size(512 * 1024 * 1024);
        Ok(Self {
            svc,
            endpoint: endpoint.to_string(),
        })
    }

    /// An error for `what`.
    pub(crate) fn call_err(&self, what: &str, message: impl Into<String>) -> MilvusError {
        MilvusError::Call {
            endpoint: self.endpoint.clone(),
            what: what.to_string(),
            message: message.into(),
        }
    }

    /// A transport error of `what`.
    pub(crate) fn grpc(&self, what: &str) -> impl Fn(tonic::Status) -> MilvusError + '_ {
        let what = what.to_string();
        move |s| self.call_err(&what, format!("{}: {}", code_name(s.code()), s.message()))
    }

    /// Fail unless `status` says success. (`error_code` is deprecated in newer protos but is
    /// what Milvus 2.3 sets.)
    #[allow(deprecated)]
    pub(crate) fn check(&self, what: &str, status: Option<&Status>) -> Result<(), MilvusError> {
        match status {
            Some(s) if s.code != 0 || s.error_code != 0 => Err(self.call_err(
                what,
                format!(
                    "{} (code {}, error_code {})",
                    s.reason, s.code, s.error_code
                ),
            )),
            _ => Ok(()),
        }
    }
}

fn code_name(c: tonic::Code) -> String {
    format!("{c:?}")
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

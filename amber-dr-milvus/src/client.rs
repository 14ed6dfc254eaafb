//! The gRPC client: the generated Milvus service of `milvus-sdk-rust` (its `proto` module),
//! called directly so that requests carry exactly the fields Milvus 2.3 understands.

use std::future::Future;

use milvus::proto::common::Status;
use milvus::proto::milvus as pb;
use milvus::proto::milvus::milvus_service_client::MilvusServiceClient;
use tonic::transport::{Channel, Endpoint};

use crate::error::{error_chain, MilvusError};

/// The generated gRPC service client (cheap to clone: clones share one connection).
pub(crate) type Svc = MilvusServiceClient<Channel>;

/// An answer that carries a status (or is one).
pub(crate) trait Reply {
    /// The status the server set, if any.
    fn status(&self) -> Option<&Status>;
}

impl Reply for Status {
    fn status(&self) -> Option<&Status> {
        Some(self)
    }
}

macro_rules! replies_with_status {
    ($($t:ty),* $(,)?) => {
        $(impl Reply for $t {
            fn status(&self) -> Option<&Status> {
                self.status.as_ref()
            }
        })*
    };
}

replies_with_status!(
    pb::BoolResponse,
    pb::DescribeCollectionResponse,
    pb::DescribeIndexResponse,
    pb::FlushResponse,
    pb::GetCollectionStatisticsResponse,
    pb::GetFlushStateResponse,
    pb::GetImportStateResponse,
    pb::GetPersistentSegmentInfoResponse,
    pb::ImportResponse,
    pb::GetLoadStateResponse,
    pb::GetVersionResponse,
    pb::ListDatabasesResponse,
    pb::MutationResult,
    pb::QueryResults,
    pb::ShowCollectionsResponse,
    pb::ShowPartitionsResponse,
);

/// A connected client.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    pub svc: Svc,
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

    /// Call `rpc` on the service, for `what` (named in errors); transport errors and a status
    /// that is not success become errors.
    pub(crate) async fn call<R, F, Fut>(&self, what: &str, rpc: F) -> Result<R, MilvusError>
    where
        R: Reply,
        F: FnOnce(Svc) -> Fut,
        Fut: Future<Output = Result<tonic::Response<R>, tonic::Status>>,
    {
        let r = self.call_unchecked(what, rpc).await?;
        self.check(what, r.status())?;
        Ok(r)
    }

    /// [`Client::call`] without looking at the answer's status.
    pub(crate) async fn call_unchecked<R, F, Fut>(
        &self,
        what: &str,
        rpc: F,
    ) -> Result<R, MilvusError>
    where
        F: FnOnce(Svc) -> Fut,
        Fut: Future<Output = Result<tonic::Response<R>, tonic::Status>>,
    {
        let started = std::time::Instant::now();
        let r = rpc(self.svc.clone()).await;
        tracing::trace!(
            target: "amber_dr_milvus::rpc",
            what,
            ms = started.elapsed().as_secs_f64() * 1e3,
            ok = r.is_ok(),
            "call"
        );
        Ok(r.map_err(self.grpc(what))?.into_inner())
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

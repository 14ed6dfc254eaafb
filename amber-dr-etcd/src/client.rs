//! A small client for etcd's v3 JSON gateway (`/v3/kv/range`, `/v3/kv/txn`, ...).
//!
//! etcd (3.3 and later) serves its gRPC API as JSON over HTTP on the client port: keys and
//! values travel base64-encoded, 64-bit integers as strings. That needs no protobuf toolchain
//! and reuses the HTTP client the repository already depends on.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::EtcdError;

/// One key-value pair, as bytes.
#[derive(Debug, Clone)]
pub(crate) struct Kv {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
}

/// One page of a range read.
#[derive(Debug)]
pub(crate) struct Page {
    pub kvs: Vec<Kv>,
    pub more: bool,
}

#[derive(Deserialize)]
struct Header {
    #[serde(default)]
    revision: Option<String>,
}

#[derive(Deserialize)]
struct RawKv {
    key: String,
    #[serde(default)]
    value: Option<String>,
}

#[derive(Deserialize)]
struct RangeResponse {
    header: Header,
    #[serde(default)]
    kvs: Vec<RawKv>,
    #[serde(default)]
    more: bool,
    #[serde(default)]
    count: Option<String>,
}

#[derive(Deserialize)]
struct TxnResponse {
    #[serde(default)]
    succeeded: bool,
}

/// Facts from `/v3/maintenance/status`.
#[derive(Debug, Deserialize)]
pub(crate) struct Status {
    pub version: String,
    #[serde(rename = "dbSize", default)]
    pub db_size: Option<String>,
    pub header: StatusHeader,
}

/// The header of a status answer.
#[derive(Debug, Deserialize)]
pub(crate) struct StatusHeader {
    #[serde(default)]
    pub revision: Option<String>,
}

/// The gateway's answer to the maintenance `Snapshot` call: one JSON object a line, each
/// `{"result": {"remaining_bytes": "N", "blob": BASE64}}` (or `{"error": ...}`).
#[derive(Debug)]
pub(crate) struct SnapshotStream {
    resp: reqwest::Response,
    buf: Vec<u8>,
    endpoint: String,
    done: bool,
}

impl SnapshotStream {
    fn err(&self, message: impl Into<String>) -> EtcdError {
        EtcdError::Protocol {
            endpoint: self.endpoint.clone(),
            what: "the maintenance snapshot".into(),
            message: message.into(),
        }
    }

    /// The next bytes of the snapshot, or `None` at its end. Fails when the stream breaks
    /// off before the server said nothing remains.
    pub(crate) async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, EtcdError> {
        loop {
            if let Some(nl) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=nl).collect();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let v: Value = serde_json::from_slice(&line)
                    .map_err(|e| self.err(format!("a line is not JSON: {e}")))?;
                if let Some(e) = v.get("error") {
                    return Err(EtcdError::Server {
                        endpoint: self.endpoint.clone(),
                        what: "the maintenance snapshot".into(),
                        message: e.to_string(),
                    });
                }
                let r = v
                    .get("result")
                    .ok_or_else(|| self.err("a line has no `result`"))?;
                let remaining = r
                    .get("remaining_bytes")
                    .and_then(Value::as_str)
                    .unwrap_or("0");
                self.done = remaining == "0";
                let blob = r.get("blob").and_then(Value::as_str).unwrap_or("");
                let bytes = B64
                    .decode(blob)
                    .map_err(|e| self.err(format!("a blob is not base64: {e}")))?;
                return Ok(Some(bytes));
            }
            let chunk = self
                .resp
                .chunk()
                .await
                .map_err(|e| EtcdError::Unreachable {
                    endpoint: self.endpoint.clone(),
                    what: "the maintenance snapshot".into(),
                    message: error_chain(&e),
                })?;
            match chunk {
                Some(c) => self.buf.extend_from_slice(&c),
                None if self.done && self.buf.iter().all(u8::is_ascii_whitespace) => {
                    return Ok(None)
                }
                None => return Err(self.err("the stream ended before the whole snapshot was sent")),
            }
        }
    }
}

/// The first key after every key starting with `prefix` (etcd's `range_end` for a prefix);
/// `[0]` (meaning "to the end of the keyspace") when there is none.
pub(crate) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// The client.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    http: reqwest::Client,
    endpoints: Vec<String>,
    /// Index of the endpoint that answered last.
    current: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Client {
    pub(crate) fn new(endpoints: &[String], timeout: std::time::Duration) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .connect_timeout(timeout)
            .timeout(timeout)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            http,
            endpoints: endpoints
                .iter()
                .map(|e| e.trim_end_matches('/').to_string())
                .collect(),
            current: Default::default(),
        })
    }

    /// The endpoint in use (the one that answered last).
    pub(crate) fn endpoint(&self) -> &str {
        let i = self.current.load(std::sync::atomic::Ordering::Relaxed);
        &self.endpoints[i % self.endpoints.len()]
    }

    /// One request, to the endpoint that answered last, then to the others while they cannot
    /// be reached (a refused or timed-out connection; a server's error answer is final).
    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        what: &str,
        body: Value,
    ) -> Result<T, EtcdError> {
        let start = self.current.load(std::sync::atomic::Ordering::Relaxed);
        let n = self.endpoints.len();
        let mut unreachable = Vec::new();
        for i in 0..n {
            let idx = (start + i) % n;
            match self.call_one(&self.endpoints[idx], path, what, &body).await {
                Err(EtcdError::Unreachable { message, .. }) => {
                    unreachable.push(format!("{}: {message}", self.endpoints[idx]));
                }
                other => {
                    self.current
                        .store(idx, std::sync::atomic::Ordering::Relaxed);
                    return other;
                }
            }
        }
        Err(EtcdError::Unreachable {
            endpoint: self.endpoints.join(", "),
            what: what.to_string(),
            message: unreachable.join("; "),
        })
    }

    async fn call_one<T: serde::de::DeserializeOwned>(
        &self,
        endpoint: &str,
        path: &str,
        what: &str,
        body: &Value,
    ) -> Result<T, EtcdError> {
        let url = format!("{endpoint}{path}");
        let resp = self
            .http
            .post(&url)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| EtcdError::Unreachable {
                endpoint: endpoint.to_string(),
                what: what.to_string(),
                message: error_chain(&e),
            })?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| EtcdError::Unreachable {
            endpoint: endpoint.to_string(),
            what: what.to_string(),
            message: error_chain(&e),
        })?;
        if !status.is_success() {
            // The gateway answers errors as {"error": "...", "code": N, "message": "..."}.
            let message = serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|v| {
                    v.get("message")
                        .or_else(|| v.get("error"))
                        .and_then(Value::as_str)
                        .map(str::to_string)
                })
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).chars().take(300).collect());
            return Err(EtcdError::Server {
                endpoint: endpoint.to_string(),
                what: what.to_string(),
                message: format!("HTTP {status}: {message}"),
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| EtcdError::Protocol {
            endpoint: endpoint.to_string(),
            what: what.to_string(),
            message: e.to_string(),
        })
    }

    /// Start etcd's own snapshot of the member's whole database (maintenance API `Snapshot`),
    /// streamed: read it with [`SnapshotStream::next_chunk`]. `timeout` bounds the whole
    /// transfer (the client's per-request timeout is too short for a large database).
    pub(crate) async fn snapshot(
        &self,
        timeout: std::time::Duration,
    ) -> Result<SnapshotStream, EtcdError> {
        let what = "the maintenance snapshot";
        let endpoint = self.endpoint().to_string();
        let unreachable = |e: reqwest::Error| EtcdError::Unreachable {
            endpoint: endpoint.clone(),
            what: what.to_string(),
            message: error_chain(&e),
        };
        let resp = self
            .http
            .post(format!("{endpoint}/v3/maintenance/snapshot"))
            .header("content-type", "application/json")
            .body("{}")
            .timeout(timeout)
            .send()
            .await
            .map_err(unreachable)?;
        if !resp.status().is_success() {
            let status = resp.status();
            let body = resp.text().await.unwrap_or_default();
            return Err(EtcdError::Server {
                endpoint,
                what: what.to_string(),
                message: format!(
                    "HTTP {status}: {}",
                    body.chars().take(300).collect::<String>()
                ),
            });
        }
        Ok(SnapshotStream {
            resp,
            buf: Vec::new(),
            endpoint,
            done: false,
        })
    }

    fn protocol(&self, what: &str, message: impl Into<String>) -> EtcdError {
        EtcdError::Protocol {
            endpoint: self.endpoint().to_string(),
            what: what.to_string(),
            message: message.into(),
        }
    }

    /// Server version, database size, current revision.
    pub(crate) async fn status(&self) -> Result<Status, EtcdError> {
        self.call("/v3/maintenance/status", "status", json!({}))
            .await
    }

    /// Keys in `[from, end)` at `revision` (0: the current one), at most `limit`.
    pub(crate) async fn range(
        &self,
        from: &[u8],
        end: &[u8],
        revision: i64,
        limit: usize,
    ) -> Result<Page, EtcdError> {
        let what = "a range read";
        let r: RangeResponse = self
            .call(
                "/v3/kv/range",
                what,
                json!({
                    "key": B64.encode(from),
                    "range_end": B64.encode(end),
                    "revision": revision.to_string(),
                    "limit": limit.to_string(),
                    "sort_order": "ASCEND",
                    "sort_target": "KEY",
                }),
            )
            .await?;
        self.revision(&r.header, what)?;
        let mut kvs = Vec::with_capacity(r.kvs.len());
        for kv in r.kvs {
            let key = B64
                .decode(kv.key)
                .map_err(|e| self.protocol(what, format!("key not base64: {e}")))?;
            let value = match kv.value {
                Some(v) => B64
                    .decode(v)
                    .map_err(|e| self.protocol(what, format!("value not base64: {e}")))?,
                None => Vec::new(),
            };
            kvs.push(Kv { key, value });
        }
        Ok(Page { kvs, more: r.more })
    }

    /// Number of keys in `[from, end)` now, and the revision it was counted at.
    pub(crate) async fn count(&self, from: &[u8], end: &[u8]) -> Result<(u64, i64), EtcdError> {
        let what = "a count";
        let r: RangeResponse = self
            .call(
                "/v3/kv/range",
                what,
                json!({
                    "key": B64.encode(from),
                    "range_end": B64.encode(end),
                    "count_only": true,
                }),
            )
            .await?;
        let rev = self.revision(&r.header, what)?;
        let count = match r.count {
            Some(c) => c
                .parse()
                .map_err(|e| self.protocol(what, format!("count `{c}`: {e}")))?,
            None => 0,
        };
        Ok((count, rev))
    }

    /// Delete every key in `[from, end)`; returns the number deleted.
    pub(crate) async fn delete_range(&self, from: &[u8], end: &[u8]) -> Result<u64, EtcdError> {
        #[derive(Deserialize)]
        struct Resp {
            #[serde(default)]
            deleted: Option<String>,
        }
        let what = "a delete of the prefix";
        let r: Resp = self
            .call(
                "/v3/kv/deleterange",
                what,
                json!({ "key": B64.encode(from), "range_end": B64.encode(end) }),
            )
            .await?;
        match r.deleted {
            Some(d) => d
                .parse()
                .map_err(|e| self.protocol(what, format!("deleted `{d}`: {e}"))),
            None => Ok(0),
        }
    }

    /// Put every pair in one transaction.
    pub(crate) async fn put_all(&self, kvs: &[Kv]) -> Result<(), EtcdError> {
        let ops: Vec<Value> = kvs
            .iter()
            .map(|kv| {
                json!({"request_put": {"key": B64.encode(&kv.key), "value": B64.encode(&kv.value)}})
            })
            .collect();
        let what = "a write transaction";
        let r: TxnResponse = self
            .call("/v3/kv/txn", what, json!({ "success": ops }))
            .await?;
        if !r.succeeded {
            return Err(self.protocol(what, "the transaction did not succeed"));
        }
        Ok(())
    }

    fn revision(&self, h: &Header, what: &str) -> Result<i64, EtcdError> {
        h.revision
            .as_deref()
            .unwrap_or("0")
            .parse()
            .map_err(|e| self.protocol(what, format!("revision: {e}")))
    }
}

/// An error with its causes (reqwest's Display hides "connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"a/"), b"a0".to_vec());
        assert_eq!(prefix_end(&[b'a', 0xff]), b"b".to_vec());
        assert_eq!(prefix_end(&[0xff, 0xff]), vec![0]);
        assert_eq!(prefix_end(b""), vec![0]);
    }
}

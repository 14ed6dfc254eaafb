//! A small streaming S3 client: AWS Signature Version 4, path-style (or virtual-hosted)
//! addressing, bucket operations and exact object keys.
//!
//! `object_store` covers object I/O for the repository, but its `Path` cannot name every S3
//! key (`a//b`, `dir/`, ...) and it has no bucket operations; a backup of an S3 store must
//! reproduce keys byte for byte. This module talks to S3 directly:
//!
//! - keys are sent percent-encoded byte for byte (everything but `A-Za-z0-9-._~` and `/`) and
//!   read back from listings by exact XML unescaping (never `encoding-type=url`);
//! - bodies stream in both directions (`AsyncRead` in, `AsyncRead` out) with bounded memory;
//!   uploads of unknown or large size use multipart upload, one part buffered at a time;
//! - errors name the endpoint, bucket and key and translate S3's error codes into plain
//!   words; they never contain the secret key.
//!
//! Keys with a `.` or `..` path segment (`a/../b`) cannot be addressed: HTTP URL
//! normalisation would rewrite them, so they are refused with a clear error.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::stream::{self, BoxStream, Stream, StreamExt, TryStreamExt};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, Url};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};
use tokio_util::io::StreamReader;

/// The smallest part size S3 accepts for every part but the last (5 MiB).
pub const MIN_PART_SIZE: usize = 5 * 1024 * 1024;
/// The largest number of parts in one multipart upload.
pub const MAX_PARTS: u32 = 10_000;

const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A response (headers or the next piece of a body) that takes longer than this fails.
const READ_TIMEOUT: Duration = Duration::from_secs(300);
const CHUNK: usize = 64 * 1024;
/// Keys asked for per listing page by [`S3Client::list_all`]. S3 and MinIO cap a page at
/// 1,000 and say so by truncating; servers that honour more (s3s-fs, which rescans the whole
/// bucket for every page) need fewer round trips. A page of this many keys is a few MiB of XML
/// (about 13 MiB with keys of the maximum length, 1,024 bytes).
pub const LIST_PAGE_KEYS: u32 = 10_000;

/// Aborts a spawned task when dropped (the listing prefetch of an abandoned stream).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

// ================================================================ config

/// Where and how to reach an S3-compatible endpoint.
#[derive(Clone)]
pub struct S3Config {
    /// Base URL, e.g. `http://127.0.0.1:9000` or `https://s3.eu-west-1.amazonaws.com`.
    pub endpoint: String,
    /// Region to sign for (`us-east-1` for most S3-compatible servers).
    pub region: String,
    /// Access key id.
    pub access_key: String,
    /// Secret access key; never printed (see the `Debug` impl) nor put in an error.
    pub secret_key: String,
    /// `true`: `endpoint/bucket/key` (MinIO, s3s, moto). `false`: `bucket.host/key`
    /// (virtual-hosted, AWS), for DNS-compatible bucket names.
    pub path_style: bool,
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .field("path_style", &self.path_style)
            .finish()
    }
}

// ================================================================ errors

/// An S3 call that failed: which call, at which endpoint, on which bucket and key, and why.
///
/// The message never contains the secret key.
#[derive(Debug)]
pub struct S3Error {
    op: &'static str,
    endpoint: String,
    bucket: Option<String>,
    key: Option<String>,
    kind: Box<ErrorKind>,
}

#[derive(Debug)]
enum ErrorKind {
    /// The request could not be built (bad endpoint, bad key, bad header value).
    Invalid(String),
    /// No HTTP response: connection refused, DNS, TLS, timeout.
    Transport(String),
    /// The server answered with an error status (and usually an S3 error document).
    Service {
        status: u16,
        code: Option<String>,
        message: Option<String>,
    },
    /// The response could not be understood.
    Protocol(String),
    /// Reading the body to upload failed, or it had another length than announced.
    Body(io::Error),
}

impl S3Error {
    /// The HTTP status the server answered with, if it answered.
    pub fn status(&self) -> Option<u16> {
        match &*self.kind {
            ErrorKind::Service { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// S3's error code (`NoSuchKey`, `SignatureDoesNotMatch`, ...), if the server sent one.
    pub fn code(&self) -> Option<&str> {
        match &*self.kind {
            ErrorKind::Service { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    /// The bucket or object does not exist (HTTP 404, `NoSuchBucket`, `NoSuchKey`).
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
            || matches!(self.code(), Some("NoSuchBucket" | "NoSuchKey" | "NotFound"))
    }

    /// No HTTP response was received (connection refused, timeout, DNS, TLS).
    pub fn is_transport(&self) -> bool {
        matches!(*self.kind, ErrorKind::Transport(_))
    }

    /// The credentials were rejected (wrong secret or unknown access key).
    pub fn is_auth(&self) -> bool {
        matches!(
            self.code(),
            Some("SignatureDoesNotMatch" | "InvalidAccessKeyId" | "AccessDenied")
        ) || self.status() == Some(403)
    }
}

impl fmt::Display for S3Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "S3 {} at {}", self.op, self.endpoint)?;
        if let Some(b) = &self.bucket {
            write!(f, ", bucket {b:?}")?;
        }
        if let Some(k) = &self.key {
            write!(f, ", key {k:?}")?;
        }
        f.write_str(": ")?;
        match &*self.kind {
            ErrorKind::Invalid(m) | ErrorKind::Transport(m) | ErrorKind::Protocol(m) => {
                f.write_str(m)
            }
            ErrorKind::Body(e) => write!(f, "reading the body to upload: {e}"),
            ErrorKind::Service {
                status,
                code,
                message,
            } => f.write_str(&describe_service_error(
                *status,
                code.as_deref(),
                message.as_deref(),
            )),
        }
    }
}

impl std::error::Error for S3Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &*self.kind {
            ErrorKind::Body(e) => Some(e),
            _ => None,
        }
    }
}

fn describe_service_error(status: u16, code: Option<&str>, message: Option<&str>) -> String {
    let plain = match code {
        Some("SignatureDoesNotMatch") => {
            Some("the secret key was rejected (SignatureDoesNotMatch)".to_string())
        }
        Some("InvalidAccessKeyId") => {
            Some("the access key is not known to the server (InvalidAccessKeyId)".to_string())
        }
        Some("AccessDenied") => Some("access denied (AccessDenied)".to_string()),
        Some("NoSuchBucket") => Some("the bucket does not exist (NoSuchBucket)".to_string()),
        Some("NoSuchKey") => Some("the object does not exist (NoSuchKey)".to_string()),
        Some("NoSuchUpload") => Some("the multipart upload does not exist (NoSuchUpload)".into()),
        Some("BucketAlreadyExists") => {
            Some("the bucket name is taken by another account (BucketAlreadyExists)".to_string())
        }
        Some("InvalidBucketName") => {
            Some("the bucket name is not valid (InvalidBucketName)".into())
        }
        Some("RequestTimeTooSkewed") => Some(
            "this machine's clock differs too much from the server's (RequestTimeTooSkewed)"
                .to_string(),
        ),
        Some(c) => Some(match message {
            Some(m) if !m.is_empty() => format!("{m} ({c})"),
            _ => c.to_string(),
        }),
        None => None,
    };
    match plain {
        Some(p) => format!("{p}, HTTP {status}"),
        // No error document (HEAD requests have no body).
        None => match status {
            404 => "not found (HTTP 404)".to_string(),
            403 => "access denied (HTTP 403): check the access key and secret key".to_string(),
            301 | 307 => format!("HTTP {status}: the bucket is in another region or endpoint"),
            s => format!(
                "HTTP {s}{}",
                message.map(|m| format!(": {m}")).unwrap_or_default()
            ),
        },
    }
}

/// What every call knows about itself, for error messages.
struct Ctx<'a> {
    op: &'static str,
    bucket: Option<&'a str>,
    key: Option<&'a str>,
}

// ================================================================ object data

/// The headers of an object that a PUT can set and a GET/HEAD returns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectHeaders {
    /// `Content-Type`.
    pub content_type: Option<String>,
    /// `Cache-Control`.
    pub cache_control: Option<String>,
    /// `Content-Disposition`.
    pub content_disposition: Option<String>,
    /// `Content-Encoding` (stored as given; bodies are never decoded by this client).
    pub content_encoding: Option<String>,
    /// `Content-Language`.
    pub content_language: Option<String>,
    /// User metadata (`x-amz-meta-<name>`), names in lower case without the prefix. Values
    /// must be printable ASCII.
    pub metadata: BTreeMap<String, String>,
}

/// What HEAD or GET tells about an object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Size in bytes.
    pub size: u64,
    /// The ETag as the server sent it, quotes included (`"9b2c..."`).
    pub etag: Option<String>,
    /// `Last-Modified`, as the server sent it (an HTTP date).
    pub last_modified: Option<String>,
    /// Content headers and user metadata.
    pub headers: ObjectHeaders,
}

/// One object in a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectSummary {
    /// The exact key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// The ETag as listed, quotes included.
    pub etag: Option<String>,
    /// `LastModified` as listed (ISO 8601).
    pub last_modified: Option<String>,
}

/// One page of a `ListObjectsV2` listing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectPage {
    /// The objects of this page, in key order.
    pub objects: Vec<ObjectSummary>,
    /// Pass this to the next [`S3Client::list_objects`] call; `None` on the last page.
    pub continuation: Option<String>,
}

/// A streaming object body (from [`S3Client::get_object`]). A transfer that breaks off or
/// ends short of `Content-Length` is a read error, never a silent short read.
pub struct ObjectBody {
    inner: StreamReader<BoxStream<'static, io::Result<Bytes>>, Bytes>,
}

impl AsyncRead for ObjectBody {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

/// Hands out the body's chunks as they arrive (no copy through a small buffer).
impl tokio::io::AsyncBufRead for ObjectBody {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        Pin::new(&mut self.get_mut().inner).poll_fill_buf(cx)
    }

    fn consume(mut self: Pin<&mut Self>, amt: usize) {
        Pin::new(&mut self.inner).consume(amt)
    }
}

impl fmt::Debug for ObjectBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ObjectBody")
    }
}

// ================================================================ client

/// An S3 client; cheap to clone (clones share one connection pool).
#[derive(Clone, Debug)]
pub struct S3Client {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: S3Config,
    base: Url,
    http: reqwest::Client,
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inner").field("cfg", &self.cfg).finish()
    }
}

/// A request body.
enum Payload {
    Empty,
    /// Small, in memory: signed with its real SHA-256.
    Bytes(Bytes),
    /// Streamed with this exact length: signed as `UNSIGNED-PAYLOAD`.
    Stream(reqwest::Body, u64),
}

impl S3Client {
    /// A client for `cfg`. Fails only on a malformed endpoint or an HTTP client that cannot
    /// be built; nothing is contacted yet.
    pub fn new(cfg: S3Config) -> Result<Self, S3Error> {
        let invalid = |m: String| S3Error {
            op: "client setup",
            endpoint: cfg.endpoint.clone(),
            bucket: None,
            key: None,
            kind: Box::new(ErrorKind::Invalid(m)),
        };
        let base = Url::parse(cfg.endpoint.trim_end_matches('/'))
            .map_err(|e| invalid(format!("the endpoint is not a URL: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") || base.host_str().is_none() {
            return Err(invalid(
                "the endpoint must be an http:// or https:// URL with a host".into(),
            ));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(invalid(
                "the endpoint must not have a query or fragment".into(),
            ));
        }
        if cfg.region.is_empty() {
            return Err(invalid("the region is empty".into()));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .no_gzip()
            .no_brotli()
            .no_deflate()
            .no_zstd()
            .build()
            .map_err(|e| invalid(format!("cannot build the HTTP client: {}", error_chain(&e))))?;
        Ok(Self {
            inner: Arc::new(Inner { cfg, base, http }),
        })
    }

    /// The endpoint this client talks to.
    pub fn endpoint(&self) -> &str {
        &self.inner.cfg.endpoint
    }

    fn err(&self, cx: &Ctx<'_>, kind: ErrorKind) -> S3Error {
        let mut kind = kind;
        // Belt and braces: no server should echo a secret, but never pass it on if one does
        // (the secret key is registered with core's redaction by `MinioConfig`).
        let redact = amber_dr_core::redact::redact;
        amber_dr_core::redact::register(&self.inner.cfg.secret_key);
        match &mut kind {
            ErrorKind::Invalid(m) | ErrorKind::Transport(m) | ErrorKind::Protocol(m) => {
                *m = redact(m);
            }
            ErrorKind::Service { message, code, .. } => {
                for s in [message, code].into_iter().flatten() {
                    *s = redact(s);
                }
            }
            ErrorKind::Body(_) => {}
        }
        S3Error {
            op: cx.op,
            endpoint: self.inner.cfg.endpoint.clone(),
            bucket: cx.bucket.map(str::to_string),
            key: cx.key.map(str::to_string),
            kind: Box::new(kind),
        }
    }

    /// URL (as sent) and canonical URI (as signed) of `bucket`/`key`.
    fn target(&self, cx: &Ctx<'_>, query: &str) -> Result<(Url, String), S3Error> {
        let bucket = cx.bucket;
        if let Some(b) = bucket {
            if b.is_empty() || b.contains('/') {
                return Err(self.err(cx, ErrorKind::Invalid(format!("bad bucket name {b:?}"))));
            }
        }
        if let Some(k) = cx.key {
            if k.is_empty() {
                return Err(self.err(cx, ErrorKind::Invalid("the key is empty".into())));
            }
            if k.split('/').any(|seg| seg == "." || seg == "..") {
                return Err(self.err(
                    cx,
                    ErrorKind::Invalid(
                        "keys with a \".\" or \"..\" path segment cannot be addressed over \
                         HTTP (URL normalisation would change them)"
                            .into(),
                    ),
                ));
            }
        }
        let base = &self.inner.base;
        let prefix = base.path().trim_end_matches('/');
        let mut host = base.host_str().unwrap_or_default().to_string();
        let mut path = String::from(prefix);
        // Virtual hosts need a DNS name: an IP address endpoint is always path style.
        let virtual_hosted = !self.inner.cfg.path_style
            && base.domain().is_some()
            && bucket.is_some_and(dns_compatible);
        match bucket {
            Some(b) if virtual_hosted => host = format!("{b}.{host}"),
            Some(b) => {
                path.push('/');
                path.push_str(&uri_encode(b, false));
            }
            None => {}
        }
        path.push('/');
        if let Some(k) = cx.key {
            path.push_str(&uri_encode(k, true));
        }
        let mut s = format!("{}://{}", base.scheme(), host);
        if let Some(p) = base.port() {
            s.push_str(&format!(":{p}"));
        }
        s.push_str(&path);
        if !query.is_empty() {
            s.push('?');
            s.push_str(query);
        }
        let url = Url::parse(&s)
            .map_err(|e| self.err(cx, ErrorKind::Invalid(format!("cannot build the URL: {e}"))))?;
        if url.path() != path {
            return Err(self.err(
                cx,
                ErrorKind::Invalid("the key cannot be addressed over HTTP unchanged".into()),
            ));
        }
        Ok((url, path))
    }

    /// Sign and send one request; returns the response if its status is a success,
    /// otherwise the server's error.
    async fn send(
        &self,
        cx: &Ctx<'_>,
        method: Method,
        query: &[(&str, &str)],
        headers: Vec<(String, String)>,
        payload: Payload,
    ) -> Result<reqwest::Response, S3Error> {
        let canonical_query = canonical_query(query);
        let (url, canonical_uri) = self.target(cx, &canonical_query)?;
        let host = match url.port() {
            Some(p) => format!("{}:{p}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_string(),
        };
        let amz_date = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
        let (payload_hash, body, length) = match payload {
            Payload::Empty => (EMPTY_SHA256.to_string(), None, Some(0)),
            Payload::Bytes(b) => {
                let len = b.len() as u64;
                (
                    hex::encode(Sha256::digest(&b)),
                    Some(reqwest::Body::from(b)),
                    Some(len),
                )
            }
            Payload::Stream(body, len) => (UNSIGNED_PAYLOAD.to_string(), Some(body), Some(len)),
        };
        let mut signed: Vec<(String, String)> = headers
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect();
        signed.push(("host".into(), host));
        signed.push(("x-amz-content-sha256".into(), payload_hash.clone()));
        signed.push(("x-amz-date".into(), amz_date.clone()));
        let cfg = &self.inner.cfg;
        let auth = authorization(&SigningInput {
            method: method.as_str(),
            canonical_uri: &canonical_uri,
            canonical_query: &canonical_query,
            headers: &signed,
            payload_hash: &payload_hash,
            amz_date: &amz_date,
            region: &cfg.region,
            access_key: &cfg.access_key,
            secret_key: &cfg.secret_key,
        });
        let mut map = HeaderMap::new();
        for (k, v) in signed.iter().filter(|(k, _)| k != "host") {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| self.err(cx, ErrorKind::Invalid(format!("bad header name {k:?}"))))?;
            let value = HeaderValue::from_str(v).map_err(|_| {
                self.err(
                    cx,
                    ErrorKind::Invalid(format!(
                        "header {k} has a value that is not printable ASCII: {v:?}"
                    )),
                )
            })?;
            map.append(name, value);
        }
        let auth = HeaderValue::from_str(&auth).map_err(|_| {
            self.err(
                cx,
                ErrorKind::Invalid("the access key is not printable ASCII".into()),
            )
        })?;
        map.insert(reqwest::header::AUTHORIZATION, auth);
        if let Some(len) = length {
            if method != Method::GET && method != Method::HEAD {
                map.insert(reqwest::header::CONTENT_LENGTH, HeaderValue::from(len));
            }
        }
        let mut req = self.inner.http.request(method.clone(), url).headers(map);
        if let Some(b) = body {
            req = req.body(b);
        }
        let resp = req.send().await.map_err(|e| {
            // A body stream that failed (our reader) surfaces as a request error too.
            if let Some(io) = find_io_error(&e) {
                if io.kind() != io::ErrorKind::ConnectionRefused
                    && io.kind() != io::ErrorKind::ConnectionReset
                    && e.is_body()
                {
                    return self.err(
                        cx,
                        ErrorKind::Body(io::Error::new(io.kind(), io.to_string())),
                    );
                }
            }
            let what = if e.is_timeout() {
                format!("timed out: {}", error_chain(&e))
            } else if e.is_connect() {
                format!("cannot connect: {}", error_chain(&e))
            } else {
                error_chain(&e)
            };
            self.err(cx, ErrorKind::Transport(what))
        })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        Err(self.service_error(cx, &method, resp).await)
    }

    async fn service_error(
        &self,
        cx: &Ctx<'_>,
        method: &Method,
        resp: reqwest::Response,
    ) -> S3Error {
        let status = resp.status().as_u16();
        let (mut code, mut message) = (None, None);
        if method != Method::HEAD {
            // Error documents are small; cap what we read anyway.
            if let Ok(text) = read_capped(resp, 64 * 1024).await {
                if let Some(err) = element(&text, "Error") {
                    code = element(err, "Code").map(unescape);
                    message = element(err, "Message").map(unescape);
                } else if !text.trim().is_empty() && !text.trim_start().starts_with('<') {
                    message = Some(text.trim().chars().take(300).collect());
                }
            }
        }
        self.err(
            cx,
            ErrorKind::Service {
                status,
                code,
                message,
            },
        )
    }

    async fn text(&self, cx: &Ctx<'_>, resp: reqwest::Response) -> Result<String, S3Error> {
        resp.text().await.map_err(|e| {
            self.err(
                cx,
                ErrorKind::Transport(format!("reading the response: {}", error_chain(&e))),
            )
        })
    }

    // ------------------------------------------------------------ buckets

    /// Names of all buckets the credentials can see.
    pub async fn list_buckets(&self) -> Result<Vec<String>, S3Error> {
        let cx = Ctx {
            op: "ListBuckets",
            bucket: None,
            key: None,
        };
        let mut names = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut q = Vec::new();
            if let Some(t) = &token {
                q.push(("continuation-token", t.as_str()));
            }
            let resp = self
                .send(&cx, Method::GET, &q, vec![], Payload::Empty)
                .await?;
            let xml = self.text(&cx, resp).await?;
            if element(&xml, "ListAllMyBucketsResult").is_none() {
                return Err(self.err(&cx, ErrorKind::Protocol(not_s3(&xml))));
            }
            for b in elements(&xml, "Bucket") {
                match element(b, "Name") {
                    Some(n) => names.push(unescape(n)),
                    None => {
                        return Err(self.err(
                            &cx,
                            ErrorKind::Protocol("a <Bucket> without a <Name>".into()),
                        ))
                    }
                }
            }
            match element(&xml, "ContinuationToken").map(unescape) {
                Some(t) if !t.is_empty() && token.as_deref() != Some(t.as_str()) => token = Some(t),
                _ => break,
            }
        }
        Ok(names)
    }

    /// Create `bucket`. A bucket that exists and that these credentials can use is fine.
    pub async fn create_bucket(&self, bucket: &str) -> Result<(), S3Error> {
        let cx = Ctx {
            op: "CreateBucket",
            bucket: Some(bucket),
            key: None,
        };
        let region = &self.inner.cfg.region;
        let payload = if region == "us-east-1" {
            Payload::Empty
        } else {
            Payload::Bytes(Bytes::from(format!(
                "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
                 <LocationConstraint>{}</LocationConstraint></CreateBucketConfiguration>",
                escape(region)
            )))
        };
        match self.send(&cx, Method::PUT, &[], vec![], payload).await {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("BucketAlreadyOwnedByYou") => Ok(()),
            // Some servers say BucketAlreadyExists (or 409 without a code) to the owner too.
            Err(e) if e.code() == Some("BucketAlreadyExists") || e.status() == Some(409) => {
                if self.head_bucket(bucket).await.unwrap_or(false) {
                    Ok(())
                } else {
                    Err(e)
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Does `bucket` exist (and may these credentials use it)? `false` on 404; an error
    /// for anything else, e.g. 403 (someone else's bucket, or rejected credentials).
    pub async fn head_bucket(&self, bucket: &str) -> Result<bool, S3Error> {
        let cx = Ctx {
            op: "HeadBucket",
            bucket: Some(bucket),
            key: None,
        };
        match self
            .send(&cx, Method::HEAD, &[], vec![], Payload::Empty)
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.status() == Some(404) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Delete an empty bucket.
    pub async fn delete_bucket(&self, bucket: &str) -> Result<(), S3Error> {
        let cx = Ctx {
            op: "DeleteBucket",
            bucket: Some(bucket),
            key: None,
        };
        self.send(&cx, Method::DELETE, &[], vec![], Payload::Empty)
            .await
            .map(drop)
    }

    // ------------------------------------------------------------ listing

    /// One page (up to 1,000 objects) of `bucket`'s objects in key order, starting after
    /// `continuation` (`None` for the first page).
    pub async fn list_objects(
        &self,
        bucket: &str,
        continuation: Option<&str>,
    ) -> Result<ObjectPage, S3Error> {
        self.list_objects_page(bucket, None, continuation, None)
            .await
    }

    /// One page of the objects whose keys start with `prefix`, at most `max_keys` of them
    /// (the server's default, 1,000, when `None`).
    pub async fn list_objects_page(
        &self,
        bucket: &str,
        prefix: Option<&str>,
        continuation: Option<&str>,
        max_keys: Option<u32>,
    ) -> Result<ObjectPage, S3Error> {
        let cx = Ctx {
            op: "ListObjectsV2",
            bucket: Some(bucket),
            key: None,
        };
        let max = max_keys.map(|m| m.to_string());
        let mut q = vec![("list-type", "2")];
        if let Some(p) = prefix {
            q.push(("prefix", p));
        }
        if let Some(c) = continuation {
            q.push(("continuation-token", c));
        }
        if let Some(m) = &max {
            q.push(("max-keys", m));
        }
        let resp = self
            .send(&cx, Method::GET, &q, vec![], Payload::Empty)
            .await?;
        let xml = self.text(&cx, resp).await?;
        let page = parse_list_objects(&xml).map_err(|m| self.err(&cx, ErrorKind::Protocol(m)))?;
        if page
            .continuation
            .as_deref()
            .is_some_and(|c| Some(c) == continuation)
        {
            return Err(self.err(
                &cx,
                ErrorKind::Protocol("the server returned the same continuation token again".into()),
            ));
        }
        Ok(page)
    }

    /// Every object of `bucket` (whose key starts with `prefix`, if given), page by page.
    /// Pages of up to [`LIST_PAGE_KEYS`] keys are asked for (S3 and MinIO send at most 1,000;
    /// servers that send more save round trips), and the next page is fetched by a task of
    /// its own while the current one is consumed, so that a caller working through the
    /// objects never waits for a listing round trip between pages. At most two pages are in
    /// memory: the one consumed and the next (ready or being fetched). Dropping the stream
    /// stops the fetching.
    pub fn list_all(
        &self,
        bucket: &str,
        prefix: Option<&str>,
    ) -> impl Stream<Item = Result<ObjectSummary, S3Error>> + Send + 'static {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<ObjectSummary>, S3Error>>(1);
        let client = self.clone();
        let bucket = bucket.to_string();
        let prefix = prefix.map(str::to_string);
        let fetcher = tokio::spawn(async move {
            let mut token: Option<String> = None;
            loop {
                // Fetch a page only once the previous one has been taken: at most one page
                // waits while the caller works through another.
                let Ok(permit) = tx.reserve().await else {
                    return;
                };
                let page = client
                    .list_objects_page(
                        &bucket,
                        prefix.as_deref(),
                        token.as_deref(),
                        Some(LIST_PAGE_KEYS),
                    )
                    .await;
                let (objects, next) = match page {
                    Ok(p) => (Ok(p.objects), p.continuation),
                    Err(e) => (Err(e), None),
                };
                permit.send(objects);
                if next.is_none() {
                    return;
                }
                token = next;
            }
        });
        let guard = AbortOnDrop(fetcher);
        stream::unfold((rx, guard), |(mut rx, guard)| async move {
            rx.recv().await.map(|page| (page, (rx, guard)))
        })
        .map_ok(|objects| stream::iter(objects.into_iter().map(Ok)))
        .try_flatten()
    }

    // ------------------------------------------------------------ objects

    /// Size, ETag, content headers and user metadata of an object.
    pub async fn head_object(&self, bucket: &str, key: &str) -> Result<ObjectInfo, S3Error> {
        let cx = Ctx {
            op: "HeadObject",
            bucket: Some(bucket),
            key: Some(key),
        };
        let resp = self
            .send(&cx, Method::HEAD, &[], vec![], Payload::Empty)
            .await?;
        info_from_headers(resp.headers()).map_err(|m| self.err(&cx, ErrorKind::Protocol(m)))
    }

    /// An object's info and its body as a stream.
    pub async fn get_object(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<(ObjectInfo, ObjectBody), S3Error> {
        let cx = Ctx {
            op: "GetObject",
            bucket: Some(bucket),
            key: Some(key),
        };
        let resp = self
            .send(&cx, Method::GET, &[], vec![], Payload::Empty)
            .await?;
        let info =
            info_from_headers(resp.headers()).map_err(|m| self.err(&cx, ErrorKind::Protocol(m)))?;
        let what = format!(
            "reading s3://{bucket}/{key:?} from {}",
            self.inner.cfg.endpoint
        );
        let stream = resp
            .bytes_stream()
            .map_err(move |e| io::Error::other(format!("{what}: {}", error_chain(&e))))
            .boxed();
        Ok((
            info,
            ObjectBody {
                inner: StreamReader::new(stream),
            },
        ))
    }

    /// Upload `body`, exactly `len` bytes, as one PUT (up to 5 GiB). The body is streamed;
    /// a body shorter or longer than `len` fails the upload. Returns the new ETag.
    pub async fn put_object<R>(
        &self,
        bucket: &str,
        key: &str,
        headers: &ObjectHeaders,
        body: R,
        len: u64,
    ) -> Result<Option<String>, S3Error>
    where
        R: AsyncRead + Send + 'static,
    {
        let cx = Ctx {
            op: "PutObject",
            bucket: Some(bucket),
            key: Some(key),
        };
        let h = self.object_headers(&cx, headers)?;
        let payload = if len == 0 {
            Payload::Empty
        } else {
            Payload::Stream(reqwest::Body::wrap_stream(exact_stream(body, len)), len)
        };
        let resp = self.send(&cx, Method::PUT, &[], h, payload).await?;
        Ok(header_str(resp.headers(), "etag"))
    }

    /// Upload a body of any (unknown) length in parts of `part_size` bytes (at least
    /// [`MIN_PART_SIZE`]); one part is held in memory at a time. A body that fits in one part
    /// is sent as a plain PUT. On any failure the multipart upload is aborted, so no parts are
    /// left behind. Returns the new ETag.
    pub async fn put_object_multipart<R>(
        &self,
        bucket: &str,
        key: &str,
        headers: &ObjectHeaders,
        body: R,
        part_size: usize,
    ) -> Result<Option<String>, S3Error>
    where
        R: AsyncRead + Send + Unpin,
    {
        let mut body = body;
        let cx = Ctx {
            op: "multipart upload",
            bucket: Some(bucket),
            key: Some(key),
        };
        if part_size < MIN_PART_SIZE {
            return Err(self.err(
                &cx,
                ErrorKind::Invalid(format!(
                    "part size {part_size} is below S3's minimum of {MIN_PART_SIZE} bytes"
                )),
            ));
        }
        let first = read_part(&mut body, part_size)
            .await
            .map_err(|e| self.err(&cx, ErrorKind::Body(e)))?;
        if first.len() < part_size {
            let len = first.len() as u64;
            return self
                .put_object(bucket, key, headers, io::Cursor::new(first), len)
                .await;
        }

        let h = self.object_headers(&cx, headers)?;
        let create = Ctx {
            op: "CreateMultipartUpload",
            ..cx
        };
        let resp = self
            .send(&create, Method::POST, &[("uploads", "")], h, Payload::Empty)
            .await?;
        let xml = self.text(&create, resp).await?;
        let upload_id = element(&xml, "UploadId")
            .map(unescape)
            .filter(|u| !u.is_empty())
            .ok_or_else(|| self.err(&create, ErrorKind::Protocol(not_s3(&xml))))?;

        let result = self
            .upload_parts(bucket, key, &upload_id, first, &mut body, part_size)
            .await;
        match result {
            Ok(etag) => Ok(etag),
            Err(e) => {
                let abort = Ctx {
                    op: "AbortMultipartUpload",
                    ..cx
                };
                // Best effort: the original error is the one that matters.
                let _ = self
                    .send(
                        &abort,
                        Method::DELETE,
                        &[("uploadId", &upload_id)],
                        vec![],
                        Payload::Empty,
                    )
                    .await;
                Err(e)
            }
        }
    }

    async fn upload_parts<R>(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        first: BytesMut,
        body: &mut R,
        part_size: usize,
    ) -> Result<Option<String>, S3Error>
    where
        R: AsyncRead + Send + Unpin,
    {
        let cx = Ctx {
            op: "UploadPart",
            bucket: Some(bucket),
            key: Some(key),
        };
        let mut parts: Vec<(u32, String)> = Vec::new();
        let mut part = first;
        let mut number: u32 = 1;
        loop {
            let n = number.to_string();
            let resp = self
                .send(
                    &cx,
                    Method::PUT,
                    &[("partNumber", &n), ("uploadId", upload_id)],
                    vec![],
                    Payload::Bytes(part.freeze()),
                )
                .await?;
            let etag = header_str(resp.headers(), "etag").ok_or_else(|| {
                self.err(
                    &cx,
                    ErrorKind::Protocol(format!("part {number} was answered without an ETag")),
                )
            })?;
            parts.push((number, etag));
            let full = part_size;
            part = read_part(body, full)
                .await
                .map_err(|e| self.err(&cx, ErrorKind::Body(e)))?;
            if part.is_empty() {
                break;
            }
            if number >= MAX_PARTS {
                return Err(self.err(
                    &cx,
                    ErrorKind::Invalid(format!(
                        "the body needs more than {MAX_PARTS} parts of {part_size} bytes; \
                         use a larger part size"
                    )),
                ));
            }
            number += 1;
        }

        let complete = Ctx {
            op: "CompleteMultipartUpload",
            ..cx
        };
        let mut doc = String::from("<CompleteMultipartUpload>");
        for (n, etag) in &parts {
            doc.push_str(&format!(
                "<Part><PartNumber>{n}</PartNumber><ETag>{}</ETag></Part>",
                escape(etag)
            ));
        }
        doc.push_str("</CompleteMultipartUpload>");
        let resp = self
            .send(
                &complete,
                Method::POST,
                &[("uploadId", upload_id)],
                vec![("content-type".into(), "application/xml".into())],
                Payload::Bytes(Bytes::from(doc)),
            )
            .await?;
        let xml = self.text(&complete, resp).await?;
        // S3 may answer 200 and still fail, with an <Error> document in the body.
        if let Some(err) = element(&xml, "Error") {
            return Err(self.err(
                &complete,
                ErrorKind::Service {
                    status: 200,
                    code: element(err, "Code").map(unescape),
                    message: element(err, "Message").map(unescape),
                },
            ));
        }
        Ok(element(&xml, "ETag").map(unescape))
    }

    /// Delete an object. Deleting a key that does not exist succeeds (S3 semantics); a
    /// bucket that does not exist is an error.
    pub async fn delete_object(&self, bucket: &str, key: &str) -> Result<(), S3Error> {
        let cx = Ctx {
            op: "DeleteObject",
            bucket: Some(bucket),
            key: Some(key),
        };
        self.send(&cx, Method::DELETE, &[], vec![], Payload::Empty)
            .await
            .map(drop)
    }

    fn object_headers(
        &self,
        cx: &Ctx<'_>,
        h: &ObjectHeaders,
    ) -> Result<Vec<(String, String)>, S3Error> {
        let mut out = Vec::new();
        for (name, v) in [
            ("content-type", &h.content_type),
            ("cache-control", &h.cache_control),
            ("content-disposition", &h.content_disposition),
            ("content-encoding", &h.content_encoding),
            ("content-language", &h.content_language),
        ] {
            if let Some(v) = v {
                out.push((name.to_string(), v.clone()));
            }
        }
        for (k, v) in &h.metadata {
            let k = k.to_ascii_lowercase();
            if k.is_empty() || HeaderName::from_bytes(format!("x-amz-meta-{k}").as_bytes()).is_err()
            {
                return Err(self.err(
                    cx,
                    ErrorKind::Invalid(format!("user metadata name {k:?} is not a valid header")),
                ));
            }
            out.push((format!("x-amz-meta-{k}"), v.clone()));
        }
        Ok(out)
    }
}

// ================================================================ helpers: bodies

/// Read up to `size` bytes (fewer only at the end of the body).
async fn read_part<R: AsyncRead + Unpin>(body: &mut R, size: usize) -> io::Result<BytesMut> {
    let mut buf = BytesMut::with_capacity(size);
    while buf.len() < size {
        let want = (size - buf.len()).min(CHUNK);
        let n = (&mut *body).take(want as u64).read_buf(&mut buf).await?;
        if n == 0 {
            break;
        }
    }
    Ok(buf)
}

/// Stream exactly `len` bytes of `body`: an early end or extra bytes are errors, so the
/// server never stores a truncated object under the announced length.
fn exact_stream<R>(body: R, len: u64) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static
where
    R: AsyncRead + Send + 'static,
{
    let reader = Box::pin(body);
    stream::try_unfold(
        (reader, len, false),
        move |(mut r, left, done)| async move {
            if done {
                return Ok(None);
            }
            if left == 0 {
                let mut probe = [0u8; 1];
                if r.read(&mut probe).await? != 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("the body is longer than the {len} bytes announced"),
                    ));
                }
                return Ok(None);
            }
            let want = left.min(CHUNK as u64) as usize;
            let mut buf = BytesMut::with_capacity(want);
            let n = (&mut r).take(want as u64).read_buf(&mut buf).await?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "the body ended after {} of the {len} bytes announced",
                        len - left
                    ),
                ));
            }
            let left = left - n as u64;
            Ok(Some((buf.freeze(), (r, left, false))))
        },
    )
}

async fn read_capped(resp: reqwest::Response, cap: usize) -> Result<String, reqwest::Error> {
    let mut out = Vec::new();
    let mut s = resp.bytes_stream();
    while let Some(chunk) = s.next().await {
        let chunk = chunk?;
        let room = cap.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() >= cap {
            break;
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

fn header_str(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

fn info_from_headers(h: &HeaderMap) -> Result<ObjectInfo, String> {
    let size = match h.get(reqwest::header::CONTENT_LENGTH) {
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .ok_or_else(|| format!("bad Content-Length {v:?}"))?,
        None => return Err("the response has no Content-Length".into()),
    };
    let mut metadata = BTreeMap::new();
    for (name, value) in h {
        if let Some(k) = name.as_str().strip_prefix("x-amz-meta-") {
            metadata.insert(
                k.to_ascii_lowercase(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            );
        }
    }
    Ok(ObjectInfo {
        size,
        etag: header_str(h, "etag"),
        last_modified: header_str(h, "last-modified"),
        headers: ObjectHeaders {
            content_type: header_str(h, "content-type"),
            cache_control: header_str(h, "cache-control"),
            content_disposition: header_str(h, "content-disposition"),
            content_encoding: header_str(h, "content-encoding"),
            content_language: header_str(h, "content-language"),
            metadata,
        },
    })
}

/// The error and its sources, e.g. "error sending request: ... : Connection refused".
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

fn find_io_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a io::Error> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if let Some(io) = c.downcast_ref::<io::Error>() {
            return Some(io);
        }
        cur = c.source();
    }
    None
}

fn not_s3(body: &str) -> String {
    let start: String = body.trim().chars().take(200).collect();
    format!("the response is not the S3 document expected (is this an S3 endpoint?): {start:?}")
}

fn dns_compatible(bucket: &str) -> bool {
    (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !bucket.starts_with('-')
        && !bucket.ends_with('-')
}

// ================================================================ helpers: SigV4

/// Percent-encode every byte except `A-Za-z0-9-._~` (and `/` when `keep_slash`).
pub(crate) fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'.' | b'_' | b'~')
            || (keep_slash && b == b'/')
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The canonical query string: names and values encoded, sorted by name then value.
pub(crate) fn canonical_query(params: &[(&str, &str)]) -> String {
    let mut enc: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (uri_encode(k, false), uri_encode(v, false)))
        .collect();
    enc.sort();
    enc.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// HMAC-SHA256 (RFC 2104).
pub(crate) fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut ipad = [0x36u8; BLOCK];
    let mut opad = [0x5cu8; BLOCK];
    for i in 0..BLOCK {
        ipad[i] ^= k[i];
        opad[i] ^= k[i];
    }
    let inner = Sha256::new()
        .chain_update(ipad)
        .chain_update(msg)
        .finalize();
    Sha256::new()
        .chain_update(opad)
        .chain_update(inner)
        .finalize()
        .into()
}

pub(crate) struct SigningInput<'a> {
    pub method: &'a str,
    pub canonical_uri: &'a str,
    pub canonical_query: &'a str,
    /// Every header to sign, names in lower case (host, x-amz-date, x-amz-content-sha256
    /// included).
    pub headers: &'a [(String, String)],
    pub payload_hash: &'a str,
    /// `YYYYMMDDTHHMMSSZ`.
    pub amz_date: &'a str,
    pub region: &'a str,
    pub access_key: &'a str,
    pub secret_key: &'a str,
}

/// The `Authorization` header value for a request (AWS Signature Version 4, service `s3`).
pub(crate) fn authorization(i: &SigningInput<'_>) -> String {
    let mut hs: Vec<(String, String)> = i
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), canonical_header_value(v)))
        .collect();
    hs.sort_by(|a, b| a.0.cmp(&b.0));
    // Repeated names are joined with commas.
    let mut merged: Vec<(String, String)> = Vec::new();
    for (k, v) in hs {
        match merged.last_mut() {
            Some((lk, lv)) if *lk == k => {
                lv.push(',');
                lv.push_str(&v);
            }
            _ => merged.push((k, v)),
        }
    }
    let canonical_headers: String = merged.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let signed_headers = merged
        .iter()
        .map(|(k, _)| k.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let canonical_request = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        i.method,
        i.canonical_uri,
        i.canonical_query,
        canonical_headers,
        signed_headers,
        i.payload_hash
    );
    let date = &i.amz_date[..8.min(i.amz_date.len())];
    let scope = format!("{date}/{}/s3/aws4_request", i.region);
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{}\n{scope}\n{}",
        i.amz_date,
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    let k_date = hmac_sha256(format!("AWS4{}", i.secret_key).as_bytes(), date.as_bytes());
    let k_region = hmac_sha256(&k_date, i.region.as_bytes());
    let k_service = hmac_sha256(&k_region, b"s3");
    let k_signing = hmac_sha256(&k_service, b"aws4_request");
    let signature = hex::encode(hmac_sha256(&k_signing, string_to_sign.as_bytes()));
    format!(
        "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
        i.access_key
    )
}

/// Trim, and collapse runs of spaces into one (SigV4's canonical header value).
fn canonical_header_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut space = false;
    for c in v.trim().chars() {
        if c == ' ' {
            if !space {
                out.push(' ');
            }
            space = true;
        } else {
            out.push(c);
            space = false;
        }
    }
    out
}

// ================================================================ helpers: XML

/// The content of the first `<name>...</name>` element in `xml` (`""` for `<name/>`).
/// S3's documents have no CDATA and no nested elements of the same name, so a scan is enough.
pub(crate) fn element<'a>(xml: &'a str, name: &'a str) -> Option<&'a str> {
    elements(xml, name).next()
}

/// The contents of every `<name>...</name>` element in `xml`, in order.
pub(crate) fn elements<'a>(xml: &'a str, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    let mut pos = 0;
    std::iter::from_fn(move || loop {
        let rest = &xml[pos..];
        let i = rest.find('<')?;
        let start = pos + i + 1;
        let after = &xml[start..];
        let Some(tail) = after.strip_prefix(name) else {
            pos = start;
            continue;
        };
        let open_end = tail.find('>')?;
        match tail.as_bytes().first() {
            Some(b'>' | b' ' | b'\t' | b'\r' | b'\n' | b'/') => {}
            _ => {
                pos = start;
                continue;
            }
        }
        let content_start = start + name.len() + open_end + 1;
        if tail[..open_end].ends_with('/') {
            pos = content_start;
            return Some("");
        }
        let close = format!("</{name}>");
        let j = xml[content_start..].find(&close)?;
        pos = content_start + j + close.len();
        return Some(&xml[content_start..content_start + j]);
    })
}

/// Undo XML escaping exactly: the five named entities and `&#NN;` / `&#xNN;`. Anything
/// else (a bare `&`) is kept as it is.
pub(crate) fn unescape(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let Some(end) = rest[..rest.len().min(12)].find(';') else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let ent = &rest[1..end];
        let c = match ent {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => {
                if let Some(hexnum) = ent.strip_prefix("#x").or_else(|| ent.strip_prefix("#X")) {
                    u32::from_str_radix(hexnum, 16)
                        .ok()
                        .and_then(char::from_u32)
                } else if let Some(dec) = ent.strip_prefix('#') {
                    dec.parse::<u32>().ok().and_then(char::from_u32)
                } else {
                    None
                }
            }
        };
        match c {
            Some(c) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Escape text for an XML document we send.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
    out
}

fn parse_list_objects(xml: &str) -> Result<ObjectPage, String> {
    let Some(result) = element(xml, "ListBucketResult") else {
        return Err(not_s3(xml));
    };
    let mut objects = Vec::new();
    for c in elements(result, "Contents") {
        let key = element(c, "Key")
            .map(unescape)
            .ok_or("a <Contents> without a <Key>")?;
        let size = element(c, "Size")
            .map(|s| s.trim().parse::<u64>())
            .transpose()
            .map_err(|e| format!("bad <Size> for key {key:?}: {e}"))?
            .ok_or_else(|| format!("no <Size> for key {key:?}"))?;
        objects.push(ObjectSummary {
            key,
            size,
            etag: element(c, "ETag").map(unescape),
            last_modified: element(c, "LastModified").map(unescape),
        });
    }
    // The page's own fields, outside any <Contents> (keys cannot contain raw '<', so the
    // first match at top level is found by looking after the last </Contents>).
    let top = match (result.find("<Contents"), result.rfind("</Contents>")) {
        (Some(a), Some(b)) if a < b => {
            format!("{}{}", &result[..a], &result[b + "</Contents>".len()..])
        }
        _ => result.to_string(),
    };
    let truncated = element(&top, "IsTruncated").map(str::trim) == Some("true");
    let continuation = if truncated {
        let t = element(&top, "NextContinuationToken")
            .map(unescape)
            .filter(|t| !t.is_empty())
            .ok_or("the listing is truncated but has no <NextContinuationToken>")?;
        Some(t)
    } else {
        None
    };
    Ok(ObjectPage {
        objects,
        continuation,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_rfc4231() {
        // Test case 2.
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a key longer than the block.
        let mac = hmac_sha256(
            &[0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First",
        );
        assert_eq!(
            hex::encode(mac),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    fn aws_example(method: &str, uri: &str, query: &str, extra: &[(&str, &str)]) -> String {
        let mut headers: Vec<(String, String)> = vec![
            ("host".into(), "examplebucket.s3.amazonaws.com".into()),
            ("x-amz-content-sha256".into(), EMPTY_SHA256.into()),
            ("x-amz-date".into(), "20130524T000000Z".into()),
        ];
        headers.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        authorization(&SigningInput {
            method,
            canonical_uri: uri,
            canonical_query: query,
            headers: &headers,
            payload_hash: EMPTY_SHA256,
            amz_date: "20130524T000000Z",
            region: "us-east-1",
            access_key: "AKIAIOSFODNN7EXAMPLE",
            secret_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        })
    }

    #[test]
    fn sigv4_matches_aws_documentation_examples() {
        // "Signature Calculations for the Authorization Header", Amazon S3 API reference.
        let get = aws_example("GET", "/test.txt", "", &[("Range", "bytes=0-9")]);
        assert!(
            get.ends_with(
                "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
            ),
            "{get}"
        );
        assert!(get.contains("SignedHeaders=host;range;x-amz-content-sha256;x-amz-date"));
        let lifecycle = aws_example("GET", "/", &canonical_query(&[("lifecycle", "")]), &[]);
        assert!(
            lifecycle.ends_with(
                "Signature=fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"
            ),
            "{lifecycle}"
        );
        let list = aws_example(
            "GET",
            "/",
            &canonical_query(&[("prefix", "J"), ("max-keys", "2")]),
            &[],
        );
        assert!(
            list.ends_with(
                "Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
            ),
            "{list}"
        );
    }

    #[test]
    fn uri_encoding_keeps_only_unreserved_and_slash() {
        assert_eq!(uri_encode("a b+c%d?e#f", true), "a%20b%2Bc%25d%3Fe%23f");
        assert_eq!(uri_encode("a//b/", true), "a//b/");
        assert_eq!(uri_encode("a/b", false), "a%2Fb");
        assert_eq!(uri_encode("é~_.-", true), "%C3%A9~_.-");
        assert_eq!(uri_encode("*!'()=&", true), "%2A%21%27%28%29%3D%26");
    }

    #[test]
    fn canonical_query_sorts_and_encodes() {
        assert_eq!(
            canonical_query(&[("uploadId", "a/b+c"), ("partNumber", "2")]),
            "partNumber=2&uploadId=a%2Fb%2Bc"
        );
        assert_eq!(canonical_query(&[("uploads", "")]), "uploads=");
        assert_eq!(canonical_query(&[]), "");
    }

    #[test]
    fn header_values_are_trimmed_and_collapsed() {
        assert_eq!(canonical_header_value("  a   b  c "), "a b c");
    }

    #[test]
    fn unescape_is_exact() {
        assert_eq!(
            unescape("a&amp;b&lt;c&gt;d&quot;e&apos;f&#38;g&#x26;h&#X41;"),
            "a&b<c>d\"e'f&g&hA"
        );
        assert_eq!(unescape("&amp;lt;"), "&lt;");
        assert_eq!(unescape("100% + & more"), "100% + & more");
        assert_eq!(unescape("&#128512;&#x1F600;"), "😀😀");
        assert_eq!(unescape("&bogus;"), "&bogus;");
        assert_eq!(escape("a&b<c>\"'"), "a&amp;b&lt;c&gt;&quot;&apos;");
        assert_eq!(unescape(&escape("x&y<z>'\"\r")), "x&y<z>'\"\r");
    }

    #[test]
    fn elements_find_exact_names() {
        let xml = "<Buckets><Bucket><Name>a</Name></Bucket><Bucket ><Name>b&amp;</Name></Bucket>\
                   <BucketX><Name>no</Name></BucketX><Bucket/></Buckets>";
        let names: Vec<_> = elements(xml, "Bucket")
            .map(|b| element(b, "Name").map(unescape))
            .collect();
        assert_eq!(names, vec![Some("a".into()), Some("b&".into()), None]);
        assert_eq!(element("<a><Key/></a>", "Key"), Some(""));
        assert_eq!(element("<a><Keys>x</Keys></a>", "Key"), None);
    }

    #[test]
    fn list_objects_parses_pages() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><Prefix></Prefix>
<KeyCount>2</KeyCount><MaxKeys>2</MaxKeys><IsTruncated>true</IsTruncated>
<Contents><Key>a+b &amp; c/</Key><LastModified>2024-01-01T00:00:00.000Z</LastModified><ETag>&quot;abc&quot;</ETag><Size>0</Size><StorageClass>STANDARD</StorageClass></Contents>
<Contents><Key>%20&#x3C;</Key><Size>12</Size></Contents>
<NextContinuationToken>tok/+=</NextContinuationToken></ListBucketResult>"#;
        let page = parse_list_objects(xml).expect("parse");
        assert_eq!(page.objects.len(), 2);
        assert_eq!(page.objects[0].key, "a+b & c/");
        assert_eq!(page.objects[0].etag.as_deref(), Some("\"abc\""));
        assert_eq!(page.objects[0].size, 0);
        assert_eq!(page.objects[1].key, "%20<");
        assert_eq!(page.objects[1].size, 12);
        assert_eq!(page.continuation.as_deref(), Some("tok/+="));

        let last = "<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>";
        assert_eq!(
            parse_list_objects(last).expect("parse"),
            ObjectPage::default()
        );
        assert!(parse_list_objects("<html>nope</html>").is_err());
    }

    #[test]
    fn debug_never_prints_the_secret() {
        let cfg = S3Config {
            endpoint: "http://127.0.0.1:1".into(),
            region: "us-east-1".into(),
            access_key: "AK".into(),
            secret_key: "super-secret-value".into(),
            path_style: true,
        };
        assert!(!format!("{cfg:?}").contains("super-secret-value"));
        let client = S3Client::new(cfg).expect("client");
        assert!(!format!("{client:?}").contains("super-secret-value"));
    }

    fn client(path_style: bool) -> S3Client {
        S3Client::new(S3Config {
            endpoint: "http://127.0.0.1:9000/".into(),
            region: "us-east-1".into(),
            access_key: "AK".into(),
            secret_key: "SK".into(),
            path_style,
        })
        .expect("client")
    }

    #[test]
    fn urls_keep_keys_exact() {
        let c = client(true);
        let cx = Ctx {
            op: "t",
            bucket: Some("bkt"),
            key: Some("a//b c/+%?#é/"),
        };
        let (url, uri) = c.target(&cx, "x=1").expect("target");
        assert_eq!(uri, "/bkt/a//b%20c/%2B%25%3F%23%C3%A9/");
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:9000/bkt/a//b%20c/%2B%25%3F%23%C3%A9/?x=1"
        );
        let cx = Ctx {
            op: "t",
            bucket: Some("bkt"),
            key: Some("a/../b"),
        };
        assert!(c.target(&cx, "").is_err());
        let cx = Ctx {
            op: "t",
            bucket: None,
            key: None,
        };
        assert_eq!(c.target(&cx, "").expect("target").1, "/");

        let v = client(false);
        let cx = Ctx {
            op: "t",
            bucket: Some("bkt"),
            key: Some("k"),
        };
        let (url, uri) = v.target(&cx, "").expect("target");
        assert_eq!(uri, "/bkt/k", "an IP address cannot take a virtual host");
        assert_eq!(url.as_str(), "http://127.0.0.1:9000/bkt/k");
        let named = S3Client::new(S3Config {
            endpoint: "http://s3.example.test:9000".into(),
            path_style: false,
            ..v.inner.cfg.clone()
        })
        .expect("client");
        let (url, uri) = named.target(&cx, "").expect("target");
        assert_eq!(uri, "/k");
        assert_eq!(url.as_str(), "http://bkt.s3.example.test:9000/k");
    }

    #[tokio::test]
    async fn exact_stream_checks_the_length() {
        let ok: Vec<_> = exact_stream(io::Cursor::new(vec![1u8; 100_000]), 100_000)
            .try_collect::<Vec<_>>()
            .await
            .expect("exact");
        assert_eq!(ok.iter().map(|b| b.len()).sum::<usize>(), 100_000);
        let short = exact_stream(io::Cursor::new(vec![1u8; 10]), 11)
            .try_collect::<Vec<_>>()
            .await;
        assert!(short.is_err());
        let long = exact_stream(io::Cursor::new(vec![1u8; 12]), 11)
            .try_collect::<Vec<_>>()
            .await;
        assert!(long.is_err());
    }

    #[test]
    fn service_errors_read_plainly() {
        assert_eq!(
            describe_service_error(403, Some("SignatureDoesNotMatch"), Some("x")),
            "the secret key was rejected (SignatureDoesNotMatch), HTTP 403"
        );
        assert_eq!(
            describe_service_error(404, None, None),
            "not found (HTTP 404)"
        );
        assert_eq!(
            describe_service_error(500, Some("SlowDown"), Some("Please reduce")),
            "Please reduce (SlowDown), HTTP 500"
        );
    }
}

//! [`S3Error`]: which S3 call failed, where, and why, in plain words.

use std::fmt;
use std::io;

/// An S3 call that failed: which call, at which endpoint, on which bucket and key, and why.
///
/// The message never contains the secret key.
#[derive(Debug)]
pub struct S3Error {
    pub(super) op: &'static str,
    pub(super) endpoint: String,
    pub(super) bucket: Option<String>,
    pub(super) key: Option<String>,
    pub(super) kind: Box<ErrorKind>,
}

#[derive(Debug)]
pub(super) enum ErrorKind {
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

/// The error and its sources, e.g. "error sending request: ... : Connection refused".
pub(super) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
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

pub(super) fn find_io_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a io::Error> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if let Some(io) = c.downcast_ref::<io::Error>() {
            return Some(io);
        }
        cur = c.source();
    }
    None
}

pub(super) fn not_s3(body: &str) -> String {
    let start: String = body.trim().chars().take(200).collect();
    format!("the response is not the S3 document expected (is this an S3 endpoint?): {start:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

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

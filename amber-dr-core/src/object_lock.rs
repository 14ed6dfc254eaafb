//! S3 Object Lock: every object of a backup written with a retention date
//! (`[repository] object_lock = { mode = "governance", days = 30 }`).
//!
//! `object_store` has no per-request object-lock option; its client can send default headers
//! with every request of a store. So a repository with Object Lock keeps a second S3 store
//! whose requests carry `x-amz-object-lock-mode` and `x-amz-object-lock-retain-until-date`
//! (and SHA-256 checksums, which S3 requires on uploads with a retention), used only for the
//! objects of backups: artifacts, blobs, manifests and data keys. The repository lock, the
//! keyring and blobs being staged go through the plain store, so they stay deletable.

use std::sync::Arc;

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use object_store::aws::{AmazonS3Builder, Checksum};
use object_store::path::Path;
use object_store::{ClientOptions, ObjectStore};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Object Lock mode (S3's `GOVERNANCE` or `COMPLIANCE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LockMode {
    /// Users with `s3:BypassGovernanceRetention` can still delete early.
    Governance,
    /// Nobody, not even the account root, can delete before the date.
    Compliance,
}

/// `[repository] object_lock`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectLockConfig {
    /// Governance or compliance.
    pub mode: LockMode,
    /// Days each object of a backup is retained from when it is written.
    pub days: u32,
}

/// The store that writes backup objects with a retention date, and that date.
pub(crate) fn locked_store(
    builder: AmazonS3Builder,
    allow_http: Option<bool>,
    prefix: &str,
    cfg: &ObjectLockConfig,
) -> Result<(Arc<dyn ObjectStore>, DateTime<Utc>)> {
    if cfg.days == 0 {
        return Err(Error::config(
            "repository.object_lock.days",
            "must be at least 1",
        ));
    }
    let until = Utc::now() + Duration::days(i64::from(cfg.days));
    let mode = match cfg.mode {
        LockMode::Governance => "GOVERNANCE",
        LockMode::Compliance => "COMPLIANCE",
    };
    let mut headers = http::HeaderMap::new();
    let value = |s: &str| {
        http::HeaderValue::from_str(s).map_err(|e| Error::Other(format!("object lock header: {e}")))
    };
    headers.insert("x-amz-object-lock-mode", value(mode)?);
    // S3 wants a checksum on uploads with a retention: object_store sends the SHA-256 one;
    // this header names its algorithm, as the AWS SDKs do (moto insists on it).
    headers.insert("x-amz-sdk-checksum-algorithm", value("SHA256")?);
    headers.insert(
        "x-amz-object-lock-retain-until-date",
        value(&until.to_rfc3339_opts(SecondsFormat::Secs, true))?,
    );
    let mut options = ClientOptions::new().with_default_headers(headers);
    if let Some(h) = allow_http {
        options = options.with_allow_http(h);
    }
    let s3 = builder
        .with_client_options(options)
        .with_checksum_algorithm(Checksum::SHA256)
        .build()
        .map_err(|source| Error::Repository {
            repo: "s3".into(),
            operation: "configure object lock for",
            path: String::new(),
            source: Box::new(source),
        })?;
    let store = object_store::prefix::PrefixStore::new(s3, Path::from(prefix.trim_matches('/')));
    Ok((Arc::new(store), until))
}

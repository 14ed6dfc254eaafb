//! S3 Object Lock: every object of a backup written with a retention date
//! (`[repository] object_lock = { mode = "governance", days = 30, extend_kept = true }`).
//!
//! `object_store` has no per-request object-lock option; its client can send default headers
//! with every request of a store. So a repository with Object Lock keeps a second S3 store
//! whose requests carry `x-amz-object-lock-mode` and `x-amz-object-lock-retain-until-date`
//! (and SHA-256 checksums, which S3 requires on uploads with a retention), used only for the
//! objects of backups: artifacts, blobs, manifests and data keys. The repository lock, the
//! keyring and blobs being staged go through the plain store, so they stay deletable.
//!
//! Servers differ in where they honour those headers: moto ignores them on
//! CreateMultipartUpload, so an artifact (always a multipart upload) came out unlocked there.
//! [`LockApi`] therefore reads every artifact's retention back after its upload completes
//! (HeadObject) and sets it with PutObjectRetention when the server did not apply it; `prune`
//! uses the same two calls to extend the locks of the backups it keeps (`extend_kept`) and to
//! read a backup's real retention before deleting it.

use std::sync::Arc;

use base64::Engine;
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use http::{Method, Request, StatusCode};
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey, AwsAuthorizer, Checksum};
use object_store::client::{HttpClient, HttpConnector, HttpRequestBody, ReqwestConnector};
use object_store::path::Path;
use object_store::{ClientOptions, ObjectStore};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

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

impl LockMode {
    fn s3(self) -> &'static str {
        match self {
            LockMode::Governance => "GOVERNANCE",
            LockMode::Compliance => "COMPLIANCE",
        }
    }
}

/// `[repository] object_lock`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectLockConfig {
    /// Governance or compliance.
    pub mode: LockMode,
    /// Days each object of a backup is retained from when it is written.
    pub days: u32,
    /// `prune` extends the retention of every object of each backup it keeps to
    /// now + `days`, rounded up to midnight UTC (PutObjectRetention), where it ends earlier.
    /// Default false.
    #[serde(default)]
    pub extend_kept: bool,
}

/// The retention of one object version, as HeadObject reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    /// `GOVERNANCE` or `COMPLIANCE`.
    pub mode: String,
    /// Until when.
    pub until: DateTime<Utc>,
}

/// Direct S3 calls object_store does not offer: HeadObject's retention headers and
/// PutObjectRetention, signed with the repository's credentials (SigV4, object_store's signer).
pub struct LockApi {
    client: HttpClient,
    s3: AmazonS3,
    /// `https://endpoint/bucket` (path style) or the virtual-hosted bucket URL.
    bucket_url: String,
    region: String,
    /// The repository's prefix inside the bucket, without slashes at its ends.
    prefix: String,
    /// The configuration (mode, days, extend_kept).
    pub config: ObjectLockConfig,
    /// The retention date of what this handle writes (now + days when it was opened).
    pub until: DateTime<Utc>,
}

impl std::fmt::Debug for LockApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockApi")
            .field("bucket_url", &self.bucket_url)
            .field("config", &self.config)
            .finish()
    }
}

/// The percent-encoding S3 keys get in a URL path (everything but unreserved and `/`).
fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The XML body of PutObjectRetention.
fn retention_xml(mode: &str, until: DateTime<Utc>) -> String {
    format!(
        "<Retention xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Mode>{mode}</Mode><RetainUntilDate>{}</RetainUntilDate></Retention>",
        until.to_rfc3339_opts(SecondsFormat::Secs, true)
    )
}

fn lock_err(path: &str, operation: &'static str, message: String) -> Error {
    Error::Repository {
        repo: "s3".into(),
        operation,
        path: path.to_string(),
        source: Box::new(object_store::Error::Generic {
            store: "S3 Object Lock",
            source: message.into(),
        }),
    }
}

impl LockApi {
    /// The full key of a repository path.
    fn key(&self, path: &str) -> String {
        if self.prefix.is_empty() {
            path.to_string()
        } else {
            format!("{}/{path}", self.prefix)
        }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        query: &str,
        body: Option<String>,
    ) -> Result<http::Response<object_store::client::HttpResponseBody>> {
        let operation = if method == Method::HEAD {
            "read the retention of"
        } else {
            "set the retention of"
        };
        let url = format!("{}/{}{query}", self.bucket_url, encode_key(&self.key(path)));
        let mut b = Request::builder().method(method).uri(url.as_str());
        let body = match body {
            Some(xml) => {
                // S3 requires an integrity checksum on PutObjectRetention.
                let sha = Sha256::digest(xml.as_bytes());
                let b64 = base64::engine::general_purpose::STANDARD.encode(sha);
                b = b
                    .header("content-type", "application/xml")
                    .header("x-amz-sdk-checksum-algorithm", "SHA256")
                    .header("x-amz-checksum-sha256", b64);
                HttpRequestBody::from(xml)
            }
            None => HttpRequestBody::empty(),
        };
        let mut req = b
            .body(body)
            .map_err(|e| lock_err(path, operation, e.to_string()))?;
        let cred = self
            .s3
            .credentials()
            .get_credential()
            .await
            .map_err(|source| Error::Repository {
                repo: "s3".into(),
                operation,
                path: path.to_string(),
                source: Box::new(source),
            })?;
        AwsAuthorizer::new(&cred, "s3", &self.region)
            .try_authorize(&mut req, None)
            .map_err(|source| Error::Repository {
                repo: "s3".into(),
                operation,
                path: path.to_string(),
                source: Box::new(source),
            })?;
        self.client
            .execute(req)
            .await
            .map_err(|e| lock_err(path, operation, e.to_string()))
    }

    /// The retention of the current version of `path` (None: the object has none; an error
    /// if it does not exist).
    pub async fn retention(&self, path: &str) -> Result<Option<Retention>> {
        let resp = self.send(Method::HEAD, path, "", None).await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Err(Error::MissingArtifact {
                artifact: path.to_string(),
            });
        }
        if !resp.status().is_success() {
            return Err(lock_err(
                path,
                "read the retention of",
                format!("HeadObject answered {}", resp.status()),
            ));
        }
        let h = resp.headers();
        let get = |k: &str| h.get(k).and_then(|v| v.to_str().ok()).map(str::to_string);
        let (Some(mode), Some(until)) = (
            get("x-amz-object-lock-mode"),
            get("x-amz-object-lock-retain-until-date"),
        ) else {
            return Ok(None);
        };
        let until = DateTime::parse_from_rfc3339(until.trim())
            .map_err(|e| {
                lock_err(
                    path,
                    "read the retention of",
                    format!("retain-until date `{until}`: {e}"),
                )
            })?
            .with_timezone(&Utc);
        Ok(Some(Retention { mode, until }))
    }

    /// PutObjectRetention on the current version of `path`. `mode` None: the configured one.
    pub async fn set_retention(
        &self,
        path: &str,
        mode: Option<&str>,
        until: DateTime<Utc>,
    ) -> Result<()> {
        let xml = retention_xml(mode.unwrap_or(self.config.mode.s3()), until);
        let resp = self
            .send(Method::PUT, path, "?retention", Some(xml))
            .await?;
        if resp.status().is_success() {
            return Ok(());
        }
        let status = resp.status();
        let body = resp.into_body().bytes().await.unwrap_or_default();
        let text = String::from_utf8_lossy(&body);
        Err(lock_err(
            path,
            "set the retention of",
            format!(
                "PutObjectRetention answered {status}: {}",
                text.chars().take(300).collect::<String>()
            ),
        ))
    }

    /// Make sure `path` is retained until at least `until`: read its retention, and set it
    /// (keeping a stricter mode already there) when it ends earlier or is missing. Returns the
    /// retention it had when that was changed, `None` inside when it had none; `Ok(None)`
    /// when nothing had to change.
    pub async fn ensure(
        &self,
        path: &str,
        until: DateTime<Utc>,
    ) -> Result<Option<Option<Retention>>> {
        let had = self.retention(path).await?;
        if had.as_ref().is_some_and(|r| r.until >= until) {
            return Ok(None);
        }
        // Compliance cannot become governance; keep whichever mode the object has.
        let mode = had.as_ref().map(|r| r.mode.as_str());
        self.set_retention(path, mode, until).await?;
        Ok(Some(had))
    }
}

/// The store that writes backup objects with a retention date, and the API that reads and
/// extends retention dates.
pub(crate) fn locked_store(
    builder: AmazonS3Builder,
    allow_http: Option<bool>,
    prefix: &str,
    cfg: &ObjectLockConfig,
) -> Result<(Arc<dyn ObjectStore>, Arc<LockApi>)> {
    if cfg.days == 0 {
        return Err(Error::config(
            "repository.object_lock.days",
            "must be at least 1",
        ));
    }
    let until = Utc::now() + Duration::days(i64::from(cfg.days));
    let mut headers = http::HeaderMap::new();
    let value = |s: &str| {
        http::HeaderValue::from_str(s).map_err(|e| Error::Other(format!("object lock header: {e}")))
    };
    headers.insert("x-amz-object-lock-mode", value(cfg.mode.s3())?);
    // S3 wants a checksum on uploads with a retention: object_store sends the SHA-256 one;
    // this header names its algorithm, as the AWS SDKs do (moto insists on it).
    headers.insert("x-amz-sdk-checksum-algorithm", value("SHA256")?);
    headers.insert(
        "x-amz-object-lock-retain-until-date",
        value(&until.to_rfc3339_opts(SecondsFormat::Secs, true))?,
    );
    let mut options = ClientOptions::new().with_default_headers(headers);
    let mut plain_options = ClientOptions::new();
    if let Some(h) = allow_http {
        options = options.with_allow_http(h);
        plain_options = plain_options.with_allow_http(h);
    }
    let config_err = |source: object_store::Error| Error::Repository {
        repo: "s3".into(),
        operation: "configure object lock for",
        path: String::new(),
        source: Box::new(source),
    };
    // The bucket's URL, as object_store builds it (path style unless virtual-hosted).
    let get = |k| builder.get_config_value(&k);
    let bucket = get(AmazonS3ConfigKey::Bucket).unwrap_or_default();
    let region = get(AmazonS3ConfigKey::Region).unwrap_or_else(|| "us-east-1".into());
    let virtual_hosted = get(AmazonS3ConfigKey::VirtualHostedStyleRequest)
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let bucket_url = match (get(AmazonS3ConfigKey::Endpoint), virtual_hosted) {
        (Some(ep), true) => ep.trim_end_matches('/').to_string(),
        (Some(ep), false) => format!("{}/{bucket}", ep.trim_end_matches('/')),
        (None, true) => format!("https://{bucket}.s3.{region}.amazonaws.com"),
        (None, false) => format!("https://s3.{region}.amazonaws.com/{bucket}"),
    };
    let api_s3 = builder.clone().build().map_err(config_err)?;
    let client = ReqwestConnector::default()
        .connect(&plain_options)
        .map_err(config_err)?;
    let s3 = builder
        .with_client_options(options)
        .with_checksum_algorithm(Checksum::SHA256)
        .build()
        .map_err(config_err)?;
    let prefix = prefix.trim_matches('/').to_string();
    let store = object_store::prefix::PrefixStore::new(s3, Path::from(prefix.as_str()));
    let api = LockApi {
        client,
        s3: api_s3,
        bucket_url,
        region,
        prefix,
        config: cfg.clone(),
        until,
    };
    Ok((Arc::new(store), Arc::new(api)))
}

/// What `prune` did (or, in a dry run, would do) to the retention of the backups it keeps
/// (`object_lock.extend_kept`).
#[derive(Debug, Clone, Serialize)]
pub struct LockExtension {
    /// The new retain-until date: now + `days`, rounded up to midnight UTC.
    pub until: DateTime<Utc>,
    /// The kept backups whose objects were checked.
    pub backups: Vec<String>,
    /// Objects whose retention ended earlier and was (or would be) extended to `until`.
    pub extended: u64,
    /// Objects already retained until `until` or later.
    pub unchanged: u64,
    /// Why shared blobs were not extended, when they were not (no private key here).
    pub blobs_skipped: Option<String>,
}

/// The date `prune` extends kept backups to: now + `days`, rounded up to the next midnight
/// UTC, so that prunes run on the same day have nothing to redo (one PutObjectRetention per
/// object a day at most, rather than one per object per prune).
pub fn extension_target(now: DateTime<Utc>, days: u32) -> DateTime<Utc> {
    let t = now + Duration::days(i64::from(days));
    let midnight = t.date_naive().and_hms_opt(0, 0, 0).map(|m| m.and_utc());
    match midnight {
        Some(m) if m == t => t,
        Some(m) => m + Duration::days(1),
        None => t,
    }
}

/// Objects checked at once.
const CONCURRENCY: usize = 8;

impl crate::repository::Repository {
    /// With `object_lock.extend_kept`: extend the retention of every object of the backups
    /// `ids` (their manifests, artifacts, the shared blobs they reference, and the
    /// repository's data keys) to [`extension_target`] where it ends earlier
    /// (PutObjectRetention).
    /// None when the repository has no Object Lock or `extend_kept` is off.
    pub async fn extend_locks(
        &self,
        ids: &[String],
        dry_run: bool,
    ) -> Result<Option<LockExtension>> {
        use futures::{StreamExt, TryStreamExt};
        let Some(api) = self.object_lock().filter(|a| a.config.extend_kept).cloned() else {
            return Ok(None);
        };
        let until = extension_target(Utc::now(), api.config.days);
        let list_err = |p: &Path, source| Error::Repository {
            repo: self.url().to_string(),
            operation: "list",
            path: p.to_string(),
            source: Box::new(source),
        };
        let mut paths = std::collections::BTreeSet::new();
        // Every object of each backup, and every data key (a few hundred bytes each; a kept
        // backup's blobs may have been sealed by older runs' keys).
        let prefixes = ids
            .iter()
            .map(String::as_str)
            .chain(std::iter::once(crate::crypto::DATA_KEYS));
        for prefix in prefixes {
            let p = Path::from(prefix);
            let found: Vec<_> = self
                .store()
                .list(Some(&p))
                .map_ok(|m| m.location.to_string())
                .try_collect()
                .await
                .map_err(|e| list_err(&p, e))?;
            paths.extend(found);
        }
        // The shared blobs they reference (reading the references needs the private key).
        let keys = self.keys().await?;
        let mut blobs_skipped = None;
        if keys.encrypted() && !keys.can_read() {
            let why = "this host holds no private key, so it cannot read which blobs the kept backups reference: run prune where the key is".to_string();
            tracing::warn!("{why}");
            blobs_skipped = Some(why);
        } else {
            for h in self.referenced_blobs(ids).await? {
                if let Some((path, _)) = self.find_blob(&h).await? {
                    paths.insert(path);
                }
            }
        }
        let results: Vec<bool> = futures::stream::iter(paths)
            .map(|p| {
                let api = api.clone();
                async move {
                    if dry_run {
                        let had = api.retention(&p).await?;
                        Ok::<_, Error>(had.is_none_or(|r| r.until < until))
                    } else {
                        Ok(api.ensure(&p, until).await?.is_some())
                    }
                }
            })
            .buffer_unordered(CONCURRENCY)
            .try_collect()
            .await?;
        let extended = results.iter().filter(|x| **x).count() as u64;
        Ok(Some(LockExtension {
            until,
            backups: ids.to_vec(),
            extended,
            unchanged: results.len() as u64 - extended,
            blobs_skipped,
        }))
    }

    /// Until when S3 really retains backup `id`: the later of the date its manifest recorded
    /// and the retention its manifest object carries now (a kept backup's lock may have been
    /// extended since). `recorded` as is when the repository has no Object Lock.
    pub async fn retained_until(
        &self,
        id: &str,
        recorded: Option<DateTime<Utc>>,
    ) -> Result<Option<DateTime<Utc>>> {
        let Some(api) = self.object_lock() else {
            return Ok(recorded);
        };
        let now = api.retention(&format!("{id}/manifest.json")).await;
        let now = match now {
            Ok(r) => r.map(|r| r.until),
            Err(Error::MissingArtifact { .. }) => None,
            Err(e) => return Err(e),
        };
        Ok(recorded.max(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extension_target_is_the_midnight_after_now_plus_days() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).map(|d| d.with_timezone(&Utc));
        let now = at("2026-12-04T11:22:33Z").unwrap_or_default();
        let want = at("2026-12-08T00:00:00Z").unwrap_or_default();
        assert_eq!(extension_target(now, 3), want);
        assert_eq!(extension_target(want - Duration::days(3), 3), want);
    }

    #[test]
    fn keys_are_encoded_and_the_body_is_s3s() {
        assert_eq!(encode_key("a b/ü+x.zst"), "a%20b/%C3%BC%2Bx.zst");
        assert_eq!(
            retention_xml("GOVERNANCE", DateTime::from_timestamp(0, 0).unwrap_or_default()),
            "<Retention xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Mode>GOVERNANCE</Mode><RetainUntilDate>1970-01-01T00:00:00Z</RetainUntilDate></Retention>"
        );
    }
}

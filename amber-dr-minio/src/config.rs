//! Configuration of the `minio` driver.

use std::path::PathBuf;

use amber_dr_core::Secret;
use serde::{Deserialize, Serialize};

use crate::s3::S3Config;

/// `[components.NAME]` with `kind = "minio"`: any S3-compatible endpoint.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MinioConfig {
    /// `http://host:port` (or `https://...`) of the S3 API.
    pub endpoint: String,
    /// Access key id.
    pub access_key: String,
    /// Secret key (use `${VAR}` in the config file to keep it out of the file).
    pub secret_key: Secret,
    /// Region to sign requests for. Default `us-east-1` (what MinIO expects unless configured).
    #[serde(default = "default_region")]
    pub region: String,
    /// Path-style URLs (`endpoint/bucket/key`, MinIO's default) rather than virtual hosts.
    /// Default true.
    #[serde(default = "default_true")]
    pub path_style: bool,
    /// Buckets to back up. Default: every bucket the credentials can list.
    #[serde(default)]
    pub buckets: Option<Vec<String>>,
    /// Buckets never backed up (e.g. a bucket another component owns).
    #[serde(default)]
    pub exclude_buckets: Vec<String>,
    /// Objects read or written at the same time. Default 8.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Objects larger than this many MiB are restored with a multipart upload (parts of
    /// [`MinioConfig::part_size_mib`]). Default 64.
    #[serde(default = "default_multipart_threshold")]
    pub multipart_threshold_mib: u64,
    /// Part size of multipart uploads in MiB (at least 5; one part per upload in memory).
    /// Default 8.
    #[serde(default = "default_part_size")]
    pub part_size_mib: u64,
    /// MinIO's data directory on this host (the volume's `_data`, or the bind-mounted
    /// directory), relative to the config file's directory. With it the driver restores the
    /// shell runbook's `minio_data.tar.gz` (a `tar czf` of that volume) into it while MinIO is
    /// stopped, and a safety backup taken while MinIO's endpoint does not answer archives it.
    /// Default: none (a runbook's `minio_data.tar.gz` is left unrestored).
    #[serde(default)]
    pub legacy_data_dir: Option<PathBuf>,
}

fn default_region() -> String {
    "us-east-1".into()
}
fn default_true() -> bool {
    true
}
fn default_concurrency() -> usize {
    8
}
fn default_multipart_threshold() -> u64 {
    64
}
fn default_part_size() -> u64 {
    8
}

impl MinioConfig {
    /// A config for `endpoint` with these credentials, everything else default.
    pub fn new(
        endpoint: impl Into<String>,
        access_key: impl Into<String>,
        secret_key: impl Into<String>,
    ) -> Self {
        Self {
            endpoint: endpoint.into(),
            access_key: access_key.into(),
            secret_key: Secret::new(secret_key),
            region: default_region(),
            path_style: true,
            buckets: None,
            exclude_buckets: Vec::new(),
            concurrency: default_concurrency(),
            multipart_threshold_mib: default_multipart_threshold(),
            part_size_mib: default_part_size(),
            legacy_data_dir: None,
        }
    }

    /// Only these buckets.
    pub fn buckets(mut self, buckets: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.buckets = Some(buckets.into_iter().map(Into::into).collect());
        self
    }

    /// Set the `legacy_data_dir` field (MinIO's data directory on this host).
    pub fn legacy_data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.legacy_data_dir = Some(dir.into());
        self
    }

    pub(crate) fn s3(&self) -> S3Config {
        S3Config {
            endpoint: self.endpoint.clone(),
            region: self.region.clone(),
            access_key: self.access_key.clone(),
            secret_key: self.secret_key.expose().to_string(),
            path_style: self.path_style,
        }
    }

    pub(crate) fn concurrency(&self) -> usize {
        self.concurrency.clamp(1, 256)
    }

    pub(crate) fn multipart_threshold(&self) -> u64 {
        self.multipart_threshold_mib.max(5) * 1024 * 1024
    }

    pub(crate) fn part_size(&self) -> usize {
        (self.part_size_mib.clamp(5, 512) as usize) * 1024 * 1024
    }
}

impl std::fmt::Debug for MinioConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MinioConfig")
            .field("endpoint", &self.endpoint)
            .field("access_key", &self.access_key)
            .field("secret_key", &self.secret_key)
            .field("region", &self.region)
            .field("path_style", &self.path_style)
            .field("buckets", &self.buckets)
            .field("exclude_buckets", &self.exclude_buckets)
            .field("concurrency", &self.concurrency)
            .field("multipart_threshold_mib", &self.multipart_threshold_mib)
            .field("part_size_mib", &self.part_size_mib)
            .field("legacy_data_dir", &self.legacy_data_dir)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_shown_and_defaults() {
        let c: MinioConfig = serde_json::from_value(serde_json::json!({
            "endpoint": "http://s3:9000", "access_key": "ak", "secret_key": "s3cret-value"
        }))
        .expect("parse");
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("s3cret-value"), "{dbg}");
        assert_eq!(c.concurrency(), 8);
        assert!(c.path_style);
        assert_eq!(c.region, "us-east-1");
        let bad = serde_json::from_value::<MinioConfig>(serde_json::json!({
            "endpoint": "x", "access_key": "a", "secret_key": "b", "bucket": "typo"
        }));
        assert!(bad.is_err());
    }
}

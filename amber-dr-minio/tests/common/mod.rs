//! The S3 servers of `scripts/stack.sh`, filled and described with boto3 (tests/common/s3tool.py)
//! — a client independent of the driver under test.
#![allow(dead_code, missing_docs, clippy::unwrap_used)]

use std::io::Write;
use std::process::{Command, Stdio};

use amber_dr_core::{testkit, Repository, RepositoryConfig};
use amber_dr_minio::{Minio, MinioConfig};

/// Run from stdin (`python - ARGS`), so that suites of other crates can include this module.
pub const TOOL: &str = include_str!("s3tool.py");

#[derive(Clone, Debug)]
pub struct S3 {
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: String,
    pub python: String,
    /// moto: accepts any signature, stores any key.
    pub moto: bool,
}

fn var(k: &str) -> Option<String> {
    std::env::var(k).ok().filter(|v| !v.is_empty())
}

impl S3 {
    /// The stack's s3s-fs, or `None` (skip, or panic under AMBER_DR_REQUIRE_SERVICES=1).
    pub fn s3s() -> Option<S3> {
        let s = match (
            var("AMBER_DR_S3_ENDPOINT"),
            var("AMBER_DR_S3_ACCESS_KEY"),
            var("AMBER_DR_S3_SECRET_KEY"),
            var("AMBER_DR_S3_PYTHON"),
        ) {
            (Some(endpoint), Some(access_key), Some(secret_key), Some(python)) => S3 {
                endpoint,
                access_key,
                secret_key,
                python,
                moto: false,
            },
            _ => {
                testkit::service_missing(
                    "s3s-fs and boto3 (AMBER_DR_S3_* and AMBER_DR_S3_PYTHON from scripts/stack.sh)",
                );
                return None;
            }
        };
        s.check()
    }

    /// The stack's moto, or `None` (skip, or panic under AMBER_DR_REQUIRE_SERVICES=1).
    pub fn moto() -> Option<S3> {
        let s = match (var("AMBER_DR_MOTO_ENDPOINT"), var("AMBER_DR_S3_PYTHON")) {
            (Some(endpoint), Some(python)) => S3 {
                endpoint,
                access_key: "moto".into(),
                secret_key: "moto-secret".into(),
                python,
                moto: true,
            },
            _ => {
                testkit::service_missing(
                    "moto and boto3 (AMBER_DR_MOTO_ENDPOINT and AMBER_DR_S3_PYTHON from scripts/stack.sh)",
                );
                return None;
            }
        };
        s.check()
    }

    fn check(self) -> Option<S3> {
        match self.try_tool(&["fingerprint", "amber-dr-probe-bucket"]) {
            Ok(_) => Some(self),
            Err(e) => {
                testkit::service_missing(&format!("S3 at {} ({e})", self.endpoint));
                None
            }
        }
    }

    pub fn try_tool(&self, args: &[&str]) -> Result<String, String> {
        let mut child = Command::new(&self.python)
            .arg("-")
            .args([&self.endpoint, &self.access_key, &self.secret_key])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.python))?;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(TOOL.as_bytes())
            .map_err(|e| format!("cannot feed s3tool.py to {}: {e}", self.python))?;
        let out = child
            .wait_with_output()
            .map_err(|e| format!("cannot run {}: {e}", self.python))?;
        if !out.status.success() {
            return Err(format!(
                "s3tool {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(String::from_utf8(out.stdout).unwrap())
    }

    pub fn tool(&self, args: &[&str]) -> String {
        self.try_tool(args).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn fingerprint(&self, buckets: &[&str]) -> String {
        let mut a = vec!["fingerprint"];
        a.extend_from_slice(buckets);
        self.tool(&a)
    }

    /// A driver config for this server: small multipart threshold so tests exercise it.
    pub fn config(&self, buckets: &[&str]) -> MinioConfig {
        let mut c = MinioConfig::new(&self.endpoint, &self.access_key, &self.secret_key)
            .buckets(buckets.iter().copied());
        c.multipart_threshold_mib = 5;
        c.part_size_mib = 5;
        c.concurrency = 4;
        c
    }

    pub fn component(&self, name: &str, buckets: &[&str]) -> Minio {
        Minio::new(name, self.config(buckets)).unwrap()
    }
}

/// Bucket names unique to this run (s3s-fs keeps data between runs).
pub fn unique(prefix: &str) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
        % 1_000_000_000;
    format!("{prefix}-{n}")
}

/// A repository under a fresh prefix of the stack's repository bucket on s3s-fs.
pub fn s3_repository(s3: &S3, name: &str) -> Repository {
    let bucket = var("AMBER_DR_S3_BUCKET").unwrap_or_else(|| "amber-dr-repo".into());
    let mut cfg = RepositoryConfig::new(format!("s3://{bucket}/{}", unique(name)));
    cfg.endpoint = Some(s3.endpoint.clone());
    cfg.region = Some(var("AMBER_DR_S3_REGION").unwrap_or_else(|| "us-east-1".into()));
    cfg.access_key_id = Some(s3.access_key.clone());
    cfg.secret_access_key = Some(s3.secret_key.clone().into());
    cfg.allow_http = Some(true);
    Repository::open(&cfg).unwrap()
}

//! What the CLI tests against the local stack share: the stack's environment, the rule for a
//! missing server, running the binary, and a site of Postgres rows naming upload files and S3
//! objects (the demo's data shape) with its `amber-dr.toml`.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// A variable of the stack's env file, if set and not empty.
pub fn env(k: &str) -> Option<String> {
    std::env::var(k).ok().filter(|v| !v.is_empty())
}

/// A server the test needs is missing: panics under AMBER_DR_REQUIRE_SERVICES=1, otherwise
/// says the test is skipped.
pub fn missing(what: &str) {
    if env("AMBER_DR_REQUIRE_SERVICES").as_deref() == Some("1") {
        panic!("{what} not available and AMBER_DR_REQUIRE_SERVICES=1: run scripts/stack.sh up");
    }
    eprintln!("SKIPPED: {what} not available (scripts/stack.sh up)");
}

/// `amber-dr ARGS` run in `dir`: exit code, stdout, stderr.
pub fn amber(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_amber-dr"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// boto3, outside amber-dr: `put`/`delete` keys of a bucket, or `mkbucket`.
pub const S3_PY: &str = r#"
import sys, boto3
from botocore.config import Config
endpoint, access, secret, cmd, bucket, *keys = sys.argv[1:]
s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=access,
                  aws_secret_access_key=secret, region_name="us-east-1",
                  config=Config(s3={"addressing_style": "path"},
                                request_checksum_calculation="when_required",
                                response_checksum_validation="when_required"))
if cmd == "mkbucket":
    s3.create_bucket(Bucket=bucket)
for k in keys:
    if cmd == "put":
        s3.put_object(Bucket=bucket, Key=k, Body=("document " + k).encode())
    elif cmd == "delete":
        s3.delete_object(Bucket=bucket, Key=k)
"#;

pub struct Stack {
    pub s3: String,
    pub access: String,
    pub secret: String,
    pub python: String,
    pub pg_host: String,
    pub pg_port: String,
    pub pg_bindir: String,
}

impl Stack {
    pub fn get() -> Option<Stack> {
        Some(Stack {
            s3: env("AMBER_DR_S3_ENDPOINT")?,
            access: env("AMBER_DR_S3_ACCESS_KEY")?,
            secret: env("AMBER_DR_S3_SECRET_KEY")?,
            python: env("AMBER_DR_S3_PYTHON")?,
            pg_host: env("AMBER_DR_PG_HOST")?,
            pg_port: env("AMBER_DR_PG_PORT")?,
            pg_bindir: env("AMBER_DR_PG_BINDIR")?,
        })
    }

    pub fn pg_env(&self, cmd: &mut Command) {
        cmd.env("PGHOST", &self.pg_host)
            .env("PGPORT", &self.pg_port)
            .env("PGUSER", "postgres")
            .env("PGPASSWORD", env("AMBER_DR_PG_PASSWORD").unwrap());
    }

    pub fn psql(&self, db: &str, sql: &str) -> String {
        let mut cmd = Command::new(format!("{}/psql", self.pg_bindir));
        cmd.args([
            "-X",
            "-q",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            db,
            "-c",
            sql,
        ]);
        self.pg_env(&mut cmd);
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "psql: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn s3(&self, cmd: &str, bucket: &str, keys: &[String]) {
        let out = Command::new(&self.python)
            .args([
                "-c",
                S3_PY,
                &self.s3,
                &self.access,
                &self.secret,
                cmd,
                bucket,
            ])
            .args(keys)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "boto3 {cmd}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

pub fn json(dir: &Path, args: &[&str], want: i32) -> Value {
    let (code, out, err) = amber(dir, args);
    assert_eq!(
        code, want,
        "amber-dr {args:?}\nstdout: {out}\nstderr: {err}"
    );
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {out}"))
}

pub struct Site {
    pub dir: tempfile::TempDir,
    pub db: String,
    pub bucket: String,
}

pub const DOCS: u32 = 40;

pub fn site(s: &Stack, tag: &str, extra: &str) -> Site {
    let dir = tempfile::tempdir().unwrap();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let db = format!("amber_cli_refs_{tag}");
    let bucket = format!("amber-cli-refs-{tag}-{nanos}");
    s.psql("postgres", &format!("DROP DATABASE IF EXISTS {db}"));
    s.psql("postgres", &format!("CREATE DATABASE {db}"));
    s.psql(
        &db,
        "CREATE TABLE docs (id int PRIMARY KEY, upload_path text, minio_key text)",
    );
    s.psql(
        &db,
        &format!("INSERT INTO docs SELECT i, 'docs/' || i || '.pdf', 'docs/' || i FROM generate_series(1, {DOCS}) i"),
    );
    // One document without an upload: a NULL names nothing.
    s.psql(&db, "INSERT INTO docs VALUES (0, NULL, 'docs/0')");
    let keys: Vec<String> = (0..=DOCS).map(|i| format!("docs/{i}")).collect();
    s.s3("mkbucket", &bucket, &keys);
    s.s3("put", &bucket, &keys);
    std::fs::create_dir_all(dir.path().join("uploads/docs")).unwrap();
    for i in 1..=DOCS {
        std::fs::write(dir.path().join(format!("uploads/docs/{i}.pdf")), "pdf").unwrap();
    }
    std::fs::write(
        dir.path().join("amber-dr.toml"),
        format!(
            r#"[repository]
url = "./repo"

[components.postgres]
kind = "postgres"
url = "postgres://postgres:${{AMBER_DR_PG_PASSWORD}}@{host}:{port}/postgres"
databases = ["{db}"]

[components.minio]
kind = "minio"
endpoint = "{s3}"
access_key = "${{AMBER_DR_S3_ACCESS_KEY}}"
secret_key = "${{AMBER_DR_S3_SECRET_KEY}}"
buckets = ["{bucket}"]

[components.uploads]
kind = "files"
path = "./uploads"

[[references]]
name = "document files"
from = {{ component = "postgres", database = "{db}", query = "SELECT upload_path FROM docs" }}
to = {{ component = "uploads" }}

[[references]]
name = "document objects"
from = {{ component = "postgres", database = "{db}", query = "SELECT '{bucket}/' || minio_key FROM docs" }}
to = {{ component = "minio" }}
{extra}"#,
            host = s.pg_host,
            port = s.pg_port,
            s3 = s.s3,
        ),
    )
    .unwrap();
    Site { dir, db, bucket }
}

pub fn cleanup(s: &Stack, site: &Site) {
    s.psql("postgres", &format!("DROP DATABASE IF EXISTS {}", site.db));
}

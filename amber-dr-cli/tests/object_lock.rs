//! S3 Object Lock through the `amber-dr` binary on the stack's moto (issue 16): `prune`
//! reports the locked backups it keeps and the locks it extends (`extend_kept`).
// test-lane: rest (its own buckets on moto and the S3 server; no state shared with other tests)
#![allow(missing_docs, clippy::unwrap_used)]

use std::fs;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_amber-dr");
const BUCKET: &str = "amber-dr-object-lock-cli";

fn run(dir: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_remove("AMBER_DR_CONFIG")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(dir: &std::path::Path, args: &[&str]) -> String {
    let (code, stdout, stderr) = run(dir, args);
    assert_eq!(code, 0, "amber-dr {args:?}\n{stdout}\n{stderr}");
    stdout
}

#[test]
fn prune_reports_locked_backups_and_the_locks_it_extends() {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let (Some(endpoint), Some(python)) = (var("AMBER_DR_MOTO_ENDPOINT"), var("AMBER_DR_S3_PYTHON"))
    else {
        assert!(
            var("AMBER_DR_REQUIRE_SERVICES").as_deref() != Some("1"),
            "moto is required (AMBER_DR_MOTO_ENDPOINT, AMBER_DR_S3_PYTHON)"
        );
        eprintln!("skipped: moto and boto3 (AMBER_DR_MOTO_ENDPOINT, AMBER_DR_S3_PYTHON)");
        return;
    };
    let made = Command::new(&python)
        .arg("-c")
        .arg(
            "import sys, boto3\n\
             s3 = boto3.client('s3', endpoint_url=sys.argv[1], aws_access_key_id='moto', aws_secret_access_key='moto-secret', region_name='us-east-1')\n\
             try:\n    s3.create_bucket(Bucket=sys.argv[2], ObjectLockEnabledForBucket=True)\n\
             except s3.exceptions.BucketAlreadyOwnedByYou:\n    pass\n",
        )
        .args([endpoint.as_str(), BUCKET])
        .status()
        .unwrap();
    assert!(made.success());
    let dir = tempfile::tempdir().unwrap();
    let up = dir.path().join("uploads");
    fs::create_dir_all(&up).unwrap();
    fs::write(up.join("a.txt"), "hello\n").unwrap();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    fs::write(
        dir.path().join("amber-dr.toml"),
        format!(
            "[repository]\nurl = \"s3://{BUCKET}/cli-{nanos}\"\nendpoint = \"{endpoint}\"\nregion = \"us-east-1\"\naccess_key_id = \"moto\"\nsecret_access_key = \"moto-secret\"\nobject_lock = {{ mode = \"governance\", days = 2, extend_kept = true }}\n\n[components.uploads]\nkind = \"files\"\npath = \"./uploads\"\n"
        ),
    )
    .unwrap();
    let first = ok(dir.path(), &["backup"]);
    let first = first.lines().last().unwrap().trim().to_string();
    // The backup's retention is now + 2 days; prune extends it to the midnight UTC after
    // its own now + 2 days.
    let out = ok(dir.path(), &["prune", "--keep-last", "1"]);
    assert!(
        out.contains("S3 Object Lock of the 1 kept backups:")
            && out.contains("objects extended until"),
        "{out}"
    );
    let second = ok(dir.path(), &["backup"]);
    let second = second.lines().last().unwrap().trim().to_string();
    assert_ne!(first, second);
    let out = ok(dir.path(), &["--json", "prune", "--keep-last", "1"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["deleted"], serde_json::json!([]), "{v}");
    assert_eq!(v["locked"][0][0], serde_json::json!(first), "{v}");
    assert_eq!(
        v["lock_extension"]["backups"],
        serde_json::json!([second]),
        "{v}"
    );
    assert!(
        v["lock_extension"]["extended"].as_u64().unwrap() >= 2,
        "{v}"
    );
    let out = ok(dir.path(), &["prune", "--keep-last", "1"]);
    assert!(
        out.contains(&format!("locked  {first}: S3 Object Lock retains it until")),
        "{out}"
    );
}

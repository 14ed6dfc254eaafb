//! S3 Object Lock on the stack's moto (issue 16): every object of a backup has a retention
//! date, a versioned delete is refused before it, and `prune` keeps a locked backup and says
//! until when.
// test-lane: stores (uses the Postgres cluster or Neo4j, whose global state other tests change)
#![allow(missing_docs, clippy::unwrap_used)]

#[path = "../../amber-dr-files/tests/common/mod.rs"]
mod common;

use std::process::Command;

use amber_dr_core::object_lock::{LockMode, ObjectLockConfig};
use amber_dr_core::testkit::{self, Fixture};
use amber_dr_core::{BackupOptions, Repository, RepositoryConfig, RetentionPolicy, Runner};
use amber_dr_e2e::unique_prefix;

const SCRIPT: &str = r#"
import sys, json, boto3
ep, bucket, cmd = sys.argv[1], sys.argv[2], sys.argv[3]
s3 = boto3.client("s3", endpoint_url=ep, aws_access_key_id="moto", aws_secret_access_key="moto-secret", region_name="us-east-1")
if cmd == "create":
    try:
        s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    print("{}")
elif cmd == "inspect":
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=sys.argv[4]):
        for o in page.get("Contents", []):
            h = s3.head_object(Bucket=bucket, Key=o["Key"])
            out[o["Key"]] = [h.get("ObjectLockMode"), str(h.get("ObjectLockRetainUntilDate")), h.get("VersionId")]
    print(json.dumps(out))
elif cmd == "delete-version":
    try:
        s3.delete_object(Bucket=bucket, Key=sys.argv[4], VersionId=sys.argv[5])
        print(json.dumps({"deleted": True}))
    except Exception as e:
        print(json.dumps({"deleted": False, "error": str(e)}))
"#;

fn py(python: &str, args: &[&str]) -> serde_json::Value {
    let out = Command::new(python)
        .arg("-c")
        .arg(SCRIPT)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locked_backups_cannot_be_deleted_early_and_prune_says_until_when() {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let (Some(endpoint), Some(python)) = (var("AMBER_DR_MOTO_ENDPOINT"), var("AMBER_DR_S3_PYTHON"))
    else {
        testkit::service_missing("moto and boto3 (AMBER_DR_MOTO_ENDPOINT, AMBER_DR_S3_PYTHON)");
        return;
    };
    let bucket = "amber-dr-object-lock";
    py(&python, &[&endpoint, bucket, "create"]);
    let prefix = unique_prefix("lock");
    let cfg = RepositoryConfig {
        url: format!("s3://{bucket}/{prefix}"),
        endpoint: Some(endpoint.clone()),
        region: Some("us-east-1".into()),
        access_key_id: Some("moto".into()),
        secret_access_key: Some("moto-secret".into()),
        object_lock: Some(ObjectLockConfig {
            mode: LockMode::Governance,
            days: 2,
        }),
        encryption: Some(testkit::test_encryption()),
        ..Default::default()
    };
    let repo = Repository::open(&cfg).unwrap();
    let fx = common::Dirs::new();
    fx.populate(0).await.unwrap();
    let runner = Runner::new(repo.clone(), vec![fx.component(0)]);
    let first = runner.backup(&BackupOptions::default()).await.unwrap();
    assert!(first.is_complete());
    let until = first.locked_until.expect("locked_until recorded");
    assert!(until > chrono::Utc::now() + chrono::Duration::days(1));

    // The manifest and the data keys (single PUTs) carry the lock. Artifacts are multipart
    // uploads, whose CreateMultipartUpload carries the same headers: AWS S3 applies them,
    // moto 5.1.22 ignores them there, so they are not checked here (see docs/encryption.md).
    let objects = py(&python, &[&endpoint, bucket, "inspect", &prefix]);
    let objects = objects.as_object().unwrap();
    let of_backup: Vec<_> = objects
        .iter()
        .filter(|(k, _)| {
            k.ends_with(&format!("{}/manifest.json", first.id)) || k.contains("/keys/data/")
        })
        .collect();
    assert!(of_backup.len() >= 2, "{objects:?}");
    for (k, v) in &of_backup {
        assert_eq!(v[0], "GOVERNANCE", "{k}: {v}");
    }
    let keyring = objects
        .iter()
        .find(|(k, _)| k.ends_with("keys/keyring.json"))
        .unwrap();
    assert!(
        keyring.1[0].is_null(),
        "the keyring stays editable: {keyring:?}"
    );

    // A plain S3 delete of a version before the date is refused.
    let (key, v) = of_backup
        .iter()
        .find(|(k, _)| k.ends_with("manifest.json"))
        .unwrap();
    let version = v[2].as_str().unwrap();
    let r = py(
        &python,
        &[&endpoint, bucket, "delete-version", key, version],
    );
    assert_eq!(r["deleted"], false, "{r}");

    // prune would drop the first backup: it is locked, so it is kept and reported.
    let second = runner.backup(&BackupOptions::default()).await.unwrap();
    let policy = RetentionPolicy {
        keep_last: 1,
        ..Default::default()
    };
    let o = runner.prune(&policy, false).await.unwrap();
    assert!(o.deleted.is_empty(), "{o:?}");
    assert_eq!(o.locked.len(), 1, "{o:?}");
    assert_eq!(o.locked[0].0, first.id);
    let ids = repo.backup_ids().await.unwrap();
    assert!(
        ids.contains(&first.id) && ids.contains(&second.id),
        "{ids:?}"
    );
    // And it still restores (verify reads every byte).
    let v = runner
        .verify(
            &first.id,
            &amber_dr_core::Selection::all(),
            amber_dr_core::VerifyLevel::Full,
        )
        .await
        .unwrap();
    assert!(v.is_ok(), "{v:?}");
}

//! S3 Object Lock on the stack's moto (issue 16): every object of a backup has a retention
//! date (multipart artifacts too), a versioned delete is refused before it, `prune` keeps a
//! locked backup and says until when, and extends the locks of the backups it keeps. Every
//! retention is read back with boto3, not through amber-dr.
// test-lane: stores (moto's buckets are shared by the e2e tests of this lane)
#![allow(missing_docs, clippy::unwrap_used)]

#[path = "../../amber-dr-files/tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::process::Command;

use amber_dr_core::object_lock::{LockMode, ObjectLockConfig};
use amber_dr_core::testkit::{self, Fixture};
use amber_dr_core::{BackupOptions, Repository, RepositoryConfig, RetentionPolicy, Runner};
use amber_dr_e2e::unique_prefix;
use chrono::{DateTime, Duration, Utc};

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
            d = h.get("ObjectLockRetainUntilDate")
            out[o["Key"]] = {"mode": h.get("ObjectLockMode"), "until": d.isoformat() if d else None,
                             "version": h.get("VersionId"), "etag": h.get("ETag"), "size": h.get("ContentLength")}
    print(json.dumps(out))
elif cmd == "delete-version":
    try:
        s3.delete_object(Bucket=bucket, Key=sys.argv[4], VersionId=sys.argv[5])
        print(json.dumps({"deleted": True}))
    except Exception as e:
        print(json.dumps({"deleted": False, "error": str(e)}))
"#;

const BUCKET: &str = "amber-dr-object-lock";

/// One object as boto3 sees it.
#[derive(Debug, Clone)]
struct Obj {
    mode: Option<String>,
    until: Option<DateTime<Utc>>,
    version: String,
    etag: String,
    size: u64,
}

struct Moto {
    endpoint: String,
    python: String,
}

impl Moto {
    fn get() -> Option<Self> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let (Some(endpoint), Some(python)) =
            (var("AMBER_DR_MOTO_ENDPOINT"), var("AMBER_DR_S3_PYTHON"))
        else {
            testkit::service_missing("moto and boto3 (AMBER_DR_MOTO_ENDPOINT, AMBER_DR_S3_PYTHON)");
            return None;
        };
        let m = Self { endpoint, python };
        m.py(&["create"]);
        Some(m)
    }

    fn py(&self, args: &[&str]) -> serde_json::Value {
        let out = Command::new(&self.python)
            .arg("-c")
            .arg(SCRIPT)
            .arg(&self.endpoint)
            .arg(BUCKET)
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

    /// Every object under `prefix`, by key.
    fn inspect(&self, prefix: &str) -> BTreeMap<String, Obj> {
        let v = self.py(&["inspect", prefix]);
        v.as_object()
            .unwrap()
            .iter()
            .map(|(k, o)| {
                let until = o["until"]
                    .as_str()
                    .map(|s| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc));
                let obj = Obj {
                    mode: o["mode"].as_str().map(str::to_string),
                    until,
                    version: o["version"].as_str().unwrap_or_default().to_string(),
                    etag: o["etag"].as_str().unwrap_or_default().to_string(),
                    size: o["size"].as_u64().unwrap_or(0),
                };
                (k.clone(), obj)
            })
            .collect()
    }

    fn delete_version(&self, key: &str, version: &str) -> serde_json::Value {
        self.py(&["delete-version", key, version])
    }

    fn config(&self, prefix: &str, days: u32, extend_kept: bool) -> RepositoryConfig {
        RepositoryConfig {
            url: format!("s3://{BUCKET}/{prefix}"),
            endpoint: Some(self.endpoint.clone()),
            region: Some("us-east-1".into()),
            access_key_id: Some("moto".into()),
            secret_access_key: Some("moto-secret".into()),
            object_lock: Some(ObjectLockConfig {
                mode: LockMode::Governance,
                days,
                extend_kept,
            }),
            encryption: Some(testkit::test_encryption()),
            ..Default::default()
        }
    }
}

/// The objects of backup `id` and the data keys (what a backup's lock must cover).
fn of_backup<'a>(objects: &'a BTreeMap<String, Obj>, id: &str) -> Vec<(&'a String, &'a Obj)> {
    objects
        .iter()
        .filter(|(k, _)| k.contains(&format!("/{id}/")) || k.contains("/keys/data/"))
        .collect()
}

/// An incompressible file of `n` bytes in the fixture's directory: its artifact is uploaded in
/// several multipart parts.
fn add_incompressible(dir: &std::path::Path, n: usize) {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let bytes: Vec<u8> = (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(dir.join("incompressible.bin"), bytes).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locked_backups_cannot_be_deleted_early_and_prune_says_until_when() {
    let Some(moto) = Moto::get() else { return };
    let prefix = unique_prefix("lock");
    let repo = Repository::open(&moto.config(&prefix, 2, false)).unwrap();
    let fx = common::Dirs::new();
    fx.populate(0).await.unwrap();
    add_incompressible(&fx.dir(0), 3 * amber_dr_core::artifact::PART_SIZE);
    let runner = Runner::new(repo.clone(), vec![fx.component(0)]);
    let first = runner.backup(&BackupOptions::default()).await.unwrap();
    assert!(first.is_complete());
    let until = first.locked_until.expect("locked_until recorded");
    assert!(until > Utc::now() + Duration::days(1));

    // Every object of the backup carries the lock: the manifest and data keys (single PUTs)
    // and the artifacts, uploaded in multipart (moto ignores the retention headers of
    // CreateMultipartUpload: amber-dr sets it with PutObjectRetention after the upload).
    let objects = moto.inspect(&prefix);
    let backup = of_backup(&objects, &first.id);
    assert!(backup.len() >= 3, "{objects:?}");
    for (k, o) in &backup {
        assert_eq!(o.mode.as_deref(), Some("GOVERNANCE"), "{k}: {o:?}");
        assert!(
            o.until.unwrap() >= until - Duration::seconds(1),
            "{k}: {o:?}"
        );
    }
    let (artifact, a) = backup
        .iter()
        .find(|(k, _)| k.ends_with(".tar.zst"))
        .expect("the files artifact");
    // Multipart: S3's ETag of a multipart object ends in -<number of parts>.
    let parts: u32 = a
        .etag
        .trim_matches('"')
        .rsplit_once('-')
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or(0);
    assert!(
        a.size > 2 * amber_dr_core::artifact::PART_SIZE as u64 && parts >= 3,
        "{artifact}: {a:?}"
    );
    let keyring = objects
        .iter()
        .find(|(k, _)| k.ends_with("keys/keyring.json"))
        .unwrap();
    assert!(
        keyring.1.mode.is_none(),
        "the keyring stays editable: {keyring:?}"
    );

    // A plain S3 delete of a version before the date is refused: the multipart artifact's and
    // the manifest's.
    for key in [
        artifact.to_string(),
        format!("{prefix}/{}/manifest.json", first.id),
    ] {
        let r = moto.delete_version(&key, &objects[&key].version);
        assert_eq!(r["deleted"], false, "{key}: {r}");
    }

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
    assert!(o.lock_extension.is_none(), "extend_kept is off: {o:?}");
    let ids = repo.backup_ids().await.unwrap();
    assert!(
        ids.contains(&first.id) && ids.contains(&second.id),
        "{ids:?}"
    );
    // The multipart artifact's version is still there, still locked.
    let after = moto.inspect(&prefix);
    assert_eq!(after[*artifact].version, a.version);
    assert_eq!(after[*artifact].mode.as_deref(), Some("GOVERNANCE"));
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_extends_the_locks_of_the_backups_it_keeps() {
    let Some(moto) = Moto::get() else { return };
    let prefix = unique_prefix("lock-extend");
    // Backups written with a 1-day retention...
    let repo = Repository::open(&moto.config(&prefix, 1, false)).unwrap();
    let fx = common::Dirs::new();
    fx.populate(0).await.unwrap();
    add_incompressible(&fx.dir(0), 2 * amber_dr_core::artifact::PART_SIZE);
    let runner = Runner::new(repo.clone(), vec![fx.component(0)]);
    let first = runner.backup(&BackupOptions::default()).await.unwrap();
    assert!(first.is_complete());
    let before = moto.inspect(&prefix);
    let objects = of_backup(&before, &first.id);
    assert!(objects.len() >= 3, "{before:?}");
    for (k, o) in &objects {
        let u = o.until.unwrap();
        assert!(
            u < Utc::now() + Duration::days(1) + Duration::minutes(5),
            "{k}: {o:?}"
        );
    }

    // ...pruned by a host configured with 3 days and extend_kept.
    let extending = Repository::open(&moto.config(&prefix, 3, true)).unwrap();
    let pruner = Runner::new(extending.clone(), Vec::new());
    let policy = RetentionPolicy {
        keep_last: 1,
        ..Default::default()
    };
    // A dry run says what it would extend and changes nothing.
    let dry = pruner.prune(&policy, true).await.unwrap();
    let x = dry.lock_extension.expect("extension reported");
    assert_eq!(x.extended as usize, objects.len(), "{x:?}");
    for (k, o) in of_backup(&moto.inspect(&prefix), &first.id) {
        assert_eq!(o.until, before[k].until, "dry run changed {k}");
    }

    let started = Utc::now();
    let o = pruner.prune(&policy, false).await.unwrap();
    let x = o.lock_extension.clone().expect("extension reported");
    assert_eq!(x.backups, vec![first.id.clone()], "{o:?}");
    assert_eq!(x.extended as usize, objects.len(), "{o:?}");
    assert_eq!(x.unchanged, 0, "{o:?}");
    // now + 3 days, rounded up to midnight UTC.
    assert!(
        x.until >= started + Duration::days(3) && x.until <= started + Duration::days(4),
        "{x:?}"
    );
    // boto3 reads the new dates back: every object of the kept backup, multipart artifact
    // included, and the data keys.
    let after = moto.inspect(&prefix);
    for (k, o) in of_backup(&after, &first.id) {
        assert_eq!(o.mode.as_deref(), Some("GOVERNANCE"), "{k}: {o:?}");
        assert_eq!(o.until, Some(x.until), "{k}: {o:?}");
        assert_eq!(
            o.version, before[k].version,
            "{k}: same version, not a copy"
        );
    }
    // Once extended, a second prune (the same day) has nothing to do.
    let again = pruner.prune(&policy, false).await.unwrap();
    let y = again.lock_extension.unwrap();
    assert_eq!((y.extended, y.unchanged), (0, x.extended), "{y:?}");

    // A newer backup makes the rules drop the first one: its manifest still records 1 day,
    // but prune reads the real (extended) retention and reports that date.
    let second = runner.backup(&BackupOptions::default()).await.unwrap();
    let o = pruner.prune(&policy, false).await.unwrap();
    assert!(o.deleted.is_empty(), "{o:?}");
    assert_eq!(o.locked.len(), 1, "{o:?}");
    assert_eq!(o.locked[0].0, first.id);
    assert_eq!(
        o.locked[0].1, x.until,
        "reported {} (the manifest's 1-day date?)",
        o.locked[0].1
    );
    let y = o.lock_extension.unwrap();
    assert_eq!(
        y.backups,
        vec![second.id.clone()],
        "only the kept one is extended"
    );
    // The dropped, locked backup was not extended further.
    let last = moto.inspect(&prefix);
    let m = format!("{prefix}/{}/manifest.json", first.id);
    assert_eq!(last[&m].until, after[&m].until);
}

//! The `minio` driver against the real servers: awkward keys (moto for the ones s3s-fs cannot
//! store), incremental and deduplicated backups, prune, damage, bad input, restore options.
//! Every restore is checked with boto3 (tests/common/s3tool.py), not with the driver.
// test-lane: minio (long, CPU-bound S3 tests)
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::collections::{BTreeSet, HashSet};
use std::path::Path;
use std::sync::Arc;

use amber_dr_core::testkit;
use amber_dr_core::{
    BackupOptions, Component, Manifest, RestoreOptions, RestorePlanOptions, RetentionPolicy,
    Runner, Selection, VerifyLevel,
};
use amber_dr_minio::{Minio, MinioConfig};
use common::{unique, S3};

fn runner(repo: &amber_dr_core::Repository, c: Minio) -> Runner {
    Runner::new(repo.clone(), vec![Arc::new(c) as Arc<dyn Component>])
}

fn plan(options: RestoreOptions) -> RestorePlanOptions {
    RestorePlanOptions {
        selection: Selection::all(),
        options,
        safety_backup: false,
        components: Default::default(),
    }
}

async fn backup(r: &Runner) -> Manifest {
    let m = r.backup(&BackupOptions::default()).await.unwrap();
    assert!(m.is_complete(), "backup failed: {:?}", m.components);
    m
}

fn stat(m: &Manifest, key: &str) -> u64 {
    m.components.values().next().unwrap().stat_u64(key).unwrap()
}

/// The blob files of a local repository.
fn blob_files(root: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let Ok(dirs) = std::fs::read_dir(root.join("blobs")) else {
        return out;
    };
    for d in dirs.flatten() {
        if d.file_name() == "tmp" {
            continue;
        }
        for f in std::fs::read_dir(d.path()).unwrap().flatten() {
            out.insert(
                f.file_name()
                    .to_string_lossy()
                    .trim_end_matches(".zst")
                    .to_string(),
            );
        }
    }
    out
}

/// The distinct body hashes of a fingerprint (the 4th field of each object line).
fn bodies(fingerprint: &str) -> HashSet<String> {
    fingerprint
        .lines()
        .filter(|l| !l.ends_with(": present") && !l.ends_with(": absent"))
        .filter_map(|l| {
            // bucket "key" size sha {...}: the key is JSON and may contain spaces.
            let after_key = l.rsplit_once("\" ").map(|(_, rest)| rest)?;
            after_key.split(' ').nth(1).map(str::to_string)
        })
        .collect()
}

/// Keys s3s-fs cannot store (1,024 bytes, ending in `/`, `a//b`) and every other awkward case,
/// round-tripped through moto; then restored again into other bucket names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn awkward_keys_round_trip_on_moto() {
    let Some(s3) = S3::moto() else { return };
    let (a, b) = (unique("keys-a"), unique("keys-b"));
    s3.tool(&["populate", &a, &b, "long"]);
    let original = s3.fingerprint(&[&a, &b]);
    assert!(original.contains(&"k".repeat(1024)), "{original}");
    assert!(original.contains("\"folder/\""), "{original}");
    let (repo, _dir) = testkit::temp_repo();
    let r = runner(&repo, s3.component("docs", &[&a, &b]));
    let m = backup(&r).await;
    assert_eq!(stat(&m, "objects"), 20, "{:?}", m.components);
    let v = r
        .verify(&m.id, &Selection::all(), VerifyLevel::Full)
        .await
        .unwrap();
    assert!(v.is_ok(), "{:?}", v.components);

    s3.tool(&["destroy", &a, &b]);
    assert_ne!(s3.fingerprint(&[&a, &b]), original);
    let out = r
        .restore(&m.id, &plan(RestoreOptions::new()))
        .await
        .unwrap();
    assert!(out.is_ok(), "{:?}", out.components);
    assert_eq!(s3.fingerprint(&[&a, &b]), original);

    // Drill: restore into other bucket names; the originals stay as they are.
    let (a2, b2) = (unique("drill-a"), unique("drill-b"));
    let target = format!("{a}:{a2},{b}:{b2}");
    let out = r
        .restore(&m.id, &plan(RestoreOptions::new().target(Some(target))))
        .await
        .unwrap();
    assert!(out.is_ok(), "{:?}", out.components);
    let drill = s3.fingerprint(&[&a2, &b2]);
    assert_eq!(drill.replace(&a2, &a).replace(&b2, &b), original);
}

/// A second backup reads only the changed bodies; identical bodies are one blob; prune sweeps
/// the blobs no remaining backup references; the remaining backup still restores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_dedup_and_prune() {
    let Some(s3) = S3::s3s() else { return };
    let (a, b) = (unique("inc-a"), unique("inc-b"));
    s3.tool(&["populate", &a, &b]);
    for i in 0..30 {
        s3.tool(&["put", &b, &format!("many/{i:03}"), "2000", &i.to_string()]);
    }
    let first = s3.fingerprint(&[&a, &b]);
    let (repo, dir) = testkit::temp_repo();
    let r = runner(&repo, s3.component("docs", &[&a, &b]));
    let m1 = backup(&r).await;
    let objects = stat(&m1, "objects");
    assert_eq!(objects, 15 + 1 + 30);
    // dup-1 and dup-2 (and the zero-byte bodies) share blobs: one file per distinct body.
    let blobs1 = blob_files(dir.path());
    assert_eq!(blobs1, bodies(&first).into_iter().collect());
    assert!(
        (blobs1.len() as u64) < objects,
        "identical bodies were stored twice"
    );
    assert_eq!(stat(&m1, "blobs_new"), blobs1.len() as u64);

    // Change one object, add one: only those two bodies are read.
    s3.tool(&["put", &b, "many/007", "2000", "changed"]);
    s3.tool(&["put", &b, "many/new", "2000", "new"]);
    let second = s3.fingerprint(&[&a, &b]);
    let m2 = backup(&r).await;
    assert_eq!(stat(&m2, "objects_read"), 2, "{:?}", m2.components);
    assert_eq!(stat(&m2, "objects_unchanged"), objects - 1);
    assert_eq!(stat(&m2, "blobs_new"), 2);
    let blobs2 = blob_files(dir.path());
    assert_eq!(blobs2.len(), blobs1.len() + 2);

    // Keep only the newest backup: the replaced body's blob goes, everything else stays.
    let pruned = r
        .prune(
            &RetentionPolicy {
                keep_last: 1,
                ..Default::default()
            },
            false,
        )
        .await
        .unwrap();
    assert_eq!(pruned.deleted, vec![m1.id.clone()]);
    assert_eq!(pruned.blobs_deleted, 1);
    let blobs3 = blob_files(dir.path());
    assert_eq!(blobs3, bodies(&second).into_iter().collect());

    s3.tool(&["destroy", &a, &b]);
    let out = r
        .restore(&m2.id, &plan(RestoreOptions::new()))
        .await
        .unwrap();
    assert!(out.is_ok(), "{:?}", out.components);
    assert_eq!(s3.fingerprint(&[&a, &b]), second);
}

/// A damaged blob: verify --full names the blob and the object; the restore is refused as a
/// whole in its prepare phase (naming it) and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_blob_is_named_and_refused() {
    let Some(s3) = S3::s3s() else { return };
    let (a, b) = (unique("bad-a"), unique("bad-b"));
    s3.tool(&["populate", &a, &b]);
    let original = s3.fingerprint(&[&a, &b]);
    let (repo, dir) = testkit::temp_repo();
    let r = runner(&repo, s3.component("docs", &[&a, &b]));
    let m = backup(&r).await;

    // Damage the blobs of a small and of a streamed (1.5 MiB) object.
    let line = |key: &str| {
        original
            .lines()
            .find(|l| l.contains(&format!("\"{key}\"")))
            .unwrap()
            .to_string()
    };
    let sha_of = |key: &str| bodies(&line(key)).into_iter().next().unwrap();
    for key in ["plus+sign.txt", "big/1.5MiB"] {
        let sha = sha_of(key);
        let path = dir.path().join(format!("blobs/{}/{sha}.zst", &sha[..2]));
        let mut bytes = std::fs::read(&path).unwrap();
        let i = bytes.len() / 2;
        bytes[i] ^= 0x20;
        std::fs::write(&path, bytes).unwrap();
    }
    let quick = r
        .verify(&m.id, &Selection::all(), VerifyLevel::Quick)
        .await
        .unwrap();
    assert!(
        quick.is_ok(),
        "quick verify reads no blob content: {:?}",
        quick.components
    );
    let v = r
        .verify(&m.id, &Selection::all(), VerifyLevel::Full)
        .await
        .unwrap();
    let problems = v
        .components
        .values()
        .flat_map(|c| c.problems.clone())
        .collect::<Vec<_>>();
    assert!(!v.is_ok());
    for key in ["plus+sign.txt", "big/1.5MiB"] {
        let sha = sha_of(key);
        assert!(
            problems.iter().any(|p| p.contains(key) && p.contains(&sha)),
            "{key} not named: {problems:?}"
        );
    }

    // The live objects were changed; the damaged ones must stay as they are now.
    s3.tool(&["put", &a, "plus+sign.txt", "10", "live"]);
    s3.tool(&["put", &a, "big/1.5MiB", "2000000", "live"]);
    s3.tool(&["destroy", &a, &b]);
    let before = s3.fingerprint(&[&a]);
    // The prepare phase reads every blob first: the whole restore is refused as damage, naming
    // a damaged object, and nothing changes — the damaged objects and the undamaged ones alike.
    let err = r
        .restore(&m.id, &plan(RestoreOptions::new()))
        .await
        .unwrap_err();
    assert!(err.is_damage(), "{err}");
    let msg = err.to_string();
    assert!(
        ["plus+sign.txt", "big/1.5MiB"]
            .iter()
            .any(|k| msg.contains(k)),
        "{msg}"
    );
    assert!(msg.contains("nothing was restored"), "{msg}");
    assert_eq!(
        s3.fingerprint(&[&a]),
        before,
        "a refused restore changed the bucket"
    );
}

/// Objects not in the backup are deleted by default and kept with keep_extra; `items` restores
/// only the named buckets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_extra_and_items() {
    let Some(s3) = S3::s3s() else { return };
    let (a, b) = (unique("kx-a"), unique("kx-b"));
    s3.tool(&["populate", &a, &b]);
    let original = s3.fingerprint(&[&a]);
    let (repo, _dir) = testkit::temp_repo();
    let r = runner(&repo, s3.component("docs", &[&a, &b]));
    let m = backup(&r).await;
    s3.tool(&["destroy", &a, &b]);
    let out = r
        .restore(
            &m.id,
            &plan(
                RestoreOptions::new()
                    .keep_extra(true)
                    .items(vec![a.clone()]),
            ),
        )
        .await
        .unwrap();
    assert!(out.is_ok(), "{:?}", out.components);
    let kept = s3.fingerprint(&[&a]);
    assert!(kept.contains("\"extra-after-backup\""), "{kept}");
    assert_eq!(
        kept.lines()
            .filter(|l| !l.contains("extra-after-backup"))
            .collect::<Vec<_>>()
            .join("\n"),
        original.trim_end()
    );
    assert!(
        s3.fingerprint(&[&b]).contains("absent"),
        "bucket b was not selected"
    );

    let out = r
        .restore(&m.id, &plan(RestoreOptions::new().items(vec![a.clone()])))
        .await
        .unwrap();
    assert!(out.is_ok(), "{:?}", out.components);
    assert_eq!(s3.fingerprint(&[&a]), original);

    let bad = r
        .restore(
            &m.id,
            &plan(RestoreOptions::new().items(vec!["nope".into()])),
        )
        .await
        .unwrap();
    assert!(bad.components[0]
        .error
        .clone()
        .unwrap()
        .contains("bucket `nope` is not in this backup"));
}

/// Many small objects in one bucket (listing pages, bounded concurrency) round-trip.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_small_objects() {
    let Some(s3) = S3::s3s() else { return };
    let n: usize = std::env::var("AMBER_DR_MINIO_MANY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2500);
    let bucket = unique("many");
    // Filled through the S3 API with boto3 (one process, a put per object).
    s3.tool(&["populate-many", &bucket, &n.to_string()]);
    let original = s3.fingerprint(&[&bucket]);
    let (repo, _dir) = testkit::temp_repo();
    let r = runner(&repo, s3.component("many", &[&bucket]));
    let m = backup(&r).await;
    assert_eq!(stat(&m, "objects"), n as u64);
    s3.tool(&["empty", &bucket]);
    let out = r
        .restore(&m.id, &plan(RestoreOptions::new()))
        .await
        .unwrap();
    assert!(out.is_ok(), "{:?}", out.components);
    assert_eq!(s3.fingerprint(&[&bucket]), original);
}

/// Bad input: a wrong secret key, a configured bucket that does not exist, an endpoint that
/// does not answer — each a clear error naming what and where.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_named() {
    let Some(s3) = S3::s3s() else { return };
    let bucket = unique("bad-input");
    s3.tool(&["empty", &bucket]);
    let mut cfg = s3.config(&[&bucket]);
    cfg.secret_key = "not-the-secret".into();
    let wrong = Minio::new("docs", cfg).unwrap();
    let err = wrong.probe().await.unwrap_err().to_string();
    assert!(err.contains("secret key was rejected"), "{err}");
    assert!(err.contains(&s3.endpoint), "{err}");
    assert!(!err.contains("not-the-secret"), "{err}");

    let (repo, _dir) = testkit::temp_repo();
    let missing = s3.component("docs", &[&bucket, "no-such-bucket-xyz"]);
    let m = runner(&repo, missing)
        .backup(&BackupOptions::default())
        .await
        .unwrap();
    assert!(!m.is_complete());
    let e = m.components["docs"].error.clone().unwrap();
    assert!(
        e.contains("`no-such-bucket-xyz`") && e.contains("does not exist"),
        "{e}"
    );

    let closed = testkit::closed_port();
    let down_url = format!("http://127.0.0.1:{}", closed.port);
    let down = Minio::new("docs", MinioConfig::new(&down_url, "a", "b")).unwrap();
    let e = down.probe().await.unwrap_err().to_string();
    assert!(e.contains(&format!("127.0.0.1:{}", closed.port)), "{e}");

    let p = s3.component("docs", &[&bucket]).probe().await.unwrap();
    assert!(p.reachable);
    assert_eq!(p.details["objects"], 0);
}

/// A body larger than the multipart threshold many times over (100 MiB+) backs up and restores
/// through multipart upload. Size: AMBER_DR_MINIO_BIG_MIB (default 105).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_multipart_object() {
    let Some(s3) = S3::s3s() else { return };
    let mib: usize = std::env::var("AMBER_DR_MINIO_BIG_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(105);
    let bucket = unique("big");
    s3.tool(&[
        "put",
        &bucket,
        "large.bin",
        &(mib * 1024 * 1024 + 3).to_string(),
        "big",
    ]);
    let original = s3.fingerprint(&[&bucket]);
    let (repo, _dir) = testkit::temp_repo();
    let mut cfg = s3.config(&[&bucket]);
    cfg.multipart_threshold_mib = 16;
    cfg.part_size_mib = 8;
    let r = runner(&repo, Minio::new("big", cfg).unwrap());
    let m = backup(&r).await;
    s3.tool(&["put", &bucket, "large.bin", "10", "small"]);
    let out = r
        .restore(&m.id, &plan(RestoreOptions::new()))
        .await
        .unwrap();
    assert!(out.is_ok(), "{:?}", out.components);
    assert_eq!(s3.fingerprint(&[&bucket]), original);
}

/// A TCP proxy in front of the S3 server that goes down for good once `cut_after` bytes of
/// responses have passed: open connections are dropped, new ones refused.
struct Proxy {
    addr: std::net::SocketAddr,
}

async fn proxy(upstream: &str, cut_after: u64) -> Proxy {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let upstream = upstream.trim_start_matches("http://").to_string();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let sent = Arc::new(AtomicU64::new(0));
    let down = Arc::new(AtomicBool::new(false));
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            if down.load(Ordering::SeqCst) {
                drop(client);
                continue;
            }
            let (sent, down, upstream) = (sent.clone(), down.clone(), upstream.clone());
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                    return;
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let up = tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut cr, &mut sw).await;
                });
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    if down.load(Ordering::SeqCst) {
                        break;
                    }
                    let n = match sr.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    if sent.fetch_add(n as u64, Ordering::SeqCst) + n as u64 > cut_after {
                        down.store(true, Ordering::SeqCst);
                        break;
                    }
                    if cw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
                up.abort();
            });
        }
    });
    Proxy { addr }
}

/// The endpoint goes down in the middle of a backup: the backup is not complete, and the next
/// run stores only the bodies the broken run had not stored yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_down_mid_backup_then_resume() {
    let Some(s3) = S3::s3s() else { return };
    let bucket = unique("down");
    s3.tool(&["empty", &bucket]);
    for i in 0..24 {
        s3.tool(&[
            "put",
            &bucket,
            &format!("obj-{i:02}"),
            "200000",
            &i.to_string(),
        ]);
    }
    let (repo, dir) = testkit::temp_repo();
    let p = proxy(&s3.endpoint, 2_000_000).await;
    let mut cfg = s3.config(&[&bucket]);
    cfg.endpoint = format!("http://{}", p.addr);
    cfg.concurrency = 2;
    let m = runner(&repo, Minio::new("docs", cfg).unwrap())
        .backup(&BackupOptions::default())
        .await
        .unwrap();
    assert!(
        !m.is_complete(),
        "a backup through a dead endpoint completed"
    );
    let err = m.components["docs"].error.clone().unwrap();
    assert!(
        err.contains(&p.addr.to_string()),
        "names the endpoint: {err}"
    );
    let stored = blob_files(dir.path()).len();
    assert!(
        stored > 0 && stored < 24,
        "{stored} blobs stored before the cut"
    );

    let r = runner(&repo, s3.component("docs", &[&bucket]));
    let m = backup(&r).await;
    assert_eq!(stat(&m, "objects"), 24);
    assert_eq!(
        stat(&m, "blobs_new"),
        24 - stored as u64,
        "bodies stored by the broken run were stored again"
    );
    assert_eq!(blob_files(dir.path()).len(), 24);
}

//! The runbook's `minio_data.tar.gz` (GNU `tar czf` of MinIO's data volume, from the volume
//! itself and from its parent) restored into `legacy_data_dir` through
//! `Runner::restore_legacy`, checked by serving the restored directory with a real S3 server:
//! s3s-fs keeps objects as plain files in its data directory, as MinIO's single-drive mode
//! does. Also: refused while the endpoint answers, damaged and hostile archives leave the old
//! directory intact, the safety backup (an archive of the data directory) restores it back.
// test-lane: minio (long, CPU-bound S3 tests)
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use amber_dr_core::{
    testkit, Component, RestoreOptions, RestorePlanOptions, Runner, Selection, VerifyLevel,
};
use amber_dr_minio::{Minio, MinioConfig};
use common::S3;

/// An s3s-fs of our own serving `dir` on a free port; killed on drop.
struct S3sFs {
    child: Child,
    s3: S3,
    port: u16,
}

fn s3s_fs_bin() -> PathBuf {
    let cache = std::env::var("AMBER_DR_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/amber-dr"));
    cache.join("s3s-fs/bin/s3s-fs")
}

impl S3sFs {
    /// Serve `dir` like the stack's s3s-fs (its credentials, its boto3): on a port s3s-fs
    /// picks itself (`None`: it binds port 0 and prints the address), or again on the `port`
    /// of an earlier server of this test (the same endpoint after a restart).
    fn start(stack: &S3, dir: &Path, port: Option<u16>) -> S3sFs {
        fs::create_dir_all(dir).unwrap();
        let mut child = Command::new(s3s_fs_bin())
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.unwrap_or(0).to_string(),
            ])
            .args(["--access-key", &stack.access_key])
            .args(["--secret-key", &stack.secret_key])
            .arg(dir)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", s3s_fs_bin().display()));
        // "... server is running at http://127.0.0.1:PORT": the port it bound.
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(|l| l.ok())
            {
                if let Some(addr) = line.split("server is running at http://").nth(1) {
                    let _ = tx.send(addr.trim().to_string());
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("s3s-fs did not say where it listens"));
        let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
        let s3 = S3 {
            endpoint: format!("http://127.0.0.1:{port}"),
            ..stack.clone()
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "s3s-fs did not start on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        S3sFs { child, s3, port }
    }
    fn stop(mut self) {
        self.kill();
    }
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for S3sFs {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Path → content of every file (directories as `path/`).
fn tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            if p.is_dir() {
                out.insert(format!("{rel}/"), Vec::new());
                walk(root, &p, out);
            } else {
                out.insert(rel, fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn tar_czf(out: &Path, cwd: &Path, what: &str) {
    let st = Command::new("tar")
        .arg("czf")
        .arg(out)
        .arg("-C")
        .arg(cwd)
        .arg(what)
        .status()
        .expect("GNU tar");
    assert!(st.success());
}

fn minio(endpoint: &str, stack: &S3, data_dir: Option<&Path>) -> Arc<dyn Component> {
    let mut c = MinioConfig::new(endpoint, &stack.access_key, &stack.secret_key);
    if let Some(d) = data_dir {
        c = c.legacy_data_dir(d);
    }
    Arc::new(Minio::new("minio", c).unwrap())
}

fn plan(dry_run: bool, safety_backup: bool) -> RestorePlanOptions {
    RestorePlanOptions {
        selection: Selection {
            only: vec!["minio".into()],
            skip: vec![],
        },
        options: RestoreOptions::new().dry_run(dry_run),
        safety_backup,
        components: Default::default(),
    }
}

#[tokio::test]
async fn runbook_volume_archive_restores_into_the_stopped_minio_data_dir() {
    let Some(stack) = S3::s3s() else { return };
    let base = tempfile::tempdir().unwrap();
    let (a, b) = ("runbook-photos", "runbook-docs");

    // The runbook's MinIO: a docker volume `amber_minio_data` whose `_data` the server uses.
    let volume = base.path().join("volumes/amber_minio_data/_data");
    let server = S3sFs::start(&stack, &volume, None);
    server.s3.tool(&["populate", a, b]);
    let original = server.s3.fingerprint(&[a, b]);
    assert!(original.contains("big/multipart-6MiB"), "{original}");
    server.stop();

    // Today's MinIO on this host: another data directory with other buckets, at `port`.
    let live = base.path().join("live/minio-data");
    let server = S3sFs::start(&stack, &live, None);
    let port = server.port;
    server
        .s3
        .tool(&["put", "today-only", "kept.bin", "4000", "5"]);
    let today = server.s3.fingerprint(&["today-only"]);
    let endpoint = server.s3.endpoint.clone();

    let runbook = base.path().join("backups/20240101_020000");
    fs::create_dir_all(&runbook).unwrap();
    let archive = runbook.join("minio_data.tar.gz");
    tar_czf(&archive, &volume, ".");
    let (repo, _g) = testkit::temp_repo();
    let runner = Runner::new(repo.clone(), vec![minio(&endpoint, &stack, Some(&live))]);

    // MinIO still answers: the dry run says it must be stopped; the restore is refused before
    // anything changes (no safety backup either).
    let dry = runner
        .restore_legacy(&runbook, &plan(true, true))
        .await
        .unwrap();
    assert!(dry.is_ok(), "{:?}", dry.components);
    let warnings = format!("{:?}", dry.components[0].report);
    assert!(warnings.contains("must be stopped"), "{warnings}");
    let before = tree(&live);
    let err = runner
        .restore_legacy(&runbook, &plan(false, true))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("still answers") && err.contains("stop_during_runbook_restore"),
        "{err}"
    );
    assert_eq!(tree(&live), before, "refused: nothing changed");
    assert!(repo.list().await.unwrap().is_empty(), "no safety backup");

    // MinIO stopped: restored, after a safety backup of the data directory.
    server.stop();
    let out = runner
        .restore_legacy(&runbook, &plan(false, true))
        .await
        .unwrap();
    assert!(out.is_ok(), "{:?}", out.components);
    let safety = out.safety_backup.clone().expect("a safety backup");
    let server = S3sFs::start(&stack, &live, Some(port));
    assert_eq!(
        server.s3.fingerprint(&[a, b]),
        original,
        "every object back"
    );
    assert!(
        server
            .s3
            .fingerprint(&["today-only"])
            .contains("today-only: absent"),
        "the directory was replaced, not merged"
    );
    server.stop();

    // The same content from the runbook's other forms: the volume's parent (`_data/...`), a
    // container's `tar czf ... /data` (`data/...`), a path from `/` (`var/lib/.../_data/...`).
    let restored = tree(&live);
    let data_copy = base.path().join("ctr/data");
    fs::create_dir_all(data_copy.parent().unwrap()).unwrap();
    assert!(Command::new("cp")
        .arg("-a")
        .arg(&volume)
        .arg(&data_copy)
        .status()
        .unwrap()
        .success());
    for (cwd, what) in [
        (volume.parent().unwrap().to_path_buf(), "_data"),
        (base.path().join("ctr"), "data"),
        (base.path().to_path_buf(), "volumes/amber_minio_data/_data"),
    ] {
        tar_czf(&archive, &cwd, what);
        fs::write(live.join("stray"), b"left over").unwrap();
        let out = runner
            .restore_legacy(&runbook, &plan(false, false))
            .await
            .unwrap();
        assert!(out.is_ok(), "{what}: {:?}", out.components);
        assert_eq!(tree(&live), restored, "archive of `{what}`");
    }

    // The safety backup is the data directory as it was (MinIO was stopped): it verifies,
    // and restoring it (MinIO stopped) brings today's buckets back.
    let m = repo.read_manifest(&safety).await.unwrap();
    let rec = &m.components["minio"];
    assert!(rec.artifact("files.tar").is_ok(), "{rec:?}");
    assert!(
        rec.warnings.iter().any(|w| w.contains("data directory")),
        "{rec:?}"
    );
    let v = runner
        .verify(&safety, &Selection::all(), VerifyLevel::Full)
        .await
        .unwrap();
    assert!(v.components["minio"].is_ok(), "{:?}", v.components);
    let back = runner
        .restore(
            &safety,
            &RestorePlanOptions {
                selection: Selection::all(),
                options: RestoreOptions::new(),
                safety_backup: false,
                components: Default::default(),
            },
        )
        .await
        .unwrap();
    assert!(back.is_ok(), "{:?}", back.components);
    let server = S3sFs::start(&stack, &live, Some(port));
    assert_eq!(server.s3.fingerprint(&["today-only"]), today);
    // ... but not while MinIO runs.
    let err = runner
        .restore(
            &safety,
            &RestorePlanOptions {
                selection: Selection::all(),
                options: RestoreOptions::new(),
                safety_backup: false,
                components: Default::default(),
            },
        )
        .await
        .unwrap();
    let msg = format!("{:?}", err.components[0].error);
    assert!(msg.contains("still answers"), "{msg}");
    assert_eq!(server.s3.fingerprint(&["today-only"]), today);
}

#[tokio::test]
async fn damaged_and_hostile_archives_leave_the_data_dir_intact() {
    let Some(stack) = S3::s3s() else { return };
    let base = tempfile::tempdir().unwrap();
    let volume = base.path().join("volume");
    fs::create_dir_all(volume.join("bucket/dir")).unwrap();
    let big: Vec<u8> = (0..3_000_000u64).map(|i| (i * 7919 % 251) as u8).collect();
    fs::write(volume.join("bucket/dir/big.bin"), &big).unwrap();
    fs::write(volume.join("bucket/small.txt"), b"small").unwrap();
    let live = base.path().join("minio-data");
    fs::create_dir_all(live.join("old-bucket")).unwrap();
    fs::write(live.join("old-bucket/keep.txt"), b"the old data").unwrap();
    let before = tree(&live);
    // Nothing listens on the endpoint: MinIO is stopped.
    let closed = amber_dr_core::testkit::closed_port();
    let endpoint = format!("http://127.0.0.1:{}", closed.port);
    let runbook = base.path().join("runbook");
    fs::create_dir_all(&runbook).unwrap();
    let archive = runbook.join("minio_data.tar.gz");
    let (repo, _g) = testkit::temp_repo();
    let runner = Runner::new(repo, vec![minio(&endpoint, &stack, Some(&live))]);
    let leftovers = |dir: &Path| -> Vec<String> {
        fs::read_dir(dir.parent().unwrap())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("amber-dr"))
            .collect()
    };

    tar_czf(&archive, &volume, ".");
    let good = fs::read(&archive).unwrap();
    // Truncated in the middle of the big file.
    fs::write(&archive, &good[..good.len() / 2]).unwrap();
    let out = runner
        .restore_legacy(&runbook, &plan(false, false))
        .await
        .unwrap();
    let err = format!("{:?}", out.components[0].error);
    assert!(!out.is_ok() && err.contains("minio_data.tar.gz"), "{err}");
    assert_eq!(tree(&live), before, "truncated: old directory intact");
    assert!(leftovers(&live).is_empty(), "{:?}", leftovers(&live));
    // Corrupted: bytes flipped in the compressed stream.
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    for x in &mut bad[mid..mid + 64] {
        *x ^= 0x5a;
    }
    fs::write(&archive, &bad).unwrap();
    let out = runner
        .restore_legacy(&runbook, &plan(false, false))
        .await
        .unwrap();
    assert!(!out.is_ok(), "{:?}", out.components);
    assert_eq!(tree(&live), before, "corrupted: old directory intact");
    // Damage that only gzip's CRC (in the 8-byte trailer, after the tar's end) can show: the
    // tar entries decode fine, so the stream must be read to its end.
    let mut bad = good.clone();
    let crc = bad.len() - 8;
    bad[crc] ^= 0xff;
    fs::write(&archive, &bad).unwrap();
    let out = runner
        .restore_legacy(&runbook, &plan(false, false))
        .await
        .unwrap();
    assert!(!out.is_ok(), "bad CRC accepted: {:?}", out.components);
    assert_eq!(tree(&live), before, "bad CRC: old directory intact");

    // Hostile: an entry that climbs out, and one through a symlink.
    let python = std::env::var("AMBER_DR_S3_PYTHON").unwrap_or_else(|_| "python3".into());
    for (name, script) in [
        (
            "dot-dot",
            "t.addfile(tarfile.TarInfo('./ok.txt')); t.addfile(tarfile.TarInfo('./../escaped.txt'))",
        ),
        (
            "symlink",
            "l=tarfile.TarInfo('./link'); l.type=tarfile.SYMTYPE; l.linkname='..'; t.addfile(l); t.addfile(tarfile.TarInfo('./link/escaped.txt'))",
        ),
    ] {
        let st = Command::new(&python)
            .arg("-c")
            .arg(format!(
                "import sys, tarfile\nt = tarfile.open(sys.argv[1], 'w:gz')\n{script}\nt.close()"
            ))
            .arg(&archive)
            .status()
            .unwrap();
        assert!(st.success());
        let out = runner
            .restore_legacy(&runbook, &plan(false, false))
            .await
            .unwrap();
        let err = format!("{:?}", out.components[0].error);
        assert!(!out.is_ok() && err.contains("refused"), "{name}: {err}");
        assert_eq!(tree(&live), before, "{name}: old directory intact");
        assert!(!base.path().join("escaped.txt").exists(), "{name}");
    }

    // The good archive then restores.
    fs::write(&archive, &good).unwrap();
    let out = runner
        .restore_legacy(&runbook, &plan(false, false))
        .await
        .unwrap();
    assert!(out.is_ok(), "{:?}", out.components);
    assert_eq!(tree(&live), tree(&volume));
}

#[tokio::test]
async fn without_legacy_data_dir_the_archive_is_unclaimed_and_the_key_named() {
    let Some(stack) = S3::s3s() else { return };
    let base = tempfile::tempdir().unwrap();
    let runbook = base.path().join("runbook");
    fs::create_dir_all(runbook.join("x")).unwrap();
    tar_czf(&runbook.join("minio_data.tar.gz"), &runbook, "x");
    let (repo, _g) = testkit::temp_repo();
    let runner = Runner::new(repo, vec![minio(&stack.endpoint, &stack, None)]);
    let err = runner
        .restore_legacy(&runbook, &RestorePlanOptions::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no configured component restores `minio_data.tar.gz`")
            && err.contains("legacy_data_dir"),
        "{err}"
    );
    let err = runner
        .restore_legacy(&runbook, &plan(false, false))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`minio` does not restore `minio_data.tar.gz`")
            && err.contains("legacy_data_dir"),
        "{err}"
    );
}

//! Hostile archives are refused on restore and nothing outside the target changes.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::fs;
use std::path::Path;

use amber_dr_core::{
    testkit, Component, ComponentRecord, Error, Progress, ReadContext, RestoreOptions,
};
use amber_dr_files::{Files, FilesConfig};
use tar::{EntryType, Header};
use tokio::io::AsyncWriteExt;

enum E<'a> {
    File(&'a [u8], &'a [u8]),
    Dir(&'a [u8]),
    Symlink(&'a [u8], &'a [u8]),
    HardLink(&'a [u8], &'a [u8]),
}

/// Build a tar whose headers carry exactly these names (no path sanitising).
fn raw_tar(entries: &[E<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = Header::new_gnu();
        let (name, kind, data, link): (&[u8], EntryType, &[u8], &[u8]) = match e {
            E::File(n, d) => (n, EntryType::Regular, d, b""),
            E::Dir(n) => (n, EntryType::Directory, b"", b""),
            E::Symlink(n, t) => (n, EntryType::Symlink, b"", t),
            E::HardLink(n, t) => (n, EntryType::Link, b"", t),
        };
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
        h.set_entry_type(kind);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap()
}

async fn restore_raw(tar: Vec<u8>, target: &Path) -> amber_dr_core::Result<()> {
    let (repo, _guard) = testkit::temp_repo();
    let mut w = repo
        .create_artifact("20260101_000000", "uploads", "files.tar", Progress::none())
        .await
        .unwrap();
    w.write_all(&tar).await.unwrap();
    let art = w.finish().await.unwrap();
    let mut rec = ComponentRecord::new("files", "uploads");
    rec.artifacts.push(art);
    rec.details = serde_json::json!({
        "absent": false, "source": "x", "root_mode": 493,
        "root_mtime": {"secs": 0, "nanos": 0}, "fingerprint": "",
        "stats": {"files": 0, "directories": 0, "symlinks": 0, "bytes": 0}
    });
    let files = Files::new("uploads", FilesConfig::new(target));
    let cx = ReadContext::new(repo.clone(), "20260101_000000", Progress::none());
    files
        .restore(&cx, &rec, &RestoreOptions::default())
        .await
        .map(|_| ())
}

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn hostile_entries_are_refused_and_nothing_outside_changes() {
    let base = tempfile::tempdir().unwrap();
    let outside = base.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("keep.txt"), b"precious").unwrap();
    let target = base.path().join("work/uploads");
    common::populate(&target, 9);
    let before = common::fingerprint(&target);
    let outside_abs = format!("{}/abs.txt", outside.display());
    let outside_link = outside.display().to_string();

    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("dot-dot", raw_tar(&[E::File(b"../escape.txt", b"x")])),
        (
            "dot-dot nested",
            raw_tar(&[E::Dir(b"a/"), E::File(b"a/../../escape.txt", b"x")]),
        ),
        (
            "absolute",
            raw_tar(&[E::File(outside_abs.as_bytes(), b"x")]),
        ),
        (
            "write through symlink",
            raw_tar(&[
                E::Symlink(b"link", outside_link.as_bytes()),
                E::File(b"link/pwned.txt", b"x"),
            ]),
        ),
        (
            "write through symlink to parent",
            raw_tar(&[E::Symlink(b"up", b".."), E::File(b"up/escape.txt", b"x")]),
        ),
        (
            "hard link outside",
            raw_tar(&[E::HardLink(b"h", b"../outside/keep.txt")]),
        ),
        (
            "directory over symlink",
            raw_tar(&[E::Symlink(b"d", outside_link.as_bytes()), E::Dir(b"d/sub/")]),
        ),
    ];
    for (what, tar) in cases {
        let err = restore_raw(tar, &target).await.expect_err(what);
        assert!(
            matches!(err, Error::Unsafe { .. }),
            "{what}: expected a refusal, got {err}"
        );
        assert!(
            err.to_string().contains("entry"),
            "{what}: message names the entry: {err}"
        );
        assert_eq!(
            listing(&outside),
            vec!["keep.txt".to_string()],
            "{what}: outside changed"
        );
        assert_eq!(fs::read(outside.join("keep.txt")).unwrap(), b"precious");
        assert!(!base.path().join("work/escape.txt").exists(), "{what}");
        assert!(!base.path().join("escape.txt").exists(), "{what}");
        assert_eq!(
            common::fingerprint(&target),
            before,
            "{what}: target changed"
        );
        assert_eq!(
            listing(&base.path().join("work")),
            vec!["uploads".to_string()],
            "{what}: staging left behind"
        );
    }

    // A legitimate foreign archive (no parent entries, no PAX) still restores.
    restore_raw(raw_tar(&[E::File(b"a/b/c.txt", b"hello")]), &target)
        .await
        .expect_err("fingerprint of an empty record cannot match");
    assert_eq!(
        common::fingerprint(&target),
        before,
        "a failed compare must leave the target"
    );
    common::unlock(base.path());
}

#[tokio::test]
async fn corrupt_and_truncated_streams_leave_target_intact() {
    let base = tempfile::tempdir().unwrap();
    let target = base.path().join("uploads");
    common::populate(&target, 3);
    let before = common::fingerprint(&target);
    let mut tar = raw_tar(&[E::File(b"a.txt", &[7u8; 10_000])]);
    tar.truncate(1000);
    let err = restore_raw(tar, &target).await.expect_err("truncated tar");
    assert!(err.to_string().contains("files.tar"), "{err}");
    assert_eq!(common::fingerprint(&target), before);
    common::unlock(base.path());
}

#[tokio::test]
async fn leftovers_of_an_interrupted_restore_are_handled() {
    let base = tempfile::tempdir().unwrap();
    let target = base.path().join("uploads");
    common::populate(&target, 5);
    // A dead restore's staging directory, and a directory an interrupted swap set aside.
    let stale = base.path().join(".uploads.amber-dr-staging-999999999");
    fs::create_dir_all(stale.join("partial")).unwrap();
    let aside = base.path().join(".uploads.amber-dr-old-999999998");
    fs::create_dir_all(&aside).unwrap();
    fs::write(aside.join("only-copy.txt"), b"keep me").unwrap();

    let (repo, _guard) = testkit::temp_repo();
    let files: std::sync::Arc<dyn Component> =
        std::sync::Arc::new(Files::new("uploads", FilesConfig::new(&target)));
    let runner = amber_dr_core::Runner::new(repo, vec![files]);
    let m = runner.backup(&Default::default()).await.unwrap();
    let out = runner
        .restore(&m.id, &amber_dr_core::RestorePlanOptions::default())
        .await
        .unwrap();
    assert!(out.is_ok(), "{:?}", out.components);
    assert!(
        !stale.exists(),
        "a dead restore's staging directory is removed"
    );
    assert_eq!(
        fs::read(aside.join("only-copy.txt")).unwrap(),
        b"keep me",
        "set-aside data is never deleted"
    );
    let warnings = &out.components[0].report.as_ref().unwrap().warnings;
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("amber-dr-old-999999998")),
        "{warnings:?}"
    );
    common::unlock(base.path());
}

#[tokio::test]
async fn hostile_runbook_archive_is_refused() {
    use std::io::Write;
    let base = tempfile::tempdir().unwrap();
    let target = base.path().join("uploads");
    common::populate(&target, 4);
    let before = common::fingerprint(&target);
    let runbook = base.path().join("runbook");
    fs::create_dir_all(&runbook).unwrap();
    let tar = raw_tar(&[
        E::Dir(b"uploads/"),
        E::File(b"uploads/ok.txt", b"fine"),
        E::File(b"uploads/../../escaped.txt", b"evil"),
    ]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    fs::write(runbook.join("uploads.tar.gz"), gz.finish().unwrap()).unwrap();
    let (repo, _guard) = testkit::temp_repo();
    let files: std::sync::Arc<dyn Component> =
        std::sync::Arc::new(Files::new("uploads", FilesConfig::new(&target)));
    let runner = amber_dr_core::Runner::new(repo, vec![files]);
    let mut plan = amber_dr_core::RestorePlanOptions::default();
    plan.selection.only = vec!["uploads".into()];
    let res = runner.restore_legacy(&runbook, &plan).await;
    let err = match res {
        Err(e) => e.to_string(),
        Ok(o) => o.components[0].error.clone().expect("refused"),
    };
    assert!(err.contains(".."), "{err}");
    assert!(!base.path().join("escaped.txt").exists());
    assert_eq!(common::fingerprint(&target), before);
    common::unlock(base.path());
}

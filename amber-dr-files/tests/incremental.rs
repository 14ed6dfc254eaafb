//! Issue 17: the chunked, content-addressed format. Three incremental backups after small
//! changes store only what changed (repository growth measured on disk) and each restores
//! byte-exact (independent comparison: bytes, modes, owners, ns mtimes by std::fs); `prune`
//! frees exactly the blobs only the pruned backups used and the kept ones still restore; a
//! backup in the old tar format still restores and verifies.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Arc;

use amber_dr_core::archive::Directory;
use amber_dr_core::testkit;
use amber_dr_core::{
    BackupOptions, Component, Manifest, Progress, ReadContext, RestoreOptions, RestorePlanOptions,
    RetentionPolicy, Runner, Selection, SnapshotContext, SnapshotPurpose, VerifyLevel,
};
use amber_dr_files::{Files, FilesConfig, FilesFormat};

fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s as u8
        })
        .collect()
}

fn write(p: &Path, data: &[u8]) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, data).unwrap();
}

/// 400 small files in 20 directories, 3 large ones of 6 MiB (incompressible), the awkward
/// cases of the common fixture.
fn populate(dir: &Path) {
    common::populate(dir, 5);
    common::unlock(dir);
    for n in 0..400u64 {
        write(
            &dir.join(format!("small/{:02}/{n:04}.dat", n % 20)),
            &noise(500 + (n as usize * 97) % 20_000, n),
        );
    }
    for n in 0..3u64 {
        write(
            &dir.join(format!("large/{n}.bin")),
            &noise(6 << 20, 1000 + n),
        );
    }
}

/// Stored blobs: (count, bytes) under `blobs/` of a local repository.
fn blobs(repo: &Path) -> (u64, u64) {
    fn walk(p: &Path, acc: &mut (u64, u64)) {
        for e in fs::read_dir(p).into_iter().flatten().flatten() {
            let m = e.metadata().unwrap();
            if m.is_dir() {
                walk(&e.path(), acc);
            } else {
                acc.0 += 1;
                acc.1 += m.len();
            }
        }
    }
    let mut acc = (0, 0);
    walk(&repo.join("blobs"), &mut acc);
    acc
}

fn stat(m: &Manifest, key: &str) -> u64 {
    m.components["uploads"].stats[key].as_u64().unwrap()
}

async fn backup(runner: &Runner) -> Manifest {
    let m = runner.backup(&BackupOptions::default()).await.unwrap();
    assert!(m.is_complete(), "{:?}", m.components);
    assert!(
        m.components["uploads"].warnings.is_empty(),
        "{:?}",
        m.components["uploads"].warnings
    );
    m
}

async fn restore_and_compare(runner: &Runner, dir: &Path, id: &str, want: &str) {
    let v = runner
        .verify(id, &Selection::all(), VerifyLevel::Full)
        .await
        .unwrap();
    assert!(v.is_ok(), "{:?}", v.components);
    common::unlock(dir);
    common::destroy(dir);
    let out = runner
        .restore(id, &RestorePlanOptions::default())
        .await
        .unwrap();
    assert!(out.is_ok(), "{:?}", out.components);
    assert!(
        common::fingerprint(dir) == want,
        "backup {id} restored a different tree"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_backups_store_only_what_changed_and_each_restores_exactly() {
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("uploads");
    populate(&dir);
    let (repo, repo_dir) = testkit::temp_repo();
    let c: Arc<dyn Component> = Arc::new(Files::new(
        "uploads",
        FilesConfig::new(&dir).format(FilesFormat::Chunked),
    ));
    let runner = Runner::new(repo, vec![c]);

    let m1 = backup(&runner).await;
    let fp1 = common::fingerprint(&dir);
    let (n1, b1) = blobs(repo_dir.path());
    let files = stat(&m1, "files");
    assert_eq!(stat(&m1, "files_unchanged"), 0);
    // 400 small files in a handful of packs, not 400 objects.
    assert!(n1 < 60, "{n1} blobs for {files} files");

    // ~1%: three small files rewritten, 100 bytes edited in the middle of a large one.
    common::unlock(&dir);
    for n in [3u64, 150, 377] {
        write(
            &dir.join(format!("small/{:02}/{n:04}.dat", n % 20)),
            &noise(700, 5000 + n),
        );
    }
    let mut f = fs::OpenOptions::new()
        .write(true)
        .open(dir.join("large/1.bin"))
        .unwrap();
    f.seek(SeekFrom::Start(3 << 20)).unwrap();
    f.write_all(&[0xAB; 100]).unwrap();
    drop(f);
    let m2 = backup(&runner).await;
    let fp2 = common::fingerprint(&dir);
    let (n2, b2) = blobs(repo_dir.path());
    eprintln!(
        "first backup: {n1} blobs, {b1} bytes; second: +{} blobs, +{} bytes",
        n2 - n1,
        b2 - b1
    );
    assert_eq!(
        stat(&m2, "files_read"),
        4,
        "only the changed files are read"
    );
    assert_eq!(stat(&m2, "files_unchanged"), files - 4);
    assert!(
        b2 - b1 < b1 / 10,
        "the second backup stored {} bytes in {} blobs (first: {b1})",
        b2 - b1,
        n2 - n1
    );

    // A file removed, one added, one chmod'ed (re-read, nothing new stored for it).
    fs::remove_file(dir.join("small/07/0007.dat")).unwrap();
    write(&dir.join("small/new/added.dat"), &noise(3000, 77));
    fs::set_permissions(
        dir.join("small/09/0009.dat"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let m3 = backup(&runner).await;
    let fp3 = common::fingerprint(&dir);
    let (_, b3) = blobs(repo_dir.path());
    assert_eq!(stat(&m3, "files_read"), 2);
    assert!(b3 - b2 < 64 * 1024, "third backup stored {} bytes", b3 - b2);
    assert!(fp1 != fp2 && fp2 != fp3);

    for (m, fp) in [(&m1, &fp1), (&m2, &fp2), (&m3, &fp3)] {
        restore_and_compare(&runner, &dir, &m.id, fp).await;
    }
}

/// Blob hashes referenced by the `.blobrefs` of the backups `ids` (read with the API prune uses).
async fn referenced(repo: &amber_dr_core::Repository, ids: &[String]) -> HashSet<String> {
    repo.referenced_blobs(ids).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_frees_only_what_pruned_backups_used() {
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("uploads");
    populate(&dir);
    let (repo, repo_dir) = testkit::temp_repo();
    let c: Arc<dyn Component> = Arc::new(Files::new(
        "uploads",
        FilesConfig::new(&dir).format(FilesFormat::Chunked),
    ));
    let runner = Runner::new(repo.clone(), vec![c]);
    let m1 = backup(&runner).await;
    // Only the first backup has large/0.bin and the first version of the small files of
    // directory 00.
    common::unlock(&dir);
    fs::remove_file(dir.join("large/0.bin")).unwrap();
    for n in (0..400u64).filter(|n| n % 20 == 0) {
        write(
            &dir.join(format!("small/00/{n:04}.dat")),
            &noise(900, 9000 + n),
        );
    }
    let m2 = backup(&runner).await;
    let fp2 = common::fingerprint(&dir);
    write(&dir.join("large/3.bin"), &noise(2 << 20, 31));
    let m3 = backup(&runner).await;
    let fp3 = common::fingerprint(&dir);

    let first = referenced(&repo, std::slice::from_ref(&m1.id)).await;
    let kept = referenced(&repo, &[m2.id.clone(), m3.id.clone()]).await;
    let only_first: HashSet<&String> = first.difference(&kept).collect();
    assert!(
        only_first.len() >= 3,
        "large/0.bin's chunks: {only_first:?}"
    );
    let (before, _) = blobs(repo_dir.path());

    let out = runner
        .prune(
            &RetentionPolicy {
                keep_last: 2,
                ..Default::default()
            },
            false,
        )
        .await
        .unwrap();
    assert_eq!(out.deleted, vec![m1.id.clone()]);
    assert_eq!(out.blobs_deleted, only_first.len() as u64);
    let (after, _) = blobs(repo_dir.path());
    assert_eq!(before - after, only_first.len() as u64);
    for h in &kept {
        assert!(repo.has_blob(h).await.unwrap(), "kept blob {h} deleted");
    }
    for h in &only_first {
        assert!(!repo.has_blob(h).await.unwrap(), "blob {h} not freed");
    }
    restore_and_compare(&runner, &dir, &m2.id, &fp2).await;
    restore_and_compare(&runner, &dir, &m3.id, &fp3).await;
}

/// A backup written in the tar format (before the chunked one) restores and verifies through
/// the driver, and a chunked backup taken after it reads every file (no chunked index to
/// compare with).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tar_format_backup_still_restores() {
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("uploads");
    common::populate(&dir, 2);
    let want = common::fingerprint(&dir);
    let (repo, _g) = testkit::temp_repo();
    let id = "20250101_000000";
    let tar_dir = Directory::new(amber_dr_files::KIND, "uploads", &dir);
    let cx = SnapshotContext::new(
        repo.clone(),
        id,
        "uploads",
        Progress::none(),
        SnapshotPurpose::Backup,
    );
    let rec = tar_dir.snapshot(&cx).await.unwrap();
    assert!(rec.artifact("files.tar").is_ok());
    let files = Files::new(
        "uploads",
        FilesConfig::new(&dir).format(FilesFormat::Chunked),
    );
    let rcx = ReadContext::new(repo.clone(), id, Progress::none());
    let v = files.decode(&rcx, &rec).await.unwrap();
    assert!(v.is_ok(), "{v:?}");
    common::destroy(&dir);
    files
        .restore(&rcx, &rec, &RestoreOptions::default())
        .await
        .unwrap();
    assert!(
        common::fingerprint(&dir) == want,
        "tar backup restored a different tree"
    );
}

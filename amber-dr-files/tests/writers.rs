//! Issue 18: an application writes into the directory while it is backed up — files created
//! and deleted at the top and in subdirectories, directories made and removed, files grown,
//! shrunk and replaced. The backup is complete, verifies (a file created in the top directory
//! changes the root's mtime: the record keeps the one the fingerprint was made with), and
//! restores into a tree whose every file holds what the application wrote (a prefix of its
//! pattern; a file that shrank while read ends with zeros, as its warning says).
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use amber_dr_core::testkit::{self, Writer};
use amber_dr_core::{async_trait, Result};

/// Byte `k` of every file the application writes.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|k| (k % 251) as u8).collect()
}

struct App {
    dir: PathBuf,
}

fn write_file(p: &Path, data: &[u8]) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::File::create(p).unwrap().write_all(data).unwrap();
}

/// Ops per round of the application.
const OPS: u64 = 8;

/// Op `k` of round `i` of the application's changes.
fn op(dir: &Path, i: u64, k: u64) {
    let d = |rel: String| dir.join(rel);
    match k {
        // Top level: new files, old ones deleted.
        0 => write_file(
            &d(format!("live-{i}.txt")),
            &pattern(100 + i as usize % 900),
        ),
        1 => {
            let _ = fs::remove_file(d(format!("live-{}.txt", i.wrapping_sub(4))));
        }
        // Subdirectories: files and whole directories come and go.
        2 => {
            write_file(
                &d(format!("app/sub-{}/f-{i}.bin", i % 5)),
                &pattern(5_000 + (i as usize * 37) % 20_000),
            );
            let _ = fs::remove_file(d(format!("app/sub-{}/f-{}.bin", i % 5, i.wrapping_sub(10))));
        }
        3 => {
            write_file(&d(format!("app/tmp-{i}/deeper/x.bin")), &pattern(3_000));
            let _ = fs::remove_dir_all(d(format!("app/tmp-{}", i.wrapping_sub(2))));
        }
        // Grows by appending the pattern's continuation.
        4 => {
            let grow = d("grow.bin".into());
            let len = fs::metadata(&grow).map(|m| m.len() as usize).unwrap_or(0);
            let more: Vec<u8> = (len..len + 50_000).map(|k| (k % 251) as u8).collect();
            fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&grow)
                .unwrap()
                .write_all(&more)
                .unwrap();
        }
        // Shrinks: rewritten long, then cut short.
        5 => write_file(&d("shrink.bin".into()), &pattern(400_000)),
        6 => fs::OpenOptions::new()
            .write(true)
            .open(d("shrink.bin".into()))
            .unwrap()
            .set_len(1_000 + (i * 7919) % 100_000)
            .unwrap(),
        // Replaced atomically (rename over it).
        _ => {
            let tmp = d(".replace.tmp".into());
            write_file(&tmp, &pattern(10_000 + i as usize % 1_000));
            fs::rename(&tmp, d("replaced.bin".into())).unwrap();
        }
    }
}

/// Files the application keeps (so that the backup takes a while): 300 of 40 KiB.
fn bulk(dir: &Path) {
    for n in 0..300 {
        write_file(
            &dir.join(format!("app/bulk/{:02}/{n:04}.bin", n % 17)),
            &pattern(40_000 + n),
        );
    }
}

fn check_tree(root: &Path, rel: &Path, files: &mut u64) -> std::result::Result<(), String> {
    for e in fs::read_dir(root.join(rel)).map_err(|e| e.to_string())? {
        let e = e.map_err(|e| e.to_string())?;
        let name = e.file_name().to_string_lossy().into_owned();
        let rel2 = rel.join(&name);
        let meta = fs::symlink_metadata(e.path()).map_err(|e| e.to_string())?;
        if meta.is_dir() {
            check_tree(root, &rel2, files)?;
            continue;
        }
        let top = rel.as_os_str().is_empty();
        let written = (top && (name.starts_with("live-") || name.ends_with(".bin")))
            || rel2.starts_with("app");
        if !written {
            continue; // the fixture's own data, checked by the restore's fingerprint
        }
        let data = fs::read(e.path()).map_err(|e| e.to_string())?;
        let want = pattern(data.len());
        if name == "shrink.bin" {
            // Stored with the size it had when opened: the pattern, then zeros if it shrank.
            let end = data
                .iter()
                .zip(&want)
                .position(|(a, b)| a != b)
                .unwrap_or(data.len());
            if data[end..].iter().any(|b| *b != 0) {
                return Err(format!(
                    "{} holds bytes the application never wrote",
                    rel2.display()
                ));
            }
        } else if data != want {
            return Err(format!(
                "{} ({} bytes) is not what the application wrote",
                rel2.display(),
                data.len()
            ));
        }
        *files += 1;
    }
    Ok(())
}

#[async_trait]
impl Writer for App {
    async fn write_until(&self, _: usize, stop: &AtomicBool, changes: &AtomicU64) -> Result<()> {
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || bulk(&dir))
            .await
            .map_err(|e| amber_dr_core::Error::Other(format!("writer: {e}")))?;
        let mut i = 0u64;
        while !stop.load(Ordering::SeqCst) {
            for k in 0..OPS {
                let dir = self.dir.clone();
                tokio::task::spawn_blocking(move || op(&dir, i, k))
                    .await
                    .map_err(|e| amber_dr_core::Error::Other(format!("writer: {e}")))?;
                changes.fetch_add(1, Ordering::SeqCst);
            }
            i += 1;
        }
        Ok(())
    }

    async fn check_restored(&self, _: usize) -> Result<()> {
        let mut files = 0;
        check_tree(&self.dir, Path::new(""), &mut files).map_err(amber_dr_core::Error::Other)?;
        if files == 0 {
            return Err(amber_dr_core::Error::Other(
                "none of the application's files came back".into(),
            ));
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_the_application_writes_restores() {
    let fx = common::Dirs::new();
    let app = App { dir: fx.dir(0) };
    for round in 0..5 {
        let (repo, _guard) = testkit::temp_repo();
        match testkit::writers_during_backup(&fx, &app, &repo).await {
            Ok(testkit::OnlineOutcome::Restored {
                changes_during_backup,
            }) => eprintln!(
                "round {round}: restored; {changes_during_backup} changes during the backup"
            ),
            Ok(other) => panic!("round {round}: the online backup failed: {other:?}"),
            Err(e) => panic!("round {round}: {e}"),
        }
    }
}

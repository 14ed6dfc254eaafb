//! Runs the embedding example (`examples/embed.rs`): a program with core + the files driver
//! and no CLI code backs up a directory and restores it into another directory; Ctrl-C stops
//! it cleanly. The restored tree is compared with the source through std::fs, not amber-dr.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The example program, built by `cargo test` beside the test binaries.
fn example_binary() -> PathBuf {
    let deps = std::env::current_exe().unwrap();
    let debug = deps.parent().unwrap().parent().unwrap();
    let bin = debug.join("examples").join("embed");
    assert!(
        bin.exists(),
        "{} not built (cargo test builds the examples)",
        bin.display()
    );
    bin
}

/// Every file under `root`: relative path → content (directories as empty markers).
fn tree(root: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            if p.is_dir() {
                out.insert(rel, None);
                stack.push(p);
            } else {
                out.insert(rel, Some(std::fs::read(&p).unwrap()));
            }
        }
    }
    out
}

/// Pseudo-random, incompressible bytes.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[test]
fn the_example_restores_into_another_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("uploads");
    std::fs::create_dir_all(src.join("2026/12")).unwrap();
    std::fs::write(src.join("a.txt"), b"hello\n").unwrap();
    std::fs::write(src.join("2026/12/doc.pdf"), noise(300_000, 7)).unwrap();
    std::fs::write(src.join("empty"), b"").unwrap();
    std::fs::create_dir_all(src.join("empty-dir")).unwrap();
    let before = tree(&src);
    let repo = tmp.path().join("repo");
    let target = tmp.path().join("restored");

    let out = Command::new(example_binary())
        .args([&src, &repo, &target])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("verify: ok"), "{stdout}");
    assert_eq!(tree(&target), before, "the restored copy differs");
    assert_eq!(tree(&src), before, "the source changed");
    assert!(!repo.join("locks/repository.lock").exists());
}

#[test]
fn ctrl_c_stops_the_example_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("uploads");
    std::fs::create_dir_all(&src).unwrap();
    // Enough incompressible data that the backup is still running when the signal comes.
    for i in 0..8 {
        std::fs::write(src.join(format!("f{i}")), noise(32 << 20, i + 1)).unwrap();
    }
    let repo = tmp.path().join("repo");
    let target = tmp.path().join("restored");
    let mut child = Command::new(example_binary())
        .args([&src, &repo, &target])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let lock = repo.join("locks/repository.lock");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !lock.exists() {
        assert!(Instant::now() < deadline, "the backup never took the lock");
        assert!(
            child.try_wait().unwrap().is_none(),
            "exited before the lock"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(!lock.exists(), "the repository lock was left behind");
    assert!(!target.exists(), "an interrupted backup restored something");
    // No backup was completed: no manifest anywhere in the repository.
    let manifests = std::fs::read_dir(&repo)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("manifest.json").exists())
        .count();
    assert_eq!(manifests, 0);
}

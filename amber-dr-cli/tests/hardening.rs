//! Issue 18 through the real binary (local repository, `files` driver): no silent fallback
//! to an older backup, paths that are checked, and the smaller promises (incomplete backups
//! named as such, plan refusals that are usage errors, the rollback hint, prune's dry run
//! under a lock, Ctrl-C cleaning up, damage found before the safety backup).
#![allow(missing_docs, clippy::unwrap_used)]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_amber-dr");

const CONFIG: &str = "[repository]\nurl = \"./repo\"\n\n[components.uploads]\nkind = \"files\"\npath = \"./uploads\"\n";

struct Site {
    dir: TempDir,
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn both(&self) -> String {
        format!("--- stdout\n{}--- stderr\n{}", self.stdout, self.stderr)
    }
}

impl Site {
    fn new() -> Self {
        let site = Self::with_config(CONFIG);
        fs::create_dir_all(site.uploads().join("sub")).unwrap();
        fs::write(site.uploads().join("a.txt"), "hello\n").unwrap();
        fs::write(site.uploads().join("sub/b.txt"), "b".repeat(3000)).unwrap();
        site
    }

    fn with_config(config: &str) -> Self {
        let site = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        fs::write(site.path("amber-dr.toml"), config).unwrap();
        site
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn uploads(&self) -> PathBuf {
        self.path("uploads")
    }

    fn repo(&self) -> PathBuf {
        self.path("repo")
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args)
            .current_dir(self.dir.path())
            .env_remove("AMBER_DR_CONFIG")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    fn expect_env(&self, code: i32, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut c = self.cmd(args);
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        let r = Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        assert_eq!(r.code, code, "amber-dr {args:?}\n{}", r.both());
        r
    }

    fn expect(&self, code: i32, args: &[&str]) -> Run {
        self.expect_env(code, args, &[])
    }

    fn backup(&self) -> String {
        let r = self.expect(0, &["backup"]);
        let id = r
            .stdout
            .lines()
            .last()
            .unwrap_or_default()
            .trim()
            .to_string();
        assert!(is_id(&id), "{}", r.both());
        // Ids have a resolution of one second.
        std::thread::sleep(Duration::from_millis(1100));
        id
    }

    fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = fs::read_dir(self.repo())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| is_id(n))
            .collect();
        ids.sort();
        ids
    }
}

fn is_id(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 15 && b[8] == b'_' && b[..8].iter().all(u8::is_ascii_digit)
}

/// The names of the entries of `dir` that contain `part`.
fn names_containing(dir: &Path, part: &str) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(part))
        .collect()
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn an_unreadable_newest_manifest_is_never_skipped_for_an_older_backup() {
    let site = Site::new();
    let old = site.backup();
    let new = site.backup();
    fs::write(site.repo().join(&new).join("manifest.json"), "{ not json").unwrap();
    for args in [
        &["verify", "latest"][..],
        &["show", "latest"],
        &["restore", "latest", "--dry-run"],
        &["restore", "latest", "--yes"],
    ] {
        let r = site.expect(3, args);
        assert!(
            r.stderr.contains(&new),
            "{args:?} does not name {new}:\n{}",
            r.both()
        );
        assert!(
            !r.stdout.contains(&old),
            "{args:?} used {old}:\n{}",
            r.both()
        );
    }
    let r = site.expect(3, &["--json", "verify", "latest"]);
    assert!(r.stdout.contains(&new), "{}", r.both());
    // An explicit older id still works.
    site.expect(0, &["verify", &old]);
    site.expect(0, &["restore", &old, "--dry-run"]);
}

#[test]
fn an_incomplete_backup_is_called_incomplete_by_verify_show_and_restore() {
    let site = Site::new();
    site.backup();
    let id = "20990101_000000";
    fs::create_dir_all(site.repo().join(id).join("uploads")).unwrap();
    for args in [
        &["verify", id][..],
        &["verify", id, "--quick"],
        &["show", id],
        &["restore", id, "--dry-run"],
    ] {
        let r = site.expect(1, args);
        assert!(r.stderr.contains("incomplete"), "{args:?}:\n{}", r.both());
        assert!(!r.stderr.contains("not found"), "{args:?}:\n{}", r.both());
    }
    // `latest` passes over a backup that has no manifest (interrupted or running).
    site.expect(0, &["verify", "latest"]);
    let r = site.expect(1, &["verify", "20990101_000001"]);
    assert!(r.stderr.contains("not found"), "{}", r.both());
}

#[test]
fn empty_paths_are_config_errors() {
    for (path, env) in [("\"\"", ""), ("\"   \"", ""), ("\"${UPLOADS_DIR}\"", "")] {
        let config = format!("[repository]\nurl = \"./repo\"\n\n[components.uploads]\nkind = \"files\"\npath = {path}\n");
        let site = Site::with_config(&config);
        for args in [&["backup"][..], &["doctor"], &["list"]] {
            let r = site.expect_env(2, args, &[("UPLOADS_DIR", env)]);
            assert!(r.stderr.contains("components.uploads.path"), "{}", r.both());
            assert!(r.stderr.contains("empty"), "{}", r.both());
        }
        assert!(!site.repo().exists() || site.ids().is_empty());
    }
    let site = Site::with_config("[repository]\nurl = \"${REPO}\"\n");
    let r = site.expect_env(2, &["list"], &[("REPO", " ")]);
    assert!(r.stderr.contains("repository.url"), "{}", r.both());
}

#[test]
fn restore_targets_are_checked_and_dry_run_refuses_alike() {
    let site = Site::new();
    site.backup();
    let unrelated = site.path("unrelated");
    fs::create_dir_all(&unrelated).unwrap();
    fs::write(unrelated.join("precious.txt"), "keep me").unwrap();
    let link = site.path("link");
    std::os::unix::fs::symlink(&unrelated, &link).unwrap();
    let cases: Vec<(String, &str)> = vec![
        ("/etc".into(), "system directory"),
        ("/".into(), "system directory"),
        ("/usr".into(), "system directory"),
        (link.display().to_string(), "symbolic link"),
        (unrelated.display().to_string(), "not empty"),
        (site.dir.path().display().to_string(), "backup repository"),
    ];
    for (target, why) in &cases {
        let t = format!("uploads={target}");
        for extra in [&["--dry-run"][..], &["--yes"]] {
            let mut args = vec!["restore", "latest", "--target", &t];
            args.extend_from_slice(extra);
            let r = site.expect(2, &args);
            assert!(
                r.both().contains(why),
                "{args:?} should say {why}:\n{}",
                r.both()
            );
        }
    }
    // The config file's directory (the repository elsewhere).
    fs::create_dir_all(site.path("conf")).unwrap();
    fs::write(site.path("conf/a.toml"), CONFIG.replace("./", "../")).unwrap();
    fs::write(site.path("conf/keep.txt"), "config dir").unwrap();
    let t = format!("uploads={}", site.path("conf").display());
    for extra in ["--dry-run", "--yes"] {
        let args = [
            "--config",
            "conf/a.toml",
            "restore",
            "latest",
            "--target",
            &t,
            "--force",
            extra,
        ];
        let r = site.expect(2, &args);
        assert!(r.both().contains("config file"), "{}", r.both());
    }
    assert!(site.path("conf/keep.txt").exists());
    assert_eq!(
        fs::read_to_string(unrelated.join("precious.txt")).unwrap(),
        "keep me"
    );
    assert!(fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    // --force replaces a non-empty directory; a new directory needs nothing.
    let t = format!("uploads={}", unrelated.display());
    site.expect(
        0,
        &["restore", "latest", "--target", &t, "--yes", "--force"],
    );
    assert!(unrelated.join("a.txt").exists() && !unrelated.join("precious.txt").exists());
    let t = format!("uploads={}", site.path("fresh").display());
    site.expect(0, &["restore", "latest", "--target", &t, "--yes"]);
    assert_eq!(
        fs::read_to_string(site.path("fresh/a.txt")).unwrap(),
        "hello\n"
    );
}

#[test]
fn no_components_does_not_blame_only_or_skip() {
    let site = Site::with_config("[repository]\nurl = \"./repo\"\n");
    let r = site.expect(2, &["backup"]);
    assert!(!r.stderr.contains("--only"), "{}", r.both());
    assert!(r.stderr.contains("[components"), "{}", r.both());
}

#[test]
fn the_rollback_hint_names_the_config_and_works_from_elsewhere() {
    let site = Site::new();
    site.backup();
    fs::write(site.uploads().join("a.txt"), "changed\n").unwrap();
    let r = site.expect(0, &["restore", "latest", "--yes"]);
    let hint = r
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("to roll back: "))
        .unwrap_or_else(|| panic!("no rollback hint:\n{}", r.both()))
        .to_string();
    let config = site.path("amber-dr.toml").display().to_string();
    assert!(hint.contains(&format!("--config {config}")), "{hint}");
    // Run it from another directory: it restores the safety backup ("changed").
    let args: Vec<&str> = hint.split_whitespace().skip(1).collect();
    let out = Command::new(BIN)
        .args(&args)
        .current_dir("/")
        .env_remove("AMBER_DR_CONFIG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        fs::read_to_string(site.uploads().join("a.txt")).unwrap(),
        "changed\n"
    );
}

#[test]
fn prune_dry_run_respects_a_held_lock() {
    let site = Site::new();
    site.backup();
    site.backup();
    // A backup in progress: its directory without a manifest, and its live process's lock.
    let running = "20990101_000000";
    fs::create_dir_all(site.repo().join(running).join("uploads")).unwrap();
    let mut sleeper = Command::new("sleep").arg("30").spawn().unwrap();
    let host = fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let lock = serde_json::json!({
        "host": host.trim(), "pid": sleeper.id(), "operation": "backup",
        "since": "2026-01-01T00:00:00Z", "token": "held-by-test",
    });
    fs::create_dir_all(site.repo().join("locks")).unwrap();
    fs::write(site.repo().join("locks/repository.lock"), lock.to_string()).unwrap();
    let r = site.expect(1, &["prune", "--keep-last", "1", "--dry-run"]);
    assert!(r.stderr.contains("locked"), "{}", r.both());
    assert!(!r.stdout.contains(running), "{}", r.both());
    let _ = sleeper.kill();
    let _ = sleeper.wait();
}

#[test]
fn damage_is_found_before_the_safety_backup() {
    let site = Site::new();
    let id = site.backup();
    let artifact = files_under(&site.repo().join(&id).join("uploads"))
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "zst"))
        .unwrap();
    let mut bytes = fs::read(&artifact).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    fs::write(&artifact, bytes).unwrap();
    fs::write(site.uploads().join("a.txt"), "live\n").unwrap();
    let before = site.ids();
    let r = site.expect(3, &["restore", &id, "--yes"]);
    assert!(
        r.stderr.contains("no safety backup was taken"),
        "{}",
        r.both()
    );
    assert_eq!(site.ids(), before, "a safety backup was taken");
    assert_eq!(
        fs::read_to_string(site.uploads().join("a.txt")).unwrap(),
        "live\n"
    );
}

#[test]
fn ctrl_c_removes_the_partial_artifact() {
    let site = Site::new();
    let big = site.uploads().join("big");
    fs::create_dir_all(&big).unwrap();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in 0..4 {
        let mut f = fs::File::create(big.join(format!("p{i}"))).unwrap();
        let mut buf = vec![0u8; 1 << 20];
        for _ in 0..64 {
            for chunk in buf.chunks_mut(8) {
                x ^= x >> 12;
                x ^= x << 25;
                x ^= x >> 27;
                chunk.copy_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
            }
            f.write_all(&buf).unwrap();
        }
    }
    let mut child = site.cmd(&["backup"]).spawn().unwrap();
    // Wait until the backup is writing data (under its directory, or, for the files driver's
    // chunked format, content blobs under `blobs/`).
    let deadline = Instant::now() + Duration::from_secs(60);
    let has_data = |p: &Path| {
        files_under(p)
            .iter()
            .any(|f| fs::metadata(f).map(|m| m.len() > 0).unwrap_or(false))
    };
    let dir = loop {
        let found = fs::read_dir(site.repo())
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.file_name().is_some_and(|n| is_id(&n.to_string_lossy()))
                    && (has_data(p) || has_data(&site.repo().join("blobs")))
            });
        if let Some(d) = found {
            break d;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the backup ended too early"
        );
        assert!(Instant::now() < deadline, "no artifact appeared");
        std::thread::sleep(Duration::from_millis(5));
    };
    let ok = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let left = files_under(&dir);
    assert!(left.is_empty(), "partial artifacts left behind: {left:?}");
}

/// Issue 17: a restore killed just before or just after its swap (the process aborts, as on
/// a crash or `kill -9`) leaves the target directory present, holding the live tree (before)
/// or the restored one (after), never neither; the next restore clears the leftover staging
/// directory and restores.
#[test]
fn a_crash_at_the_swap_never_leaves_the_target_missing() {
    for point in ["before-swap", "after-swap"] {
        let site = Site::new();
        let id = site.backup();
        fs::write(site.uploads().join("a.txt"), "changed after the backup\n").unwrap();
        fs::write(site.uploads().join("new.txt"), "new\n").unwrap();
        let r = site
            .cmd(&["restore", "--yes", &id])
            .env("AMBER_DR_TEST_CRASH_AT", point)
            .output()
            .unwrap();
        assert_ne!(
            r.status.code(),
            Some(0),
            "{point}: the restore was not aborted: {}",
            String::from_utf8_lossy(&r.stderr)
        );
        let a = fs::read_to_string(site.uploads().join("a.txt"))
            .unwrap_or_else(|e| panic!("{point}: the target lost a.txt: {e}"));
        match point {
            "before-swap" => {
                assert_eq!(a, "changed after the backup\n", "{point}");
                assert!(site.uploads().join("new.txt").exists(), "{point}");
            }
            _ => {
                assert_eq!(a, "hello\n", "{point}");
                assert!(!site.uploads().join("new.txt").exists(), "{point}");
            }
        }
        let leftovers = names_containing(site.dir.path(), "amber-dr-staging");
        assert_eq!(leftovers.len(), 1, "{point}: {leftovers:?}");
        // The next restore removes the dead process's staging directory and restores.
        let r = site.expect(0, &["restore", "--yes", &id]);
        assert!(
            r.both().contains("staging directory of an earlier restore"),
            "{point}: {}",
            r.both()
        );
        assert_eq!(
            fs::read_to_string(site.uploads().join("a.txt")).unwrap(),
            "hello\n"
        );
        assert_eq!(
            fs::read_to_string(site.uploads().join("sub/b.txt")).unwrap(),
            "b".repeat(3000)
        );
        assert!(!site.uploads().join("new.txt").exists(), "{point}");
        let left = names_containing(site.dir.path(), "amber-dr-");
        assert!(left.is_empty(), "{point}: {left:?}");
    }
}

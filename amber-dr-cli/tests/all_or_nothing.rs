//! A whole restore through the real binary (three `files` components, local repository) brings
//! every component back or changes none: a commit that fails after others were committed rolls
//! those back from the safety backup (checked through std::fs, not amber-dr's stats), damage
//! in one component removes what the others staged, and a restore killed with SIGKILL while
//! staging (prepare) or as its commit starts is completed by the next restore.
#![allow(missing_docs, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_amber-dr");

const CONFIG: &str = "[repository]\nurl = \"./repo\"\n\n\
[components.a]\nkind = \"files\"\npath = \"./a\"\n\n\
[components.b]\nkind = \"files\"\npath = \"./b\"\n\n\
[components.c]\nkind = \"files\"\npath = \"./cp/c\"\n";

const NAMES: [&str; 3] = ["a", "b", "cp/c"];

struct Site {
    dir: TempDir,
}

/// `chattr +i` on a directory for as long as it lives (undone on drop, so the temp dir can go).
struct Immutable(PathBuf);

impl Immutable {
    fn new(p: PathBuf) -> Self {
        let ok = Command::new("chattr")
            .arg("+i")
            .arg(&p)
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "chattr +i {} failed: this test needs root on a filesystem with the immutable flag (ext4, xfs)",
            p.display()
        );
        Self(p)
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}

impl Site {
    fn new(mb_each: usize) -> Self {
        let site = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        fs::write(site.path("amber-dr.toml"), CONFIG).unwrap();
        site.write_version("v1", mb_each);
        site
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Fill every component's directory with `version`'s content (`mb` MiB of files each).
    fn write_version(&self, version: &str, mb: usize) {
        for name in NAMES {
            let d = self.path(name);
            if d.exists() {
                fs::remove_dir_all(&d).unwrap();
            }
            fs::create_dir_all(d.join("sub")).unwrap();
            fs::write(d.join("version.txt"), format!("{name} {version}\n")).unwrap();
            fs::write(d.join(format!("sub/only-in-{version}")), version).unwrap();
            for i in 0..mb {
                let block: Vec<u8> = (0..1024 * 1024)
                    .map(|j| ((i * 31 + j * 7) % 251) as u8 ^ version.as_bytes()[1])
                    .collect();
                fs::write(d.join(format!("sub/blob-{i}.bin")), block).unwrap();
            }
        }
    }

    /// Every component's tree: relative path → a hash of the content (std::fs only).
    fn trees(&self) -> Vec<BTreeMap<String, String>> {
        NAMES.iter().map(|n| tree(&self.path(n))).collect()
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

    fn run(&self, args: &[&str]) -> (i32, String) {
        let out = self.cmd(args).output().unwrap();
        let text = format!(
            "--- stdout\n{}--- stderr\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code().unwrap_or(-1), text)
    }

    fn backup(&self) -> String {
        let out = self.cmd(&["backup", "--json"]).output().unwrap();
        assert!(out.status.success(), "{out:?}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["id"].as_str().unwrap().to_string()
    }

    /// Entries of the components' parent directories left by restores (staging, set aside).
    fn staging_leftovers(&self) -> Vec<String> {
        [self.dir.path().to_path_buf(), self.path("cp")]
            .iter()
            .flat_map(|d| fs::read_dir(d).unwrap())
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("amber-dr-staging"))
            .collect()
    }
}

fn tree(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            if p.is_dir() {
                out.insert(rel, "dir".into());
                stack.push(p);
            } else {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                std::hash::Hash::hash(&fs::read(&p).unwrap(), &mut h);
                out.insert(rel, format!("{:016x}", std::hash::Hasher::finish(&h)));
            }
        }
    }
    out
}

#[test]
fn a_failed_commit_rolls_back_the_committed_components() {
    for rollback in [true, false] {
        let site = Site::new(1);
        let id = site.backup();
        let v1 = site.trees();
        site.write_version("v2", 1);
        let v2 = site.trees();
        assert_ne!(v1, v2);
        // c is immutable: it is staged (beside it) in the prepare phase, but the commit cannot
        // rename it aside; a's and b's commits succeed.
        let guard = Immutable::new(site.path("cp/c"));
        let mut args = vec!["restore", id.as_str(), "--yes"];
        if !rollback {
            args.push("--no-rollback");
        }
        let (code, text) = site.run(&args);
        drop(guard);
        assert_eq!(code, 1, "{text}");
        // The plan said what each phase does, and what a failed commit would do.
        assert!(text.contains("1. prepare (nothing live changes"), "{text}");
        assert!(
            text.contains("a, b, c: restored beside the live data"),
            "{text}"
        );
        assert!(
            text.contains("a, b, c: swapped in (their downtime is the swap)"),
            "{text}"
        );
        let on_failure = if rollback {
            "the committed ones are rolled back from the safety backup"
        } else {
            "the committed ones are left as they are (--no-rollback)"
        };
        assert!(text.contains(on_failure), "{text}");
        assert!(text.contains("c (files): FAILED"), "{text}");
        assert!(text.contains("to retry: amber-dr --config"), "{text}");
        let now = site.trees();
        if rollback {
            assert!(text.contains("a (files): rolled back"), "{text}");
            assert!(text.contains("b (files): rolled back"), "{text}");
            assert_eq!(now, v2, "the committed components were not rolled back");
            assert!(
                text.contains(&format!("restore {id} --only a,b,c --yes")),
                "{text}"
            );
        } else {
            assert!(
                text.contains(
                    "a (files): committed, NOT rolled back (rollback turned off (--no-rollback))"
                ),
                "{text}"
            );
            assert_eq!(
                now[..2],
                v1[..2],
                "--no-rollback must leave a and b restored"
            );
            assert_eq!(now[2], v2[2]);
            assert!(
                text.contains(&format!("restore {id} --only c --yes")),
                "{text}"
            );
            assert!(text.contains("to roll back: amber-dr --config"), "{text}");
        }
        // The retry (the target writable again) brings everything back.
        let (code, text) = site.run(&["restore", &id, "--yes"]);
        assert_eq!(code, 0, "{text}");
        assert_eq!(site.trees(), v1);
    }
}

/// Start a restore, SIGKILL it when `ready` holds, then restore again: it completes.
fn killed_then_retried(what: &str, ready: impl Fn(&Site) -> bool) {
    let site = Site::new(40);
    let id = site.backup();
    let v1 = site.trees();
    site.write_version("v2", 40);
    let v2 = site.trees();
    let mut child = site.cmd(&["restore", &id, "--yes"]).spawn().unwrap();
    let start = Instant::now();
    let mut caught = false;
    while start.elapsed() < Duration::from_secs(60) {
        if ready(&site) {
            caught = true;
            break;
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(
        caught,
        "{what}: the restore finished ({status}) before the moment to kill it"
    );
    if what == "prepare" {
        assert_eq!(
            site.trees(),
            v2,
            "a restore killed before its commit changed data"
        );
    }
    let (code, text) = site.run(&["restore", &id, "--yes"]);
    assert_eq!(code, 0, "{what}: the restore after the kill failed: {text}");
    if what == "prepare" {
        // The staging directory the killed restore was filling is removed, and said so.
        assert!(
            text.contains("the staging directory of an earlier restore that did not finish"),
            "{text}"
        );
    }
    assert_eq!(
        site.trees(),
        v1,
        "{what}: not every store equals the backup"
    );
    assert!(
        site.staging_leftovers().is_empty(),
        "{what}: staging left: {:?}",
        site.staging_leftovers()
    );
}

#[test]
fn sigkill_during_prepare_then_restore_again() {
    // The prepare phase is extracting into a staging directory; no safety backup exists yet.
    killed_then_retried("prepare", |s| {
        fs::read_dir(s.dir.path()).unwrap().any(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .contains("amber-dr-staging")
        }) && manifests(s) == 1
    });
}

#[test]
fn sigkill_during_commit_then_restore_again() {
    // The safety backup's manifest is written: the commit (swaps, old trees removed) starts.
    killed_then_retried("commit", |s| manifests(s) == 2);
}

/// How many backups of the repository have their manifest (the backup and safety backups).
fn manifests(s: &Site) -> usize {
    fs::read_dir(s.path("repo"))
        .map(|rd| {
            rd.filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.path().join("manifest.json").exists())
            })
            .count()
        })
        .unwrap_or(0)
}

#[test]
fn damage_in_one_component_removes_what_the_others_staged() {
    let site = Site::new(8);
    let id = site.backup();
    site.write_version("v2", 8);
    let v2 = site.trees();
    // Damage `c` (the last in restore order): `a` and `b` are extracted into their staging
    // directories in the prepare phase, concurrently with `c`'s read.
    let mut arts: Vec<PathBuf> = Vec::new();
    let mut stack = vec![site.path("repo").join(&id).join("c")];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| {
                // the tree: the tar archive, or the chunked format's index
                let n = n.to_string_lossy();
                n.starts_with("files.tar") || n.starts_with("tree.jsonl")
            }) {
                arts.push(p);
            }
        }
    }
    assert_eq!(arts.len(), 1, "{arts:?}");
    let mut bytes = fs::read(&arts[0]).unwrap();
    let last = bytes.len() - 10;
    bytes[last] ^= 0x40;
    fs::write(&arts[0], bytes).unwrap();
    let (code, text) = site.run(&["restore", &id, "--yes"]);
    assert_eq!(code, 3, "{text}");
    assert!(text.contains(&format!("{id}/c")), "{text}");
    assert!(text.contains("nothing was restored"), "{text}");
    assert_eq!(site.trees(), v2, "a refused restore changed data");
    assert!(
        site.staging_leftovers().is_empty(),
        "staging left: {:?}",
        site.staging_leftovers()
    );
}

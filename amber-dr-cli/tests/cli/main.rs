//! End-to-end tests of the `amber-dr` binary: real processes in temporary directories, a
//! local-path repository and the `files` driver over a temporary uploads directory.
// test-lane: stores (uses the Postgres cluster or Neo4j, whose global state other tests change)

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_amber-dr");

const CONFIG: &str = r#"[repository]
url = "./repo"

[components.uploads]
kind = "files"
path = "./uploads"
"#;

/// A working directory with `amber-dr.toml`, `uploads/` and (after a backup) `repo/`.
struct Site {
    dir: TempDir,
}

impl Site {
    fn new() -> Self {
        let site = Self::empty();
        fs::write(site.path("amber-dr.toml"), CONFIG).expect("write config");
        let up = site.uploads();
        fs::create_dir_all(up.join("docs/nested")).expect("mkdir");
        fs::create_dir_all(up.join("empty")).expect("mkdir");
        fs::write(up.join("readme.txt"), "hello uploads\n").expect("write");
        fs::write(up.join("docs/a.bin"), pseudo_random(7, 200_000)).expect("write");
        fs::write(up.join("docs/nested/b.txt"), "b".repeat(5000)).expect("write");
        site
    }

    fn empty() -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
        }
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
            // The `init` template's live neo4j component reads it (its server need not run).
            .env("NEO4J_PASSWORD", "amber-dr-cli-tests")
            // The `init` template's minio section reads its secret from the environment.
            .env("MINIO_SECRET_KEY", "minio-test-secret")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    fn run(&self, args: &[&str]) -> Run {
        let out = self.cmd(args).output().expect("run amber-dr");
        Run::from(out, args)
    }

    /// Run and require exit code `code`.
    fn expect(&self, code: i32, args: &[&str]) -> Run {
        let r = self.run(args);
        assert_eq!(r.code, code, "amber-dr {args:?}\n{}", r.both());
        r
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
        assert!(is_id(&id), "last line is not an id: {id:?}\n{}", r.both());
        id
    }

    /// The archive of `uploads` in backup `id`: (absolute path, repository path).
    fn artifact(&self, id: &str) -> (PathBuf, String) {
        let dir = self.repo().join(id).join("uploads");
        let mut found: Vec<PathBuf> = fs::read_dir(&dir)
            .expect("read artifact dir")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name().is_some_and(|n| {
                    // the tree: the tar archive, or the chunked format's index
                    let n = n.to_string_lossy();
                    n.starts_with("files.tar") || n.starts_with("tree.jsonl")
                })
            })
            .collect();
        assert_eq!(found.len(), 1, "{found:?}");
        let p = found.remove(0);
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        (p, format!("{id}/uploads/{name}"))
    }
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn from(out: Output, args: &[&str]) -> Self {
        Self {
            code: out
                .status
                .code()
                .unwrap_or_else(|| panic!("amber-dr {args:?} died by a signal")),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn both(&self) -> String {
        format!("--- stdout\n{}--- stderr\n{}", self.stdout, self.stderr)
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON document: {e}\n{}", self.both()))
    }
}

fn is_id(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 15 && b[8] == b'_' && b[..8].iter().all(u8::is_ascii_digit)
}

/// Deterministic incompressible bytes (xorshift64*).
fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Every entry under `root`: relative path → content (directories as `<dir>`, symlinks as
/// `-> target`).
fn tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        let mut entries: Vec<_> = fs::read_dir(dir)
            .expect("read_dir")
            .filter_map(Result::ok)
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let rel = p
                .strip_prefix(root)
                .map(|r| r.to_string_lossy().into_owned())
                .unwrap_or_default();
            let meta = fs::symlink_metadata(&p).expect("metadata");
            if meta.file_type().is_symlink() {
                let t = fs::read_link(&p).expect("readlink");
                out.insert(rel, format!("-> {}", t.display()).into_bytes());
            } else if meta.is_dir() {
                out.insert(rel, b"<dir>".to_vec());
                walk(root, &p, out);
            } else {
                out.insert(rel, fs::read(&p).expect("read"));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("hostname")
        .trim()
        .to_string()
}

fn list_json(site: &Site) -> Vec<Value> {
    let v = site.expect(0, &["list", "--json"]).json();
    v.as_array().cloned().expect("list --json is an array")
}

/// Wait until a backup directory not in `known` appears (and the lock is taken).
fn wait_for_backup_dir(site: &Site, child: &mut Child, known: &[PathBuf]) -> PathBuf {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(entries) = fs::read_dir(site.repo()) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if is_id(&name)
                    && !known.contains(&e.path())
                    && e.path().join("uploads").exists()
                    && site.repo().join("locks/repository.lock").exists()
                {
                    return e.path();
                }
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("backup ended ({status}) before its directory was seen; make the data bigger");
        }
        assert!(Instant::now() < deadline, "no backup directory appeared");
        std::thread::sleep(Duration::from_millis(10));
    }
}

// ---------------------------------------------------------------------------------------

#[test]
fn init_writes_a_config_that_loads() {
    let site = Site::empty();
    let r = site.expect(0, &["init"]);
    assert!(r.stdout.contains("amber-dr.toml"), "{}", r.both());
    let text = fs::read_to_string(site.path("amber-dr.toml")).expect("written");
    assert!(text.contains("[components.uploads]"), "{text}");
    // Every driver of the template is registered in this build: all are live.
    assert!(
        !text.contains("driver not available yet in this build"),
        "{text}"
    );
    assert!(text.contains("\n[components.milvus]"), "{text}");
    assert!(text.contains("\n[components.postgres]"), "{text}");
    assert!(text.contains("\n[components.neo4j]"), "{text}");
    assert!(text.contains("\n[components.minio]"), "{text}");
    assert!(text.contains("[docker]"), "{text}");

    // Not overwritten without --force.
    let r = site.expect(2, &["init"]);
    assert!(r.stderr.contains("--force"), "{}", r.both());
    site.expect(0, &["init", "--force"]);

    // The written file loads and works: doctor, then a backup of its ./uploads into ./backups.
    fs::create_dir_all(site.uploads()).expect("mkdir");
    fs::write(site.uploads().join("f.txt"), "x").expect("write");
    // The template's Postgres is Amber's (127.0.0.1:5432), which need not run here: doctor
    // probes everything and reports each component on its own.
    let r = site.run(&["doctor"]);
    assert!(
        r.stdout.contains("uploads (files): reachable"),
        "{}",
        r.both()
    );
    assert!(r.stdout.contains("postgres (postgres)"), "{}", r.both());
    assert!(r.stdout.contains("neo4j (neo4j)"), "{}", r.both());
    assert!(r.stdout.contains("minio (minio)"), "{}", r.both());
    assert!(r.stdout.contains("milvus (milvus)"), "{}", r.both());
    let r = site.expect(0, &["backup", "--only", "uploads"]);
    let id = r.stdout.lines().last().unwrap_or_default().to_string();
    assert!(
        site.path("backups")
            .join(&id)
            .join("manifest.json")
            .is_file(),
        "{}",
        r.both()
    );
}

#[test]
fn bad_configs_are_usage_errors_naming_file_and_key() {
    let site = Site::new();
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "unknown key in a component",
            "[repository]\nurl = \"./repo\"\n[components.uploads]\nkind = \"files\"\npath = \"./uploads\"\nbogus = 1\n",
            &["components.uploads", "bogus"],
        ),
        (
            "unknown top-level key",
            "[repository]\nurl = \"./repo\"\n[extras]\nx = 1\n",
            &["extras"],
        ),
        (
            "unknown kind",
            "[repository]\nurl = \"./repo\"\n[components.db]\nkind = \"oracle\"\n",
            &["components.db.kind", "oracle", "known kinds: ", "files, "],
        ),
        (
            "unset variable",
            "[repository]\nurl = \"./repo\"\n[components.uploads]\nkind = \"files\"\npath = \"${AMBER_DR_TEST_UNSET_VAR}/x\"\n",
            &["components.uploads.path", "AMBER_DR_TEST_UNSET_VAR"],
        ),
        (
            "unknown docker key",
            "[repository]\nurl = \"./repo\"\n[docker]\npause_during_backup = [\"api\"]\nbogus = 1\n",
            &["[docker]", "bogus"],
        ),
        (
            "unknown repository key",
            "[repository]\nurl = \"./repo\"\nsecret = 1\n",
            &["[repository]", "secret"],
        ),
    ];
    for (what, text, wants) in cases {
        fs::write(site.path("bad.toml"), text).expect("write");
        for cmd in ["backup", "doctor"] {
            let r = site.run(&["--config", "bad.toml", cmd]);
            assert_eq!(r.code, 2, "{what}: {}", r.both());
            assert!(r.stderr.contains("bad.toml"), "{what}: {}", r.both());
            assert!(r.stderr.starts_with("error: "), "{what}: {}", r.both());
            for w in *wants {
                assert!(r.stderr.contains(w), "{what}: want {w:?}\n{}", r.both());
            }
        }
    }

    // A secret value is never echoed, not even in a TOML syntax error.
    fs::write(
        site.path("bad.toml"),
        "[components.x]\nkind = \"files\"\npassword = \"hunter2\" oops\n",
    )
    .expect("write");
    let r = site.expect(2, &["--config", "bad.toml", "backup"]);
    assert!(r.stderr.contains("bad.toml:3:"), "{}", r.both());
    assert!(!r.stderr.contains("hunter2"), "{}", r.both());

    // Missing and unreadable files.
    let r = site.expect(2, &["--config", "missing.toml", "backup"]);
    assert!(r.stderr.contains("missing.toml"), "{}", r.both());
    fs::create_dir_all(site.path("adir.toml")).expect("mkdir");
    let r = site.expect(2, &["--config", "adir.toml", "list"]);
    assert!(r.stderr.contains("adir.toml"), "{}", r.both());
    let r = site.expect(2, &["--json", "--config", "missing.toml", "backup"]);
    let v = r.json();
    assert_eq!(v["ok"], false);
    assert_eq!(v["exit_code"], 2);

    // AMBER_DR_CONFIG names the file too.
    let r = site
        .cmd(&["backup"])
        .env("AMBER_DR_CONFIG", "from-env.toml")
        .output()
        .expect("run");
    assert_eq!(r.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&r.stderr).contains("from-env.toml"));

    // Usage errors: bad arguments, an unknown component, a missing config for backup.
    site.expect(2, &["backup", "--no-such-flag"]);
    let r = site.expect(2, &["backup", "--only", "nope"]);
    assert!(r.stderr.contains("nope"), "{}", r.both());
    // An empty selection (an unset variable, a stray comma) never means "everything".
    for only in ["", ",", "uploads,", "/x"] {
        let r = site.expect(2, &["restore", "latest", "--yes", "--only", only]);
        assert!(r.stderr.contains("not a component name"), "{}", r.both());
    }
    site.expect(2, &["backup", "--skip", ""]);
    site.expect(0, &["--help"]);
    site.expect(0, &["--version"]);
    let empty = Site::empty();
    empty.expect(2, &["backup"]);
    empty.expect(2, &["list"]);
}

#[test]
fn backup_list_show_verify_and_damage_is_found() {
    let site = Site::new();
    let r = site.expect(0, &["backup", "--tag", "first"]);
    let id = r.stdout.lines().last().unwrap_or_default().to_string();
    assert!(is_id(&id), "{}", r.both());
    assert!(r.stdout.contains("uploads"), "{}", r.both());

    let r = site.expect(0, &["list"]);
    let line = r
        .stdout
        .lines()
        .find(|l| l.starts_with(&id))
        .unwrap_or_default();
    assert!(
        line.contains("complete") && line.contains("uploads") && line.contains("first"),
        "{}",
        r.both()
    );

    let r = site.expect(0, &["show", "latest"]);
    let (artifact, artifact_rel) = site.artifact(&id);
    assert!(
        r.stdout.contains(&id) && r.stdout.contains(&artifact_rel),
        "{}",
        r.both()
    );
    assert!(r.stdout.contains("sha256"), "{}", r.both());

    let r = site.expect(0, &["verify", &id]);
    assert!(r.stdout.contains("OK"), "{}", r.both());
    site.expect(0, &["verify", "latest", "--quick"]);
    site.expect(0, &["verify", "latest", "--only", "uploads"]);

    // Without a config file, --repo alone is enough for list, show and verify.
    let other = Site::empty();
    let repo = site.repo().display().to_string();
    other.expect(0, &["--repo", &repo, "list"]);
    other.expect(0, &["--repo", &repo, "show", &id]);
    let r = other.expect(0, &["--repo", &repo, "verify", &id]);
    assert!(r.stdout.contains("checked artifacts only"), "{}", r.both());

    let original = fs::read(&artifact).expect("read artifact");

    // One byte flipped in the middle.
    let mut damaged = original.clone();
    let mid = damaged.len() / 2;
    damaged[mid] ^= 0x40;
    fs::write(&artifact, &damaged).expect("write");
    let r = site.expect(3, &["verify", &id]);
    assert!(r.both().contains(&artifact_rel), "{}", r.both());
    assert!(r.stdout.contains("DAMAGED"), "{}", r.both());
    let r = other.expect(3, &["--repo", &repo, "verify", &id]);
    assert!(r.both().contains(&artifact_rel), "{}", r.both());

    // Truncated.
    fs::write(&artifact, &original[..original.len() / 2]).expect("write");
    let r = site.expect(3, &["verify", &id]);
    assert!(r.both().contains(&artifact_rel), "{}", r.both());
    site.expect(3, &["verify", &id, "--quick"]);

    // Deleted.
    fs::remove_file(&artifact).expect("rm");
    let r = site.expect(3, &["verify", &id]);
    assert!(r.both().contains(&artifact_rel), "{}", r.both());
    let r = site.expect(3, &["--json", "verify", &id, "--quick"]);
    assert_eq!(r.json()["ok"], false);

    // Repaired: good again.
    fs::write(&artifact, &original).expect("write");
    site.expect(0, &["verify", &id]);
}

#[test]
fn restore_asks_refuses_without_terminal_dry_runs_and_restores() {
    let site = Site::new();
    let before = tree(&site.uploads());
    let id = site.backup();

    // Change the data: edit, add, delete.
    fs::write(site.uploads().join("readme.txt"), "changed\n").expect("write");
    fs::write(site.uploads().join("new.txt"), "new\n").expect("write");
    fs::remove_file(site.uploads().join("docs/nested/b.txt")).expect("rm");
    let changed = tree(&site.uploads());
    assert_ne!(before, changed);

    // No --yes and no terminal: refused, nothing touched.
    let r = site.expect(2, &["restore", &id]);
    assert!(r.stderr.contains("--yes"), "{}", r.both());
    assert_eq!(tree(&site.uploads()), changed);

    // Dry run: the plan, nothing touched, no safety backup.
    let r = site.expect(0, &["restore", "latest", "--dry-run"]);
    assert!(
        r.stdout.contains(&id) && r.stdout.contains("uploads (files)"),
        "{}",
        r.both()
    );
    assert_eq!(tree(&site.uploads()), changed);
    assert_eq!(list_json(&site).len(), 1);

    // Restore for real.
    let r = site.expect(0, &["restore", "latest", "--yes"]);
    assert_eq!(tree(&site.uploads()), before, "{}", r.both());
    let safety = list_json(&site)
        .into_iter()
        .find(|e| e["purpose"] == "safety")
        .and_then(|e| e["id"].as_str().map(str::to_string))
        .expect("a safety backup is listed");
    assert!(
        r.stdout
            .contains(&format!("restore {safety} --only uploads --yes")),
        "{}",
        r.both()
    );

    // The safety backup holds the changed state: rolling back brings it back.
    site.expect(
        0,
        &[
            "restore",
            &safety,
            "--only",
            "uploads",
            "--yes",
            "--no-safety-backup",
        ],
    );
    assert_eq!(tree(&site.uploads()), changed);

    // `latest` means the newest ordinary backup, never a safety backup.
    site.expect(0, &["restore", "latest", "--yes", "--no-safety-backup"]);
    assert_eq!(tree(&site.uploads()), before);

    // Into another target; the configured directory is left alone.
    fs::write(site.uploads().join("readme.txt"), "changed again\n").expect("write");
    let here = tree(&site.uploads());
    let elsewhere = site.path("elsewhere");
    let target = format!("uploads={}", elsewhere.display());
    site.expect(
        0,
        &[
            "restore",
            &id,
            "--yes",
            "--no-safety-backup",
            "--target",
            &target,
        ],
    );
    assert_eq!(tree(&elsewhere), before);
    assert_eq!(tree(&site.uploads()), here);
    let r = site.expect(2, &["restore", &id, "--yes", "--target", "nope=/tmp/x"]);
    assert!(r.stderr.contains("nope"), "{}", r.both());

    // A runbook backup directory: missing parts are listed and nothing happens without
    // --only; with --only uploads its uploads.tar.gz is restored (after a safety backup).
    let runbook = site.path("backups/20240101_000000");
    fs::create_dir_all(&runbook).expect("mkdir");
    let r = site.expect(2, &["restore", "backups/20240101_000000", "--yes"]);
    assert!(
        r.stderr.contains("`postgres.sql` is missing")
            && r.stderr.contains("`uploads.tar.gz` is missing"),
        "{}",
        r.both()
    );
    let st = Command::new("tar")
        .arg("czf")
        .arg(runbook.join("uploads.tar.gz"))
        .arg("-C")
        .arg(&elsewhere)
        .arg(".")
        .status()
        .expect("tar");
    assert!(st.success());
    let r = site.expect(2, &["restore", "backups/20240101_000000", "--yes"]);
    assert!(r.stderr.contains("--only uploads"), "{}", r.both());
    let r = site.expect(
        0,
        &[
            "restore",
            "backups/20240101_000000",
            "--only",
            "uploads",
            "--yes",
        ],
    );
    assert!(r.stdout.contains("safety backup"), "{}", r.both());
    assert_eq!(
        tree(&site.uploads()),
        tree(&elsewhere),
        "the runbook archive's content is restored"
    );

    // An id that is not there.
    let r = site.expect(1, &["restore", "19990101_000000", "--yes"]);
    assert!(r.stderr.contains("19990101_000000"), "{}", r.both());
}

/// Run `amber-dr args` with a terminal as stdin (through `script`), typing `answer`.
fn at_terminal(site: &Site, args: &[&str], answer: &str) -> Option<Run> {
    let have_script = Command::new("script")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !have_script {
        eprintln!("`script` (util-linux) is not installed: terminal prompt not tested");
        return None;
    }
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let line = std::iter::once(BIN)
        .chain(args.iter().copied())
        .map(quote)
        .collect::<Vec<_>>()
        .join(" ");
    let mut child = Command::new("script")
        .args(["-q", "-e", "-c", &line, "/dev/null"])
        .current_dir(site.dir.path())
        .env_remove("AMBER_DR_CONFIG")
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn script");
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(answer.as_bytes()).expect("type the answer");
    }
    Some(Run::from(child.wait_with_output().expect("wait"), args))
}

#[test]
fn restore_at_a_terminal_asks_first() {
    let site = Site::new();
    let before = tree(&site.uploads());
    let id = site.backup();
    fs::write(site.uploads().join("readme.txt"), "changed\n").expect("write");
    let changed = tree(&site.uploads());

    let Some(r) = at_terminal(&site, &["restore", &id], "n\n") else {
        return;
    };
    assert_eq!(r.code, 1, "{}", r.both());
    assert!(r.stdout.contains("Type y to continue: "), "{}", r.both());
    assert!(r.stdout.contains("aborted"), "{}", r.both());
    assert_eq!(tree(&site.uploads()), changed);
    assert_eq!(list_json(&site).len(), 1, "no safety backup either");

    let Some(r) = at_terminal(&site, &["restore", &id], "y\n") else {
        return;
    };
    assert_eq!(r.code, 0, "{}", r.both());
    assert_eq!(tree(&site.uploads()), before);
}

// More tests, in files of their own: runs of the commands (json, locks, interruptions,
// prune, metrics) and the runbook's scripts and backup directories.
mod runbook;
mod runs;

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

#[test]
fn json_output_everywhere() {
    let site = Site::new();
    let v = site.expect(0, &["--json", "backup"]).json();
    assert_eq!(v["ok"], true);
    assert_eq!(v["status"], "complete");
    let id = v["id"].as_str().expect("id").to_string();
    assert!(v["components"]["uploads"]["artifacts"].is_array());

    let list = site.expect(0, &["list", "--json"]).json();
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["status"], "complete");
    assert_eq!(
        site.expect(0, &["show", "--json", &id]).json()["id"],
        id.as_str()
    );
    assert_eq!(
        site.expect(0, &["verify", "--json", &id]).json()["ok"],
        true
    );
    let v = site.expect(0, &["--json", "doctor"]).json();
    assert_eq!(v["ok"], true);
    assert_eq!(v["components"][0]["name"], "uploads");
    let v = site
        .expect(0, &["--json", "restore", &id, "--dry-run"])
        .json();
    assert_eq!(v["dry_run"], true);
    let v = site.expect(0, &["--json", "restore", &id, "--yes"]).json();
    assert_eq!(v["ok"], true);
    assert!(v["outcome"]["safety_backup"].is_string());
    let v = site
        .expect(0, &["--json", "prune", "--keep-last", "5", "--dry-run"])
        .json();
    assert!(v["kept"].is_array());
    let v = site.expect(0, &["--json", "unlock"]).json();
    assert_eq!(v["removed"], Value::Null);

    // Errors are JSON too, on stdout.
    for (code, args) in [
        (2, vec!["--json", "prune"]),
        (2, vec!["--json", "backup", "--bogus"]),
        (1, vec!["--json", "show", "20000101_000000"]),
        (2, vec!["--json", "restore", &id]),
    ] {
        let v = site.expect(code, &args).json();
        assert_eq!(v["ok"], false, "{args:?}");
        assert_eq!(v["exit_code"], code, "{args:?}");
        assert!(v["error"].as_str().map(|e| !e.is_empty()).unwrap_or(false));
    }
    let v = Site::empty().expect(0, &["--json", "init"]).json();
    assert_eq!(v["ok"], true);
}

#[test]
fn a_lock_held_by_a_live_process_blocks_and_unlock_clears_it() {
    let site = Site::new();
    site.backup();
    let mut sleeper = Command::new("sleep")
        .arg("30")
        .spawn()
        .expect("spawn sleep");
    let pid = sleeper.id();
    let lock = serde_json::json!({
        "host": hostname(),
        "pid": pid,
        "operation": "backup",
        "since": "2026-01-01T00:00:00Z",
        "token": "held-by-test",
    });
    fs::create_dir_all(site.repo().join("locks")).expect("mkdir");
    fs::write(site.repo().join("locks/repository.lock"), lock.to_string()).expect("write lock");

    let r = site.expect(1, &["backup"]);
    assert!(r.stderr.contains(&format!("pid {pid}")), "{}", r.both());
    assert!(r.stderr.contains("amber-dr unlock"), "{}", r.both());
    let r = site.expect(1, &["restore", "latest", "--yes"]);
    assert!(r.stderr.contains(&format!("pid {pid}")), "{}", r.both());
    site.expect(1, &["prune", "--keep-last", "1"]);
    // Reading is not blocked.
    site.expect(0, &["list"]);
    site.expect(0, &["verify", "latest"]);

    let r = site.expect(0, &["unlock"]);
    assert!(r.stdout.contains(&pid.to_string()), "{}", r.both());
    assert!(!site.repo().join("locks/repository.lock").exists());
    let r = site.expect(0, &["unlock"]);
    assert!(r.stdout.contains("not locked"), "{}", r.both());
    site.backup();

    let _ = sleeper.kill();
    let _ = sleeper.wait();
}

#[test]
fn interrupted_and_killed_backups_are_never_complete() {
    let site = Site::new();
    // 300 MB of incompressible data, so that a backup runs long enough to be stopped.
    let big = site.uploads().join("big");
    fs::create_dir_all(&big).expect("mkdir");
    for i in 0..6u64 {
        let mut f = fs::File::create(big.join(format!("part{i}.bin"))).expect("create");
        for j in 0..50u64 {
            f.write_all(&pseudo_random(i * 1000 + j + 1, 1 << 20))
                .expect("write");
        }
    }

    // SIGTERM: exit 130, the lock released, no complete backup.
    let mut child = site.cmd(&["backup"]).spawn().expect("spawn backup");
    let first = wait_for_backup_dir(&site, &mut child, &[]);
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(status.success());
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("interrupted: no backup was completed"),
        "{stderr}"
    );
    assert!(
        !site.repo().join("locks/repository.lock").exists(),
        "lock left behind"
    );
    assert!(!first.join("manifest.json").exists());
    assert!(list_json(&site).iter().all(|e| e["status"] != "complete"));

    // SIGKILL: nothing can clean up; the backup is listed as incomplete, the lock stays.
    let mut child = site.cmd(&["backup"]).spawn().expect("spawn backup");
    let killed = wait_for_backup_dir(&site, &mut child, std::slice::from_ref(&first));
    child.kill().expect("kill -9");
    let _ = child.wait();
    assert!(site.repo().join("locks/repository.lock").exists());
    let killed_id = killed
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let entries = list_json(&site);
    let entry = entries
        .iter()
        .find(|e| e["id"] == killed_id.as_str())
        .unwrap_or_else(|| panic!("{killed_id} not listed: {entries:?}"));
    assert_eq!(entry["status"], "incomplete", "{entries:?}");
    site.expect(1, &["show", &killed_id]);
    site.expect(1, &["verify", "latest"]); // no complete backup yet

    // The next backup takes over the dead process's lock and succeeds.
    fs::remove_dir_all(&big).expect("rm big");
    let id = site.backup();
    site.expect(0, &["verify", &id]);
    assert!(!site.repo().join("locks/repository.lock").exists());
    let statuses: Vec<String> = list_json(&site)
        .iter()
        .map(|e| e["status"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(statuses.iter().any(|s| s == "incomplete"), "{statuses:?}");
    assert_eq!(
        statuses.iter().filter(|s| *s == "complete").count(),
        1,
        "{statuses:?}"
    );
}

#[test]
fn prune_keeps_the_newest() {
    let site = Site::new();
    let ids: Vec<String> = (0..3).map(|_| site.backup()).collect();

    let r = site.expect(2, &["prune"]);
    assert!(r.stderr.contains("--keep-last"), "{}", r.both());

    let v = site
        .expect(0, &["--json", "prune", "--keep-last", "1", "--dry-run"])
        .json();
    assert_eq!(v["deleted"].as_array().map(Vec::len), Some(2), "{v}");
    assert_eq!(list_json(&site).len(), 3);

    let r = site.expect(0, &["prune", "--keep-last", "1"]);
    assert!(r.stdout.contains("deleted"), "{}", r.both());
    let left = list_json(&site);
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0]["id"], ids[2].as_str());
    for old in &ids[..2] {
        assert!(!site.repo().join(old).exists(), "{old} still there");
    }
    site.expect(0, &["verify", "latest"]);
    // Without a config file, with --repo.
    let repo = site.repo().display().to_string();
    Site::empty().expect(0, &["--repo", &repo, "prune", "--keep-daily", "1"]);
}

#[test]
fn a_failed_component_fails_the_backup_but_prints_its_id() {
    let site = Site::new();
    let config =
        format!("{CONFIG}\n[components.gone]\nkind = \"files\"\npath = \"./does-not-exist\"\n");
    fs::write(site.path("amber-dr.toml"), config).expect("write");
    let r = site.expect(1, &["backup"]);
    let id = r.stdout.lines().last().unwrap_or_default().to_string();
    assert!(is_id(&id), "{}", r.both());
    assert!(r.stdout.contains("FAILED"), "{}", r.both());
    assert!(r.stderr.contains("error: "), "{}", r.both());
    assert_eq!(list_json(&site)[0]["status"], "failed");
    site.expect(3, &["verify", &id]);
    // The good part can still be restored on its own; `--skip` leaves the other out.
    site.expect(0, &["restore", &id, "--skip", "gone", "--yes"]);
    site.expect(1, &["restore", &id, "--yes"]);
    // Quiet: the id alone.
    let r = site.expect(0, &["-q", "backup", "--only", "uploads"]);
    assert_eq!(r.stdout.lines().count(), 1, "{}", r.both());
    let v = site.expect(1, &["--json", "backup"]).json();
    assert_eq!(v["ok"], false);
    assert_eq!(v["status"], "failed");
}

#[test]
fn paths_are_relative_to_the_config_file_and_repo_to_the_cwd() {
    let site = Site::new();
    let elsewhere = Site::empty();
    let config = site.path("amber-dr.toml").display().to_string();
    let id = {
        let r = elsewhere.expect(0, &["--config", &config, "backup"]);
        r.stdout.lines().last().unwrap_or_default().to_string()
    };
    assert!(site.repo().join(&id).join("manifest.json").is_file());
    // --repo overrides [repository] url, relative to the current directory.
    let r = elsewhere.expect(0, &["--config", &config, "--repo", "other-repo", "backup"]);
    let id2 = r.stdout.lines().last().unwrap_or_default().to_string();
    assert!(elsewhere
        .path("other-repo")
        .join(&id2)
        .join("manifest.json")
        .is_file());
    elsewhere.expect(0, &["--repo", "other-repo", "verify", "latest"]);
}

#[test]
fn metrics_file_records_runs_and_keeps_the_last_success() {
    let site = Site::new();
    let prom = site.path("metrics/amber-dr.prom");
    fs::create_dir_all(prom.parent().expect("parent")).expect("mkdir");
    let p = prom.to_str().expect("utf-8 path");
    site.expect(0, &["--metrics-file", p, "backup"]);
    site.expect(0, &["--metrics-file", p, "verify", "latest"]);
    let first = fs::read_to_string(&prom).expect("metrics written");
    let lbl = r#"{component="uploads",kind="files"}"#;
    for line in [
        "amber_dr_backup_last_run_success 1".to_string(),
        format!("amber_dr_component_last_run_success{lbl} 1"),
        r#"amber_dr_verify_last_run_success{level="full"} 1"#.to_string(),
    ] {
        assert!(first.lines().any(|l| l == line), "`{line}` in:\n{first}");
    }
    let success_line = |text: &str| {
        text.lines()
            .find(|l| {
                l.starts_with(&format!(
                    "amber_dr_component_last_success_timestamp_seconds{lbl} "
                ))
            })
            .map(str::to_string)
    };
    let first_success = success_line(&first).expect("last success time");
    assert!(first.lines().any(|l| l.starts_with(&format!(
        "amber_dr_component_last_success_stored_bytes{lbl} "
    ))));

    // The uploads directory disappears: the run fails, the last success time stays.
    fs::rename(site.uploads(), site.path("moved")).expect("mv");
    site.expect(1, &["--metrics-file", p, "backup"]);
    let second = fs::read_to_string(&prom).expect("metrics");
    assert!(
        second
            .lines()
            .any(|l| l == "amber_dr_backup_last_run_success 0"),
        "{second}"
    );
    assert!(
        second
            .lines()
            .any(|l| l == format!("amber_dr_component_last_run_success{lbl} 0")),
        "{second}"
    );
    assert_eq!(
        success_line(&second),
        Some(first_success),
        "last success kept"
    );
    // A run that cannot even start (a broken config) still drops the gauge.
    fs::rename(site.path("moved"), site.uploads()).expect("mv back");
    site.expect(0, &["--metrics-file", p, "backup"]);
    fs::write(site.path("amber-dr.toml"), "not = [valid").expect("write");
    site.expect(2, &["--metrics-file", p, "backup"]);
    let third = fs::read_to_string(&prom).expect("metrics");
    assert!(
        third
            .lines()
            .any(|l| l == "amber_dr_backup_last_run_success 0"),
        "{third}"
    );
    // Only the metrics file is in its directory: the temporary file was renamed over it.
    assert_eq!(
        fs::read_dir(prom.parent().expect("dir"))
            .expect("ls")
            .count(),
        1
    );
}

#[test]
fn runbook_scripts_wrap_amber_dr_and_restore_asks_for_y() {
    let site = Site::new();
    let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts");
    let run = |script: &str, args: &[&str], stdin: &str| {
        use std::io::Write;
        let mut child = Command::new(scripts.join(script))
            .args(args)
            .current_dir(site.dir.path())
            .env("AMBER_DR_BIN", BIN)
            .env("AMBER_DR_CONFIG", site.path("amber-dr.toml"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run script");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("write");
        let out = child.wait_with_output().expect("wait");
        Run::from(out, args)
    };
    let r = run("backup.sh", &[], "");
    assert_eq!(r.code, 0, "{}", r.both());
    let id = r.stdout.lines().last().expect("id").to_string();
    assert!(
        site.repo().join(&id).join("manifest.json").exists(),
        "{}",
        r.both()
    );
    assert!(r.stderr.contains("verified"), "{}", r.both());

    let before = tree(&site.uploads());
    fs::write(
        site.uploads().join("readme.txt"),
        "changed after the backup\n",
    )
    .expect("write");
    let changed = tree(&site.uploads());
    // Anything but `y`: nothing happens.
    let r = run("restore.sh", &[&id], "n\n");
    assert_eq!(r.code, 1, "{}", r.both());
    assert!(r.stderr.contains("Type y to continue"), "{}", r.both());
    assert!(
        r.stdout.contains("restore plan"),
        "the plan is shown first: {}",
        r.both()
    );
    assert_eq!(tree(&site.uploads()), changed);
    // `y`: restored, by id and by the backup's directory alike.
    let r = run("restore.sh", &["latest"], "y\n");
    assert_eq!(r.code, 0, "{}", r.both());
    assert_eq!(tree(&site.uploads()), before);
    fs::write(site.uploads().join("readme.txt"), "changed again\n").expect("write");
    let dir = site.repo().join(&id);
    let r = run(
        "restore.sh",
        &[dir.to_str().expect("utf-8"), "--only", "uploads"],
        "y\n",
    );
    assert_eq!(r.code, 0, "{}", r.both());
    assert_eq!(tree(&site.uploads()), before);
}

fn stack_env(k: &str) -> Option<String> {
    std::env::var(k).ok().filter(|v| !v.is_empty())
}

/// The runbook's Neo4j side, through the official Python driver of the stack (independent of
/// amber-dr): seed, export as the runbook does (`apoc.export.cypher.all`, cypher-shell format),
/// describe, wreck.
const NEO4J_TOOL: &str = r#"
import sys
from neo4j import GraphDatabase
uri, user, pw, cmd = sys.argv[1:5]
d = GraphDatabase.driver(uri, auth=(user, pw))
with d.session() as s:
    if cmd == "seed":
        s.run("MATCH (n) DETACH DELETE n").consume()
        s.run("UNWIND range(1, 25) AS i CREATE (:RunbookDoc {id: i, key: 'doc-' + i})-[:IN {w: i}]->(:RunbookFolder {n: i})").consume()
    elif cmd == "export":
        rows = s.run("CALL apoc.export.cypher.all(null, {stream: true, format: 'cypher-shell'}) YIELD cypherStatements RETURN cypherStatements AS s")
        sys.stdout.write("".join(r["s"] for r in rows))
    elif cmd == "state":
        n = s.run("MATCH (n) RETURN count(n) AS c").single()["c"]
        r = s.run("MATCH ()-[r]->() RETURN count(r) AS c, sum(r.w) AS w").single()
        k = s.run("MATCH (d:RunbookDoc) RETURN collect(d.key) AS k").single()["k"]
        print(n, r["c"], r["w"], sorted(k))
    elif cmd == "wreck":
        s.run("MATCH (n) DETACH DELETE n").consume()
        s.run("CREATE (:Wreck {at: 1})").consume()
d.close()
"#;

fn neo4j_tool(args: &[&str]) -> String {
    let py = stack_env("AMBER_DR_NEO4J_PYTHON").expect("AMBER_DR_NEO4J_PYTHON");
    let out = Command::new(py)
        .arg("-c")
        .arg(NEO4J_TOOL)
        .arg(stack_env("AMBER_DR_NEO4J_URI").expect("uri"))
        .arg(stack_env("AMBER_DR_NEO4J_USER").unwrap_or_else(|| "neo4j".into()))
        .arg(stack_env("AMBER_DR_NEO4J_PASSWORD").expect("password"))
        .args(args)
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "neo4j tool {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn pg_tool(tool: &str, args: &[&str]) -> Output {
    let bindir = stack_env("AMBER_DR_PG_BINDIR").expect("AMBER_DR_PG_BINDIR");
    let out = Command::new(format!("{bindir}/{tool}"))
        .args(args)
        .env("PGHOST", stack_env("AMBER_DR_PG_HOST").expect("host"))
        .env("PGPORT", stack_env("AMBER_DR_PG_PORT").expect("port"))
        .env("PGUSER", "postgres")
        .env("PGPASSWORD", stack_env("AMBER_DR_PG_PASSWORD").expect("pw"))
        .output()
        .expect("postgres client");
    assert!(
        out.status.success(),
        "{tool} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn psql(db: &str, sql: &str) -> String {
    let out = pg_tool(
        "psql",
        &[
            "-X",
            "-q",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            db,
            "-c",
            sql,
        ],
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A runbook backup directory with all four parts, made with the runbook's commands
/// (`pg_dump > postgres.sql`, APOC's cypher export, `tar czf` of MinIO's volume and of the
/// uploads), restored whole by `amber-dr restore DIR` after every store was changed.
#[test]
fn runbook_directory_with_all_four_parts_restores() {
    let have = [
        "AMBER_DR_PG_BINDIR",
        "AMBER_DR_PG_PASSWORD",
        "AMBER_DR_NEO4J_URI",
    ]
    .iter()
    .all(|k| stack_env(k).is_some())
        && stack_env("AMBER_DR_NEO4J_PYTHON").is_some();
    if !have {
        if stack_env("AMBER_DR_REQUIRE_SERVICES").as_deref() == Some("1") {
            panic!("Postgres and Neo4j not available and AMBER_DR_REQUIRE_SERVICES=1: run scripts/stack.sh up");
        }
        eprintln!("SKIPPED: Postgres and Neo4j not available (scripts/stack.sh up)");
        return;
    }
    let site = Site::new();
    let db = format!("amber_cli_runbook_{}", std::process::id());
    psql("postgres", &format!("DROP DATABASE IF EXISTS {db}"));
    psql("postgres", &format!("CREATE DATABASE {db}"));
    psql(
        &db,
        "CREATE TABLE docs (id serial PRIMARY KEY, key text NOT NULL, body text); \
         INSERT INTO docs (key, body) SELECT 'minio/' || i, repeat('x', i) FROM generate_series(1, 300) i",
    );
    let pg_state = || {
        psql(
            &db,
            "SELECT count(*) || ' ' || md5(string_agg(d::text, '|' ORDER BY id)) FROM docs d",
        )
    };
    neo4j_tool(&["seed"]);
    let (pg_then, neo_then) = (pg_state(), neo4j_tool(&["state"]));
    assert!(neo_then.starts_with("50 25 325"), "{neo_then}");
    // MinIO's data volume as its single-drive mode keeps it: a directory per bucket.
    let volume = site.path("volumes/amber_minio_data/_data");
    fs::create_dir_all(volume.join(".minio.sys/config")).expect("mkdir");
    fs::create_dir_all(volume.join("documents/2024/01")).expect("mkdir");
    fs::write(volume.join(".minio.sys/config/config.json"), "{}").expect("write");
    fs::write(
        volume.join("documents/2024/01/a.pdf"),
        pseudo_random(3, 300_000),
    )
    .expect("write");
    fs::write(volume.join("documents/readme"), "hello minio").expect("write");
    let minio_then = tree(&volume);
    let uploads_then = tree(&site.uploads());

    // The runbook's backup.sh.
    let runbook = site.path("backups/20240301_020000");
    fs::create_dir_all(&runbook).expect("mkdir");
    let dump = pg_tool("pg_dump", &[&db]);
    fs::write(runbook.join("postgres.sql"), &dump.stdout).expect("write");
    fs::write(runbook.join("neo4j.cypher"), neo4j_tool(&["export"])).expect("write");
    for (archive, dir) in [
        ("minio_data.tar.gz", volume.clone()),
        ("uploads.tar.gz", site.uploads()),
    ] {
        let st = Command::new("tar")
            .arg("czf")
            .arg(runbook.join(archive))
            .arg("-C")
            .arg(&dir)
            .arg(".")
            .status()
            .expect("tar");
        assert!(st.success());
    }

    // Today: every store moved on. MinIO is stopped (nothing listens on its endpoint).
    let live_minio = site.path("minio-data");
    fs::create_dir_all(live_minio.join("today")).expect("mkdir");
    fs::write(live_minio.join("today/new.txt"), "new").expect("write");
    psql(
        &db,
        "DELETE FROM docs WHERE id % 2 = 0; INSERT INTO docs (key) VALUES ('late')",
    );
    neo4j_tool(&["wreck"]);
    fs::write(site.uploads().join("readme.txt"), "changed").expect("write");
    // Nothing answers there (a bound socket that does not listen: no other process takes it).
    let closed = amber_dr_core::testkit::closed_port();
    let port = closed.port;
    let mut config = fs::read_to_string(site.path("amber-dr.toml")).expect("config");
    config.push_str(&format!(
        r#"
[components.postgres]
kind = "postgres"
url = "postgres://postgres:${{AMBER_DR_PG_PASSWORD}}@{host}:{pgport}/{db}"

[components.neo4j]
kind = "neo4j"
uri = "{neo}"
user = "neo4j"
password = "${{AMBER_DR_NEO4J_PASSWORD}}"

[components.minio]
kind = "minio"
endpoint = "http://127.0.0.1:{port}"
access_key = "minioadmin"
secret_key = "not-used"
legacy_data_dir = "./minio-data"
"#,
        host = stack_env("AMBER_DR_PG_HOST").expect("host"),
        pgport = stack_env("AMBER_DR_PG_PORT").expect("port"),
        neo = stack_env("AMBER_DR_NEO4J_URI").expect("uri"),
    ));
    fs::write(site.path("amber-dr.toml"), config).expect("config");

    let r = site.expect(0, &["restore", "backups/20240301_020000", "--dry-run"]);
    for part in ["postgres", "neo4j", "minio", "uploads"] {
        assert!(
            r.stdout.contains(&format!("{part} (")),
            "{part}: {}",
            r.both()
        );
    }
    let r = site.expect(0, &["restore", "backups/20240301_020000", "--yes"]);
    assert!(r.stdout.contains("safety backup"), "{}", r.both());
    assert_eq!(pg_state(), pg_then, "{}", r.both());
    assert_eq!(neo4j_tool(&["state"]), neo_then, "{}", r.both());
    assert_eq!(tree(&live_minio), minio_then, "{}", r.both());
    assert_eq!(tree(&site.uploads()), uploads_then, "{}", r.both());
    // The safety backup holds all four components; MinIO's is its data directory.
    let safety = list_json(&site)
        .into_iter()
        .find(|e| e["purpose"] == "safety")
        .and_then(|e| e["id"].as_str().map(str::to_string))
        .expect("a safety backup");
    for c in ["postgres", "neo4j", "uploads"] {
        assert!(site.repo().join(&safety).join(c).is_dir(), "{c}");
    }
    assert!(site
        .repo()
        .join(&safety)
        .join("minio/files.tar.zst")
        .is_file());
    psql("postgres", &format!("DROP DATABASE IF EXISTS {db}"));
}

//! Encryption at rest through the `amber-dr` binary (issue 16): no plaintext in the
//! repository, fail-closed key errors, tamper evidence, write-only hosts, key commands.
#![allow(missing_docs, clippy::unwrap_used)]

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tempfile::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_amber-dr");
const PASS: &str = "correct horse battery staple";

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
    /// A site whose `[repository]` has `encryption` (a TOML table body, or "" for none).
    fn new(encryption: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let site = Self { dir };
        site.configure(encryption);
        let up = site.path("uploads");
        fs::create_dir_all(up.join("docs")).unwrap();
        fs::write(up.join("readme.txt"), "hello uploads\n").unwrap();
        fs::write(up.join("docs/noise.bin"), pseudo_random(11, 300_000)).unwrap();
        site
    }

    fn configure(&self, encryption: &str) {
        let enc = if encryption.is_empty() {
            String::new()
        } else {
            format!("\n[repository.encryption]\n{encryption}\n")
        };
        fs::write(
            self.path("amber-dr.toml"),
            format!(
                "[repository]\nurl = \"./repo\"\n{enc}\n[components.uploads]\nkind = \"files\"\npath = \"./uploads\"\n"
            ),
        )
        .unwrap();
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut c = Command::new(BIN);
        c.args(args)
            .current_dir(self.dir.path())
            .env_remove("AMBER_DR_CONFIG")
            .env_remove("RUST_LOG")
            .env_remove("AMBER_DR_PASSPHRASE")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        Run {
            code: out.status.code().unwrap(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn expect_env(&self, code: i32, args: &[&str], env: &[(&str, &str)]) -> Run {
        let r = self.run_env(args, env);
        assert_eq!(r.code, code, "amber-dr {args:?}\n{}", r.both());
        r
    }

    fn expect(&self, code: i32, args: &[&str]) -> Run {
        self.expect_env(code, args, &[("AMBER_DR_PASSPHRASE", PASS)])
    }

    fn backup(&self) -> String {
        let r = self.expect(0, &["backup"]);
        r.stdout.lines().last().unwrap().trim().to_string()
    }
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

/// Every file under `root`: relative path → content.
fn files(root: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                out.insert(rel, fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

const W: usize = 64;

/// True if any 64-byte sequence of `source` appears anywhere in `haystack` (Rabin-Karp over
/// every window of both, candidates compared byte for byte).
fn shares_64_bytes(source: &[u8], haystack: &[u8]) -> bool {
    const B: u64 = 0x100_0000_01b3;
    let pow = (0..W - 1).fold(1u64, |p, _| p.wrapping_mul(B));
    let hashes = |data: &[u8]| -> Vec<u64> {
        if data.len() < W {
            return Vec::new();
        }
        let mut h = data[..W]
            .iter()
            .fold(0u64, |h, &b| h.wrapping_mul(B).wrapping_add(u64::from(b)));
        let mut out = vec![h];
        for i in W..data.len() {
            h = h
                .wrapping_sub(u64::from(data[i - W]).wrapping_mul(pow))
                .wrapping_mul(B)
                .wrapping_add(u64::from(data[i]));
            out.push(h);
        }
        out
    };
    let mut index: std::collections::HashMap<u64, Vec<usize>> = Default::default();
    for (i, h) in hashes(source).into_iter().enumerate() {
        index.entry(h).or_default().push(i);
    }
    hashes(haystack).into_iter().enumerate().any(|(j, h)| {
        index
            .get(&h)
            .is_some_and(|is| is.iter().any(|&i| source[i..i + W] == haystack[j..j + W]))
    })
}

fn repository_leaks(site: &Site, source: &[u8]) -> Vec<String> {
    files(&site.path("repo"))
        .into_iter()
        .filter(|(_, bytes)| shares_64_bytes(source, bytes))
        .map(|(p, _)| p)
        .collect()
}

#[test]
fn no_64_byte_sequence_of_the_source_is_stored_and_the_scan_can_fail() {
    let source = fs::read(Site::new("").path("uploads/docs/noise.bin")).unwrap();

    // Without encryption zstd keeps incompressible data as raw blocks: the scan finds it.
    let plain = Site::new("");
    plain.backup();
    let leaks = repository_leaks(&plain, &source);
    assert!(
        !leaks.is_empty(),
        "the scan must find plaintext in a plain repository"
    );
    let r = plain.expect(0, &["doctor"]);
    assert!(r.stdout.contains("NOT encrypted"), "{}", r.both());
    let r = plain.expect(0, &["show", "latest"]);
    assert!(r.stdout.contains("encrypted: NO"), "{}", r.both());

    let enc = Site::new("passphrase = \"${AMBER_DR_PASSPHRASE}\"");
    let id = enc.backup();
    let leaks = repository_leaks(&enc, &source);
    assert!(leaks.is_empty(), "plaintext found in {leaks:?}");
    // Not even names: no artifact path holds a file name of the source.
    let stored = files(&enc.path("repo"));
    assert!(
        stored.keys().any(|k| k.starts_with("keys/data/")),
        "{stored:?}"
    );
    for (path, bytes) in &stored {
        assert!(
            !String::from_utf8_lossy(bytes).contains("noise.bin"),
            "{path} names a source file"
        );
        assert!(!String::from_utf8_lossy(bytes).contains(PASS), "{path}");
    }
    let r = enc.expect(0, &["show", &id]);
    assert!(r.stdout.contains("encrypted: yes"), "{}", r.both());
    let r = enc.expect(0, &["doctor"]);
    assert!(r.stdout.contains("encryption: encrypted"), "{}", r.both());
    enc.expect(0, &["verify", &id]);

    // Restore into an emptied directory: byte for byte.
    let before = files(&enc.path("uploads"));
    fs::remove_dir_all(enc.path("uploads")).unwrap();
    fs::create_dir_all(enc.path("uploads")).unwrap();
    enc.expect(0, &["restore", &id, "--yes"]);
    assert_eq!(files(&enc.path("uploads")), before);
}

#[test]
fn unusable_keys_are_exit_2_before_anything_is_written() {
    let site = Site::new("passphrase = \"${AMBER_DR_PASSPHRASE}\"");
    site.backup();
    let snapshot = files(&site.path("repo"));

    // Wrong passphrase.
    let r = site.expect_env(2, &["backup"], &[("AMBER_DR_PASSPHRASE", "wrong")]);
    assert!(r.stderr.contains("wrong passphrase"), "{}", r.both());
    assert!(!r.both().contains("wrong\n") && !r.both().contains(PASS));
    // Unset variable.
    let r = site.expect_env(2, &["backup"], &[]);
    assert!(r.stderr.contains("AMBER_DR_PASSPHRASE"), "{}", r.both());
    // Missing identity file.
    site.configure("identity_file = \"./no-such.key\"");
    let r = site.expect(2, &["backup"]);
    assert!(r.stderr.contains("no-such.key"), "{}", r.both());
    // An identity file that is not one.
    fs::write(site.path("bad.key"), "not a key\n").unwrap();
    site.configure("identity_file = \"./bad.key\"");
    site.expect(2, &["backup"]);
    // No encryption configured: an encrypted repository refuses plaintext writes.
    site.configure("");
    let r = site.expect(2, &["backup"]);
    assert!(r.stderr.contains("encrypted"), "{}", r.both());
    assert_eq!(files(&site.path("repo")), snapshot, "something was written");

    // A fresh repository with an unusable key is not even created.
    let fresh = Site::new("identity_file = \"./missing.key\"");
    fresh.expect(2, &["backup"]);
    assert!(files(&fresh.path("repo")).is_empty());
}

#[test]
fn tampering_is_found_by_verify_and_refused_by_restore() {
    let site = Site::new("passphrase = \"${AMBER_DR_PASSPHRASE}\"");
    let id = site.backup();
    let uploads = files(&site.path("uploads"));
    let repo = site.path("repo");
    let artifact = fs::read_dir(repo.join(&id).join("uploads"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "zst"))
        .unwrap();
    let original = fs::read(&artifact).unwrap();

    // A flipped ciphertext byte (same length: quick verify cannot see it).
    let mut bad = original.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x01;
    fs::write(&artifact, &bad).unwrap();
    let r = site.expect(3, &["verify", &id]);
    assert!(r.both().contains("uploads"), "{}", r.both());
    fs::write(
        site.path("uploads/readme.txt"),
        "changed after the backup\n",
    )
    .unwrap();
    let live = files(&site.path("uploads"));
    let r = site.run_env(
        &["restore", &id, "--yes", "--no-safety-backup"],
        &[("AMBER_DR_PASSPHRASE", PASS)],
    );
    assert_ne!(r.code, 0, "{}", r.both());
    assert_eq!(
        files(&site.path("uploads")),
        live,
        "restore touched the store"
    );
    fs::write(&artifact, &original).unwrap();
    site.expect(0, &["verify", &id]);

    // The manifest edited without the key: its public part (a size) and its sealed part.
    let mpath = repo.join(&id).join("manifest.json");
    let manifest = fs::read_to_string(&mpath).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    let art = &mut v["public"]["components"]["uploads"]["artifacts"][0];
    art["size"] = serde_json::json!(art["size"].as_u64().unwrap() + 1);
    fs::write(&mpath, serde_json::to_vec(&v).unwrap()).unwrap();
    let r = site.expect(3, &["verify", &id]);
    assert!(r.both().contains("edited"), "{}", r.both());
    let r = site.expect(3, &["restore", &id, "--yes"]);
    assert!(r.both().contains("manifest"), "{}", r.both());
    assert_eq!(files(&site.path("uploads")), live);

    let mut v: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    let s = v["sealed"].as_str().unwrap().to_string();
    let flipped = format!(
        "{}{}",
        &s[..100],
        if &s[100..101] == "A" { "B" } else { "A" }
    );
    v["sealed"] = serde_json::json!(format!("{flipped}{}", &s[101..]));
    fs::write(&mpath, serde_json::to_vec(&v).unwrap()).unwrap();
    site.expect(3, &["verify", &id]);
    site.expect(3, &["restore", &id, "--yes"]);

    // A plaintext manifest put in place of the sealed one is refused too.
    let plain = serde_json::to_vec(&v["public"]).unwrap();
    fs::write(&mpath, plain).unwrap();
    site.expect(3, &["verify", &id]);
    assert_eq!(files(&site.path("uploads")), live);

    fs::write(&mpath, manifest).unwrap();
    site.expect(0, &["verify", &id]);
    site.expect(0, &["restore", &id, "--yes"]);
    assert_eq!(files(&site.path("uploads")), uploads);
}

fn keygen(site: &Site, name: &str) -> String {
    let r = site.expect(0, &["key", "generate"]);
    fs::write(site.path(name), &r.stdout).unwrap();
    let public = r
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .unwrap()
        .to_string();
    assert!(public.starts_with("age1"), "{}", r.both());
    public
}

#[test]
fn a_write_only_host_backs_up_but_cannot_read_and_the_identity_holder_restores() {
    let site = Site::new("");
    let public = keygen(&site, "restore.key");
    // The backup host: recipients only.
    site.configure(&format!("recipients = [\"{public}\"]"));
    let id = site.backup();
    let r = site.expect(0, &["list"]);
    assert!(r.stdout.contains(&id), "{}", r.both());
    let r = site.expect(0, &["verify", &id, "--quick"]);
    assert!(r.stdout.contains("presence and sizes"), "{}", r.both());
    let r = site.expect(2, &["verify", &id]);
    assert!(r.stderr.contains("private key"), "{}", r.both());
    let before = files(&site.path("uploads"));
    fs::write(site.path("uploads/readme.txt"), "changed\n").unwrap();
    let live = files(&site.path("uploads"));
    let r = site.expect(2, &["restore", &id, "--yes"]);
    assert!(r.stderr.contains("private key"), "{}", r.both());
    assert_eq!(files(&site.path("uploads")), live);
    // A second backup from the write-only host (no secret kept between runs), and a prune
    // there: it may delete backups, never blobs it cannot account for.
    let id2 = site.backup();
    site.expect(0, &["prune", "--keep-last", "5"]);

    // The restore host: the same recipients plus the identity.
    site.configure(&format!(
        "recipients = [\"{public}\"]\nidentity_file = \"./restore.key\""
    ));
    site.expect(0, &["verify", &id]);
    site.expect(0, &["verify", &id2]);
    site.expect(0, &["restore", &id, "--yes"]);
    assert_eq!(files(&site.path("uploads")), before);

    // Another identity opens nothing: a clear exit 2.
    keygen(&site, "other.key");
    site.configure("identity_file = \"./other.key\"");
    let r = site.expect(2, &["verify", &id]);
    assert!(
        r.stderr.contains("none of this host's keys"),
        "{}",
        r.both()
    );
}

#[test]
fn key_add_list_remove_rotate_roundtrip() {
    let site = Site::new("passphrase = \"${AMBER_DR_PASSPHRASE}\"");
    let first = site.backup();
    let r = site.expect(0, &["key", "list"]);
    assert!(
        r.stdout.contains("slot") && r.stdout.contains("passphrase"),
        "{}",
        r.both()
    );

    // A second passphrase opens the repository.
    let r = site.expect_env(
        0,
        &["key", "add", "--passphrase-env", "NEWPASS"],
        &[("AMBER_DR_PASSPHRASE", PASS), ("NEWPASS", "second secret")],
    );
    let new_slot = r.stdout.trim().rsplit(' ').next().unwrap().to_string();
    site.expect_env(
        0,
        &["verify", &first],
        &[("AMBER_DR_PASSPHRASE", "second secret")],
    );

    // A recipient slot: its identity alone reads everything.
    let public = keygen(&site, "id.key");
    site.expect(0, &["key", "add", "--recipient", &public]);

    // Rotate: new backups use the new key; old and new stay readable by every slot.
    let r = site.expect(0, &["--json", "key", "rotate"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let current = v["current"].as_str().unwrap().to_string();
    let second = site.backup();
    let listed = site.expect(0, &["--json", "key", "list"]).stdout;
    assert!(listed.contains(&current), "{listed}");
    site.configure("identity_file = \"./id.key\"");
    site.expect(0, &["verify", &first]);
    site.expect(0, &["verify", &second]);
    site.configure("passphrase = \"${AMBER_DR_PASSPHRASE}\"");
    site.expect(0, &["verify", &second]);

    // Remove the second passphrase: it opens nothing any more.
    site.expect(0, &["key", "remove", &new_slot]);
    let r = site.expect_env(
        2,
        &["verify", &first],
        &[("AMBER_DR_PASSPHRASE", "second secret")],
    );
    assert!(r.stderr.contains("wrong passphrase"), "{}", r.both());
    site.expect(0, &["verify", &first]);
    // Never a secret in the keyring listing.
    let listed = site.expect(0, &["--json", "key", "list"]).stdout;
    assert!(
        !listed.contains("AGE-SECRET-KEY") && !listed.contains("wrapped"),
        "{listed}"
    );
    let ids: HashSet<String> = fs::read_dir(site.path("repo/keys/data"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(ids.len() >= 2, "{ids:?}");
}

#[test]
fn plaintext_backups_stay_readable_after_encryption_is_turned_on() {
    let site = Site::new("");
    let old = site.backup();
    let old_tree = files(&site.path("uploads"));
    site.configure("passphrase = \"${AMBER_DR_PASSPHRASE}\"");
    fs::write(site.path("uploads/readme.txt"), "second state\n").unwrap();
    let new = site.backup();
    let r = site.expect(0, &["show", &old]);
    assert!(r.stdout.contains("encrypted: NO"), "{}", r.both());
    let r = site.expect(0, &["show", &new]);
    assert!(r.stdout.contains("encrypted: yes"), "{}", r.both());
    site.expect(0, &["verify", &old]);
    site.expect(0, &["verify", &new]);
    site.expect(0, &["restore", &old, "--yes"]);
    assert_eq!(files(&site.path("uploads")), old_tree);
    // Without keys the old plaintext backup is still listed and readable, and no backup
    // can be written.
    site.configure("");
    site.expect(0, &["verify", &old]);
    site.expect(2, &["backup"]);
    let r = site.expect(2, &["verify", &new]);
    assert!(r.stderr.contains("private key"), "{}", r.both());
}

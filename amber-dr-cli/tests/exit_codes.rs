//! The exit codes that README.md, amber-dr-cli/README.md and `--help` document are the codes
//! the binary has (`amber_dr_cli::exit`) and returns: each one is produced here by a real run.
#![allow(missing_docs, clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use amber_dr_cli::exit;

const BIN: &str = env!("CARGO_BIN_EXE_amber-dr");

/// The codes of the `| N | meaning |` rows of the "## Exit codes" section of a README.
fn readme_codes(path: &str) -> BTreeSet<i32> {
    let text = fs::read_to_string(path).unwrap();
    let section = text
        .split("## Exit codes")
        .nth(1)
        .unwrap_or_else(|| panic!("{path} has no `## Exit codes` section"));
    let section = section.split("\n## ").next().unwrap_or(section);
    section
        .lines()
        .filter_map(|l| l.trim().strip_prefix('|'))
        .filter_map(|l| l.split('|').next())
        .filter_map(|c| c.trim().parse().ok())
        .collect()
}

fn help_codes() -> BTreeSet<i32> {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = text
        .lines()
        .find(|l| l.starts_with("Exit codes:"))
        .unwrap_or_else(|| panic!("no `Exit codes:` line in --help:\n{text}"));
    line.trim_start_matches("Exit codes:")
        .split(',')
        .filter_map(|p| p.split_whitespace().next())
        .filter_map(|n| n.parse().ok())
        .collect()
}

fn run(dir: &std::path::Path, args: &[&str]) -> i32 {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_remove("AMBER_DR_CONFIG")
        .stdin(Stdio::null())
        .output()
        .unwrap()
        .status
        .code()
        .unwrap_or(-1)
}

#[test]
fn documented_exit_codes_are_the_binarys() {
    let binary: BTreeSet<i32> = [
        exit::OK,
        exit::FAILURE,
        exit::USAGE,
        exit::DAMAGE,
        exit::DANGLING,
        exit::INTERRUPTED,
    ]
    .into();
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
    let cli = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
    assert_eq!(readme_codes(root), binary, "README.md");
    assert_eq!(readme_codes(cli), binary, "amber-dr-cli/README.md");
    assert_eq!(help_codes(), binary, "--help");

    // Each documented code, produced by a real run.
    let site = tempfile::tempdir().unwrap();
    let dir = site.path();
    fs::write(
        dir.join("amber-dr.toml"),
        "[repository]\nurl = \"./repo\"\n\n[components.uploads]\nkind = \"files\"\npath = \"./uploads\"\n\n[components.other]\nkind = \"files\"\npath = \"./other\"\n\n[[references]]\nname = \"copies\"\nfrom = { component = \"uploads\" }\nto = { component = \"other\" }\n",
    )
    .unwrap();
    fs::create_dir_all(dir.join("uploads")).unwrap();
    fs::create_dir_all(dir.join("other")).unwrap();
    fs::write(dir.join("uploads/a.txt"), "a".repeat(10_000)).unwrap();
    let mut seen = BTreeSet::new();
    seen.insert(run(dir, &["backup"]));
    // 4: uploads/a.txt has no copy in other/.
    seen.insert(run(dir, &["verify", "--references", "latest"]));
    seen.insert(run(dir, &["show", "20990101_000000"]));
    seen.insert(run(dir, &["backup", "--no-such-option"]));
    let ids: Vec<_> = fs::read_dir(dir.join("repo"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("20"))
        .collect();
    let artifact = fs::read_dir(ids[0].path().join("uploads"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "zst"))
        .unwrap();
    fs::write(&artifact, b"damaged").unwrap();
    seen.insert(run(dir, &["verify", "latest"]));

    // 130: SIGINT while a backup of 256 MiB of incompressible data runs.
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut f = fs::File::create(dir.join("uploads/big.bin")).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    for _ in 0..256 {
        for chunk in buf.chunks_mut(8) {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            chunk.copy_from_slice(&x.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_le_bytes());
        }
        f.write_all(&buf).unwrap();
    }
    drop(f);
    let mut child = Command::new(BIN)
        .arg("backup")
        .current_dir(dir)
        .env_remove("AMBER_DR_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !dir.join("repo/locks/repository.lock").exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the backup ended too early"
        );
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(100));
    assert!(Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    seen.insert(child.wait().unwrap().code().unwrap_or(-1));
    assert_eq!(seen, binary, "codes the binary returned");
}

//! The runbook's `uploads.tar.gz`, made by GNU tar the way the runbook does, restored through
//! `Runner::restore_legacy`; a hostile runbook archive is refused.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use amber_dr_core::{testkit, Component, RestorePlanOptions, Runner, Selection};
use amber_dr_files::{Files, FilesConfig};
use sha2::{Digest, Sha256};

/// Path, type, permission bits, content hash and link target of every entry (no times: GNU
/// tar keeps whole seconds only).
fn listing(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let mut entries: Vec<_> = fs::read_dir(dir).unwrap().flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let m = fs::symlink_metadata(&p).unwrap();
            let mode = m.mode() & 0o7777;
            if m.file_type().is_symlink() {
                out.push(format!("{rel} -> {}", fs::read_link(&p).unwrap().display()));
            } else if m.is_dir() {
                out.push(format!("{rel}/ {mode:o}"));
                walk(root, &p, out);
            } else {
                let sha = hex::encode(Sha256::digest(fs::read(&p).unwrap()));
                out.push(format!("{rel} {mode:o} {sha}"));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out
}

fn tar_czf(out: &Path, cwd: &Path, what: &str) {
    let st = Command::new("tar")
        .arg("czf")
        .arg(out)
        .arg("-C")
        .arg(cwd)
        .arg(what)
        .status()
        .expect("GNU tar");
    assert!(st.success());
}

async fn restore(
    runner: &Runner,
    dir: &Path,
    dry_run: bool,
) -> amber_dr_core::Result<amber_dr_core::RestoreOutcome> {
    let mut plan = RestorePlanOptions {
        selection: Selection {
            only: vec!["uploads".into()],
            skip: vec![],
        },
        ..Default::default()
    };
    plan.options = plan.options.dry_run(dry_run);
    runner.restore_legacy(dir, &plan).await
}

#[tokio::test]
async fn runbook_uploads_archives_restore_in_every_layout() {
    let base = tempfile::tempdir().unwrap();
    let src = base.path().join("srv/amber/uploads");
    common::populate(&src, 3);
    let expected = listing(&src);
    let runbook = base.path().join("backups/20250101_020000");
    fs::create_dir_all(&runbook).unwrap();
    let live = base.path().join("live/uploads");
    common::populate(&live, 9);
    let (repo, _g) = testkit::temp_repo();
    let files: Arc<dyn Component> = Arc::new(Files::new("uploads", FilesConfig::new(&live)));
    // The four files of Amber's runbook backups (what the CLI passes).
    let runner = Runner::new(repo, vec![files]).with_runbook_files(vec![
        "postgres.sql",
        "neo4j.cypher",
        "minio_data.tar.gz",
        "uploads.tar.gz",
    ]);
    let archive = runbook.join("uploads.tar.gz");
    // The runbook's own form, an archive of `.`, and one made from `/` with a long prefix.
    for (cwd, what) in [
        (base.path().join("srv/amber"), "uploads"),
        (src.clone(), "."),
        (base.path().to_path_buf(), "srv/amber/uploads"),
    ] {
        tar_czf(&archive, &cwd, what);
        let before = listing(&live);
        let dry = restore(&runner, &runbook, true).await.unwrap();
        assert!(dry.is_ok(), "{:?}", dry.components);
        assert_eq!(listing(&live), before, "a dry run changes nothing");
        let out = restore(&runner, &runbook, false).await.unwrap();
        assert!(out.is_ok(), "{what}: {:?}", out.components);
        assert_eq!(
            listing(&live),
            expected,
            "archive of `{what}` from {}",
            cwd.display()
        );
        assert!(out.safety_backup.is_none());
        common::unlock(&live);
        common::populate(&live, 9);
    }

    // Without --only, the other runbook parts are missing: refused, listing them.
    let err = runner
        .restore_legacy(&runbook, &RestorePlanOptions::default())
        .await
        .unwrap_err()
        .to_string();
    for f in ["postgres.sql", "neo4j.cypher", "minio_data.tar.gz"] {
        assert!(err.contains(f), "{err}");
    }
    assert!(err.contains("--only uploads"), "{err}");

    // An empty or damaged archive is refused and the live directory stays as it was.
    let before = listing(&live);
    fs::write(&archive, b"").unwrap();
    let err = restore(&runner, &runbook, false)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("uploads.tar.gz") && err.contains("empty"),
        "{err}"
    );
    tar_czf(&archive, &base.path().join("srv/amber"), "uploads");
    let len = fs::metadata(&archive).unwrap().len();
    let f = fs::OpenOptions::new().write(true).open(&archive).unwrap();
    f.set_len(len / 2).unwrap();
    let out = restore(&runner, &runbook, false).await.unwrap();
    let err = out.components[0].error.clone().unwrap_or_default();
    assert!(err.contains("uploads.tar.gz"), "{err}");
    assert_eq!(
        listing(&live),
        before,
        "a truncated archive changes nothing"
    );
    common::unlock(base.path());
}

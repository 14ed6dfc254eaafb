//! Issue 17: a chunked backup's index is input like a tar archive — a forged or damaged
//! `tree.jsonl` (paths with `..`, absolute paths, an entry through a symlink it created, an
//! entry whose directory is not listed, a path twice or out of order, a slice outside its
//! blob) is refused before the swap, nothing is written outside the staging directory, and the
//! live directory stays as it was.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::path::Path;

use amber_dr_core::testkit;
use amber_dr_core::{Component, ComponentRecord, Error, Progress, ReadContext, RestoreOptions};
use amber_dr_files::{Files, FilesConfig, FilesFormat};
use tokio::io::AsyncWriteExt;

const ID: &str = "20260101_000000";

async fn restore_index(lines: &[&str], target: &Path) -> amber_dr_core::Result<()> {
    let (repo, _guard) = testkit::temp_repo();
    let mut w = repo
        .create_artifact(ID, "uploads", "tree.jsonl", Progress::none())
        .await
        .unwrap();
    for l in lines {
        w.write_all(l.as_bytes()).await.unwrap();
        w.write_all(b"\n").await.unwrap();
    }
    let art = w.finish().await.unwrap();
    let mut rec = ComponentRecord::new("files", "uploads");
    rec.artifacts.push(art);
    rec.details = serde_json::json!({
        "absent": false, "source": "x", "root_mode": 493,
        "root_mtime": {"secs": 0, "nanos": 0}, "fingerprint": "",
        "stats": {"files": 0, "directories": 0, "symlinks": 0, "bytes": 0},
        "format": "chunked-v1"
    });
    let files = Files::new(
        "uploads",
        FilesConfig::new(target).format(FilesFormat::Chunked),
    );
    let cx = ReadContext::new(repo.clone(), ID, Progress::none());
    files
        .restore(&cx, &rec, &RestoreOptions::default())
        .await
        .map(|_| ())
}

const MT: &str = r#""mt":{"secs":0,"nanos":0}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_index_entries_are_refused_and_nothing_outside_changes() {
    let base = tempfile::tempdir().unwrap();
    let target = base.path().join("uploads");
    common::populate(&target, 1);
    let before = common::fingerprint(&target);
    let f = |p: &str| format!(r#"{{"p":"{p}","t":"f","m":420,{MT}}}"#);
    let d = |p: &str| format!(r#"{{"p":"{p}","t":"d","m":493,{MT}}}"#);
    let l = |p: &str, to: &str| format!(r#"{{"p":"{p}","t":"l","l":"{to}",{MT}}}"#);
    let out = base.path().to_string_lossy().into_owned();
    let cases: Vec<(&str, Vec<String>, &str)> = vec![
        ("dot-dot", vec![f("../escaped")], "`..`"),
        ("absolute", vec![f(&format!("{out}/escaped"))], "absolute"),
        (
            "through a symlink",
            vec![l("a", &out), f("a/escaped")],
            "through the symlink",
        ),
        ("parent not listed", vec![f("nodir/x")], "not listed"),
        ("twice", vec![f("x"), f("x")], "listed twice"),
        ("out of order", vec![f("b"), f("a")], "out of order"),
        (
            "directory after its symlink",
            vec![l("a", "/tmp"), d("a")],
            "out of order",
        ),
    ];
    for (what, lines, want) in cases {
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let err = restore_index(&refs, &target).await.expect_err(what);
        assert!(
            matches!(err, Error::Unsafe { .. }) && err.to_string().contains(want),
            "{what}: {err}"
        );
        assert!(
            !base.path().join("escaped").exists(),
            "{what}: wrote outside"
        );
        assert_eq!(
            common::fingerprint(&target),
            before,
            "{what}: target changed"
        );
    }
    // A slice outside its blob, and pieces that do not add up to the length: damage.
    let bad = [
        format!(
            r#"{{"p":"x","t":"f","m":420,{MT},"s":10,"c":[["{}",5,0,10]]}}"#,
            "a".repeat(64)
        ),
        format!(
            r#"{{"p":"x","t":"f","m":420,{MT},"s":10,"c":[["{}",50,0,5]]}}"#,
            "a".repeat(64)
        ),
        "not json".to_string(),
    ];
    for line in &bad {
        let err = restore_index(&[line.as_str()], &target)
            .await
            .expect_err(line);
        assert!(err.is_damage(), "{line}: {err}");
        assert_eq!(common::fingerprint(&target), before);
    }
    let siblings: Vec<String> = std::fs::read_dir(base.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(siblings, vec!["uploads".to_string()], "staging left behind");
}

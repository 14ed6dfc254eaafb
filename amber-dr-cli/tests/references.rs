//! `[[references]]` through the real binary, against the local stack: Postgres `docs` rows name
//! an upload file and an S3 object (the demo's data shape). Checked at backup (summary, JSON,
//! `fail_on_dangling`), by `verify --references` (exit 4) and after a restore (against the live
//! stores); the dangling cases are made with tools outside amber-dr (psql, boto3, std::fs).
//! And the ordering: an application writing objects, files and rows continuously during the
//! backup (not quiesced) — every reference recorded in the backup resolves.
// test-lane: stores (uses the Postgres cluster, whose global state other tests change)
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::{amber, cleanup, json, missing, site, Stack, DOCS};

use serde_json::Value;

/// The application: for ever, one document after another — object, file, then the row that
/// names them (the order an application that never loses a reference writes in).
const WRITER_PY: &str = r#"
import os, sys, time, subprocess, boto3
from botocore.config import Config
endpoint, access, secret, bucket, uploads, psql, db, stop = sys.argv[1:]
s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=access,
                  aws_secret_access_key=secret, region_name="us-east-1",
                  config=Config(s3={"addressing_style": "path"},
                                request_checksum_calculation="when_required",
                                response_checksum_validation="when_required"))
p = subprocess.Popen([psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", db],
                     stdin=subprocess.PIPE, text=True)
i = 100000
while not os.path.exists(stop):
    i += 1
    s3.put_object(Bucket=bucket, Key="docs/%d" % i, Body=b"x")
    with open(os.path.join(uploads, "docs", "%d.pdf" % i), "w") as f:
        f.write("x")
    p.stdin.write("INSERT INTO docs VALUES (%d, 'docs/%d.pdf', 'docs/%d');\n" % (i, i, i))
    p.stdin.flush()
p.stdin.close()
p.wait()
print(i - 100000)
"#;

/// The reference `name` of a backup's or verify's JSON.
fn reference<'a>(v: &'a Value, name: &str) -> &'a Value {
    let list = v
        .get("references")
        .or_else(|| v.get("checks"))
        .or_else(|| v.get("outcome").and_then(|o| o.get("references")))
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("no references in {v}"));
    list.iter()
        .find(|r| r["spec"]["name"] == name)
        .unwrap_or_else(|| panic!("no reference `{name}` in {v}"))
}

fn counts(r: &Value) -> (u64, u64, Vec<String>) {
    assert!(r.get("error").is_none(), "reference not checked: {r}");
    let first = r
        .get("first_dangling")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(|k| k.as_str().unwrap().to_string()).collect())
        .unwrap_or_default();
    (
        r["checked"].as_u64().unwrap(),
        r["dangling"].as_u64().unwrap(),
        first,
    )
}

#[test]
fn references_are_checked_at_backup_verify_and_restore() {
    let Some(s) = Stack::get() else {
        missing("the local stack (S3, boto3 and Postgres env from scripts/stack.sh)");
        return;
    };
    let site = site(&s, "main", "");
    let dir = site.dir.path();

    // A clean backup: every reference resolves.
    let b1 = json(dir, &["backup", "--json"], 0);
    assert_eq!(
        counts(reference(&b1, "document files")),
        (DOCS as u64, 0, vec![])
    );
    assert_eq!(
        counts(reference(&b1, "document objects")),
        (DOCS as u64 + 1, 0, vec![])
    );
    let id1 = b1["id"].as_str().unwrap().to_string();
    let v = json(dir, &["verify", "--references", &id1, "--json"], 0);
    assert_eq!(v["ok"], true, "{v}");
    let (code, out, _) = amber(dir, &["backup"]);
    assert_eq!(code, 0);
    assert!(out.contains("references: 2 declared, all resolve"), "{out}");

    // One object and one upload file lost before a backup: exactly those dangle, as a warning.
    s.s3("delete", &site.bucket, &["docs/7".to_string()]);
    std::fs::remove_file(dir.join("uploads/docs/9.pdf")).unwrap();
    let (code, out, err) = amber(dir, &["backup"]);
    assert_eq!(code, 0, "a dangling reference is a warning: {out}{err}");
    assert!(
        out.contains(&format!("DANGLING    document objects (postgres/{} -> minio): {} checked, 1 dangling (first: {}/docs/7)", site.db, DOCS + 1, site.bucket)),
        "{out}"
    );
    assert!(
        err.contains("warning: reference `document files` does not resolve"),
        "{err}"
    );
    let id2 = out.lines().last().unwrap().trim().to_string();
    let v = json(dir, &["verify", "--references", &id2, "--json"], 4);
    assert_eq!(
        counts(reference(&v, "document files")),
        (DOCS as u64, 1, vec!["docs/9.pdf".to_string()])
    );
    assert_eq!(
        counts(reference(&v, "document objects")),
        (DOCS as u64 + 1, 1, vec![format!("{}/docs/7", site.bucket)])
    );
    let (code, out, _) = amber(dir, &["verify", "--references", &id2]);
    assert_eq!(code, 4, "{out}");
    // The older backup still resolves, read from its artifacts alone.
    json(dir, &["verify", "--references", &id1, "--json"], 0);

    // A partial restore of an older Postgres whose rows name objects deleted since: the check
    // against the live stores finds exactly those (exit 4), after a restore that did happen.
    s.s3("put", &site.bucket, &["docs/7".to_string()]);
    std::fs::write(dir.join("uploads/docs/9.pdf"), "pdf").unwrap();
    s.psql(&site.db, "DELETE FROM docs WHERE id = 12");
    s.s3("delete", &site.bucket, &["docs/12".to_string()]);
    let r = json(
        dir,
        &["restore", &id1, "--only", "postgres", "--yes", "--json"],
        4,
    );
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(
        s.psql(&site.db, "SELECT count(*) FROM docs WHERE id = 12")
            .trim(),
        "1",
        "the restore happened"
    );
    assert_eq!(
        counts(reference(&r, "document objects")),
        (DOCS as u64 + 1, 1, vec![format!("{}/docs/12", site.bucket)])
    );
    assert_eq!(
        counts(reference(&r, "document files")),
        (DOCS as u64, 0, vec![])
    );
    // Skipped on request.
    let r = json(
        dir,
        &[
            "restore",
            &id1,
            "--only",
            "postgres",
            "--yes",
            "--json",
            "--no-check-references",
        ],
        0,
    );
    assert!(r["outcome"].get("references").is_none(), "{r}");
    cleanup(&s, &site);
}

#[test]
fn fail_on_dangling_fails_the_backup_and_bad_references_are_config_errors() {
    let Some(s) = Stack::get() else {
        missing("the local stack (S3, boto3 and Postgres env from scripts/stack.sh)");
        return;
    };
    let site = site(
        &s,
        "strict",
        r#"
[[references]]
name = "strict files"
from = { component = "postgres", database = "DBNAME", query = "SELECT upload_path FROM docs" }
to = { component = "uploads" }
fail_on_dangling = true
"#,
    );
    let dir = site.dir.path();
    let cfg = dir.join("amber-dr.toml");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("DBNAME", &site.db);
    std::fs::write(&cfg, &text).unwrap();
    json(dir, &["backup", "--json"], 0);
    std::fs::remove_file(dir.join("uploads/docs/3.pdf")).unwrap();
    let (code, out, err) = amber(dir, &["backup"]);
    assert_eq!(code, 4, "{out}{err}");
    assert!(err.contains("fail_on_dangling = true"), "{err}");
    let (code, out, _) = amber(dir, &["list", "--json"]);
    assert_eq!(code, 0);
    let list: Value = serde_json::from_str(&out).unwrap();
    let statuses: Vec<String> = list
        .as_array()
        .or_else(|| list.get("backups").and_then(Value::as_array))
        .unwrap()
        .iter()
        .map(|b| b["status"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(statuses.iter().any(|s| s == "failed"), "{statuses:?}");

    // A reference to a component that does not exist; a query end on a files component; a
    // cycle: each a configuration error (exit 2) naming the entry.
    for (bad, says) in [
        (
            "from = { component = \"postgres\", database = \"x\", query = \"SELECT 1\" }\nto = { component = \"nope\" }",
            "references[3]",
        ),
        (
            "from = { component = \"uploads\", query = \"SELECT 1\" }\nto = { component = \"minio\" }",
            "cannot run a reference `query`",
        ),
        (
            "from = { component = \"minio\" }\nto = { component = \"postgres\", database = \"x\", query = \"SELECT 1\" }",
            "cycle",
        ),
    ] {
        std::fs::write(
            &cfg,
            format!("{text}\n[[references]]\nname = \"bad\"\n{bad}\n"),
        )
        .unwrap();
        let (code, out, err) = amber(dir, &["backup"]);
        assert_eq!(code, 2, "{bad}: {out}{err}");
        assert!(err.contains(says), "{bad}: {err}");
    }
    cleanup(&s, &site);
}

#[test]
fn references_written_during_an_unquiesced_backup_resolve() {
    let Some(s) = Stack::get() else {
        missing("the local stack (S3, boto3 and Postgres env from scripts/stack.sh)");
        return;
    };
    let site = site(&s, "busy", "");
    let dir = site.dir.path();
    let stop = dir.join("stop-writer");
    let mut cmd = Command::new(&s.python);
    cmd.args([
        "-c",
        WRITER_PY,
        &s.s3,
        &s.access,
        &s.secret,
        &site.bucket,
        dir.join("uploads").to_str().unwrap(),
        &format!("{}/psql", s.pg_bindir),
        &site.db,
        stop.to_str().unwrap(),
    ])
    .stdout(std::process::Stdio::piped());
    s.pg_env(&mut cmd);
    let writer = cmd.spawn().unwrap();
    // Wait until the application has written beyond the seeded documents (a fixed sleep was
    // too short on a slow machine: the first backup then saw no new row).
    let started = std::time::Instant::now();
    loop {
        let mut q = Command::new(format!("{}/psql", s.pg_bindir));
        q.args(["-XAtq", "-d", &site.db, "-c", "SELECT count(*) FROM docs"]);
        s.pg_env(&mut q);
        let out = q.output().unwrap();
        let n: u64 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0);
        if n > DOCS as u64 + 2 {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(120),
            "the application wrote no document in 120 s ({n} rows; psql: {})",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let mut backups = Vec::new();
    for _ in 0..3 {
        backups.push(json(dir, &["backup", "--json"], 0));
    }
    std::fs::write(&stop, "").unwrap();
    let out = writer.wait_with_output().unwrap();
    let written: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert!(
        written > 20,
        "the application wrote only {written} documents"
    );
    for b in &backups {
        for name in ["document files", "document objects"] {
            let (checked, dangling, first) = counts(reference(b, name));
            assert!(checked > DOCS as u64, "{name}: {checked}");
            assert_eq!(dangling, 0, "{name}: {first:?} (backup {})", b["id"]);
        }
        let cut = &b["cut"];
        assert_eq!(cut["class"], "crash-consistent", "{cut}");
        assert!(cut["skew_ms"].as_u64().unwrap() > 0, "{cut}");
        // The referrer was cut before the referred snapshots started.
        let pg_cut = b["components"]["postgres"]["consistency"]["cut_at"]
            .as_str()
            .unwrap()
            .to_string();
        for c in ["minio", "uploads"] {
            let started = b["components"][c]["started_at"].as_str().unwrap();
            let (a, b) = (
                chrono::DateTime::parse_from_rfc3339(&pg_cut).unwrap(),
                chrono::DateTime::parse_from_rfc3339(started).unwrap(),
            );
            assert!(a <= b, "{c} started at {b} before postgres's cut {a}");
        }
    }
    // The rows written during the backups were many: at least one backup holds documents
    // newer than the first backup's, and all of them resolve.
    let first = counts(reference(&backups[0], "document objects")).0;
    let last = counts(reference(&backups[2], "document objects")).0;
    assert!(last > first, "{first} vs {last}");
    cleanup(&s, &site);
}

//! `amber-dr drill` through the real binary, against the local stack (Postgres, S3, an uploads
//! directory; the demo's data shape): a drill passes and leaves nothing behind; the live
//! stores are unchanged (compared with psql, boto3 and std::fs); the report is stored as JSON
//! and HTML, `list` shows the result, the metrics file gets the drill's gauges, `report` writes
//! the history page, and both pages are opened in headless Chromium (no console errors, the
//! components and the RTO shown; screenshots written for docs/). A drill interrupted with
//! SIGTERM cleans up itself; one killed with SIGKILL leaves its targets on record, and
//! `drill --cleanup` removes them.
// test-lane: stores (uses the Postgres cluster, whose global state other tests change)
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{amber, cleanup, env, json, missing, site, Site, Stack, DOCS};
use serde_json::Value;

/// What drills left where the independent tools look: scratch databases (psql), buckets
/// (boto3), directories under the site's scratch dir.
fn leftovers(s: &Stack, site: &Site) -> Vec<String> {
    let mut left: Vec<String> = s
        .psql(
            "postgres",
            &format!(
                "SELECT datname FROM pg_database WHERE datname LIKE '{}\\_drill\\_%'",
                &site.db[..site.db.len().min(20)]
            ),
        )
        .lines()
        .map(|l| format!("database {l}"))
        .collect();
    let out = Command::new(&s.python)
        .args(["-c", BUCKETS_PY, &s.s3, &s.access, &s.secret, &site.bucket])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    left.extend(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|b| format!("bucket {b}")),
    );
    if let Ok(rd) = std::fs::read_dir(site.dir.path().join("scratch")) {
        left.extend(rd.map(|e| format!("path {}", e.unwrap().path().display())));
    }
    left
}

/// boto3: the buckets whose name starts with the given bucket's (its scratch copies).
const BUCKETS_PY: &str = r#"
import sys, boto3
from botocore.config import Config
endpoint, access, secret, bucket = sys.argv[1:]
s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=access,
                  aws_secret_access_key=secret, region_name="us-east-1",
                  config=Config(s3={"addressing_style": "path"}))
for b in s3.list_buckets()["Buckets"]:
    if b["Name"].startswith(bucket[:40]) and "drill-" in b["Name"]:
        print(b["Name"])
"#;

/// The live stores, described by psql, boto3 and a walk of the uploads directory.
fn live(s: &Stack, site: &Site) -> String {
    let rows = s.psql(
        &site.db,
        "SELECT md5(string_agg(d::text, ',' ORDER BY id)) FROM docs d",
    );
    let out = Command::new(&s.python)
        .args(["-c", LIST_PY, &s.s3, &s.access, &s.secret, &site.bucket])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut files = Vec::new();
    walk(&site.dir.path().join("uploads"), &mut files);
    files.sort();
    format!(
        "{rows}\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        files.join("\n")
    )
}

const LIST_PY: &str = r#"
import sys, boto3, hashlib
from botocore.config import Config
endpoint, access, secret, bucket = sys.argv[1:]
s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=access,
                  aws_secret_access_key=secret, region_name="us-east-1",
                  config=Config(s3={"addressing_style": "path"}))
for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
    body = s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
    print(o["Key"], hashlib.sha256(body).hexdigest())
"#;

fn walk(dir: &Path, out: &mut Vec<String>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else {
            let bytes = std::fs::read(&p).unwrap();
            out.push(format!(
                "{} {} {:x}",
                p.display(),
                bytes.len(),
                md5ish(&bytes)
            ));
        }
    }
}

/// A cheap content digest (FNV-1a), enough to see a changed file.
fn md5ish(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf29ce484222325u64, |h, x| {
        (h ^ u64::from(*x)).wrapping_mul(0x100000001b3)
    })
}

/// Headless Chromium on `page`: a screenshot into `png`, the DOM returned; console errors fail.
fn chromium(page: &Path, png: &Path) -> String {
    let Some(bin) = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|b| Command::new(b).arg("--version").output().is_ok())
    else {
        missing("Debian's chromium (scripts/test.sh installs it)");
        return String::new();
    };
    let url = format!("file://{}", page.display());
    let common = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--enable-logging=stderr",
        "--v=0",
        "--window-size=1280,1500",
    ];
    let shot = Command::new(bin)
        .args(common)
        .arg(format!("--screenshot={}", png.display()))
        .arg(&url)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&shot.stderr);
    assert!(shot.status.success(), "chromium failed: {log}");
    let console: Vec<&str> = log.lines().filter(|l| l.contains("CONSOLE")).collect();
    assert!(console.is_empty(), "console messages in {url}: {console:?}");
    assert!(
        std::fs::metadata(png).unwrap().len() > 10_000,
        "empty screenshot"
    );
    let dom = Command::new(bin)
        .args(common)
        .arg("--dump-dom")
        .arg(&url)
        .stderr(Stdio::null())
        .output()
        .unwrap();
    String::from_utf8_lossy(&dom.stdout).into_owned()
}

/// Where the screenshots go: `AMBER_DR_SCREENSHOTS` (docs/ when refreshing them), else target.
fn screenshot_dir() -> PathBuf {
    let dir = env("AMBER_DR_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

const DRILL: &str = "\n[drill]\ndir = \"./scratch\"\nrto_budget_seconds = 600\n";

#[test]
fn a_drill_restores_into_scratch_targets_checks_reports_and_leaves_nothing() {
    let Some(s) = Stack::get() else {
        missing("the local stack (S3, boto3 and Postgres env from scripts/stack.sh)");
        return;
    };
    let site = site(&s, "drl", DRILL);
    let dir = site.dir.path();
    let b = json(dir, &["--json", "backup"], 0);
    let id = b["id"].as_str().unwrap().to_string();
    let before = live(&s, &site);

    let metrics = dir.join("amber.prom");
    let m = metrics.to_str().unwrap();
    let (code, out, err) = amber(dir, &["--metrics-file", m, "drill", &id]);
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    for name in ["postgres", "minio", "uploads"] {
        assert!(out.contains(&format!("  {name} (")), "{out}");
    }
    assert!(out.contains("measured RTO:"), "{out}");
    assert_eq!(leftovers(&s, &site), Vec::<String>::new());
    assert_eq!(live(&s, &site), before, "the drill changed the live stores");
    let prom = std::fs::read_to_string(&metrics).unwrap();
    for g in [
        "amber_dr_drill_last_success_timestamp_seconds ",
        "amber_dr_drill_rto_seconds ",
        "amber_dr_backup_age_seconds ",
        "amber_dr_drill_last_run_success 1",
    ] {
        assert!(prom.contains(g), "{g} not in {prom}");
    }

    // JSON: every component passed, both references resolve in the scratch copies with the
    // backup's counts, every scratch target removed; the report is in the repository.
    let v = json(dir, &["--json", "drill", "latest"], 0);
    let r = &v["report"];
    assert_eq!(r["state"], "passed", "{v}");
    let comps = r["components"].as_array().unwrap();
    assert_eq!(comps.len(), 3, "{v}");
    assert!(comps.iter().all(|c| c["result"] == "passed"), "{v}");
    for rf in r["references"].as_array().unwrap() {
        assert_eq!(rf["dangling"], 0, "{rf}");
        assert!(rf["checked"].as_u64().unwrap() >= u64::from(DOCS), "{rf}");
    }
    assert_eq!(r["references"].as_array().unwrap().len(), 2, "{v}");
    assert!(
        r["scratch"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["state"] == "removed"),
        "{v}"
    );
    let html = PathBuf::from(v["report_html"].as_str().unwrap());
    assert!(html.starts_with(dir.join("repo")), "{html:?}");
    let stored: Value =
        serde_json::from_slice(&std::fs::read(v["report_json"].as_str().unwrap()).unwrap())
            .unwrap();
    assert_eq!(stored["id"], r["id"]);

    // `list` shows each backup's last drill.
    let (code, out, _) = amber(dir, &["list"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("LAST DRILL") && out.contains("passed ("),
        "{out}"
    );
    let l = json(dir, &["--json", "list"], 0);
    assert_eq!(l[0]["last_drill"]["state"], "passed", "{l}");

    // A reference that dangles: one upload file deleted, a new backup, its drill fails (4).
    std::fs::remove_file(dir.join("uploads/docs/3.pdf")).unwrap();
    json(dir, &["--json", "backup"], 0);
    let v = json(dir, &["--json", "drill"], 4);
    let refs = v["report"]["references"].as_array().unwrap();
    let files = refs
        .iter()
        .find(|r| r["spec"]["name"] == "document files")
        .unwrap();
    assert_eq!(files["dangling"], 1, "{v}");
    assert_eq!(leftovers(&s, &site), Vec::<String>::new());

    // The pages, in a real browser.
    let (code, out, err) = amber(dir, &["report", "-o", "history.html"]);
    assert_eq!(code, 0, "{out}{err}");
    let shots = screenshot_dir();
    let dom = chromium(&html, &shots.join("drill-report.png"));
    if !dom.is_empty() {
        for name in ["postgres", "minio", "uploads", "Measured RTO", "Timeline"] {
            assert!(dom.contains(name), "{name} not on the drill page");
        }
        assert!(dom.contains("id=\"rto\""), "no RTO on the drill page");
        let dom = chromium(&dir.join("history.html"), &shots.join("history-report.png"));
        for text in ["Drill RTO", "Backup size", &id, "passed", "FAILED"] {
            assert!(dom.contains(text), "{text} not on the history page");
        }
    }
    cleanup(&s, &site);
}

/// Start a drill and send `signal` as soon as it has created a scratch target.
fn drill_and_signal(dir: &Path, signal: &str) -> std::process::Output {
    let child = Command::new(env!("CARGO_BIN_EXE_amber-dr"))
        .current_dir(dir)
        .args(["drill"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let scratch = dir.join("scratch");
    let t0 = Instant::now();
    loop {
        let started = std::fs::read_dir(&scratch).is_ok_and(|mut rd| rd.next().is_some());
        if started {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "the drill never started"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(150));
    let st = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    child.wait_with_output().unwrap()
}

#[test]
fn an_interrupted_drill_cleans_up_and_a_killed_one_is_cleaned_up_later() {
    let Some(s) = Stack::get() else {
        missing("the local stack (S3, boto3 and Postgres env from scripts/stack.sh)");
        return;
    };
    let site = site(&s, "sig", DRILL);
    let dir = site.dir.path();
    // Enough data that the drill takes a while: 48 MiB of incompressible files.
    let big = dir.join("uploads/big");
    std::fs::create_dir_all(&big).unwrap();
    let mut seed = 0x9e3779b97f4a7c15u64;
    for i in 0..48 {
        let mut buf = vec![0u8; 1 << 20];
        for chunk in buf.chunks_mut(8) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            chunk.copy_from_slice(&seed.to_le_bytes()[..chunk.len()]);
        }
        std::fs::write(big.join(format!("{i}.bin")), buf).unwrap();
    }
    json(dir, &["--json", "backup"], 0);
    let before = live(&s, &site);

    // SIGTERM: the drill stops, removes its targets itself, exits 130.
    let out = drill_and_signal(dir, "-TERM");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(130),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("interrupted"), "{stdout}");
    assert_eq!(leftovers(&s, &site), Vec::<String>::new());

    // SIGKILL: its targets stay, on record; `drill --cleanup` removes them.
    let out = drill_and_signal(dir, "-KILL");
    assert_eq!(out.status.code(), None, "not killed");
    assert!(
        !leftovers(&s, &site).is_empty(),
        "a killed drill left nothing to clean up"
    );
    let v = json(dir, &["--json", "drill", "--cleanup"], 0);
    assert!(!v["removed"].as_array().unwrap().is_empty(), "{v}");
    assert_eq!(leftovers(&s, &site), Vec::<String>::new());
    let again = json(dir, &["--json", "drill", "--cleanup"], 0);
    assert!(again["removed"].as_array().unwrap().is_empty(), "{again}");
    assert_eq!(
        live(&s, &site),
        before,
        "the drills changed the live stores"
    );
    cleanup(&s, &site);
}

//! etcd-specific behaviour on the real server: prefix isolation, refusing keys outside the
//! prefix, restore under another prefix, an empty prefix, and a server that is down or silent.
// test-lane: milvus (uses Milvus and its etcd)
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use amber_dr_core::testkit;
use amber_dr_core::{
    BackupOptions, Component, DrillOptions, RestoreOptions, RestorePlanOptions, Runner, Selection,
};
use amber_dr_etcd::{Etcd, EtcdConfig};
use common::EtcdCtl;

fn comp(e: &EtcdCtl, name: &str, prefix: &str) -> Arc<dyn Component> {
    let mut cfg = EtcdConfig::new(&e.endpoint, prefix);
    cfg.page_keys = 10;
    cfg.batch_ops = 7;
    Arc::new(Etcd::new(name, cfg).unwrap())
}

fn plan(opts: RestoreOptions) -> RestorePlanOptions {
    RestorePlanOptions {
        selection: Selection::all(),
        options: opts,
        safety_backup: false,
        components: Default::default(),
    }
}

/// Keys right next to the prefix — the key one past its end, a shorter key, a sibling — are
/// never read, deleted or written, even when they change between backup and restore.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_outside_the_prefix_are_untouched() {
    let Some(e) = EtcdCtl::from_env() else { return };
    let p = "amber-iso/0/";
    // "amber-iso/00" is exactly the end of the prefix's range ('/' + 1 = '0').
    let neighbours: [&[u8]; 4] = [
        b"amber-iso/0",
        b"amber-iso/00",
        b"amber-iso/0.",
        b"amber-iso/1/x",
    ];
    for n in neighbours {
        e.put(n, b"before");
    }
    common::populate(&e, p);
    let original = e.describe(p.as_bytes());
    let (repo, _g) = testkit::temp_repo();
    let r = Runner::new(repo, vec![comp(&e, "iso", p)]);
    let m = r.backup(&BackupOptions::default()).await.unwrap();
    assert!(m.is_complete(), "{:?}", m.components);
    let rec = &m.components["iso"];
    assert_eq!(rec.stat_u64("keys"), Some(1509), "{:?}", rec.stats);
    assert!(rec.consistency.contains_key("revision"));
    for n in neighbours {
        e.put(n, b"after");
    }
    common::destroy(&e, p);
    let out = r
        .restore(&m.id, &plan(RestoreOptions::new()))
        .await
        .unwrap();
    assert!(out.is_ok(), "{:?}", out.components);
    assert_eq!(e.describe(p.as_bytes()), original);
    for n in neighbours {
        assert_eq!(
            e.get(n).as_deref(),
            Some(&b"after"[..]),
            "{}",
            String::from_utf8_lossy(n)
        );
    }
}

/// A backup of `a/` restored through a component configured for `a/sub/` would write keys
/// outside `a/sub/`: refused before anything is deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_outside_the_configured_prefix_are_refused() {
    let Some(e) = EtcdCtl::from_env() else { return };
    e.delete_prefix(b"amber-ref/");
    e.put(b"amber-ref/top", b"1");
    e.put(b"amber-ref/sub/k", b"2");
    let (repo, _g) = testkit::temp_repo();
    let m = Runner::new(repo.clone(), vec![comp(&e, "ref", "amber-ref/")])
        .backup(&BackupOptions::default())
        .await
        .unwrap();
    e.put(b"amber-ref/sub/k", b"changed");
    let narrower = Runner::new(repo, vec![comp(&e, "ref", "amber-ref/sub/")]);
    let out = narrower
        .restore(&m.id, &plan(RestoreOptions::new()))
        .await
        .unwrap();
    let err = out.components[0].error.clone().expect("must be refused");
    assert!(err.contains("refusing to write keys outside"), "{err}");
    assert!(err.contains("amber-ref/sub/"), "{err}");
    assert_eq!(e.get(b"amber-ref/sub/k").as_deref(), Some(&b"changed"[..]));
}

/// `--target NAME=PREFIX` restores the keys under another prefix (a drill), leaving the live
/// prefix alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_under_another_prefix() {
    let Some(e) = EtcdCtl::from_env() else { return };
    common::populate(&e, "amber-src/");
    e.delete_prefix(b"amber-drill/");
    e.put(b"amber-drill/stale", b"goes away");
    let (repo, _g) = testkit::temp_repo();
    let r = Runner::new(repo, vec![comp(&e, "src", "amber-src/")]);
    let m = r.backup(&BackupOptions::default()).await.unwrap();
    e.put(b"amber-src/plain", b"live change");
    let out = r
        .restore(
            &m.id,
            &plan(RestoreOptions::new().target(Some("amber-drill/".into()))),
        )
        .await
        .unwrap();
    assert!(out.is_ok(), "{:?}", out.components);
    let src = e.get_prefix(b"amber-src/");
    let drill = e.get_prefix(b"amber-drill/");
    assert_eq!(drill.len(), src.len());
    assert!(e.get(b"amber-drill/stale").is_none());
    assert_eq!(e.get(b"amber-drill/plain").as_deref(), Some(&b"hello"[..]));
    assert_eq!(
        e.get(b"amber-src/plain").as_deref(),
        Some(&b"live change"[..])
    );
    assert_eq!(
        e.get(b"amber-drill/large"),
        e.get(b"amber-src/large"),
        "1 MB value copied exactly"
    );
}

/// A prefix that matches nothing backs up to an empty artifact, says so, and probe warns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefix_matching_nothing_is_said_clearly() {
    let Some(e) = EtcdCtl::from_env() else { return };
    e.delete_prefix(b"amber-nothing/");
    let c = comp(&e, "nothing", "amber-nothing/");
    let probe = c.probe().await.unwrap();
    assert!(probe.reachable);
    assert!(
        probe.version.as_deref().unwrap_or("").starts_with("3."),
        "{probe:?}"
    );
    assert!(
        probe
            .warnings
            .iter()
            .any(|w| w.contains("no key starts with")),
        "{probe:?}"
    );
    let (repo, _g) = testkit::temp_repo();
    let m = Runner::new(repo, vec![c])
        .backup(&BackupOptions::default())
        .await
        .unwrap();
    let rec = &m.components["nothing"];
    assert!(m.is_complete());
    assert_eq!(rec.stat_u64("keys"), Some(0));
    assert!(
        rec.warnings.iter().any(|w| w.contains("backup is empty")),
        "{:?}",
        rec.warnings
    );
}

/// Nothing listens: a clear error naming the endpoint at once. A server that accepts and never
/// answers: an error after the configured timeout, not a hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_down_or_silent_fails_in_bounded_time() {
    let closed = testkit::closed_port();
    let down_url = format!("http://127.0.0.1:{}", closed.port);
    let mut cfg = EtcdConfig::new(&down_url, "x/");
    cfg.timeout_secs = 2;
    let down = Etcd::new("down", cfg).unwrap();
    let t = Instant::now();
    let err = down.probe().await.unwrap_err().to_string();
    assert!(t.elapsed() < Duration::from_secs(5));
    assert!(
        err.contains(&down_url) && err.contains("cannot reach etcd"),
        "{err}"
    );

    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let _keep = std::thread::spawn(move || {
        let mut conns = Vec::new();
        for c in silent.incoming() {
            conns.push(c);
        }
    });
    let mut cfg = EtcdConfig::new(format!("http://{addr}"), "x/");
    cfg.timeout_secs = 2;
    let c: Arc<dyn Component> = Arc::new(Etcd::new("silent", cfg).unwrap());
    let (repo, _g) = testkit::temp_repo();
    let t = Instant::now();
    let m = Runner::new(repo, vec![c])
        .backup(&BackupOptions::default())
        .await
        .unwrap();
    assert!(t.elapsed() < Duration::from_secs(8), "{:?}", t.elapsed());
    assert!(!m.is_complete());
    let err = m.components["silent"].error.clone().unwrap();
    assert!(err.contains(&addr.to_string()), "{err}");
}

/// A bad endpoint in the config is a config error naming the key.
#[test]
fn endpoint_must_be_a_url() {
    let err = Etcd::new("e", EtcdConfig::new("127.0.0.1:2379", "")).unwrap_err();
    assert!(err.is_usage());
    assert!(err.to_string().contains("components.e.endpoints"), "{err}");
}

/// With several endpoints, one that cannot be reached is skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_endpoint_is_skipped() {
    let Some(e) = EtcdCtl::from_env() else { return };
    let closed = testkit::closed_port();
    let mut cfg = EtcdConfig::new(format!("http://127.0.0.1:{}", closed.port), "amber-multi/");
    cfg.endpoints.push(e.endpoint.clone());
    let c = Etcd::new("multi", cfg).unwrap();
    let p = c.probe().await.unwrap();
    assert!(p.reachable);
    assert_eq!(p.details["endpoint"], serde_json::json!(e.endpoint));
}

/// `restore_with` and `conflicts_with` in the config become the component's restore relations.
#[test]
fn relations_come_from_the_config() {
    let mut cfg = EtcdConfig::new("http://127.0.0.1:2379", "by-dev/");
    cfg.restore_with = vec!["milvus-bucket".into()];
    cfg.conflicts_with = vec!["milvus".into()];
    let e = Etcd::new("milvus-etcd", cfg).unwrap();
    let rels = e.restore_relations();
    assert_eq!(rels.len(), 2, "{rels:?}");
    let sel = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let broken = |names: &[&str]| {
        rels.iter()
            .filter_map(|r| r.violation("milvus-etcd", &sel(names)))
            .count()
    };
    assert_eq!(broken(&["milvus-etcd"]), 1, "alone: its bucket is missing");
    assert_eq!(
        broken(&["milvus-etcd", "milvus-bucket"]),
        0,
        "the physical pair"
    );
    assert_eq!(
        broken(&["milvus-etcd", "milvus-bucket", "milvus"]),
        1,
        "with the logical restore"
    );
}

/// `raw_snapshot = true` also stores etcd's own member snapshot as a second artifact, which
/// `etcdctl snapshot status` reads as a valid snapshot; full verify checks it; a restore does
/// not use it (and says so). Off by default: one artifact only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_raw_member_snapshot_is_an_optional_second_artifact() {
    let Some(e) = EtcdCtl::from_env() else { return };
    e.delete_prefix(b"amber-raw/");
    e.put(b"amber-raw/k", b"v");
    let (repo, dir) = testkit::temp_repo();
    let plain = Runner::new(repo.clone(), vec![comp(&e, "plain", "amber-raw/")])
        .backup(&BackupOptions::default())
        .await
        .unwrap();
    assert_eq!(
        plain.components["plain"].artifacts.len(),
        1,
        "off by default"
    );

    let mut cfg = EtcdConfig::new(&e.endpoint, "amber-raw/");
    cfg.raw_snapshot = true;
    let c: Arc<dyn Component> = Arc::new(Etcd::new("raw", cfg).unwrap());
    let r = Runner::new(repo.clone(), vec![c]);
    let m = r.backup(&BackupOptions::default()).await.unwrap();
    assert!(m.is_complete(), "{:?}", m.components);
    let rec = &m.components["raw"];
    let raw = rec
        .artifacts
        .iter()
        .find(|a| a.name == "member.snapshot.db")
        .expect("the raw snapshot artifact");
    assert!(rec.stat_u64("raw_snapshot_bytes").unwrap() > 0);

    // Independently: etcdctl reads the stored bytes as a snapshot holding our key's revision.
    let mut reader = repo
        .open_artifact(raw, amber_dr_core::Progress::none())
        .await
        .unwrap();
    let file = dir.path().join("member.db");
    let mut out = tokio::fs::File::create(&file).await.unwrap();
    tokio::io::copy(&mut reader, &mut out).await.unwrap();
    reader.finish().await.unwrap();
    let status = std::process::Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["snapshot", "status", "-w", "json"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let s: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert!(s["totalKey"].as_u64().unwrap() >= 1, "{s}");
    assert!(
        s["revision"].as_i64().unwrap() >= rec.consistency["revision"].as_i64().unwrap(),
        "{s}"
    );

    let v = r
        .verify(&m.id, &Selection::all(), amber_dr_core::VerifyLevel::Full)
        .await
        .unwrap();
    assert!(v.is_ok(), "{:?}", v.components);
    assert!(
        v.components["raw"]
            .notes
            .iter()
            .any(|n| n.contains("raw member snapshot")),
        "{:?}",
        v.components
    );
    e.put(b"amber-raw/k", b"changed");
    let out = r
        .restore(&m.id, &plan(RestoreOptions::new()))
        .await
        .unwrap();
    assert!(out.is_ok(), "{:?}", out.components);
    assert_eq!(e.get(b"amber-raw/k").as_deref(), Some(&b"v"[..]));
    let warnings = &out.components[0].report.as_ref().unwrap().warnings;
    assert!(
        warnings.iter().any(|w| w.contains("does not restore it")),
        "{warnings:?}"
    );
}

/// A drill restores the prefix under `/amber-dr-drill/<token>/`, compares it, and deletes it:
/// the live keys are unchanged and no scratch key is left (etcdctl). A component backing up
/// the whole keyspace (empty prefix) is not drilled: any scratch prefix would lie inside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_restores_under_a_scratch_prefix_and_deletes_it() {
    let Some(e) = EtcdCtl::from_env() else { return };
    let p = "amber-drill/0/";
    e.delete_prefix(p.as_bytes());
    common::populate(&e, p);
    let before = e.describe(p.as_bytes());
    let (repo, _guard) = testkit::temp_repo();
    let r = Runner::new(repo, vec![comp(&e, "kv", p)]);
    let m = r.backup(&BackupOptions::default()).await.unwrap();
    assert!(m.is_complete(), "{:?}", m.components);
    let d = r.drill(&m.id, &DrillOptions::default()).await.unwrap();
    assert!(d.passed(), "{d:#?}");
    let target = &d.components[0].targets[0].target;
    assert!(target.starts_with("/amber-dr-drill/drill_"), "{target}");
    assert!(
        d.components[0].checks.iter().any(|c| c.contains("wrote")),
        "{d:#?}"
    );
    assert_eq!(
        e.get_prefix(target.as_bytes()),
        Vec::new(),
        "scratch keys left"
    );
    assert_eq!(
        e.describe(p.as_bytes()),
        before,
        "the drill changed the live keys"
    );

    let (repo2, _guard2) = testkit::temp_repo();
    let whole = Runner::new(repo2, vec![comp(&e, "all", "")]);
    let plan = amber_dr_core::drill::Scratch {
        token: "drill_00000000".into(),
        dir: std::env::temp_dir(),
        configured: None,
    };
    let rec = amber_dr_core::ComponentRecord::new("etcd", "all");
    match whole.components()[0].scratch_plan(&rec, &plan).unwrap() {
        amber_dr_core::drill::ScratchPlan::NotDrilled(why) => {
            assert!(why.contains("overlaps"), "{why}")
        }
        other => panic!("a whole-keyspace component was drilled: {other:?}"),
    }
    e.delete_prefix(p.as_bytes());
}

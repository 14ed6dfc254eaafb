//! The core conformance suite against the real etcd, with the awkward data set.
// test-lane: milvus (uses Milvus and its etcd)
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use amber_dr_core::plan::ComponentPlan;
use amber_dr_core::testkit::{self, Fixture};
use amber_dr_core::{async_trait, Component, ComponentRecord, Result};
use amber_dr_etcd::{Etcd, EtcdConfig};
use common::EtcdCtl;

struct Fx {
    e: EtcdCtl,
    /// The failing component's endpoint: a port that refuses connections.
    closed: testkit::ClosedPort,
    /// Tests of this file run at once: each has its own keys.
    base: &'static str,
}

impl Fx {
    fn prefix(&self, slot: usize) -> String {
        format!("{}/{slot}/", self.base)
    }
}

#[async_trait]
impl Fixture for Fx {
    fn component(&self, slot: usize) -> Arc<dyn Component> {
        let mut cfg = EtcdConfig::new(&self.e.endpoint, self.prefix(slot));
        // Small pages and transactions: the data set spans many of each.
        cfg.page_keys = 97;
        cfg.batch_ops = 50;
        cfg.batch_bytes = 64 * 1024;
        Arc::new(Etcd::new(format!("etcd{slot}"), cfg).unwrap())
    }
    fn failing_component(&self) -> Arc<dyn Component> {
        let url = format!("http://127.0.0.1:{}", self.closed.port);
        let mut cfg = EtcdConfig::new(&url, "x/");
        cfg.timeout_secs = 2;
        Arc::new(Etcd::new("etcd-down", cfg).unwrap())
    }
    async fn populate(&self, slot: usize) -> Result<()> {
        common::populate(&self.e, &self.prefix(slot));
        Ok(())
    }
    async fn make_empty(&self, slot: usize) -> Result<()> {
        self.e.delete_prefix(self.prefix(slot).as_bytes());
        Ok(())
    }
    async fn destroy(&self, slot: usize) -> Result<()> {
        common::destroy(&self.e, &self.prefix(slot));
        Ok(())
    }
    async fn fingerprint(&self, slot: usize) -> Result<String> {
        Ok(self.describe(&self.prefix(slot)))
    }
    /// Another prefix, beside the slots', emptied.
    async fn other_target(&self) -> Result<Option<ComponentPlan>> {
        let t = format!("{}/target/", self.base);
        self.e.delete_prefix(t.as_bytes());
        Ok(Some(ComponentPlan {
            target: Some(t),
            items: Vec::new(),
        }))
    }
    async fn target_fingerprint(&self, plan: &ComponentPlan) -> Result<String> {
        Ok(self.describe(plan.target.as_deref().unwrap()))
    }
    /// The key count the restore compares the artifact with before it writes.
    fn falsify(&self, record: &mut ComponentRecord) -> bool {
        let Some(n) = record.details.get("count").and_then(|c| c.as_u64()) else {
            return false;
        };
        record.details["count"] = (n + 1).into();
        true
    }
}

impl Fx {
    /// The keys under `prefix` (without it), their value lengths and SHA-256, described with
    /// etcdctl: comparable between prefixes.
    fn describe(&self, prefix: &str) -> String {
        let p = common::hex(prefix.as_bytes());
        let d = self.e.describe(prefix.as_bytes());
        d.lines()
            .map(|l| {
                l.strip_prefix(p.as_str())
                    .map(|r| format!("~{r}"))
                    .unwrap_or(l.to_string())
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_driver_passes_the_conformance_suite() {
    let Some(e) = EtcdCtl::from_env() else { return };
    let (repo, _guard) = testkit::temp_repo();
    let fx = Fx {
        e,
        closed: testkit::closed_port(),
        base: "amber-conf",
    };
    if let Err(err) = testkit::run_all(&fx, &repo).await {
        panic!("{err}");
    }
}

/// An application writing while the backup runs (etcdctl, another client than the driver):
/// each round, one transaction moves a counter, adds an item, deletes the item five rounds old
/// and overwrites a larger value; plus a put and a delete outside any transaction.
struct App {
    e: EtcdCtl,
    /// The prefix of the fixture's slot 0.
    p: String,
}

#[async_trait]
impl testkit::Writer for App {
    async fn write_until(&self, _: usize, stop: &AtomicBool, changes: &AtomicU64) -> Result<()> {
        let p = &self.p;
        let mut i: u64 = 0;
        while !stop.load(Ordering::SeqCst) {
            let mut ops = vec![
                format!("put \"{p}live/counter\" \"{i}\""),
                format!("put \"{p}live/item/{i:08}\" \"item {i}\""),
                format!("put \"{p}live/big\" \"{}\"", format!("{i}-").repeat(500)),
            ];
            if i >= 5 {
                ops.push(format!("del \"{p}live/item/{:08}\"", i - 5));
            }
            let e = self.e.clone();
            tokio::task::spawn_blocking(move || e.txn(&ops))
                .await
                .map_err(|e| amber_dr_core::Error::Other(e.to_string()))?
                .map_err(amber_dr_core::Error::Other)?;
            changes.fetch_add(1, Ordering::SeqCst);
            let e = self.e.clone();
            let (put, del) = (
                format!("{p}live/loose/{i}"),
                format!("{p}live/loose/{}", i.wrapping_sub(3)),
            );
            tokio::task::spawn_blocking(move || e.put(put.as_bytes(), b"loose"))
                .await
                .map_err(|e| amber_dr_core::Error::Other(e.to_string()))?;
            changes.fetch_add(1, Ordering::SeqCst);
            let e = self.e.clone();
            tokio::task::spawn_blocking(move || e.delete(del.as_bytes()))
                .await
                .map_err(|e| amber_dr_core::Error::Other(e.to_string()))?;
            changes.fetch_add(1, Ordering::SeqCst);
            i += 1;
        }
        Ok(())
    }

    /// The backup reads one revision: the items are exactly the five up to the counter, and
    /// the large value is the counter's.
    async fn check_restored(&self, _: usize) -> Result<()> {
        let p = &self.p;
        let kv = self.e.get_prefix(format!("{p}live/").as_bytes());
        let get = |k: &str| {
            kv.iter()
                .find(|(key, _)| key.as_slice() == format!("{p}live/{k}").as_bytes())
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        };
        let fail = |m: String| Err(amber_dr_core::Error::Other(m));
        let Some(c) = get("counter") else {
            return fail("no counter came back".into());
        };
        let c: u64 = c.parse().unwrap();
        let items: Vec<String> = kv
            .iter()
            .filter_map(|(k, _)| {
                String::from_utf8_lossy(k)
                    .strip_prefix(&format!("{p}live/item/"))
                    .map(str::to_string)
            })
            .collect();
        let want: Vec<String> = (c.saturating_sub(4)..=c)
            .map(|i| format!("{i:08}"))
            .collect();
        if items != want {
            return fail(format!("counter {c}, but items {items:?}"));
        }
        if get("big") != Some(format!("{c}-").repeat(500)) {
            return fail(format!("the large value is not the one of counter {c}"));
        }
        Ok(())
    }
}

/// Issue 18: a backup taken while keys are written and deleted is complete, verifies, and
/// restores one consistent revision.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_the_application_writes_restores() {
    let Some(e) = EtcdCtl::from_env() else { return };
    let fx = Fx {
        e: e.clone(),
        closed: testkit::closed_port(),
        base: "amber-online",
    };
    let app = App { e, p: fx.prefix(0) };
    for round in 0..3 {
        let (repo, _guard) = testkit::temp_repo();
        match testkit::writers_during_backup(&fx, &app, &repo).await {
            Ok(testkit::OnlineOutcome::Restored {
                changes_during_backup,
            }) => eprintln!(
                "round {round}: restored; {changes_during_backup} changes during the backup"
            ),
            Ok(other) => panic!("round {round}: the online backup failed: {other:?}"),
            Err(err) => panic!("round {round}: {err}"),
        }
    }
}

/// Issue 18: TLS is not supported yet, so an https:// endpoint is a config error saying so,
/// not a connection that fails later or goes out in plain text.
#[test]
fn an_https_endpoint_is_refused_naming_tls() {
    let e = Etcd::new("etcd", EtcdConfig::new("https://127.0.0.1:2379", "x/"))
        .err()
        .unwrap();
    assert!(e.is_usage(), "{e}");
    assert!(e.to_string().contains("TLS"), "{e}");
}

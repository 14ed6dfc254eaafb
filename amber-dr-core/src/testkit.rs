//! The conformance suite every driver runs against its real server (feature `testkit`).
//!
//! A driver's test implements [`Fixture`] for two independent instances of its store (slot 0
//! and slot 1: two directories, two databases, two buckets...) and calls [`run_all`]. Each check
//! proves a backup by restoring it and comparing the live data through the fixture's own
//! [`Fixture::fingerprint`], which must not use the driver under test.
//!
//! | check | what it proves |
//! |---|---|
//! | [`roundtrip`] | populate → backup → verify full → destroy → restore (with safety backup) → identical |
//! | [`corruption_detected`] | a flipped byte, a truncated and a deleted artifact: verify reports damage naming the artifact, restore refuses as damage before it changes anything, leaving the live data untouched |
//! | [`every_artifact_damaged`] | each artifact of a backup in turn (every one, up to 16 spread over them) with a flipped byte: a full verify names it, the restore is refused as damage, the live data unchanged |
//! | [`probe_reachability`] | `probe` says reachable for the live store, unreachable (or fails) for the failing component |
//! | [`partial_restore`] | two instances backed up, only one restored, the other untouched |
//! | [`restore_to_target`] | (drivers declaring `restore_to_target`) slot 0 restored into [`Fixture::other_target`] through a per-component plan: the target equals the original, the configured store is untouched; a declared capability without a target from the fixture fails |
//! | [`restore_one_part`] | (drivers declaring `restore_parts`) only [`Fixture::one_part`] of slot 0 restored: that part is back, the rest unchanged; a declared capability without a part from the fixture fails |
//! | [`record_difference_refused`] | the record of a backup changed by [`Fixture::falsify`] (what the driver compares the restored data with) and rewritten in the repository: the restore fails; the live data is unchanged — or, for a driver that wrote in place before its comparison failed (core does not roll back the failed component itself), the safety backup taken first brings it back (skipped with a note for a driver that compares nothing) |
//! | [`empty_source`] | an empty store round-trips to empty |
//! | [`failed_snapshot`] | a snapshot that fails leaves no complete backup, `latest` skips it, restore refuses it |
//! | [`writers_during_backup`] | (called by each driver with its [`Writer`]) a backup taken while an application writes either fails with a message or is complete, verifies and restores into data that holds the writer's invariants |
//! | [`interrupted_snapshot`] | a stream that breaks mid-write fails the snapshot: no artifact, no complete backup, the next backup works |

mod capabilities;
mod fake;
mod guards;
mod online;

pub use capabilities::{
    drill_passes, record_difference_refused, restore_one_part, restore_to_target,
};
pub use fake::{Fake, FakeLog};
pub use guards::{every_artifact_damaged, probe_reachability};
pub use online::{writer_process, writers_during_backup, OnlineOutcome, Writer};

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};

use crate::component::{Component, RestoreOptions, VerifyLevel};
use crate::manifest::ComponentRecord;
use crate::plan::ComponentPlan;
use crate::repository::{Repository, RepositoryConfig};
use crate::runner::{BackupOptions, RestorePlanOptions, Runner, Selection};
use crate::{Error, Result};

/// What a driver's test provides to the suite: two independent instances of the real store.
#[async_trait]
pub trait Fixture: Send + Sync {
    /// The component for instance `slot` (0 or 1), named differently per slot.
    fn component(&self, slot: usize) -> Arc<dyn Component>;
    /// A component of the same kind whose snapshot fails (e.g. a missing path; for a network
    /// store an address on a [`closed_port`] that the fixture keeps alive).
    fn failing_component(&self) -> Arc<dyn Component>;
    /// Fill instance `slot` with the driver's awkward test data (replacing what is there).
    async fn populate(&self, slot: usize) -> Result<()>;
    /// Make instance `slot` empty (but existing).
    async fn make_empty(&self, slot: usize) -> Result<()>;
    /// The disaster: change and delete data of instance `slot`.
    async fn destroy(&self, slot: usize) -> Result<()>;
    /// A description of the live data of `slot` computed without the driver under test.
    async fn fingerprint(&self, slot: usize) -> Result<String>;

    /// `[drill]` for [`drill_passes`]: by default nothing configured (the driver derives its
    /// scratch targets); a fixture whose store needs a separate server for a scratch copy
    /// (Neo4j) names its other slot's.
    async fn drill_config(&self) -> crate::drill::DrillConfig {
        crate::drill::DrillConfig::default()
    }

    /// For a driver declaring [`crate::Capabilities::restore_to_target`]: another target for slot 0's
    /// component, made ready for a restore (absent or empty, as the driver wants a new
    /// target), as the per-component plan of the restore (its `target`, and the `items` the
    /// driver needs with a target). `None` (the default) fails [`restore_to_target`] for a
    /// driver that declares the capability.
    async fn other_target(&self) -> Result<Option<ComponentPlan>> {
        Ok(None)
    }
    /// Why the fixture's server offers no other target although the driver declares
    /// [`crate::Capabilities::restore_to_target`] (e.g. Neo4j Community has one user
    /// database). Only asked when [`Self::other_target`] gives none: with a reason,
    /// [`restore_to_target`] is skipped with a note naming it; without one (the default), the
    /// missing target fails the check.
    async fn no_other_target_because(&self) -> Option<String> {
        None
    }
    /// The live data at `plan`'s target (of [`Self::other_target`]), described so that it
    /// equals [`Self::fingerprint`] of slot 0 when it holds the same data (or, for a plan
    /// naming one part, the part's description by [`Self::part_fingerprint`]).
    async fn target_fingerprint(&self, plan: &ComponentPlan) -> Result<String> {
        Err(Error::Other(format!(
            "the fixture has no target_fingerprint() for {plan:?}"
        )))
    }
    /// For a driver declaring [`crate::Capabilities::restore_parts`]: a part of slot 0's component
    /// (an item of [`ComponentPlan::items`]: a database, a bucket, a collection) that
    /// [`Self::populate`] and [`Self::destroy`] both change, as does the rest. `None` (the
    /// default) fails [`restore_one_part`] for a driver that declares the capability.
    fn one_part(&self) -> Option<String> {
        None
    }
    /// The live data of `part` of `slot`, and of everything else of `slot`, described apart.
    async fn part_fingerprint(&self, slot: usize, part: &str) -> Result<(String, String)> {
        Err(Error::Other(format!(
            "the fixture has no part_fingerprint() for slot {slot}, part {part}"
        )))
    }
    /// Change in `record` (slot 0's, in a backup) what the driver compares the restored data
    /// with (a count, a fingerprint), so that the data no longer matches it; true if it did.
    /// False (the default) for a driver that compares nothing: [`record_difference_refused`]
    /// is then skipped with a note.
    fn falsify(&self, record: &mut ComponentRecord) -> bool {
        let _ = record;
        false
    }
}

/// A repository in a fresh temporary directory (kept alive by the returned guard). With
/// `AMBER_DR_TEST_ENCRYPTION=1` it is encrypted (see [`test_encryption`]): every driver's
/// conformance suite then runs through an encrypted repository.
pub fn temp_repo() -> (Repository, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("cannot create a temp dir: {e}"));
    let mut cfg = RepositoryConfig::new(dir.path().to_string_lossy());
    if std::env::var("AMBER_DR_TEST_ENCRYPTION").is_ok_and(|v| v == "1") {
        cfg.encryption = Some(test_encryption());
    }
    let repo =
        Repository::open(&cfg).unwrap_or_else(|e| panic!("cannot open temp repository: {e}"));
    (repo, dir)
}

/// The passphrase encryption of the test kit's encrypted repositories.
pub fn test_encryption() -> crate::crypto::EncryptionConfig {
    crate::crypto::EncryptionConfig {
        passphrase: Some("amber-dr testkit passphrase".into()),
        ..Default::default()
    }
}

/// A local TCP port that refuses connections and that nothing else can take while this
/// lives: a socket bound to it that does not listen. For "nothing answers there" endpoints,
/// instead of a port reserved and released before use (which another process may take).
#[derive(Debug)]
pub struct ClosedPort {
    _socket: socket2::Socket,
    /// The port on 127.0.0.1.
    pub port: u16,
}

/// See [`ClosedPort`].
pub fn closed_port() -> ClosedPort {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
        .unwrap_or_else(|e| panic!("cannot create a socket: {e}"));
    let any: std::net::SocketAddr = ([127, 0, 0, 1], 0).into();
    socket
        .bind(&any.into())
        .unwrap_or_else(|e| panic!("cannot bind 127.0.0.1:0: {e}"));
    let port = socket
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .map(|a| a.port())
        .unwrap_or_else(|| panic!("no local address"));
    ClosedPort {
        _socket: socket,
        port,
    }
}

/// True when `AMBER_DR_REQUIRE_SERVICES=1`: a missing server must fail the test, not skip it.
pub fn services_required() -> bool {
    std::env::var("AMBER_DR_REQUIRE_SERVICES")
        .map(|v| v == "1")
        .unwrap_or(false)
}

/// Call when a test's server is missing: panics under `AMBER_DR_REQUIRE_SERVICES=1`, otherwise
/// prints why the test is skipped. Returns so that the caller can `return`.
pub fn service_missing(what: &str) {
    if services_required() {
        panic!("{what} is not available and AMBER_DR_REQUIRE_SERVICES=1: start it with `scripts/stack.sh up`");
    }
    eprintln!("SKIPPED: {what} is not available (start it with `scripts/stack.sh up`)");
}

fn runner(repo: &Repository, comps: Vec<Arc<dyn Component>>) -> Runner {
    Runner::new(repo.clone(), comps)
}

fn plan(only: &[&str], safety: bool) -> RestorePlanOptions {
    RestorePlanOptions {
        selection: Selection {
            only: only.iter().map(|s| s.to_string()).collect(),
            skip: vec![],
        },
        options: RestoreOptions::default(),
        safety_backup: safety,
        components: Default::default(),
    }
}

/// Run every check of the suite. In the second, encrypted run of a driver's suite
/// (`AMBER_DR_TEST_ENCRYPTION=1`, see [`temp_repo`]) only the checks whose path goes through
/// the repository's encryption run: the round trip, damage detection and the falsified record
/// (sealed artifacts, blobs and manifests); the others test the driver's own logic, the same
/// with or without encryption, and ran in the first run. (`tests/tests/encrypted_repository.rs`
/// runs the whole suite on an encrypted repository.)
pub async fn run_all(fx: &dyn Fixture, repo: &Repository) -> Result<()> {
    let full = !std::env::var("AMBER_DR_TEST_ENCRYPTION").is_ok_and(|v| v == "1");
    roundtrip(fx, repo).await?;
    if full {
        probe_reachability(fx).await?;
    }
    corruption_detected(fx, repo).await?;
    every_artifact_damaged(fx, repo).await?;
    if full {
        partial_restore(fx, repo).await?;
        restore_to_target(fx, repo).await?;
        restore_one_part(fx, repo).await?;
        drill_passes(fx, repo).await?;
    }
    record_difference_refused(fx, repo).await?;
    if full {
        empty_source(fx, repo).await?;
        failed_snapshot(fx, repo).await?;
        interrupted_snapshot(fx, repo).await?;
    }
    Ok(())
}

fn check(cond: bool, what: impl FnOnce() -> String) -> Result<()> {
    if cond {
        Ok(())
    } else {
        Err(Error::Other(format!("conformance: {}", what())))
    }
}

/// populate → backup → verify full → destroy → restore with safety backup → identical; then the
/// safety backup restores the destroyed state.
pub async fn roundtrip(fx: &dyn Fixture, repo: &Repository) -> Result<()> {
    let c = fx.component(0);
    let name = c.name().to_string();
    fx.populate(0).await?;
    let original = fx.fingerprint(0).await?;
    let r = runner(repo, vec![c]);
    let m = r.backup(&BackupOptions::default()).await?;
    check(m.is_complete(), || {
        format!("backup not complete: {:?}", m.components)
    })?;
    let v = r
        .verify(&m.id, &Selection::all(), VerifyLevel::Full)
        .await?;
    check(v.is_ok(), || {
        format!("fresh backup fails verify: {:?}", v.components)
    })?;
    let q = r
        .verify(&m.id, &Selection::all(), VerifyLevel::Quick)
        .await?;
    check(q.is_ok(), || {
        format!("fresh backup fails quick verify: {:?}", q.components)
    })?;

    fx.destroy(0).await?;
    let destroyed = fx.fingerprint(0).await?;
    check(destroyed != original, || {
        "destroy() did not change the fingerprint".into()
    })?;

    let dry = r
        .restore(
            &m.id,
            &RestorePlanOptions {
                options: RestoreOptions::new().dry_run(true),
                ..plan(&[], true)
            },
        )
        .await?;
    check(dry.is_ok() && dry.safety_backup.is_none(), || {
        format!("dry run failed: {:?}", dry.components)
    })?;
    check(fx.fingerprint(0).await? == destroyed, || {
        "a dry-run restore changed the data".into()
    })?;

    let out = r.restore(&m.id, &plan(&[], true)).await?;
    check(out.is_ok(), || {
        format!("restore failed: {:?}", out.components)
    })?;
    let restored = fx.fingerprint(0).await?;
    check(restored == original, || {
        format!("restored data differs from the original\n--- original\n{original}\n--- restored\n{restored}")
    })?;

    // The safety backup holds the destroyed state and restores it.
    let safety = out
        .safety_backup
        .clone()
        .ok_or_else(|| Error::Other("no safety backup taken".into()))?;
    let back = r.restore(&safety, &plan(&[], false)).await?;
    check(back.is_ok(), || {
        format!("restoring the safety backup failed: {:?}", back.components)
    })?;
    check(fx.fingerprint(0).await? == destroyed, || {
        "the safety backup did not hold the pre-restore state".into()
    })?;
    check(repo.resolve("latest").await? == m.id, || {
        "`latest` must not pick a safety backup".into()
    })?;
    let _ = name;
    Ok(())
}

async fn mutate_artifact(repo: &Repository, path: &str, how: &str) -> Result<()> {
    let p = Path::from(path);
    let store = repo.store();
    match how {
        "delete" => store
            .delete(&p)
            .await
            .map_err(|e| Error::Other(format!("test could not delete {path}: {e}"))),
        _ => {
            let bytes = store
                .get(&p)
                .await
                .map_err(|e| Error::Other(format!("test could not read {path}: {e}")))?
                .bytes()
                .await
                .map_err(|e| Error::Other(format!("test could not read {path}: {e}")))?;
            let mut v = bytes.to_vec();
            if how == "flip" {
                let i = v.len() / 2;
                v[i] ^= 0x01;
            } else {
                v.truncate(v.len() / 2);
            }
            store
                .put(&p, PutPayload::from(Bytes::from(v)))
                .await
                .map(|_| ())
                .map_err(|e| Error::Other(format!("test could not write {path}: {e}")))
        }
    }
}

/// A flipped byte, a truncated and a deleted artifact are each reported by verify (naming the
/// artifact), and a restore from them fails and leaves the live data as it was.
pub async fn corruption_detected(fx: &dyn Fixture, repo: &Repository) -> Result<()> {
    let c = fx.component(0);
    fx.populate(0).await?;
    let r = runner(repo, vec![c]);
    for how in ["flip", "truncate", "delete"] {
        let m = r.backup(&BackupOptions::default()).await?;
        check(m.is_complete(), || "backup not complete".into())?;
        let rec = m
            .components
            .values()
            .next()
            .ok_or_else(|| Error::Other("no component".into()))?;
        check(!rec.artifacts.is_empty(), || {
            "the snapshot wrote no artifact".into()
        })?;
        // Damage the largest artifact: that is where the data is.
        let art = rec
            .artifacts
            .iter()
            .max_by_key(|a| a.stored_size)
            .ok_or_else(|| Error::Other("no artifact".into()))?;
        mutate_artifact(repo, &art.path, how).await?;
        let level = if how == "flip" {
            VerifyLevel::Full
        } else {
            VerifyLevel::Quick
        };
        let v = r.verify(&m.id, &Selection::all(), level).await?;
        let problems: Vec<&String> = v.components.values().flat_map(|x| &x.problems).collect();
        check(!v.is_ok(), || format!("{how}: verify found nothing wrong"))?;
        check(problems.iter().any(|p| p.contains(&art.path)), || {
            format!(
                "{how}: verify did not name artifact {}: {problems:?}",
                art.path
            )
        })?;
        let full = r
            .verify(&m.id, &Selection::all(), VerifyLevel::Full)
            .await?;
        check(!full.is_ok(), || {
            format!("{how}: full verify found nothing wrong")
        })?;

        fx.destroy(0).await?;
        let before = fx.fingerprint(0).await?;
        // The restore reads every artifact through before it changes anything (and before
        // its safety backup): damage fails it as a whole.
        match r.restore(&m.id, &plan(&[], false)).await {
            Err(e) if e.is_damage() => {}
            Err(e) => {
                return Err(Error::Other(format!(
                    "{how}: restore failed, but not as damage: {e}"
                )))
            }
            Ok(out) => {
                return Err(Error::Other(format!(
                "{how}: restore from a damaged artifact was not refused before it started: {:?}",
                out.components
            )))
            }
        }
        let after = fx.fingerprint(0).await?;
        check(after == before, || {
            format!("{how}: a failed restore changed the live data")
        })?;
        fx.populate(0).await?;
    }
    Ok(())
}

/// Two instances backed up together; both destroyed; only slot 0 restored: slot 0 is back,
/// slot 1 is untouched.
pub async fn partial_restore(fx: &dyn Fixture, repo: &Repository) -> Result<()> {
    let (a, b) = (fx.component(0), fx.component(1));
    let (na, _nb) = (a.name().to_string(), b.name().to_string());
    fx.populate(0).await?;
    fx.populate(1).await?;
    let orig_a = fx.fingerprint(0).await?;
    let r = runner(repo, vec![a, b]);
    let m = r.backup(&BackupOptions::default()).await?;
    check(m.is_complete() && m.components.len() == 2, || {
        "backup of two instances not complete".into()
    })?;
    fx.destroy(0).await?;
    fx.destroy(1).await?;
    let destroyed_b = fx.fingerprint(1).await?;
    let out = r.restore(&m.id, &plan(&[na.as_str()], false)).await?;
    check(out.is_ok() && out.components.len() == 1, || {
        format!("partial restore: {:?}", out.components)
    })?;
    check(fx.fingerprint(0).await? == orig_a, || {
        "partial restore: slot 0 not restored".into()
    })?;
    check(fx.fingerprint(1).await? == destroyed_b, || {
        "partial restore touched a component that was not selected".into()
    })?;
    Ok(())
}

/// An empty store backs up, verifies and restores to empty.
pub async fn empty_source(fx: &dyn Fixture, repo: &Repository) -> Result<()> {
    let c = fx.component(0);
    fx.make_empty(0).await?;
    let empty = fx.fingerprint(0).await?;
    let r = runner(repo, vec![c]);
    let m = r.backup(&BackupOptions::default()).await?;
    check(m.is_complete(), || {
        "backup of an empty store not complete".into()
    })?;
    let v = r
        .verify(&m.id, &Selection::all(), VerifyLevel::Full)
        .await?;
    check(v.is_ok(), || {
        format!("empty backup fails verify: {:?}", v.components)
    })?;
    fx.populate(0).await?;
    let out = r.restore(&m.id, &plan(&[], false)).await?;
    check(out.is_ok(), || {
        format!("restore of empty failed: {:?}", out.components)
    })?;
    check(fx.fingerprint(0).await? == empty, || {
        "restoring an empty backup did not empty the store".into()
    })?;
    Ok(())
}

/// A backup in which one component's snapshot fails is not complete: `latest` skips it and
/// restoring the failed component is refused.
pub async fn failed_snapshot(fx: &dyn Fixture, repo: &Repository) -> Result<()> {
    fx.populate(0).await?;
    let good = fx.component(0);
    let bad = fx.failing_component();
    let bad_name = bad.name().to_string();
    let r = runner(repo, vec![good, bad]);
    let before = repo.resolve("latest").await.ok();
    let m = r.backup(&BackupOptions::default()).await?;
    check(!m.is_complete(), || {
        "a backup with a failed component was marked complete".into()
    })?;
    let err = m.components.get(&bad_name).and_then(|c| c.error.clone());
    check(err.is_some(), || {
        "the failed component's error was not recorded".into()
    })?;
    check(repo.resolve("latest").await.ok() == before, || {
        "`latest` picked a failed backup".into()
    })?;
    let entries = repo.list().await?;
    let e = entries
        .iter()
        .find(|e| e.id == m.id)
        .ok_or_else(|| Error::Other("failed backup not listed".into()))?;
    check(e.status() == "failed", || {
        format!("failed backup listed as {}", e.status())
    })?;
    let res = r.restore(&m.id, &plan(&[bad_name.as_str()], false)).await;
    check(res.is_err(), || {
        "restoring a failed component was not refused".into()
    })?;
    Ok(())
}

/// A snapshot whose artifact stream breaks partway (an injected write failure after 512 bytes)
/// fails: the backup is not complete, the component records no artifact, `latest` does not
/// move, and the next backup succeeds.
pub async fn interrupted_snapshot(fx: &dyn Fixture, repo: &Repository) -> Result<()> {
    fx.populate(0).await?;
    let before = repo.resolve("latest").await.ok();
    let faulty = repo.clone().with_write_failure_after(512);
    let m = runner(&faulty, vec![fx.component(0)])
        .backup(&BackupOptions::default())
        .await?;
    check(!m.is_complete(), || {
        "a snapshot whose stream broke was marked complete".into()
    })?;
    let rec = m
        .components
        .values()
        .next()
        .ok_or_else(|| Error::Other("no component recorded".into()))?;
    check(rec.error.is_some(), || {
        "the broken stream's error was not recorded".into()
    })?;
    check(rec.artifacts.is_empty(), || {
        format!("a failed snapshot recorded artifacts: {:?}", rec.artifacts)
    })?;
    check(repo.resolve("latest").await.ok() == before, || {
        "`latest` moved to a broken backup".into()
    })?;
    let m = runner(repo, vec![fx.component(0)])
        .backup(&BackupOptions::default())
        .await?;
    check(m.is_complete(), || {
        format!("the backup after a broken one failed: {:?}", m.components)
    })?;
    Ok(())
}

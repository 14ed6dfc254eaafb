//! Checks of the suite that prove the guards work: probe tells a live store from a dead one,
//! and damage to **every** artifact of a backup (not only the largest one) is found by a full
//! verify and refuses the restore before the live data changes.

use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};

use super::{check, plan, runner, Fixture};
use crate::component::VerifyLevel;
use crate::repository::Repository;
use crate::runner::{BackupOptions, Selection};
use crate::{Error, Result};

/// At most this many artifacts of one backup are damaged one by one (spread over all of them),
/// so that a driver writing hundreds of artifacts keeps the suite's time bounded.
const MAX_DAMAGED: usize = 16;

/// `probe` of the live component (populated) says reachable; `probe` of the failing component
/// (a wrong address or path) says unreachable or fails — it never claims a dead store is
/// there.
pub async fn probe_reachability(fx: &dyn Fixture) -> Result<()> {
    fx.populate(0).await?;
    let live = fx.component(0).probe().await?;
    check(live.reachable, || {
        format!("probe of a live store says unreachable: {live:?}")
    })?;
    match fx.failing_component().probe().await {
        Ok(p) => check(!p.reachable, || {
            format!("probe of the failing component says reachable: {p:?}")
        }),
        Err(_) => Ok(()),
    }
}

/// One backup; then each of its artifacts in turn (up to [`MAX_DAMAGED`], spread evenly) gets
/// one byte flipped: a full verify names it, a restore is refused as damage and the live data
/// is unchanged; the artifact is then put back.
pub async fn every_artifact_damaged(fx: &dyn Fixture, repo: &Repository) -> Result<()> {
    let c = fx.component(0);
    fx.populate(0).await?;
    let r = runner(repo, vec![c]);
    let m = r.backup(&BackupOptions::default()).await?;
    check(m.is_complete(), || "backup not complete".into())?;
    let rec = m
        .components
        .values()
        .next()
        .ok_or_else(|| Error::Other("no component".into()))?;
    let arts = &rec.artifacts;
    let step = arts.len().div_ceil(MAX_DAMAGED).max(1);
    fx.destroy(0).await?;
    let before = fx.fingerprint(0).await?;
    for art in arts.iter().step_by(step) {
        let path = Path::from(art.path.as_str());
        let read_err =
            |e: object_store::Error| Error::Other(format!("test could not read {}: {e}", art.path));
        let good = repo
            .store()
            .get(&path)
            .await
            .map_err(read_err)?
            .bytes()
            .await
            .map_err(read_err)?;
        if good.is_empty() {
            continue;
        }
        let mut bad = good.to_vec();
        let i = bad.len() / 2;
        bad[i] ^= 0x01;
        let write_err = |e: object_store::Error| {
            Error::Other(format!("test could not write {}: {e}", art.path))
        };
        repo.store()
            .put(&path, PutPayload::from(bad))
            .await
            .map_err(write_err)?;

        let v = r
            .verify(&m.id, &Selection::all(), VerifyLevel::Full)
            .await?;
        let problems: Vec<&String> = v.components.values().flat_map(|x| &x.problems).collect();
        check(problems.iter().any(|p| p.contains(&art.path)), || {
            format!(
                "a flipped byte in artifact {} ({} of {}) was not named by a full verify: {problems:?}",
                art.path,
                art.name,
                arts.len()
            )
        })?;
        match r.restore(&m.id, &plan(&[], true)).await {
            Err(e) if e.is_damage() => {}
            Err(e) => {
                return Err(Error::Other(format!(
                    "conformance: damaged artifact {}: restore failed, but not as damage: {e}",
                    art.path
                )))
            }
            Ok(out) => {
                return Err(Error::Other(format!(
                    "conformance: damaged artifact {}: the restore was not refused: {:?}",
                    art.path, out.components
                )))
            }
        }
        repo.store()
            .put(&path, PutPayload::from(good))
            .await
            .map_err(write_err)?;
    }
    let after = fx.fingerprint(0).await?;
    check(after == before, || {
        "a restore refused for a damaged artifact changed the live data".into()
    })?;
    fx.populate(0).await
}

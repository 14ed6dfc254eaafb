//! Checks of the suite that test what a driver declares, and the comparison of a restore with
//! its record:
//!
//! - [`restore_to_target`] for [`Capabilities::restore_to_target`]: slot 0 restored into
//!   another target (a per-component [`ComponentPlan`]) equals the original there, and the
//!   configured store is untouched;
//! - [`restore_one_part`] for [`Capabilities::restore_parts`]: one part of slot 0 restored,
//!   only that part changed;
//! - [`drill_passes`]: a drill of a backup of slot 0 restores it into the driver's scratch
//!   targets, passes, removes them, and leaves slot 0 as it was;
//! - [`record_difference_refused`]: a backup whose record no longer matches its data (the
//!   counts or fingerprints the driver compares, changed by [`Fixture::falsify`]) is refused,
//!   and the live data is unchanged.
//!
//! A declared capability whose fixture method returns `None` fails the check: what a driver
//! declares must be tested.
//!
//! [`Capabilities::restore_to_target`]: crate::Capabilities::restore_to_target
//! [`Capabilities::restore_parts`]: crate::Capabilities::restore_parts

use std::collections::BTreeMap;

use super::{check, plan, runner, Fixture};
use crate::plan::ComponentPlan;
use crate::repository::Repository;
use crate::runner::{BackupOptions, RestorePlanOptions};
use crate::{Error, Result};

/// A restore plan of `name` with `cp` as its per-component choice.
fn plan_for(name: &str, cp: ComponentPlan) -> RestorePlanOptions {
    RestorePlanOptions {
        components: BTreeMap::from([(name.to_string(), cp)]),
        ..plan(&[name], false)
    }
}

/// If slot 0's driver declares `restore_to_target`: populate slot 0, back it up, destroy it,
/// restore the backup into [`Fixture::other_target`]. The target then holds the original data
/// ([`Fixture::target_fingerprint`] equals the original [`Fixture::fingerprint`], or the
/// original [`Fixture::part_fingerprint`] of the one part the plan names) and slot 0 still
/// holds the destroyed data. Fails if the driver declares it and the fixture gives no
/// target, unless the fixture says why its server has none
/// ([`Fixture::no_other_target_because`]: skipped with a note).
pub async fn restore_to_target(fx: &dyn Fixture, repo: &Repository) -> Result<()> {
    let c = fx.component(0);
    if !c.capabilities().restore_to_target {
        return Ok(());
    }
    let name = c.name().to_string();
    let Some(cp) = fx.other_target().await? else {
        if let Some(why) = fx.no_other_target_because().await {
            eprintln!(
                "NOTE: the {} driver declares restore_to_target, but it is NOT tested here: {why}",
                c.kind()
            );
            return Ok(());
        }
        return Err(Error::Other(format!(
            "conformance: the {} driver declares restore_to_target, but the fixture's other_target() gives none: the declared capability must be tested",
            c.kind()
        )));
    };
    check(cp.target.is_some(), || {
        format!("other_target() gave a plan without a target: {cp:?}")
    })?;
    fx.populate(0).await?;
    let original = fx.fingerprint(0).await?;
    // What the target must hold: all of slot 0, or the one part the plan names.
    let wanted = match cp.items.as_slice() {
        [] => original.clone(),
        [part] => fx.part_fingerprint(0, part).await?.0,
        _ => {
            return Err(Error::Other(format!(
                "conformance: other_target() names more than one part: {cp:?}"
            )))
        }
    };
    let r = runner(repo, vec![c]);
    let m = r.backup(&BackupOptions::default()).await?;
    check(m.is_complete(), || "backup not complete".into())?;
    fx.destroy(0).await?;
    let destroyed = fx.fingerprint(0).await?;
    check(destroyed != original, || {
        "destroy() did not change the fingerprint".into()
    })?;

    let out = r.restore(&m.id, &plan_for(&name, cp.clone())).await?;
    check(out.is_ok(), || {
        format!("restore into target {cp:?} failed: {:?}", out.components)
    })?;
    let there = fx.target_fingerprint(&cp).await?;
    check(there == wanted, || {
        format!("the data restored into {cp:?} differs from the original\n--- original\n{wanted}\n--- in the target\n{there}")
    })?;
    check(fx.fingerprint(0).await? == destroyed, || {
        format!("a restore into {cp:?} changed the configured store")
    })?;
    fx.populate(0).await
}

/// If slot 0's driver declares `restore_parts`: populate slot 0, back it up, destroy it (the
/// part [`Fixture::one_part`] and the rest must both change), restore only that part. The
/// part is then back as it was and the rest is still as destroyed
/// ([`Fixture::part_fingerprint`]). Fails if the driver declares it and the fixture gives no
/// part.
pub async fn restore_one_part(fx: &dyn Fixture, repo: &Repository) -> Result<()> {
    let c = fx.component(0);
    if !c.capabilities().restore_parts {
        return Ok(());
    }
    let name = c.name().to_string();
    let Some(part) = fx.one_part() else {
        return Err(Error::Other(format!(
            "conformance: the {} driver declares restore_parts, but the fixture's one_part() gives none: the declared capability must be tested",
            c.kind()
        )));
    };
    fx.populate(0).await?;
    let (part_orig, rest_orig) = fx.part_fingerprint(0, &part).await?;
    let r = runner(repo, vec![c]);
    let m = r.backup(&BackupOptions::default()).await?;
    check(m.is_complete(), || "backup not complete".into())?;
    fx.destroy(0).await?;
    let (part_destroyed, rest_destroyed) = fx.part_fingerprint(0, &part).await?;
    check(
        part_destroyed != part_orig && rest_destroyed != rest_orig,
        || {
            format!("destroy() must change both part `{part}` and the rest, or restoring one part proves nothing")
        },
    )?;

    let cp = ComponentPlan {
        target: None,
        items: vec![part.clone()],
    };
    let out = r.restore(&m.id, &plan_for(&name, cp)).await?;
    check(out.is_ok(), || {
        format!("restore of part `{part}` failed: {:?}", out.components)
    })?;
    let (part_now, rest_now) = fx.part_fingerprint(0, &part).await?;
    check(part_now == part_orig, || {
        format!("part `{part}` was not restored\n--- original\n{part_orig}\n--- now\n{part_now}")
    })?;
    check(rest_now == rest_destroyed, || {
        format!("restoring only part `{part}` changed the rest\n--- before\n{rest_destroyed}\n--- now\n{rest_now}")
    })?;
    fx.populate(0).await
}

/// The comparison with the record: a backup of slot 0 whose record is changed by
/// [`Fixture::falsify`] (what the driver compares the restored data with: counts,
/// fingerprints) and rewritten in the repository. A restore of it (with a safety backup) must
/// fail. Then either:
///
/// - it was refused before it changed anything (a driver that compares before it writes, or
///   builds the restored copy beside the live data and compares it before the swap): the live
///   data of slot 0 is unchanged; or
/// - the driver wrote in place and its comparison afterwards failed the component: core then
///   rolls that component back from the safety backup (state [`crate::CommitState::RolledBack`] with
///   its error), so the live data is unchanged too.
///
/// A fixture whose driver compares nothing returns false from `falsify`, and the check is
/// skipped with a note.
pub async fn record_difference_refused(fx: &dyn Fixture, repo: &Repository) -> Result<()> {
    let c = fx.component(0);
    let name = c.name().to_string();
    let kind = c.kind();
    fx.populate(0).await?;
    let r = runner(repo, vec![c]);
    let m = r.backup(&BackupOptions::default()).await?;
    check(m.is_complete(), || "backup not complete".into())?;
    let mut manifest = repo.read_manifest(&m.id).await?;
    let rec = manifest
        .components
        .get_mut(&name)
        .ok_or_else(|| Error::Other(format!("backup {} has no `{name}`", m.id)))?;
    if !fx.falsify(rec) {
        eprintln!("NOTE: the {kind} fixture's falsify() changes nothing: no comparison of a restore with its record is tested");
        return fx.populate(0).await;
    }
    repo.write_manifest(&manifest).await?;

    fx.destroy(0).await?;
    let before = fx.fingerprint(0).await?;
    let how = match r.restore(&m.id, &plan(&[], true)).await {
        Err(e) => format!("refused: {e}"),
        Ok(out) => {
            check(!out.is_ok(), || {
                format!(
                    "a restore whose data differs from its record (falsify()) succeeded: {:?}",
                    out.components
                )
            })?;
            format!("failed: {:?}", out.components)
        }
    };
    eprintln!("record_difference_refused: the {kind} restore {how}");
    let after = fx.fingerprint(0).await?;
    check(after == before, || {
        format!("a restore that {how} changed the live data (a component written in place must be rolled back from the safety backup)\n--- before\n{before}\n--- after\n{after}")
    })?;
    fx.populate(0).await
}

/// A drill (see [`crate::drill`]) of a backup of slot 0, with [`Fixture::drill_config`]: the
/// component is restored into its scratch targets and compared with the record there
/// (passed), every scratch target is removed, and slot 0 is unchanged. A driver without
/// scratch targets (reported "not drilled") is skipped with a note.
pub async fn drill_passes(fx: &dyn Fixture, repo: &Repository) -> Result<()> {
    let c = fx.component(0);
    fx.populate(0).await?;
    let before = fx.fingerprint(0).await?;
    let r = runner(repo, vec![c]);
    let m = r.backup(&BackupOptions::default()).await?;
    let opts = crate::runner::DrillOptions {
        config: fx.drill_config().await,
        ..Default::default()
    };
    let d = r.drill(&m.id, &opts).await?;
    if d.components
        .iter()
        .all(|c| c.result == crate::drill::ComponentResult::NotDrilled)
    {
        eprintln!(
            "conformance: drill skipped: {}",
            d.components
                .iter()
                .filter_map(|c| c.error.clone())
                .collect::<Vec<_>>()
                .join("; ")
        );
        return Ok(());
    }
    check(d.passed(), || format!("the drill failed: {d:#?}"))?;
    check(d.scratch.iter().all(|s| s.state == "removed"), || {
        format!("scratch targets not removed: {:?}", d.scratch)
    })?;
    check(fx.fingerprint(0).await? == before, || {
        "the drill changed the live data".into()
    })
}

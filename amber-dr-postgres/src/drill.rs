//! Drills (see `amber_dr_core::drill`): each database of the backup restored into a new
//! database `<name>_<token>` of the same cluster, the cluster's roles checked but not applied,
//! and everything dropped afterwards.

use amber_dr_core::drill::{Scratch, ScratchPlan, ScratchRestore};
use amber_dr_core::references::{KeySet, KeyStream};
use amber_dr_core::{ComponentRecord, Error, Result};

use crate::catalog::ident;
use crate::component::Postgres;
use crate::record::Details;
use crate::scratch::{scratch_name, Admin};

/// Longest prefix of a database name kept in its scratch name (the staging name derived
/// from the scratch name keeps 40 bytes, which must still hold the token).
const NAME_PREFIX: usize = 20;

impl Postgres {
    /// One scratch database per database of the backup (or `[drill.targets]`'s name, when
    /// the backup has one database).
    pub(crate) fn plan_scratch(
        &self,
        record: &ComponentRecord,
        scratch: &Scratch,
    ) -> Result<ScratchPlan> {
        let details: Details = record.details()?;
        if let Some(t) = &scratch.configured {
            if details.databases.len() != 1 {
                return Ok(ScratchPlan::NotDrilled(format!(
                    "[drill.targets] names one database (`{t}`), but the backup has {}; leave it out to get one scratch database per database",
                    details.databases.len()
                )));
            }
            return Ok(ScratchPlan::Restores(vec![ScratchRestore {
                items: vec![details.databases[0].info.name.clone()],
                target: t.clone(),
            }]));
        }
        Ok(ScratchPlan::Restores(
            details
                .databases
                .iter()
                .map(|d| {
                    let mut base: String = d.info.name.chars().take(NAME_PREFIX).collect();
                    while base.len() > NAME_PREFIX {
                        base.pop();
                    }
                    ScratchRestore {
                        items: vec![d.info.name.clone()],
                        target: format!("{base}_{}", scratch.token),
                    }
                })
                .collect(),
        ))
    }

    /// Drop scratch database `target` and what a killed restore may have left beside it.
    pub(crate) async fn drop_scratch_target(&self, target: &str) -> Result<()> {
        if target == self.maintenance_db()
            || ["postgres", "template0", "template1"].contains(&target)
        {
            return Err(Error::Other(format!(
                "refusing to drop `{target}` as a scratch database"
            )));
        }
        let staging = scratch_name(target);
        let old = format!("{staging}_old");
        let err = self.err("drill cleanup");
        let maint = self.admin_db(&[target, &staging, &old]);
        let admin = Admin::connect(self, &maint).await?;
        for db in [target, staging.as_str(), old.as_str()] {
            admin
                .exec(format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    ident(db)
                ))
                .await
                .map_err(&err)?;
        }
        Ok(())
    }

    /// The keys of `set` (its query) in the scratch copy of its database.
    pub(crate) async fn scratch_query_keys(
        &self,
        set: &KeySet,
        restores: &[ScratchRestore],
    ) -> Result<KeyStream> {
        let db = self.key_database(set, "(drill)")?;
        let r = restores
            .iter()
            .find(|r| r.items.iter().any(|i| i == db))
            .ok_or_else(|| {
                Error::Other(format!(
                    "database `{db}` of `{}` has no scratch copy in this drill",
                    self.name
                ))
            })?;
        self.query_keys_in(set, &r.target, "(drill)").await
    }
}

//! Drills (see `amber_dr_core::drill`): every collection of the backup restored under a new
//! name `<name>_<token>` in its database on the same server, dropped afterwards.

use amber_dr_core::drill::{Scratch, ScratchPlan, ScratchRestore};
use amber_dr_core::references::{KeySet, KeyStream};
use amber_dr_core::{ComponentRecord, Error, RestoreReport, Result};
use futures::StreamExt;
use tokio::sync::mpsc;

use super::{Details, Milvus};

/// Longest prefix of a collection name kept in its scratch name.
const NAME_PREFIX: usize = 100;

impl Milvus {
    /// One scratch collection per collection of the backup (or `[drill.targets]`'s name,
    /// when the backup has one collection).
    pub(crate) fn plan_scratch(
        &self,
        record: &ComponentRecord,
        scratch: &Scratch,
    ) -> Result<ScratchPlan> {
        let details: Details = record.details()?;
        if details.collections.is_empty() {
            return Ok(ScratchPlan::NotDrilled(
                "the backup holds no collection".into(),
            ));
        }
        if let Some(t) = &scratch.configured {
            if details.collections.len() != 1 {
                return Ok(ScratchPlan::NotDrilled(format!(
                    "[drill.targets] names one collection (`{t}`), but the backup has {}; leave it out to get one scratch collection per collection",
                    details.collections.len()
                )));
            }
            let c = &details.collections[0];
            return Ok(ScratchPlan::Restores(vec![ScratchRestore {
                items: vec![format!("{}/{}", c.db, c.name)],
                target: t.clone(),
            }]));
        }
        Ok(ScratchPlan::Restores(
            details
                .collections
                .iter()
                .map(|c| {
                    let base: String = c.name.chars().take(NAME_PREFIX).collect();
                    ScratchRestore {
                        items: vec![format!("{}/{}", c.db, c.name)],
                        target: format!("{}/{base}_{}", c.db, scratch.token),
                    }
                })
                .collect(),
        ))
    }

    /// `(db, name)` of a scratch target `db/name` (or `name`, in `default`).
    fn scratch_collection(target: &str) -> (String, String) {
        match target.split_once('/') {
            Some((db, name)) => (db.to_string(), name.to_string()),
            None => ("default".to_string(), target.to_string()),
        }
    }

    /// Drop scratch collection `target`; refuses a name without the `drill_` mark.
    pub(crate) async fn drop_scratch(&self, target: &str) -> Result<()> {
        let (db, name) = Self::scratch_collection(target);
        if !name.contains("drill_") {
            return Err(self.fail(
                "drill cleanup",
                format!("refusing to drop `{db}.{name}`: not a drill's scratch collection"),
            ));
        }
        let c = self.connect("drill cleanup").await?;
        if !self
            .server_databases(&c)
            .await
            .map_err(self.err("drill cleanup"))?
            .contains(&db)
        {
            return Ok(());
        }
        let mut report = RestoreReport::default();
        self.drop_if_exists(&c, &db, &name, &mut report)
            .await
            .map_err(self.err("drill cleanup"))
    }

    /// The primary keys of the scratch copy of a reference end's collection.
    pub(crate) async fn scratch_collection_keys(
        &self,
        set: &KeySet,
        restores: &[ScratchRestore],
    ) -> Result<KeyStream> {
        let (db, coll) = self.key_collection(set)?;
        let r = restores
            .iter()
            .find(|r| {
                r.items
                    .iter()
                    .any(|i| *i == format!("{db}/{coll}") || (db == "default" && *i == coll))
            })
            .ok_or_else(|| {
                Error::Other(format!(
                    "collection `{db}.{coll}` of `{}` has no scratch copy in this drill",
                    self.name
                ))
            })?;
        let (sdb, scoll) = Self::scratch_collection(&r.target);
        let c = self.connect("check references").await?;
        let (tx, rx) = mpsc::channel(4096);
        let me = self.clone();
        tokio::spawn(async move {
            if let Err(e) = me.send_keys(&c, &sdb, &scoll, None, &tx).await {
                let _ = tx.send(Err(e)).await;
            }
        });
        Ok(
            futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|k| (k, rx)) })
                .boxed(),
        )
    }
}

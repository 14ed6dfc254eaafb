//! Drills (see `amber_dr_core::drill`): the keys restored under a scratch prefix
//! `/amber-dr-drill/<token>/` of the same cluster, deleted afterwards.

use amber_dr_core::drill::{Scratch, ScratchPlan, ScratchRestore};
use amber_dr_core::{Component, Error, Result};

use crate::client::prefix_end;
use crate::component::Etcd;

/// The root of every derived scratch prefix.
pub(crate) const SCRATCH_ROOT: &str = "/amber-dr-drill/";

impl Etcd {
    /// `[drill.targets] NAME`, or `/amber-dr-drill/<token>/`; never a prefix inside the
    /// configured one (that would write into the live keys).
    pub(crate) fn plan_scratch(&self, scratch: &Scratch) -> ScratchPlan {
        let target = scratch
            .configured
            .clone()
            .unwrap_or_else(|| format!("{SCRATCH_ROOT}{}/", scratch.token));
        if let Some(why) = self.overlaps_live(&target) {
            return ScratchPlan::NotDrilled(why);
        }
        ScratchPlan::Restores(vec![ScratchRestore {
            items: Vec::new(),
            target,
        }])
    }

    /// Why `target` cannot be a scratch prefix: it lies inside the configured prefix or
    /// holds it.
    fn overlaps_live(&self, target: &str) -> Option<String> {
        let live = self.config_prefix();
        (target.is_empty() || target.starts_with(live) || live.starts_with(target)).then(|| {
            format!(
                "the scratch prefix {target:?} overlaps the backed-up prefix {live:?} (the live keys); set [drill.targets] {} to a prefix outside it",
                self.name()
            )
        })
    }

    /// Delete every key under scratch prefix `target`.
    pub(crate) async fn delete_scratch_prefix(&self, target: &str) -> Result<()> {
        if let Some(why) = self.overlaps_live(target) {
            return Err(Error::Other(format!("refusing to delete: {why}")));
        }
        let end = prefix_end(target.as_bytes());
        self.client()
            .delete_range(target.as_bytes(), &end)
            .await
            .map(|_| ())
            .map_err(self.err("drill cleanup"))
    }
}

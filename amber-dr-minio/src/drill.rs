//! Drills (see `amber_dr_core::drill`): every bucket of the backup restored into a new bucket
//! `<name>-drill-<hex>` on the same server, emptied and deleted afterwards.

use amber_dr_core::drill::{Scratch, ScratchPlan, ScratchRestore};
use amber_dr_core::references::{KeySet, KeyStream};
use amber_dr_core::{ComponentRecord, Error, Result};
use futures::{StreamExt, TryStreamExt};

use crate::component::Minio;
use crate::index::Details;
use crate::KIND;

/// Longest prefix of a bucket name kept in its scratch name (63 bytes in all).
const NAME_PREFIX: usize = 40;

impl Minio {
    /// One scratch bucket per bucket of the backup, as one `SRC:DST,...` target.
    pub(crate) fn plan_scratch(
        &self,
        record: &ComponentRecord,
        scratch: &Scratch,
    ) -> Result<ScratchPlan> {
        if let Some(t) = &scratch.configured {
            return Ok(ScratchPlan::Restores(vec![ScratchRestore {
                items: Vec::new(),
                target: t.clone(),
            }]));
        }
        let details: Details = record.details()?;
        if details.buckets.is_empty() {
            return Ok(ScratchPlan::NotDrilled(
                "the backup holds no bucket".to_string(),
            ));
        }
        let token = Scratch::dashed(&scratch.token);
        let pairs: Vec<String> = details
            .buckets
            .iter()
            .map(|b| {
                let base: String = b.name.chars().take(NAME_PREFIX).collect();
                format!("{}:{}-{token}", b.name, base.trim_end_matches(['-', '.']))
            })
            .collect();
        Ok(ScratchPlan::Restores(vec![ScratchRestore {
            items: Vec::new(),
            target: pairs.join(","),
        }]))
    }

    /// The scratch buckets of `target` (`SRC:DST,...`): (source, scratch) pairs.
    fn scratch_pairs(target: &str) -> Vec<(String, String)> {
        target
            .split(',')
            .filter_map(|p| p.split_once(':'))
            .map(|(s, d)| (s.trim().to_string(), d.trim().to_string()))
            .collect()
    }

    /// Empty and delete every scratch bucket of `target`; refuses a bucket without the
    /// `drill-` mark and a bucket this component backs up.
    pub(crate) async fn remove_scratch_buckets(&self, target: &str) -> Result<()> {
        let pairs = Self::scratch_pairs(target);
        if pairs.is_empty() {
            return Err(self.err(
                "drill cleanup",
                format!("`{target}` is not SRC:DST[,SRC:DST...]"),
            ));
        }
        for (_, bucket) in pairs {
            if !bucket.contains("drill-")
                || self
                    .config
                    .buckets
                    .as_ref()
                    .is_some_and(|b| b.contains(&bucket))
            {
                return Err(self.err(
                    "drill cleanup",
                    format!("refusing to delete bucket `{bucket}`: not a drill's scratch bucket"),
                ));
            }
            if !self
                .client
                .head_bucket(&bucket)
                .await
                .map_err(self.s3_err("drill cleanup"))?
            {
                continue;
            }
            let keys = self.client.list_all(&bucket, None);
            keys.map_err(self.s3_err("drill cleanup"))
                .try_for_each_concurrent(8, |o| {
                    let bucket = bucket.clone();
                    async move {
                        self.client
                            .delete_object(&bucket, &o.key)
                            .await
                            .map_err(self.s3_err("drill cleanup"))
                    }
                })
                .await?;
            self.client
                .delete_bucket(&bucket)
                .await
                .map_err(self.s3_err("drill cleanup"))?;
        }
        Ok(())
    }

    /// `bucket/key` of every object in the scratch buckets, named by their source bucket.
    pub(crate) async fn scratch_listed_keys(
        &self,
        set: &KeySet,
        restores: &[ScratchRestore],
    ) -> Result<KeyStream> {
        set.refuse_fields(KIND, &[])?;
        let r = restores.first().ok_or_else(|| {
            Error::Other(format!("`{}` has no scratch copy in this drill", self.name))
        })?;
        let client = self.client.clone();
        let name = self.name.clone();
        Ok(futures::stream::iter(Self::scratch_pairs(&r.target))
            .flat_map(move |(src, dst)| {
                let name = name.clone();
                client.list_all(&dst, None).map(move |o| match o {
                    Ok(o) => Ok(format!("{src}/{}", o.key)),
                    Err(e) => Err(Error::Component {
                        component: name.clone(),
                        kind: KIND.into(),
                        operation: format!("list bucket `{dst}`"),
                        message: e.to_string(),
                        source: Some(Box::new(e)),
                    }),
                })
            })
            .boxed())
    }
}

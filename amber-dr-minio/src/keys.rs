//! Keys for `[[references]]`: `bucket/key` of every object of the configured buckets, from a
//! backup's index or from a listing of the live buckets.

use amber_dr_core::references::{KeySet, KeyStream};
use amber_dr_core::{ComponentRecord, Error, ReadContext, Result, SnapshotPurpose};
use futures::StreamExt;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::component::Minio;
use crate::index::{next_entry, INDEX};
use crate::KIND;

impl Minio {
    /// `bucket/key` of every object in the index of `record` (read to its end, so that its
    /// hash is checked).
    pub(crate) async fn index_keys(
        &self,
        cx: &ReadContext,
        record: &ComponentRecord,
        set: &KeySet,
    ) -> Result<KeyStream> {
        set.refuse_fields(KIND, &[])?;
        let index = record.artifact(INDEX)?.clone();
        let lines = BufReader::new(cx.open_artifact(&index).await?).lines();
        let path = index.path;
        Ok(futures::stream::unfold(Some(lines), move |lines| {
            let path = path.clone();
            async move {
                let mut lines = lines?;
                match next_entry(&mut lines, &path).await {
                    Ok(Some(e)) => Some((Ok(format!("{}/{}", e.bucket, e.key)), Some(lines))),
                    Ok(None) => None,
                    Err(e) => Some((Err(e), None)),
                }
            }
        })
        .boxed())
    }

    /// `bucket/key` of every object in the configured buckets now.
    pub(crate) async fn listed_keys(&self, set: &KeySet) -> Result<KeyStream> {
        set.refuse_fields(KIND, &[])?;
        let (buckets, _) = self.select_buckets(SnapshotPurpose::Backup).await?;
        let client = self.client.clone();
        let name = self.name.clone();
        Ok(futures::stream::iter(buckets)
            .flat_map(move |b| {
                let name = name.clone();
                client.list_all(&b, None).map(move |o| match o {
                    Ok(o) => Ok(format!("{b}/{}", o.key)),
                    Err(e) => Err(Error::Component {
                        component: name.clone(),
                        kind: KIND.into(),
                        operation: format!("list bucket `{b}`"),
                        message: e.to_string(),
                        source: Some(Box::new(e)),
                    }),
                })
            })
            .boxed())
    }
}

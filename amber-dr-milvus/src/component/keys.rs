//! Keys for `[[references]]`: the primary keys of a collection (`collection = "db.name"`), as
//! decimal text for Int64 keys. At backup they are read right after the collection's snapshot,
//! page by page at its flush timestamp (so that they describe the same entities as the
//! snapshot; a collection that is not loaded is loaded for the read and released again, as the
//! entity export does); after a restore, live (Strong).

use amber_dr_core::references::{KeyQuery, KeySet, KeyStream};
use amber_dr_core::{ArtifactRecord, Error, Result, SnapshotContext};
use futures::StreamExt;
use tokio::sync::mpsc;

use super::entities::{pk_column, Pager, Pk};
use super::*;
use crate::client::Client;

/// Keys read per page.
const PAGE: usize = 10_000;

impl Milvus {
    /// `db` and collection of a reference end (`collection = "db.name"`, or a bare name in the
    /// default database).
    pub(super) fn key_collection(&self, set: &KeySet) -> Result<(String, String)> {
        set.refuse_fields(crate::KIND, &["collection"])?;
        if set.query.is_some() {
            return Err(Error::config(
                format!("references: {}", self.name),
                "a reference end on a milvus component names a `collection` (its primary keys); it has no `query`",
            ));
        }
        let Some(c) = set.collection.as_deref() else {
            return Err(Error::config(
                format!("references: {}", self.name),
                "a reference end on a milvus component needs `collection` (\"db.name\")",
            ));
        };
        Ok(match c.split_once('.') {
            Some((db, coll)) => (db.to_string(), coll.to_string()),
            None => ("default".to_string(), c.to_string()),
        })
    }

    /// Send the primary keys of `db.coll` (as they were at `at`, or now) to `tx`.
    pub(super) async fn send_keys(
        &self,
        c: &Client,
        db: &str,
        coll: &str,
        at: Option<u64>,
        tx: &mpsc::Sender<Result<String>>,
    ) -> Result<()> {
        let op = "check references";
        let d = self.describe_for_snapshot(c, db, coll, op).await?;
        if !d.loaded {
            if d.indexes.is_empty() {
                return Err(self.fail(op, format!("`{db}.{coll}` is not loaded and has no index, so Milvus cannot load it to list its primary keys")));
            }
            self.load(c, db, coll).await.map_err(self.err(op))?;
        }
        let res = self.page_keys(c, db, coll, &d.schema, at, tx).await;
        if !d.loaded {
            let released = self.release(c, db, coll).await.map_err(self.err(op));
            if res.is_ok() {
                released?;
            }
        }
        res
    }

    async fn page_keys(
        &self,
        c: &Client,
        db: &str,
        coll: &str,
        schema: &milvus::proto::schema::CollectionSchema,
        at: Option<u64>,
        tx: &mpsc::Sender<Result<String>>,
    ) -> Result<()> {
        let op = "check references";
        let mut p = Pager::new(db, coll, None, schema, PAGE)
            .map_err(|m| self.fail(op, m))?
            .keys_only(at);
        let what = format!("a primary-key query of `{db}.{coll}`");
        loop {
            let fields = match rpc!(c, &what, query, p.request()) {
                Ok(r) => r.fields_data,
                Err(e) => return Err(self.gone_or(c, op, db, coll, e).await),
            };
            let pks = pk_column(&fields, p.pk()).unwrap_or_default();
            if p.take(fields).map_err(|m| self.fail(op, m))?.is_none() {
                return Ok(());
            }
            for k in pks {
                let key = match k {
                    Pk::Int(i) => i.to_string(),
                    Pk::Str(s) => s,
                };
                if tx.send(Ok(key)).await.is_err() {
                    return Ok(());
                }
            }
            if p.is_done() {
                return Ok(());
            }
        }
    }

    /// The primary keys of the collection of `q`, at the flush timestamp of its snapshot,
    /// into the query's artifact.
    pub(super) async fn write_keys(
        &self,
        cx: &SnapshotContext,
        c: &Client,
        db: &str,
        coll: &str,
        at: Option<u64>,
        q: &KeyQuery,
    ) -> Result<ArtifactRecord> {
        let (tx, mut rx) = mpsc::channel(4096);
        let mut w = cx.key_writer(q).await?;
        let send = async move { self.send_keys(c, db, coll, at, &tx).await };
        let write = async {
            while let Some(k) = rx.recv().await {
                w.push(&k?).await?;
            }
            Ok::<_, Error>(())
        };
        let (sent, written) = tokio::join!(send, write);
        match sent.and(written) {
            Ok(()) => w.finish().await,
            Err(e) => {
                w.abort().await;
                Err(e)
            }
        }
    }

    /// The primary keys of a reference end's collection now.
    pub(super) async fn live_collection_keys(&self, set: &KeySet) -> Result<KeyStream> {
        let (db, coll) = self.key_collection(set)?;
        let c = self.connect("check references").await?;
        let (tx, rx) = mpsc::channel(4096);
        let me = self.clone();
        tokio::spawn(async move {
            if let Err(e) = me.send_keys(&c, &db, &coll, None, &tx).await {
                let _ = tx.send(Err(e)).await;
            }
        });
        Ok(
            futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|k| (k, rx)) })
                .boxed(),
        )
    }
}

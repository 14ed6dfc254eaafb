//! Keys for `[[references]]`: a reference end's Cypher query (one column; nulls skipped; an
//! integer becomes its decimal text, so that `d.pg_id` matches a Postgres id). At backup the
//! queries run right after the export, on the same connection (Community has no snapshot: the
//! keys describe the graph as it was when the export ended); after a restore, live.

use amber_dr_core::references::{KeyQuery, KeySet, KeyStream};
use amber_dr_core::{ArtifactRecord, Error, Result, SnapshotContext};
use futures::StreamExt;
use neo4rs::{Graph, Query};

use crate::component::Neo4j;
use crate::error::{bolt_message, Neo4jError};
use crate::export::spawn_rows;
use crate::KIND;

/// One row's key: its single column as text; `None` for a null.
fn key_of(row: &neo4rs::Row) -> std::result::Result<Option<String>, String> {
    if let Ok(v) = row.to::<Option<i64>>() {
        return Ok(v.map(|i| i.to_string()));
    }
    if let Ok(v) = row.to::<Option<String>>() {
        return Ok(v);
    }
    Err("a row is not one integer or string column (the query must return exactly one)".into())
}

impl Neo4j {
    /// The rows of `query` as keys.
    fn keys_of(&self, g: &Graph, what: String, query: &str) -> KeyStream {
        let db = self.cfg.database.clone();
        let rx = spawn_rows(g, &db, Query::new(query.to_string()));
        // Errors made without `self` (the stream outlives the borrow).
        let (name, uri) = (self.name.clone(), self.cfg.uri.clone());
        let fail = move |message: String| {
            Neo4jError::Data {
                uri: uri.clone(),
                db: db.clone(),
                message: format!("{what}: {message}"),
            }
            .into_core(&name, "check references")
        };
        futures::stream::unfold(
            Some((rx, Vec::new().into_iter(), fail)),
            |state| async move {
                let (mut rx, mut rows, fail) = state?;
                loop {
                    if let Some(row) = rows.next() {
                        match key_of(&row) {
                            Ok(Some(k)) => return Some((Ok(k), Some((rx, rows, fail)))),
                            Ok(None) => continue,
                            Err(e) => return Some((Err(fail(e)), None)),
                        }
                    }
                    match rx.recv().await {
                        Some(Ok(Some(chunk))) => rows = chunk.into_iter(),
                        Some(Ok(None)) | None => return None,
                        Some(Err(e)) => return Some((Err(fail(bolt_message(&e))), None)),
                    }
                }
            },
        )
        .boxed()
    }

    /// Run `q` on `g` into its artifact.
    pub(crate) async fn write_keys(
        &self,
        cx: &SnapshotContext,
        g: &Graph,
        q: &KeyQuery,
    ) -> Result<ArtifactRecord> {
        q.set.refuse_fields(KIND, &[])?;
        let what = format!("the query of reference `{}`", q.reference);
        let mut keys = self.keys_of(g, what, q.set.query.as_deref().unwrap_or_default());
        let mut w = cx.key_writer(q).await?;
        while let Some(k) = keys.next().await {
            match k {
                Ok(k) => w.push(&k).await?,
                Err(e) => {
                    w.abort().await;
                    return Err(e);
                }
            }
        }
        w.finish().await
    }

    /// A reference end's query run now.
    pub(crate) async fn live_query_keys(&self, set: &KeySet) -> Result<KeyStream> {
        set.refuse_fields(KIND, &[])?;
        let Some(query) = set.query.as_deref() else {
            return Err(Error::config(
                format!("references: {}", self.name),
                "a reference end on a neo4j component needs a `query`",
            ));
        };
        let g = self
            .connect(&self.cfg.database)
            .await
            .map_err(|e| self.err("check references", e))?;
        Ok(self.keys_of(&g, "a reference query".into(), query))
    }
}

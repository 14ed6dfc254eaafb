//! Keys for `[[references]]`: a reference end's query (one column; NULLs skipped), run inside
//! the backup's exported snapshot of its database, or live after a restore. Values are
//! compared as their text (`::text`), so an integer id matches its decimal form elsewhere.

use amber_dr_core::references::{KeyQuery, KeySet, KeyStream};
use amber_dr_core::{ArtifactRecord, Error, Result, SnapshotContext};
use futures::{StreamExt, TryStreamExt};
use tokio_postgres::Client;

use crate::component::Postgres;
use crate::KIND;

/// The end's query wrapped so that it returns its one column as text.
fn wrapped(query: &str) -> String {
    format!(
        "SELECT amber_dr_q.k::text FROM ({}) AS amber_dr_q(k)",
        query.trim().trim_end_matches(';')
    )
}

/// Why a reference query failed, with the server's own message.
fn query_error(name: &str, reference: &str, db: &str, e: &tokio_postgres::Error) -> Error {
    let detail = e
        .as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_else(|| e.to_string());
    Error::Component {
        component: name.to_string(),
        kind: KIND.into(),
        operation: format!("run the query of reference `{reference}` in database `{db}`"),
        message: format!("{detail} (the query must return exactly one column)"),
        source: None,
    }
}

impl Postgres {
    /// The database a reference end's query runs in (`database`, required).
    pub(crate) fn key_database<'a>(&self, set: &'a KeySet, reference: &str) -> Result<&'a str> {
        set.refuse_fields(KIND, &["database"])?;
        set.database.as_deref().ok_or_else(|| {
            Error::config(
                format!("references: {reference}"),
                format!(
                    "the end on postgres component `{}` needs `database` (where its query runs)",
                    self.name
                ),
            )
        })
    }

    /// Run `q` on `client` (inside the exported snapshot of `db`) into its artifact.
    pub(crate) async fn write_keys(
        &self,
        cx: &SnapshotContext,
        client: &Client,
        db: &str,
        q: &KeyQuery,
    ) -> Result<ArtifactRecord> {
        let query = q.set.query.as_deref().unwrap_or_default();
        let rows = client
            .query_raw(wrapped(query).as_str(), std::iter::empty::<&str>())
            .await
            .map_err(|e| query_error(&self.name, &q.reference, db, &e))?;
        let mut w = cx.key_writer(q).await?;
        let mut rows = std::pin::pin!(rows);
        let res: Result<()> = async {
            while let Some(row) = rows
                .try_next()
                .await
                .map_err(|e| query_error(&self.name, &q.reference, db, &e))?
            {
                if let Some(k) = row.get::<_, Option<String>>(0) {
                    w.push(&k).await?;
                }
            }
            Ok(())
        }
        .await;
        match res {
            Ok(()) => w.finish().await,
            Err(e) => {
                w.abort().await;
                Err(e)
            }
        }
    }

    /// A reference end's query run now, in its own connection.
    pub(crate) async fn live_query_keys(&self, set: &KeySet) -> Result<KeyStream> {
        let db = self.key_database(set, "(live check)")?.to_string();
        self.query_keys_in(set, &db, "(live check)").await
    }

    /// Run the query of `set` in database `db` now; `context` names the check in errors.
    pub(crate) async fn query_keys_in(
        &self,
        set: &KeySet,
        db: &str,
        context: &'static str,
    ) -> Result<KeyStream> {
        let db = db.to_string();
        let client = self
            .connect(&db)
            .await
            .map_err(self.err("check references"))?;
        let query = set.query.clone().unwrap_or_default();
        let name = self.name.clone();
        let rows = client
            .query_raw(wrapped(&query).as_str(), std::iter::empty::<&str>())
            .await
            .map_err(|e| query_error(&name, context, &db, &e))?;
        // The client lives as long as the stream.
        Ok(rows
            .map(move |r| {
                let _keep = &client;
                r.map_err(|e| query_error(&name, context, &db, &e))
                    .map(|row| row.get::<_, Option<String>>(0))
            })
            .try_filter_map(|k| futures::future::ready(Ok(k)))
            .boxed())
    }
}

//! The restore: the backup's artifacts read and checked before the database is touched, then
//! the database emptied and loaded in batches linked by a temporary id.

use std::collections::BTreeMap;

use amber_dr_core::{
    ArtifactRecord, ComponentRecord, Error, ReadContext, RestoreContext, RestoreReport, Result,
};
use neo4rs::{BoltList, BoltType, Graph, Query};
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::component::{
    bmap, quote, row_string, Neo4j, SchemaItem, NODES, RELS, SCHEMA, TMP_ID, TMP_INDEX, TMP_LABEL,
};
use crate::error::Neo4jError;
use crate::export::Ids;
use crate::tally::Tally;
use crate::value::{decode_expr, props_to_params, NodeRecord, RelRecord};

fn node_insert_query() -> String {
    format!(
        "UNWIND $rows AS r CREATE (n:`{TMP_LABEL}`) SET n:$(r.labels) SET n += r.props, n.`{TMP_ID}` = r.id \
         WITH n, r FOREACH (c IN r.cx | SET n[c[0]] = {})",
        decode_expr("c")
    )
}

/// Relationships of one type (Neo4j 5.26 evaluates a dynamic `$(...)` type in CREATE once per
/// query, not per row, so the type is spelled out and batches are grouped by type).
fn rel_insert_query(typ: &str) -> String {
    format!(
        "UNWIND $rows AS r MATCH (a:`{TMP_LABEL}` {{`{TMP_ID}`: r.s}}) MATCH (b:`{TMP_LABEL}` {{`{TMP_ID}`: r.e}}) \
         CREATE (a)-[x:{}]->(b) SET x += r.props \
         WITH x, r FOREACH (c IN r.cx | SET x[c[0]] = {})",
        quote(typ),
        decode_expr("c")
    )
}

/// Lines of one artifact, checked (length and SHA-256) when the end is reached.
struct LineSource {
    reader: BufReader<amber_dr_core::ArtifactReader>,
    path: String,
    line: String,
}

impl LineSource {
    async fn open(cx: &ReadContext, art: &ArtifactRecord) -> Result<Self> {
        Ok(Self {
            reader: BufReader::with_capacity(256 * 1024, cx.open_artifact(art).await?),
            path: art.path.clone(),
            line: String::new(),
        })
    }
    /// The next line, without its newline; `None` at the end.
    async fn next(&mut self) -> Result<Option<&str>> {
        self.line.clear();
        let n = self
            .reader
            .read_line(&mut self.line)
            .await
            .map_err(|e| Error::from_io("read", &self.path, e))?;
        if n == 0 {
            return Ok(None);
        }
        if self.line.ends_with('\n') {
            self.line.pop();
        }
        Ok(Some(&self.line))
    }
    fn corrupt(&self, message: String) -> Error {
        Error::Corrupt {
            artifact: self.path.clone(),
            message,
        }
    }
    async fn finish(self) -> Result<()> {
        self.reader.into_inner().finish().await
    }
}

/// Decode every line of the artifact `name` of `rec` as an `R` (a line that does not decode is
/// damage: `Error::Corrupt` naming the artifact and `what` record), serialize it again
/// canonically and count it into `tally` with `add`; the artifact's length and hash are
/// checked at its end.
async fn tally_artifact<R: serde::de::DeserializeOwned + Serialize>(
    cx: &ReadContext,
    rec: &ComponentRecord,
    name: &str,
    what: &str,
    tally: &mut Tally,
    add: fn(&mut Tally, &R, &[u8]),
) -> Result<()> {
    let mut src = LineSource::open(cx, rec.artifact(name)?).await?;
    let mut line = Vec::with_capacity(1024);
    while let Some(l) = src.next().await? {
        let r: R = serde_json::from_str(l)
            .map_err(|e| src.corrupt(format!("a {what} record does not decode: {e}")))?;
        line.clear();
        serde_json::to_writer(&mut line, &r).map_err(|e| Error::Other(e.to_string()))?;
        add(tally, &r, &line);
    }
    src.finish().await
}

impl Neo4j {
    /// Read every artifact of `rec` to the end, decoding each record; returns the schema
    /// and the tally. Damage is an error for which `is_damage()` holds.
    pub(crate) async fn decode_all(
        &self,
        cx: &ReadContext,
        rec: &ComponentRecord,
    ) -> Result<(Vec<SchemaItem>, Tally)> {
        let mut tally = Tally::default();
        let art = rec.artifact(SCHEMA)?;
        let mut src = LineSource::open(cx, art).await?;
        let mut text = String::new();
        while let Some(l) = src.next().await? {
            text.push_str(l);
            text.push('\n');
        }
        let schema: Vec<SchemaItem> = serde_json::from_str(&text)
            .map_err(|e| src.corrupt(format!("not a schema list: {e}")))?;
        src.finish().await?;

        tally_artifact(cx, rec, NODES, "node", &mut tally, Tally::add_node).await?;
        // After the nodes: a relationship whose end node the backup does not hold (only in a
        // backup by an earlier version, which wrote them) counts as one a restore leaves out.
        tally_artifact(
            cx,
            rec,
            RELS,
            "relationship",
            &mut tally,
            Tally::add_rel_of_backup,
        )
        .await?;
        Ok((schema, tally))
    }

    /// Drop every constraint and index (lookup indexes stay), then delete all data in
    /// batches.
    pub(crate) async fn empty(&self, g: &Graph, db: &str) -> std::result::Result<(), Neo4jError> {
        for r in self
            .rows(
                g,
                db,
                "SHOW CONSTRAINTS",
                Query::new("SHOW CONSTRAINTS YIELD name RETURN name".into()),
            )
            .await?
        {
            let name = row_string(&r, "name").map_err(|e| self.data_err(db, e))?;
            self.run(
                g,
                db,
                "drop constraint",
                Query::new(format!("DROP CONSTRAINT {} IF EXISTS", quote(&name))),
            )
            .await?;
        }
        for r in self
            .rows(g, db, "SHOW INDEXES", Query::new("SHOW INDEXES YIELD name, type, owningConstraint WHERE type <> 'LOOKUP' AND owningConstraint IS NULL RETURN name".into()))
            .await?
        {
            let name = row_string(&r, "name").map_err(|e| self.data_err(db, e))?;
            self.run(g, db, "drop index", Query::new(format!("DROP INDEX {} IF EXISTS", quote(&name))))
                .await?;
        }
        self.run(
            g,
            db,
            "delete all nodes and relationships in batches",
            Query::new(format!(
                "MATCH (n) CALL {{ WITH n DETACH DELETE n }} IN TRANSACTIONS OF {} ROWS",
                self.cfg.batch_size
            )),
        )
        .await
    }

    pub(crate) async fn await_indexes(
        &self,
        g: &Graph,
        db: &str,
    ) -> std::result::Result<(), Neo4jError> {
        self.run(
            g,
            db,
            "wait for indexes",
            Query::new("CALL db.awaitIndexes(3600)".into()),
        )
        .await
    }

    pub(crate) async fn insert_batch(
        &self,
        g: &Graph,
        db: &str,
        what: &str,
        query: &str,
        rows: &mut Vec<BoltType>,
    ) -> std::result::Result<(), Neo4jError> {
        if rows.is_empty() {
            return Ok(());
        }
        let batch = BoltType::List(BoltList::from(std::mem::take(rows)));
        self.run(
            g,
            db,
            what,
            Query::new(query.to_string()).param("rows", batch),
        )
        .await
    }

    /// Empty `db` and load the backup `rec` (checked into `backup` by [`Neo4j::decode_all`]);
    /// relationships whose end node the backup does not hold are left out. Returns the
    /// restored graph read back.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn restore_into(
        &self,
        cx: &RestoreContext,
        rec: &ComponentRecord,
        g: &Graph,
        db: &str,
        schema: &[SchemaItem],
        backup: &Tally,
        report: &mut RestoreReport,
    ) -> Result<Tally> {
        let op = "restore";
        let progress = cx.progress();
        progress.set_phase("emptying the database");
        self.empty(g, db).await.map_err(|e| self.err(op, e))?;
        report.actions.push(format!(
            "emptied database `{db}` (constraints, indexes, data in batches of {})",
            self.cfg.batch_size
        ));

        progress.set_phase("schema");
        for item in schema {
            self.run(
                g,
                db,
                &format!("create {} `{}`", item.kind, item.name),
                Query::new(item.statement.clone()),
            )
            .await
            .map_err(|e| self.err(op, e))?;
        }
        self.run(
            g,
            db,
            "create the temporary restore index",
            Query::new(format!(
                "CREATE INDEX {TMP_INDEX} IF NOT EXISTS FOR (n:`{TMP_LABEL}`) ON (n.`{TMP_ID}`)"
            )),
        )
        .await
        .map_err(|e| self.err(op, e))?;
        self.await_indexes(g, db)
            .await
            .map_err(|e| self.err(op, e))?;
        report
            .actions
            .push(format!("created {} constraints/indexes", schema.len()));

        progress.set_phase("nodes");
        let q = node_insert_query();
        let mut src = LineSource::open(cx, rec.artifact(NODES)?).await?;
        let mut rows = Vec::with_capacity(self.cfg.batch_size);
        let mut count = 0u64;
        loop {
            let Some(l) = src.next().await? else { break };
            let n: NodeRecord =
                serde_json::from_str(l).map_err(|e| src.corrupt(format!("node record: {e}")))?;
            let (plain, cx_props) = props_to_params(&n.props)
                .map_err(|e| self.err(op, self.data_err(db, format!("node {}: {e}", n.id))))?;
            rows.push(bmap(vec![
                ("id", BoltType::from(n.id)),
                ("labels", BoltType::from(n.labels)),
                ("props", plain),
                ("cx", cx_props),
            ]));
            count += 1;
            if rows.len() >= self.cfg.batch_size {
                self.insert_batch(g, db, "create nodes", &q, &mut rows)
                    .await
                    .map_err(|e| self.err(op, e))?;
                progress.add_items(self.cfg.batch_size as u64);
            }
        }
        self.insert_batch(g, db, "create nodes", &q, &mut rows)
            .await
            .map_err(|e| self.err(op, e))?;
        src.finish().await?;
        report.actions.push(format!("created {count} nodes"));

        progress.set_phase("relationships");
        let mut src = LineSource::open(cx, rec.artifact(RELS)?).await?;
        let mut count = 0u64;
        let mut pending = 0usize;
        let mut groups: BTreeMap<String, Vec<BoltType>> = BTreeMap::new();
        loop {
            let Some(l) = src.next().await? else { break };
            let r: RelRecord = serde_json::from_str(l)
                .map_err(|e| src.corrupt(format!("relationship record: {e}")))?;
            if !(backup.has_node(r.s) && backup.has_node(r.e)) {
                continue;
            }
            let (plain, cx_props) = props_to_params(&r.props).map_err(|e| {
                self.err(
                    op,
                    self.data_err(db, format!("relationship {}->{}: {e}", r.s, r.e)),
                )
            })?;
            groups.entry(r.typ).or_default().push(bmap(vec![
                ("s", BoltType::from(r.s)),
                ("e", BoltType::from(r.e)),
                ("props", plain),
                ("cx", cx_props),
            ]));
            count += 1;
            pending += 1;
            if pending >= self.cfg.batch_size {
                for (typ, rows) in groups.iter_mut() {
                    self.insert_batch(g, db, "create relationships", &rel_insert_query(typ), rows)
                        .await
                        .map_err(|e| self.err(op, e))?;
                }
                groups.clear();
                progress.add_items(pending as u64);
                pending = 0;
            }
        }
        for (typ, rows) in groups.iter_mut() {
            self.insert_batch(g, db, "create relationships", &rel_insert_query(typ), rows)
                .await
                .map_err(|e| self.err(op, e))?;
        }
        src.finish().await?;
        report
            .actions
            .push(format!("created {count} relationships"));

        // Read the restored graph back with the temporary ids: same export, same fingerprint.
        progress.set_phase("comparing with the backup");
        let mut live = Tally::default();
        self.export(g, db, Ids::Restored, &mut live, None).await?;

        progress.set_phase("removing temporary ids");
        self.run(
            g,
            db,
            "remove the temporary ids",
            Query::new(format!(
                "MATCH (n:`{TMP_LABEL}`) CALL {{ WITH n REMOVE n:`{TMP_LABEL}`, n.`{TMP_ID}` }} IN TRANSACTIONS OF {} ROWS",
                self.cfg.batch_size
            )),
        )
        .await
        .map_err(|e| self.err(op, e))?;
        self.run(
            g,
            db,
            "drop the temporary index",
            Query::new(format!("DROP INDEX {TMP_INDEX} IF EXISTS")),
        )
        .await
        .map_err(|e| self.err(op, e))?;
        Ok(live)
    }
}

//! The export: the node and relationship queries, read page by page by tasks of their own
//! and written as canonical JSON lines; relationships whose end nodes the node query did not
//! return are left out and counted.

use amber_dr_core::{ArtifactRecord, ArtifactWriter, Error, Result};
use neo4rs::{Graph, Query};
use serde::Serialize;
use tokio::io::AsyncWriteExt;

use crate::component::{row_get, row_i64, row_string, row_strings, Neo4j, TMP_ID, TMP_LABEL};
use crate::tally::{IdSet, Tally};
use crate::value::{props_column, props_from_column, NodeRecord, RelRecord};

/// Tests: run once between the node and the relationship query of the next export.
#[cfg(test)]
pub(crate) static AFTER_NODES: std::sync::Mutex<
    Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>>,
> = std::sync::Mutex::new(None);

/// Tests: write every relationship, as versions before issue 18 did.
#[cfg(test)]
pub(crate) static KEEP_DANGLING: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

#[cfg(test)]
#[path = "export_tests.rs"]
mod tests;

/// Bytes buffered before a write into the artifact stream.
const WRITE_CHUNK: usize = 1 << 20;

/// What the export queries read: the source ids, or the temporary ids of a restore.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Ids {
    /// The live graph's own ids (a backup).
    Source,
    /// The temporary ids a restore gave the nodes (its read-back).
    Restored,
}

/// The node export: id, labels and the property column of [`props_column`]. Properties
/// are read once per node (`properties(n)`) and then looked up in that map: reading `n[k]`
/// again for every type test costs a store access each time.
fn node_query(ids: Ids) -> String {
    let (id, labels, skip) = match ids {
        Ids::Source => ("id(n)".to_string(), "labels(n)".to_string(), None),
        Ids::Restored => (
            format!("p.`{TMP_ID}`"),
            format!("[l IN labels(n) WHERE l <> '{TMP_LABEL}']"),
            Some(TMP_ID),
        ),
    };
    format!(
        "MATCH (n) WITH n, properties(n) AS p RETURN id(n) AS sid, {id} AS id, {labels} AS labels, {} AS props",
        props_column("p", skip)
    )
}

fn rel_query(ids: Ids) -> String {
    let (s, e) = match ids {
        Ids::Source => ("id(a)".to_string(), "id(b)".to_string()),
        Ids::Restored => (format!("a.`{TMP_ID}`"), format!("b.`{TMP_ID}`")),
    };
    format!(
        "MATCH (a)-[r]->(b) WITH a, r, b, properties(r) AS p RETURN id(r) AS sid, {s} AS s, {e} AS e, type(r) AS type, {} AS props",
        props_column("p", None)
    )
}

/// Rows handed from a reading task to the converter at a time.
const ROW_CHUNK: usize = 1000;
/// Chunks in flight between them (with neo4rs's own page of `page_size` rows, this bounds
/// the rows held per query).
const CHUNKS_IN_FLIGHT: usize = 4;

/// What a reading task sends: a chunk of rows, `None` once the query is complete, or the
/// error that ended it.
pub(crate) type RowChunk = std::result::Result<Option<Vec<neo4rs::Row>>, neo4rs::Error>;

/// Run `q` on `db` in a task of its own that pulls its rows (page by page) and sends them on
/// in chunks, so that pulling (and the server computing the next page) overlaps with the
/// caller converting the last chunk. The end is an explicit `Ok(None)`: a channel closed
/// without it means the task died. Dropping the receiver stops the task.
pub(crate) fn spawn_rows(g: &Graph, db: &str, q: Query) -> tokio::sync::mpsc::Receiver<RowChunk> {
    let (tx, rx) = tokio::sync::mpsc::channel(CHUNKS_IN_FLIGHT);
    let (g, db) = (g.clone(), db.to_string());
    tokio::spawn(async move {
        let mut s = match g.execute_on(db.as_str(), q).await {
            Ok(s) => s,
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        };
        let mut chunk = Vec::with_capacity(ROW_CHUNK);
        loop {
            let msg = match s.next().await {
                Ok(Some(row)) => {
                    chunk.push(row);
                    if chunk.len() < ROW_CHUNK {
                        continue;
                    }
                    Ok(Some(std::mem::replace(
                        &mut chunk,
                        Vec::with_capacity(ROW_CHUNK),
                    )))
                }
                Ok(None) => {
                    if !chunk.is_empty()
                        && tx.send(Ok(Some(std::mem::take(&mut chunk)))).await.is_err()
                    {
                        return;
                    }
                    let _ = tx.send(Ok(None)).await;
                    return;
                }
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            if tx.send(msg).await.is_err() {
                return;
            }
        }
    });
    rx
}

/// A line buffer in front of an artifact stream.
pub(crate) struct LineSink {
    writer: ArtifactWriter,
    buf: Vec<u8>,
}

impl LineSink {
    pub(crate) fn new(writer: ArtifactWriter) -> Self {
        Self {
            writer,
            buf: Vec::with_capacity(WRITE_CHUNK + 4096),
        }
    }
    async fn push(&mut self, line: &[u8]) -> Result<()> {
        self.buf.extend_from_slice(line);
        self.buf.push(b'\n');
        if self.buf.len() >= WRITE_CHUNK {
            self.flush().await?;
        }
        Ok(())
    }
    async fn flush(&mut self) -> Result<()> {
        if !self.buf.is_empty() {
            let path = self.writer.path().to_string();
            self.writer
                .write_all(&self.buf)
                .await
                .map_err(|e| Error::from_io("write", path, e))?;
            self.buf.clear();
        }
        Ok(())
    }
    pub(crate) async fn finish(mut self) -> Result<ArtifactRecord> {
        self.flush().await?;
        self.writer.finish().await
    }
}

impl Neo4j {
    /// Stream every node, then every relationship, of the live graph into the tally and, when
    /// given, the two sinks (nodes, relationships) as canonical JSON lines, page by page. Each
    /// query is read by a task of its own ([`spawn_rows`]), so the server computes the next
    /// pages while this side converts, hashes and compresses the last ones.
    ///
    /// The queries are read committed, not one snapshot. Nodes are read first and their ids
    /// kept (a bitmap); a relationship whose start or end node the node query did not return
    /// (created, or deleted and recreated, while the graph was read) is left out and counted
    /// ([`Tally::left_out`]) instead of written: a restore could not attach it. So the
    /// artifacts hold exactly what a restore creates, and the counts and fingerprint are
    /// theirs.
    ///
    /// Both queries also return each entity's server id (`sid`), and an entity the server
    /// returns twice in one scan is kept once and counted ([`Tally::read_twice`]): Neo4j 5's
    /// record-format relationship scan can return a relationship twice (or miss one) while
    /// relationships are inserted concurrently (neo4j/neo4j#13741, fixed in 2026.03).
    pub(crate) async fn export(
        &self,
        g: &Graph,
        db: &str,
        ids: Ids,
        tally: &mut Tally,
        sinks: Option<(&mut LineSink, &mut LineSink, &amber_dr_core::Progress)>,
    ) -> Result<()> {
        let (nodes, rels, progress) = match sinks {
            Some((n, r, p)) => (Some(n), Some(r), Some(p)),
            None => (None, None, None),
        };
        let read = self
            .export_stream(
                g,
                db,
                "read nodes",
                node_query(ids),
                |row| {
                    let mut labels = row_strings(row, "labels")?;
                    labels.sort();
                    let id = row_i64(row, "id")?;
                    let props = props_from_column(&row_get(row, "props")?)
                        .map_err(|e| format!("node {id}: {e}"))?;
                    Ok(NodeRecord { id, labels, props })
                },
                Tally::add_node,
                |_, _| true,
                nodes,
                progress,
            )
            .await?;
        #[cfg(test)]
        {
            let hook = AFTER_NODES.lock().ok().and_then(|mut h| h.take());
            if let Some(hook) = hook {
                hook.await;
            }
        }
        let rel_part = self
            .export_stream(
                g,
                db,
                "read relationships",
                rel_query(ids),
                |row| {
                    let typ = row_string(row, "type")?;
                    let props = props_from_column(&row_get(row, "props")?)
                        .map_err(|e| format!("relationship of type `{typ}`: {e}"))?;
                    Ok(RelRecord {
                        s: row_i64(row, "s")?,
                        e: row_i64(row, "e")?,
                        typ,
                        props,
                    })
                },
                Tally::add_rel,
                |t, r: &RelRecord| {
                    #[cfg(test)]
                    if KEEP_DANGLING.load(std::sync::atomic::Ordering::SeqCst) {
                        return true;
                    }
                    if read.has_node(r.s) && read.has_node(r.e) {
                        return true;
                    }
                    t.leave_out(r);
                    false
                },
                rels,
                progress,
            )
            .await?;
        tally.merge(read);
        tally.merge(rel_part);
        Ok(())
    }

    /// One export query: its rows (read by [`spawn_rows`]) turned into records by `record`;
    /// a row whose server id (`sid`) was already read is dropped and counted as read twice;
    /// those `keep` accepts (it may count the others into the tally) are each serialized once
    /// into its line, counted by `add` into a fresh tally and, when given, written to `sink`.
    #[allow(clippy::too_many_arguments)]
    async fn export_stream<R: Serialize>(
        &self,
        g: &Graph,
        db: &str,
        what: &str,
        q: String,
        record: impl Fn(&neo4rs::Row) -> std::result::Result<R, String>,
        add: impl Fn(&mut Tally, &R, &[u8]),
        keep: impl Fn(&mut Tally, &R) -> bool,
        mut sink: Option<&mut LineSink>,
        progress: Option<&amber_dr_core::Progress>,
    ) -> Result<Tally> {
        let op = "export";
        let mut tally = Tally::default();
        let mut seen = IdSet::default();
        let mut rx = spawn_rows(g, db, Query::new(q));
        let mut line = Vec::with_capacity(1024);
        loop {
            let chunk = match rx.recv().await {
                Some(Ok(Some(chunk))) => chunk,
                Some(Ok(None)) => break,
                Some(Err(e)) => return Err(self.err(op, self.query_err(db, what, &e))),
                None => {
                    return Err(self.err(
                        op,
                        self.data_err(db, format!("{what}: the reading task stopped early")),
                    ))
                }
            };
            for row in &chunk {
                let sid = row_i64(row, "sid").map_err(|e| self.err(op, self.data_err(db, e)))?;
                if seen.contains(sid) {
                    tally.read_twice += 1;
                    continue;
                }
                seen.insert(sid);
                let rec = record(row).map_err(|e| self.err(op, self.data_err(db, e)))?;
                if !keep(&mut tally, &rec) {
                    continue;
                }
                line.clear();
                serde_json::to_writer(&mut line, &rec).map_err(|e| Error::Other(e.to_string()))?;
                add(&mut tally, &rec, &line);
                if let Some(sink) = sink.as_deref_mut() {
                    sink.push(&line).await?;
                }
            }
            if let Some(p) = progress {
                p.add_items(chunk.len() as u64);
            }
        }
        Ok(tally)
    }
}

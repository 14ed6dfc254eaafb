//! The entities path of the `milvus` component (no `storage`): a snapshot reads each stream (a
//! partition, or the whole collection) page by page in primary-key order at the flush's
//! timestamp; a restore inserts the pages again and re-reads them to compare fingerprints.

use amber_dr_core::{ComponentRecord, Error, Progress, RestoreContext, Result, SnapshotContext};
use milvus::proto::common::ConsistencyLevel;
use milvus::proto::milvus as pb;
use milvus::proto::schema::{
    field_data::Field, scalar_field::Data, CollectionSchema, DataType, FieldData,
};
use prost::Message;
use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::task::JoinSet;

use super::*;
use crate::client::Client;
use crate::error::MilvusError;
use crate::pages::{self, Digest2, PageReader};

/// Bytes one page aims to stay under.
pub(super) const PAGE_BUDGET: usize = 8 * 1024 * 1024;

/// Where a paged read of one stream (a partition, or the whole collection) is.
#[derive(Debug)]
pub(super) struct Pager {
    db: String,
    coll: String,
    partition: Option<String>,
    pk: String,
    outputs: Vec<String>,
    cursor: Pk,
    first: bool,
    done: bool,
    page_rows: usize,
    /// What the queries read: see [`query_request`].
    at: Option<u64>,
    digest: Digest2,
    pages: u64,
}

impl Pager {
    /// A pager over the entities of `coll` (one partition, or all for `None`).
    pub(super) fn new(
        db: &str,
        coll: &str,
        partition: Option<&str>,
        schema: &CollectionSchema,
        page_rows: usize,
    ) -> Result<Self, String> {
        let pk_field = schema
            .fields
            .iter()
            .find(|f| f.is_primary_key)
            .ok_or_else(|| format!("`{db}.{coll}` has no primary key field"))?;
        let cursor = match DataType::try_from(pk_field.data_type) {
            Ok(DataType::Int64) => Pk::Int(i64::MIN),
            Ok(DataType::VarChar) => Pk::Str(String::new()),
            _ => {
                return Err(format!(
                    "`{db}.{coll}`: primary key type {} is not supported",
                    pk_field.data_type
                ))
            }
        };
        let mut outputs: Vec<String> = schema
            .fields
            .iter()
            .filter(|f| f.field_id >= 100 && !f.is_dynamic)
            .map(|f| f.name.clone())
            .collect();
        if schema.enable_dynamic_field {
            outputs.push("$meta".into());
        }
        Ok(Self {
            db: db.to_string(),
            coll: coll.to_string(),
            partition: partition.map(str::to_string),
            pk: pk_field.name.clone(),
            outputs,
            cursor,
            first: true,
            done: false,
            page_rows,
            at: None,
            digest: Digest2::default(),
            pages: 0,
        })
    }

    /// The same pager reading only the primary keys, as they were at `at` (or now).
    pub(super) fn keys_only(mut self, at: Option<u64>) -> Self {
        self.outputs = vec![self.pk.clone()];
        self.at = at;
        self
    }

    /// The primary key field's name.
    pub(super) fn pk(&self) -> &str {
        &self.pk
    }

    /// The last page has been taken.
    pub(super) fn is_done(&self) -> bool {
        self.done
    }

    /// ` partition `NAME`` for messages, or nothing for a whole-collection stream.
    pub(super) fn part_label(&self) -> String {
        partition_label(self.partition.as_deref())
    }

    /// The query for the next page: entities after the cursor, in primary-key order.
    pub(super) fn request(&self) -> pb::QueryRequest {
        query_request(
            &self.db,
            &self.coll,
            self.partition.as_deref(),
            self.cursor.expr(&self.pk, self.first),
            self.outputs.clone(),
            Some(self.page_rows),
            self.at,
        )
    }

    /// Take the answer to [`Pager::request`]: check that its keys lie after the cursor and move
    /// the cursor past them. `None` when the answer is empty (the stream is through).
    pub(super) fn take(
        &mut self,
        fields: Vec<FieldData>,
    ) -> Result<Option<(pb::QueryResults, u64)>, String> {
        let pks = pk_column(&fields, &self.pk).unwrap_or_default();
        let Some(first_pk) = pks.first() else {
            self.done = true;
            return Ok(None);
        };
        // Pages must come in key order: every key after the cursor.
        let max = pks
            .iter()
            .fold(first_pk.clone(), |a, b| if *b > a { b.clone() } else { a });
        if !self.first && pks.iter().any(|k| *k <= self.cursor) {
            return Err(format!(
                "`{}.{}`: the server returned a key at or before the page cursor; cannot page by primary key",
                self.db, self.coll
            ));
        }
        let n = pks.len() as u64;
        self.done = pks.len() < self.page_rows;
        self.cursor = max;
        self.first = false;
        Ok(Some((pages::canonical(fields), n)))
    }

    /// Count a page (canonical bytes) into the fingerprint.
    pub(super) fn add(&mut self, bytes: &[u8], n: u64) {
        self.digest.add(bytes, n);
        self.pages += 1;
    }
}

/// ` partition `NAME`` for messages, or nothing.
pub(super) fn partition_label(partition: Option<&str>) -> String {
    partition
        .map(|p| format!(" partition `{p}`"))
        .unwrap_or_default()
}

/// A query of `db.coll` (one partition, or all) that sees every write up to `at` (a hybrid
/// timestamp the server gave, e.g. an insert's: `Customized` consistency), or with `None` every
/// write the server has acknowledged (`Strong`). A Strong query waits for the query node to
/// catch up with the current time (up to one time tick, 200 ms by default) each time; a query
/// at a past timestamp does not, once the node has passed it.
pub(super) fn query_request(
    db: &str,
    coll: &str,
    partition: Option<&str>,
    expr: String,
    output_fields: Vec<String>,
    limit: Option<usize>,
    at: Option<u64>,
) -> pb::QueryRequest {
    let consistency = match at {
        Some(_) => ConsistencyLevel::Customized,
        None => ConsistencyLevel::Strong,
    };
    coll_req!(QueryRequest, db, coll,
        expr: expr,
        output_fields: output_fields,
        partition_names: partition.map(|p| vec![p.to_string()]).unwrap_or_default(),
        query_params: limit.map(|l| vec![kv("limit", l.to_string())]).unwrap_or_default(),
        guarantee_timestamp: at.unwrap_or(0),
        consistency_level: consistency as i32,
        use_default_consistency: false,
    )
}

/// The primary-key column of a page, as a cursor value for the next page's expression.
#[derive(Debug, Clone, PartialEq, PartialOrd)]
pub(super) enum Pk {
    Int(i64),
    Str(String),
}

impl Pk {
    pub(super) fn expr(&self, field: &str, first: bool) -> String {
        let op = if first { ">=" } else { ">" };
        match self {
            // Milvus 2.3 cannot parse i64::MIN in an expression: the first page is every key
            // up to i64::MAX, and after i64::MIN comes i64::MIN + 1.
            Pk::Int(_) if first => format!("{field} <= {}", i64::MAX),
            Pk::Int(i64::MIN) => format!("{field} >= {}", i64::MIN + 1),
            Pk::Int(i) => format!("{field} {op} {i}"),
            Pk::Str(s) => format!(
                "{field} {op} \"{}\"",
                s.replace('\\', "\\\\").replace('"', "\\\"")
            ),
        }
    }
}

/// The pk values of a page.
pub(super) fn pk_column(fields: &[FieldData], pk: &str) -> Option<Vec<Pk>> {
    let f = fields.iter().find(|f| f.field_name == pk)?;
    match &f.field {
        Some(Field::Scalars(s)) => match &s.data {
            Some(Data::LongData(l)) => Some(l.data.iter().map(|v| Pk::Int(*v)).collect()),
            Some(Data::StringData(d)) => Some(d.data.iter().cloned().map(Pk::Str).collect()),
            _ => None,
        },
        _ => None,
    }
}

/// Rough bytes per entity, from the schema (vectors dominate).
pub(super) fn row_bytes(schema: &CollectionSchema) -> usize {
    schema
        .fields
        .iter()
        .map(|f| {
            let dim: usize = f
                .type_params
                .iter()
                .find(|p| p.key == "dim")
                .and_then(|p| p.value.parse().ok())
                .unwrap_or(0);
            let max_len: usize = f
                .type_params
                .iter()
                .find(|p| p.key == "max_length")
                .and_then(|p| p.value.parse().ok())
                .unwrap_or(64);
            match DataType::try_from(f.data_type).unwrap_or(DataType::None) {
                DataType::FloatVector => dim * 4,
                DataType::Float16Vector | DataType::BFloat16Vector => dim * 2,
                DataType::BinaryVector => dim / 8,
                DataType::VarChar | DataType::String => max_len.min(4096),
                DataType::Json | DataType::Array => 1024,
                _ => 8,
            }
        })
        .sum::<usize>()
        .max(1)
}

impl Milvus {
    /// Read every page of `p` from the server in key order, each counted into the pager's
    /// fingerprint and, with `out`, written there (and counted as progress). The next page is
    /// fetched while the current one is encoded and written.
    pub(super) async fn read_pages<W: AsyncWrite + Unpin>(
        &self,
        c: &Client,
        op: &str,
        p: &mut Pager,
        mut out: Option<(&mut W, &str, &Progress)>,
    ) -> Result<()> {
        let what = format!("a query of `{}.{}`{}", p.db, p.coll, p.part_label());
        let what = what.as_str();
        let fetch =
            |req: pb::QueryRequest| async move { rpc!(c, what, query, req).map(|r| r.fields_data) };
        let mut fields = match fetch(p.request()).await {
            Ok(f) => f,
            Err(e) => return Err(self.gone_or(c, op, &p.db, &p.coll, e).await),
        };
        loop {
            let Some((page, n)) = p.take(fields).map_err(|m| self.fail(op, m))? else {
                return Ok(());
            };
            let next = (!p.done).then(|| p.request());
            let write = async {
                let bytes = page.encode_to_vec();
                p.add(&bytes, n);
                if let Some((w, path, progress)) = out.as_mut() {
                    pages::write_page(w, &bytes)
                        .await
                        .map_err(|e| Error::from_io("write", *path, e))?;
                    progress.add_items(n);
                }
                Ok::<(), Error>(())
            };
            let Some(req) = next else {
                return write.await;
            };
            let (fetched, written) = tokio::join!(fetch(req), write);
            written?;
            fields = match fetched {
                Ok(f) => f,
                Err(e) => return Err(self.gone_or(c, op, &p.db, &p.coll, e).await),
            };
        }
    }

    /// Export each stream (a partition, or the whole collection) into its own artifact.
    #[allow(clippy::too_many_arguments, clippy::type_complexity)]
    pub(super) async fn export_streams(
        &self,
        cx: &SnapshotContext,
        c: &Client,
        db: &str,
        coll: &str,
        index: usize,
        schema: &CollectionSchema,
        streams: &[Option<String>],
        page_rows: usize,
        flush_ts: Option<u64>,
    ) -> Result<(
        Vec<amber_dr_core::ArtifactRecord>,
        Vec<PartitionRecord>,
        u64,
    )> {
        let op = "snapshot";
        let mut artifacts = Vec::new();
        let mut records = Vec::new();
        let mut entities = 0;
        for (j, part) in streams.iter().enumerate() {
            let artifact = format!("c{index:03}-p{j:03}.pages");
            let w = cx.create_artifact(&artifact).await?;
            let path = w.path().to_string();
            let mut w = BufWriter::with_capacity(256 * 1024, w);
            let io = |e| Error::from_io("write", &path, e);
            w.write_all(pages::HEADER).await.map_err(io)?;
            let mut pager = Pager::new(db, coll, part.as_deref(), schema, page_rows)
                .map_err(|m| self.fail(op, m))?;
            // Pages read everything up to the flush without waiting for the server's current
            // time each; the Strong count below catches writes made meanwhile.
            pager.at = flush_ts;
            self.read_pages(
                c,
                op,
                &mut pager,
                Some((&mut w, path.as_str(), cx.progress())),
            )
            .await?;
            w.flush().await.map_err(io)?;
            artifacts.push(w.into_inner().finish().await?);
            // The count the server gives now must match what was read page by page.
            let live = match self.count(c, db, coll, part.as_deref(), None).await {
                Ok(n) => n,
                Err(e) => return Err(self.gone_or(c, op, db, coll, e).await),
            };
            if live != pager.digest.rows {
                return Err(self.fail(op, format!(
                    "`{db}.{coll}`{}: read {} entities page by page but count(*) says {live}: the collection changed during the export (or cannot be paged by key); run the backup again",
                    pager.part_label(),
                    pager.digest.rows
                )));
            }
            entities += pager.digest.rows;
            records.push(PartitionRecord {
                name: part.clone().unwrap_or_default(),
                artifact,
                entities: pager.digest.rows,
                pages: pager.pages,
                fingerprint: pager.digest.fingerprint(),
            });
        }
        Ok((artifacts, records, entities))
    }

    #[allow(deprecated)] // `CollectionSchema::auto_id`: what Milvus 2.3 sets
    pub(super) async fn snapshot_collection(
        &self,
        cx: &SnapshotContext,
        c: &Client,
        db: &str,
        coll: &str,
        index: usize,
    ) -> Result<(CollectionRecord, Vec<amber_dr_core::ArtifactRecord>)> {
        let op = "snapshot";
        let d = self.describe_for_snapshot(c, db, coll, op).await?;
        let (schema, indexes, loaded) = (&d.schema, &d.indexes, d.loaded);
        let partition_key = d.partition_key.clone();
        let partitions = self.partitions(c, db, coll).await.map_err(self.err(op))?;
        let flush_ts = self.flush(c, db, coll).await.map_err(self.err(op))?;
        // Queries need a loaded collection: load it for the export, release it afterwards.
        if !loaded {
            if indexes.is_empty() {
                return Err(self.fail(op, format!("`{db}.{coll}` is not loaded and has no index, so Milvus cannot load it to read its entities; create an index on its vector field")));
            }
            self.load(c, db, coll).await.map_err(self.err(op))?;
        }
        let page_rows = (PAGE_BUDGET / row_bytes(schema)).clamp(1, self.config.page_rows);
        let streams: Vec<Option<String>> = if partition_key.is_some() {
            vec![None]
        } else {
            partitions.iter().cloned().map(Some).collect()
        };
        let exported = self
            .export_streams(
                cx, c, db, coll, index, schema, &streams, page_rows, flush_ts,
            )
            .await;
        // Released again (it was loaded only to be read), whether the export worked or not.
        if !loaded {
            let released = self.release(c, db, coll).await.map_err(self.err(op));
            if exported.is_ok() {
                released?;
            }
        }
        let (artifacts, records, entities) = exported?;
        Ok((
            CollectionRecord {
                page_rows,
                partitions: records,
                entities,
                ..d.record(db, coll, flush_ts)
            },
            artifacts,
        ))
    }

    /// Read every artifact of `rec` through (hash-checked), decode every page and compare
    /// entity counts and fingerprints with the record.
    pub(super) async fn check_collection(
        &self,
        cx: &RestoreContext,
        record: &ComponentRecord,
        rec: &CollectionRecord,
    ) -> Result<()> {
        if let Some(b) = &rec.binlogs {
            return binlog::check(cx, record.artifact(&b.artifact)?, b).await;
        }
        for p in &rec.partitions {
            let mut pages = PageReader::open(cx, record.artifact(&p.artifact)?).await?;
            let mut d = Digest2::default();
            while let Some((page, qr)) = pages.next().await? {
                let n = pk_column(&qr.fields_data, &rec.primary_key)
                    .map(|v| v.len())
                    .ok_or_else(|| {
                        pages::corrupt(
                            pages.path(),
                            format!("a page has no primary key column `{}`", rec.primary_key),
                        )
                    })?;
                d.add(&page, n as u64);
            }
            let path = pages.path().to_string();
            pages.finish().await?;
            if d.rows != p.entities || d.fingerprint() != p.fingerprint {
                return Err(pages::corrupt(
                    &path,
                    format!(
                        "holds {} entities with fingerprint {}, the record says {} with {}",
                        d.rows,
                        d.fingerprint(),
                        p.entities,
                        p.fingerprint
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Insert the pages of one stream's artifact into `db.name`, up to `insert_concurrency`
    /// inserts in flight while the next pages are read. Returns the entities inserted and the
    /// latest timestamp the server gave an insert (0 if none did).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn insert_stream(
        &self,
        cx: &RestoreContext,
        c: &Client,
        record: &ComponentRecord,
        rec: &CollectionRecord,
        p: &PartitionRecord,
        db: &str,
        name: &str,
    ) -> Result<(u64, u64)> {
        let op = "restore";
        let mut pages = PageReader::open(cx, record.artifact(&p.artifact)?).await?;
        let partition_name = if rec.partition_key.is_some() {
            String::new()
        } else {
            p.name.clone()
        };
        let what = format!(
            "an insert into `{db}.{name}`{}",
            partition_label((!partition_name.is_empty()).then_some(p.name.as_str()))
        );
        type Inserted = Result<(u64, u64), MilvusError>;
        let mut inflight: JoinSet<Inserted> = JoinSet::new();
        let (mut inserted, mut ts) = (0u64, 0u64);
        let joined = |j: Option<Result<Inserted, tokio::task::JoinError>>| match j {
            None => Ok((0, 0)),
            Some(Ok(Ok((n, ts)))) => {
                cx.progress().add_items(n);
                Ok((n, ts))
            }
            Some(Ok(Err(e))) => Err(self.fail(op, e.to_string())),
            Some(Err(e)) => Err(self.fail(op, format!("{what}: {e}"))),
        };
        while let Some((_, qr)) = pages.next().await? {
            let n = pk_column(&qr.fields_data, &rec.primary_key)
                .map(|v| v.len())
                .unwrap_or(0);
            let mut fields_data = qr.fields_data;
            pages::fill_empty_arrays(&mut fields_data);
            let req = coll_req!(InsertRequest, db, name,
                partition_name: partition_name.clone(),
                fields_data: fields_data,
                num_rows: n as u32,
            );
            if inflight.len() >= self.config.insert_concurrency {
                let (n, t) = joined(inflight.join_next().await)?;
                (inserted, ts) = (inserted + n, ts.max(t));
            }
            let (c, what) = (c.clone(), what.clone());
            inflight
                .spawn(async move { rpc!(c, &what, insert, req).map(|r| (n as u64, r.timestamp)) });
        }
        while !inflight.is_empty() {
            let (n, t) = joined(inflight.join_next().await)?;
            (inserted, ts) = (inserted + n, ts.max(t));
        }
        pages.finish().await?;
        Ok((inserted, ts))
    }

    /// Load `db.name` and compare its entity counts and fingerprints with the record
    /// (re-reading it with the recorded page size, at `at`: see [`query_request`]); released
    /// again if it was not loaded.
    pub(super) async fn compare(
        &self,
        c: &Client,
        rec: &CollectionRecord,
        schema: &CollectionSchema,
        db: &str,
        name: &str,
        at: Option<u64>,
    ) -> Result<()> {
        let op = "restore";
        let e = self.err(op);
        self.load(c, db, name).await.map_err(&e)?;
        for p in &rec.partitions {
            let part = (!p.name.is_empty()).then_some(p.name.as_str());
            let live = self.count(c, db, name, part, at).await.map_err(&e)?;
            if live != p.entities {
                return Err(self.fail(
                    op,
                    format!(
                        "`{db}.{name}`{}: {live} entities after the restore, the backup has {}",
                        partition_label(part),
                        p.entities
                    ),
                ));
            }
            let mut pager =
                Pager::new(db, name, part, schema, rec.page_rows).map_err(|m| self.fail(op, m))?;
            pager.at = at;
            self.read_pages::<tokio::io::Sink>(c, op, &mut pager, None)
                .await?;
            if pager.digest.fingerprint() != p.fingerprint {
                return Err(self.fail(
                    op,
                    format!(
                        "`{db}.{name}`{}: the restored entities differ from the backup (fingerprint)",
                        partition_label(part)
                    ),
                ));
            }
        }
        if !rec.loaded {
            self.release(c, db, name).await.map_err(&e)?;
        }
        Ok(())
    }
}

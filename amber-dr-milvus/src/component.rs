//! The `milvus` component.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use amber_dr_core::{
    async_trait, Capabilities, Component, ComponentRecord, Error, Probe, Progress, RestoreContext,
    RestoreOptions, RestoreRelation, RestoreReport, Result, SnapshotContext, SnapshotPurpose,
    VerifyContext, VerifyLevel, VerifyReport,
};
use milvus::proto::common::{ConsistencyLevel, KeyValuePair, LoadState};
use milvus::proto::milvus as pb;
use milvus::proto::schema::{
    field_data::Field, scalar_field::Data, CollectionSchema, DataType, FieldData,
};
use prost::Message;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::task::JoinSet;

use crate::client::{Client, MilvusError};
use crate::config::MilvusConfig;
use crate::pages::{self, Digest2, PageReader};
use crate::{binlog, storage::Bucket};

mod describe;
mod scope;
mod segments;

use scope::Scope;

/// Call a method of the gRPC service for `what` (named in errors); fails on a transport error
/// or a status that is not success.
macro_rules! rpc {
    ($c:expr, $what:expr, $method:ident, $req:expr) => {{
        let req = $req;
        $c.call($what, |mut s| async move { s.$method(req).await })
            .await
    }};
}

/// A request about one collection: `db_name`, `collection_name`, the given fields, defaults.
macro_rules! coll_req {
    ($t:ident, $db:expr, $coll:expr $(, $f:ident : $v:expr)* $(,)?) => {
        pb::$t {
            db_name: $db.to_string(),
            collection_name: $coll.to_string(),
            $($f: $v,)*
            ..Default::default()
        }
    };
}

/// Bytes one page aims to stay under.
const PAGE_BUDGET: usize = 8 * 1024 * 1024;

/// An index of a collection.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct IndexRecord {
    name: String,
    field: String,
    /// `index_type`, `metric_type`, `params`, ... as the server describes them.
    params: BTreeMap<String, String>,
}

/// One partition's entities.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PartitionRecord {
    /// Partition name (`_default` included); empty for partition-key collections, whose
    /// entities are exported and inserted as one stream.
    name: String,
    artifact: String,
    entities: u64,
    pages: u64,
    fingerprint: String,
}

/// One collection of a snapshot.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CollectionRecord {
    db: String,
    name: String,
    /// The schema as the server described it (protobuf `CollectionSchema`, hex).
    schema_hex: String,
    /// Human-readable summary: `name: type` per field, with pk/auto-id/partition-key marks.
    fields: Vec<String>,
    primary_key: String,
    auto_id: bool,
    dynamic_field: bool,
    partition_key: Option<String>,
    num_partitions: i64,
    shards_num: i32,
    consistency_level: i32,
    properties: BTreeMap<String, String>,
    aliases: Vec<String>,
    indexes: Vec<IndexRecord>,
    loaded: bool,
    page_rows: usize,
    partitions: Vec<PartitionRecord>,
    entities: u64,
    /// Hybrid timestamp of the flush before the export (absent when the server gave none):
    /// every write before it is in the export.
    #[serde(default)]
    flush_ts: Option<u64>,
    /// Backed up as segment files (`storage` configured); `partitions` is then empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    binlogs: Option<binlog::BinlogRecord>,
}

/// Where a paged read of one stream (a partition, or the whole collection) is.
#[derive(Debug)]
struct Pager {
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
    fn new(
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

    /// ` partition `NAME`` for messages, or nothing for a whole-collection stream.
    fn part_label(&self) -> String {
        partition_label(self.partition.as_deref())
    }

    /// The query for the next page: entities after the cursor, in primary-key order.
    fn request(&self) -> pb::QueryRequest {
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
    fn take(&mut self, fields: Vec<FieldData>) -> Result<Option<(pb::QueryResults, u64)>, String> {
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
    fn add(&mut self, bytes: &[u8], n: u64) {
        self.digest.add(bytes, n);
        self.pages += 1;
    }
}

/// ` partition `NAME`` for messages, or nothing.
fn partition_label(partition: Option<&str>) -> String {
    partition
        .map(|p| format!(" partition `{p}`"))
        .unwrap_or_default()
}

/// A query of `db.coll` (one partition, or all) that sees every write up to `at` (a hybrid
/// timestamp the server gave, e.g. an insert's: `Customized` consistency), or with `None` every
/// write the server has acknowledged (`Strong`). A Strong query waits for the query node to
/// catch up with the current time (up to one time tick, 200 ms by default) each time; a query
/// at a past timestamp does not, once the node has passed it.
fn query_request(
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

/// What the record keeps.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Details {
    server_version: String,
    collections: Vec<CollectionRecord>,
    /// Configured collections that did not exist when a safety snapshot was taken
    /// (`db`, `name`): restoring the snapshot drops them again.
    #[serde(default)]
    absent: Vec<(String, String)>,
}

/// A Milvus server (2.3 or later), backed up logically over gRPC. See the crate docs.
#[derive(Debug, Clone)]
pub struct Milvus {
    name: String,
    config: MilvusConfig,
    /// Milvus's bucket, when `storage` is configured.
    bucket: Option<Bucket>,
}

pub(crate) fn kv(key: &str, value: impl Into<String>) -> KeyValuePair {
    KeyValuePair {
        key: key.to_string(),
        value: value.into(),
    }
}

fn kvs_map(kvs: &[KeyValuePair]) -> BTreeMap<String, String> {
    kvs.iter()
        .map(|p| (p.key.clone(), p.value.clone()))
        .collect()
}

/// The primary-key column of a page, as a cursor value for the next page's expression.
#[derive(Debug, Clone, PartialEq, PartialOrd)]
enum Pk {
    Int(i64),
    Str(String),
}

impl Pk {
    fn expr(&self, field: &str, first: bool) -> String {
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
fn pk_column(fields: &[FieldData], pk: &str) -> Option<Vec<Pk>> {
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
fn row_bytes(schema: &CollectionSchema) -> usize {
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

fn type_name(f: &milvus::proto::schema::FieldSchema) -> String {
    let t = DataType::try_from(f.data_type)
        .map(|t| format!("{t:?}"))
        .unwrap_or_else(|_| format!("type {}", f.data_type));
    let params: Vec<String> = f
        .type_params
        .iter()
        .map(|p| format!("{}={}", p.key, p.value))
        .collect();
    let mut s = format!("{}: {t}", f.name);
    if !params.is_empty() {
        s.push_str(&format!("({})", params.join(", ")));
    }
    if f.is_primary_key {
        s.push_str(" primary key");
    }
    if f.auto_id {
        s.push_str(" auto id");
    }
    if f.is_partition_key {
        s.push_str(" partition key");
    }
    s
}

impl Milvus {
    /// A `milvus` component named `name`.
    pub fn new(name: impl Into<String>, config: MilvusConfig) -> Result<Self> {
        let name = name.into();
        if !config.endpoint.starts_with("http://") {
            return Err(Error::config(
                format!("components.{name}.endpoint"),
                format!(
                    "`{}` is not an http:// URL of Milvus's gRPC port (e.g. http://127.0.0.1:19530); https:// (TLS) is not supported yet",
                    config.endpoint
                ),
            ));
        }
        for (key, value) in [
            ("page_rows", config.page_rows),
            ("insert_concurrency", config.insert_concurrency),
        ] {
            if value == 0 {
                return Err(Error::config(
                    format!("components.{name}.{key}"),
                    "must be at least 1",
                ));
            }
        }
        let bucket = match &config.storage {
            Some(s) => Some(
                Bucket::new(s)
                    .map_err(|m| Error::config(format!("components.{name}.storage"), m))?,
            ),
            None => None,
        };
        Ok(Self {
            name,
            config,
            bucket,
        })
    }

    fn fail(&self, op: &str, message: impl Into<String>) -> Error {
        Error::component(&self.name, crate::KIND, op, message)
    }

    fn err(&self, op: &'static str) -> impl Fn(MilvusError) -> Error + '_ {
        move |e| self.fail(op, e.to_string())
    }

    async fn connect(&self, op: &'static str) -> Result<Client> {
        Client::connect(&self.config.endpoint, self.config.timeout())
            .await
            .map_err(self.err(op))
    }

    async fn version(&self, c: &Client) -> Result<String, MilvusError> {
        let r = c
            .call_unchecked("GetVersion", |mut s| async move {
                s.get_version(pb::GetVersionRequest {}).await
            })
            .await?;
        Ok(r.version)
    }

    async fn list_collections(&self, c: &Client, db: &str) -> Result<Vec<String>, MilvusError> {
        let what = format!("to list the collections of database `{db}`");
        let req = pb::ShowCollectionsRequest {
            db_name: db.to_string(),
            ..Default::default()
        };
        let mut names = rpc!(c, &what, show_collections, req)?.collection_names;
        names.sort();
        Ok(names)
    }

    /// Entities in a collection (or one partition) now, by `count(*)`.
    async fn count(
        &self,
        c: &Client,
        db: &str,
        coll: &str,
        partition: Option<&str>,
        at: Option<u64>,
    ) -> Result<u64, MilvusError> {
        let what = format!("count(*) of `{db}.{coll}`");
        let req = query_request(
            db,
            coll,
            partition,
            String::new(),
            vec!["count(*)".into()],
            None,
            at,
        );
        rpc!(c, &what, query, req)?
            .fields_data
            .iter()
            .find_map(|f| match &f.field {
                Some(Field::Scalars(s)) => match &s.data {
                    Some(Data::LongData(l)) => l.data.first().copied(),
                    _ => None,
                },
                _ => None,
            })
            .map(|n| n.max(0) as u64)
            .ok_or_else(|| c.call_err(&what, "the answer holds no count"))
    }

    async fn load_state(&self, c: &Client, db: &str, coll: &str) -> Result<LoadState, MilvusError> {
        let what = format!("GetLoadState of `{db}.{coll}`");
        let r = rpc!(
            c,
            &what,
            get_load_state,
            coll_req!(GetLoadStateRequest, db, coll)
        )?;
        Ok(LoadState::try_from(r.state).unwrap_or(LoadState::NotExist))
    }

    async fn load(&self, c: &Client, db: &str, coll: &str) -> Result<(), MilvusError> {
        let what = format!("to load `{db}.{coll}`");
        let req = coll_req!(LoadCollectionRequest, db, coll, replica_number: 1);
        rpc!(c, &what, load_collection, req)?;
        let deadline =
            tokio::time::Instant::now() + Duration::from_secs(self.config.load_timeout_secs);
        loop {
            if self.load_state(c, db, coll).await? == LoadState::Loaded {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(c.call_err(
                    &what,
                    format!(
                        "not loaded after {}s (load_timeout_secs)",
                        self.config.load_timeout_secs
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    async fn release(&self, c: &Client, db: &str, coll: &str) -> Result<(), MilvusError> {
        let what = format!("to release `{db}.{coll}`");
        let req = coll_req!(ReleaseCollectionRequest, db, coll);
        rpc!(c, &what, release_collection, req).map(drop)
    }

    async fn describe(
        &self,
        c: &Client,
        db: &str,
        coll: &str,
    ) -> Result<pb::DescribeCollectionResponse, MilvusError> {
        let what = format!("DescribeCollection of `{db}.{coll}`");
        let req = coll_req!(DescribeCollectionRequest, db, coll);
        rpc!(c, &what, describe_collection, req)
    }

    async fn exists(&self, c: &Client, db: &str, coll: &str) -> Result<bool, MilvusError> {
        let what = format!("HasCollection `{db}.{coll}`");
        let req = coll_req!(HasCollectionRequest, db, coll);
        Ok(rpc!(c, &what, has_collection, req)?.value)
    }

    #[allow(deprecated)] // `error_code`: what Milvus 2.3 sets
    async fn indexes(
        &self,
        c: &Client,
        db: &str,
        coll: &str,
    ) -> Result<Vec<IndexRecord>, MilvusError> {
        let what = format!("DescribeIndex of `{db}.{coll}`");
        let req = coll_req!(DescribeIndexRequest, db, coll);
        let r = c
            .call_unchecked(&what, |mut s| async move { s.describe_index(req).await })
            .await?;
        if let Some(s) = &r.status {
            // "index not found" means no index: not an error.
            if (s.code != 0 || s.error_code != 0) && s.reason.contains("not found") {
                return Ok(Vec::new());
            }
        }
        c.check(&what, r.status.as_ref())?;
        Ok(r.index_descriptions
            .into_iter()
            .map(|d| IndexRecord {
                name: d.index_name,
                field: d.field_name,
                params: kvs_map(&d.params),
            })
            .collect())
    }

    async fn partitions(
        &self,
        c: &Client,
        db: &str,
        coll: &str,
    ) -> Result<Vec<String>, MilvusError> {
        let what = format!("ShowPartitions of `{db}.{coll}`");
        let req = coll_req!(ShowPartitionsRequest, db, coll);
        Ok(rpc!(c, &what, show_partitions, req)?.partition_names)
    }

    /// Flush `db.coll`; returns the flush's hybrid timestamp where the server gives one
    /// (Milvus 2.3.5 does): every write before it is in the flushed segments.
    async fn flush(&self, c: &Client, db: &str, coll: &str) -> Result<Option<u64>, MilvusError> {
        let what = format!("Flush of `{db}.{coll}`");
        let req = pb::FlushRequest {
            db_name: db.to_string(),
            collection_names: vec![coll.to_string()],
            ..Default::default()
        };
        let r = rpc!(c, &what, flush, req)?;
        Ok(r.coll_flush_ts.get(coll).copied().filter(|ts| *ts > 0))
    }

    /// An error for a failed call about `db.coll`: when the collection no longer exists, says
    /// that it was dropped while it was being read.
    async fn gone_or(&self, c: &Client, op: &str, db: &str, coll: &str, e: MilvusError) -> Error {
        if let Ok(false) = self.exists(c, db, coll).await {
            return self.fail(
                op,
                format!("collection `{db}.{coll}` was dropped while it was being read ({e})"),
            );
        }
        self.fail(op, e.to_string())
    }

    /// Read every page of `p` from the server in key order, each counted into the pager's
    /// fingerprint and, with `out`, written there (and counted as progress). The next page is
    /// fetched while the current one is encoded and written.
    async fn read_pages<W: AsyncWrite + Unpin>(
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

    /// Every database on the server (just `default` where `ListDatabases` is not implemented:
    /// servers before 2.2.9 have no databases).
    async fn server_databases(&self, c: &Client) -> Result<Vec<String>, MilvusError> {
        let what = "ListDatabases";
        let r = c
            .svc
            .clone()
            .list_databases(pb::ListDatabasesRequest::default())
            .await;
        let r = match r {
            Err(s) if s.code() == tonic::Code::Unimplemented => return Ok(vec!["default".into()]),
            r => r.map_err(c.grpc(what))?.into_inner(),
        };
        c.check(what, r.status.as_ref())?;
        let mut names = r.db_names;
        names.sort();
        Ok(names)
    }

    /// The databases to back up with their collections, and what the config names that does
    /// not exist.
    async fn scope(&self, c: &Client) -> Result<Scope, MilvusError> {
        let mut scope = Scope {
            server: self.server_databases(c).await?,
            ..Default::default()
        };
        for db in self.config.databases.as_ref().unwrap_or(&scope.server) {
            if !scope.server.contains(db) {
                scope.missing_databases.push(db.clone());
                continue;
            }
            match self.list_collections(c, db).await {
                Ok(names) => scope.listed.push((db.clone(), names)),
                // Every database is backed up and this one was dropped since it was listed:
                // there is nothing of it to back up.
                Err(_)
                    if self.config.databases.is_none()
                        && !self.server_databases(c).await?.contains(db) => {}
                Err(e) => return Err(e),
            }
        }
        for want in self.config.collections.iter().flatten() {
            // `DB/NAME`, or a bare name: that collection in every database backed up.
            let (db, name) = match want.split_once('/') {
                Some((db, name)) => (Some(db), name),
                None => (None, want.as_str()),
            };
            let mut found = false;
            for (d, names) in &scope.listed {
                if db.is_some_and(|db| db != d) {
                    continue;
                }
                if names.iter().any(|n| n == name) {
                    found = true;
                } else {
                    scope.absent.push((d.clone(), name.to_string()));
                }
            }
            if let Some(db) = db.filter(|db| !scope.listed.iter().any(|(d, _)| d == db)) {
                scope.absent.push((db.to_string(), name.to_string()));
            }
            if !found {
                scope.unmatched.push(want.clone());
            }
        }
        Ok(scope)
    }

    fn selected_collection(&self, db: &str, coll: &str) -> bool {
        match &self.config.collections {
            Some(list) => list
                .iter()
                .any(|c| c == coll || *c == format!("{db}/{coll}")),
            None => true,
        }
    }

    /// Export each stream (a partition, or the whole collection) into its own artifact.
    #[allow(clippy::too_many_arguments, clippy::type_complexity)]
    async fn export_streams(
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
    async fn snapshot_collection(
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
    async fn check_collection(
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

    /// Drop `db.name` and its aliases, if it exists.
    async fn drop_if_exists(
        &self,
        c: &Client,
        db: &str,
        name: &str,
        report: &mut RestoreReport,
    ) -> Result<(), MilvusError> {
        if !self.exists(c, db, name).await? {
            return Ok(());
        }
        for alias in &self.describe(c, db, name).await?.aliases {
            let what = format!("to drop alias `{alias}` of `{db}.{name}`");
            let req = pb::DropAliasRequest {
                db_name: db.to_string(),
                alias: alias.clone(),
                ..Default::default()
            };
            rpc!(c, &what, drop_alias, req)?;
        }
        let what = format!("to drop `{db}.{name}`");
        rpc!(
            c,
            &what,
            drop_collection,
            coll_req!(DropCollectionRequest, db, name)
        )?;
        report.actions.push(format!("dropped `{db}.{name}`"));
        Ok(())
    }

    /// Create database `db` unless the server has it (after a disaster only `default` may be
    /// left).
    async fn ensure_database(
        &self,
        c: &Client,
        db: &str,
        report: &mut RestoreReport,
    ) -> Result<(), MilvusError> {
        if self.server_databases(c).await?.iter().any(|d| d == db) {
            return Ok(());
        }
        let what = format!("to create database `{db}`");
        let req = pb::CreateDatabaseRequest {
            db_name: db.to_string(),
            ..Default::default()
        };
        rpc!(c, &what, create_database, req)?;
        report.actions.push(format!("created database `{db}`"));
        Ok(())
    }

    /// Create `db.name` from the recorded schema (auto-id off), with its partitions.
    async fn create_from_record(
        &self,
        c: &Client,
        rec: &CollectionRecord,
        schema: &CollectionSchema,
        db: &str,
        name: &str,
        report: &mut RestoreReport,
    ) -> Result<(), MilvusError> {
        let what = format!("to create `{db}.{name}`");
        let req = coll_req!(CreateCollectionRequest, db, name,
            schema: schema.encode_to_vec(),
            shards_num: rec.shards_num,
            consistency_level: rec.consistency_level,
            properties: rec.properties.iter().map(|(k, v)| kv(k, v.clone())).collect(),
            num_partitions: if rec.partition_key.is_some() { rec.num_partitions } else { 0 },
        );
        rpc!(c, &what, create_collection, req)?;
        report.actions.push(format!(
            "created `{db}.{name}` ({} fields{})",
            schema.fields.len(),
            if rec.auto_id && rec.binlogs.is_none() {
                ", auto-id switched off to keep the primary keys"
            } else {
                ""
            }
        ));
        if rec.auto_id && rec.binlogs.is_none() {
            report.warnings.push(format!(
                "`{db}.{name}` was an auto-id collection; it is restored with auto_id = false so that its primary keys stay as they were: inserts must now supply primary keys"
            ));
        }
        if rec.partition_key.is_none() {
            for p in rec
                .partitions
                .iter()
                .filter(|p| p.name != "_default" && !p.name.is_empty())
            {
                let what = format!("to create partition `{}` of `{db}.{name}`", p.name);
                let req =
                    coll_req!(CreatePartitionRequest, db, name, partition_name: p.name.clone());
                rpc!(c, &what, create_partition, req)?;
            }
        }
        Ok(())
    }

    /// Insert the pages of one stream's artifact into `db.name`, up to `insert_concurrency`
    /// inserts in flight while the next pages are read. Returns the entities inserted and the
    /// latest timestamp the server gave an insert (0 if none did).
    #[allow(clippy::too_many_arguments)]
    async fn insert_stream(
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

    /// Create the recorded indexes on `db.name`.
    async fn create_indexes(
        &self,
        c: &Client,
        rec: &CollectionRecord,
        db: &str,
        name: &str,
    ) -> Result<(), MilvusError> {
        for ix in &rec.indexes {
            let what = format!(
                "to create index `{}` on `{db}.{name}.{}`",
                ix.name, ix.field
            );
            let req = coll_req!(CreateIndexRequest, db, name,
                field_name: ix.field.clone(),
                index_name: ix.name.clone(),
                extra_params: ix.params.iter().map(|(k, v)| kv(k, v.clone())).collect(),
            );
            rpc!(c, &what, create_index, req)?;
        }
        Ok(())
    }

    /// Load `db.name` and compare its entity counts and fingerprints with the record
    /// (re-reading it with the recorded page size, at `at`: see [`query_request`]); released
    /// again if it was not loaded.
    async fn compare(
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

    /// Put the recorded aliases on `db.name` (moved back if another collection took them).
    async fn restore_aliases(
        &self,
        c: &Client,
        rec: &CollectionRecord,
        db: &str,
        name: &str,
    ) -> Result<(), MilvusError> {
        for alias in &rec.aliases {
            let what = format!("to create alias `{alias}` for `{db}.{name}`");
            let req = pb::CreateAliasRequest {
                db_name: db.to_string(),
                collection_name: name.to_string(),
                alias: alias.clone(),
                ..Default::default()
            };
            if rpc!(c, &what, create_alias, req).is_err() {
                // The alias points at another collection now: move it back.
                let req = pb::AlterAliasRequest {
                    db_name: db.to_string(),
                    collection_name: name.to_string(),
                    alias: alias.clone(),
                    ..Default::default()
                };
                rpc!(c, &what, alter_alias, req)?;
            }
        }
        Ok(())
    }

    /// Drop `db.name` (with its aliases) if it exists, recreate it from `rec` and fill it.
    #[allow(deprecated, clippy::too_many_arguments)] // `CollectionSchema::auto_id`: Milvus 2.3 reads it
    async fn restore_collection(
        &self,
        cx: &RestoreContext,
        c: &Client,
        record: &ComponentRecord,
        rec: &CollectionRecord,
        db: &str,
        name: &str,
        report: &mut RestoreReport,
    ) -> Result<()> {
        let op = "restore";
        let e = self.err(op);
        if let Some(b) = &rec.binlogs {
            return self
                .restore_binlogs(cx, c, record, (rec, b), db, name, report)
                .await;
        }
        let same_place = db == rec.db && name == rec.name;
        self.drop_if_exists(c, db, name, report).await.map_err(&e)?;
        let bad_schema =
            |x: String| self.fail(op, format!("schema of `{}` in the record: {x}", rec.name));
        let mut schema = CollectionSchema::decode(
            hex::decode(&rec.schema_hex)
                .map_err(|x| bad_schema(x.to_string()))?
                .as_slice(),
        )
        .map_err(|x| bad_schema(x.to_string()))?;
        schema.name = name.to_string();
        // Primary keys are written as they were: auto-id is switched off on the new collection.
        schema.auto_id = false;
        schema.fields.retain(|f| f.field_id >= 100 && !f.is_dynamic);
        for f in &mut schema.fields {
            if f.is_primary_key {
                f.auto_id = false;
            }
        }
        self.ensure_database(c, db, report).await.map_err(&e)?;
        self.create_from_record(c, rec, &schema, db, name, report)
            .await
            .map_err(&e)?;
        // Entities, page by page (a page is an insert batch).
        let started = Instant::now();
        let (mut inserted, mut last_write) = (0u64, 0u64);
        for p in &rec.partitions {
            let (n, ts) = self.insert_stream(cx, c, record, rec, p, db, name).await?;
            (inserted, last_write) = (inserted + n, last_write.max(ts));
        }
        self.flush(c, db, name).await.map_err(&e)?;
        report.actions.push(format!(
            "inserted {inserted} entities into `{db}.{name}` and flushed ({})",
            secs(started)
        ));
        let started = Instant::now();
        self.create_indexes(c, rec, db, name).await.map_err(&e)?;
        if !rec.indexes.is_empty() {
            report.actions.push(format!(
                "created {} indexes on `{db}.{name}` ({})",
                rec.indexes.len(),
                secs(started)
            ));
            // Comparing needs the collection loaded, which needs an index.
            let started = Instant::now();
            // Read back at the last insert's timestamp: every restored entity, without each
            // query waiting for the server's current time. (A server that gives no insert
            // timestamps is read with Strong queries.)
            let at = (last_write > 0).then_some(last_write);
            self.compare(c, rec, &schema, db, name, at).await?;
            report.actions.push(format!(
                "`{db}.{name}`: {} entities, counts and fingerprints match the backup (loaded and re-read in {})",
                rec.entities,
                secs(started)
            ));
        } else {
            report.warnings.push(format!(
                "`{db}.{name}` has no index, so it cannot be loaded to compare its entities: not compared"
            ));
        }
        if same_place {
            self.restore_aliases(c, rec, db, name).await.map_err(&e)?;
        } else if !rec.aliases.is_empty() {
            report.warnings.push(format!(
                "aliases {:?} of `{}.{}` not created for the copy `{db}.{name}` (they stay with the original)",
                rec.aliases, rec.db, rec.name
            ));
        }
        Ok(())
    }

    /// The collections of the record a restore covers, each with where it goes.
    fn plan<'a>(
        &self,
        details: &'a Details,
        opts: &RestoreOptions,
    ) -> Result<Vec<(&'a CollectionRecord, String, String)>> {
        let mut chosen: Vec<&CollectionRecord> = Vec::new();
        for item in &opts.items {
            let found = details
                .collections
                .iter()
                .find(|c| *item == c.name || *item == format!("{}/{}", c.db, c.name));
            match found {
                Some(c) => chosen.push(c),
                None => {
                    let have: Vec<String> = details
                        .collections
                        .iter()
                        .map(|c| format!("{}/{}", c.db, c.name))
                        .collect();
                    return Err(Error::config(
                        format!("components.{}", self.name),
                        format!(
                            "the backup has no collection `{item}`; it has: {}",
                            have.join(", ")
                        ),
                    ));
                }
            }
        }
        if opts.items.is_empty() {
            chosen = details.collections.iter().collect();
        }
        match &opts.target {
            None => Ok(chosen
                .into_iter()
                .map(|c| (c, c.db.clone(), c.name.clone()))
                .collect()),
            Some(t) => {
                if chosen.len() != 1 {
                    return Err(Error::config(
                        format!("components.{}", self.name),
                        format!(
                            "a target name restores one collection, but {} are selected: pick one with --only {}/COLLECTION",
                            chosen.len(),
                            self.name
                        ),
                    ));
                }
                let c = chosen[0];
                let (db, name) = match t.split_once('/') {
                    Some((d, n)) => (d.to_string(), n.to_string()),
                    None => (c.db.clone(), t.clone()),
                };
                Ok(vec![(c, db, name)])
            }
        }
    }
}

/// The wall-clock time of a Milvus hybrid timestamp (physical milliseconds in the high bits,
/// 18 logical bits), as RFC 3339.
fn hybrid_time(ts: u64) -> String {
    chrono::DateTime::from_timestamp_millis((ts >> 18) as i64)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// `12.3 s` since `started`, for the report.
fn secs(started: Instant) -> String {
    format!("{:.1} s", started.elapsed().as_secs_f64())
}

#[async_trait]
impl Component for Milvus {
    fn kind(&self) -> &'static str {
        crate::KIND
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::new()
            .online_snapshot(true)
            .restore_to_target(true)
            .restore_parts(true)
            .deep_verify(true)
    }

    fn restore_relations(&self) -> Vec<RestoreRelation> {
        self.config
            .conflicts_with
            .iter()
            .map(|c| RestoreRelation::ConflictsWith {
                component: c.clone(),
                reason: "a logical Milvus restore recreates Milvus's own metadata in etcd; restoring that etcd prefix (or Milvus's bucket) as well leaves Milvus inconsistent (config `conflicts_with`)".into(),
            })
            .collect()
    }

    async fn probe(&self) -> Result<Probe> {
        let op = "probe";
        let c = self.connect(op).await?;
        let version = self.version(&c).await.map_err(self.err(op))?;
        self.check_server(&version).await?;
        let mut p = Probe {
            reachable: true,
            version: Some(version),
            ..Default::default()
        };
        p.details
            .insert("endpoint".into(), self.config.endpoint.clone().into());
        let mut total = 0i64;
        let scope = self.scope(&c).await.map_err(self.err(op))?;
        p.warnings
            .extend(scope.problem().map(|m| format!("a backup would fail: {m}")));
        for (db, names) in &scope.listed {
            for coll in names {
                if !self.selected_collection(db, coll) {
                    continue;
                }
                let what = format!("statistics of `{db}.{coll}`");
                let req = coll_req!(GetCollectionStatisticsRequest, db, coll);
                let r = rpc!(c, &what, get_collection_statistics, req).map_err(self.err(op))?;
                let rows: i64 = r
                    .stats
                    .iter()
                    .find(|s| s.key == "row_count")
                    .and_then(|s| s.value.parse().ok())
                    .unwrap_or(0);
                total += rows;
                p.details
                    .insert(format!("entities.{db}.{coll}"), rows.into());
            }
        }
        p.details.insert("entities".into(), total.into());
        Ok(p)
    }

    async fn snapshot(&self, cx: &SnapshotContext) -> Result<ComponentRecord> {
        let op = "snapshot";
        let c = self.connect(op).await?;
        let version = self.version(&c).await.map_err(self.err(op))?;
        crate::version::supported(&version).map_err(|m| self.fail(op, m))?;
        let mut rec = ComponentRecord::new(crate::KIND, &self.name);
        let mut collections = Vec::new();
        let mut index = 0;
        let backup = cx.purpose() == SnapshotPurpose::Backup;
        let scope = self.scope(&c).await.map_err(self.err(op))?;
        // What the config names and does not exist: a backup fails; a safety snapshot saves
        // what exists and records the absent collections (restoring it drops them again).
        if let Some(problem) = scope.problem() {
            if backup {
                return Err(self.fail(op, problem));
            }
        }
        let Scope { listed, absent, .. } = scope;
        for (db, names) in &listed {
            for coll in names.iter().filter(|n| self.selected_collection(db, n)) {
                cx.progress().set_phase(format!("exporting {db}.{coll}"));
                let (crec, arts) = match &self.bucket {
                    Some(b) => self.snapshot_binlogs(cx, &c, b, db, coll, index).await?,
                    None => self.snapshot_collection(cx, &c, db, coll, index).await?,
                };
                index += 1;
                rec.set_stat(format!("entities.{db}.{coll}"), crec.entities);
                if let Some(ts) = crec.flush_ts {
                    rec.consistency
                        .insert(format!("flush_ts.{db}.{coll}"), ts.into());
                    rec.consistency
                        .insert(format!("flushed_at.{db}.{coll}"), hybrid_time(ts).into());
                }
                rec.artifacts.extend(arts);
                collections.push(crec);
            }
        }
        rec.set_stat("collections", collections.len());
        rec.set_stat(
            "entities",
            collections.iter().map(|c| c.entities).sum::<u64>(),
        );
        rec.server_version = Some(version.clone());
        rec.consistency.insert(
            "flushed_and_read_with".into(),
            if self.bucket.is_some() { "Flush per collection (waited for), then its flushed segment files copied from Milvus's bucket" } else { "Flush per collection, then queries that see every write up to the flush (Strong queries where the server gives no flush timestamp)" }.into(),
        );
        rec.set_details(&Details {
            server_version: version,
            collections,
            absent,
        })?;
        Ok(rec)
    }

    async fn verify(
        &self,
        cx: &VerifyContext,
        record: &ComponentRecord,
        level: VerifyLevel,
    ) -> Result<VerifyReport> {
        if level == VerifyLevel::Quick {
            return cx.verify_artifacts(record, level).await;
        }
        let details: Details = record.details()?;
        let mut report = VerifyReport {
            artifacts_checked: record.artifacts.len() as u64,
            bytes_read: record.artifacts.iter().map(|a| a.stored_size).sum(),
            ..Default::default()
        };
        for coll in &details.collections {
            match self.check_collection(cx, record, coll).await {
                Ok(()) => report.notes.push(format!(
                    "`{}.{}`: {} entities {}",
                    coll.db,
                    coll.name,
                    coll.entities,
                    match coll.binlogs {
                        Some(_) => "in segment files, file count and bytes match",
                        None => "decoded, counts and fingerprints match",
                    }
                )),
                Err(e) if e.is_damage() => report.problems.push(e.to_string()),
                Err(e) => return Err(e),
            }
        }
        Ok(report)
    }

    async fn restore(
        &self,
        cx: &RestoreContext,
        record: &ComponentRecord,
        opts: &RestoreOptions,
    ) -> Result<RestoreReport> {
        let op = "restore";
        let details: Details = record.details()?;
        let plan = self.plan(&details, opts)?;
        let mut report = RestoreReport::default();
        // Every artifact must be intact before anything is dropped.
        cx.progress().set_phase("checking the backup");
        let started = Instant::now();
        for (coll, _, _) in &plan {
            self.check_collection(cx, record, coll).await?;
        }
        report.actions.push(format!(
            "checked the entities of {} collections ({})",
            plan.len(),
            secs(started)
        ));
        // A whole restore brings back the absence of configured collections that did not
        // exist when the snapshot was taken.
        let drop_absent = opts.items.is_empty() && opts.target.is_none();
        if opts.dry_run {
            if drop_absent {
                for (db, name) in &details.absent {
                    report.actions.push(format!(
                        "would drop `{db}.{name}` if it exists (it did not when the snapshot was taken)"
                    ));
                }
            }
            for (coll, db, name) in &plan {
                report.actions.push(format!(
                    "would drop and recreate `{db}.{name}` from `{}.{}` ({} entities, {} partitions, {} indexes{})",
                    coll.db,
                    coll.name,
                    coll.entities,
                    coll.partitions.len(),
                    coll.indexes.len(),
                    if coll.loaded { ", loaded" } else { "" }
                ));
            }
            return Ok(report);
        }
        let c = self.connect(op).await?;
        if drop_absent {
            for (db, name) in &details.absent {
                self.drop_if_exists(&c, db, name, &mut report)
                    .await
                    .map_err(self.err(op))?;
            }
        }
        for (coll, db, name) in &plan {
            cx.progress().set_phase(format!("restoring {db}.{name}"));
            self.restore_collection(cx, &c, record, coll, db, name, &mut report)
                .await?;
            report
                .stats
                .insert(format!("entities.{db}.{name}"), coll.entities.into());
        }
        Ok(report)
    }
}

//! The `milvus` component.

use std::collections::BTreeMap;
use std::time::Instant;

use amber_dr_core::{
    async_trait, Capabilities, Component, ComponentRecord, Error, Probe, RestoreContext,
    RestoreOptions, RestoreRelation, RestoreReport, Result, SnapshotContext, SnapshotPurpose,
    VerifyContext, VerifyReport,
};
use milvus::proto::common::KeyValuePair;
use milvus::proto::milvus as pb;
use milvus::proto::schema::DataType;
use serde::{Deserialize, Serialize};

use crate::client::Client;
use crate::config::MilvusConfig;
use crate::error::MilvusError;
use crate::{binlog, storage::Bucket};

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

mod describe;
mod drill;
mod entities;
mod keys;
mod restore;
mod scope;
mod segments;
mod server;

use scope::Scope;

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
            .reference_queries(true)
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
        // Every referenced collection is one this snapshot covers.
        for q in cx.key_queries() {
            let (db, coll) = self.key_collection(&q.set)?;
            let covered = listed.iter().any(|(d, names)| {
                *d == db && names.contains(&coll) && self.selected_collection(&db, &coll)
            });
            if !covered {
                return Err(self.fail(op, format!("reference `{}` names collection `{db}.{coll}`, which this backup does not cover", q.reference)));
            }
        }
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
                for q in cx.key_queries() {
                    if self.key_collection(&q.set)? == (db.clone(), coll.clone()) {
                        let keys = self.write_keys(cx, &c, db, coll, crec.flush_ts, q);
                        rec.artifacts.push(keys.await?);
                    }
                }
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

    async fn decode(&self, cx: &VerifyContext, record: &ComponentRecord) -> Result<VerifyReport> {
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

    async fn live_keys(
        &self,
        set: &amber_dr_core::references::KeySet,
    ) -> Result<amber_dr_core::references::KeyStream> {
        self.live_collection_keys(set).await
    }

    fn scratch_plan(
        &self,
        record: &ComponentRecord,
        scratch: &amber_dr_core::drill::Scratch,
    ) -> Result<amber_dr_core::drill::ScratchPlan> {
        self.plan_scratch(record, scratch)
    }

    async fn remove_scratch(&self, target: &str) -> Result<()> {
        self.drop_scratch(target).await
    }

    async fn scratch_keys(
        &self,
        set: &amber_dr_core::references::KeySet,
        restores: &[amber_dr_core::drill::ScratchRestore],
    ) -> Result<amber_dr_core::references::KeyStream> {
        self.scratch_collection_keys(set, restores).await
    }
}

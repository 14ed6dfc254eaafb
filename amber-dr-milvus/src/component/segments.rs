//! The binlog path of the `milvus` component (used when `storage` is configured): a snapshot
//! copies each collection's flushed segment files from Milvus's bucket (`binlog.rs`), a
//! restore recreates the collection exactly (auto-id included) and imports the files through
//! Milvus's bulk import in backup mode (`import.rs`).

use std::collections::BTreeMap;
use std::time::Instant;

use amber_dr_core::{ArtifactRecord, ComponentRecord, RestoreContext, RestoreReport, Result};
use milvus::proto::milvus as pb;
use milvus::proto::schema::CollectionSchema;
use prost::Message;

use super::{secs, CollectionRecord, Milvus};
use crate::binlog::{self, BinlogRecord};
use crate::import::{self, STAGING};
use crate::storage::Bucket;

impl Milvus {
    /// Refuse a server version the driver cannot back up correctly; with `storage`, check
    /// that Milvus's bucket can be listed, written, read and deleted from (`doctor`).
    pub(super) async fn check_server(&self, version: &str) -> Result<()> {
        let op = "probe";
        crate::version::supported(version).map_err(|m| self.fail(op, m))?;
        if let Some(b) = &self.bucket {
            b.check(&format!("{STAGING}/probe-"))
                .await
                .map_err(|m| self.fail(op, m))?;
        }
        Ok(())
    }

    /// Back up `db.coll` as its flushed segment files. Needs no index and no loaded
    /// collection, and leaves the load state alone.
    #[allow(deprecated)] // `CollectionSchema::auto_id`: what Milvus 2.3 sets
    pub(super) async fn snapshot_binlogs(
        &self,
        cx: &amber_dr_core::SnapshotContext,
        c: &crate::client::Client,
        bucket: &Bucket,
        db: &str,
        coll: &str,
        index: usize,
    ) -> Result<(CollectionRecord, Vec<ArtifactRecord>)> {
        let op = "snapshot";
        let d = self.describe_for_snapshot(c, db, coll, op).await?;
        let (desc, schema) = (&d.desc, &d.schema);
        binlog::check_types(db, coll, schema).map_err(|m| self.fail(op, m))?;
        let e = self.err(op);
        let timeout = std::time::Duration::from_secs(self.config.load_timeout_secs);
        let flush_ts = match binlog::flush_and_wait(c, db, coll, timeout).await {
            Ok(ts) => ts,
            Err(x) => return Err(self.gone_or(c, op, db, coll, x).await),
        };
        let partitions = binlog::partition_ids(c, db, coll).await.map_err(&e)?;
        let segments = binlog::flushed_segments(c, db, coll).await.map_err(&e)?;
        let mut b = BinlogRecord {
            artifact: format!("c{index:03}.binlogs"),
            collection_id: desc.collection_id,
            field_ids: schema
                .fields
                .iter()
                .filter(|f| f.field_id >= 100)
                .map(|f| (f.name.clone(), f.field_id))
                .collect(),
            partitions: Vec::new(),
            files: 0,
            bytes: 0,
            count: None,
        };
        let art = binlog::copy_segments(
            cx,
            bucket,
            db,
            coll,
            desc.collection_id,
            &segments,
            &partitions,
            &mut b,
            |m| self.fail(op, m),
        )
        .await?;
        // The collection must still be the one whose files were copied.
        match self.describe(c, db, coll).await {
            Ok(d) if d.collection_id == desc.collection_id => {}
            Ok(_) | Err(_) => {
                return Err(self.fail(
                    op,
                    format!("collection `{db}.{coll}` was dropped while it was being read"),
                ))
            }
        }
        let entities: u64 = b.partitions.iter().map(|p| p.rows).sum();
        Ok((
            CollectionRecord {
                entities,
                binlogs: Some(b),
                ..d.record(db, coll, flush_ts)
            },
            vec![art],
        ))
    }

    /// Recreate `db.name` exactly as recorded (auto-id stays auto-id) and import the backed-up
    /// segment files into it, partition by partition, keeping every primary key.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn restore_binlogs(
        &self,
        cx: &RestoreContext,
        c: &crate::client::Client,
        record: &ComponentRecord,
        (rec, b): (&CollectionRecord, &BinlogRecord),
        db: &str,
        name: &str,
        report: &mut RestoreReport,
    ) -> Result<()> {
        let op = "restore";
        let e = self.err(op);
        let bucket = self.bucket.as_ref().ok_or_else(|| {
            self.fail(op, format!("`{}.{}` was backed up as segment files: restoring it needs `storage` (Milvus's bucket) in the config", rec.db, rec.name))
        })?;
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
        // Milvus adds the dynamic field `$meta` itself; auto-id stays as it was.
        schema.fields.retain(|f| f.field_id >= 100 && !f.is_dynamic);
        self.ensure_database(c, db, report).await.map_err(&e)?;
        self.create_from_record(c, rec, &schema, db, name, report)
            .await
            .map_err(&e)?;
        if rec.partition_key.is_none() {
            for p in b.partitions.iter().filter(|p| p.name != "_default") {
                let what = format!("to create partition `{}` of `{db}.{name}`", p.name);
                let req = pb::CreatePartitionRequest {
                    db_name: db.to_string(),
                    collection_name: name.to_string(),
                    partition_name: p.name.clone(),
                    ..Default::default()
                };
                c.call(&what, |mut s| async move { s.create_partition(req).await })
                    .await
                    .map_err(&e)?;
            }
        }
        let now: BTreeMap<String, i64> = self
            .describe(c, db, name)
            .await
            .map_err(&e)?
            .schema
            .map(|s| s.fields.into_iter().map(|f| (f.name, f.field_id)).collect())
            .unwrap_or_default();
        let fields = import::field_map(b, &now, rec.dynamic_field, &format!("`{db}.{name}`"))
            .map_err(|m| self.fail(op, m))?;
        let started = Instant::now();
        // Short (keys stay well under the limits of S3 servers that map keys to file names):
        // unique per restore of one collection.
        let prefix = format!("{STAGING}/{}", import::unique_id());
        let art = record.artifact(&b.artifact)?;
        let imported = async {
            cx.progress()
                .set_phase(format!("{db}.{name}: staging segment files"));
            let files =
                import::stage(cx, bucket, art, &prefix, &fields, |m| self.fail(op, m)).await?;
            cx.progress()
                .set_phase(format!("{db}.{name}: Milvus import"));
            let timeout = std::time::Duration::from_secs(self.config.load_timeout_secs);
            let mut rows = 0;
            for p in b.partitions.iter().filter(|p| !p.segments.is_empty()) {
                // Into the partition of the same name (a partition-key collection has the same
                // partitions, `_default_N`, and its rows hash to the same one again).
                rows += import::import_partition(
                    c,
                    db,
                    name,
                    &p.name,
                    &prefix,
                    b.collection_id,
                    p.id,
                    timeout,
                )
                .await
                .map_err(&e)?;
            }
            Ok::<_, amber_dr_core::Error>((files, rows))
        }
        .await;
        // Staged files go, whatever happened: Milvus has rewritten what it imported.
        let cleaned = bucket.delete_prefix(&prefix).await;
        let (files, rows) = imported?;
        cleaned.map_err(|m| self.fail(op, m))?;
        report.actions.push(format!(
            "imported {files} segment files ({rows} rows) into `{db}.{name}` with their primary keys ({}; staged under `{prefix}` in {} and removed)",
            secs(started),
            bucket.label
        ));
        let started = Instant::now();
        cx.progress().set_phase(format!("{db}.{name}: index build"));
        self.create_indexes(c, rec, db, name).await.map_err(&e)?;
        if rec.loaded {
            cx.progress().set_phase(format!("{db}.{name}: load"));
            self.load(c, db, name).await.map_err(&e)?;
            let n = self.count(c, db, name, None, None).await.map_err(&e)?;
            report.actions.push(format!(
                "created {} indexes on `{db}.{name}` and loaded it: {n} entities ({})",
                rec.indexes.len(),
                secs(started)
            ));
        } else if !rec.indexes.is_empty() {
            report.actions.push(format!(
                "created {} indexes on `{db}.{name}` ({}); left unloaded as it was",
                rec.indexes.len(),
                secs(started)
            ));
        }
        if db == rec.db && name == rec.name {
            self.restore_aliases(c, rec, db, name).await.map_err(&e)?;
        } else if !rec.aliases.is_empty() {
            report.warnings.push(format!(
                "aliases {:?} of `{}.{}` not created for the copy `{db}.{name}` (they stay with the original)",
                rec.aliases, rec.db, rec.name
            ));
        }
        Ok(())
    }
}

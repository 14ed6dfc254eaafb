//! Restoring collections: the plan (which collections go where), dropping and recreating a
//! collection from its record, indexes, aliases, and the entities-path fill.

use std::time::Instant;

use amber_dr_core::{
    ComponentRecord, Error, RestoreContext, RestoreOptions, RestoreReport, Result,
};
use milvus::proto::milvus as pb;
use milvus::proto::schema::CollectionSchema;
use prost::Message;

use super::*;
use crate::client::Client;
use crate::error::MilvusError;

impl Milvus {
    /// Drop `db.name` and its aliases, if it exists.
    pub(super) async fn drop_if_exists(
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
    pub(super) async fn ensure_database(
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
    pub(super) async fn create_from_record(
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

    /// Create the recorded indexes on `db.name`.
    pub(super) async fn create_indexes(
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

    /// Put the recorded aliases on `db.name` (moved back if another collection took them).
    pub(super) async fn restore_aliases(
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
    pub(super) async fn restore_collection(
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
        cx.progress()
            .set_phase(format!("{db}.{name}: inserting entities"));
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
        cx.progress().set_phase(format!("{db}.{name}: index build"));
        self.create_indexes(c, rec, db, name).await.map_err(&e)?;
        if !rec.indexes.is_empty() {
            cx.progress()
                .set_phase(format!("{db}.{name}: load and compare"));
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
    pub(super) fn plan<'a>(
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

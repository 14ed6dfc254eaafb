//! What both snapshot paths (entity pages and segment files) first read about a collection,
//! and the part of its [`CollectionRecord`] they fill alike.

use amber_dr_core::Result;
use milvus::proto::common::LoadState;
use milvus::proto::milvus as pb;
use milvus::proto::schema::CollectionSchema;
use prost::Message;

use super::{kvs_map, type_name, CollectionRecord, IndexRecord, Milvus};
use crate::client::Client;

/// A collection as both snapshot paths first read it ([`Milvus::describe_for_snapshot`]).
pub(super) struct Described {
    pub(super) desc: pb::DescribeCollectionResponse,
    pub(super) schema: CollectionSchema,
    pub(super) primary_key: String,
    pub(super) pk_auto_id: bool,
    pub(super) partition_key: Option<String>,
    pub(super) indexes: Vec<IndexRecord>,
    pub(super) loaded: bool,
}

impl Described {
    /// The record's fields that both paths fill alike; the caller adds how the entities were
    /// stored (pages or segment files) and how many there are.
    #[allow(deprecated)] // `CollectionSchema::auto_id`: what Milvus 2.3 sets
    pub(super) fn record(&self, db: &str, coll: &str, flush_ts: Option<u64>) -> CollectionRecord {
        let (desc, schema) = (&self.desc, &self.schema);
        CollectionRecord {
            db: db.to_string(),
            name: coll.to_string(),
            schema_hex: hex::encode(schema.encode_to_vec()),
            fields: schema
                .fields
                .iter()
                .filter(|f| f.field_id >= 100)
                .map(type_name)
                .collect(),
            primary_key: self.primary_key.clone(),
            auto_id: self.pk_auto_id || schema.auto_id,
            dynamic_field: schema.enable_dynamic_field,
            partition_key: self.partition_key.clone(),
            num_partitions: desc.num_partitions,
            shards_num: desc.shards_num,
            consistency_level: desc.consistency_level,
            properties: kvs_map(&desc.properties),
            aliases: desc.aliases.clone(),
            indexes: self.indexes.clone(),
            loaded: self.loaded,
            page_rows: 0,
            partitions: Vec::new(),
            entities: 0,
            flush_ts,
            binlogs: None,
        }
    }
}

impl Milvus {
    /// What both snapshot paths read first about a collection: its description (schema,
    /// primary and partition key), indexes and load state.
    pub(super) async fn describe_for_snapshot(
        &self,
        c: &Client,
        db: &str,
        coll: &str,
        op: &'static str,
    ) -> Result<Described> {
        let desc = match self.describe(c, db, coll).await {
            Ok(d) => d,
            Err(e) => return Err(self.gone_or(c, op, db, coll, e).await),
        };
        let schema = desc
            .schema
            .clone()
            .ok_or_else(|| self.fail(op, format!("`{db}.{coll}`: the server sent no schema")))?;
        let pk = schema
            .fields
            .iter()
            .find(|f| f.is_primary_key)
            .ok_or_else(|| self.fail(op, format!("`{db}.{coll}` has no primary key field")))?;
        let (primary_key, pk_auto_id) = (pk.name.clone(), pk.auto_id);
        let partition_key = schema
            .fields
            .iter()
            .find(|f| f.is_partition_key)
            .map(|f| f.name.clone());
        let indexes = self.indexes(c, db, coll).await.map_err(self.err(op))?;
        // A loaded collection reports `Loading` for a while after new segments were sealed
        // (Milvus loads them): it is loaded, and is waited for, so that the entity export can
        // query it and the record says loaded.
        let state = self.load_state(c, db, coll).await.map_err(self.err(op))?;
        let loaded = match state {
            LoadState::Loaded => true,
            LoadState::Loading => {
                self.load(c, db, coll).await.map_err(self.err(op))?;
                true
            }
            _ => false,
        };
        Ok(Described {
            desc,
            schema,
            primary_key,
            pk_auto_id,
            partition_key,
            indexes,
            loaded,
        })
    }
}

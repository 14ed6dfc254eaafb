//! Calls to the Milvus server that every path of the component shares: versions, listings,
//! descriptions, counts, load state, flush, and the scope of a backup.

use std::time::Duration;

use amber_dr_core::{Error, Result};
use milvus::proto::common::LoadState;
use milvus::proto::milvus as pb;
use milvus::proto::schema::{field_data::Field, scalar_field::Data};

use super::entities::query_request;
use super::*;
use crate::client::Client;
use crate::error::MilvusError;

impl Milvus {
    pub(super) async fn version(&self, c: &Client) -> Result<String, MilvusError> {
        let r = c
            .call_unchecked("GetVersion", |mut s| async move {
                s.get_version(pb::GetVersionRequest {}).await
            })
            .await?;
        Ok(r.version)
    }

    pub(super) async fn list_collections(
        &self,
        c: &Client,
        db: &str,
    ) -> Result<Vec<String>, MilvusError> {
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
    pub(super) async fn count(
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

    pub(super) async fn load_state(
        &self,
        c: &Client,
        db: &str,
        coll: &str,
    ) -> Result<LoadState, MilvusError> {
        let what = format!("GetLoadState of `{db}.{coll}`");
        let r = rpc!(
            c,
            &what,
            get_load_state,
            coll_req!(GetLoadStateRequest, db, coll)
        )?;
        Ok(LoadState::try_from(r.state).unwrap_or(LoadState::NotExist))
    }

    pub(super) async fn load(&self, c: &Client, db: &str, coll: &str) -> Result<(), MilvusError> {
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

    pub(super) async fn release(
        &self,
        c: &Client,
        db: &str,
        coll: &str,
    ) -> Result<(), MilvusError> {
        let what = format!("to release `{db}.{coll}`");
        let req = coll_req!(ReleaseCollectionRequest, db, coll);
        rpc!(c, &what, release_collection, req).map(drop)
    }

    pub(super) async fn describe(
        &self,
        c: &Client,
        db: &str,
        coll: &str,
    ) -> Result<pb::DescribeCollectionResponse, MilvusError> {
        let what = format!("DescribeCollection of `{db}.{coll}`");
        let req = coll_req!(DescribeCollectionRequest, db, coll);
        rpc!(c, &what, describe_collection, req)
    }

    pub(super) async fn exists(
        &self,
        c: &Client,
        db: &str,
        coll: &str,
    ) -> Result<bool, MilvusError> {
        let what = format!("HasCollection `{db}.{coll}`");
        let req = coll_req!(HasCollectionRequest, db, coll);
        Ok(rpc!(c, &what, has_collection, req)?.value)
    }

    #[allow(deprecated)] // `error_code`: what Milvus 2.3 sets
    pub(super) async fn indexes(
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

    pub(super) async fn partitions(
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
    pub(super) async fn flush(
        &self,
        c: &Client,
        db: &str,
        coll: &str,
    ) -> Result<Option<u64>, MilvusError> {
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
    pub(super) async fn gone_or(
        &self,
        c: &Client,
        op: &str,
        db: &str,
        coll: &str,
        e: MilvusError,
    ) -> Error {
        if let Ok(false) = self.exists(c, db, coll).await {
            return self.fail(
                op,
                format!("collection `{db}.{coll}` was dropped while it was being read ({e})"),
            );
        }
        self.fail(op, e.to_string())
    }

    /// Every database on the server (just `default` where `ListDatabases` is not implemented:
    /// servers before 2.2.9 have no databases).
    pub(super) async fn server_databases(&self, c: &Client) -> Result<Vec<String>, MilvusError> {
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
    pub(super) async fn scope(&self, c: &Client) -> Result<Scope, MilvusError> {
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

    pub(super) fn selected_collection(&self, db: &str, coll: &str) -> bool {
        match &self.config.collections {
            Some(list) => list
                .iter()
                .any(|c| c == coll || *c == format!("{db}/{coll}")),
            None => true,
        }
    }
}

//! The `neo4j` component: export over Bolt into typed JSON-lines artifacts, batched restore.

use std::future::Future;

use amber_dr_core::LegacyImport;
use amber_dr_core::{
    async_trait, Capabilities, Component, ComponentRecord, Error, Probe, RestoreContext,
    RestoreOptions, RestoreReport, Result, SnapshotContext, SnapshotPurpose, VerifyContext,
    VerifyReport,
};
use neo4rs::{BoltMap, BoltString, BoltType, ConfigBuilder, Graph, Query};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use crate::config::Neo4jConfig;
use crate::error::{bolt_message, Neo4jError};
use crate::export::{Ids, LineSink};
use crate::tally::Tally;
use crate::KIND;

/// Artifact names.
pub(crate) const SCHEMA: &str = "schema.json";
pub(crate) const NODES: &str = "nodes.jsonl";
pub(crate) const RELS: &str = "relationships.jsonl";

/// The temporary label, property and index that link relationships to restored nodes.
pub(crate) const TMP_LABEL: &str = "_AmberDrRestore";
pub(crate) const TMP_ID: &str = "__amber_dr_id";
pub(crate) const TMP_INDEX: &str = "amber_dr_restore_id";

/// One schema statement of the backup.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct SchemaItem {
    /// `constraint` or `index`.
    pub(crate) kind: String,
    /// Its name.
    pub(crate) name: String,
    /// Index type (RANGE, TEXT, POINT, FULLTEXT, VECTOR) or constraint type.
    #[serde(rename = "type")]
    typ: String,
    /// The `createStatement` Neo4j gave, options included.
    pub(crate) statement: String,
}

/// Restore data kept in the record.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Details {
    database: String,
    fingerprint: String,
}

/// The Neo4j component. See the crate docs.
#[derive(Debug)]
pub struct Neo4j {
    pub(crate) name: String,
    pub(crate) cfg: Neo4jConfig,
}

/// The server's message out of neo4rs's debug text of an unexpected failure response
/// (`... "message" }: String(BoltString { value: "Graph not found: x" }) ...`).
fn server_words(m: &str) -> String {
    let code = m
        .find("Neo.ClientError.")
        .or_else(|| m.find("Neo.TransientError."))
        .map(|i| m[i..].split('"').next().unwrap_or_default().to_string());
    let message = m
        .find("\"message\" }: String(BoltString { value: \"")
        .map(|i| {
            let rest = &m[i + 41..];
            rest.split("\" })").next().unwrap_or_default().to_string()
        });
    match (code, message) {
        (Some(c), Some(msg)) => format!("{c}: {msg}"),
        _ => m.to_string(),
    }
}

/// Quote a name for Cypher.
pub(crate) fn quote(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

pub(crate) fn bmap(pairs: Vec<(&str, BoltType)>) -> BoltType {
    let mut m = BoltMap::new();
    for (k, v) in pairs {
        m.put(BoltString::new(k), v);
    }
    BoltType::Map(m)
}

pub(crate) fn row_get(row: &neo4rs::Row, key: &str) -> std::result::Result<BoltType, String> {
    row.get::<BoltType>(key)
        .map_err(|e| format!("column `{key}`: {e}"))
}

pub(crate) fn row_i64(row: &neo4rs::Row, key: &str) -> std::result::Result<i64, String> {
    match row_get(row, key)? {
        BoltType::Integer(i) => Ok(i.value),
        other => Err(format!(
            "column `{key}`: expected an integer, got {other:?}"
        )),
    }
}

pub(crate) fn row_string(row: &neo4rs::Row, key: &str) -> std::result::Result<String, String> {
    match row_get(row, key)? {
        BoltType::String(s) => Ok(s.value),
        BoltType::Null(_) => Ok(String::new()),
        other => Err(format!("column `{key}`: expected a string, got {other:?}")),
    }
}

pub(crate) fn row_strings(
    row: &neo4rs::Row,
    key: &str,
) -> std::result::Result<Vec<String>, String> {
    match row_get(row, key)? {
        BoltType::List(l) => l
            .value
            .into_iter()
            .map(|v| match v {
                BoltType::String(s) => Ok(s.value),
                other => Err(format!("column `{key}`: expected strings, got {other:?}")),
            })
            .collect(),
        other => Err(format!("column `{key}`: expected a list, got {other:?}")),
    }
}

impl Neo4j {
    /// A component named `name` (from the config) with `cfg`.
    pub fn new(name: impl Into<String>, cfg: Neo4jConfig) -> Result<Self> {
        let name = name.into();
        let loc = format!("component `{name}`");
        if !(cfg.uri.starts_with("bolt://") || cfg.uri.starts_with("neo4j://")) {
            return Err(Error::config(
                loc,
                format!(
                    "uri `{}` must start with bolt:// or neo4j:// (TLS schemes are not supported yet)",
                    cfg.uri
                ),
            ));
        }
        if cfg.page_size == 0 || cfg.batch_size == 0 {
            return Err(Error::config(
                loc,
                "page_size and batch_size must be at least 1",
            ));
        }
        if cfg.database.is_empty() {
            return Err(Error::config(loc, "database must not be empty"));
        }
        Ok(Self { name, cfg })
    }

    pub(crate) fn err(&self, op: &str, e: Neo4jError) -> Error {
        e.into_core(&self.name, op)
    }

    pub(crate) fn query_err(&self, db: &str, what: &str, e: &neo4rs::Error) -> Neo4jError {
        Neo4jError::Query {
            uri: self.cfg.uri.clone(),
            db: db.to_string(),
            what: what.to_string(),
            message: bolt_message(e),
        }
    }

    pub(crate) fn data_err(&self, db: &str, message: impl Into<String>) -> Neo4jError {
        Neo4jError::Data {
            uri: self.cfg.uri.clone(),
            db: db.to_string(),
            message: message.into(),
        }
    }

    /// Run `fut` under the connect timeout.
    async fn timed<T>(
        &self,
        what: &str,
        fut: impl Future<Output = std::result::Result<T, Neo4jError>>,
    ) -> std::result::Result<T, Neo4jError> {
        match tokio::time::timeout(self.cfg.connect_timeout(), fut).await {
            Ok(r) => r,
            Err(_) => Err(Neo4jError::Timeout {
                uri: self.cfg.uri.clone(),
                secs: self.cfg.connect_timeout().as_secs(),
                what: what.to_string(),
            }),
        }
    }

    /// Connect and check that the credentials and the database `db` work.
    pub(crate) async fn connect(&self, db: &str) -> std::result::Result<Graph, Neo4jError> {
        let uri = self
            .cfg
            .uri
            .strip_prefix("neo4j://")
            .map(|rest| format!("bolt://{rest}"))
            .unwrap_or_else(|| self.cfg.uri.clone());
        let config = ConfigBuilder::default()
            .uri(uri)
            .user(self.cfg.user.clone())
            .password(self.cfg.password.expose().to_string())
            .db(db)
            .fetch_size(self.cfg.page_size)
            .max_connections(4)
            .build()
            .map_err(|e| Neo4jError::Connect {
                uri: self.cfg.uri.clone(),
                user: self.cfg.user.clone(),
                message: bolt_message(&e),
            })?;
        let graph = self
            .timed("connect", async {
                Graph::connect(config)
                    .await
                    .map_err(|e| Neo4jError::Connect {
                        uri: self.cfg.uri.clone(),
                        user: self.cfg.user.clone(),
                        message: bolt_message(&e),
                    })
            })
            .await?;
        // The pool connects lazily: a first transaction surfaces refused connections, wrong
        // credentials and a database that does not exist. (Explicit transactions are not
        // retried by neo4rs, unlike `execute`/`run`, which retry for up to 60 s.)
        self.timed("connect", async {
            let ping = async {
                let mut txn = graph.start_txn_on(db).await?;
                txn.run(Query::new("RETURN 1".into())).await?;
                txn.rollback().await
            };
            ping.await.map_err(|e| match bolt_message(&e) {
                m if m.contains("Neo.ClientError.Database.") => Neo4jError::Data {
                    uri: self.cfg.uri.clone(),
                    db: db.to_string(),
                    message: format!(
                        "the database does not exist or is not available ({}); check `database` in the config",
                        server_words(&m)
                    ),
                },
                m => Neo4jError::Connect {
                    uri: self.cfg.uri.clone(),
                    user: self.cfg.user.clone(),
                    message: server_words(&m),
                },
            })
        })
        .await?;
        Ok(graph)
    }

    /// All rows of a small query.
    pub(crate) async fn rows(
        &self,
        g: &Graph,
        db: &str,
        what: &str,
        q: Query,
    ) -> std::result::Result<Vec<neo4rs::Row>, Neo4jError> {
        let mut s = g
            .execute_on(db, q)
            .await
            .map_err(|e| self.query_err(db, what, &e))?;
        let mut out = Vec::new();
        while let Some(r) = s.next().await.map_err(|e| self.query_err(db, what, &e))? {
            out.push(r);
        }
        Ok(out)
    }

    pub(crate) async fn run(
        &self,
        g: &Graph,
        db: &str,
        what: &str,
        q: Query,
    ) -> std::result::Result<(), Neo4jError> {
        g.run_on(db, q)
            .await
            .map_err(|e| self.query_err(db, what, &e))
    }

    async fn server_version(
        &self,
        g: &Graph,
        db: &str,
    ) -> std::result::Result<(String, String), Neo4jError> {
        let rows = self
            .rows(
                g,
                db,
                "dbms.components",
                Query::new("CALL dbms.components() YIELD name, versions, edition RETURN name, versions[0] AS version, edition".into()),
            )
            .await?;
        let r = rows
            .first()
            .ok_or_else(|| self.data_err(db, "dbms.components() returned nothing"))?;
        let version = row_string(r, "version").map_err(|e| self.data_err(db, e))?;
        let edition = row_string(r, "edition").map_err(|e| self.data_err(db, e))?;
        Ok((version, edition))
    }

    /// The last committed transaction id of `db`, where the server tells it
    /// (`SHOW DATABASES ... lastCommittedTxn`: Enterprise; Community reports none).
    async fn last_tx(&self, g: &Graph, db: &str) -> Option<i64> {
        let q = Query::new("SHOW DATABASES YIELD name, lastCommittedTxn WHERE name = $db RETURN lastCommittedTxn AS tx".into())
            .param("db", db);
        let rows = self.rows(g, "system", "SHOW DATABASES", q).await.ok()?;
        rows.first().and_then(|r| row_i64(r, "tx").ok())
    }

    async fn counts(&self, g: &Graph, db: &str) -> std::result::Result<(i64, i64), Neo4jError> {
        let n = self
            .rows(
                g,
                db,
                "count nodes",
                Query::new("MATCH (n) RETURN count(n) AS c".into()),
            )
            .await?;
        let r = self
            .rows(
                g,
                db,
                "count relationships",
                Query::new("MATCH ()-[r]->() RETURN count(r) AS c".into()),
            )
            .await?;
        let get =
            |rows: &[neo4rs::Row]| rows.first().and_then(|x| row_i64(x, "c").ok()).unwrap_or(0);
        Ok((get(&n), get(&r)))
    }

    /// Constraints and indexes to back up: lookup indexes and indexes owned by constraints
    /// are skipped (they come back by themselves).
    async fn schema(
        &self,
        g: &Graph,
        db: &str,
    ) -> std::result::Result<Vec<SchemaItem>, Neo4jError> {
        let mut out = Vec::new();
        for r in self
            .rows(g, db, "SHOW CONSTRAINTS", Query::new("SHOW CONSTRAINTS YIELD name, type, createStatement RETURN name, type, createStatement ORDER BY name".into()))
            .await?
        {
            out.push(SchemaItem {
                kind: "constraint".into(),
                name: row_string(&r, "name").map_err(|e| self.data_err(db, e))?,
                typ: row_string(&r, "type").map_err(|e| self.data_err(db, e))?,
                statement: row_string(&r, "createStatement").map_err(|e| self.data_err(db, e))?,
            });
        }
        for r in self
            .rows(
                g,
                db,
                "SHOW INDEXES",
                Query::new(format!(
                    "SHOW INDEXES YIELD name, type, owningConstraint, createStatement \
                 WHERE type <> 'LOOKUP' AND owningConstraint IS NULL AND name <> '{TMP_INDEX}' \
                 RETURN name, type, createStatement ORDER BY name"
                )),
            )
            .await?
        {
            out.push(SchemaItem {
                kind: "index".into(),
                name: row_string(&r, "name").map_err(|e| self.data_err(db, e))?,
                typ: row_string(&r, "type").map_err(|e| self.data_err(db, e))?,
                statement: row_string(&r, "createStatement").map_err(|e| self.data_err(db, e))?,
            });
        }
        Ok(out)
    }
}

#[async_trait]
impl Component for Neo4j {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::new()
            .online_snapshot(true)
            .consistent_snapshot(false)
            .restore_to_target(true)
            .restore_needs_downtime(true)
            .restore_parts(false)
            .deep_verify(true)
            .reference_queries(true)
    }

    async fn probe(&self) -> Result<Probe> {
        let db = &self.cfg.database;
        let g = self.connect(db).await.map_err(|e| self.err("probe", e))?;
        let (version, edition) = self
            .server_version(&g, db)
            .await
            .map_err(|e| self.err("probe", e))?;
        let (nodes, rels) = self
            .counts(&g, db)
            .await
            .map_err(|e| self.err("probe", e))?;
        let mut p = Probe {
            reachable: true,
            version: Some(version),
            ..Probe::default()
        };
        p.details.insert("edition".into(), edition.into());
        p.details.insert("database".into(), db.clone().into());
        p.details.insert("nodes".into(), nodes.into());
        p.details.insert("relationships".into(), rels.into());
        match self.last_tx(&g, db).await {
            Some(tx) => {
                p.details.insert("last_committed_tx".into(), tx.into());
            }
            None => p.warnings.push(
                "the server does not report its last committed transaction id (Community): \
                 a backup cannot tell whether writes happened during the export"
                    .into(),
            ),
        }
        Ok(p)
    }

    async fn snapshot(&self, cx: &SnapshotContext) -> Result<ComponentRecord> {
        let op = "snapshot";
        let db = self.cfg.database.clone();
        let g = self.connect(&db).await.map_err(|e| self.err(op, e))?;
        let mut rec = ComponentRecord::new(KIND, &self.name);
        let (version, edition) = self
            .server_version(&g, &db)
            .await
            .map_err(|e| self.err(op, e))?;
        rec.server_version = Some(format!("Neo4j {version} {edition}"));
        let tx_before = self.last_tx(&g, &db).await;

        cx.progress().set_phase("schema");
        let schema = self.schema(&g, &db).await.map_err(|e| self.err(op, e))?;
        let mut w = cx.create_artifact(SCHEMA).await?;
        let bytes = serde_json::to_vec_pretty(&schema).map_err(|e| Error::Other(e.to_string()))?;
        w.write_all(&bytes)
            .await
            .map_err(|e| Error::from_io("write", w.path().to_string(), e))?;
        rec.artifacts.push(w.finish().await?);

        cx.progress().set_phase("nodes and relationships");
        let mut nodes = LineSink::new(cx.create_artifact(NODES).await?);
        let mut rels = LineSink::new(cx.create_artifact(RELS).await?);
        let mut tally = Tally::default();
        self.export(
            &g,
            &db,
            Ids::Source,
            &mut tally,
            Some((&mut nodes, &mut rels, cx.progress())),
        )
        .await?;
        rec.artifacts.push(nodes.finish().await?);
        rec.artifacts.push(rels.finish().await?);
        for q in cx.key_queries() {
            rec.artifacts.push(self.write_keys(cx, &g, q).await?);
        }
        tally.write_backup_stats(&mut rec);
        rec.set_stat("schema_items", schema.len());
        if let Some(w) = tally.left_out_warning(&db) {
            rec.warnings.push(w);
        }
        if let Some(w) = tally.read_twice_warning(&db) {
            rec.warnings.push(w);
        }

        let tx_after = self.last_tx(&g, &db).await;
        rec.consistency
            .insert("isolation".into(), "read committed (not a snapshot)".into());
        match (tx_before, tx_after) {
            (Some(b), Some(a)) => {
                rec.consistency.insert("last_tx_before".into(), b.into());
                rec.consistency.insert("last_tx_after".into(), a.into());
                if a != b {
                    rec.warnings.push(format!(
                        "database `{db}` committed transactions {}..={a} during the export: the backup may mix states from before and after them; pause writers for an exact copy",
                        b + 1
                    ));
                }
            }
            _ => {
                rec.consistency.insert(
                    "last_tx".into(),
                    "not reported by this server (Community)".into(),
                );
            }
        }
        if cx.purpose() == SnapshotPurpose::Safety {
            tracing::debug!(component = %self.name, "safety snapshot of database {db}");
        }
        rec.set_details(&Details {
            database: db,
            fingerprint: tally.fingerprint(),
        })?;
        Ok(rec)
    }

    async fn decode(&self, cx: &VerifyContext, rec: &ComponentRecord) -> Result<VerifyReport> {
        let mut report = VerifyReport {
            artifacts_checked: rec.artifacts.len() as u64,
            bytes_read: rec.artifacts.iter().map(|a| a.stored_size).sum(),
            ..VerifyReport::default()
        };
        match self.decode_all(cx, rec).await {
            Ok((schema, tally)) => {
                let diffs = tally.differences(rec);
                if !diffs.is_empty() {
                    let path = rec
                        .artifact(NODES)
                        .map(|a| a.path.clone())
                        .unwrap_or_default();
                    report.problems.push(format!(
                        "artifacts `{path}` and `{}` decode, but differ from the record: {}",
                        rec.artifact(RELS)
                            .map(|a| a.path.clone())
                            .unwrap_or_default(),
                        diffs.join("; ")
                    ));
                }
                report.notes.push(format!(
                    "decoded {} schema items, {} nodes and {} relationships; counts and fingerprint match",
                    schema.len(),
                    tally.nodes,
                    tally.rels
                ));
                if tally.left_out > 0 {
                    report.notes.push(format!(
                        "{} relationship(s) end at nodes the backup does not hold (written by an earlier amber-dr while the graph changed): a restore leaves them out",
                        tally.left_out
                    ));
                }
            }
            Err(e) if e.is_damage() => report.problems.push(e.to_string()),
            Err(e) => return Err(e),
        }
        Ok(report)
    }

    async fn restore(
        &self,
        cx: &RestoreContext,
        rec: &ComponentRecord,
        opts: &RestoreOptions,
    ) -> Result<RestoreReport> {
        let op = "restore";
        // A target that is a URI names another server (same credentials and database name):
        // Community has one user database, so another database is an Enterprise feature.
        if let Some(uri) = opts.target.as_deref().filter(|t| t.contains("://")) {
            let mut cfg = self.cfg.clone();
            cfg.uri = uri.to_string();
            let other = Neo4j::new(self.name.clone(), cfg)?;
            return other.restore(cx, rec, &opts.clone().target(None)).await;
        }
        let db = opts
            .target
            .clone()
            .unwrap_or_else(|| self.cfg.database.clone());
        let mut report = RestoreReport::default();
        if opts.dry_run {
            report.actions.push(format!(
                "would check every artifact, then empty database `{db}` on {} and load {} nodes and {} relationships",
                self.cfg.uri,
                rec.stat_u64("nodes").unwrap_or(0),
                rec.stat_u64("relationships").unwrap_or(0)
            ));
            return Ok(report);
        }
        // Prove the backup readable before the database is touched.
        cx.progress().set_phase("checking the backup");
        let (schema, tally) = self.decode_all(cx, rec).await?;
        let diffs = tally.differences(rec);
        if !diffs.is_empty() {
            return Err(Error::Corrupt {
                artifact: rec.artifact(NODES)?.path.clone(),
                message: format!("the artifacts differ from the record: {}", diffs.join("; ")),
            });
        }
        report.actions.push(format!(
            "checked the backup: {} nodes, {} relationships, {} schema items",
            tally.nodes,
            tally.rels,
            schema.len()
        ));
        let g = self.connect(&db).await.map_err(|e| self.err(op, e))?;
        if tally.left_out > 0 {
            report.warnings.push(format!(
                "{} relationship(s) of the backup end at nodes it does not hold (an earlier amber-dr wrote them while the graph changed): restored without them",
                tally.left_out
            ));
        }
        let live = self
            .restore_into(cx, rec, &g, &db, &schema, &tally, &mut report)
            .await?;
        let diffs = live.differences_from(&tally.restorable());
        if !diffs.is_empty() {
            return Err(self.err(
                op,
                Neo4jError::Mismatch {
                    uri: self.cfg.uri.clone(),
                    db: db.clone(),
                    detail: diffs.join("; "),
                },
            ));
        }
        report.stats.insert("nodes".into(), live.nodes.into());
        report
            .stats
            .insert("relationships".into(), live.rels.into());
        report
            .stats
            .insert("fingerprint".into(), live.fingerprint().into());
        report
            .actions
            .push("the restored graph matches the backup's counts and fingerprint".into());
        Ok(report)
    }

    fn legacy(&self) -> Option<&dyn LegacyImport> {
        Some(self)
    }

    async fn live_keys(
        &self,
        set: &amber_dr_core::references::KeySet,
    ) -> Result<amber_dr_core::references::KeyStream> {
        self.live_query_keys(set).await
    }

    fn scratch_plan(
        &self,
        _record: &ComponentRecord,
        scratch: &amber_dr_core::drill::Scratch,
    ) -> Result<amber_dr_core::drill::ScratchPlan> {
        Ok(self.plan_scratch(scratch))
    }

    async fn remove_scratch(&self, target: &str) -> Result<()> {
        self.empty_scratch(target).await
    }

    async fn scratch_keys(
        &self,
        set: &amber_dr_core::references::KeySet,
        restores: &[amber_dr_core::drill::ScratchRestore],
    ) -> Result<amber_dr_core::references::KeyStream> {
        self.scratch_query_keys(set, restores).await
    }
}

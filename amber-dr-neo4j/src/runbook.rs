//! The runbook import: replay of a legacy `neo4j.cypher` script (the format of
//! `apoc.export.cypher.all`, parsed by [`crate::legacy`]) and the driver's [`LegacyImport`].

use amber_dr_core::LegacyImport;
use amber_dr_core::{async_trait, Error, RestoreContext, RestoreOptions, RestoreReport, Result};
use neo4rs::Query;

use crate::component::{row_i64, Neo4j};
use crate::KIND;
use crate::RUNBOOK_FILE as LEGACY_CYPHER;

/// What [`Neo4j::replay_cypher`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Statements run.
    pub statements: u64,
    /// `:begin` … `:commit` transactions committed.
    pub transactions: u64,
}

impl Neo4j {
    /// Replay a legacy `neo4j.cypher` script — what `apoc.export.cypher.all` writes in its
    /// default cypher-shell format, the runbook's backup — into the configured database, in
    /// order, statement by statement (streamed: one statement in memory at a time). Statements
    /// between `:begin` and `:commit` run in one transaction; others each in their own. The
    /// database is not emptied first. `source` names the script in messages.
    pub async fn replay_cypher<R>(&self, input: R, source: &str) -> Result<ReplayReport>
    where
        R: tokio::io::AsyncBufRead + Unpin + Send,
    {
        self.replay_cypher_into(&self.cfg.database, input, source)
            .await
    }

    /// [`Self::replay_cypher`] into database `db`.
    async fn replay_cypher_into<R>(&self, db: &str, input: R, source: &str) -> Result<ReplayReport>
    where
        R: tokio::io::AsyncBufRead + Unpin + Send,
    {
        use crate::legacy::{preview, Item, ScriptReader};
        let op = "replay";
        let db = db.to_string();
        let g = self.connect(&db).await.map_err(|e| self.err(op, e))?;
        let mut script = ScriptReader::new(input);
        let mut txn: Option<neo4rs::Txn> = None;
        let mut report = ReplayReport::default();
        let at = |line: u64| format!("{source}, line {line}");
        loop {
            let item = script.next().await.map_err(|e| {
                Error::component(&self.name, KIND, op, format!("{}: {e}", at(script.line_no)))
            })?;
            let Some(item) = item else { break };
            let line = script.line_no;
            match item {
                Item::Command(c) if c == "begin" => {
                    if txn.is_some() {
                        return Err(Error::component(
                            &self.name,
                            KIND,
                            op,
                            format!("{}: `:begin` inside a transaction", at(line)),
                        ));
                    }
                    txn = Some(g.start_txn_on(db.as_str()).await.map_err(|e| {
                        self.err(
                            op,
                            self.query_err(&db, &format!("begin at {}", at(line)), &e),
                        )
                    })?);
                }
                Item::Command(c) if c == "commit" => {
                    let t = txn.take().ok_or_else(|| {
                        Error::component(
                            &self.name,
                            KIND,
                            op,
                            format!("{}: `:commit` without `:begin`", at(line)),
                        )
                    })?;
                    t.commit().await.map_err(|e| {
                        self.err(
                            op,
                            self.query_err(&db, &format!("commit at {}", at(line)), &e),
                        )
                    })?;
                    report.transactions += 1;
                }
                Item::Command(c) if c == "rollback" => {
                    if let Some(t) = txn.take() {
                        t.rollback().await.map_err(|e| {
                            self.err(
                                op,
                                self.query_err(&db, &format!("rollback at {}", at(line)), &e),
                            )
                        })?;
                    }
                }
                Item::Command(c) => {
                    return Err(Error::component(
                        &self.name,
                        KIND,
                        op,
                        format!("{}: unsupported cypher-shell command `:{c}`", at(line)),
                    ))
                }
                Item::Statement(stmt) => {
                    let what = format!("statement ending at {}: {}", at(line), preview(&stmt));
                    let res = match txn.as_mut() {
                        Some(t) => t.run(Query::new(stmt)).await,
                        None => g.run_on(&db, Query::new(stmt)).await,
                    };
                    res.map_err(|e| self.err(op, self.query_err(&db, &what, &e)))?;
                    report.statements += 1;
                }
            }
        }
        if txn.is_some() {
            return Err(Error::component(
                &self.name,
                KIND,
                op,
                format!("{source}: the script ends inside a `:begin` transaction (nothing of it was committed)"),
            ));
        }
        Ok(report)
    }
}

/// The runbook's file, restored without a record (see [`LegacyImport`]).
#[async_trait]
impl LegacyImport for Neo4j {
    fn legacy_files(&self) -> Vec<&'static str> {
        vec![LEGACY_CYPHER]
    }
    /// The runbook's `neo4j.cypher` (`apoc.export.cypher.all`, cypher-shell format): read
    /// through once first (every statement must be complete and every `:begin` closed, or
    /// nothing changes), then the database (or `--target`) is emptied — constraints, indexes,
    /// data — and the script replayed in order. A statement the server rejects stops the
    /// replay with the file and line; the database then holds what ran before it, and the
    /// safety backup taken first is the way back.
    async fn restore_legacy(
        &self,
        cx: &RestoreContext,
        file: &std::path::Path,
        opts: &RestoreOptions,
    ) -> Result<RestoreReport> {
        use crate::legacy::{Item, ScriptReader};
        let op = "restore";
        let db = opts
            .target
            .clone()
            .unwrap_or_else(|| self.cfg.database.clone());
        let source = file.display().to_string();
        let open = || async {
            tokio::fs::File::open(file)
                .await
                .map(|f| tokio::io::BufReader::with_capacity(1 << 20, f))
                .map_err(|e| Error::io("open", file, e))
        };
        cx.progress().set_phase("reading the runbook script");
        let mut script = ScriptReader::new(open().await?);
        let (mut statements, mut open_txn) = (0u64, false);
        loop {
            let item = script.next().await.map_err(|e| Error::Corrupt {
                artifact: format!("{source}, line {}", script.line_no),
                message: e.to_string(),
            })?;
            match item {
                None => break,
                Some(Item::Statement(_)) => statements += 1,
                Some(Item::Command(c)) if c == "begin" => open_txn = true,
                Some(Item::Command(c)) if c == "commit" || c == "rollback" => open_txn = false,
                Some(Item::Command(_)) => {}
            }
        }
        if statements == 0 || open_txn {
            return Err(Error::Corrupt {
                artifact: source,
                message: if statements == 0 {
                    "the script holds no Cypher statement".into()
                } else {
                    "the script ends inside a `:begin` transaction (truncated?)".into()
                },
            });
        }
        let mut report = RestoreReport::default();
        if opts.dry_run {
            report.actions.push(format!(
                "would empty database `{db}` on {} and replay the {statements} statements of `{source}`",
                self.cfg.uri
            ));
            return Ok(report);
        }
        let g = self.connect(&db).await.map_err(|e| self.err(op, e))?;
        cx.progress().set_phase("emptying the database");
        self.empty(&g, &db).await.map_err(|e| self.err(op, e))?;
        cx.progress().set_phase("replaying the runbook script");
        let replayed = self.replay_cypher_into(&db, open().await?, &source).await?;
        let count = |q: &'static str| {
            let (g, db) = (&g, &db);
            async move {
                let rows = self
                    .rows(g, db, "count the restored graph", Query::new(q.into()))
                    .await
                    .map_err(|e| self.err(op, e))?;
                rows.first()
                    .map(|r| row_i64(r, "c"))
                    .transpose()
                    .map_err(|e| self.err(op, self.data_err(db, e)))
                    .map(Option::unwrap_or_default)
            }
        };
        let nodes = count("MATCH (n) RETURN count(n) AS c").await?;
        let rels = count("MATCH ()-[r]->() RETURN count(r) AS c").await?;
        report.actions.push(format!(
            "replayed `{source}` into database `{db}`: {} statements in {} transactions; the database now holds {nodes} nodes and {rels} relationships",
            replayed.statements, replayed.transactions
        ));
        report.stats.insert("nodes".into(), nodes.into());
        report.stats.insert("relationships".into(), rels.into());
        Ok(report)
    }
}

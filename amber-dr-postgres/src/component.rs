//! The `postgres` component: the [`Postgres`] type, its connection and tool helpers, and the
//! [`Component`] implementation, which delegates to `backup.rs`, `verify.rs`, `restore.rs`
//! (through the scratch-database swap of `scratch.rs`) and `legacy.rs`.

use std::collections::BTreeMap;
use std::sync::Arc;

use amber_dr_core::tool::{self, ToolRunner};
use amber_dr_core::LegacyImport;
use amber_dr_core::{
    async_trait, Capabilities, Component, ComponentRecord, Error, Probe, RestoreContext,
    RestoreOptions, RestoreReport, Result, SnapshotContext, StagedRestore, VerifyContext,
    VerifyLevel, VerifyReport,
};
use tokio_postgres::config::Host;

use crate::catalog::{self, DbInfo};
use crate::config::PostgresConfig;
use crate::connect::ConnInfo;
use crate::error::PgError;
use crate::legacy::LEGACY_SQL;
use crate::toolcmd::ToolCmd;
use crate::tools::{self, Tools};

/// A PostgreSQL server. See the crate docs.
#[derive(Debug, Clone)]
pub struct Postgres {
    pub(crate) name: String,
    pub(crate) config: PostgresConfig,
    pg: tokio_postgres::Config,
    /// The whole connection string: TLS settings and what the tools receive.
    conn: ConnInfo,
    /// Where the tools run: this host, or (`via_container`) the container, through the runner
    /// the program registered with core.
    runner: Arc<dyn ToolRunner>,
}

impl Postgres {
    /// A `postgres` component named `name`; fails if the URL cannot be parsed.
    pub fn new(name: impl Into<String>, config: PostgresConfig) -> Result<Self> {
        let name = name.into();
        let conn = ConnInfo::parse(config.url.expose()).map_err(|e| {
            Error::config(
                format!("components.{name}.url"),
                format!(
                    "`{}` is not a valid postgres URL: {e}",
                    config.url.redacted()
                ),
            )
        })?;
        let pg = conn.pg.clone();
        if config.via_container.is_some() && config.restore_jobs > 1 {
            return Err(Error::config(
                format!("components.{name}.restore_jobs"),
                "must be 1 with via_container (parallel pg_restore needs the dump as a file the container can read)",
            ));
        }
        let runner = tool::runner(
            config.via_container.as_deref(),
            config.docker_host.as_deref(),
            &format!("components.{name}.via_container"),
        )?;
        Ok(Self {
            name,
            config,
            pg,
            conn,
            runner,
        })
    }

    /// The newest tools of a version at least `major` (on this host: searched; in a container:
    /// `bin_dir` there or its `PATH`).
    pub(crate) async fn find_tools(&self, major: u32, version: &str) -> Result<Tools, PgError> {
        let bin_dir = self.config.bin_dir.as_deref();
        match self.runner.sees_host_files() {
            true => tools::find(bin_dir, major, version).await,
            false => tools::find_in(self.runner.as_ref(), bin_dir, major, version).await,
        }
    }

    async fn found_tools(&self) -> Vec<Tools> {
        let bin_dir = self.config.bin_dir.as_deref();
        match self.runner.sees_host_files() {
            true => tools::found(bin_dir).await,
            false => tools::find_in(self.runner.as_ref(), bin_dir, 0, "any")
                .await
                .into_iter()
                .collect(),
        }
    }

    pub(crate) fn err(&self, op: &str) -> impl Fn(PgError) -> Error + '_ {
        let op = op.to_string();
        move |e| e.into_core(&self.name, &op)
    }

    fn url(&self) -> String {
        self.config.url.redacted()
    }

    pub(crate) fn maintenance_db(&self) -> String {
        self.pg.get_dbname().unwrap_or("postgres").to_string()
    }

    /// A database to connect to while the databases in `avoid` are renamed or dropped.
    pub(crate) fn admin_db(&self, avoid: &[&str]) -> String {
        [self.maintenance_db(), "postgres".into(), "template1".into()]
            .into_iter()
            .find(|d| !avoid.contains(&d.as_str()))
            .unwrap_or_else(|| "template1".into())
    }

    pub(crate) async fn connect(&self, db: &str) -> Result<tokio_postgres::Client, PgError> {
        let timeout = self.config.connect_timeout();
        catalog::connect(&self.pg, &self.conn.tls, db, &self.url(), timeout).await
    }

    /// Environment for the client tools: connection without anything on the command line
    /// (the password never appears in `ps`).
    fn tool_env(&self, cmd: &mut ToolCmd, db: &str) {
        // Every libpq parameter of the URL (sslmode, sslrootcert, options, ...) as its PG*
        // variable; the others are removed so that amber-dr's own environment cannot differ.
        let (set, remove) = self.conn.tool_env();
        for k in remove {
            cmd.env_remove(k);
        }
        cmd.env("PGAPPNAME", "amber-dr");
        for (k, v) in set {
            cmd.env(k, v);
        }
        let hosts: Vec<String> = self
            .pg
            .get_hosts()
            .iter()
            .map(|h| match h {
                Host::Tcp(h) => h.clone(),
                Host::Unix(p) => p.to_string_lossy().into_owned(),
            })
            .collect();
        if !hosts.is_empty() {
            cmd.env("PGHOST", hosts.join(","));
        }
        let ports: Vec<String> = self.pg.get_ports().iter().map(u16::to_string).collect();
        if !ports.is_empty() {
            cmd.env("PGPORT", ports.join(","));
        }
        if let Some(u) = self.pg.get_user() {
            cmd.env("PGUSER", u);
        }
        match self.pg.get_password() {
            Some(p) => cmd.env("PGPASSWORD", String::from_utf8_lossy(p).into_owned()),
            None => cmd.env_remove("PGPASSWORD"),
        };
        cmd.env("PGDATABASE", db).env(
            "PGCONNECT_TIMEOUT",
            self.config.connect_timeout_secs.to_string(),
        );
    }

    /// A tool without the connection environment.
    pub(crate) fn bare_tool(&self, tools: &Tools, name: &str) -> ToolCmd {
        ToolCmd::new(tools.bin(name), self.runner.clone())
    }

    /// A tool connected to database `db`.
    pub(crate) fn tool(&self, tools: &Tools, name: &str, db: &str) -> ToolCmd {
        let mut cmd = self.bare_tool(tools, name);
        self.tool_env(&mut cmd, db);
        cmd.arg("--no-password");
        cmd
    }

    /// The databases to back up, checked against the server. With `absent`, a configured
    /// database the server lacks is pushed there instead of being an error (a safety backup
    /// taken after the database was lost has nothing to save of it).
    pub(crate) fn select(
        &self,
        all: &[DbInfo],
        mut absent: Option<&mut Vec<String>>,
    ) -> Result<Vec<DbInfo>, PgError> {
        let names: Vec<&str> = all.iter().map(|d| d.name.as_str()).collect();
        let wanted: Vec<DbInfo> = match &self.config.databases {
            Some(list) => {
                let mut v = Vec::new();
                for n in list {
                    match (all.iter().find(|d| &d.name == n), absent.as_deref_mut()) {
                        (Some(d), _) => v.push(d.clone()),
                        (None, Some(absent)) => absent.push(n.clone()),
                        (None, None) => {
                            return Err(PgError::UnknownDatabase(n.clone(), names.join(", ")))
                        }
                    }
                }
                v
            }
            None => all.to_vec(),
        };
        Ok(wanted
            .into_iter()
            .filter(|d| !self.config.exclude_databases.contains(&d.name))
            .collect())
    }

    pub(crate) async fn tools_for(
        &self,
        client: &tokio_postgres::Client,
    ) -> Result<(String, Tools), PgError> {
        let (major, version) = catalog::server_version(client).await?;
        let tools = self.find_tools(major, &version).await?;
        Ok((version, tools))
    }
}

#[async_trait]
impl Component for Postgres {
    fn kind(&self) -> &'static str {
        crate::KIND
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::new()
            .online_snapshot(true)
            .consistent_snapshot(true)
            .restore_to_target(true)
            .restore_needs_downtime(false)
            .restore_parts(true)
            .staged_restore(true)
            .deep_verify(true)
            .reference_queries(true)
    }

    async fn probe(&self) -> Result<Probe> {
        let err = self.err("probe");
        let client = self.connect(&self.maintenance_db()).await.map_err(&err)?;
        let (major, version) = catalog::server_version(&client).await.map_err(&err)?;
        let dbs = catalog::databases(&client).await.map_err(&err)?;
        let selected = self.select(&dbs, None).map_err(&err)?;
        let mut p = Probe {
            reachable: true,
            version: Some(format!("PostgreSQL {version}")),
            size_estimate: Some(selected.iter().map(|d| d.size).sum::<i64>().max(0) as u64),
            ..Default::default()
        };
        p.details.insert(
            "databases".into(),
            serde_json::json!(selected
                .iter()
                .map(|d| (d.name.clone(), d.size))
                .collect::<BTreeMap<_, _>>()),
        );
        let found = self.found_tools().await;
        p.details.insert(
            "tools_found".into(),
            serde_json::json!(found
                .iter()
                .map(|t| format!("{} ({})", t.version, t.dir.display()))
                .collect::<Vec<_>>()),
        );
        match self.find_tools(major, &version).await {
            Ok(t) => {
                p.details.insert(
                    "tools_used".into(),
                    format!("{} ({})", t.version, t.dir.display()).into(),
                );
            }
            Err(e) => p.warnings.push(e.to_string()),
        }
        Ok(p)
    }

    async fn snapshot(&self, cx: &SnapshotContext) -> Result<ComponentRecord> {
        self.take_snapshot(cx).await
    }

    async fn decode(&self, cx: &VerifyContext, record: &ComponentRecord) -> Result<VerifyReport> {
        self.verify_dumps(cx, record, VerifyLevel::Full).await
    }

    async fn restore(
        &self,
        cx: &RestoreContext,
        record: &ComponentRecord,
        opts: &RestoreOptions,
    ) -> Result<RestoreReport> {
        self.restore_record(cx, record, opts).await
    }

    async fn stage(
        &self,
        cx: &RestoreContext,
        record: &ComponentRecord,
        opts: &RestoreOptions,
    ) -> Result<Option<Box<dyn StagedRestore>>> {
        self.stage_record(cx, record, opts).await
    }

    fn legacy(&self) -> Option<&dyn LegacyImport> {
        Some(self)
    }

    async fn live_keys(
        &self,
        set: &amber_dr_core::references::KeySet,
    ) -> Result<amber_dr_core::references::KeyStream> {
        if set.query.is_none() {
            return Err(Error::config(
                format!("references: {}", self.name),
                "a reference end on a postgres component needs a `query`",
            ));
        }
        self.live_query_keys(set).await
    }

    fn scratch_plan(
        &self,
        record: &ComponentRecord,
        scratch: &amber_dr_core::drill::Scratch,
    ) -> Result<amber_dr_core::drill::ScratchPlan> {
        self.plan_scratch(record, scratch)
    }

    async fn remove_scratch(&self, target: &str) -> Result<()> {
        self.drop_scratch_target(target).await
    }

    async fn scratch_keys(
        &self,
        set: &amber_dr_core::references::KeySet,
        restores: &[amber_dr_core::drill::ScratchRestore],
    ) -> Result<amber_dr_core::references::KeyStream> {
        self.scratch_query_keys(set, restores).await
    }
}

/// The runbook's file, restored without a record (see [`LegacyImport`]).
#[async_trait]
impl LegacyImport for Postgres {
    fn legacy_files(&self) -> Vec<&'static str> {
        vec![LEGACY_SQL]
    }
    /// The runbook's `postgres.sql`: see `legacy.rs`.
    async fn restore_legacy(
        &self,
        cx: &RestoreContext,
        file: &std::path::Path,
        opts: &RestoreOptions,
    ) -> Result<RestoreReport> {
        self.restore_runbook_sql(cx, file, opts).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_url_is_a_config_error() {
        let e = Postgres::new("pg", PostgresConfig::new("postgres://u:pw@h:notaport/db"))
            .expect_err("bad");
        assert!(e.is_usage(), "{e}");
        assert!(!e.to_string().contains(":pw@"), "{e}");
    }

    #[test]
    fn via_container_needs_a_registered_container_runtime() {
        // Nothing in this test binary registers one: the driver never names Docker itself.
        let cfg =
            PostgresConfig::new("postgres://u:pw@127.0.0.1:5432/db").via_container("pg", None);
        let e = Postgres::new("pg", cfg).expect_err("no runtime");
        assert!(e.is_usage(), "{e}");
        let msg = e.to_string();
        assert!(msg.contains("components.pg.via_container"), "{msg}");
        assert!(msg.contains("register_tool_runner"), "{msg}");
    }
}

//! The `postgres` component.

use std::collections::BTreeMap;

use amber_dr_core::{
    async_trait, Capabilities, Component, ComponentRecord, Error, Probe, RestoreContext,
    RestoreOptions, RestoreReport, Result, SnapshotContext, SnapshotPurpose, VerifyContext,
    VerifyLevel, VerifyReport,
};
use amber_dr_docker::ContainerExec;
use serde::{Deserialize, Serialize};

use crate::roles::{filter_globals, legacy_sql_kind, MAX_GLOBALS};
use crate::sequences;
use crate::toolcmd::ToolCmd;
use tokio_postgres::config::Host;

use crate::catalog::{self, ident, Counts, DbInfo, DbProps};
use crate::config::PostgresConfig;
use crate::connect::ConnInfo;
use crate::error::PgError;
use crate::tools::{self, Tools};

const GLOBALS: &str = "globals.sql";

/// One database of a snapshot.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct DbRecord {
    info: DbInfo,
    /// Artifact name of its `pg_dump -Fc` dump.
    artifact: String,
    /// The exported snapshot the dump and the counts were taken in.
    snapshot: String,
    /// WAL position when the snapshot was taken (primary servers).
    wal_lsn: Option<String>,
    props: DbProps,
    counts: Counts,
    /// The sequences of `counts` are the positions the dump holds (read from its TOC); older
    /// records have the positions seen during the dump, which a restore only warns about.
    #[serde(default)]
    sequences_dumped: bool,
}

/// What the record keeps to restore and compare.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Details {
    server_version: String,
    tools_version: String,
    globals: Option<String>,
    databases: Vec<DbRecord>,
}

/// A PostgreSQL server. See the crate docs.
#[derive(Debug, Clone)]
pub struct Postgres {
    name: String,
    config: PostgresConfig,
    pg: tokio_postgres::Config,
    /// The whole connection string: TLS settings and what the tools receive.
    conn: ConnInfo,
    /// `via_container`: the tools run in this container.
    exec: Option<ContainerExec>,
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
        let exec = match &config.via_container {
            None => None,
            Some(c) => {
                if config.restore_jobs > 1 {
                    return Err(Error::config(
                        format!("components.{name}.restore_jobs"),
                        "must be 1 with via_container (parallel pg_restore needs the dump as a file the container can read)",
                    ));
                }
                Some(ContainerExec::new(config.docker_host.clone(), c.clone())?)
            }
        };
        Ok(Self {
            name,
            config,
            pg,
            conn,
            exec,
        })
    }

    async fn find_tools(&self, major: u32, version: &str) -> Result<Tools, PgError> {
        match &self.exec {
            None => tools::find(self.config.bin_dir.as_deref(), major, version).await,
            Some(e) => tools::find_in(e, self.config.bin_dir.as_deref(), major, version).await,
        }
    }

    async fn found_tools(&self) -> Vec<Tools> {
        match &self.exec {
            None => tools::found(self.config.bin_dir.as_deref()).await,
            Some(e) => tools::find_in(e, self.config.bin_dir.as_deref(), 0, "any")
                .await
                .into_iter()
                .collect(),
        }
    }

    fn err(&self, op: &str) -> impl Fn(PgError) -> Error + '_ {
        let op = op.to_string();
        move |e| e.into_core(&self.name, &op)
    }

    fn url(&self) -> String {
        self.config.url.redacted()
    }

    fn maintenance_db(&self) -> String {
        self.pg.get_dbname().unwrap_or("postgres").to_string()
    }

    /// A database to connect to while the databases in `avoid` are renamed or dropped.
    fn admin_db(&self, avoid: &[&str]) -> String {
        [self.maintenance_db(), "postgres".into(), "template1".into()]
            .into_iter()
            .find(|d| !avoid.contains(&d.as_str()))
            .unwrap_or_else(|| "template1".into())
    }

    /// Create the roles of the backup that the server lacks; existing roles are left exactly
    /// as they are (a restore must not undo a password rotation or re-enable a login).
    async fn apply_roles(
        &self,
        cx: &RestoreContext,
        record: &ComponentRecord,
        tools: &Tools,
        globals: &str,
        report: &mut RestoreReport,
    ) -> Result<()> {
        let err = self.err("restore");
        let art = record.artifact(globals)?;
        if art.size > MAX_GLOBALS {
            return Err(self.err("restore")(PgError::Tools(format!(
                "{} is {} bytes, more than the {MAX_GLOBALS} bytes roles and tablespaces can take",
                art.path, art.size
            ))));
        }
        let mut reader = cx.open_artifact(art).await?;
        let mut text = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut reader, &mut text)
            .await
            .map_err(|e| Error::from_io("read", &art.path, e))?;
        let text = String::from_utf8_lossy(&text);
        let db = self.maintenance_db();
        let client = self.connect(&db).await.map_err(&err)?;
        let existing: std::collections::HashSet<String> = client
            .query("SELECT rolname FROM pg_roles", &[])
            .await
            .map_err(catalog::q(&db, "list roles"))
            .map_err(&err)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        drop(client);
        let (sql, created, kept) = filter_globals(&text, &existing);
        let mut cmd = self.tool(tools, "psql", &db);
        cmd.args(["-X", "-q", "-v", "ON_ERROR_STOP=0", "-f", "-"]);
        let stderr = cmd.stdin_from(sql.as_bytes(), "psql (roles)").await?;
        let errors: Vec<&str> = stderr
            .lines()
            .filter(|l| l.contains("ERROR") && !l.contains("already exists"))
            .collect();
        if !errors.is_empty() {
            report
                .warnings
                .push(format!("roles: {}", errors.join("; ")));
        }
        if !created.is_empty() {
            report
                .actions
                .push(format!("created missing roles: {}", created.join(", ")));
        }
        if !kept.is_empty() {
            report.actions.push(format!(
                "kept {} existing roles unchanged (passwords and attributes as they are now)",
                kept.len()
            ));
        }
        Ok(())
    }

    async fn connect(&self, db: &str) -> Result<tokio_postgres::Client, PgError> {
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
    fn bare_tool(&self, tools: &Tools, name: &str) -> ToolCmd {
        ToolCmd::new(tools.bin(name), self.exec.clone())
    }

    fn tool(&self, tools: &Tools, name: &str, db: &str) -> ToolCmd {
        let mut cmd = self.bare_tool(tools, name);
        self.tool_env(&mut cmd, db);
        cmd.arg("--no-password");
        cmd
    }

    /// The databases to back up, checked against the server. With `absent`, a configured
    /// database the server lacks is pushed there instead of being an error (a safety backup
    /// taken after the database was lost has nothing to save of it).
    fn select(
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

    async fn tools_for(&self, client: &tokio_postgres::Client) -> Result<(String, Tools), PgError> {
        let (major, version) = catalog::server_version(client).await?;
        let tools = self.find_tools(major, &version).await?;
        Ok((version, tools))
    }

    async fn dump_globals(
        &self,
        cx: &SnapshotContext,
        tools: &Tools,
    ) -> Result<(amber_dr_core::ArtifactRecord, Vec<String>)> {
        let db = self.maintenance_db();
        let mut warnings = Vec::new();
        let mut cmd = self.tool(tools, "pg_dumpall", &db);
        cmd.arg("--globals-only");
        let w = cx.create_artifact(GLOBALS).await?;
        match cmd
            .stdout_into_artifact(w, "pg_dumpall --globals-only")
            .await
        {
            Ok(rec) => Ok((rec, warnings)),
            Err(e) if e.to_string().contains("permission denied") => {
                // Not a superuser: roles without their passwords is the best we can do.
                let mut cmd = self.tool(tools, "pg_dumpall", &db);
                cmd.args(["--globals-only", "--no-role-passwords"]);
                let w = cx.create_artifact(GLOBALS).await?;
                let rec = cmd
                    .stdout_into_artifact(w, "pg_dumpall --globals-only --no-role-passwords")
                    .await?;
                warnings.push("not a superuser: roles were saved without their passwords".into());
                Ok((rec, warnings))
            }
            Err(e) => Err(e),
        }
    }

    /// Open a repeatable-read transaction in `db` and export its snapshot: from here on, what
    /// `pg_dump --snapshot` of this database reads is fixed.
    async fn open_snapshot(&self, db: &str) -> Result<OpenSnapshot> {
        let err = self.err("snapshot");
        let client = self.connect(db).await.map_err(&err)?;
        client
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .await
            .map_err(catalog::q(db, "begin snapshot transaction"))
            .map_err(&err)?;
        let row = client
            .query_one(
                "SELECT pg_export_snapshot(), CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END",
                &[],
            )
            .await
            .map_err(catalog::q(db, "export snapshot"))
            .map_err(&err)?;
        Ok(OpenSnapshot {
            client,
            snapshot: row.get(0),
            wal_lsn: row.get(1),
        })
    }

    async fn dump_db(
        &self,
        cx: &SnapshotContext,
        tools: &Tools,
        idx: usize,
        info: DbInfo,
        open: OpenSnapshot,
        warnings: &mut Vec<String>,
    ) -> Result<(DbRecord, amber_dr_core::ArtifactRecord)> {
        let db = info.name.clone();
        let err = self.err("snapshot");
        let OpenSnapshot {
            client,
            snapshot,
            wal_lsn,
        } = open;
        let props = catalog::db_props(&client, &db).await.map_err(&err)?;

        let artifact = format!("db-{idx:03}.dump");
        let mut cmd = self.tool(tools, "pg_dump", &db);
        // Uncompressed custom format: the artifact's zstd compresses once.
        cmd.args(["--format=custom", "--compress=0", "--snapshot", &snapshot]);
        let writer = cx.create_artifact(&artifact).await?;
        let what = format!("pg_dump of database `{db}`");
        let dump = cmd.dump_into_artifact(writer, &what);
        // Counted in the same snapshot, while pg_dump streams.
        let counts = catalog::counts(&client, &db);
        let (dump, counts) = tokio::join!(dump, counts);
        let (art, dumped) = dump?;
        let mut counts = counts.map_err(&err)?;
        let sequences_dumped = sequences::record(&mut counts, dumped, &db, warnings);
        client
            .batch_execute("COMMIT")
            .await
            .map_err(catalog::q(&db, "commit"))
            .map_err(&err)?;
        cx.progress().add_items(1);
        Ok((
            DbRecord {
                info,
                artifact,
                snapshot,
                wal_lsn,
                props,
                counts,
                sequences_dumped,
            },
            art,
        ))
    }

    /// A target override restores beside the live databases, never over one of them: it must
    /// name a database that does not exist yet (or the backed-up database itself, which is an
    /// ordinary restore), and never a template.
    async fn check_new_target(&self, target: &str, source: &str) -> Result<()> {
        let refuse = |why: String| Err(Error::config(format!("restore of `{}`", self.name), why));
        if target.is_empty() || target.len() > 63 {
            return refuse(format!(
                "target database name `{target}` must be 1 to 63 bytes long"
            ));
        }
        if target == "template0" || target == "template1" {
            return refuse(format!(
                "refusing to restore over the template database `{target}`"
            ));
        }
        if target == source {
            return Ok(());
        }
        let maint = self.maintenance_db();
        let client = self.connect(&maint).await.map_err(self.err("restore"))?;
        let exists = client
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&target])
            .await
            .map_err(catalog::q(&maint, "look for the target database"))
            .map_err(self.err("restore"))?
            .is_some();
        if exists {
            return refuse(format!(
                "target database `{target}` already exists; a restore under another name never replaces an existing database: drop it first (DROP DATABASE \"{target}\") or choose a new name"
            ));
        }
        Ok(())
    }

    /// Give database `target` the database-level properties (comment, privileges, settings)
    /// a dump without `--create` does not carry; a property that cannot be set is a warning.
    async fn apply_props(
        &self,
        target: &str,
        props: &catalog::DbProps,
        report: &mut RestoreReport,
    ) -> Result<()> {
        let maint = self.admin_db(&[target]);
        let admin = self.connect(&maint).await.map_err(self.err("restore"))?;
        for sql in catalog::props_sql(target, props) {
            if let Err(e) = admin
                .batch_execute(&sql)
                .await
                .map_err(catalog::q(&maint, &sql))
            {
                report.warnings.push(format!(
                    "database `{target}`: `{sql}` failed: {}",
                    e.server_message()
                ));
            }
        }
        Ok(())
    }

    /// Restore into a scratch database beside `target` (created like `like`, or with the
    /// server's defaults), let `fill` load and check it, then swap it in under `target`'s
    /// name. The live database is untouched until the swap; a failed `fill` drops the scratch
    /// database. Refuses when a database set aside by an interrupted swap exists.
    async fn via_scratch<T, F, Fut>(
        &self,
        cx: &RestoreContext,
        target: &str,
        like: Option<&catalog::DbInfo>,
        report: &mut RestoreReport,
        fill: F,
    ) -> Result<T>
    where
        F: FnOnce(String) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let err = self.err("restore");
        let scratch = scratch_name(target);
        let old = format!("{scratch}_old");
        // Administer from a database that is not being renamed (the URL's own database may be
        // the one restored).
        let maint = self.admin_db(&[target, &scratch, &old]);
        let admin = self.connect(&maint).await.map_err(&err)?;
        let exec = |sql: String| {
            let admin = &admin;
            let maint = maint.clone();
            async move {
                admin
                    .batch_execute(&sql)
                    .await
                    .map_err(catalog::q(&maint, &sql))
            }
        };
        // A database set aside by an interrupted swap may be the only copy of the old data:
        // never drop it here.
        if admin
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&old])
            .await
            .map_err(catalog::q(&maint, "look for an interrupted restore"))
            .map_err(&err)?
            .is_some()
        {
            return Err(err(PgError::Tools(format!(
                "database `{old}` exists: an earlier restore of `{target}` was interrupted during its swap and it may hold the only copy of the old data; rename or drop it, then restore again"
            ))));
        }
        if admin
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&scratch])
            .await
            .map_err(catalog::q(&maint, "look for a leftover scratch database"))
            .map_err(&err)?
            .is_some()
        {
            report.warnings.push(format!(
                "dropped `{scratch}`, the scratch database of an earlier restore of `{target}` that did not finish"
            ));
        }
        exec(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            ident(&scratch)
        ))
        .await
        .map_err(&err)?;
        let create = |owner: bool| match like {
            None => format!("CREATE DATABASE {} TEMPLATE template0", ident(&scratch)),
            Some(info) => {
                let icu = match (&info.locale_provider, &info.icu_locale) {
                    (Some(p), Some(l)) if p == "i" => {
                        format!(" LOCALE_PROVIDER icu ICU_LOCALE {}", catalog::literal(l))
                    }
                    _ => String::new(),
                };
                format!(
                    "CREATE DATABASE {} {}ENCODING {} LC_COLLATE {} LC_CTYPE {}{icu} TEMPLATE template0",
                    ident(&scratch),
                    if owner {
                        format!("OWNER {} ", ident(&info.owner))
                    } else {
                        String::new()
                    },
                    catalog::literal(&info.encoding),
                    catalog::literal(&info.collate),
                    catalog::literal(&info.ctype),
                )
            }
        };
        if let Err(e) = exec(create(true)).await {
            let owner = like.map(|i| i.owner.as_str()).unwrap_or_default();
            report.warnings.push(format!(
                "database `{target}`: could not keep owner `{owner}` ({}); owned by the connecting user",
                e.server_message()
            ));
            exec(create(false)).await.map_err(&err)?;
        }

        let result = fill(scratch.clone()).await;
        let value = match result {
            Ok(l) => l,
            Err(e) => {
                let _ = exec(format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    ident(&scratch)
                ))
                .await;
                return Err(e);
            }
        };

        // Swap: the scratch database takes the target's name.
        cx.progress().set_phase(format!("swapping {target} in"));
        let exists = admin
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&target])
            .await
            .map_err(catalog::q(&maint, "find target database"))
            .map_err(&err)?
            .is_some();
        exec(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            ident(&old)
        ))
        .await
        .map_err(&err)?;
        if exists {
            let mut tries = 0;
            loop {
                let _ = admin
                    .execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                        &[&target],
                    )
                    .await;
                match exec(format!(
                    "ALTER DATABASE {} RENAME TO {}",
                    ident(target),
                    ident(&old)
                ))
                .await
                {
                    Ok(()) => break,
                    Err(e) if tries < 5 => {
                        tries += 1;
                        tracing::warn!(error = %e.server_message(), "database still in use; retrying");
                        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    }
                    Err(e) => {
                        let _ = exec(format!(
                            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                            ident(&scratch)
                        ))
                        .await;
                        return Err(err(e));
                    }
                }
            }
        }
        if let Err(e) = exec(format!(
            "ALTER DATABASE {} RENAME TO {}",
            ident(&scratch),
            ident(target)
        ))
        .await
        {
            if exists {
                let _ = exec(format!(
                    "ALTER DATABASE {} RENAME TO {}",
                    ident(&old),
                    ident(target)
                ))
                .await;
            }
            return Err(err(e));
        }
        if exists {
            if let Err(e) = exec(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                ident(&old)
            ))
            .await
            {
                report.warnings.push(format!(
                    "restored, but the old database `{old}` could not be dropped: {}",
                    e.server_message()
                ));
            }
        }
        Ok(value)
    }

    /// Restore one database: fetch and check the dump, restore it into a scratch database,
    /// compare, then swap it in. The live database is untouched until the swap.
    async fn restore_db(
        &self,
        cx: &RestoreContext,
        record: &ComponentRecord,
        tools: &Tools,
        rec: &DbRecord,
        target: &str,
        report: &mut RestoreReport,
    ) -> Result<()> {
        let err = self.err("restore");
        let art = record.artifact(&rec.artifact)?.clone();
        cx.progress()
            .set_phase(format!("fetching dump of {}", rec.info.name));
        cx.progress().set_total_bytes(art.size);
        // Parallel pg_restore needs a seekable file; one job can read the artifact as it streams.
        let jobs = self.config.restore_jobs.max(1);
        let dump_file = if jobs > 1 {
            let tmp_dir = self
                .config
                .temp_dir
                .clone()
                .unwrap_or_else(std::env::temp_dir);
            let file = tempfile::Builder::new()
                .prefix("amber-dr-pg-")
                .suffix(".dump")
                .tempfile_in(&tmp_dir)
                .map_err(|e| Error::io("create temporary dump file in", &tmp_dir, e))?;
            let reader = cx.open_artifact(&art).await?;
            let mut reader = tokio::io::BufReader::with_capacity(1024 * 1024, reader);
            let mut out = tokio::fs::File::create(file.path())
                .await
                .map_err(|e| Error::io("write", file.path(), e))?;
            tokio::io::copy_buf(&mut reader, &mut out)
                .await
                .map_err(|e| Error::from_io("fetch dump into", file.path(), e))?;
            tokio::io::AsyncWriteExt::flush(&mut out)
                .await
                .map_err(|e| Error::io("write", file.path(), e))?;
            // Prove the dump is readable before anything on the server changes.
            let mut list = self.bare_tool(tools, "pg_restore");
            list.arg("--list").arg(file.path());
            list.output("pg_restore --list")
                .await
                .map_err(|e| Error::Corrupt {
                    artifact: art.path.clone(),
                    message: format!("the dump's table of contents cannot be read: {e}"),
                })?;
            Some(file)
        } else {
            None
        };

        let (dump_file, art, err) = (&dump_file, &art, &err);
        let (live, notes) = self
            .via_scratch(
                cx,
                target,
                Some(&rec.info),
                report,
                move |scratch| async move {
                    cx.progress().set_phase(format!("pg_restore into {target}"));
                    let mut cmd = self.tool(tools, "pg_restore", &scratch);
                    cmd.arg("--exit-on-error")
                        .arg(format!("--dbname={}", conninfo_dbname(&scratch)));
                    let what = format!("pg_restore of database `{}`", rec.info.name);
                    match &dump_file {
                        Some(file) => {
                            cmd.arg(format!("--jobs={jobs}")).arg(file.path());
                            cmd.output(&what).await?;
                        }
                        None => {
                            // Streamed: damage found at the end of the artifact fails the restore
                            // here, and the scratch database is dropped.
                            let reader = cx.open_artifact(art).await?;
                            cmd.stdin_from(reader, &what).await?;
                        }
                    }
                    let client = self.connect(&scratch).await.map_err(&err)?;
                    let live = catalog::counts(&client, &scratch).await.map_err(&err)?;
                    drop(client);
                    let mut want = rec.counts.clone();
                    let notes = match rec.sequences_dumped {
                        true => Vec::new(),
                        false => sequences::loosen(&mut want, &live, target),
                    };
                    if let Some(d) = live.diff(&want) {
                        return Err(err(PgError::Mismatch {
                            db: target.to_string(),
                            detail: d,
                        }));
                    }
                    Ok((live, notes))
                },
            )
            .await?;
        report.warnings.extend(notes);
        self.apply_props(target, &rec.props, report).await?;
        report.actions.push(format!(
            "restored database `{target}` from `{}`: {} tables, {} rows, {} sequences, {} large objects",
            rec.info.name,
            live.tables.len(),
            live.rows(),
            live.sequences.len(),
            live.large_objects
        ));
        report
            .stats
            .insert(format!("rows.{target}"), live.rows().into());
        cx.progress().add_items(1);
        Ok(())
    }
}

/// The runbook's plain-SQL dump of the application database.
const LEGACY_SQL: &str = "postgres.sql";

/// A scratch database name derived from the target, within Postgres's 63-byte limit.
fn scratch_name(target: &str) -> String {
    let mut base: String = target.chars().take(40).collect();
    while base.len() > 40 {
        base.pop();
    }
    format!("{base}__amber_dr_restore")
}

/// `dbname='...'` for a conninfo string.
fn conninfo_dbname(db: &str) -> String {
    format!("dbname='{}'", db.replace('\\', "\\\\").replace('\'', "\\'"))
}

fn join_stat(rec: &mut ComponentRecord, dbs: &[DbRecord]) {
    rec.set_stat("databases", dbs.len());
    rec.set_stat(
        "tables",
        dbs.iter().map(|d| d.counts.tables.len()).sum::<usize>(),
    );
    rec.set_stat("rows", dbs.iter().map(|d| d.counts.rows()).sum::<i64>());
    rec.set_stat(
        "large_objects",
        dbs.iter().map(|d| d.counts.large_objects).sum::<i64>(),
    );
    rec.set_stat(
        "bytes_on_server",
        dbs.iter().map(|d| d.info.size).sum::<i64>(),
    );
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
            .deep_verify(true)
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
        let err = self.err("snapshot");
        cx.progress().set_phase("connecting");
        let client = self.connect(&self.maintenance_db()).await.map_err(&err)?;
        // Tools first: fail before writing anything when none fits the server.
        let (server_version, tools) = self.tools_for(&client).await.map_err(&err)?;
        let all = catalog::databases(&client).await.map_err(&err)?;
        let mut absent = Vec::new();
        let missing_ok = cx.purpose() == SnapshotPurpose::Safety;
        let dbs = self
            .select(&all, missing_ok.then_some(&mut absent))
            .map_err(&err)?;
        drop(client);

        // Export a snapshot in every database first, so that all of them describe the same
        // moment (give or take the few milliseconds between the exports) and the application
        // can resume before the dumps run. One connection per database is held meanwhile.
        cx.progress().set_phase("exporting snapshots");
        let mut open = Vec::with_capacity(dbs.len());
        for info in &dbs {
            open.push(self.open_snapshot(&info.name).await?);
        }
        cx.mark_consistent();

        let mut rec = ComponentRecord::new(crate::KIND, &self.name);
        rec.server_version = Some(format!("PostgreSQL {server_version}"));
        for db in absent {
            rec.warnings.push(format!(
                "database `{db}` did not exist when this safety snapshot was taken: nothing of it was saved"
            ));
        }
        cx.progress().set_phase("dumping globals");
        let (globals, warnings) = self.dump_globals(cx, &tools).await?;
        rec.warnings.extend(warnings);
        rec.artifacts.push(globals);

        cx.progress().set_phase("dumping databases");
        let mut records = Vec::new();
        for (idx, (info, open)) in dbs.into_iter().zip(open).enumerate() {
            let (r, art) = self
                .dump_db(cx, &tools, idx, info, open, &mut rec.warnings)
                .await?;
            rec.consistency.insert(
                format!("snapshot.{}", r.info.name),
                r.snapshot.clone().into(),
            );
            if let Some(l) = &r.wal_lsn {
                rec.consistency
                    .insert(format!("wal_lsn.{}", r.info.name), l.clone().into());
            }
            rec.artifacts.push(art);
            records.push(r);
        }
        join_stat(&mut rec, &records);
        rec.set_details(&Details {
            server_version,
            tools_version: tools.version.clone(),
            globals: Some(GLOBALS.into()),
            databases: records,
        })?;
        Ok(rec)
    }

    async fn verify(
        &self,
        cx: &VerifyContext,
        record: &ComponentRecord,
        level: VerifyLevel,
    ) -> Result<VerifyReport> {
        let mut report = cx.verify_artifacts(record, VerifyLevel::Quick).await?;
        if level == VerifyLevel::Quick || !report.is_ok() {
            return Ok(report);
        }
        let details: Details = record.details()?;
        let tools = self
            .find_tools(0, "any")
            .await
            .map_err(self.err("verify"))?;
        if let Some(g) = &details.globals {
            let art = record.artifact(g)?;
            match cx.open_artifact(art).await {
                Ok(r) => match r.finish().await {
                    Ok(()) => report.bytes_read += art.stored_size,
                    Err(e) => report.problems.push(e.to_string()),
                },
                Err(e) if e.is_damage() => report.problems.push(e.to_string()),
                Err(e) => return Err(e),
            }
        }
        for db in &details.databases {
            let art = record.artifact(&db.artifact)?;
            let reader = match cx.open_artifact(art).await {
                Ok(r) => r,
                Err(e) if e.is_damage() => {
                    report.problems.push(e.to_string());
                    continue;
                }
                Err(e) => return Err(e),
            };
            // Every block of the dump decoded by pg_restore (to /dev/null), streamed.
            let mut cmd = self.bare_tool(&tools, "pg_restore");
            cmd.args(["--file=/dev/null"]);
            match cmd
                .stdin_from(reader, &format!("pg_restore of `{}`", art.path))
                .await
            {
                Ok(_) => {
                    report.bytes_read += art.stored_size;
                    report.notes.push(format!(
                        "database `{}`: dump readable by pg_restore {} ({} tables, {} rows recorded)",
                        db.info.name,
                        tools.version,
                        db.counts.tables.len(),
                        db.counts.rows()
                    ));
                }
                Err(e) if e.is_damage() => report.problems.push(e.to_string()),
                Err(e) => report
                    .problems
                    .push(format!("artifact `{}`: {e}", art.path)),
            }
        }
        Ok(report)
    }

    fn legacy_files(&self) -> Vec<&'static str> {
        vec![LEGACY_SQL]
    }

    /// The runbook's `postgres.sql` (plain `pg_dump` of one database): loaded with
    /// `psql --single-transaction -v ON_ERROR_STOP=1` into a scratch database created like the
    /// live one, then swapped in under the URL's database name (or `--target`); the live
    /// database's comment, privileges and settings (not in such a dump) are kept. Any SQL error
    /// drops the scratch database and leaves the live one untouched. A `pg_dumpall` file is
    /// refused: it would recreate roles and every database at once.
    async fn restore_legacy(
        &self,
        cx: &RestoreContext,
        file: &std::path::Path,
        opts: &RestoreOptions,
    ) -> Result<RestoreReport> {
        let err = self.err("restore");
        if !opts.items.is_empty() {
            return Err(Error::config(
                format!("restore of `{}`", self.name),
                format!(
                    "the runbook's {LEGACY_SQL} holds one database; it is restored into the URL's database or --target, not {}",
                    opts.items.join(", ")
                ),
            ));
        }
        let own = self.maintenance_db();
        let target = opts.target.clone().unwrap_or_else(|| own.clone());
        if opts.target.is_some() {
            self.check_new_target(&target, &own).await?;
        }
        let kind = legacy_sql_kind(file).await?;
        let mut report = RestoreReport::default();
        if let Some(w) = kind {
            report.warnings.push(w);
        }
        if opts.dry_run {
            report.actions.push(format!(
                "replace database `{target}` with runbook SQL dump `{}`, loaded with psql in one transaction into a scratch database and swapped in",
                file.display()
            ));
            return Ok(report);
        }
        let client = self.connect(&own).await.map_err(&err)?;
        let (_, tools) = self.tools_for(&client).await.map_err(&err)?;
        let like = catalog::databases(&client)
            .await
            .map_err(&err)?
            .into_iter()
            .find(|d| d.name == target);
        // The runbook's dump has no database-level properties (no `--create`): keep those of
        // the database it replaces.
        let props = match &like {
            Some(_) => Some(catalog::db_props(&client, &target).await.map_err(&err)?),
            None => None,
        };
        drop(client);
        cx.progress()
            .set_phase(format!("psql {LEGACY_SQL} into {target}"));
        let tools = &tools;
        let err_ref = &err;
        let live = self
            .via_scratch(
                cx,
                &target,
                like.as_ref(),
                &mut report,
                move |scratch| async move {
                    let mut cmd = self.tool(tools, "psql", &scratch);
                    cmd.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction"])
                        .arg("--output=/dev/null")
                        .arg("--file");
                    let what = format!("psql of `{}`", file.display());
                    if cmd.in_container() {
                        // The container cannot see the host's file: stream it in.
                        cmd.arg("-");
                        let f = tokio::fs::File::open(file)
                            .await
                            .map_err(|e| Error::io("open", file, e))?;
                        cmd.stdin_from(f, &what).await?;
                    } else {
                        cmd.arg(file);
                        cmd.output(&what).await?;
                    }
                    let client = self.connect(&scratch).await.map_err(err_ref)?;
                    catalog::counts(&client, &scratch).await.map_err(err_ref)
                },
            )
            .await?;
        if let Some(props) = &props {
            self.apply_props(&target, props, &mut report).await?;
        }
        report.actions.push(format!(
            "restored database `{target}` from runbook SQL dump `{}`: {} tables, {} rows, {} sequences, {} large objects",
            file.display(),
            live.tables.len(),
            live.rows(),
            live.sequences.len(),
            live.large_objects
        ));
        report
            .stats
            .insert(format!("rows.{target}"), live.rows().into());
        Ok(report)
    }

    async fn restore(
        &self,
        cx: &RestoreContext,
        record: &ComponentRecord,
        opts: &RestoreOptions,
    ) -> Result<RestoreReport> {
        let err = self.err("restore");
        let details: Details = record.details()?;
        let mut selected: Vec<&DbRecord> = details.databases.iter().collect();
        if !opts.items.is_empty() {
            for i in &opts.items {
                if !details.databases.iter().any(|d| &d.info.name == i) {
                    return Err(Error::config(
                        format!("restore of `{}`", self.name),
                        format!(
                            "the backup has no database `{i}`; it has: {}",
                            details
                                .databases
                                .iter()
                                .map(|d| d.info.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ));
                }
            }
            selected.retain(|d| opts.items.contains(&d.info.name));
        }
        if opts.target.is_some() && selected.len() != 1 {
            return Err(Error::config(
                format!("restore of `{}`", self.name),
                format!(
                    "a target database needs exactly one database to restore, {} selected; choose one with --only {}/DATABASE",
                    selected.len(),
                    self.name
                ),
            ));
        }
        let target_of = |d: &DbRecord| opts.target.clone().unwrap_or_else(|| d.info.name.clone());
        if let (Some(t), Some(d)) = (&opts.target, selected.first()) {
            self.check_new_target(t, &d.info.name).await?;
        }
        let mut report = RestoreReport::default();
        if opts.dry_run {
            if details.globals.is_some() {
                report.actions.push("apply roles and tablespaces (pg_dumpall --globals-only), keeping existing roles".into());
            }
            for d in &selected {
                report.actions.push(format!(
                    "replace database `{}` with the dump of `{}` ({} tables, {} rows, {} large objects), restored beside it and swapped in after its row counts match",
                    target_of(d),
                    d.info.name,
                    d.counts.tables.len(),
                    d.counts.rows(),
                    d.counts.large_objects
                ));
            }
            return Ok(report);
        }
        let client = self.connect(&self.maintenance_db()).await.map_err(&err)?;
        let (_, tools) = self.tools_for(&client).await.map_err(&err)?;
        drop(client);
        if let Some(g) = &details.globals {
            cx.progress().set_phase("creating missing roles");
            self.apply_roles(cx, record, &tools, g, &mut report).await?;
        }
        for d in selected {
            self.restore_db(cx, record, &tools, d, &target_of(d), &mut report)
                .await?;
        }
        Ok(report)
    }
}

/// A transaction that holds an exported snapshot of one database.
struct OpenSnapshot {
    client: tokio_postgres::Client,
    snapshot: String,
    wal_lsn: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_names_fit() {
        let long = "x".repeat(63);
        assert!(scratch_name(&long).len() <= 63);
        assert_eq!(scratch_name("amber"), "amber__amber_dr_restore");
    }

    #[test]
    fn conninfo_quotes() {
        assert_eq!(conninfo_dbname("a'b\\c"), "dbname='a\\'b\\\\c'");
    }

    #[test]
    fn bad_url_is_a_config_error() {
        let e = Postgres::new("pg", PostgresConfig::new("postgres://u:pw@h:notaport/db"))
            .expect_err("bad");
        assert!(e.is_usage(), "{e}");
        assert!(!e.to_string().contains(":pw@"), "{e}");
    }
}

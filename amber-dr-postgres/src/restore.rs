//! Restore of an amber-dr snapshot: the backup's roles brought back as they were (missing ones
//! created, existing ones reset; passwords of existing roles kept by default), then each
//! selected database restored beside the live one, compared with the record's counts and
//! swapped in.

use amber_dr_core::{
    ComponentRecord, Error, RestoreContext, RestoreOptions, RestoreReport, Result,
};

use crate::catalog;
use crate::component::Postgres;
use crate::error::PgError;
use crate::record::{DbRecord, Details};
use crate::roles::{plan_roles, ServerRoles, MAX_GLOBALS};
use crate::scratch::conninfo_dbname;
use crate::sequences;
use crate::tools::Tools;

/// A database loaded into its scratch database and checked, waiting for its swap.
#[derive(Debug)]
pub(crate) struct LoadedDb {
    /// The database it replaces.
    pub(crate) target: String,
    rec: DbRecord,
    live: catalog::Counts,
}

impl Postgres {
    /// Bring the backup's roles back as they were (see [`plan_roles`]): missing ones created,
    /// existing ones set to their backed-up attributes, memberships and settings (passwords
    /// kept unless `restore_role_passwords`). The report says what changed, per role.
    async fn apply_roles(
        &self,
        cx: &RestoreContext,
        record: &ComponentRecord,
        tools: &Tools,
        globals: &str,
        report: &mut RestoreReport,
    ) -> Result<()> {
        let text = self.read_globals(cx, record, globals).await?;
        self.apply_roles_text(&text, tools, report).await
    }

    /// The text of the backup's `globals.sql` (roles and tablespaces), read whole (bounded).
    pub(crate) async fn read_globals(
        &self,
        cx: &RestoreContext,
        record: &ComponentRecord,
        globals: &str,
    ) -> Result<String> {
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
        Ok(String::from_utf8_lossy(&text).into_owned())
    }

    /// Apply a `globals.sql` text the way [`Self::apply_roles`] does.
    pub(crate) async fn apply_roles_text(
        &self,
        text: &str,
        tools: &Tools,
        report: &mut RestoreReport,
    ) -> Result<()> {
        let err = self.err("restore");
        let db = self.maintenance_db();
        let client = self.connect(&db).await.map_err(&err)?;
        let q = |what: &'static str| catalog::q(&db, what);
        let mut now = ServerRoles::default();
        for r in client
            .query(
                "SELECT rolname, rolvaliduntil IS NOT NULL FROM pg_roles",
                &[],
            )
            .await
            .map_err(q("list roles"))
            .map_err(&err)?
        {
            let name: String = r.get(0);
            if r.get::<_, bool>(1) {
                now.expiring.insert(name.clone());
            }
            now.existing.insert(name);
        }
        now.members = client
            .query(
                "SELECT g.rolname, m.rolname FROM pg_auth_members a \
                 JOIN pg_roles g ON g.oid = a.roleid JOIN pg_roles m ON m.oid = a.member",
                &[],
            )
            .await
            .map_err(q("list role memberships"))
            .map_err(&err)?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let plan = plan_roles(text, &now, self.config.restore_role_passwords);
        let before = role_states(&client, &plan.reset)
            .await
            .map_err(q("read roles"))
            .map_err(&err)?;
        let mut cmd = self.tool(tools, "psql", &db);
        cmd.args(["-X", "-q", "-v", "ON_ERROR_STOP=0", "-f", "-"]);
        let stderr = cmd.stdin_from(plan.sql.as_bytes(), "psql (roles)").await?;
        let errors: Vec<&str> = stderr
            .lines()
            .filter(|l| l.contains("ERROR") && !l.contains("already exists"))
            .collect();
        if !errors.is_empty() {
            report
                .warnings
                .push(format!("roles: {}", errors.join("; ")));
        }
        let after = role_states(&client, &plan.reset)
            .await
            .map_err(q("read roles"))
            .map_err(&err)?;
        if !plan.created.is_empty() {
            report.actions.push(format!(
                "created missing roles (backed-up attributes and passwords): {}",
                plan.created.join(", ")
            ));
        }
        let mut unchanged = 0;
        for role in &plan.reset {
            let (Some(b), Some(a)) = (before.get(role), after.get(role)) else {
                continue;
            };
            let changes: Vec<String> = ROLE_FIELDS
                .iter()
                .zip(b.iter().zip(a))
                .filter(|(_, (b, a))| b != a)
                .map(|(field, (b, a))| format!("{field} {a} (was {b})"))
                .collect();
            if changes.is_empty() {
                unchanged += 1;
            } else {
                report
                    .actions
                    .push(format!("role `{role}` reset: {}", changes.join(", ")));
            }
        }
        if !plan.reset.is_empty() {
            report.actions.push(format!(
                "{unchanged} of {} existing roles already as backed up; passwords of existing roles {}",
                plan.reset.len(),
                if self.config.restore_role_passwords {
                    "set to the backed-up ones (restore_role_passwords)"
                } else {
                    "kept as they are now"
                }
            ));
        }
        Ok(())
    }

    /// A target override restores beside the live databases, never over one of them: it must
    /// name a database that does not exist yet (or the backed-up database itself, which is an
    /// ordinary restore), and never a template.
    pub(crate) async fn check_new_target(&self, target: &str, source: &str) -> Result<()> {
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
    pub(crate) async fn apply_props(
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
        let loaded = self.load_db(cx, record, tools, rec, target, report).await?;
        self.swap_db(cx.progress(), loaded, report).await
    }

    /// The first half of [`Self::restore_db`]: the dump loaded into the scratch database of
    /// `target` and compared with the record. The live database is not touched.
    pub(crate) async fn load_db(
        &self,
        cx: &RestoreContext,
        record: &ComponentRecord,
        tools: &Tools,
        rec: &DbRecord,
        target: &str,
        report: &mut RestoreReport,
    ) -> Result<LoadedDb> {
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
            .build_scratch(target, Some(&rec.info), report, move |scratch| async move {
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
            })
            .await?;
        report.warnings.extend(notes);
        Ok(LoadedDb {
            target: target.to_string(),
            rec: rec.clone(),
            live,
        })
    }

    /// The second half of [`Self::restore_db`]: the loaded scratch database swapped in, the
    /// database-level properties applied.
    pub(crate) async fn swap_db(
        &self,
        progress: &amber_dr_core::Progress,
        loaded: LoadedDb,
        report: &mut RestoreReport,
    ) -> Result<()> {
        let LoadedDb { target, rec, live } = loaded;
        self.swap_scratch(progress, &target, report).await?;
        self.apply_props(&target, &rec.props, report).await?;
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
        progress.add_items(1);
        Ok(())
    }

    /// The databases of `details` a restore with `opts` restores (checked against the backup;
    /// a target needs exactly one).
    pub(crate) fn select_dbs<'d>(
        &self,
        details: &'d Details,
        opts: &RestoreOptions,
    ) -> Result<Vec<&'d DbRecord>> {
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
        Ok(selected)
    }

    /// Restore a snapshot's record (see the module docs).
    pub(crate) async fn restore_record(
        &self,
        cx: &RestoreContext,
        record: &ComponentRecord,
        opts: &RestoreOptions,
    ) -> Result<RestoreReport> {
        let err = self.err("restore");
        let details: Details = record.details()?;
        let selected = self.select_dbs(&details, opts)?;
        let target_of = |d: &DbRecord| opts.target.clone().unwrap_or_else(|| d.info.name.clone());
        if let (Some(t), Some(d)) = (&opts.target, selected.first()) {
            self.check_new_target(t, &d.info.name).await?;
        }
        let mut report = RestoreReport::default();
        if opts.dry_run {
            if details.globals.is_some() {
                report.actions.push(format!(
                    "apply roles and tablespaces (pg_dumpall --globals-only): missing roles created, existing ones set back to their backed-up attributes, memberships and settings (passwords {})",
                    if self.config.restore_role_passwords { "too" } else { "kept" }
                ));
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
        if let Some(g) = details.globals.as_ref().filter(|_| !opts.scratch) {
            cx.progress().set_phase("restoring roles");
            self.apply_roles(cx, record, &tools, g, &mut report).await?;
        }
        for d in selected {
            self.restore_db(cx, record, &tools, d, &target_of(d), &mut report)
                .await?;
        }
        Ok(report)
    }
}

/// What a role reset reports, one value per field of [`role_states`].
const ROLE_FIELDS: [&str; 10] = [
    "superuser",
    "inherit",
    "createrole",
    "createdb",
    "login",
    "replication",
    "bypassrls",
    "connection limit",
    "valid until",
    "settings/memberships",
];

/// The attributes, settings and memberships of `roles` (never their passwords), by name.
async fn role_states(
    client: &tokio_postgres::Client,
    roles: &[String],
) -> std::result::Result<std::collections::HashMap<String, Vec<String>>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT r.rolname, r.rolsuper::text, r.rolinherit::text, r.rolcreaterole::text, \
             r.rolcreatedb::text, r.rolcanlogin::text, r.rolreplication::text, r.rolbypassrls::text, \
             r.rolconnlimit::text, coalesce(r.rolvaliduntil::text, 'none'), \
             'settings [' || coalesce(array_to_string(r.rolconfig, ','), '') || '] member of [' || \
             coalesce((SELECT string_agg(g.rolname, ',' ORDER BY g.rolname) FROM pg_auth_members a \
               JOIN pg_roles g ON g.oid = a.roleid WHERE a.member = r.oid), '') || ']' \
             FROM pg_roles r WHERE r.rolname = ANY($1)",
            &[&roles],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let name: String = r.get(0);
            (name, (1..=10).map(|i| r.get::<_, String>(i)).collect())
        })
        .collect())
}

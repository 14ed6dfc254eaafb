//! The runbook's `postgres.sql`: a plain `pg_dump` of one database, loaded with `psql` into a
//! scratch database and swapped in.

use amber_dr_core::{Error, RestoreContext, RestoreOptions, RestoreReport, Result};

use crate::catalog;
use crate::component::Postgres;
use crate::roles::legacy_sql_kind;

/// The runbook's plain-SQL dump of the application database.
pub(crate) use crate::RUNBOOK_FILE as LEGACY_SQL;

impl Postgres {
    /// The runbook's `postgres.sql` (plain `pg_dump` of one database): loaded with
    /// `psql --single-transaction -v ON_ERROR_STOP=1` into a scratch database created like the
    /// live one, then swapped in under the URL's database name (or `--target`); the live
    /// database's comment, privileges and settings (not in such a dump) are kept. Any SQL error
    /// drops the scratch database and leaves the live one untouched. A `pg_dumpall` file is
    /// refused: it would recreate roles and every database at once.
    pub(crate) async fn restore_runbook_sql(
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
}

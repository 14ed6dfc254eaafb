//! Verify: `quick` checks the artifacts' presence and sizes; `full` reads every byte (hash
//! checked) and has `pg_restore` decode every dump, streamed.

use amber_dr_core::{ComponentRecord, Result, VerifyContext, VerifyLevel, VerifyReport};

use crate::component::Postgres;
use crate::record::Details;

impl Postgres {
    /// Verify a snapshot's record (see the module docs).
    pub(crate) async fn verify_dumps(
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
}

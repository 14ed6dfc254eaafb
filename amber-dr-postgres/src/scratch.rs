//! The scratch-database swap every restore goes through: the dump is loaded into a new
//! database beside the target, checked, and only then renamed into the target's place.

use amber_dr_core::{RestoreContext, RestoreReport, Result};

use crate::catalog::{self, ident};
use crate::component::Postgres;
use crate::error::PgError;

impl Postgres {
    /// Restore into a scratch database beside `target` (created like `like`, or with the
    /// server's defaults), let `fill` load and check it, then swap it in under `target`'s
    /// name. The live database is untouched until the swap; a failed `fill` drops the scratch
    /// database. Refuses when a database set aside by an interrupted swap exists.
    pub(crate) async fn via_scratch<T, F, Fut>(
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
        let value = self.build_scratch(target, like, report, fill).await?;
        self.swap_scratch(cx.progress(), target, report).await?;
        Ok(value)
    }

    /// The first half of [`Self::via_scratch`]: the scratch database of `target` created and
    /// filled by `fill` (dropped if that fails). The live database is not touched.
    pub(crate) async fn build_scratch<T, F, Fut>(
        &self,
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
        let admin = Admin::connect(self, &maint).await?;
        let exec = |sql: String| admin.exec(sql);
        // A database set aside by an interrupted swap may be the only copy of the old data:
        // never drop it here.
        if admin
            .client
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
            .client
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
        match result {
            Ok(l) => Ok(l),
            Err(e) => {
                let _ = exec(format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    ident(&scratch)
                ))
                .await;
                Err(e)
            }
        }
    }

    /// Drop the scratch database of `target` (a staged restore discarded).
    pub(crate) async fn drop_scratch(&self, target: &str) -> Result<()> {
        let err = self.err("restore");
        let scratch = scratch_name(target);
        let maint = self.admin_db(&[target, &scratch]);
        let admin = Admin::connect(self, &maint).await?;
        admin
            .exec(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                ident(&scratch)
            ))
            .await
            .map_err(&err)
    }

    /// The second half of [`Self::via_scratch`]: the filled scratch database of `target`
    /// renamed into its place (the old one renamed aside, then dropped).
    pub(crate) async fn swap_scratch(
        &self,
        progress: &amber_dr_core::Progress,
        target: &str,
        report: &mut RestoreReport,
    ) -> Result<()> {
        let err = self.err("restore");
        let scratch = scratch_name(target);
        let old = format!("{scratch}_old");
        let maint = self.admin_db(&[target, &scratch, &old]);
        let admin = Admin::connect(self, &maint).await?;
        let exec = |sql: String| admin.exec(sql);
        // Swap: the scratch database takes the target's name.
        progress.set_phase(format!("swapping {target} in"));
        let exists = admin
            .client
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
                    .client
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
        Ok(())
    }
}

/// A scratch database name derived from the target, within Postgres's 63-byte limit.
/// A connection to the database the scratch databases are administered from (one that is not
/// being renamed).
pub(crate) struct Admin {
    client: tokio_postgres::Client,
    db: String,
}

impl Admin {
    pub(crate) async fn connect(pg: &Postgres, db: &str) -> Result<Self> {
        let client = pg.connect(db).await.map_err(pg.err("restore"))?;
        Ok(Self {
            client,
            db: db.to_string(),
        })
    }

    /// Run `sql` (statements that return nothing).
    pub(crate) async fn exec(&self, sql: String) -> std::result::Result<(), crate::error::PgError> {
        self.client
            .batch_execute(&sql)
            .await
            .map_err(catalog::q(&self.db, &sql))
    }
}

pub(crate) fn scratch_name(target: &str) -> String {
    let mut base: String = target.chars().take(40).collect();
    while base.len() > 40 {
        base.pop();
    }
    format!("{base}__amber_dr_restore")
}

/// `dbname='...'` for a conninfo string.
pub(crate) fn conninfo_dbname(db: &str) -> String {
    format!("dbname='{}'", db.replace('\\', "\\\\").replace('\'', "\\'"))
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
}

//! The prepare phase of a restore (see [`amber_dr_core::Component::stage`]): every selected
//! database is loaded into its scratch database beside the live one and compared with the
//! record — the single read of its dump. The commit then only applies the backup's roles and
//! renames the scratch databases into place: the downtime of a Postgres restore is the swap.
//!
//! Staged only when every role of the backup exists on the server already (the scratch
//! databases are restored with their owners and grants); otherwise the restore is not staged:
//! the commit creates the missing roles first, then loads and swaps as before.

use std::collections::HashSet;

use amber_dr_core::{
    async_trait, ComponentRecord, Progress, RestoreContext, RestoreOptions, RestoreReport, Result,
    StagedRestore,
};

use crate::catalog;
use crate::component::Postgres;
use crate::record::{DbRecord, Details};
use crate::restore::LoadedDb;
use crate::roles::backed_up_roles;
use crate::tools::Tools;

impl Postgres {
    /// Stage a restore of `record` (see the module docs); `None` when it cannot be staged.
    pub(crate) async fn stage_record(
        &self,
        cx: &RestoreContext,
        record: &ComponentRecord,
        opts: &RestoreOptions,
    ) -> Result<Option<Box<dyn StagedRestore>>> {
        if opts.dry_run {
            return Ok(None);
        }
        let err = self.err("restore");
        let details: Details = record.details()?;
        let selected = self.select_dbs(&details, opts)?;
        let target_of = |d: &DbRecord| opts.target.clone().unwrap_or_else(|| d.info.name.clone());
        if let (Some(t), Some(d)) = (&opts.target, selected.first()) {
            self.check_new_target(t, &d.info.name).await?;
        }
        let db = self.maintenance_db();
        let client = self.connect(&db).await.map_err(&err)?;
        let (_, tools) = self.tools_for(&client).await.map_err(&err)?;
        let globals = match &details.globals {
            Some(g) => Some(self.read_globals(cx, record, g).await?),
            None => None,
        };
        // A drill reads and checks the roles, and leaves the cluster's alone.
        let globals = globals.filter(|_| !opts.scratch);
        if let Some(text) = &globals {
            let existing: HashSet<String> = client
                .query("SELECT rolname FROM pg_roles", &[])
                .await
                .map_err(catalog::q(&db, "list roles"))
                .map_err(&err)?
                .iter()
                .map(|r| r.get(0))
                .collect();
            if backed_up_roles(text).iter().any(|r| !existing.contains(r)) {
                return Ok(None);
            }
        }
        drop(client);
        let mut staged = StagedDbs {
            pg: self.clone(),
            globals,
            tools,
            loaded: Vec::new(),
            report: RestoreReport::default(),
            progress: cx.progress().clone(),
        };
        for d in selected {
            let target = target_of(d);
            match self
                .load_db(cx, record, &staged.tools, d, &target, &mut staged.report)
                .await
            {
                Ok(loaded) => staged.loaded.push(loaded),
                Err(e) => {
                    staged.drop_scratches().await;
                    return Err(e);
                }
            }
        }
        Ok(Some(Box::new(staged)))
    }
}

/// Databases loaded into their scratch databases, and the roles to apply, waiting for the
/// commit. Discarded or dropped, the scratch databases are dropped.
struct StagedDbs {
    pg: Postgres,
    globals: Option<String>,
    tools: Tools,
    loaded: Vec<LoadedDb>,
    report: RestoreReport,
    progress: Progress,
}

impl StagedDbs {
    async fn drop_scratches(&mut self) {
        for l in std::mem::take(&mut self.loaded) {
            if let Err(e) = self.pg.drop_scratch(&l.target).await {
                tracing::warn!(database = %l.target, error = %e, "could not drop a scratch database");
            }
        }
    }
}

#[async_trait]
impl StagedRestore for StagedDbs {
    async fn commit(mut self: Box<Self>) -> Result<RestoreReport> {
        let mut report = std::mem::take(&mut self.report);
        if let Some(text) = self.globals.take() {
            self.progress.set_phase("restoring roles");
            if let Err(e) = self
                .pg
                .apply_roles_text(&text, &self.tools, &mut report)
                .await
            {
                self.drop_scratches().await;
                return Err(e);
            }
        }
        while !self.loaded.is_empty() {
            let loaded = self.loaded.remove(0);
            if let Err(e) = self.pg.swap_db(&self.progress, loaded, &mut report).await {
                self.drop_scratches().await;
                return Err(e);
            }
        }
        Ok(report)
    }

    async fn discard(mut self: Box<Self>) {
        self.drop_scratches().await;
    }
}

impl Drop for StagedDbs {
    fn drop(&mut self) {
        // Dropped without commit or discard (a cancelled run): drop the scratch databases in
        // the background; a restore that finds one later drops it too.
        let loaded = std::mem::take(&mut self.loaded);
        if loaded.is_empty() {
            return;
        }
        let pg = self.pg.clone();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                for l in loaded {
                    let _ = pg.drop_scratch(&l.target).await;
                }
            });
        }
    }
}

//! Backup: roles and tablespaces (`pg_dumpall --globals-only`), then every selected database
//! dumped (`pg_dump -Fc`) in a snapshot exported before any dump starts, counted exactly in
//! that same snapshot while the dump streams.

use amber_dr_core::{ComponentRecord, Error, Result, SnapshotContext, SnapshotPurpose};

use crate::catalog::{self, DbInfo};
use crate::component::Postgres;
use crate::record::{DbRecord, Details, GLOBALS};
use crate::sequences;
use crate::tools::Tools;

impl Postgres {
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
    ) -> Result<(DbRecord, Vec<amber_dr_core::ArtifactRecord>)> {
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
        // Counted, and the references' keys queried, in the same snapshot while pg_dump
        // streams.
        let in_snapshot = async {
            let counts = catalog::counts(&client, &db).await.map_err(&err)?;
            let mut keys = Vec::new();
            for q in cx.key_queries() {
                if q.set.database.as_deref() == Some(db.as_str()) {
                    keys.push(self.write_keys(cx, &client, &db, q).await?);
                }
            }
            Ok::<_, Error>((counts, keys))
        };
        let (dump, in_snapshot) = tokio::join!(dump, in_snapshot);
        let (art, dumped) = dump?;
        let (mut counts, keys) = in_snapshot?;
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
            std::iter::once(art).chain(keys).collect(),
        ))
    }

    /// Snapshot every selected database (see the module docs).
    pub(crate) async fn take_snapshot(&self, cx: &SnapshotContext) -> Result<ComponentRecord> {
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

        // Every reference query runs in a database being dumped.
        for q in cx.key_queries() {
            let db = self.key_database(&q.set, &q.reference)?;
            if !dbs.iter().any(|d| d.name == db) {
                return Err(Error::config(
                    format!("references: {}", q.reference),
                    format!(
                        "its query runs in database `{db}` of `{}`, which this backup does not dump",
                        self.name
                    ),
                ));
            }
        }

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
            rec.artifacts.extend(art);
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

/// A transaction that holds an exported snapshot of one database.
struct OpenSnapshot {
    client: tokio_postgres::Client,
    snapshot: String,
    wal_lsn: Option<String>,
}

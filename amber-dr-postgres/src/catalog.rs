//! SQL against the server: connecting, listing databases, exact counts, database properties.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tokio_postgres::{Client, Config};

use crate::error::PgError;

/// Quote an identifier for SQL.
pub(crate) fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Quote a string literal for SQL.
pub(crate) fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Connect to `db` with the settings of `base`, bounded by `timeout`.
pub(crate) async fn connect(
    base: &Config,
    tls: &crate::connect::Tls,
    db: &str,
    url_for_messages: &str,
    timeout: std::time::Duration,
) -> Result<Client, PgError> {
    let mut cfg = base.clone();
    cfg.dbname(db).connect_timeout(timeout);
    if cfg.get_application_name().is_none() {
        cfg.application_name("amber-dr");
    }
    let fut = cfg.connect(tls.clone());
    let (client, conn) =
        match tokio::time::timeout(timeout + std::time::Duration::from_secs(1), fut).await {
            Ok(Ok(x)) => x,
            Ok(Err(source)) => {
                return Err(PgError::Connect {
                    url: format!("{url_for_messages} (database `{db}`)"),
                    source,
                })
            }
            Err(_) => {
                return Err(PgError::ConnectTimeout {
                    url: url_for_messages.to_string(),
                    secs: timeout.as_secs(),
                })
            }
        };
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "postgres connection closed");
        }
    });
    Ok(client)
}

pub(crate) fn q(db: &str, what: &str) -> impl FnOnce(tokio_postgres::Error) -> PgError {
    let (db, what) = (db.to_string(), what.to_string());
    move |source| PgError::Query { db, what, source }
}

/// A database as listed in `pg_database`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct DbInfo {
    pub name: String,
    pub owner: String,
    pub encoding: String,
    pub collate: String,
    pub ctype: String,
    pub size: i64,
    /// `c` (libc) or `i` (ICU), PostgreSQL 15+.
    #[serde(default)]
    pub locale_provider: Option<String>,
    /// The ICU locale when the provider is ICU.
    #[serde(default)]
    pub icu_locale: Option<String>,
}

pub(crate) async fn server_version(c: &Client) -> Result<(u32, String), PgError> {
    let row = c
        .query_one(
            "SELECT current_setting('server_version_num')::int, current_setting('server_version')",
            &[],
        )
        .await
        .map_err(q("", "server version"))?;
    let num: i32 = row.get(0);
    let major = u32::try_from(num / 10000).unwrap_or(0);
    Ok((major, row.get(1)))
}

pub(crate) async fn databases(c: &Client) -> Result<Vec<DbInfo>, PgError> {
    let rows = c
        .query(
            "SELECT d.datname, pg_get_userbyid(d.datdba), pg_encoding_to_char(d.encoding), \
             d.datcollate::text, d.datctype::text, pg_database_size(d.oid), \
             to_jsonb(d) ->> 'datlocprovider', to_jsonb(d) ->> 'daticulocale' \
             FROM pg_database d WHERE NOT d.datistemplate AND d.datallowconn \
             AND d.datname NOT LIKE '%\\_\\_amber\\_dr\\_%' ORDER BY 1",
            &[],
        )
        .await
        .map_err(q("", "list databases"))?;
    Ok(rows
        .iter()
        .map(|r| DbInfo {
            name: r.get(0),
            owner: r.get(1),
            encoding: r.get(2),
            collate: r.get(3),
            ctype: r.get(4),
            size: r.get(5),
            locale_provider: r.get(6),
            icu_locale: r.get(7),
        })
        .collect())
}

/// What restore compares: exact rows of every table, sequence positions, large objects.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Counts {
    /// `schema.table` → rows (partitions counted each on their own, `ONLY`).
    pub tables: BTreeMap<String, i64>,
    /// `schema.sequence` → last value (None if never used).
    pub sequences: BTreeMap<String, Option<i64>>,
    pub large_objects: i64,
}

impl Counts {
    pub(crate) fn rows(&self) -> i64 {
        self.tables.values().sum()
    }

    /// A human description of how `self` (live) differs from `want` (the record).
    pub(crate) fn diff(&self, want: &Counts) -> Option<String> {
        let mut out = Vec::new();
        for (t, n) in &want.tables {
            match self.tables.get(t) {
                Some(m) if m == n => {}
                Some(m) => out.push(format!("table {t}: {m} rows, expected {n}")),
                None => out.push(format!("table {t} is missing")),
            }
        }
        for t in self.tables.keys().filter(|t| !want.tables.contains_key(*t)) {
            out.push(format!("unexpected table {t}"));
        }
        for (s, v) in &want.sequences {
            if self.sequences.get(s) != Some(v) {
                out.push(format!(
                    "sequence {s}: {:?}, expected {v:?}",
                    self.sequences.get(s)
                ));
            }
        }
        if self.large_objects != want.large_objects {
            out.push(format!(
                "{} large objects, expected {}",
                self.large_objects, want.large_objects
            ));
        }
        if out.is_empty() {
            None
        } else {
            out.truncate(20);
            Some(out.join("; "))
        }
    }
}

/// Exact counts, in the caller's transaction (so in its snapshot).
pub(crate) async fn counts(c: &Client, db: &str) -> Result<Counts, PgError> {
    let tables = c
        .query(
            "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
             AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%' ORDER BY 1, 2",
            &[],
        )
        .await
        .map_err(q(db, "list tables"))?;
    let mut out = Counts::default();
    for r in tables {
        let (schema, table): (String, String) = (r.get(0), r.get(1));
        let sql = format!(
            "SELECT count(*) FROM ONLY {}.{}",
            ident(&schema),
            ident(&table)
        );
        let n: i64 = c
            .query_one(&sql, &[])
            .await
            .map_err(q(db, &format!("count rows of {schema}.{table}")))?
            .get(0);
        out.tables.insert(format!("{schema}.{table}"), n);
    }
    for r in c
        .query(
            "SELECT schemaname, sequencename, last_value FROM pg_sequences ORDER BY 1, 2",
            &[],
        )
        .await
        .map_err(q(db, "list sequences"))?
    {
        let (s, n, v): (String, String, Option<i64>) = (r.get(0), r.get(1), r.get(2));
        out.sequences.insert(format!("{s}.{n}"), v);
    }
    out.large_objects = c
        .query_one("SELECT count(*) FROM pg_largeobject_metadata", &[])
        .await
        .map_err(q(db, "count large objects"))?
        .get(0);
    Ok(out)
}

/// Database-level properties that a dump without `--create` does not carry.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct DbProps {
    pub comment: Option<String>,
    /// `None`: default privileges. Otherwise (grantee or "" for PUBLIC, privilege, grantable).
    pub acl: Option<Vec<(String, String, bool)>>,
    /// `name=value` settings of `ALTER DATABASE ... SET`.
    pub settings: Vec<String>,
}

pub(crate) async fn db_props(c: &Client, db: &str) -> Result<DbProps, PgError> {
    let row = c
        .query_one(
            "SELECT shobj_description(d.oid, 'pg_database'), d.datacl IS NULL, \
             (SELECT setconfig FROM pg_db_role_setting s WHERE s.setdatabase = d.oid AND s.setrole = 0) \
             FROM pg_database d WHERE d.datname = $1",
            &[&db],
        )
        .await
        .map_err(q(db, "database properties"))?;
    let default_acl: bool = row.get(1);
    let acl = if default_acl {
        None
    } else {
        let rows = c
            .query(
                "SELECT CASE WHEN a.grantee = 0 THEN '' ELSE pg_get_userbyid(a.grantee) END, a.privilege_type, a.is_grantable \
                 FROM pg_database d, aclexplode(d.datacl) a WHERE d.datname = $1",
                &[&db],
            )
            .await
            .map_err(q(db, "database privileges"))?;
        Some(
            rows.iter()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect(),
        )
    };
    Ok(DbProps {
        comment: row.get(0),
        acl,
        settings: row.get::<_, Option<Vec<String>>>(2).unwrap_or_default(),
    })
}

/// SQL that gives database `db` the recorded properties.
pub(crate) fn props_sql(db: &str, p: &DbProps) -> Vec<String> {
    let d = ident(db);
    let mut out = Vec::new();
    if let Some(c) = &p.comment {
        out.push(format!("COMMENT ON DATABASE {d} IS {}", literal(c)));
    }
    if let Some(acl) = &p.acl {
        out.push(format!("REVOKE ALL ON DATABASE {d} FROM PUBLIC"));
        for (grantee, privilege, grantable) in acl {
            let to = if grantee.is_empty() {
                "PUBLIC".to_string()
            } else {
                ident(grantee)
            };
            out.push(format!(
                "GRANT {privilege} ON DATABASE {d} TO {to}{}",
                if *grantable { " WITH GRANT OPTION" } else { "" }
            ));
        }
    }
    for s in &p.settings {
        if let Some((k, v)) = s.split_once('=') {
            // List-valued settings (search_path) keep their own quoting.
            let value = if k == "search_path" {
                v.to_string()
            } else {
                literal(v)
            };
            out.push(format!("ALTER DATABASE {d} SET {} TO {value}", ident(k)));
        }
    }
    out
}

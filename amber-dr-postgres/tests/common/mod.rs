//! The real Postgres of `scripts/stack.sh`, reached with psql — independently of the driver.
#![allow(dead_code, missing_docs, clippy::unwrap_used)]

use std::process::Command;

use amber_dr_core::testkit;

pub const DATA_SQL: &str = include_str!("data.sql");
pub const FINGERPRINT_SQL: &str = include_str!("fingerprint.sql");

#[derive(Clone, Debug)]
pub struct Pg {
    pub host: String,
    pub port: String,
    pub password: String,
    pub bindir: String,
}

impl Pg {
    /// The stack's Postgres, or `None` (skip, or panic under AMBER_DR_REQUIRE_SERVICES=1).
    pub fn from_env() -> Option<Pg> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let pg = match (
            var("AMBER_DR_PG_HOST"),
            var("AMBER_DR_PG_PORT"),
            var("AMBER_DR_PG_PASSWORD"),
            var("AMBER_DR_PG_BINDIR"),
        ) {
            (Some(host), Some(port), Some(password), Some(bindir)) => Pg {
                host,
                port,
                password,
                bindir,
            },
            _ => {
                testkit::service_missing("Postgres (AMBER_DR_PG_* from scripts/stack.sh)");
                return None;
            }
        };
        if pg.try_psql("postgres", "SELECT 1").is_err() {
            testkit::service_missing(&format!("Postgres at {}:{}", pg.host, pg.port));
            return None;
        }
        Some(pg)
    }

    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://postgres:{}@{}:{}/{db}",
            self.password, self.host, self.port
        )
    }

    pub fn cmd(&self, tool: &str, db: &str) -> Command {
        let mut c = Command::new(format!("{}/{tool}", self.bindir));
        c.env("PGHOST", &self.host)
            .env("PGPORT", &self.port)
            .env("PGUSER", "postgres")
            .env("PGPASSWORD", &self.password)
            .env("PGDATABASE", db);
        c
    }

    pub fn try_psql(&self, db: &str, sql: &str) -> Result<String, String> {
        let out = self
            .cmd("psql", db)
            .args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub fn psql(&self, db: &str, sql: &str) -> String {
        self.try_psql(db, sql)
            .unwrap_or_else(|e| panic!("psql on {db} failed: {e}\nSQL: {sql}"))
    }

    /// Run a script file's text in one transaction.
    pub fn script(&self, db: &str, sql: &str) {
        let mut child = self
            .cmd("psql", db)
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-1", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(sql.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "script failed on {db}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn recreate(&self, db: &str) {
        self.psql(
            "postgres",
            &format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"),
        );
        self.psql("postgres", &format!("CREATE DATABASE \"{db}\""));
    }

    pub fn populate(&self, db: &str) {
        self.recreate(db);
        self.script(db, DATA_SQL);
        // Database-level properties (not in a dump without --create): the driver re-applies
        // them.
        for sql in [
            format!("COMMENT ON DATABASE \"{db}\" IS 'the {db} database'"),
            format!("ALTER DATABASE \"{db}\" OWNER TO amber_app"),
            format!("ALTER DATABASE \"{db}\" SET work_mem TO '3MB'"),
            format!("GRANT CREATE ON DATABASE \"{db}\" TO amber_readonly"),
        ] {
            self.psql("postgres", &sql);
        }
    }

    pub fn destroy(&self, db: &str) {
        self.script(
            db,
            "DELETE FROM app.users WHERE email LIKE 'user1%'; \
             UPDATE app.tenants SET settings = '{\"hacked\": true}'; \
             DROP VIEW app.published; DROP TABLE app.events; \
             SELECT nextval('app.invoice_no'); \
             CREATE TABLE app.junk (x int); INSERT INTO app.junk VALUES (1);",
        );
    }

    pub fn fingerprint(&self, db: &str) -> String {
        match self.try_psql(
            "postgres",
            &format!("SELECT 1 FROM pg_database WHERE datname = '{db}'"),
        ) {
            Ok(s) if s.trim() == "1" => self.psql(db, FINGERPRINT_SQL),
            Ok(_) => "<no database>".into(),
            Err(e) => panic!("{e}"),
        }
    }
}

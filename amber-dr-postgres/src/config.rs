//! Configuration of the `postgres` driver.

use std::path::PathBuf;
use std::time::Duration;

use amber_dr_core::Secret;
use serde::{Deserialize, Serialize};

/// `[components.NAME]` with `kind = "postgres"`.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// `postgres://user:password@host:port/maintenance_db` (a superuser: dumping roles and
    /// recreating databases needs one), or a libpq `key=value` string; every libpq parameter
    /// (`sslmode`, `sslrootcert`, `options`, ...) reaches the tools (see the README).
    pub url: Secret,
    /// Databases to back up. Default: every database that is not a template and allows connections.
    #[serde(default)]
    pub databases: Option<Vec<String>>,
    /// Databases never backed up.
    #[serde(default)]
    pub exclude_databases: Vec<String>,
    /// Directory holding `pg_dump`, `pg_restore`, `pg_dumpall` and `psql`. Default: search
    /// `PATH`, then `/usr/lib/postgresql/*/bin`, for a version at least the server's.
    #[serde(default)]
    pub bin_dir: Option<PathBuf>,
    /// Parallel jobs of `pg_restore`. Default 1: the dump streams from the repository straight
    /// into `pg_restore`. More than 1 first writes the dump to a temporary file in `temp_dir`
    /// (parallel `pg_restore` needs a seekable file); see docs/benchmarks.md for when that pays.
    #[serde(default = "default_jobs")]
    pub restore_jobs: u32,
    /// Where a restore puts the dump file that `pg_restore -j` needs. Default: the system temp dir.
    #[serde(default)]
    pub temp_dir: Option<PathBuf>,
    /// Seconds to wait for a connection. Default 10.
    #[serde(default = "default_timeout")]
    pub connect_timeout_secs: u64,
    /// A restore sets the passwords of roles that exist to their backed-up hashes too.
    /// Default false: an existing role keeps its current password (a credential rotated since
    /// the backup keeps working); its other attributes, memberships and settings are restored
    /// either way, and missing roles are always created with their backed-up password.
    #[serde(default)]
    pub restore_role_passwords: bool,
    /// Run `pg_dump`, `pg_dumpall`, `pg_restore` and `psql` inside this running container
    /// (e.g. the Postgres container) through the Docker exec API, for hosts without a matching
    /// `pg_dump`. `url` must then reach the server both from amber-dr's host (for its own
    /// queries) and from inside the container (for the tools); `bin_dir` is a directory inside
    /// the container (default: the container's `PATH`). Needs `restore_jobs = 1`.
    #[serde(default)]
    pub via_container: Option<String>,
    /// The Docker engine for `via_container` (`unix:///var/run/docker.sock` or a path).
    /// Default: `$DOCKER_HOST` if unix://, else `/var/run/docker.sock`.
    #[serde(default)]
    pub docker_host: Option<String>,
}

fn default_jobs() -> u32 {
    1
}

fn default_timeout() -> u64 {
    10
}

impl PostgresConfig {
    /// A config for `url`, everything else default.
    pub fn new(url: impl Into<String>) -> Self {
        let url: String = url.into();
        Self {
            url: Secret::new(url),
            databases: None,
            exclude_databases: Vec::new(),
            bin_dir: None,
            restore_jobs: default_jobs(),
            temp_dir: None,
            connect_timeout_secs: default_timeout(),
            restore_role_passwords: false,
            via_container: None,
            docker_host: None,
        }
    }

    /// Run the tools in `container` (through the engine at `docker_host`, if given).
    pub fn via_container(
        mut self,
        container: impl Into<String>,
        docker_host: Option<String>,
    ) -> Self {
        self.via_container = Some(container.into());
        self.docker_host = docker_host;
        self
    }

    /// Only these databases.
    pub fn databases(mut self, dbs: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.databases = Some(dbs.into_iter().map(Into::into).collect());
        self
    }

    /// Use the tools in this directory.
    pub fn bin_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.bin_dir = Some(dir.into());
        self
    }

    pub(crate) fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout_secs.max(1))
    }
}

impl std::fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("url", &self.url.redacted())
            .field("databases", &self.databases)
            .field("exclude_databases", &self.exclude_databases)
            .field("bin_dir", &self.bin_dir)
            .field("restore_jobs", &self.restore_jobs)
            .field("temp_dir", &self.temp_dir)
            .field("connect_timeout_secs", &self.connect_timeout_secs)
            .field("restore_role_passwords", &self.restore_role_passwords)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_never_shown() {
        let c = PostgresConfig::new("postgres://amber:s3cret@db:5432/amber");
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("s3cret"), "{dbg}");
        assert!(dbg.contains("amber:***@db:5432"), "{dbg}");
    }
}

//! Finding `pg_dump`, `pg_restore`, `pg_dumpall` and `psql` of a version at least the server's.

use std::path::{Path, PathBuf};

use amber_dr_core::tool::{self, ToolCommand, ToolRunner};
use tokio::process::Command;

use crate::error::PgError;

/// A directory of PostgreSQL client tools of one version.
#[derive(Debug, Clone)]
pub(crate) struct Tools {
    pub dir: PathBuf,
    pub major: u32,
    pub version: String,
}

const NEEDED: [&str; 4] = ["pg_dump", "pg_restore", "pg_dumpall", "psql"];

impl Tools {
    pub(crate) fn bin(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// Parse `pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)` into (major, "15.18").
pub(crate) fn parse_version(out: &str) -> Option<(u32, String)> {
    let v = out
        .split_whitespace()
        .find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()))?;
    let major = v.split(['.', 'b', 'r']).next()?.parse().ok()?;
    Some((major, v.to_string()))
}

async fn version_of(dir: &Path) -> Option<(u32, String)> {
    if !NEEDED.iter().all(|t| dir.join(t).is_file()) {
        return None;
    }
    let out = Command::new(dir.join("pg_dump"))
        .arg("--version")
        .kill_on_drop(true)
        .output()
        .await
        .ok()?;
    parse_version(&String::from_utf8_lossy(&out.stdout))
}

fn candidates(bin_dir: Option<&Path>) -> Vec<PathBuf> {
    if let Some(d) = bin_dir {
        return vec![d.to_path_buf()];
    }
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    let mut versioned: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| rd.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    versioned.sort();
    dirs.extend(versioned);
    dirs
}

/// Every tool directory found, with its version (for `doctor` and error messages).
pub(crate) async fn found(bin_dir: Option<&Path>) -> Vec<Tools> {
    let mut out: Vec<Tools> = Vec::new();
    for dir in candidates(bin_dir) {
        if let Some((major, version)) = version_of(&dir).await {
            if !out.iter().any(|t| t.dir == dir) {
                out.push(Tools {
                    dir,
                    major,
                    version,
                });
            }
        }
    }
    out
}

/// The newest tools whose major version is at least the server's.
pub(crate) async fn find(
    bin_dir: Option<&Path>,
    server_major: u32,
    server_version: &str,
) -> Result<Tools, PgError> {
    let all = found(bin_dir).await;
    let best = all
        .iter()
        .filter(|t| t.major >= server_major)
        .max_by_key(|t| t.major)
        .cloned();
    best.ok_or_else(|| {
        let seen = if all.is_empty() {
            "none found".to_string()
        } else {
            all.iter()
                .map(|t| format!("{} in {}", t.version, t.dir.display()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        PgError::Tools(format!(
            "the server is PostgreSQL {server_version}, but no pg_dump/pg_restore/pg_dumpall/psql of version {server_major} or newer was found ({seen}){}; install the matching client (e.g. postgresql-client-{server_major}) or set `bin_dir`",
            bin_dir.map(|d| format!(" in bin_dir {}", d.display())).unwrap_or_default()
        ))
    })
}

/// The tools where `runner` runs them (`via_container`: inside the container), `bin_dir`
/// there, else its `PATH`.
pub(crate) async fn find_in(
    runner: &dyn ToolRunner,
    bin_dir: Option<&Path>,
    server_major: u32,
    server_version: &str,
) -> Result<Tools, PgError> {
    let dir = bin_dir.map(Path::to_path_buf).unwrap_or_default();
    let where_ = format!(
        "in {}{}",
        runner.location(),
        bin_dir
            .map(|d| format!(" (bin_dir {})", d.display()))
            .unwrap_or_default()
    );
    let mut cmd = ToolCommand::new(dir.join("pg_dump"));
    cmd.arg("--version");
    let out = tool::output(runner, &cmd, "pg_dump --version")
        .await
        .map_err(|e| PgError::Tools(format!("no usable pg_dump {where_}: {e}")))?;
    let (major, version) = parse_version(&out)
        .ok_or_else(|| PgError::Tools(format!("pg_dump {where_} did not print a version")))?;
    if major < server_major {
        return Err(PgError::Tools(format!(
            "the server is PostgreSQL {server_version}, but pg_dump {where_} is {version}; use a container with client tools of version {server_major} or newer"
        )));
    }
    Ok(Tools {
        dir,
        major,
        version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(
            parse_version("pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"),
            Some((15, "15.18".into()))
        );
        assert_eq!(
            parse_version("pg_dump (PostgreSQL) 17beta1"),
            Some((17, "17beta1".into()))
        );
        assert_eq!(
            parse_version("pg_dump (PostgreSQL) 9.6.24"),
            Some((9, "9.6.24".into()))
        );
        assert_eq!(parse_version("nonsense"), None);
    }
}

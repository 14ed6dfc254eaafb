//! Reading what a restore loads before it loads it: the roles of `globals.sql` (existing ones
//! are left alone) and the head of a runbook SQL file.

use amber_dr_core::{Error, Result};

/// Look at the head of a runbook SQL file: a `pg_dump` plain dump is fine, a `pg_dumpall`
/// cluster dump or a custom-format archive is refused, anything else is loaded with a warning.
pub(crate) async fn legacy_sql_kind(file: &std::path::Path) -> Result<Option<String>> {
    use tokio::io::AsyncReadExt;
    let mut head = vec![0u8; 8192];
    let mut f = tokio::fs::File::open(file)
        .await
        .map_err(|e| Error::io("open", file, e))?;
    let mut n = 0;
    while n < head.len() {
        let r = f
            .read(&mut head[n..])
            .await
            .map_err(|e| Error::io("read", file, e))?;
        if r == 0 {
            break;
        }
        n += r;
    }
    let head = String::from_utf8_lossy(&head[..n]);
    let refuse = |why: &str| {
        Err(Error::config(
            format!("runbook file {}", file.display()),
            why.to_string(),
        ))
    };
    if head.starts_with("PGDMP") {
        return refuse("this is a pg_dump custom-format archive, not the runbook's SQL; restore it with pg_restore");
    }
    if head.contains("-- PostgreSQL database cluster dump") {
        return refuse("this is a pg_dumpall cluster dump (roles and every database); amber-dr restores the runbook's single-database pg_dump SQL only — load this one with psql by hand");
    }
    if head.contains("-- PostgreSQL database dump") {
        return Ok(None);
    }
    Ok(Some(format!(
        "`{}` does not start like pg_dump output; loading it as SQL anyway",
        file.display()
    )))
}

/// The most `globals.sql` (roles and tablespaces) a restore reads into memory.
pub(crate) const MAX_GLOBALS: u64 = 64 * 1024 * 1024;

/// The role named by a `CREATE ROLE` / `ALTER ROLE` line of pg_dumpall, unquoted.
fn role_of(line: &str) -> Option<String> {
    let rest = line
        .strip_prefix("CREATE ROLE ")
        .or_else(|| line.strip_prefix("ALTER ROLE "))?;
    if let Some(q) = rest.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = q.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    out.push('"');
                } else {
                    return Some(out);
                }
            } else {
                out.push(c);
            }
        }
        None
    } else {
        Some(rest.split([' ', ';']).next()?.to_string())
    }
}

/// Drop the `CREATE ROLE` / `ALTER ROLE` statements of roles that exist already. Returns the
/// SQL, the roles it creates and the existing roles it leaves alone.
pub(crate) fn filter_globals(
    sql: &str,
    existing: &std::collections::HashSet<String>,
) -> (String, Vec<String>, Vec<String>) {
    let (mut out, mut created, mut kept) = (String::new(), Vec::new(), Vec::new());
    for line in sql.lines() {
        if let Some(role) = role_of(line) {
            if existing.contains(&role) {
                if line.starts_with("CREATE ROLE ") {
                    kept.push(role);
                }
                continue;
            }
            if line.starts_with("CREATE ROLE ") {
                created.push(role);
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    (out, created, kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn existing_roles_are_left_alone() {
        let sql = "CREATE ROLE postgres;\nALTER ROLE postgres WITH SUPERUSER PASSWORD 'x';\n\
                   CREATE ROLE \"we\"\"ird\";\nALTER ROLE \"we\"\"ird\" WITH LOGIN;\n\
                   CREATE ROLE app;\nALTER ROLE app WITH LOGIN PASSWORD 'y';\nGRANT app TO postgres;\n";
        let existing = ["postgres".to_string(), "app".to_string()]
            .into_iter()
            .collect();
        let (out, created, kept) = filter_globals(sql, &existing);
        assert_eq!(created, vec!["we\"ird".to_string()]);
        assert_eq!(kept, vec!["postgres".to_string(), "app".to_string()]);
        assert!(!out.contains("PASSWORD"), "{out}");
        assert!(out.contains("GRANT app TO postgres;"), "{out}");
        assert!(
            out.contains("ALTER ROLE \"we\"\"ird\" WITH LOGIN;"),
            "{out}"
        );
    }
}

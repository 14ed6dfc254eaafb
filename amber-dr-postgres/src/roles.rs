//! Reading what a restore loads before it loads it: the roles of `globals.sql` (brought back
//! as they were backed up, see [`plan_roles`]) and the head of a runbook SQL file.

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

/// An SQL identifier at the start of `s` (quoted or bare, unquoted), and the rest after it.
fn ident(s: &str) -> Option<(String, &str)> {
    if let Some(q) = s.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = q.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            if c == '"' {
                if chars.peek().map(|(_, c)| *c) == Some('"') {
                    chars.next();
                    out.push('"');
                } else {
                    return Some((out, &q[i + 1..]));
                }
            } else {
                out.push(c);
            }
        }
        None
    } else {
        let end = s.find([' ', ';', ',']).unwrap_or(s.len());
        (end > 0).then(|| (s[..end].to_string(), &s[end..]))
    }
}

/// `name` quoted as an SQL identifier.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The role named by a `CREATE ROLE` / `ALTER ROLE` line of pg_dumpall, unquoted.
fn role_of(line: &str) -> Option<String> {
    let rest = line
        .strip_prefix("CREATE ROLE ")
        .or_else(|| line.strip_prefix("ALTER ROLE "))?;
    ident(rest).map(|(r, _)| r)
}

/// The roles a `pg_dumpall --globals-only` script creates.
pub(crate) fn backed_up_roles(sql: &str) -> Vec<String> {
    sql.lines()
        .filter(|l| l.starts_with("CREATE ROLE "))
        .filter_map(role_of)
        .collect()
}

/// The (role, member) of a `GRANT role TO member ...;` line of pg_dumpall.
fn grant_of(line: &str) -> Option<(String, String)> {
    let (role, rest) = ident(line.strip_prefix("GRANT ")?)?;
    let (member, _) = ident(rest.strip_prefix(" TO ")?)?;
    Some((role, member))
}

/// Remove the ` PASSWORD '...'` clause of an `ALTER ROLE ... WITH` line (a hash or NULL).
fn strip_password(line: &str) -> String {
    let Some(i) = line.find(" PASSWORD ") else {
        return line.to_string();
    };
    let rest = &line[i + " PASSWORD ".len()..];
    let after = if let Some(q) = rest.strip_prefix('\'') {
        match q.find('\'') {
            Some(j) => &q[j + 1..],
            None => return line.to_string(),
        }
    } else if let Some(r) = rest.strip_prefix("NULL") {
        r
    } else {
        return line.to_string();
    };
    format!("{}{after}", &line[..i])
}

/// The roles of the server now, as far as a restore of roles needs them.
#[derive(Debug, Default)]
pub(crate) struct ServerRoles {
    /// Every role name.
    pub existing: std::collections::HashSet<String>,
    /// Roles with a `VALID UNTIL` set.
    pub expiring: std::collections::HashSet<String>,
    /// Memberships: (role, member).
    pub members: Vec<(String, String)>,
}

/// What the restore of `globals.sql` runs and whom it touches (see [`plan_roles`]).
#[derive(Debug, Default)]
pub(crate) struct RolePlan {
    /// The SQL to run (psql, errors reported as warnings).
    pub sql: String,
    /// Roles of the backup the server lacks: created with their backed-up attributes and
    /// password.
    pub created: Vec<String>,
    /// Roles of the backup the server has: set back to their backed-up attributes,
    /// memberships and settings.
    pub reset: Vec<String>,
}

/// Make the roles of a `pg_dumpall --globals-only` script come back as they were backed up.
///
/// Missing roles are created as dumped (password hash included). Roles that exist get the
/// dumped `ALTER ROLE ... WITH` attributes (a connection limit or expiry the dump leaves out
/// is set back to none), their per-role settings reset first, and the memberships the backup
/// does not have revoked; their password is kept unless `passwords` (a rotated credential
/// keeps working after a restore).
pub(crate) fn plan_roles(sql: &str, now: &ServerRoles, passwords: bool) -> RolePlan {
    let existing = &now.existing;
    let mut plan = RolePlan::default();
    let mut grants = std::collections::HashSet::new();
    let mut body = String::new();
    for line in sql.lines() {
        let mut line = line.to_string();
        if let Some(role) = role_of(&line) {
            let exists = existing.contains(&role);
            if line.starts_with("CREATE ROLE ") {
                if exists {
                    // Settings back to the backed-up ones: the dump's `ALTER ROLE .. SET` follow.
                    body.push_str(&format!("ALTER ROLE {} RESET ALL;\n", quote_ident(&role)));
                    plan.reset.push(role);
                } else {
                    plan.created.push(role);
                }
                body.push_str(&line);
                body.push('\n');
                continue;
            }
            let is_with = line.contains(" WITH ");
            if exists && is_with {
                if !passwords {
                    line = strip_password(&line);
                }
                let stmt = line.trim_end_matches(';').to_string();
                let mut extra = String::new();
                if !stmt.contains(" CONNECTION LIMIT ") {
                    extra.push_str(" CONNECTION LIMIT -1");
                }
                if !stmt.contains(" VALID UNTIL ") && now.expiring.contains(&role) {
                    extra.push_str(" VALID UNTIL 'infinity'");
                }
                line = format!("{stmt}{extra};");
            }
        } else if let Some(g) = grant_of(&line) {
            grants.insert(g);
        }
        body.push_str(&line);
        body.push('\n');
    }
    // CREATE ROLE of an existing role fails ("already exists"): left out.
    let mut out = String::new();
    for line in body.lines() {
        if line.starts_with("CREATE ROLE ") && role_of(line).is_some_and(|r| existing.contains(&r))
        {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    for (role, member) in &now.members {
        if plan.reset.contains(member) && !grants.contains(&(role.clone(), member.clone())) {
            out.push_str(&format!(
                "REVOKE {} FROM {};\n",
                quote_ident(role),
                quote_ident(member)
            ));
        }
    }
    plan.sql = out;
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_come_back_as_backed_up() {
        let sql = "CREATE ROLE postgres;\nALTER ROLE postgres WITH SUPERUSER LOGIN PASSWORD 'x';\n\
                   CREATE ROLE \"we\"\"ird\";\nALTER ROLE \"we\"\"ird\" WITH LOGIN PASSWORD 'w';\n\
                   CREATE ROLE app;\nALTER ROLE app WITH LOGIN CONNECTION LIMIT 5 PASSWORD 'y';\n\
                   ALTER ROLE app SET work_mem TO '8MB';\nGRANT reader TO app GRANTED BY postgres;\n";
        let now = ServerRoles {
            existing: ["postgres".to_string(), "app".to_string()]
                .into_iter()
                .collect(),
            expiring: ["app".to_string()].into_iter().collect(),
            members: vec![
                ("reader".to_string(), "app".to_string()),
                ("writer".to_string(), "app".to_string()),
                ("writer".to_string(), "other".to_string()),
            ],
        };
        let p = plan_roles(sql, &now, false);
        assert_eq!(p.created, vec!["we\"ird".to_string()]);
        assert_eq!(p.reset, vec!["postgres".to_string(), "app".to_string()]);
        let out = &p.sql;
        // Existing roles: attributes set, password kept, settings reset, extra grants revoked.
        assert!(
            !out.contains("PASSWORD 'y'") && !out.contains("PASSWORD 'x'"),
            "{out}"
        );
        assert!(
            out.contains("ALTER ROLE app WITH LOGIN CONNECTION LIMIT 5 VALID UNTIL 'infinity';"),
            "{out}"
        );
        assert!(
            out.contains("ALTER ROLE postgres WITH SUPERUSER LOGIN CONNECTION LIMIT -1;"),
            "{out}"
        );
        assert!(out.contains("ALTER ROLE \"app\" RESET ALL;\n"), "{out}");
        assert!(
            out.contains("ALTER ROLE app SET work_mem TO '8MB';"),
            "{out}"
        );
        assert!(out.contains("REVOKE \"writer\" FROM \"app\";"), "{out}");
        assert!(!out.contains("FROM \"other\""), "{out}");
        assert!(!out.contains("CREATE ROLE app;"), "{out}");
        // A missing role is created with its backed-up password.
        assert!(out.contains("CREATE ROLE \"we\"\"ird\";"), "{out}");
        assert!(
            out.contains("ALTER ROLE \"we\"\"ird\" WITH LOGIN PASSWORD 'w';"),
            "{out}"
        );
        // With passwords: the existing roles' hashes come back too.
        let p = plan_roles(sql, &now, true);
        assert!(
            p.sql.contains("PASSWORD 'y' CONNECTION LIMIT")
                || p.sql.contains("LIMIT 5 PASSWORD 'y'"),
            "{}",
            p.sql
        );
    }

    #[test]
    fn passwords_are_stripped_whatever_their_form() {
        assert_eq!(
            strip_password(
                "ALTER ROLE a WITH LOGIN PASSWORD 'SCRAM-SHA-256$4096:x' VALID UNTIL 'y';"
            ),
            "ALTER ROLE a WITH LOGIN VALID UNTIL 'y';"
        );
        assert_eq!(
            strip_password("ALTER ROLE a WITH LOGIN PASSWORD NULL;"),
            "ALTER ROLE a WITH LOGIN;"
        );
    }
}

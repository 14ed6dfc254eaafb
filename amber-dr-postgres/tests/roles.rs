//! Roles come back as they were backed up: attributes, memberships and per-role settings
//! changed after the backup are reset; a password rotated after the backup keeps working
//! (unless `restore_role_passwords`); a dropped role is recreated with its backed-up password.
//! Checked with psql (and by logging in), against the real Postgres.
// test-lane: stores (uses the Postgres cluster or Neo4j, whose global state other tests change)
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use amber_dr_core::{
    testkit, BackupOptions, Component, RestoreOptions, RestorePlanOptions, Runner, Selection,
};
use amber_dr_postgres::{Postgres, PostgresConfig};
use common::Pg;

const DB: &str = "amber_roles_db";

/// Whether `role` can log in with `password` (password authentication over TCP).
fn logs_in(pg: &Pg, role: &str, password: &str) -> bool {
    pg.cmd("psql", "postgres")
        .env("PGUSER", role)
        .env("PGPASSWORD", password)
        .args(["-X", "-At", "-c", "SELECT 1"])
        .output()
        .unwrap()
        .status
        .success()
}

/// The attributes, settings and memberships of `role`, read with psql.
fn role(pg: &Pg, role: &str) -> String {
    pg.psql(
        "postgres",
        &format!(
            "SELECT r.rolcanlogin::text || ' ' || r.rolcreatedb::text || ' ' || r.rolconnlimit || ' ' || \
             coalesce(r.rolvaliduntil::date::text, 'none') || ' [' || coalesce(array_to_string(r.rolconfig, ','), '') || '] [' || \
             coalesce((SELECT string_agg(g.rolname, ',' ORDER BY g.rolname) FROM pg_auth_members a \
               JOIN pg_roles g ON g.oid = a.roleid WHERE a.member = r.oid), '') || ']' \
             FROM pg_roles r WHERE r.rolname = '{role}'"
        ),
    )
    .trim()
    .to_string()
}

fn restore_all() -> RestorePlanOptions {
    RestorePlanOptions {
        selection: Selection::all(),
        options: RestoreOptions::new(),
        safety_backup: false,
        components: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_come_back_as_backed_up_and_rotated_passwords_keep_working() {
    let Some(pg) = Pg::from_env() else { return };
    for r in [
        "amber_role_a",
        "amber_role_gone",
        "amber_role_grp",
        "amber_role_extra",
    ] {
        pg.psql("postgres", &format!("DROP ROLE IF EXISTS {r}"));
    }
    pg.psql("postgres", "CREATE ROLE amber_role_grp NOLOGIN");
    pg.psql("postgres", "CREATE ROLE amber_role_extra NOLOGIN");
    pg.psql(
        "postgres",
        "CREATE ROLE amber_role_a LOGIN CONNECTION LIMIT 4 VALID UNTIL '2031-01-01' PASSWORD 'backed-up-a'",
    );
    pg.psql("postgres", "ALTER ROLE amber_role_a SET work_mem = '5MB'");
    pg.psql("postgres", "GRANT amber_role_grp TO amber_role_a");
    pg.psql(
        "postgres",
        "CREATE ROLE amber_role_gone LOGIN PASSWORD 'gone-pw'",
    );
    pg.recreate(DB);
    let backed_up = role(&pg, "amber_role_a");
    assert_eq!(
        backed_up,
        "true false 4 2031-01-01 [work_mem=5MB] [amber_role_grp]"
    );

    let component = |passwords: bool| {
        let mut cfg = PostgresConfig::new(pg.url(DB)).databases([DB]);
        cfg.restore_role_passwords = passwords;
        Arc::new(Postgres::new("postgres", cfg).unwrap()) as Arc<dyn Component>
    };
    let (repo, _guard) = testkit::temp_repo();
    let m = Runner::new(repo.clone(), vec![component(false)])
        .backup(&BackupOptions::default())
        .await
        .unwrap();
    assert!(m.is_complete());

    // After the backup: every attribute changed, the password rotated, a role dropped.
    pg.psql(
        "postgres",
        "ALTER ROLE amber_role_a NOLOGIN CREATEDB CONNECTION LIMIT 9 VALID UNTIL '2040-01-01' PASSWORD 'rotated-a'",
    );
    pg.psql("postgres", "ALTER ROLE amber_role_a SET work_mem = '7MB'");
    pg.psql("postgres", "ALTER ROLE amber_role_a SET search_path = 'x'");
    pg.psql("postgres", "REVOKE amber_role_grp FROM amber_role_a");
    pg.psql("postgres", "GRANT amber_role_extra TO amber_role_a");
    pg.psql("postgres", "DROP ROLE amber_role_gone");
    assert_ne!(role(&pg, "amber_role_a"), backed_up);

    let out = Runner::new(repo.clone(), vec![component(false)])
        .restore(&m.id, &restore_all())
        .await
        .unwrap();
    assert!(out.is_ok(), "{:?}", out.components);
    assert_eq!(role(&pg, "amber_role_a"), backed_up, "attributes reset");
    assert!(
        logs_in(&pg, "amber_role_a", "rotated-a"),
        "the rotated password must keep working"
    );
    assert!(!logs_in(&pg, "amber_role_a", "backed-up-a"));
    assert!(
        logs_in(&pg, "amber_role_gone", "gone-pw"),
        "a dropped role comes back with its backed-up password"
    );
    // The report says what changed, per role, and never shows a password hash.
    let actions = out.components[0]
        .report
        .as_ref()
        .unwrap()
        .actions
        .join("\n");
    assert!(actions.contains("role `amber_role_a` reset: "), "{actions}");
    assert!(actions.contains("login true (was false)"), "{actions}");
    assert!(
        actions.contains("member of [amber_role_grp] (was"),
        "{actions}"
    );
    assert!(actions.contains("connection limit 4 (was 9)"), "{actions}");
    assert!(actions.contains("amber_role_gone"), "{actions}");
    assert!(!actions.contains("SCRAM"), "{actions}");

    // restore_role_passwords: the backed-up password comes back too.
    let out = Runner::new(repo, vec![component(true)])
        .restore(&m.id, &restore_all())
        .await
        .unwrap();
    assert!(out.is_ok(), "{:?}", out.components);
    assert!(logs_in(&pg, "amber_role_a", "backed-up-a"));
    assert!(!logs_in(&pg, "amber_role_a", "rotated-a"));

    for r in [
        "amber_role_a",
        "amber_role_gone",
        "amber_role_grp",
        "amber_role_extra",
    ] {
        pg.psql("postgres", &format!("DROP ROLE IF EXISTS {r}"));
    }
    pg.psql(
        "postgres",
        &format!("DROP DATABASE IF EXISTS {DB} WITH (FORCE)"),
    );
}

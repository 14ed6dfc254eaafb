//! One component holding two databases: restore one of them only (`items`), and restore one
//! under another name (`target`) for a drill — against the real Postgres.
// test-lane: stores (uses the Postgres cluster or Neo4j, whose global state other tests change)
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use amber_dr_core::{
    testkit, BackupOptions, Component, RestoreOptions, RestorePlanOptions, Runner, Selection,
};
use amber_dr_postgres::{Postgres, PostgresConfig};
use common::Pg;

/// The message of a restore the driver refuses: in the prepare phase (the whole restore fails)
/// or, for a driver that does not stage, as the component's failure.
async fn refusal(runner: &Runner, id: &str, plan: &RestorePlanOptions) -> String {
    match runner.restore(id, plan).await {
        Ok(out) => out.components[0].error.clone().unwrap_or_default(),
        Err(e) => e.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_database_of_two_and_restore_under_another_name() {
    let Some(pg) = Pg::from_env() else { return };
    let (a, b, drill) = ("amber_parts_a", "amber_parts_b", "amber_parts_drill");
    pg.populate(a);
    // b uses the ICU locale provider, which must survive a restore.
    pg.psql(
        "postgres",
        &format!("DROP DATABASE IF EXISTS {b} WITH (FORCE)"),
    );
    pg.psql(
        "postgres",
        &format!("CREATE DATABASE {b} LOCALE_PROVIDER icu ICU_LOCALE 'en-US' TEMPLATE template0"),
    );
    pg.script(b, common::DATA_SQL);
    // A role that exists only in the backup, and one that changes after it.
    pg.psql("postgres", "DROP ROLE IF EXISTS amber_rt_role");
    pg.psql(
        "postgres",
        "CREATE ROLE amber_rt_role LOGIN CONNECTION LIMIT 3",
    );
    pg.psql("postgres", "COMMENT ON ROLE amber_rt_role IS 'comes back'");
    // Its memberships and settings come back with it (the fingerprint shows both).
    pg.psql("postgres", "GRANT amber_readonly TO amber_rt_role");
    pg.psql("postgres", "ALTER ROLE amber_rt_role SET work_mem TO '2MB'");
    pg.psql(
        "postgres",
        &format!("DROP DATABASE IF EXISTS {drill} WITH (FORCE)"),
    );
    // Database-level settings and privileges travel too.
    pg.psql(
        "postgres",
        &format!("ALTER DATABASE {a} SET work_mem TO '8MB'"),
    );
    pg.psql(
        "postgres",
        &format!("REVOKE CONNECT ON DATABASE {a} FROM PUBLIC"),
    );
    pg.psql(
        "postgres",
        &format!("GRANT CONNECT ON DATABASE {a} TO amber_app"),
    );
    let (fa, fb) = (pg.fingerprint(a), pg.fingerprint(b));
    let settings = |db: &str| {
        pg.psql(
            "postgres",
            &format!(
                "SELECT coalesce(array_to_string(s.setconfig, ','), '') || ' ' || coalesce((SELECT string_agg(x::text, ',' ORDER BY x::text) FROM unnest(d.datacl) x), '') \
                 FROM pg_database d LEFT JOIN pg_db_role_setting s ON s.setdatabase = d.oid AND s.setrole = 0 \
                 WHERE d.datname = '{db}'"
            ),
        )
    };
    let sa = settings(a);
    assert!(sa.contains("work_mem=8MB"), "{sa}");

    // The URL's own database is one of those restored (it cannot be renamed while connected).
    let c: Arc<dyn Component> = Arc::new(
        Postgres::new("postgres", PostgresConfig::new(pg.url(a)).databases([a, b])).unwrap(),
    );
    let (repo, _guard) = testkit::temp_repo();
    let runner = Runner::new(repo, vec![c]);
    let m = runner.backup(&BackupOptions::default()).await.unwrap();
    assert!(m.is_complete());
    let rec = &m.components["postgres"];
    assert_eq!(rec.stat_u64("databases"), Some(2));

    pg.destroy(a);
    pg.destroy(b);
    let fb_destroyed = pg.fingerprint(b);
    pg.psql("postgres", "DROP ROLE amber_rt_role");
    pg.psql(
        "postgres",
        "ALTER ROLE amber_app NOLOGIN PASSWORD 'rotated-after-the-backup'",
    );
    let app_pw = pg.psql(
        "postgres",
        "SELECT rolpassword FROM pg_authid WHERE rolname = 'amber_app'",
    );

    let only_a = RestorePlanOptions {
        selection: Selection::all(),
        options: RestoreOptions::new().items(vec![a.to_string()]),
        safety_backup: false,
        components: Default::default(),
    };
    let out = runner.restore(&m.id, &only_a).await.unwrap();
    assert!(out.is_ok(), "{:?}", out.components);
    // Missing roles come back as they were; existing ones get their backed-up attributes back
    // but keep their current password.
    assert_eq!(
        pg.psql(
            "postgres",
            "SELECT rolcanlogin::text || ' ' || rolconnlimit || ' ' || shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = 'amber_rt_role'"
        )
        .trim(),
        "true 3 comes back"
    );
    assert_eq!(
        pg.psql(
            "postgres",
            "SELECT rolcanlogin FROM pg_roles WHERE rolname = 'amber_app'"
        )
        .trim(),
        "t",
        "an existing role's attributes come back as backed up"
    );
    assert_eq!(
        pg.psql(
            "postgres",
            "SELECT rolpassword FROM pg_authid WHERE rolname = 'amber_app'"
        ),
        app_pw,
        "an existing role's password is not overwritten"
    );
    assert_eq!(pg.fingerprint(a), fa, "database a restored");
    assert_eq!(
        settings(a),
        sa,
        "database-level settings and privileges restored"
    );
    assert_eq!(pg.fingerprint(b), fb_destroyed, "database b untouched");

    // Drill: b restored as another database; the live b stays as it is.
    let drill_plan = RestorePlanOptions {
        selection: Selection::all(),
        options: RestoreOptions::new()
            .items(vec![b.to_string()])
            .target(Some(drill.to_string())),
        safety_backup: false,
        components: Default::default(),
    };
    let out = runner.restore(&m.id, &drill_plan).await.unwrap();
    assert!(out.is_ok(), "{:?}", out.components);
    assert_eq!(pg.fingerprint(drill), fb, "drill database holds b's backup");
    assert_eq!(
        pg.psql("postgres", &format!("SELECT datlocprovider::text || ' ' || daticulocale FROM pg_database WHERE datname = '{drill}'")).trim(),
        "i en-US",
        "ICU locale provider kept"
    );
    assert_eq!(
        pg.fingerprint(b),
        fb_destroyed,
        "live b untouched by the drill"
    );

    // A target that exists (the drill again, a live database) or is a template is refused
    // before anything changes.
    let fa_now = pg.fingerprint(a);
    for (target, needle) in [
        (drill, "already exists"),
        (a, "already exists"),
        ("template1", "template database"),
    ] {
        let plan = RestorePlanOptions {
            selection: Selection::all(),
            options: RestoreOptions::new()
                .items(vec![b.to_string()])
                .target(Some(target.to_string())),
            safety_backup: false,
            components: Default::default(),
        };
        let err = refusal(&runner, &m.id, &plan).await;
        assert!(err.contains(needle), "target {target}: {err}");
    }
    assert_eq!(
        pg.fingerprint(a),
        fa_now,
        "live a untouched by a refused target"
    );
    assert_eq!(
        pg.fingerprint(drill),
        fb,
        "existing drill database untouched"
    );

    // A target with two databases selected is refused, naming the way out.
    let bad = RestorePlanOptions {
        selection: Selection::all(),
        options: RestoreOptions::new().target(Some("x".into())),
        safety_backup: false,
        components: Default::default(),
    };
    let err = refusal(&runner, &m.id, &bad).await;
    assert!(err.contains("exactly one database"), "{err}");
    // An unknown database is named.
    let unknown = RestorePlanOptions {
        selection: Selection::all(),
        options: RestoreOptions::new().items(vec!["nope".into()]),
        safety_backup: false,
        components: Default::default(),
    };
    let err = refusal(&runner, &m.id, &unknown).await;
    assert!(err.contains("nope") && err.contains(a), "{err}");
    pg.psql(
        "postgres",
        &format!("DROP DATABASE IF EXISTS {drill} WITH (FORCE)"),
    );
    // A database set aside by an interrupted swap is never dropped: the restore refuses.
    let aside = format!("{a}__amber_dr_restore_old");
    pg.psql("postgres", &format!("CREATE DATABASE {aside}"));
    let before = pg.fingerprint(a);
    let err = refusal(&runner, &m.id, &only_a).await;
    assert!(err.contains(&aside) && err.contains("interrupted"), "{err}");
    assert_eq!(pg.fingerprint(a), before, "live database untouched");
    pg.psql("postgres", &format!("DROP DATABASE {aside}"));
}

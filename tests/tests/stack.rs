//! The whole local stack through the library: Postgres, an uploads directory and two S3 buckets
//! (the `minio` driver on s3s-fs) backed up together into a repository on S3, all destroyed,
//! restored, and compared with psql, an independent tree listing and boto3; then a partial
//! restore of Postgres alone.
#![allow(missing_docs, clippy::unwrap_used)]

#[path = "../../amber-dr-files/tests/common/mod.rs"]
mod files_common;
#[path = "../../amber-dr-minio/tests/common/mod.rs"]
mod minio_common;
#[path = "../../amber-dr-postgres/tests/common/mod.rs"]
mod pg_common;

use std::sync::Arc;

use amber_dr_core::{
    testkit, BackupOptions, Component, Repository, RestorePlanOptions, Runner, Selection,
    VerifyLevel,
};
use amber_dr_e2e::{s3_repository, unique_prefix};
use amber_dr_files::{Files, FilesConfig};
use amber_dr_postgres::{Postgres, PostgresConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_and_uploads_into_s3_and_back() {
    let Some(pg) = pg_common::Pg::from_env() else {
        return;
    };
    let Some(s3) = minio_common::S3::s3s() else {
        return;
    };
    let Some(cfg) = s3_repository(&unique_prefix("stack")) else {
        testkit::service_missing("the S3 endpoint (AMBER_DR_S3_ENDPOINT)");
        return;
    };
    let repo = Repository::open(&cfg).unwrap();
    let db = "amber_e2e_stack";
    let base = tempfile::tempdir().unwrap();
    let uploads = base.path().join("uploads");
    pg.populate(db);
    files_common::populate(&uploads, 42);
    let (docs, other) = (
        minio_common::unique("e2e-docs"),
        minio_common::unique("e2e-other"),
    );
    s3.tool(&["populate", &docs, &other]);
    let (pg0, files0) = (pg.fingerprint(db), files_common::fingerprint(&uploads));
    let s3_0 = s3.fingerprint(&[&docs, &other]);

    let components: Vec<Arc<dyn Component>> = vec![
        Arc::new(
            Postgres::new(
                "postgres",
                PostgresConfig::new(pg.url("postgres")).databases([db]),
            )
            .unwrap(),
        ),
        Arc::new(Files::new("uploads", FilesConfig::new(&uploads))),
        Arc::new(s3.component("minio", &[&docs, &other])),
    ];
    let runner = Runner::new(repo.clone(), components);
    let m = runner
        .backup(&BackupOptions {
            tags: vec!["e2e".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(m.is_complete(), "{:?}", m.components);
    assert_eq!(m.components.len(), 3);
    let v = runner
        .verify("latest", &Selection::all(), VerifyLevel::Full)
        .await
        .unwrap();
    assert!(v.is_ok(), "{:?}", v.components);

    pg.destroy(db);
    files_common::destroy(&uploads);
    s3.tool(&["destroy", &docs, &other]);
    assert_ne!(s3.fingerprint(&[&docs, &other]), s3_0);
    assert_ne!(pg.fingerprint(db), pg0);
    assert_ne!(files_common::fingerprint(&uploads), files0);

    let out = runner
        .restore(
            &m.id,
            &RestorePlanOptions {
                safety_backup: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(out.is_ok(), "{:?}", out.components);
    assert!(out.safety_backup.is_some());
    assert_eq!(pg.fingerprint(db), pg0, "Postgres identical");
    assert_eq!(
        files_common::fingerprint(&uploads),
        files0,
        "uploads identical"
    );
    assert_eq!(s3.fingerprint(&[&docs, &other]), s3_0, "buckets identical");

    // Partial: Postgres back to the backup while uploads keep newer data.
    pg.destroy(db);
    std::fs::write(uploads.join("newer.txt"), b"newer").unwrap();
    let newer = files_common::fingerprint(&uploads);
    let only_pg = RestorePlanOptions {
        selection: Selection {
            only: vec!["postgres".into()],
            skip: vec![],
        },
        ..Default::default()
    };
    let out = runner.restore(&m.id, &only_pg).await.unwrap();
    assert!(
        out.is_ok() && out.components.len() == 1,
        "{:?}",
        out.components
    );
    assert_eq!(pg.fingerprint(db), pg0);
    assert_eq!(
        files_common::fingerprint(&uploads),
        newer,
        "uploads untouched"
    );
    files_common::unlock(base.path());
}

//! The conformance suite through encrypted repositories (issue 16): local and on S3, with
//! the files driver; every driver's own suite also runs encrypted in every `scripts/test.sh`
//! run (`scripts/test-lanes.py` runs each `conformance` binary a second time with
//! `AMBER_DR_TEST_ENCRYPTION=1`, see `testkit::temp_repo`).
// test-lane: stores (uses the Postgres cluster or Neo4j, whose global state other tests change)
#![allow(missing_docs, clippy::unwrap_used)]

#[path = "../../amber-dr-files/tests/common/mod.rs"]
mod common;

use amber_dr_core::testkit;
use amber_dr_core::Repository;
use amber_dr_e2e::{s3_repository, unique_prefix};

async fn encrypted_and_sealed(repo: &Repository) {
    let st = repo.encryption_status().await.unwrap();
    assert!(st.encrypted && st.can_read, "{st:?}");
    for e in repo.list().await.unwrap() {
        let m = e.manifest.unwrap();
        for a in m.components.values().flat_map(|c| &c.artifacts) {
            assert_eq!(a.encryption.as_deref(), Some("amber-dr-stream-v1"), "{a:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_conformance_through_an_encrypted_local_repository() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = amber_dr_core::RepositoryConfig::new(dir.path().to_string_lossy());
    cfg.encryption = Some(testkit::test_encryption());
    let repo = Repository::open(&cfg).unwrap();
    let fx = common::Dirs::new();
    if let Err(e) = testkit::run_all(&fx, &repo).await {
        panic!("{e}");
    }
    encrypted_and_sealed(&repo).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_conformance_through_an_encrypted_s3_repository() {
    let Some(mut cfg) = s3_repository(&unique_prefix("encrypted")) else {
        testkit::service_missing("the S3 endpoint (AMBER_DR_S3_ENDPOINT)");
        return;
    };
    cfg.encryption = Some(testkit::test_encryption());
    let repo = Repository::open(&cfg).unwrap();
    let fx = common::Dirs::new();
    if let Err(e) = testkit::run_all(&fx, &repo).await {
        panic!("{e}");
    }
    encrypted_and_sealed(&repo).await;
}

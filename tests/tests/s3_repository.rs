//! The repository on a real S3 endpoint (s3s-fs from `scripts/stack.sh`): the whole
//! conformance suite of the files driver runs with its backups stored in S3.
// test-lane: stores (uses the Postgres cluster or Neo4j, whose global state other tests change)
#![allow(missing_docs, clippy::unwrap_used)]

#[path = "../../amber-dr-files/tests/common/mod.rs"]
mod common;

use amber_dr_core::testkit;
use amber_dr_core::{Error, Repository, RepositoryConfig};
use amber_dr_e2e::{s3_repository, unique_prefix};

fn repo_or_skip(name: &str) -> Option<Repository> {
    let Some(cfg) = s3_repository(&unique_prefix(name)) else {
        testkit::service_missing("the S3 endpoint (AMBER_DR_S3_ENDPOINT)");
        return None;
    };
    Some(Repository::open(&cfg).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_conformance_with_repository_on_s3() {
    let Some(repo) = repo_or_skip("conformance") else {
        return;
    };
    repo.check_access().await.unwrap();
    let fx = common::Dirs::new();
    if let Err(e) = testkit::run_all(&fx, &repo).await {
        panic!("{e}");
    }
}

#[tokio::test]
async fn s3_lock_is_exclusive() {
    let Some(repo) = repo_or_skip("lock") else {
        return;
    };
    let lock = repo.lock("backup").await.unwrap();
    let err = repo.lock("prune").await.expect_err("second lock");
    assert!(matches!(err, Error::Locked { .. }), "{err}");
    lock.release().await.unwrap();
    repo.lock("prune").await.unwrap().release().await.unwrap();
}

#[tokio::test]
async fn wrong_secret_is_a_clear_error() {
    let Some(mut cfg) = s3_repository(&unique_prefix("badauth")) else {
        testkit::service_missing("the S3 endpoint (AMBER_DR_S3_ENDPOINT)");
        return;
    };
    cfg.secret_access_key = Some("wrong-secret".into());
    let repo = Repository::open(&cfg).unwrap();
    let err = repo.check_access().await.expect_err("bad secret must fail");
    let msg = err.to_string();
    assert!(msg.contains("s3://"), "names the repository: {msg}");
    assert!(
        !msg.contains("wrong-secret"),
        "never prints the secret: {msg}"
    );
    let closed = amber_dr_core::testkit::closed_port();
    let unreachable = RepositoryConfig {
        endpoint: Some(format!("http://127.0.0.1:{}", closed.port)),
        ..cfg
    };
    let repo = Repository::open(&unreachable).unwrap();
    let t = std::time::Instant::now();
    let err = repo.check_access().await.expect_err("unreachable");
    assert!(err.to_string().contains("s3://"), "{err}");
    assert!(t.elapsed().as_secs() < 120, "bounded: {:?}", t.elapsed());
}

//! The core conformance suite against real directories.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use amber_dr_core::testkit;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_driver_passes_the_conformance_suite() {
    let fx = common::Dirs::new();
    let (repo, _guard) = testkit::temp_repo();
    if let Err(e) = testkit::run_all(&fx, &repo).await {
        panic!("{e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_driver_passes_the_conformance_suite_in_the_chunked_format() {
    let mut fx = common::Dirs::new();
    fx.format = amber_dr_files::FilesFormat::Chunked;
    let (repo, _guard) = testkit::temp_repo();
    if let Err(e) = testkit::run_all(&fx, &repo).await {
        panic!("{e}");
    }
}

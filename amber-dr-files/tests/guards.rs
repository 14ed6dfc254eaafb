//! A files component can never archive or replace its own repository, `/`, the live
//! directory (when restoring elsewhere) or a file that is not a directory.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::fs;
use std::path::Path;
use std::sync::Arc;

use amber_dr_core::{Component, Error, Repository, RepositoryConfig, RestorePlanOptions, Runner};
use amber_dr_files::{Files, FilesConfig};

fn runner(repo: &Path, dir: &Path) -> Runner {
    let repo = Repository::open(&RepositoryConfig::new(repo.to_string_lossy())).unwrap();
    let files: Arc<dyn Component> = Arc::new(Files::new("uploads", FilesConfig::new(dir)));
    Runner::new(repo, vec![files])
}

#[tokio::test]
async fn a_repository_inside_the_directory_is_refused_at_backup() {
    let base = tempfile::tempdir().unwrap();
    let uploads = base.path().join("uploads");
    common::populate(&uploads, 3);
    let r = runner(&uploads.join("backups"), &uploads);
    let m = r.backup(&Default::default()).await.unwrap();
    assert!(
        !m.is_complete(),
        "no complete backup of a tree holding its own repository"
    );
    let err = m.components["uploads"]
        .error
        .as_ref()
        .expect("component error");
    assert!(err.contains("overlaps the backup repository"), "{err}");
    common::unlock(base.path());
}

#[tokio::test]
async fn restore_targets_that_would_destroy_something_are_refused() {
    let base = tempfile::tempdir().unwrap();
    let uploads = base.path().join("uploads");
    let repo_dir = base.path().join("repo");
    common::populate(&uploads, 3);
    let r = runner(&repo_dir, &uploads);
    let m = r.backup(&Default::default()).await.unwrap();
    assert!(m.is_complete());
    let uploads_before = common::fingerprint(&uploads);
    // (the repository's own mtime moves with its lock; the backup inside must not change)
    let repo_before = common::fingerprint(&repo_dir.join(&m.id));

    let file = base.path().join("notes.txt");
    fs::write(&file, b"not a directory").unwrap();
    let link = base.path().join("link-to-repo");
    std::os::unix::fs::symlink(&repo_dir, &link).unwrap();
    let cases: Vec<(String, &str)> = vec![
        ("/".into(), "refusing to restore into `/`"),
        (
            repo_dir.display().to_string(),
            "overlaps the backup repository",
        ),
        (
            base.path().display().to_string(),
            "overlaps the backup repository",
        ),
        (
            repo_dir.join("x").display().to_string(),
            "overlaps the backup repository",
        ),
        (link.display().to_string(), "overlaps the backup repository"),
        (
            uploads.join("sub").display().to_string(),
            "overlaps the configured directory",
        ),
        (file.display().to_string(), "is not a directory"),
        (String::new(), "target directory is empty"),
    ];
    for (target, needle) in cases {
        for dry_run in [true, false] {
            let mut opts = RestorePlanOptions::default();
            opts.options = opts.options.target(Some(target.clone())).dry_run(dry_run);
            opts.safety_backup = false;
            let out = r.restore(&m.id, &opts).await;
            let err = match out {
                Err(e) => {
                    assert!(matches!(e, Error::Config { .. }), "a config error: {e:?}");
                    e
                }
                Ok(o) => o.components[0]
                    .error
                    .clone()
                    .map(|m| Error::config("x", m))
                    .unwrap_or_else(|| panic!("target `{target}` must be refused")),
            };
            assert!(err.to_string().contains(needle), "`{target}`: {err}");
        }
    }
    assert_eq!(common::fingerprint(&uploads), uploads_before);
    assert_eq!(common::fingerprint(&repo_dir.join(&m.id)), repo_before);
    assert_eq!(fs::read(&file).unwrap(), b"not a directory");

    // The checks do not get in the way of a legitimate restore beside the live directory.
    let drill = base.path().join("drill");
    let mut opts = RestorePlanOptions::default();
    opts.options = opts.options.target(Some(drill.display().to_string()));
    opts.safety_backup = false;
    let out = r.restore(&m.id, &opts).await.unwrap();
    assert!(out.is_ok(), "{:?}", out.components);
    assert_eq!(common::fingerprint(&drill), uploads_before);
    common::unlock(base.path());
}

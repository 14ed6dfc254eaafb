//! A directory that is a mount point (a tmpfs mounted at the target, as a volume is mounted
//! into a container) cannot be renamed: it is restored by replacing its contents, staged
//! inside the mount. The restored tree equals the original by the independent fingerprint
//! (names as bytes, modes, owners, ns mtimes, the top directory's too), the target is still
//! the same mount, nothing of amber-dr's is left in it, and `--dry-run` says which method it
//! uses. Needs root (mount); under AMBER_DR_REQUIRE_SERVICES=1 a failed mount fails the test.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use amber_dr_core::testkit;
use amber_dr_core::{
    BackupOptions, Component, RestoreOptions, RestorePlanOptions, Runner, Selection,
};
use amber_dr_files::{Files, FilesConfig};

/// Unmounts the tmpfs when the test ends, whatever happens.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        common::unlock(&self.0);
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn mount_tmpfs(at: &Path) -> Option<Mount> {
    std::fs::create_dir_all(at).unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64m", "amber-dr-test"])
        .arg(at)
        .status()
        .is_ok_and(|s| s.success());
    ok.then(|| Mount(at.to_path_buf()))
}

#[tokio::test]
async fn a_mount_point_is_restored_by_replacing_its_contents() {
    let base = tempfile::tempdir().unwrap();
    let target = base.path().join("uploads");
    let Some(_mount) = mount_tmpfs(&target) else {
        testkit::service_missing("mounting a tmpfs (needs root)");
        return;
    };
    let dev = std::fs::metadata(&target).unwrap().dev();
    assert_ne!(dev, std::fs::metadata(base.path()).unwrap().dev());
    assert!(amber_dr_core::archive::is_mount_point(&target));

    common::populate(&target, 3);
    let original = common::fingerprint(&target);
    let (repo, _repo_dir) = testkit::temp_repo();
    let c: Arc<dyn Component> = Arc::new(Files::new("uploads", FilesConfig::new(&target)));
    let runner = Runner::new(repo, vec![c]);
    let m = runner.backup(&BackupOptions::default()).await.unwrap();
    assert!(m.is_complete(), "{:?}", m.components);

    common::destroy(&target);
    assert_ne!(common::fingerprint(&target), original);

    // The dry run names the method.
    let dry = runner
        .restore(
            &m.id,
            &RestorePlanOptions {
                options: RestoreOptions::new().dry_run(true),
                selection: Selection::all(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let actions: Vec<&String> = dry
        .components
        .iter()
        .flat_map(|c| c.report.iter().flat_map(|r| &r.actions))
        .collect();
    assert!(
        actions
            .iter()
            .any(|a| a.contains("replace the contents of the mount point")),
        "{actions:?}"
    );

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
    assert_eq!(
        common::fingerprint(&target),
        original,
        "restored tree differs"
    );
    assert_eq!(
        std::fs::metadata(&target).unwrap().dev(),
        dev,
        "the target is no longer the mount"
    );
    let ours: Vec<String> = std::fs::read_dir(&target)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".amber-dr-"))
        .collect();
    assert!(ours.is_empty(), "left in the mount: {ours:?}");
    let siblings: Vec<String> = std::fs::read_dir(base.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(siblings, vec!["uploads".to_string()], "left beside it");
    let said: Vec<&String> = out
        .components
        .iter()
        .flat_map(|c| c.report.iter().flat_map(|r| &r.actions))
        .collect();
    assert!(
        said.iter().any(|a| a.contains("is a mount point")),
        "{said:?}"
    );

    // The safety backup (the destroyed state) restores into the mount too.
    let back = runner
        .restore(
            out.safety_backup.as_deref().unwrap(),
            &RestorePlanOptions::default(),
        )
        .await
        .unwrap();
    assert!(back.is_ok(), "{:?}", back.components);
    assert_ne!(common::fingerprint(&target), original);
}

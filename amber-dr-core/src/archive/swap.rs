//! The staged directory swap: a restored tree is built in a staging directory beside its
//! target and only then swapped in — in one atomic exchange (`renameat2(RENAME_EXCHANGE)`, so
//! that no crash leaves the target missing), or with two renames where the file system cannot
//! exchange —, so that a failed or refused restore leaves the old directory exactly as it was.
//!
//! Beside a target `DIR` live, for the time of one restore by process `PID`:
//! `.DIR.amber-dr-staging-PID` (the new tree being filled) and `.DIR.amber-dr-old-PID` (the old
//! tree between the two renames, removed last). A staging directory whose process is gone is
//! removed at the next restore; a set-aside directory is never removed automatically (it may be
//! the only copy of the old data), the restore warns about it instead.
//!
//! A target that is a **mount point** (a volume mounted into a container, a bind mount, its
//! own file system) cannot be renamed. It is restored by replacing its contents instead: the
//! staging directory is `DIR/.amber-dr-staging-PID` (inside the mount, so that every move is a
//! rename within one file system), and the swap moves the old entries into
//! `DIR/.amber-dr-old-PID`, the staged ones into `DIR`, copies the staged root's mode, owner
//! and mtime onto `DIR`, and removes both (a failed move puts everything back). This swap is
//! not one atomic step: a crash in the middle leaves both directories inside `DIR`, named by
//! the next restore.

use std::path::{Path, PathBuf};

use crate::{Error, RestoreReport, Result};

/// The error of a swap that could not be done, on behalf of component `name` of `kind`.
fn swap_err(kind: &str, name: &str, message: String) -> Error {
    Error::component(name, kind, "restore", message)
}

fn no_parent(kind: &str, name: &str, target: &Path) -> Error {
    swap_err(
        kind,
        name,
        format!(
            "target `{}` has no parent directory to restore beside",
            target.display()
        ),
    )
}

fn rename_failed(kind: &str, name: &str, target: &Path, source: std::io::Error) -> Error {
    swap_err(
        kind,
        name,
        format!(
            "cannot swap the restored directory into `{}`: {source}; the old directory is unchanged",
            target.display()
        ),
    )
}

/// The parent directory and the file name of `target`.
fn split(kind: &str, name: &str, target: &Path) -> Result<(PathBuf, String)> {
    let parent = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let Some(file) = target.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return Err(no_parent(kind, name, target));
    };
    Ok((parent, file))
}

/// Whether `target` is a mount point (it cannot be renamed: see the module docs): another
/// file system than its parent's, or listed as a mount point in `/proc/self/mountinfo` (a bind
/// mount of the same file system).
pub fn is_mount_point(target: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(m) = std::fs::metadata(target) else {
        return false;
    };
    let parent = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if std::fs::metadata(parent).is_ok_and(|p| p.dev() != m.dev()) {
        return true;
    }
    let Ok(real) = std::fs::canonicalize(target) else {
        return false;
    };
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    // Field 5 is the mount point, with spaces and backslashes escaped in octal.
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|mp| unescape_mountinfo(mp) == real.as_os_str().as_encoded_bytes())
}

fn unescape_mountinfo(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// Fill a staging directory beside `target` with `fill`, then swap it in: target → aside,
/// staging → target (undone if the second rename fails), aside removed. A failed `fill`
/// removes the staging directory and leaves the target as it was. `exists`: whether the target
/// exists now (nothing to set aside otherwise). Errors name component `name` of `kind`; a set
/// aside directory that cannot be removed, and leftovers of interrupted restores, are warnings
/// of `report`.
pub async fn replace_dir<T, F, Fut>(
    kind: &str,
    name: &str,
    target: &Path,
    exists: bool,
    report: &mut RestoreReport,
    fill: F,
) -> Result<T>
where
    F: FnOnce(PathBuf) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let (staged, value) = stage_dir(kind, name, target, report, fill).await?;
    staged.swap_in(exists, report).await?;
    Ok(value)
}

/// A filled staging directory beside its target, waiting to be swapped in
/// ([`Self::swap_in`]); dropped without that, it is removed (the target never changed).
#[derive(Debug)]
pub struct StagedDir {
    kind: String,
    name: String,
    target: PathBuf,
    staging: PathBuf,
    aside: PathBuf,
    pending: bool,
    /// The target is a mount point: staged inside it, its contents replaced.
    in_mount: bool,
}

/// The first half of [`replace_dir`]: a staging directory beside `target` (stale ones of
/// interrupted restores removed first) filled by `fill`. A failed `fill` removes it.
pub async fn stage_dir<T, F, Fut>(
    kind: &str,
    name: &str,
    target: &Path,
    report: &mut RestoreReport,
    fill: F,
) -> Result<(StagedDir, T)>
where
    F: FnOnce(PathBuf) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let (parent, file) = split(kind, name, target)?;
    if !parent.is_dir() {
        return Err(no_parent(kind, name, target));
    }
    let in_mount = is_mount_point(target);
    let (dir, base) = if in_mount {
        (target.to_path_buf(), ".amber-dr-".to_string())
    } else {
        (parent.clone(), format!(".{file}.amber-dr-"))
    };
    let pid = std::process::id();
    clear_leftovers(&dir, &base, report).await?;
    // Unique within this process too (two restores of one target may be staged at once).
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let suffix = if seq == 0 {
        pid.to_string()
    } else {
        format!("{pid}.{seq}")
    };
    let staged = StagedDir {
        kind: kind.to_string(),
        name: name.to_string(),
        target: target.to_path_buf(),
        staging: dir.join(format!("{base}staging-{suffix}")),
        aside: dir.join(format!("{base}old-{suffix}")),
        pending: true,
        in_mount,
    };
    tokio::fs::create_dir(&staged.staging)
        .await
        .map_err(|e| Error::io("create staging directory", &staged.staging, e))?;
    // On failure `staged` is dropped, which removes the staging directory.
    let value = fill(staged.staging.clone()).await?;
    Ok((staged, value))
}

impl StagedDir {
    /// The staging directory.
    pub fn path(&self) -> &Path {
        &self.staging
    }

    /// The directory it replaces.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Swap the staged tree in: target → aside (when `exists`), staging → target (undone if
    /// that fails), aside removed (a warning of `report` if it cannot be).
    pub async fn swap_in(mut self, exists: bool, report: &mut RestoreReport) -> Result<()> {
        if self.in_mount {
            let (staging, aside, target) = (
                self.staging.clone(),
                self.aside.clone(),
                self.target.clone(),
            );
            let moved =
                tokio::task::spawn_blocking(move || swap_contents(&target, &staging, &aside))
                    .await
                    .map_err(|e| Error::Other(format!("a swap task died: {e}")))?;
            match moved {
                Ok(warnings) => report.warnings.extend(warnings),
                Err(source) => {
                    return Err(rename_failed(&self.kind, &self.name, &self.target, source))
                }
            }
            self.pending = false;
            report.actions.push(format!(
                "`{}` is a mount point: its contents were replaced (staged inside it)",
                self.target.display()
            ));
            return Ok(());
        }
        let (kind, name, target) = (&self.kind, &self.name, &self.target);
        crash_point("before-swap");
        if exists && exchange(&self.staging, target) {
            crash_point("after-swap");
            // One atomic step: the target is never missing, even after a crash; the old tree
            // is now at the staging path (removed now, or as a stale staging directory by the
            // next restore).
            self.pending = false;
            if let Err(e) = tokio::fs::remove_dir_all(&self.staging).await {
                report.warnings.push(format!(
                    "restored, but the old directory `{}` could not be removed: {e}",
                    self.staging.display()
                ));
            }
            return Ok(());
        }
        if exists {
            if let Err(source) = tokio::fs::rename(target, &self.aside).await {
                return Err(rename_failed(kind, name, target, source));
            }
        }
        if let Err(source) = tokio::fs::rename(&self.staging, target).await {
            if exists {
                let _ = tokio::fs::rename(&self.aside, target).await;
            }
            return Err(rename_failed(kind, name, target, source));
        }
        self.pending = false;
        if exists {
            if let Err(e) = tokio::fs::remove_dir_all(&self.aside).await {
                report.warnings.push(format!(
                    "restored, but the old directory `{}` could not be removed: {e}",
                    self.aside.display()
                ));
            }
        }
        Ok(())
    }
}

impl Drop for StagedDir {
    fn drop(&mut self) {
        if self.pending {
            // Not swapped in (failed, refused, discarded or cancelled): the target is as it was.
            let _ = std::fs::remove_dir_all(&self.staging);
        }
    }
}

/// Tests: abort the process here when `AMBER_DR_TEST_CRASH_AT` names this point
/// (`before-swap`, `after-swap`), the way a crash or `kill -9` would end it, so that the crash
/// guarantees of the swap are tested through the real binary.
fn crash_point(point: &str) {
    if std::env::var_os("AMBER_DR_TEST_CRASH_AT").is_some_and(|v| v == point) {
        eprintln!("AMBER_DR_TEST_CRASH_AT={point}: aborting");
        std::process::abort();
    }
}

/// Exchange `a` and `b` atomically (`renameat2(RENAME_EXCHANGE)`); false where the file system
/// or kernel cannot (the caller then renames twice).
fn exchange(a: &Path, b: &Path) -> bool {
    use rustix::fs::{renameat_with, RenameFlags, CWD};
    match renameat_with(CWD, a, CWD, b, RenameFlags::EXCHANGE) {
        Ok(()) => true,
        Err(e) => {
            tracing::debug!(error = %e, "RENAME_EXCHANGE not available; renaming twice");
            false
        }
    }
}

/// The swap of a mount point: `target`'s entries (but amber-dr's own) into `aside`, the
/// entries of `staging` into `target`, the staged root's mode, owner and mtime onto `target`.
/// A failed move puts everything back where it was. Returns warnings (what could not be
/// removed afterwards).
fn swap_contents(target: &Path, staging: &Path, aside: &Path) -> std::io::Result<Vec<String>> {
    use std::os::unix::fs::MetadataExt;
    let names = |dir: &Path, skip_ours: bool| -> std::io::Result<Vec<std::ffi::OsString>> {
        let mut v = Vec::new();
        for e in std::fs::read_dir(dir)? {
            let n = e?.file_name();
            if !(skip_ours && n.as_encoded_bytes().starts_with(b".amber-dr-")) {
                v.push(n);
            }
        }
        Ok(v)
    };
    let move_all =
        |from: &Path, to: &Path, list: &[std::ffi::OsString]| -> std::io::Result<usize> {
            for (i, n) in list.iter().enumerate() {
                if let Err(e) = std::fs::rename(from.join(n), to.join(n)) {
                    // Back where they came from.
                    for m in &list[..i] {
                        let _ = std::fs::rename(to.join(m), from.join(m));
                    }
                    return Err(e);
                }
            }
            Ok(list.len())
        };
    // The staged root's metadata, before moving its entries out changes its mtime.
    let m = std::fs::symlink_metadata(staging)?;
    let (mode, mtime) = super::tree::root_meta(staging)?;
    std::fs::create_dir(aside)?;
    let old = names(target, true)?;
    move_all(target, aside, &old)?;
    let new = names(staging, false)?;
    if let Err(e) = move_all(staging, target, &new) {
        let _ = move_all(aside, target, &old);
        return Err(e);
    }
    // Removed before the root's mtime is set (removing changes it).
    let mut warnings = Vec::new();
    for d in [staging, aside] {
        if let Err(e) = std::fs::remove_dir_all(d) {
            warnings.push(format!(
                "restored, but `{}` could not be removed: {e}",
                d.display()
            ));
        }
    }
    match std::os::unix::fs::lchown(target, Some(m.uid()), Some(m.gid())) {
        Err(e) if e.kind() != std::io::ErrorKind::PermissionDenied => return Err(e),
        _ => {}
    }
    super::extract::apply_root_meta(target, mode, mtime)?;
    Ok(warnings)
}

/// Remove `target` the way a swap replaces it: renamed aside first (so that it disappears at
/// once), then deleted. Nothing is done when it does not exist.
pub async fn remove_dir(kind: &str, name: &str, target: &Path, exists: bool) -> Result<()> {
    let (parent, file) = split(kind, name, target)?;
    if !exists {
        return Ok(());
    }
    let aside = parent.join(format!(".{file}.amber-dr-old-{}", std::process::id()));
    tokio::fs::rename(target, &aside)
        .await
        .map_err(|source| rename_failed(kind, name, target, source))?;
    tokio::fs::remove_dir_all(&aside)
        .await
        .map_err(|e| Error::io("remove old directory", &aside, e))
}

/// Remove staging directories of earlier restores whose process is gone (an interrupted
/// restore), and point out directories set aside by a restore that died between its two
/// renames: those may hold the only copy of the old data, so they are never deleted here.
async fn clear_leftovers(parent: &Path, base: &str, report: &mut RestoreReport) -> Result<()> {
    let staging_prefix = format!("{base}staging-");
    let old_prefix = format!("{base}old-");
    let mut rd = match tokio::fs::read_dir(parent).await {
        Ok(rd) => rd,
        Err(e) => return Err(Error::io("list", parent, e)),
    };
    while let Ok(Some(e)) = rd.next_entry().await {
        let n = e.file_name().to_string_lossy().into_owned();
        // `PID` or `PID.SEQ` (see `stage_dir`).
        let pid_of = |prefix: &str| {
            n.strip_prefix(prefix)
                .and_then(|p| p.split('.').next())
                .and_then(|p| p.parse::<u32>().ok())
        };
        if let Some(pid) = pid_of(&staging_prefix) {
            if pid == std::process::id() || !Path::new(&format!("/proc/{pid}")).exists() {
                tokio::fs::remove_dir_all(e.path())
                    .await
                    .map_err(|err| Error::io("remove stale staging directory", e.path(), err))?;
                if pid != std::process::id() {
                    report.warnings.push(format!(
                        "removed `{}`, the staging directory of an earlier restore that did not finish",
                        e.path().display()
                    ));
                }
            }
        } else if pid_of(&old_prefix).is_some_and(|pid| pid != std::process::id()) {
            report.warnings.push(format!(
                "`{}` was set aside by an interrupted restore and may hold older data; remove it when it is no longer needed",
                e.path().display()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exchange_swaps_two_trees_in_one_step() {
        let tmp = tempfile::tempdir().expect("tmp");
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        std::fs::create_dir(&a).expect("mkdir");
        std::fs::create_dir(&b).expect("mkdir");
        std::fs::write(a.join("new"), b"new").expect("write");
        std::fs::write(b.join("old"), b"old").expect("write");
        if !exchange(&a, &b) {
            // A file system without RENAME_EXCHANGE: swap_in renames twice there.
            eprintln!("SKIPPED: the temp dir's file system cannot exchange");
            return;
        }
        assert!(b.join("new").exists() && a.join("old").exists());
        assert!(!exchange(&a, &tmp.path().join("missing")));
    }

    #[tokio::test]
    async fn a_failed_fill_leaves_the_target_and_no_staging_directory() {
        let tmp = tempfile::tempdir().expect("tmp");
        let target = tmp.path().join("data");
        std::fs::create_dir(&target).expect("mkdir");
        std::fs::write(target.join("old"), b"old").expect("write");
        let mut report = RestoreReport::default();
        let err = replace_dir("files", "t", &target, true, &mut report, |st| async move {
            std::fs::write(st.join("new"), b"new").expect("write");
            Err::<(), _>(Error::Other("refused".into()))
        })
        .await
        .expect_err("fill failed");
        assert_eq!(err.to_string(), "refused");
        assert_eq!(std::fs::read(target.join("old")).expect("old"), b"old");
        let names: Vec<_> = std::fs::read_dir(tmp.path())
            .expect("ls")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("data")]);
    }

    #[tokio::test]
    async fn a_swap_replaces_the_target_and_clears_stale_staging_but_keeps_set_aside_data() {
        let tmp = tempfile::tempdir().expect("tmp");
        let target = tmp.path().join("data");
        std::fs::create_dir(&target).expect("mkdir");
        std::fs::write(target.join("old"), b"old").expect("write");
        // Beyond any pid_max: the leftovers of a restore whose process is gone.
        let stale = tmp.path().join(".data.amber-dr-staging-999999999");
        let aside = tmp.path().join(".data.amber-dr-old-999999999");
        std::fs::create_dir(&stale).expect("mkdir");
        std::fs::create_dir(&aside).expect("mkdir");
        let mut report = RestoreReport::default();
        let n = replace_dir("files", "t", &target, true, &mut report, |st| async move {
            std::fs::write(st.join("new"), b"new").expect("write");
            Ok(7)
        })
        .await
        .expect("swap");
        assert_eq!(n, 7);
        assert!(!target.join("old").exists());
        assert_eq!(std::fs::read(target.join("new")).expect("new"), b"new");
        assert!(!stale.exists(), "stale staging directory kept");
        assert!(aside.exists(), "set-aside data removed");
        assert!(
            report.warnings.iter().any(|w| w.contains("interrupted")),
            "{:?}",
            report.warnings
        );
        assert!(
            report
                .warnings
                .iter()
                .any(|w| w.contains("staging directory of an earlier restore")),
            "{:?}",
            report.warnings
        );
        remove_dir("files", "t", &target, true)
            .await
            .expect("remove");
        assert!(!target.exists());
    }
}

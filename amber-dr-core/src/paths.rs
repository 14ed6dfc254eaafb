//! Checks on local paths that come from a config file or the command line, shared by every
//! driver and the CLI: an empty path never means "here", and a restore never replaces a
//! system directory, a symlinked location, the config's or the repository's directory, or a
//! directory that holds data unless the operator said so.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Directories a restore never replaces (nor anything inside the first group).
const SYSTEM_TREES: &[&str] = &[
    "/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/proc", "/sbin", "/sys", "/usr",
];
/// Directories a restore never replaces (they themselves, and their direct children).
const SYSTEM_DIRS: &[&str] = &["/home", "/opt", "/root", "/run", "/var"];
/// Directories a restore never replaces (they themselves only).
const SYSTEM_ROOTS: &[&str] = &["/", "/media", "/mnt", "/srv", "/tmp"];

/// A config path that is empty or only whitespace (also a `${VAR}` set to an empty string) is
/// a configuration error naming `location`: it would otherwise mean the config file's own
/// directory.
pub fn check_not_empty(location: impl Into<String>, path: &Path) -> Result<()> {
    if path.as_os_str().to_string_lossy().trim().is_empty() {
        return Err(Error::config(
            location,
            "is empty: give a directory (an empty value, or a ${VAR} set to an empty string, would mean the config file's own directory)",
        ));
    }
    Ok(())
}

/// Why `target` (a directory a restore would replace whole) is refused, if it is:
/// - it is empty, or a symbolic link (`raw`, as given, before links are resolved);
/// - it is a system directory (`/`, `/etc`, `/usr`, `/var`, `/home`, ... and what lies under
///   `/etc`, `/usr`, ...);
/// - it is or contains one of `protected` (e.g. the config file's directory or the
///   repository's, with words saying which);
/// - it exists, is not empty and `force` is not set (its current content is not covered by
///   the safety backup, which saves the configured locations).
pub fn refuse_restore_dir(
    raw: &Path,
    target: &Path,
    force: bool,
    protected: &[(&str, PathBuf)],
) -> std::result::Result<(), String> {
    let shown = raw.display();
    if raw.as_os_str().to_string_lossy().trim().is_empty() {
        return Err("the target directory is empty".into());
    }
    if std::fs::symlink_metadata(raw)
        .map(|m| m.file_type().is_symlink())
        .unwrap_or(false)
    {
        return Err(format!(
            "refusing to restore into `{shown}`: it is a symbolic link (a restore would replace what it points to); name the real directory"
        ));
    }
    if is_system_dir(target) {
        return Err(format!(
            "refusing to restore into `{}`: a restore replaces its target whole, and this is a system directory",
            target.display()
        ));
    }
    for (what, p) in protected {
        if p.starts_with(target) {
            return Err(format!(
                "refusing to restore into `{}`: a restore replaces it whole, and it holds {what} `{}`",
                target.display(),
                p.display()
            ));
        }
    }
    if !force {
        if let Ok(mut entries) = std::fs::read_dir(target) {
            if entries.next().is_some() {
                return Err(format!(
                    "`{}` exists and is not empty; a restore replaces it whole and the safety backup does not cover it: empty it, choose a new directory, or pass --force to replace it",
                    target.display()
                ));
            }
        }
    }
    Ok(())
}

/// True for a directory a restore must never replace (see [`refuse_restore_dir`]).
pub fn is_system_dir(p: &Path) -> bool {
    SYSTEM_TREES.iter().any(|s| p.starts_with(s))
        || SYSTEM_DIRS
            .iter()
            .any(|s| p == Path::new(s) || p.parent() == Some(Path::new(s)))
        || SYSTEM_ROOTS.iter().any(|s| p == Path::new(s))
        || std::env::var_os("HOME").is_some_and(|h| !h.is_empty() && p == Path::new(&h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_dirs() {
        for p in [
            "/",
            "/etc",
            "/etc/nginx",
            "/usr",
            "/usr/local/x",
            "/var",
            "/var/lib",
            "/home",
            "/home/alice",
            "/tmp",
        ] {
            assert!(is_system_dir(Path::new(p)), "{p}");
        }
        for p in [
            "/var/lib/app/uploads",
            "/srv/amber/uploads",
            "/data",
            "/home/alice/uploads",
            "/tmp/x",
        ] {
            assert!(!is_system_dir(Path::new(p)), "{p}");
        }
    }

    #[test]
    fn refusals() {
        let d = tempfile::tempdir().expect("tempdir");
        let full = d.path().join("full");
        std::fs::create_dir(&full).expect("mkdir");
        std::fs::write(full.join("f"), b"x").expect("write");
        let err = refuse_restore_dir(&full, &full, false, &[]).expect_err("non-empty");
        assert!(err.contains("--force"), "{err}");
        refuse_restore_dir(&full, &full, true, &[]).expect("forced");
        let new = d.path().join("new");
        refuse_restore_dir(&new, &new, false, &[]).expect("new directory");
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&full, &link).expect("symlink");
        let err = refuse_restore_dir(&link, &full, true, &[]).expect_err("symlink");
        assert!(err.contains("symbolic link"), "{err}");
        let err = refuse_restore_dir(Path::new("/etc"), Path::new("/etc"), true, &[])
            .expect_err("system");
        assert!(err.contains("system directory"), "{err}");
        let err = refuse_restore_dir(
            d.path(),
            d.path(),
            true,
            &[("the config file's directory", full.clone())],
        )
        .expect_err("protected");
        assert!(err.contains("config file's directory"), "{err}");
        assert!(check_not_empty("x", Path::new("  ")).is_err());
        assert!(check_not_empty("x", Path::new("a")).is_ok());
    }
}

//! Reading a tar stream back: checking every entry, or extracting it into a new staging
//! directory with the guards against hostile archives (no absolute paths, no `..`, nothing
//! written through a symlink or outside the staging directory, hard links only to files of the
//! same archive).

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Component as PathComponent, Path, PathBuf};

use tar::{EntryType, Header};

use super::tree::{Fingerprint, Kind, MTime, TreeSummary};
use crate::{Error, Progress};

/// What to do with an archive being read.
pub enum ReadMode<'a> {
    /// Decode and check every entry, write nothing.
    Check,
    /// Extract into this (new, empty) staging directory.
    Extract(&'a Path),
}

/// Turn an entry's raw path into a safe relative path, or say why it is refused.
pub fn safe_rel_path(bytes: &[u8]) -> Result<PathBuf, String> {
    let p = Path::new(OsStr::from_bytes(bytes));
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            PathComponent::Normal(s) => out.push(s),
            PathComponent::CurDir => {}
            PathComponent::ParentDir => return Err("its path contains `..`".into()),
            PathComponent::RootDir | PathComponent::Prefix(_) => {
                return Err("its path is absolute".into())
            }
        }
    }
    Ok(out)
}

/// The error refusing entry `entry` of `artifact`, saying why.
pub fn unsafe_entry(artifact: &str, entry: &[u8], why: &str) -> Error {
    Error::Unsafe {
        artifact: artifact.to_string(),
        message: format!("entry `{}`: {why}", String::from_utf8_lossy(entry)),
    }
}

fn io_err(op: &'static str, path: &Path, e: io::Error) -> Error {
    Error::from_io(op, path, e)
}

/// Set owner (best effort: only root may give files away), mode and mtime of `path`.
fn apply_meta(
    path: &Path,
    h: &Header,
    mode: Option<u32>,
    mtime: MTime,
    symlink: bool,
) -> io::Result<()> {
    if let (Ok(uid), Ok(gid)) = (h.uid(), h.gid()) {
        let (uid, gid) = (u32::try_from(uid).ok(), u32::try_from(gid).ok());
        let res = std::os::unix::fs::lchown(path, uid, gid);
        if let Err(e) = res {
            if e.kind() != io::ErrorKind::PermissionDenied {
                return Err(e);
            }
        }
    }
    if let Some(mode) = mode {
        if !symlink {
            fs::set_permissions(
                path,
                std::os::unix::fs::PermissionsExt::from_mode(mode & 0o7777),
            )?;
        }
    }
    let ft = mtime.filetime();
    filetime::set_symlink_file_times(path, ft, ft)
}

/// Read a tar stream: check it, or extract it into a staging directory. Every entry is
/// validated: no absolute paths, no `..`, nothing written through a symlink, nothing outside
/// the staging directory. Returns the summary and the reader (so the caller can drain it).
///
/// `root_mode` and `root_mtime` are the root's recorded metadata (they enter the
/// fingerprint). `strip`: the entries lie under this directory prefix (a foreign archive, see
/// [`super::foreign_layout`]); entries above or at it are skipped, entries outside it refused.
pub fn read_archive<R: Read>(
    reader: R,
    artifact: &str,
    mode: ReadMode<'_>,
    root_mode: u32,
    root_mtime: MTime,
    strip: Option<&Path>,
    progress: &Progress,
) -> crate::Result<(TreeSummary, R)> {
    let mut archive = tar::Archive::new(reader);
    let mut fp = Fingerprint::new(root_mode, root_mtime);
    let mut warnings = Vec::new();
    // Directories seen/created (their metadata is applied last, deepest first), and symlinks.
    let mut dirs: HashSet<PathBuf> = HashSet::new();
    let mut dir_meta: Vec<(PathBuf, Header, MTime)> = Vec::new();
    let mut links: HashSet<PathBuf> = HashSet::new();
    let staging = match mode {
        ReadMode::Extract(p) => Some(p),
        ReadMode::Check => None,
    };
    let read_err = |e: io::Error| -> Error {
        // Damage found by the artifact reader travels inside the io::Error.
        let e = Error::from_io("read archive", artifact, e);
        match e {
            Error::Io { source, .. } => Error::Corrupt {
                artifact: artifact.to_string(),
                message: format!("not a readable tar stream: {source}"),
            },
            other => other,
        }
    };
    let mut buf = vec![0u8; 256 * 1024];
    for entry in archive.entries().map_err(read_err)? {
        let mut entry = entry.map_err(read_err)?;
        let raw_path = entry.path_bytes().into_owned();
        let mut rel =
            safe_rel_path(&raw_path).map_err(|why| unsafe_entry(artifact, &raw_path, &why))?;
        if let Some(prefix) = strip {
            // A foreign archive of `prefix/...`: its entries above and at `prefix` are the
            // root's ancestors and the root itself; everything else must lie below it.
            if prefix.starts_with(&rel) {
                continue;
            }
            rel = rel
                .strip_prefix(prefix)
                .map_err(|_| {
                    unsafe_entry(
                        artifact,
                        &raw_path,
                        &format!(
                            "it lies outside `{}`, the archive's top directory",
                            prefix.display()
                        ),
                    )
                })?
                .to_path_buf();
        }
        let kind = entry.header().entry_type();
        if kind == EntryType::XGlobalHeader {
            continue;
        }
        let mut mtime = MTime {
            secs: i64::try_from(entry.header().mtime().unwrap_or(0)).unwrap_or(0),
            nanos: 0,
        };
        if let Some(exts) = entry.pax_extensions().map_err(read_err)? {
            for ext in exts.flatten() {
                if ext.key() == Ok("mtime") {
                    if let Some(m) = ext.value().ok().and_then(MTime::parse_pax) {
                        mtime = m;
                    }
                }
            }
        }
        if rel.as_os_str().is_empty() {
            // "./": the root itself; its metadata comes from the record.
            continue;
        }
        // Every ancestor must be a directory of this archive, never a symlink.
        let mut ancestors: Vec<&Path> = rel
            .ancestors()
            .skip(1)
            .filter(|a| !a.as_os_str().is_empty())
            .collect();
        ancestors.reverse();
        for a in ancestors {
            if links.contains(a) {
                return Err(unsafe_entry(
                    artifact,
                    &raw_path,
                    &format!("it would be written through the symlink `{}`", a.display()),
                ));
            }
            if !dirs.contains(a) {
                // A foreign archive may omit parent directories: create them.
                if let Some(st) = staging {
                    let p = st.join(a);
                    match fs::create_dir(&p) {
                        Ok(()) => {}
                        Err(e) => return Err(io_err("create directory", &p, e)),
                    }
                }
                dirs.insert(a.to_path_buf());
            }
        }
        let header = entry.header().clone();
        let hmode = header.mode().unwrap_or(0o644);
        match kind {
            EntryType::Directory => {
                if dirs.contains(&rel) {
                    return Err(unsafe_entry(
                        artifact,
                        &raw_path,
                        "duplicate directory entry",
                    ));
                }
                if let Some(st) = staging {
                    let p = st.join(&rel);
                    std::fs::DirBuilder::new()
                        .mode(0o700)
                        .create(&p)
                        .map_err(|e| io_err("create directory", &p, e))?;
                    dir_meta.push((p, header, mtime));
                }
                fp.add(Kind::Dir, &rel, hmode, 0, mtime, b"");
                dirs.insert(rel);
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| unsafe_entry(artifact, &raw_path, "symlink without a target"))?
                    .into_owned();
                if let Some(st) = staging {
                    let p = st.join(&rel);
                    std::os::unix::fs::symlink(OsStr::from_bytes(&target), &p)
                        .map_err(|e| io_err("create symlink", &p, e))?;
                    apply_meta(&p, &header, None, mtime, true)
                        .map_err(|e| io_err("set metadata of", &p, e))?;
                }
                fp.add(Kind::Symlink, &rel, 0, 0, mtime, &target);
                links.insert(rel);
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                let mut size = 0u64;
                if let Some(st) = staging {
                    let p = st.join(&rel);
                    let mut f = fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(0o600)
                        .open(&p)
                        .map_err(|e| io_err("create file", &p, e))?;
                    loop {
                        let n = entry.read(&mut buf).map_err(read_err)?;
                        if n == 0 {
                            break;
                        }
                        f.write_all(&buf[..n]).map_err(|e| io_err("write", &p, e))?;
                        size += n as u64;
                    }
                    drop(f);
                    apply_meta(&p, &header, Some(hmode), mtime, false)
                        .map_err(|e| io_err("set metadata of", &p, e))?;
                } else {
                    loop {
                        let n = entry.read(&mut buf).map_err(read_err)?;
                        if n == 0 {
                            break;
                        }
                        size += n as u64;
                    }
                }
                fp.add(Kind::File, &rel, hmode, size, mtime, b"");
                progress.add_items(1);
            }
            EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| unsafe_entry(artifact, &raw_path, "hard link without a target"))?
                    .into_owned();
                let mut trel = safe_rel_path(&target).map_err(|why| {
                    unsafe_entry(artifact, &raw_path, &format!("hard link target: {why}"))
                })?;
                if let Some(prefix) = strip {
                    trel = trel
                        .strip_prefix(prefix)
                        .map_err(|_| {
                            unsafe_entry(
                                artifact,
                                &raw_path,
                                "hard link target outside the archive's top directory",
                            )
                        })?
                        .to_path_buf();
                }
                if trel.ancestors().any(|a| links.contains(a)) {
                    return Err(unsafe_entry(
                        artifact,
                        &raw_path,
                        "hard link target goes through a symlink",
                    ));
                }
                let mut size = 0;
                if let Some(st) = staging {
                    let (src, p) = (st.join(&trel), st.join(&rel));
                    let m = fs::symlink_metadata(&src)
                        .map_err(|e| io_err("find hard link target", &src, e))?;
                    if !m.is_file() {
                        return Err(unsafe_entry(
                            artifact,
                            &raw_path,
                            "hard link target is not a file of this archive",
                        ));
                    }
                    size = m.len();
                    fs::hard_link(&src, &p).map_err(|e| io_err("create hard link", &p, e))?;
                }
                fp.add(Kind::File, &rel, hmode, size, mtime, b"");
            }
            other => {
                warnings.push(format!(
                    "entry `{}` of type {other:?} (device, FIFO, ...) skipped",
                    rel.display()
                ));
            }
        }
    }
    // Directory modes and times last, deepest first, so that writing children and read-only
    // modes do not get in the way.
    for (p, h, mtime) in dir_meta.iter().rev() {
        let mode = h.mode().unwrap_or(0o755);
        apply_meta(p, h, Some(mode), *mtime, false).map_err(|e| io_err("set metadata of", p, e))?;
    }
    let reader = archive.into_inner();
    Ok((fp.finish(warnings), reader))
}

/// Apply the root directory's recorded mode and mtime.
pub fn apply_root_meta(root: &Path, mode: u32, mtime: MTime) -> io::Result<()> {
    fs::set_permissions(
        root,
        std::os::unix::fs::PermissionsExt::from_mode(mode & 0o7777),
    )?;
    let ft = mtime.filetime();
    filetime::set_symlink_file_times(root, ft, ft)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_paths_refused() {
        assert!(safe_rel_path(b"../x").is_err());
        assert!(safe_rel_path(b"a/../../x").is_err());
        assert!(safe_rel_path(b"/etc/passwd").is_err());
        assert_eq!(safe_rel_path(b"./a/b").expect("ok"), PathBuf::from("a/b"));
    }
}

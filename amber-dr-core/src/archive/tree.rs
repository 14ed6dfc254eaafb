//! Writing a directory tree into a tar stream (metadata kept exactly: modes, owners,
//! nanosecond mtimes as PAX records, symlinks as links, raw-byte names), and fingerprinting a
//! tree on disk or in an archive so that a copy can be compared with its record.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::Progress;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tar::{EntryType, Header};

/// Counts of a tree.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeStats {
    /// Regular files (hard links counted as files).
    pub files: u64,
    /// Directories below the root.
    pub directories: u64,
    /// Symbolic links.
    pub symlinks: u64,
    /// Bytes of the regular files.
    pub bytes: u64,
}

/// Modification time with nanoseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MTime {
    /// Seconds since the Unix epoch (negative before it).
    pub secs: i64,
    /// Nanoseconds, 0 to 999,999,999.
    pub nanos: u32,
}

impl MTime {
    pub(crate) fn of(meta: &fs::Metadata) -> Self {
        Self {
            secs: meta.mtime(),
            nanos: u32::try_from(meta.mtime_nsec()).unwrap_or(0),
        }
    }

    fn pax_value(&self) -> String {
        // PAX writes negative times as "-S.N" meaning -(S.N); keep it exact for the common case.
        if self.secs >= 0 {
            format!("{}.{:09}", self.secs, self.nanos)
        } else if self.nanos == 0 {
            format!("{}", self.secs)
        } else {
            // secs + nanos/1e9 with secs < 0: -(|secs| - 1) - (1e9 - nanos)/1e9
            format!("-{}.{:09}", -(self.secs + 1), 1_000_000_000 - self.nanos)
        }
    }

    pub(crate) fn parse_pax(v: &str) -> Option<Self> {
        let (neg, v) = match v.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, v),
        };
        let (s, frac) = v.split_once('.').unwrap_or((v, ""));
        let secs: i64 = s.parse().ok()?;
        let mut digits: String = frac.chars().take(9).collect();
        while digits.len() < 9 {
            digits.push('0');
        }
        let nanos: u32 = digits.parse().ok()?;
        Some(if !neg {
            Self { secs, nanos }
        } else if nanos == 0 {
            Self {
                secs: -secs,
                nanos: 0,
            }
        } else {
            Self {
                secs: -secs - 1,
                nanos: 1_000_000_000 - nanos,
            }
        })
    }

    pub(crate) fn filetime(&self) -> filetime::FileTime {
        filetime::FileTime::from_unix_time(self.secs, self.nanos)
    }
}

/// What a tree (or an archive of one) contains, with a fingerprint of its metadata.
#[derive(Debug, Clone, Default)]
pub struct TreeSummary {
    /// What the tree holds.
    pub stats: TreeStats,
    /// SHA-256 (hex) over every entry's path, type, mode, size, mtime and link target.
    pub fingerprint: String,
    /// What was skipped or changed while the tree was read, one line each.
    pub warnings: Vec<String>,
    /// The root directory's mode and mtime the fingerprint was made with (`write_tree`): the
    /// record must keep these, not the root's metadata after the walk (a file created in the
    /// top directory meanwhile changes its mtime).
    pub root: Option<(u32, MTime)>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    File,
    Dir,
    Symlink,
}

/// A SHA-256 over every entry's path, type, mode, size, mtime and link target, in walk order.
pub(crate) struct Fingerprint {
    hasher: Sha256,
    stats: TreeStats,
}

impl Fingerprint {
    pub(crate) fn new(root_mode: u32, root_mtime: MTime) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(b"amber-dr-files-v1\0");
        hasher.update(root_mode.to_le_bytes());
        hasher.update(root_mtime.secs.to_le_bytes());
        hasher.update(root_mtime.nanos.to_le_bytes());
        Self {
            hasher,
            stats: TreeStats::default(),
        }
    }

    pub(crate) fn add(
        &mut self,
        kind: Kind,
        rel: &Path,
        mode: u32,
        size: u64,
        mtime: MTime,
        link: &[u8],
    ) {
        let (tag, mode, size) = match kind {
            Kind::File => {
                self.stats.files += 1;
                self.stats.bytes += size;
                (b'f', mode & 0o7777, size)
            }
            Kind::Dir => {
                self.stats.directories += 1;
                (b'd', mode & 0o7777, 0)
            }
            Kind::Symlink => {
                self.stats.symlinks += 1;
                (b'l', 0, 0)
            }
        };
        let h = &mut self.hasher;
        h.update([tag]);
        h.update((rel.as_os_str().len() as u64).to_le_bytes());
        h.update(rel.as_os_str().as_bytes());
        h.update(mode.to_le_bytes());
        h.update(size.to_le_bytes());
        h.update(mtime.secs.to_le_bytes());
        h.update(mtime.nanos.to_le_bytes());
        h.update((link.len() as u64).to_le_bytes());
        h.update(link);
    }

    pub(crate) fn finish(self, warnings: Vec<String>) -> TreeSummary {
        TreeSummary {
            stats: self.stats,
            fingerprint: hex::encode(self.hasher.finalize()),
            warnings,
            root: None,
        }
    }
}

/// Root directory metadata (mode and mtime), kept in the record.
pub fn root_meta(root: &Path) -> io::Result<(u32, MTime)> {
    let m = fs::symlink_metadata(root)?;
    Ok((m.mode() & 0o7777, MTime::of(&m)))
}

/// Called for every entry: relative path, metadata (not following symlinks), warnings.
pub(crate) type Visitor<'a> =
    dyn FnMut(&Path, &fs::Metadata, &mut Vec<String>) -> io::Result<()> + 'a;

/// Entries of a directory inspected at once by [`walk`].
const INSPECT: usize = 1024;

/// Visit every entry under `root` (not following symlinks), depth first, names sorted bytewise.
pub(crate) fn walk(
    root: &Path,
    rel: &Path,
    warnings: &mut Vec<String>,
    visit: &mut Visitor<'_>,
) -> io::Result<()> {
    let dir = root.join(rel);
    let entries = match fs::read_dir(&dir) {
        Ok(rd) => rd,
        // A subdirectory deleted after it was listed: stored empty, and said so.
        Err(e) if e.kind() == io::ErrorKind::NotFound && !rel.as_os_str().is_empty() => {
            warnings.push(format!(
                "directory `{}` vanished while it was read; stored empty",
                rel.display()
            ));
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    // Each entry inspected relative to the open directory (`statx` of one name, not a lookup
    // of the whole path), [`INSPECT`] at a time before they are visited: the metadata of a
    // huge directory is never held whole. The directory stays open while its entries last
    // (a `DirEntry` holds it), so across the walk down only where more than [`INSPECT`]
    // entries are left: one descriptor per such level, not one per level.
    let mut names: Vec<(std::ffi::OsString, fs::DirEntry)> = Vec::new();
    for e in entries {
        let e = e?;
        names.push((e.file_name(), e));
    }
    names.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut names = names.into_iter();
    loop {
        // Not following a symlink (as `symlink_metadata`).
        let metas: Vec<(std::ffi::OsString, io::Result<fs::Metadata>)> = names
            .by_ref()
            .take(INSPECT)
            .map(|(name, entry)| (name, entry.metadata()))
            .collect();
        if metas.is_empty() {
            return Ok(());
        }
        for (name, meta) in metas {
            let rel2 = rel.join(&name);
            let meta = match meta {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    warnings.push(format!(
                        "`{}` vanished while the directory was read",
                        rel2.display()
                    ));
                    continue;
                }
                Err(e) => return Err(e),
            };
            visit(&rel2, &meta, warnings)?;
            if meta.is_dir() {
                walk(root, &rel2, warnings, visit)?;
            }
        }
    }
}

/// Fingerprint a tree on disk (used after a restore, independent of the archive).
pub fn scan_tree(root: &Path) -> io::Result<TreeSummary> {
    let (mode, mtime) = root_meta(root)?;
    let mut fp = Fingerprint::new(mode, mtime);
    let mut warnings = Vec::new();
    walk(root, Path::new(""), &mut warnings, &mut |rel, meta, _| {
        let ft = meta.file_type();
        let mt = MTime::of(meta);
        if ft.is_dir() {
            fp.add(Kind::Dir, rel, meta.mode(), 0, mt, b"");
        } else if ft.is_symlink() {
            let target = fs::read_link(root.join(rel))?;
            fp.add(Kind::Symlink, rel, 0, 0, mt, target.as_os_str().as_bytes());
        } else if ft.is_file() {
            fp.add(Kind::File, rel, meta.mode(), meta.len(), mt, b"");
        }
        Ok(())
    })?;
    Ok(fp.finish(warnings))
}

fn pax_record(key: &str, value: &str) -> Vec<u8> {
    let body = format!(" {key}={value}\n");
    let mut len = body.len() + 1;
    while len != body.len() + len.to_string().len() {
        len = body.len() + len.to_string().len();
    }
    format!("{len}{body}").into_bytes()
}

fn append_pax_mtime<W: Write>(b: &mut tar::Builder<W>, mtime: MTime) -> io::Result<()> {
    let data = pax_record("mtime", &mtime.pax_value());
    let mut h = Header::new_ustar();
    h.set_entry_type(EntryType::XHeader);
    h.set_path("PaxHeader")?;
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append(&h, data.as_slice())
}

/// Reads exactly `size` bytes from a file: pads with zeros if the file shrank, stops at
/// `size` if it grew (the caller warns).
struct ExactReader {
    file: io::Take<File>,
    remaining: u64,
    padded: u64,
}

impl Read for ExactReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let n = self.file.read(buf)?;
        let n = if n == 0 {
            // File shrank: pad.
            let n = buf
                .len()
                .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
            buf[..n].fill(0);
            self.padded += n as u64;
            n
        } else {
            n
        };
        self.remaining -= n as u64;
        Ok(n)
    }
}

fn base_header(meta: &fs::Metadata, kind: EntryType, size: u64) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(meta.mode() & 0o7777);
    h.set_uid(u64::from(meta.uid()));
    h.set_gid(u64::from(meta.gid()));
    h.set_mtime(u64::try_from(meta.mtime()).unwrap_or(0));
    h.set_size(size);
    h
}

/// Write the tree under `root` as a tar stream into `out` (symlinks never followed, entries in
/// bytewise name order, what changes meanwhile handled entry by entry and named in the
/// summary's warnings). Returns `out` and the summary; `progress` counts the files. With
/// `paths`, the relative path of every file and symlink stored is written there too, one JSON
/// string per line (the key set of `[[references]]` to the directory).
pub fn write_tree<W: Write>(
    root: &Path,
    out: W,
    progress: &Progress,
    mut paths: Option<&mut dyn Write>,
) -> io::Result<(W, TreeSummary)> {
    let mut index = |rel: &Path| -> io::Result<()> {
        let Some(p) = paths.as_mut() else {
            return Ok(());
        };
        serde_json::to_writer(
            &mut *p,
            &String::from_utf8_lossy(rel.as_os_str().as_bytes()),
        )
        .map_err(io::Error::other)?;
        p.write_all(b"\n")
    };
    let (root_mode, root_mtime) = root_meta(root)?;
    let mut fp = Fingerprint::new(root_mode, root_mtime);
    let mut b = tar::Builder::new(out);
    let mut warnings = Vec::new();
    walk(
        root,
        Path::new(""),
        &mut warnings,
        &mut |rel, meta, warnings| {
            let ft = meta.file_type();
            let mtime = MTime::of(meta);
            if ft.is_dir() {
                append_pax_mtime(&mut b, mtime)?;
                let mut h = base_header(meta, EntryType::Directory, 0);
                b.append_data(&mut h, rel, io::empty())?;
                fp.add(Kind::Dir, rel, meta.mode(), 0, mtime, b"");
            } else if ft.is_symlink() {
                let target = fs::read_link(root.join(rel))?;
                append_pax_mtime(&mut b, mtime)?;
                let mut h = base_header(meta, EntryType::Symlink, 0);
                b.append_link(&mut h, rel, &target)?;
                fp.add(
                    Kind::Symlink,
                    rel,
                    0,
                    0,
                    mtime,
                    target.as_os_str().as_bytes(),
                );
                index(rel)?;
            } else if ft.is_file() {
                let file = match File::open(root.join(rel)) {
                    Ok(f) => f,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        warnings.push(format!("`{}` vanished before it was read", rel.display()));
                        return Ok(());
                    }
                    Err(e) => {
                        return Err(io::Error::new(
                            e.kind(),
                            format!("cannot read `{}`: {e}", root.join(rel).display()),
                        ))
                    }
                };
                // Take the size and times of what we opened, not of what we listed.
                let fmeta = file.metadata()?;
                if !fmeta.is_file() || fmeta.ino() != meta.ino() {
                    warnings.push(format!(
                        "`{}` was replaced while the directory was read; skipped",
                        rel.display()
                    ));
                    return Ok(());
                }
                let size = fmeta.len();
                let mtime = MTime::of(&fmeta);
                append_pax_mtime(&mut b, mtime)?;
                let mut h = base_header(&fmeta, EntryType::Regular, size);
                let mut reader = ExactReader {
                    file: file.take(size),
                    remaining: size,
                    padded: 0,
                };
                b.append_data(&mut h, rel, &mut reader)?;
                if reader.padded > 0 {
                    warnings.push(format!(
                        "`{}` shrank while it was read; stored padded with zero bytes to its original {size} bytes (its restored copy ends with those zeros)",
                        rel.display()
                    ));
                } else if reader
                    .file
                    .into_inner()
                    .metadata()
                    .map(|m| m.len() != size)
                    .unwrap_or(false)
                {
                    warnings.push(format!(
                        "`{}` changed size while it was read; stored its first {size} bytes",
                        rel.display()
                    ));
                }
                fp.add(Kind::File, rel, fmeta.mode(), size, mtime, b"");
                index(rel)?;
                progress.add_items(1);
            } else {
                warnings.push(format!(
                    "`{}` is a socket, FIFO or device file; skipped",
                    rel.display()
                ));
            }
            Ok(())
        },
    )?;
    let out = b.into_inner()?;
    let mut summary = fp.finish(warnings);
    summary.root = Some((root_mode, root_mtime));
    Ok((out, summary))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_length_is_self_consistent() {
        for v in ["1", "1700000000.123456789", &"9".repeat(120)] {
            let r = pax_record("mtime", v);
            let s = String::from_utf8(r.clone()).expect("utf8");
            let (len, _) = s.split_once(' ').expect("space");
            assert_eq!(len.parse::<usize>().expect("num"), r.len());
        }
    }

    #[test]
    fn mtime_pax_roundtrip_including_negative() {
        for m in [
            MTime { secs: 0, nanos: 0 },
            MTime {
                secs: 1_700_000_000,
                nanos: 123_456_789,
            },
            MTime { secs: -5, nanos: 0 },
            MTime {
                secs: -5,
                nanos: 250_000_000,
            },
        ] {
            assert_eq!(
                MTime::parse_pax(&m.pax_value()),
                Some(m),
                "{}",
                m.pax_value()
            );
        }
    }

    #[test]
    fn walk_visits_a_large_directory_in_order_across_inspection_rounds() {
        // More entries than one round inspects, with subdirectories among them (one in each
        // round): every entry once, names sorted, each subdirectory's entries right after it.
        let dir = tempfile::tempdir().expect("tempdir");
        let n = INSPECT * 2 + 100;
        for i in 0..n {
            let name = format!("e{i:05}");
            if i % INSPECT == 7 {
                fs::create_dir(dir.path().join(&name)).expect("mkdir");
                fs::write(dir.path().join(&name).join("inner"), b"x").expect("write");
            } else {
                fs::write(dir.path().join(&name), b"y").expect("write");
            }
        }
        let mut seen = Vec::new();
        let mut warnings = Vec::new();
        walk(
            dir.path(),
            Path::new(""),
            &mut warnings,
            &mut |rel, meta, _| {
                seen.push((rel.to_path_buf(), meta.is_dir()));
                Ok(())
            },
        )
        .expect("walk");
        let mut want = Vec::new();
        for i in 0..n {
            let name = std::path::PathBuf::from(format!("e{i:05}"));
            let is_dir = i % INSPECT == 7;
            want.push((name.clone(), is_dir));
            if is_dir {
                want.push((name.join("inner"), false));
            }
        }
        assert_eq!(seen, want);
        assert!(warnings.is_empty(), "{warnings:?}");
    }
}

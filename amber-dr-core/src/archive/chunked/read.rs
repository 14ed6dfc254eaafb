//! Reading the files of a chunked snapshot (blocking, on the reading tasks of
//! [`super::backup`]): small files read straight into a pack, which is stored as one blob;
//! large files split into content-defined chunks; a file that changed while it was read is
//! read once more, then stored as read with a warning.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use rustix::fs::OFlags;
use tokio::runtime::Handle;

use super::backup::{base_entry, ctime, Done, Walked, SMALL_FILE};
use super::chunker;
use super::dirfd::Dirs;
use super::index::{Entry, Piece};
use crate::archive::tree::MTime;
use crate::blobs::{content_hash, content_hash_parts};
use crate::{Error, Progress, Repository, Result};

/// One item of a batch.
pub(super) enum Item {
    /// Decided without reading.
    Ready(Box<Done>),
    /// A small file to read.
    Read(Box<Walked>),
}

/// What a reading task needs.
#[derive(Clone)]
pub(super) struct JobCx {
    /// The directory backed up.
    pub(super) root: PathBuf,
    /// Where the blobs go.
    pub(super) repo: Repository,
    /// The runtime, for the stores' async calls from blocking tasks.
    pub(super) rt: Handle,
    /// The backup's progress.
    pub(super) progress: Progress,
}

/// What reading a file gave.
enum Got {
    /// A small file's content, for a pack.
    Small(Entry, Bytes, Vec<String>),
    /// A file chunked into blobs, or skipped.
    Done(Done),
}

/// Read one file (blocking): whole if small, else chunk by chunk into blobs. The record is
/// what was read; a file that changed meanwhile is read once more, then stored as read with a
/// warning naming it.
fn read_file(
    root: &Path,
    rel: &Path,
    repo: &Repository,
    rt: &Handle,
    progress: &Progress,
) -> Result<Got> {
    let path = root.join(rel);
    let mut warnings = Vec::new();
    for attempt in 0..2 {
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(Got::Done(Done::Skipped(format!(
                    "`{}` vanished before it was read; not saved",
                    rel.display()
                ))))
            }
            Err(e) => return Err(Error::io("read", &path, e)),
        };
        let before = file
            .metadata()
            .map_err(|e| Error::io("inspect", &path, e))?;
        if !before.is_file() {
            return Ok(Got::Done(Done::Skipped(format!(
                "`{}` was replaced by something other than a file while the directory was read; not saved",
                rel.display()
            ))));
        }
        let mut entry = base_entry(rel, &before, "f");
        entry.ct = ctime(&before);
        entry.ino = before.ino();
        let mut buf = BytesMut::with_capacity(if before.len() < SMALL_FILE {
            before.len() as usize + 4096
        } else {
            chunker::MAX
        });
        let mut total = 0u64;
        let mut small = None;
        let mut eof = false;
        loop {
            // Fill the buffer to MAX (or the end of the file).
            while !eof && buf.len() < chunker::MAX {
                // As much as the file should still hold (and a little more, to see its end):
                // a small file never gets a large zero-filled buffer.
                let expected = before.len().saturating_sub(buf.len() as u64) as usize;
                let want = (expected + 4096)
                    .min(1024 * 1024)
                    .min(chunker::MAX - buf.len());
                let start = buf.len();
                buf.resize(start + want, 0);
                let n = file
                    .read(&mut buf[start..])
                    .map_err(|e| Error::io("read", &path, e))?;
                buf.truncate(start + n);
                eof = n == 0;
            }
            if eof && entry.c.is_empty() && (buf.len() as u64) < SMALL_FILE {
                total = buf.len() as u64;
                small = Some(buf.split().freeze());
                break;
            }
            if buf.is_empty() {
                break;
            }
            let n = chunker::cut(&buf);
            // The chunk is split off the buffer, not copied.
            let chunk = buf.split_to(n).freeze();
            let hash = content_hash(&chunk);
            rt.block_on(repo.put_blob_hashed(hash.clone(), chunk, progress.clone()))?;
            entry.c.push(Piece(hash, n as u64, 0, n as u64));
            total += n as u64;
        }
        let after = file
            .metadata()
            .map_err(|e| Error::io("inspect", &path, e))?;
        let changed = after.len() != total
            || MTime::of(&after) != entry.mt
            || ctime(&after) != entry.ct
            || after.len() != before.len();
        if changed && attempt == 0 {
            continue;
        }
        if changed {
            warnings.push(format!(
                "`{}` changed while it was read (twice): stored the {total} bytes read (it has {} now)",
                rel.display(),
                after.len()
            ));
        }
        entry.s = total;
        return Ok(match small {
            Some(content) => Got::Small(entry, content, warnings),
            None => Got::Done(Done::Entry(entry, warnings, total)),
        });
    }
    unreachable!("the loop returns on its second attempt")
}

/// Read a small file straight onto the end of `pack` (no zeroed buffer in between): its entry
/// and length if the open file is the one walked and unchanged since (inode, size, mtime and
/// ctime after the read as the walk saw them: one `fstat`, no read to see the end), else
/// `None` with `pack` as it was (the caller reads it with [`read_file`]).
fn read_small(
    root: &Path,
    w: &Walked,
    pack: &mut Vec<u8>,
    dirs: &mut Dirs,
) -> Result<Option<(Entry, usize)>> {
    let path = || root.join(&w.rel);
    let file = match dirs.open(root, &w.rel, OFlags::RDONLY, 0) {
        Ok(f) => f,
        // Gone, or its directory is (read again the careful way, which says so).
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("read", path(), e)),
    };
    let start = pack.len();
    let want = usize::try_from(w.meta.len())
        .unwrap_or(usize::MAX)
        .min(SMALL_FILE as usize);
    // Room for what the walk saw and one byte more: a file that grew reads past its size.
    pack.reserve(want + 1);
    let mut total = 0;
    while total < want {
        // Into the spare capacity, which the read makes part of `pack`.
        let n = match rustix::io::read(&file, rustix::buffer::spare_capacity(pack)) {
            Ok(n) => n,
            Err(e) if e == rustix::io::Errno::INTR => continue,
            Err(e) => {
                pack.truncate(start);
                return Err(Error::io("read", path(), e.into()));
            }
        };
        if n == 0 {
            break;
        }
        total += n;
    }
    let after = file.metadata().map_err(|e| {
        pack.truncate(start);
        Error::io("inspect", path(), e)
    })?;
    let same = after.is_file()
        && after.ino() == w.meta.ino()
        && after.dev() == w.meta.dev()
        && after.len() == total as u64
        && MTime::of(&after) == MTime::of(&w.meta)
        && ctime(&after) == ctime(&w.meta);
    if !same {
        pack.truncate(start);
        return Ok(None);
    }
    let mut e = base_entry(&w.rel, &after, "f");
    e.ct = ctime(&after);
    e.ino = after.ino();
    e.s = total as u64;
    Ok(Some((e, total)))
}

/// Read a batch (blocking): decided entries passed through, small files read straight into
/// one pack, which is hashed, compressed and stored before the entries are returned (in
/// order) — so the index never names a pack that is not stored. Files that look random
/// (media) go after the others in the pack: the compressible ones stay one run, compressed
/// in one frame with their shared context, the random ones one raw run ([`crate::frames`]).
pub(super) fn read_batch(items: Vec<Item>, bytes: u64, c: &JobCx) -> Result<Vec<Done>> {
    let room = SMALL_FILE as usize;
    // As long as the walk says its files are, and one more; read into, not zeroed first.
    let planned = usize::try_from(bytes).unwrap_or(0);
    let reads = items.iter().any(|i| matches!(i, Item::Read(_)));
    // Buffers used again from one batch to the next ([`crate::buffers`]).
    let mut pack: Vec<u8> = crate::buffers::take(if reads { planned + room } else { 0 });
    let mut len = 0usize;
    // The random-looking files, moved out of the way.
    let mut random: Vec<u8> = crate::buffers::take(if reads { planned } else { 0 });
    let mut out = Vec::with_capacity(items.len());
    // Entries (index in `out`) whose content is in the pack: offset, and whether in `random`.
    let mut packed: Vec<(usize, usize, bool)> = Vec::new();
    let mut dirs = Dirs::default();
    for it in items {
        let Item::Read(w) = it else {
            if let Item::Ready(d) = it {
                out.push(*d);
            }
            continue;
        };
        let (e, n, warnings) = match read_small(&c.root, &w, &mut pack, &mut dirs)? {
            Some((e, n)) => (e, n, Vec::new()),
            // Changed since the walk: read the careful way.
            None => match read_file(&c.root, &w.rel, &c.repo, &c.rt, &c.progress)? {
                Got::Done(d) => {
                    out.push(d);
                    continue;
                }
                Got::Small(e, content, warnings) => {
                    pack.extend_from_slice(&content);
                    (e, content.len(), warnings)
                }
            },
        };
        let body = &pack[len..len + n];
        if crate::frames::looks_random_file(body) {
            packed.push((out.len(), random.len(), true));
            random.extend_from_slice(body);
            pack.truncate(len);
        } else {
            if n > 0 {
                packed.push((out.len(), len, false));
            }
            len += n;
        }
        out.push(Done::Entry(e, warnings, n as u64));
    }
    let front = len;
    let total = (len + random.len()) as u64;
    if total == 0 {
        crate::buffers::give(pack);
        crate::buffers::give(random);
    } else {
        // The pack is the compressible files, then the random-looking ones: two parts, each
        // made into frames of its own, neither copied into the other.
        let (front_part, random_part) = (
            crate::buffers::into_bytes(pack),
            crate::buffers::into_bytes(random),
        );
        let hash = content_hash_parts(&[&front_part, &random_part]);
        let parts = [front_part, random_part]
            .into_iter()
            .filter(|p| !p.is_empty())
            .collect();
        c.rt.block_on(
            c.repo
                .put_blob_parts(hash.clone(), parts, c.progress.clone()),
        )?;
        for (i, offset, moved) in packed {
            let offset = if moved { front + offset } else { offset };
            if let Some(Done::Entry(e, ..)) = out.get_mut(i) {
                e.c = vec![Piece(hash.clone(), total, offset as u64, e.s)];
            }
        }
    }
    Ok(out)
}

/// Read a large file (blocking) into chunks; one that is small now is stored as a blob of its
/// own.
pub(super) fn read_large(rel: &Path, c: &JobCx) -> Result<Done> {
    Ok(
        match read_file(&c.root, rel, &c.repo, &c.rt, &c.progress)? {
            Got::Done(d) => d,
            Got::Small(mut e, content, warnings) => {
                let n = content.len() as u64;
                if n > 0 {
                    let hash = content_hash(&content);
                    c.rt.block_on(c.repo.put_blob_hashed(
                        hash.clone(),
                        content,
                        c.progress.clone(),
                    ))?;
                    e.c = vec![Piece(hash, n, 0, n)];
                }
                Done::Entry(e, warnings, n)
            }
        },
    )
}

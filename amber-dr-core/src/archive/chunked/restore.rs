//! Reading a chunked directory backup: checking it (every blob read and its hash checked), or
//! extracting it into a staging directory — directories and symlinks in index order, files
//! written concurrently (bounded) — with the same guards as a tar archive: no absolute paths,
//! no `..`, nothing written through a symlink, entries strictly in walk order (so no path
//! twice), every parent directory listed before its entries.

use std::collections::{HashMap, HashSet, VecDeque};
use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use rustix::fs::OFlags;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use super::backup::{concurrency, fp_add};
use super::dirfd::Dirs;
use super::index::{Entry, IndexReader, Piece};
use crate::archive::directory::join_err;
use crate::archive::extract::{safe_rel_path, unsafe_entry};
use crate::archive::tree::{Fingerprint, Kind, MTime, TreeSummary};
use crate::{BlobRecord, Error, Progress, Repository, Result};

/// Pack blobs kept in memory while their files are written.
const PACK_CACHE: usize = 8;

/// Blobs read for slices (packs), the most recent few kept. Each is read once even when
/// several files of it are written at the same moment (one cell per pack, filled by the first).
#[derive(Default)]
struct Cache {
    order: VecDeque<String>,
    blobs: HashMap<String, Arc<tokio::sync::OnceCell<Bytes>>>,
}

async fn blob(
    repo: &Repository,
    cache: &Mutex<Cache>,
    p: &Piece,
    progress: &Progress,
) -> Result<Bytes> {
    let rec = BlobRecord {
        sha256: p.0.clone(),
        size: p.1,
        deduplicated: false,
    };
    if p.2 == 0 && p.3 == p.1 {
        // A whole blob (a chunk): read once, not cached.
        return repo.read_blob(&rec, progress.clone()).await;
    }
    let cell = {
        let mut c = cache.lock().map_err(lock_err)?;
        match c.blobs.get(&p.0) {
            Some(cell) => cell.clone(),
            None => {
                let cell = Arc::new(tokio::sync::OnceCell::new());
                c.blobs.insert(p.0.clone(), cell.clone());
                c.order.push_back(p.0.clone());
                if c.order.len() > PACK_CACHE {
                    if let Some(old) = c.order.pop_front() {
                        c.blobs.remove(&old);
                    }
                }
                cell
            }
        }
    };
    cell.get_or_try_init(|| repo.read_blob(&rec, progress.clone()))
        .await
        .cloned()
}

fn lock_err<T>(_: T) -> Error {
    Error::Other("pack cache lock poisoned".into())
}

/// What to do with the index.
pub(crate) enum Mode<'a> {
    /// Read every referenced blob once and check its hash.
    Check,
    /// Extract into this (new, empty) staging directory.
    Extract(&'a Path),
}

/// Walk the index `reader`: check or extract. Returns the tree's summary (its fingerprint is
/// compared with the record by the caller) and the stored bytes of the blobs read.
pub(crate) async fn read_index(
    repo: &Repository,
    mut reader: IndexReader,
    artifact: &str,
    mode: Mode<'_>,
    (root_mode, root_mtime): (u32, MTime),
    progress: &Progress,
) -> Result<TreeSummary> {
    let mut fp = Fingerprint::new(root_mode, root_mtime);
    let mut dirs: HashSet<PathBuf> = HashSet::new();
    let mut links: HashSet<PathBuf> = HashSet::new();
    let mut dir_meta: Vec<(PathBuf, Entry)> = Vec::new();
    let mut last: Option<PathBuf> = None;
    let cache = Arc::new(Mutex::new(Cache::default()));
    let mut checked: HashSet<String> = HashSet::new();
    let mut jobs: FuturesUnordered<JoinHandle<Result<()>>> = FuturesUnordered::new();
    let limit = concurrency();
    let staging = match mode {
        Mode::Extract(p) => Some(p.to_path_buf()),
        Mode::Check => None,
    };
    let ctx = JobCx {
        staging: staging.clone(),
        owner: staging.as_deref().and_then(new_file_owner),
        repo: repo.clone(),
        cache: cache.clone(),
        rt: Handle::current(),
        progress: progress.clone(),
    };
    // Files are written in batches (one blocking task for many small files); a large file
    // fills a batch alone.
    let mut batch: Vec<FileJob> = Vec::new();
    let mut batch_bytes = 0u64;
    let res: Result<()> = async {
        while let Some(e) = reader.next().await? {
            let raw = e.path_bytes().map_err(|why| Error::Corrupt {
                artifact: artifact.to_string(),
                message: why,
            })?;
            let rel = safe_rel_path(&raw).map_err(|why| unsafe_entry(artifact, &raw, &why))?;
            if rel.as_os_str().is_empty() {
                return Err(unsafe_entry(artifact, &raw, "it names the root itself"));
            }
            if last.as_ref().is_some_and(|l| *l >= rel) {
                return Err(unsafe_entry(
                    artifact,
                    &raw,
                    "it is out of order or listed twice",
                ));
            }
            for a in rel
                .ancestors()
                .skip(1)
                .filter(|a| !a.as_os_str().is_empty())
            {
                if links.contains(a) {
                    return Err(unsafe_entry(
                        artifact,
                        &raw,
                        &format!("it would be written through the symlink `{}`", a.display()),
                    ));
                }
                if !dirs.contains(a) {
                    return Err(unsafe_entry(
                        artifact,
                        &raw,
                        &format!("its directory `{}` is not listed before it", a.display()),
                    ));
                }
            }
            match e.t.as_str() {
                "d" => {
                    if let Some(st) = &staging {
                        let p = st.join(&rel);
                        fs::DirBuilder::new()
                            .mode(0o700)
                            .create(&p)
                            .map_err(|e| Error::from_io("create directory", &p, e))?;
                        dir_meta.push((p, e.clone()));
                    }
                    fp_add(&mut fp, Kind::Dir, &rel, &e, b"");
                    dirs.insert(rel.clone());
                }
                "l" => {
                    let target = e
                        .link_bytes()
                        .map_err(|why| unsafe_entry(artifact, &raw, &why))?;
                    if let Some(st) = &staging {
                        let p = st.join(&rel);
                        std::os::unix::fs::symlink(OsStr::from_bytes(&target), &p)
                            .map_err(|e| Error::from_io("create symlink", &p, e))?;
                        apply_meta(&p, &e, true)
                            .map_err(|e| Error::from_io("set metadata of", &p, e))?;
                    }
                    fp_add(&mut fp, Kind::Symlink, &rel, &e, &target);
                    links.insert(rel.clone());
                }
                "f" => {
                    let mut sum = 0u64;
                    for c in &e.c {
                        if c.2.checked_add(c.3).is_none_or(|end| end > c.1) {
                            return Err(Error::Corrupt {
                                artifact: artifact.to_string(),
                                message: format!(
                                    "entry `{}`: a slice lies outside its blob",
                                    rel.display()
                                ),
                            });
                        }
                        sum += c.3;
                    }
                    if sum != e.s {
                        return Err(Error::Corrupt {
                            artifact: artifact.to_string(),
                            message: format!(
                                "entry `{}`: its pieces hold {sum} bytes, its length is {}",
                                rel.display(),
                                e.s
                            ),
                        });
                    }
                    fp_add(&mut fp, Kind::File, &rel, &e, b"");
                    let pieces: Vec<Piece> = match staging {
                        Some(_) => e.c.clone(),
                        // Check: each blob once.
                        None => {
                            e.c.iter()
                                .filter(|c| checked.insert(c.0.clone()))
                                .cloned()
                                .collect()
                        }
                    };
                    let dest = staging.as_ref().map(|_| rel.clone());
                    batch_bytes += e.s;
                    batch.push((dest, e, pieces));
                    if batch.len() >= BATCH_FILES || batch_bytes >= BATCH_BYTES {
                        batch_bytes = 0;
                        if jobs.len() >= limit {
                            if let Some(r) = jobs.next().await {
                                r.map_err(join_err)??;
                            }
                        }
                        push_batch(&mut batch, &mut jobs, &ctx);
                    }
                    progress.add_items(1);
                }
                other => {
                    return Err(Error::Corrupt {
                        artifact: artifact.to_string(),
                        message: format!("entry `{}` has unknown type `{other}`", rel.display()),
                    })
                }
            }
            last = Some(rel);
        }
        push_batch(&mut batch, &mut jobs, &ctx);
        while let Some(r) = jobs.next().await {
            r.map_err(join_err)??;
        }
        Ok(())
    }
    .await;
    if res.is_err() {
        while jobs.next().await.is_some() {}
    }
    res?;
    // Directory modes and times last, deepest first.
    for (p, e) in dir_meta.iter().rev() {
        apply_meta(p, e, false).map_err(|err| Error::from_io("set metadata of", p, err))?;
    }
    Ok(fp.finish(Vec::new()))
}

/// Files per batch.
const BATCH_FILES: usize = 256;
/// Bytes per batch.
const BATCH_BYTES: u64 = 4 * 1024 * 1024;

/// One file to write (or, checking, whose blobs to read): its path under the staging
/// directory, entry, pieces.
type FileJob = (Option<PathBuf>, Entry, Vec<Piece>);

/// The owner a new file under `staging` gets without a chown: the staging directory's, which
/// this process created — unless it is set-group-ID (then a subdirectory's group may differ).
fn new_file_owner(staging: &Path) -> Option<(u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    let m = fs::metadata(staging).ok()?;
    (m.mode() & 0o2000 == 0).then(|| (m.uid(), m.gid()))
}

/// What a writing task needs.
#[derive(Clone)]
struct JobCx {
    /// The staging directory (extracting).
    staging: Option<PathBuf>,
    /// The owner new files get by themselves (see [`new_file_owner`]): no chown for those.
    owner: Option<(u32, u32)>,
    repo: Repository,
    cache: Arc<Mutex<Cache>>,
    rt: Handle,
    progress: Progress,
}

/// Start the batch (if any) as one blocking task.
fn push_batch(
    batch: &mut Vec<FileJob>,
    jobs: &mut FuturesUnordered<JoinHandle<Result<()>>>,
    cx: &JobCx,
) {
    if batch.is_empty() {
        return;
    }
    let files = std::mem::take(batch);
    let cx = cx.clone();
    jobs.push(tokio::task::spawn_blocking(move || {
        let mut dirs = Dirs::default();
        for (rel, e, pieces) in &files {
            write_file(rel.as_deref(), e, pieces, &cx, &mut dirs)?;
            cx.progress.add_items(1);
        }
        Ok(())
    }));
}

/// Write one file from its pieces (or, checking, read its blobs), blocking. Its owner, mode
/// and mtime are set through its handle (fchown, fchmod, futimens: no path lookups), the
/// owner only when it differs from the one it was created with. It is created relative to
/// its directory ([`Dirs`]), never through a symlink.
fn write_file(
    rel: Option<&Path>,
    e: &Entry,
    pieces: &[Piece],
    cx: &JobCx,
    dirs: &mut Dirs,
) -> Result<()> {
    let (Some(rel), Some(staging)) = (rel, cx.staging.as_deref()) else {
        for p in pieces {
            let rec = BlobRecord {
                sha256: p.0.clone(),
                size: p.1,
                deduplicated: false,
            };
            cx.rt
                .block_on(cx.repo.read_blob(&rec, cx.progress.clone()))?;
        }
        return Ok(());
    };
    let dest = || staging.join(rel);
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW;
    let mut f = dirs
        .open(staging, rel, flags, 0o600)
        .map_err(|err| Error::from_io("create file", dest(), err))?;
    for p in pieces {
        let b = cx.rt.block_on(blob(&cx.repo, &cx.cache, p, &cx.progress))?;
        let (o, n) = (p.2 as usize, p.3 as usize);
        f.write_all(&b[o..o + n])
            .map_err(|err| Error::from_io("write", dest(), err))?;
    }
    let meta = |err| Error::from_io("set metadata of", dest(), err);
    if cx.owner != Some((e.u, e.g)) {
        best_effort_owner(std::os::unix::fs::fchown(&f, Some(e.u), Some(e.g))).map_err(meta)?;
    }
    f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(e.m & 0o7777))
        .map_err(meta)?;
    let ft = e.mt.filetime();
    filetime::set_file_handle_times(&f, Some(ft), Some(ft)).map_err(meta)
}

/// A chown's result, with "not permitted" (only root may give files away) taken as done.
fn best_effort_owner(r: std::io::Result<()>) -> std::io::Result<()> {
    match r {
        Err(err) if err.kind() == std::io::ErrorKind::PermissionDenied => Ok(()),
        other => other,
    }
}

/// Owner (best effort: only root may give files away), mode and mtime.
fn apply_meta(path: &Path, e: &Entry, symlink: bool) -> std::io::Result<()> {
    best_effort_owner(std::os::unix::fs::lchown(path, Some(e.u), Some(e.g)))?;
    if !symlink {
        fs::set_permissions(
            path,
            std::os::unix::fs::PermissionsExt::from_mode(e.m & 0o7777),
        )?;
    }
    let ft = e.mt.filetime();
    filetime::set_symlink_file_times(path, ft, ft)
}

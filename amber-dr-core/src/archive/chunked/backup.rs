//! Snapshot of a directory into the chunked format: the tree walked in order, files unchanged
//! since the previous backup (size, mtime, ctime and inode, found by merging the previous
//! index as a stream) recorded without being read, the others read concurrently (bounded),
//! large ones split into content-defined chunks, small ones packed together.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use futures::stream::FuturesOrdered;
use futures::StreamExt;
use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::chunker;
use super::index::{cmp_path, encode, Entry, IndexReader, Piece, INDEX, REFS};
use crate::archive::directory::{join_err, PATHS};
use crate::archive::tree::{walk, Fingerprint, Kind, MTime, TreeSummary};
use crate::blobs::content_hash;
use crate::{ComponentRecord, Error, Progress, Repository, Result, SnapshotContext};

/// Files shorter than this are packed; longer ones are chunked.
pub(crate) const SMALL_FILE: u64 = chunker::MIN as u64;
/// A pack is closed when it holds this many bytes...
const PACK_BYTES: usize = 4 * 1024 * 1024;
/// ...or this many entries wait for it.
const PACK_PENDING: usize = 16 * 1024;
/// A pack's buffer: its limit plus the largest small file that may take it past the limit.
const PACK_CAPACITY: usize = PACK_BYTES + SMALL_FILE as usize;
/// Pack uploads in flight.
const PACK_UPLOADS: usize = 2;

/// Files read at once.
pub(crate) fn concurrency() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get() * 2)
        .unwrap_or(4)
        .clamp(4, 16)
}

/// Large files read at once: one per core, 2 to 8.
fn large_limit() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(2, 8)
}

/// What the walk found.
struct Walked {
    rel: PathBuf,
    meta: fs::Metadata,
    link: Option<PathBuf>,
}

/// What became of one walked entry.
enum Done {
    /// Recorded as is (directory, symlink, unchanged or chunked file), with the bytes read.
    Entry(Entry, Vec<String>, u64),
    /// A small file read whole: goes into the open pack.
    Small(Entry, Bytes, Vec<String>),
    /// Not recorded, with the reason.
    Skipped(String),
}

/// What a chunked snapshot produced.
pub(crate) struct Snapshot {
    pub(crate) summary: TreeSummary,
    pub(crate) files_read: u64,
    pub(crate) bytes_read: u64,
    pub(crate) files_unchanged: u64,
    pub(crate) blobs: u64,
}

/// The previous index, consumed in step with the walk.
struct Prev {
    reader: Option<IndexReader>,
    head: Option<Entry>,
    warning: Option<String>,
}

impl Prev {
    /// The previous entry of `rel` (entries before it are passed over).
    async fn take(&mut self, rel: &Path) -> Option<Entry> {
        loop {
            if self.head.is_none() {
                let reader = self.reader.as_mut()?;
                match reader.next().await {
                    Ok(Some(e)) => self.head = Some(e),
                    Ok(None) => {
                        self.reader = None;
                        return None;
                    }
                    Err(e) => {
                        self.warning = Some(format!(
                            "the previous backup's index could not be read to its end ({e}): the files after that point were read again"
                        ));
                        self.reader = None;
                        return None;
                    }
                }
            }
            let head = self.head.as_ref()?;
            match cmp_path(head, rel) {
                std::cmp::Ordering::Less => self.head = None,
                std::cmp::Ordering::Equal => return self.head.take(),
                std::cmp::Ordering::Greater => return None,
            }
        }
    }
}

/// The index of this component's newest earlier backup in the chunked format, if any.
async fn previous(repo: &Repository, name: &str, kind: &str, current: &str) -> Prev {
    let mut prev = Prev {
        reader: None,
        head: None,
        warning: None,
    };
    let entries = match repo.list().await {
        Ok(e) => e,
        Err(e) => {
            prev.warning = Some(format!(
                "previous backups not listed ({e}): every file read"
            ));
            return prev;
        }
    };
    let found = entries
        .iter()
        .rev()
        .filter(|e| e.id != current)
        .find_map(|e| {
            let rec = e.manifest.as_ref()?.components.get(name)?;
            (rec.kind == kind && rec.is_ok())
                .then(|| rec.artifact(INDEX).ok().cloned())
                .flatten()
        });
    if let Some(art) = found {
        match IndexReader::open(repo, &art).await {
            Ok(r) => prev.reader = Some(r),
            Err(e) => {
                prev.warning = Some(format!(
                    "the previous backup's index could not be opened ({e}): every file read"
                ))
            }
        }
    }
    prev
}

fn base_entry(rel: &Path, meta: &fs::Metadata, t: &str) -> Entry {
    let mut e = Entry {
        t: t.to_string(),
        m: meta.mode() & 0o7777,
        u: meta.uid(),
        g: meta.gid(),
        mt: MTime::of(meta),
        ..Default::default()
    };
    e.set_path(rel);
    e
}

fn ctime(meta: &fs::Metadata) -> MTime {
    MTime {
        secs: meta.ctime(),
        nanos: u32::try_from(meta.ctime_nsec()).unwrap_or(0),
    }
}

/// The previous entry, if the file looks unchanged (same size, mtime, ctime and inode). Its
/// blobs are not looked up: the previous backup references them, and `prune` (under the same
/// repository lock as a backup) never deletes a blob a remaining backup references.
fn unchanged(prev: Option<Entry>, meta: &fs::Metadata) -> Option<Entry> {
    let p = prev?;
    (p.t == "f"
        && p.s == meta.len()
        && p.mt == MTime::of(meta)
        && p.ct == ctime(meta)
        && p.ino == meta.ino()
        && p.c.iter().map(|c| c.3).sum::<u64>() == p.s)
        .then_some(p)
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
) -> Result<Done> {
    let path = root.join(rel);
    let mut warnings = Vec::new();
    for attempt in 0..2 {
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(Done::Skipped(format!(
                    "`{}` vanished before it was read; not saved",
                    rel.display()
                )))
            }
            Err(e) => return Err(Error::io("read", &path, e)),
        };
        let before = file
            .metadata()
            .map_err(|e| Error::io("inspect", &path, e))?;
        if !before.is_file() {
            return Ok(Done::Skipped(format!(
                "`{}` was replaced by something other than a file while the directory was read; not saved",
                rel.display()
            )));
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
            Some(content) => Done::Small(entry, content, warnings),
            None => Done::Entry(entry, warnings, total),
        });
    }
    unreachable!("the loop returns on its second attempt")
}

/// The index, paths and references being written.
struct Out<W> {
    index: BufWriter<W>,
    paths: BufWriter<W>,
    refs: BufWriter<W>,
    seen: HashSet<String>,
    fp: Fingerprint,
    warnings: Vec<String>,
    progress: Progress,
}

impl<W: AsyncWrite + Unpin> Out<W> {
    async fn write(&mut self, e: &Entry) -> Result<()> {
        let mut line = serde_json::to_vec(e).map_err(|e| Error::Other(e.to_string()))?;
        line.push(b'\n');
        let io = |e| Error::from_io("write", INDEX, e);
        self.index.write_all(&line).await.map_err(io)?;
        for c in &e.c {
            if self.seen.insert(c.0.clone()) {
                self.refs.write_all(c.0.as_bytes()).await.map_err(io)?;
                self.refs.write_all(b"\n").await.map_err(io)?;
            }
        }
        let raw = e.path_bytes().map_err(Error::Other)?;
        let rel = Path::new(std::ffi::OsStr::from_bytes(&raw));
        let link = e.link_bytes().unwrap_or_default();
        let kind = match e.t.as_str() {
            "d" => Kind::Dir,
            "l" => Kind::Symlink,
            _ => Kind::File,
        };
        fp_add(&mut self.fp, kind, rel, e, &link);
        if kind != Kind::Dir {
            let mut p = serde_json::to_vec(&String::from_utf8_lossy(&raw))
                .map_err(|e| Error::Other(e.to_string()))?;
            p.push(b'\n');
            self.paths.write_all(&p).await.map_err(io)?;
        }
        if kind == Kind::File {
            self.progress.add_items(1);
        }
        Ok(())
    }
}

/// Add an entry to a fingerprint (the same as a tar backup's of the same tree).
pub(crate) fn fp_add(fp: &mut Fingerprint, kind: Kind, rel: &Path, e: &Entry, link: &[u8]) {
    fp.add(kind, rel, e.m, e.s, e.mt, link);
}

/// The open pack: small files' contents and the entries waiting for its hash.
#[derive(Default)]
struct Pack {
    data: Vec<u8>,
    /// Entries in order; `Some(offset)` for those whose content is in this pack.
    pending: Vec<(Entry, Option<u64>)>,
}

/// Snapshot the tree under `root` into the chunked format: the index, paths and blob
/// references artifacts are pushed onto `rec`.
pub(crate) async fn snapshot(
    cx: &SnapshotContext,
    rec: &mut ComponentRecord,
    root: &Path,
    (root_mode, root_mtime): (u32, MTime),
) -> Result<Snapshot> {
    let repo = cx.repository().clone();
    let progress = cx.progress().clone();
    let mut prev = previous(&repo, &rec.name, &rec.kind, cx.backup_id()).await;
    let mut out = Out {
        index: BufWriter::with_capacity(256 * 1024, cx.create_artifact(INDEX).await?),
        paths: BufWriter::with_capacity(64 * 1024, cx.create_artifact(PATHS).await?),
        refs: BufWriter::with_capacity(64 * 1024, cx.create_artifact(REFS).await?),
        seen: HashSet::new(),
        fp: Fingerprint::new(root_mode, root_mtime),
        warnings: Vec::new(),
        progress: progress.clone(),
    };
    // The walk runs on its own thread, entries in order through a channel.
    let (tx, mut rx) = mpsc::channel::<Walked>(1024);
    let r = root.to_path_buf();
    let walker: JoinHandle<(io::Result<()>, Vec<String>)> =
        tokio::task::spawn_blocking(move || {
            let mut warnings = Vec::new();
            let res = walk(
                &r,
                Path::new(""),
                &mut warnings,
                &mut |rel, meta, warnings| {
                    let link = if meta.file_type().is_symlink() {
                        match fs::read_link(r.join(rel)) {
                            Ok(l) => Some(l),
                            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                                warnings.push(format!(
                                    "`{}` vanished while the directory was read",
                                    rel.display()
                                ));
                                return Ok(());
                            }
                            Err(e) => return Err(e),
                        }
                    } else if !meta.is_dir() && !meta.is_file() {
                        warnings.push(format!(
                            "`{}` is a socket, FIFO or device file; skipped",
                            rel.display()
                        ));
                        return Ok(());
                    } else {
                        None
                    };
                    let w = Walked {
                        rel: rel.to_path_buf(),
                        meta: meta.clone(),
                        link,
                    };
                    tx.blocking_send(w)
                        .map_err(|_| io::Error::other("the backup stopped"))
                },
            );
            (res, warnings)
        });
    let res = run(&repo, &progress, root, &mut prev, &mut rx, &mut out).await;
    drop(rx);
    let (walked, walk_warnings) = walker.await.map_err(join_err)?;
    let stats = res?;
    walked.map_err(|e| Error::from_io("archive", root, e))?;
    let mut warnings = walk_warnings;
    warnings.append(&mut out.warnings);
    warnings.extend(prev.warning.take());
    let io = |e| Error::from_io("write", INDEX, e);
    let Out {
        mut index,
        mut paths,
        mut refs,
        fp,
        seen,
        ..
    } = out;
    index.flush().await.map_err(io)?;
    paths.flush().await.map_err(io)?;
    refs.flush().await.map_err(io)?;
    rec.artifacts.push(index.into_inner().finish().await?);
    rec.artifacts.push(paths.into_inner().finish().await?);
    rec.artifacts.push(refs.into_inner().finish().await?);
    let mut summary = fp.finish(warnings);
    summary.root = Some((root_mode, root_mtime));
    Ok(Snapshot {
        summary,
        blobs: seen.len() as u64,
        ..stats
    })
}

/// Entries per batch of small files and decided entries.
const BATCH_ITEMS: usize = 512;
/// Bytes of small files per batch.
const BATCH_BYTES: u64 = 4 * 1024 * 1024;

/// A task of the backup: the entries of a batch, or of one large file, in order.
type Job = JoinHandle<Result<Vec<Done>>>;

/// One item of a batch.
enum Item {
    /// Decided without reading.
    Ready(Box<Done>),
    /// A small file to read.
    Read(PathBuf),
}

/// What a reading task needs.
#[derive(Clone)]
struct JobCx {
    root: PathBuf,
    repo: Repository,
    rt: Handle,
    progress: Progress,
}

/// Start the batch (if any) as one blocking task.
fn push_batch(batch: &mut Vec<Item>, jobs: &mut FuturesOrdered<Job>, cx: &JobCx) {
    if batch.is_empty() {
        return;
    }
    let items = std::mem::take(batch);
    let c = cx.clone();
    jobs.push_back(tokio::task::spawn_blocking(move || {
        items
            .into_iter()
            .map(|it| match it {
                Item::Ready(d) => Ok(*d),
                Item::Read(rel) => read_file(&c.root, &rel, &c.repo, &c.rt, &c.progress),
            })
            .collect()
    }));
}

/// The main loop: walked entries in, entries out in the same order.
async fn run<W: AsyncWrite + Unpin>(
    repo: &Repository,
    progress: &Progress,
    root: &Path,
    prev: &mut Prev,
    rx: &mut mpsc::Receiver<Walked>,
    out: &mut Out<W>,
) -> Result<Snapshot> {
    let mut stats = Snapshot {
        summary: TreeSummary::default(),
        files_read: 0,
        bytes_read: 0,
        files_unchanged: 0,
        blobs: 0,
    };
    let limit = concurrency();
    let large = std::sync::Arc::new(tokio::sync::Semaphore::new(large_limit()));
    let rt = Handle::current();
    let mut jobs: FuturesOrdered<Job> = FuturesOrdered::new();
    let mut pack = Pack {
        data: Vec::with_capacity(PACK_CAPACITY),
        pending: Vec::new(),
    };
    let mut closed = std::collections::VecDeque::new();
    let mut walk_done = false;
    // Entries decided here and small files to read go in batches (one blocking task for
    // many small files, not one each); a large file is a task of its own.
    let mut batch: Vec<Item> = Vec::new();
    let mut batch_bytes = 0u64;
    let ctx = JobCx {
        root: root.to_path_buf(),
        repo: repo.clone(),
        rt: rt.clone(),
        progress: progress.clone(),
    };
    let res: Result<()> = async {
        loop {
            while !walk_done && jobs.len() < limit {
                let Some(w) = rx.recv().await else {
                    walk_done = true;
                    push_batch(&mut batch, &mut jobs, &ctx);
                    break;
                };
                if w.meta.is_dir() {
                    let e = base_entry(&w.rel, &w.meta, "d");
                    batch.push(Item::Ready(Box::new(Done::Entry(e, vec![], 0))));
                } else if let Some(link) = w.link {
                    let mut e = base_entry(&w.rel, &w.meta, "l");
                    e.m = 0;
                    (e.l, e.lx) = encode(link.as_os_str().as_bytes());
                    batch.push(Item::Ready(Box::new(Done::Entry(e, vec![], 0))));
                } else if let Some(mut e) = unchanged(prev.take(&w.rel).await, &w.meta) {
                    // Metadata as now (a chmod changes ctime, so it is the same anyway).
                    let now = base_entry(&w.rel, &w.meta, "f");
                    (e.m, e.u, e.g) = (now.m, now.u, now.g);
                    stats.files_unchanged += 1;
                    batch.push(Item::Ready(Box::new(Done::Entry(e, vec![], 0))));
                } else if w.meta.len() < SMALL_FILE {
                    stats.files_read += 1;
                    batch_bytes += w.meta.len();
                    batch.push(Item::Read(w.rel));
                } else {
                    stats.files_read += 1;
                    push_batch(&mut batch, &mut jobs, &ctx);
                    // At most `large_limit` large files at once (memory: a 4 MiB buffer, a
                    // chunk and its compressed copy each); running tasks free their permits
                    // by themselves.
                    let permit = large
                        .clone()
                        .acquire_owned()
                        .await
                        .map_err(|e| Error::Other(e.to_string()))?;
                    let c = ctx.clone();
                    jobs.push_back(tokio::task::spawn_blocking(move || {
                        let _permit = permit;
                        read_file(&c.root, &w.rel, &c.repo, &c.rt, &c.progress).map(|d| vec![d])
                    }));
                }
                if batch.len() >= BATCH_ITEMS || batch_bytes >= BATCH_BYTES {
                    push_batch(&mut batch, &mut jobs, &ctx);
                }
                if batch.is_empty() {
                    batch_bytes = 0;
                }
            }
            let Some(done) = jobs.next().await else {
                break;
            };
            for done in done.map_err(join_err)?? {
                match done {
                    Done::Skipped(w) => out.warnings.push(w),
                    Done::Entry(e, mut w, read) => {
                        out.warnings.append(&mut w);
                        stats.bytes_read += read;
                        pack.pending.push((e, None));
                    }
                    Done::Small(e, content, mut w) => {
                        out.warnings.append(&mut w);
                        let offset = pack.data.len() as u64;
                        pack.data.extend_from_slice(&content);
                        stats.bytes_read += content.len() as u64;
                        pack.pending
                            .push((e, (!content.is_empty()).then_some(offset)));
                    }
                }
                if pack.data.len() >= PACK_BYTES || pack.pending.len() >= PACK_PENDING {
                    close_pack(repo, progress, &mut pack, &mut closed, out).await?;
                }
            }
        }
        close_pack(repo, progress, &mut pack, &mut closed, out).await?;
        settle(&mut closed, 0, out).await
    }
    .await;
    if res.is_err() {
        // Nothing keeps storing blobs behind the failed backup's back.
        while jobs.next().await.is_some() {}
        for c in closed {
            if let Some(t) = c.task {
                let _ = t.await;
            }
        }
    }
    res?;
    Ok(stats)
}

/// A closed pack being hashed, compressed and stored by a blocking task of its own, with the
/// entries waiting for its hash (and the length of its data).
struct Closed {
    task: Option<JoinHandle<Result<String>>>,
    len: u64,
    pending: Vec<(Entry, Option<u64>)>,
}

/// Close the open pack: its data hashed, compressed and stored by a blocking task (the next
/// pack fills meanwhile; at most [`PACK_UPLOADS`] in flight), its entries queued in `closed`
/// and written by [`settle`] once it is stored — so the index stays in walk order and never
/// names a pack that is not stored.
async fn close_pack<W: AsyncWrite + Unpin>(
    repo: &Repository,
    progress: &Progress,
    pack: &mut Pack,
    closed: &mut std::collections::VecDeque<Closed>,
    out: &mut Out<W>,
) -> Result<()> {
    // The next pack's buffer is allocated whole: grown by doubling, every pack was copied
    // several times on its way to 4 MiB.
    let data = Bytes::from(std::mem::replace(
        &mut pack.data,
        Vec::with_capacity(PACK_CAPACITY),
    ));
    let len = data.len() as u64;
    let task = (!data.is_empty()).then(|| {
        let (repo, progress, rt) = (repo.clone(), progress.clone(), Handle::current());
        tokio::task::spawn_blocking(move || {
            let hash = content_hash(&data);
            rt.block_on(repo.put_blob_hashed(hash.clone(), data, progress))?;
            Ok(hash)
        })
    });
    closed.push_back(Closed {
        task,
        len,
        pending: std::mem::take(&mut pack.pending),
    });
    settle(closed, PACK_UPLOADS, out).await
}

/// Write the entries of the closed packs at the front of `closed` until at most `keep` are
/// left, waiting for each to be stored.
async fn settle<W: AsyncWrite + Unpin>(
    closed: &mut std::collections::VecDeque<Closed>,
    keep: usize,
    out: &mut Out<W>,
) -> Result<()> {
    while closed.len() > keep || closed.front().is_some_and(|c| c.task.is_none()) {
        let Some(c) = closed.pop_front() else {
            break;
        };
        let hash = match c.task {
            Some(t) => t.await.map_err(join_err)??,
            None => String::new(),
        };
        for (mut e, offset) in c.pending {
            if let Some(o) = offset {
                e.c = vec![Piece(hash.clone(), c.len, o, e.s)];
            }
            out.write(&e).await?;
        }
    }
    Ok(())
}

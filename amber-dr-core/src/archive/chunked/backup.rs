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
use rustix::fs::OFlags;
use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::chunker;
use super::dirfd::Dirs;
use super::index::{cmp_path, encode, Entry, IndexReader, Piece, INDEX, REFS};
use crate::archive::directory::{join_err, PATHS};
use crate::archive::tree::{walk, Fingerprint, Kind, MTime, TreeSummary};
use crate::blobs::{content_hash, content_hash_parts};
use crate::{ComponentRecord, Error, Progress, Repository, Result, SnapshotContext};

/// Files shorter than this are packed; longer ones are chunked.
pub(crate) const SMALL_FILE: u64 = chunker::MIN as u64;

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

/// Walked entries sent at once.
const HANDFUL: usize = 64;
/// Handfuls queued between the walk and the backup.
const WALK_QUEUE: usize = 16;

/// The walk's entries as they arrive, in order.
struct WalkQueue {
    rx: mpsc::Receiver<Vec<Walked>>,
    handful: std::vec::IntoIter<Walked>,
}

impl Walked {
    fn queue(rx: mpsc::Receiver<Vec<Walked>>) -> WalkQueue {
        WalkQueue {
            rx,
            handful: Vec::new().into_iter(),
        }
    }
}

impl WalkQueue {
    /// The next entry; `None` when the walk has ended.
    async fn next(&mut self) -> Option<Walked> {
        loop {
            if let Some(w) = self.handful.next() {
                return Some(w);
            }
            self.handful = self.rx.recv().await?.into_iter();
        }
    }
}

/// What became of one walked entry (nearly always an `Entry`: not boxed).
#[allow(clippy::large_enum_variant)]
enum Done {
    /// Recorded (directory, symlink, unchanged, packed or chunked file), with the bytes read.
    Entry(Entry, Vec<String>, u64),
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
fn read_batch(items: Vec<Item>, bytes: u64, c: &JobCx) -> Result<Vec<Done>> {
    let room = SMALL_FILE as usize;
    // As long as the walk says its files are, and one more; read into, not zeroed first.
    let planned = usize::try_from(bytes).unwrap_or(0);
    let reads = items.iter().any(|i| matches!(i, Item::Read(_)));
    let mut pack: Vec<u8> = Vec::with_capacity(if reads { planned + room } else { 0 });
    let mut len = 0usize;
    // The random-looking files, moved out of the way.
    let mut random: Vec<u8> = Vec::with_capacity(if reads { planned } else { 0 });
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
    if total > 0 {
        // The pack is the compressible files, then the random-looking ones: two parts, each
        // made into frames of its own, neither copied into the other.
        let (front_part, random_part) = (Bytes::from(pack), Bytes::from(random));
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
fn read_large(rel: &Path, c: &JobCx) -> Result<Done> {
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

/// The index, paths and references being written.
struct Out<W> {
    index: BufWriter<W>,
    paths: BufWriter<W>,
    refs: BufWriter<W>,
    seen: HashSet<String>,
    /// A line being encoded (one buffer for every line).
    line: Vec<u8>,
    fp: Fingerprint,
    warnings: Vec<String>,
    progress: Progress,
}

impl<W: AsyncWrite + Unpin> Out<W> {
    async fn write(&mut self, e: &Entry) -> Result<()> {
        let mut line = std::mem::take(&mut self.line);
        line.clear();
        serde_json::to_writer(&mut line, e).map_err(|e| Error::Other(e.to_string()))?;
        line.push(b'\n');
        let io = |e| Error::from_io("write", INDEX, e);
        self.index.write_all(&line).await.map_err(io)?;
        for c in &e.c {
            // Most files share their pack's blob with the entries before them: no copy of
            // the hash for those.
            if !self.seen.contains(&c.0) {
                self.seen.insert(c.0.clone());
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
            line.clear();
            serde_json::to_writer(&mut line, &String::from_utf8_lossy(&raw))
                .map_err(|e| Error::Other(e.to_string()))?;
            line.push(b'\n');
            self.paths.write_all(&line).await.map_err(io)?;
        }
        // The buffer kept for the next entry.
        self.line = line;
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
        line: Vec::new(),
        fp: Fingerprint::new(root_mode, root_mtime),
        warnings: Vec::new(),
        progress: progress.clone(),
    };
    // The walk runs on its own thread, entries in order through a channel, a few dozen at a
    // time (one wake-up of the receiver per handful, not per entry).
    let (tx, rx) = mpsc::channel::<Vec<Walked>>(WALK_QUEUE);
    let r = root.to_path_buf();
    let walker: JoinHandle<(io::Result<()>, Vec<String>)> =
        tokio::task::spawn_blocking(move || {
            let mut warnings = Vec::new();
            let mut handful = Vec::with_capacity(HANDFUL);
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
                    handful.push(w);
                    if handful.len() == HANDFUL {
                        let full = std::mem::replace(&mut handful, Vec::with_capacity(HANDFUL));
                        tx.blocking_send(full)
                            .map_err(|_| io::Error::other("the backup stopped"))?;
                    }
                    Ok(())
                },
            );
            let res = res.and_then(|()| {
                if handful.is_empty() {
                    return Ok(());
                }
                tx.blocking_send(handful)
                    .map_err(|_| io::Error::other("the backup stopped"))
            });
            (res, warnings)
        });
    let mut walked = Walked::queue(rx);
    let res = run(&repo, &progress, root, &mut prev, &mut walked, &mut out).await;
    drop(walked);
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
    Read(Box<Walked>),
}

/// What a reading task needs.
#[derive(Clone)]
struct JobCx {
    root: PathBuf,
    repo: Repository,
    rt: Handle,
    progress: Progress,
}

/// Start the batch (if any) as one blocking task; `bytes`: its small files' length.
fn push_batch(batch: &mut Vec<Item>, bytes: u64, jobs: &mut FuturesOrdered<Job>, cx: &JobCx) {
    if batch.is_empty() {
        return;
    }
    let items = std::mem::take(batch);
    let c = cx.clone();
    jobs.push_back(tokio::task::spawn_blocking(move || {
        read_batch(items, bytes, &c)
    }));
}

/// The main loop: walked entries in, entries out in the same order.
async fn run<W: AsyncWrite + Unpin>(
    repo: &Repository,
    progress: &Progress,
    root: &Path,
    prev: &mut Prev,
    rx: &mut WalkQueue,
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
    let mut jobs: FuturesOrdered<Job> = FuturesOrdered::new();
    let mut walk_done = false;
    // Entries decided here and small files to read go in batches (one blocking task and one
    // pack for many small files); a large file is a task of its own.
    let mut batch: Vec<Item> = Vec::new();
    let mut batch_bytes = 0u64;
    let ctx = JobCx {
        root: root.to_path_buf(),
        repo: repo.clone(),
        rt: Handle::current(),
        progress: progress.clone(),
    };
    let res: Result<()> = async {
        loop {
            while !walk_done && jobs.len() < limit {
                let Some(w) = rx.next().await else {
                    walk_done = true;
                    push_batch(&mut batch, batch_bytes, &mut jobs, &ctx);
                    break;
                };
                if w.meta.is_dir() {
                    let e = base_entry(&w.rel, &w.meta, "d");
                    batch.push(Item::Ready(Box::new(Done::Entry(e, vec![], 0))));
                } else if let Some(link) = &w.link {
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
                    batch.push(Item::Read(Box::new(w)));
                } else {
                    stats.files_read += 1;
                    push_batch(&mut batch, batch_bytes, &mut jobs, &ctx);
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
                        read_large(&w.rel, &c).map(|d| vec![d])
                    }));
                }
                if batch.len() >= BATCH_ITEMS || batch_bytes >= BATCH_BYTES {
                    push_batch(&mut batch, batch_bytes, &mut jobs, &ctx);
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
                        out.write(&e).await?;
                    }
                }
            }
        }
        Ok(())
    }
    .await;
    if res.is_err() {
        // Nothing keeps storing blobs behind the failed backup's back.
        while jobs.next().await.is_some() {}
    }
    res?;
    Ok(stats)
}

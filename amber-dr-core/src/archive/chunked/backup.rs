//! Snapshot of a directory into the chunked format: the tree walked in order, files unchanged
//! since the previous backup (size, mtime, ctime and inode, found by merging the previous
//! index as a stream) recorded without being read, the others read concurrently (bounded),
//! large ones split into content-defined chunks, small ones packed together.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use futures::stream::FuturesOrdered;
use futures::StreamExt;
use std::sync::Arc;
use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::runtime::Handle;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use super::chunker;
use super::index::{cmp_path, encode, Entry, IndexReader, INDEX, REFS};
use super::read::{read_batch, read_large, Item, JobCx};
use crate::archive::directory::{join_err, PATHS};
use crate::archive::tree::{walk, Fingerprint, Kind, MTime, TreeSummary};
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
pub(super) struct Walked {
    /// Its path under the root.
    pub(super) rel: PathBuf,
    /// Its metadata, as the walk saw it (not following a symlink).
    pub(super) meta: fs::Metadata,
    /// A symlink's target.
    pub(super) link: Option<PathBuf>,
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
pub(super) enum Done {
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

pub(super) fn base_entry(rel: &Path, meta: &fs::Metadata, t: &str) -> Entry {
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

pub(super) fn ctime(meta: &fs::Metadata) -> MTime {
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

/// Entries of the tasks started but not yet taken in order (finished tasks hold their
/// entries only, a few hundred bytes each: their blobs are stored).
const WINDOW: usize = 16 * 1024;

/// Entries per batch of small files and decided entries.
const BATCH_ITEMS: usize = 512;
/// Bytes of small files per batch.
const BATCH_BYTES: u64 = 4 * 1024 * 1024;

/// A task of the backup: the entries of a batch, or of one large file, in order.
type Job = JoinHandle<Result<Vec<Done>>>;

/// The reading tasks started, taken in the order they were started. A semaphore bounds those
/// running (twice the cores); finished ones wait for the ones before them holding only their
/// entries, so up to [`WINDOW`] entries may be started: a large file being compressed by one
/// thread does not hold up the small files behind it while the other cores are free.
struct Jobs {
    queue: FuturesOrdered<Job>,
    /// Entries of each task in `queue`, in the same order.
    entries: std::collections::VecDeque<usize>,
    /// Entries of all of them.
    pending: usize,
    running: Arc<Semaphore>,
}

impl Jobs {
    fn new() -> Self {
        Jobs {
            queue: FuturesOrdered::new(),
            entries: Default::default(),
            pending: 0,
            running: Arc::new(Semaphore::new(concurrency())),
        }
    }

    /// Whether another task may be started.
    fn has_room(&self) -> bool {
        self.pending < WINDOW
    }

    /// A permit to run one task, once one is free.
    async fn permit(&self) -> Result<OwnedSemaphorePermit> {
        self.running
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| Error::Other(e.to_string()))
    }

    fn push(&mut self, job: Job, entries: usize) {
        self.queue.push_back(job);
        self.entries.push_back(entries);
        self.pending += entries;
    }

    /// Start the batch (if any) as one blocking task, once a permit is free; `bytes`: its
    /// small files' length.
    async fn push_batch(&mut self, batch: &mut Vec<Item>, bytes: u64, cx: &JobCx) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let permit = self.permit().await?;
        let items = std::mem::take(batch);
        let n = items.len();
        let c = cx.clone();
        let job = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            read_batch(items, bytes, &c)
        });
        self.push(job, n);
        Ok(())
    }

    /// The next task's entries, in order; `None` when none is left.
    async fn next(&mut self) -> Option<Result<Vec<Done>>> {
        let done = self.queue.next().await?;
        self.pending -= self.entries.pop_front().unwrap_or(0);
        Some(done.map_err(join_err).and_then(|r| r))
    }
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
    let large = Arc::new(Semaphore::new(large_limit()));
    let mut jobs = Jobs::new();
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
            while !walk_done && jobs.has_room() {
                let Some(w) = rx.next().await else {
                    walk_done = true;
                    jobs.push_batch(&mut batch, batch_bytes, &ctx).await?;
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
                    jobs.push_batch(&mut batch, batch_bytes, &ctx).await?;
                    // At most `large_limit` large files at once (memory: a 4 MiB buffer, a
                    // chunk and its compressed copy each); running tasks free their permits
                    // by themselves.
                    let permit = large
                        .clone()
                        .acquire_owned()
                        .await
                        .map_err(|e| Error::Other(e.to_string()))?;
                    let run = jobs.permit().await?;
                    let c = ctx.clone();
                    let job = tokio::task::spawn_blocking(move || {
                        let _permits = (permit, run);
                        read_large(&w.rel, &c).map(|d| vec![d])
                    });
                    jobs.push(job, 1);
                }
                if batch.len() >= BATCH_ITEMS || batch_bytes >= BATCH_BYTES {
                    jobs.push_batch(&mut batch, batch_bytes, &ctx).await?;
                }
                if batch.is_empty() {
                    batch_bytes = 0;
                }
            }
            let Some(done) = jobs.next().await else {
                break;
            };
            for done in done? {
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

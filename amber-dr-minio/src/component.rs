//! The `minio` component: snapshot, verify, restore and probe of an S3 endpoint.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use amber_dr_core::blobs::{content_hash, SMALL_BLOB};
use amber_dr_core::{
    async_trait, ArtifactReader, ArtifactWriter, BlobRecord, Capabilities, Component,
    ComponentRecord, CompressionOptions, Error, Probe, Progress, Repository, RestoreContext,
    RestoreOptions, RestoreReport, Result, SnapshotContext, SnapshotPurpose, VerifyContext,
    VerifyLevel, VerifyReport,
};
use bytes::Bytes;
use futures::stream::FuturesUnordered;
use futures::{Stream, StreamExt, TryStreamExt};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::task::JoinHandle;
use tokio_util::io::{ReaderStream, StreamReader};

use crate::config::MinioConfig;
use crate::index::{BucketStat, Details, Entry, Headers, INDEX, REFS};
use crate::s3::{ObjectHeaders, ObjectSummary, S3Client, S3Error};
use crate::KIND;

/// At most this many failed objects are named in an error message.
const NAMED_FAILURES: usize = 10;

/// A MinIO / S3 store: the configured buckets of one endpoint.
#[derive(Debug, Clone)]
pub struct Minio {
    name: String,
    config: MinioConfig,
    client: S3Client,
}

/// The previous backup's index: bucket → key → record.
type PrevIndex = HashMap<String, HashMap<String, Entry>>;

/// Hashes of the bodies this backup has stored (or found stored) so far.
type Stored = Arc<Mutex<HashSet<String>>>;

/// What happened to one object read during a snapshot.
enum Snap {
    /// The body was read and stored (`new`: it was not in the repository yet).
    Read { entry: Box<Entry>, new: bool },
    /// Listed but deleted before it could be read.
    Vanished(String),
}

impl Minio {
    /// A component named `name` (the config section's name).
    pub fn new(name: impl Into<String>, config: MinioConfig) -> Result<Self> {
        let name = name.into();
        let client = S3Client::new(config.s3())
            .map_err(|e| Error::config(format!("[components.{name}] endpoint"), e.to_string()))?;
        Ok(Self {
            name,
            config,
            client,
        })
    }

    /// The config.
    pub fn config(&self) -> &MinioConfig {
        &self.config
    }

    fn err(&self, operation: &str, e: impl std::fmt::Display) -> Error {
        Error::component(&self.name, KIND, operation, e.to_string())
    }

    fn s3_err(&self, operation: &str) -> impl Fn(S3Error) -> Error + '_ {
        let operation = operation.to_string();
        move |e| Error::Component {
            component: self.name.clone(),
            kind: KIND.into(),
            operation: operation.clone(),
            message: e.to_string(),
            source: Some(Box::new(e)),
        }
    }

    /// The buckets a snapshot covers, sorted, and the configured ones that do not exist. A
    /// missing configured bucket is an error for a backup, and recorded as absent by a safety
    /// snapshot (restoring it removes the bucket again).
    async fn select_buckets(&self, purpose: SnapshotPurpose) -> Result<(Vec<String>, Vec<String>)> {
        let existing = self
            .client
            .list_buckets()
            .await
            .map_err(self.s3_err("list buckets"))?;
        let mut absent = Vec::new();
        let mut selected: Vec<String> = match &self.config.buckets {
            None => existing.clone(),
            Some(wanted) => {
                let mut out = Vec::new();
                for b in wanted {
                    if existing.contains(b) {
                        out.push(b.clone());
                    } else if purpose == SnapshotPurpose::Safety {
                        absent.push(b.clone());
                    } else {
                        return Err(self.err(
                            "snapshot",
                            format!(
                                "bucket `{b}` (listed in `buckets`) does not exist at {}; it has: {}",
                                self.config.endpoint,
                                if existing.is_empty() {
                                    "no buckets".to_string()
                                } else {
                                    existing.join(", ")
                                }
                            ),
                        ));
                    }
                }
                out
            }
        };
        selected.retain(|b| !self.config.exclude_buckets.contains(b));
        selected.sort();
        selected.dedup();
        absent.retain(|b| !self.config.exclude_buckets.contains(b));
        Ok((selected, absent))
    }

    /// The index of this component's newest earlier snapshot, keyed by (bucket, key), to
    /// decide by size, ETag and last-modified which bodies need reading. Memory: one entry
    /// per object of the previous backup.
    async fn previous_index(
        &self,
        repo: &Repository,
        current: &str,
    ) -> (PrevIndex, Option<String>) {
        let mut map = PrevIndex::new();
        let entries = match repo.list().await {
            Ok(e) => e,
            Err(e) => {
                return (
                    map,
                    Some(format!(
                        "previous backups not read ({e}): every body is read"
                    )),
                )
            }
        };
        let prev = entries
            .iter()
            .rev()
            .filter(|e| e.id != current)
            .find_map(|e| {
                let rec = e.manifest.as_ref()?.components.get(&self.name)?;
                (rec.kind == KIND && rec.is_ok())
                    .then(|| rec.artifact(INDEX).ok().cloned())
                    .flatten()
                    .map(|a| (e.id.clone(), a))
            });
        let Some((id, art)) = prev else {
            return (map, None);
        };
        let res: Result<()> = async {
            let mut lines = open_lines(repo, &art).await?;
            while let Some(entry) = next_entry(&mut lines, &art.path).await? {
                map.entry(entry.bucket.clone())
                    .or_default()
                    .insert(entry.key.clone(), entry);
            }
            Ok(())
        }
        .await;
        match res {
            Ok(()) => (map, None),
            Err(e) => (
                PrevIndex::new(),
                Some(format!(
                    "the index of backup {id} could not be read ({e}): every body is read again"
                )),
            ),
        }
    }

    async fn snapshot_into(
        &self,
        cx: &SnapshotContext,
        index: &mut ArtifactWriter,
        refs: &mut ArtifactWriter,
        record: &mut ComponentRecord,
    ) -> Result<()> {
        let progress = cx.progress().clone();
        let (buckets, absent) = self.select_buckets(cx.purpose()).await?;
        let (mut prev, warn) = self.previous_index(cx.repository(), cx.backup_id()).await;
        let mut warnings: Vec<String> = warn.into_iter().collect();
        warnings.extend(
            absent
                .iter()
                .map(|b| format!("bucket `{b}` does not exist: recorded as absent")),
        );
        // Objects are compressed in parallel with each other: one zstd thread per blob, not a
        // pool of workers per (often small) blob.
        let mut blob_repo = cx.repository().clone();
        blob_repo.set_compression(CompressionOptions {
            workers: 0,
            ..blob_repo.compression()
        });
        // Bodies stored by this backup: a body met again is not written (or looked up) twice.
        let stored: Stored = Arc::default();
        progress.set_phase("copying objects");
        let (mut objects, mut bytes, mut read, mut read_bytes, mut new_blobs, mut reused) =
            (0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
        let mut details = Details {
            endpoint: self.config.endpoint.clone(),
            buckets: Vec::new(),
            absent,
        };
        for bucket in buckets {
            let mut stat = BucketStat {
                name: bucket.clone(),
                ..Default::default()
            };
            let mut prev_bucket = prev.remove(&bucket).unwrap_or_default();
            // The listing fetches its next page while objects are read; unchanged objects
            // are decided right here from the previous index (no request, no task), so that
            // only bodies to read take one of the `concurrency` slots, and those finish in
            // any order (the index lists objects in the order they were done).
            let mut listing = self.client.list_all(&bucket, None).boxed();
            let mut running: FuturesUnordered<JoinHandle<Result<Snap>>> = FuturesUnordered::new();
            let mut listing_done = false;
            loop {
                while !listing_done && running.len() < self.config.concurrency() {
                    let Some(obj) = listing.next().await else {
                        listing_done = true;
                        break;
                    };
                    let obj = obj.map_err(self.s3_err("list objects"))?;
                    if let Some(entry) = unchanged(&mut prev_bucket, &obj) {
                        reused += 1;
                        self.record_entry(index, refs, &entry, &mut stat, &progress)
                            .await?;
                        continue;
                    }
                    running.push(tokio::spawn(snapshot_object(
                        self.clone(),
                        blob_repo.clone(),
                        progress.clone(),
                        stored.clone(),
                        bucket.clone(),
                        obj,
                    )));
                }
                let Some(done) = running.next().await else {
                    break;
                };
                let snap =
                    done.map_err(|e| self.err("snapshot", format!("task failed: {e}")))??;
                let entry = match snap {
                    Snap::Read { entry, new } => {
                        read += 1;
                        read_bytes += entry.size;
                        new_blobs += u64::from(new);
                        *entry
                    }
                    Snap::Vanished(key) => {
                        warnings.push(format!(
                            "s3://{bucket}/{key} was deleted while the backup ran: not saved"
                        ));
                        continue;
                    }
                };
                self.record_entry(index, refs, &entry, &mut stat, &progress)
                    .await?;
            }
            objects += stat.objects;
            bytes += stat.bytes;
            details.buckets.push(stat);
        }
        record.set_stat("buckets", details.buckets.len());
        record.set_stat("objects", objects);
        record.set_stat("bytes", bytes);
        record.set_stat("objects_read", read);
        record.set_stat("bytes_read", read_bytes);
        record.set_stat("objects_unchanged", reused);
        record.set_stat("blobs_new", new_blobs);
        record.set_details(&details)?;
        record.warnings.extend(warnings);
        Ok(())
    }

    /// Write one object's record to the index and its blob to the references.
    async fn record_entry(
        &self,
        index: &mut ArtifactWriter,
        refs: &mut ArtifactWriter,
        entry: &Entry,
        stat: &mut BucketStat,
        progress: &Progress,
    ) -> Result<()> {
        let mut line = serde_json::to_vec(entry)
            .map_err(|e| self.err("snapshot", format!("cannot encode the index: {e}")))?;
        line.push(b'\n');
        write_all(index, &line).await?;
        let mut r = Vec::with_capacity(65);
        r.extend_from_slice(entry.sha256.as_bytes());
        r.push(b'\n');
        write_all(refs, &r).await?;
        stat.objects += 1;
        stat.bytes += entry.size;
        progress.add_items(1);
        Ok(())
    }

    /// Bucket renames of a restore: `src:dst[,src:dst...]`, or a bare `dst` when exactly one
    /// bucket is restored.
    fn bucket_map(
        &self,
        target: Option<&str>,
        restored: &[String],
    ) -> Result<BTreeMap<String, String>> {
        let mut map: BTreeMap<String, String> =
            restored.iter().map(|b| (b.clone(), b.clone())).collect();
        let Some(target) = target.map(str::trim).filter(|t| !t.is_empty()) else {
            return Ok(map);
        };
        let usage = |msg: String| {
            Error::config(
                format!("restore target of `{}`", self.name),
                format!("{msg}; write SRC:DST[,SRC:DST...] (bucket renames), or DST alone when one bucket is restored"),
            )
        };
        if !target.contains(':') {
            if restored.len() != 1 {
                return Err(usage(format!(
                    "`{target}` names one bucket but {} buckets are restored ({})",
                    restored.len(),
                    restored.join(", ")
                )));
            }
            map.insert(restored[0].clone(), target.to_string());
            return Ok(map);
        }
        for pair in target.split(',') {
            let (src, dst) = pair
                .split_once(':')
                .map(|(s, d)| (s.trim(), d.trim()))
                .filter(|(s, d)| !s.is_empty() && !d.is_empty())
                .ok_or_else(|| usage(format!("`{pair}` is not SRC:DST")))?;
            if !map.contains_key(src) {
                return Err(usage(format!(
                    "bucket `{src}` is not among the restored buckets ({})",
                    restored.join(", ")
                )));
            }
            map.insert(src.to_string(), dst.to_string());
        }
        let mut seen = HashSet::new();
        for dst in map.values() {
            if !seen.insert(dst) {
                return Err(usage(format!("two buckets would be restored into `{dst}`")));
            }
        }
        Ok(map)
    }

    async fn restore_objects(
        &self,
        cx: &RestoreContext,
        index: &amber_dr_core::ArtifactRecord,
        map: &BTreeMap<String, String>,
    ) -> Result<u64> {
        let mut lines = open_lines(cx.repository(), index).await?;
        let mut running: FuturesUnordered<JoinHandle<std::result::Result<(), String>>> =
            FuturesUnordered::new();
        let mut failures = Vec::new();
        let mut failed = 0u64;
        let mut put = 0u64;
        let mut reading = true;
        loop {
            while reading && running.len() < self.config.concurrency() {
                match next_entry(&mut lines, &index.path).await? {
                    Some(entry) => {
                        let Some(dst) = map.get(&entry.bucket).cloned() else {
                            continue;
                        };
                        running.push(tokio::spawn(restore_object(
                            self.clone(),
                            cx.repository().clone(),
                            cx.progress().clone(),
                            entry,
                            dst,
                        )));
                    }
                    None => reading = false,
                }
            }
            let Some(done) = running.next().await else {
                break;
            };
            match done {
                Ok(Ok(())) => {
                    put += 1;
                    cx.progress().add_items(1);
                }
                Ok(Err(msg)) => {
                    failed += 1;
                    if failures.len() < NAMED_FAILURES {
                        failures.push(msg);
                    }
                }
                Err(e) => return Err(self.err("restore", format!("task failed: {e}"))),
            }
        }
        if failed > 0 {
            let more = failed.saturating_sub(failures.len() as u64);
            let mut msg = format!("{failed} object(s) not restored: {}", failures.join("; "));
            if more > 0 {
                msg.push_str(&format!("; and {more} more"));
            }
            return Err(self.err("restore", msg));
        }
        Ok(put)
    }
}

async fn write_all(w: &mut ArtifactWriter, data: &[u8]) -> Result<()> {
    let path = w.path().to_string();
    w.write_all(data)
        .await
        .map_err(|e| Error::from_io("write", path, e))
}

type EntryLines = Lines<BufReader<ArtifactReader>>;

async fn open_lines(repo: &Repository, art: &amber_dr_core::ArtifactRecord) -> Result<EntryLines> {
    Ok(BufReader::new(repo.open_artifact(art, Progress::none()).await?).lines())
}

/// The next entry of an index; the artifact's checks run when it reaches its end.
async fn next_entry(lines: &mut EntryLines, path: &str) -> Result<Option<Entry>> {
    loop {
        let Some(line) = lines
            .next_line()
            .await
            .map_err(|e| Error::from_io("read", path, e))?
        else {
            return Ok(None);
        };
        if line.trim().is_empty() {
            continue;
        }
        return serde_json::from_str(&line)
            .map(Some)
            .map_err(|e| Error::Corrupt {
                artifact: path.to_string(),
                message: format!("an index line does not decode: {e}"),
            });
    }
}

/// The previous record of `obj`, taken out of the previous index, if size, ETag and
/// last-modified are unchanged (listings without ETags, as from s3s-fs, fall back to size and
/// last-modified). Its blob is not looked up: the previous backup references it, and `prune`
/// (under the same repository lock as backups) never deletes a blob a remaining backup
/// references; damage is `verify`'s to find.
fn unchanged(prev: &mut HashMap<String, Entry>, obj: &ObjectSummary) -> Option<Entry> {
    let p = prev.remove(obj.key.as_str())?;
    (p.size == obj.size
        && (obj.etag.is_none() || p.etag == obj.etag)
        && p.last_modified.is_some()
        && p.last_modified == obj.last_modified)
        .then_some(p)
}

/// Back up one object whose body has to be read: stream it from a GET into a blob. Bodies up
/// to [`SMALL_BLOB`] are read whole and stored in one write ([`Repository::put_blob`]);
/// larger ones are streamed through a [`amber_dr_core::BlobWriter`].
async fn snapshot_object(
    m: Minio,
    repo: Repository,
    progress: Progress,
    stored: Stored,
    bucket: String,
    obj: ObjectSummary,
) -> Result<Snap> {
    let (info, mut body) = match m.client.get_object(&bucket, &obj.key).await {
        Ok(x) => x,
        Err(e) if e.is_not_found() && e.code() == Some("NoSuchKey") => {
            return Ok(Snap::Vanished(obj.key))
        }
        Err(e) => return Err(m.s3_err("snapshot")(e)),
    };
    let what = format!("s3://{bucket}/{}", obj.key);
    let short = |got: u64| {
        m.err(
            "snapshot",
            format!(
                "{what}: read {got} bytes but the server announced {}",
                info.size
            ),
        )
    };
    let blob = if info.size <= SMALL_BLOB {
        let mut content = Vec::with_capacity(info.size as usize);
        (&mut body)
            .take(info.size + 1)
            .read_to_end(&mut content)
            .await
            .map_err(|e| Error::from_io("read object", what.clone(), e))?;
        if content.len() as u64 != info.size {
            return Err(short(content.len() as u64));
        }
        let sha256 = content_hash(&content);
        let first = lock(&stored).insert(sha256.clone());
        if first {
            repo.put_blob_hashed(sha256, Bytes::from(content), progress)
                .await?
        } else {
            progress.add_bytes(info.size);
            BlobRecord {
                sha256,
                size: info.size,
                deduplicated: true,
            }
        }
    } else {
        let mut w = repo.write_blob(progress).await?;
        tokio::io::copy_buf(&mut body, &mut w)
            .await
            .map_err(|e| Error::from_io("read object", what.clone(), e))?;
        w.shutdown()
            .await
            .map_err(|e| Error::from_io("store object", what.clone(), e))?;
        let mut blob = w.finish().await?;
        if blob.size != info.size {
            return Err(short(blob.size));
        }
        // Streamed bodies are hashed only at their end: one stored at the same time by
        // another object of this backup counts once.
        if !lock(&stored).insert(blob.sha256.clone()) {
            blob.deduplicated = true;
        }
        blob
    };
    // A body that changed after the listing: record what was read, and make the next backup
    // read it again (its listing will not match this record's last-modified).
    let unchanged = match &obj.etag {
        Some(listed) => info.etag.as_ref() == Some(listed),
        None => same_second(obj.last_modified.as_deref(), info.last_modified.as_deref()),
    };
    let last_modified = if unchanged { obj.last_modified } else { None };
    Ok(Snap::Read {
        new: !blob.deduplicated,
        entry: Box::new(Entry {
            bucket,
            key: obj.key,
            size: blob.size,
            etag: info.etag,
            last_modified,
            headers: Headers::from(info.headers),
            sha256: blob.sha256,
        }),
    })
}

/// The set of stored bodies; a panic elsewhere cannot leave it inconsistent (inserts only).
fn lock(stored: &Stored) -> std::sync::MutexGuard<'_, HashSet<String>> {
    stored.lock().unwrap_or_else(|p| p.into_inner())
}

/// True if a listing's last-modified (ISO 8601) and a GET's (HTTP date) are the same second.
fn same_second(listed: Option<&str>, got: Option<&str>) -> bool {
    let (Some(listed), Some(got)) = (listed, got) else {
        return false;
    };
    match (
        chrono::DateTime::parse_from_rfc3339(listed),
        chrono::DateTime::parse_from_rfc2822(got),
    ) {
        (Ok(a), Ok(b)) => a.timestamp() == b.timestamp(),
        _ => false,
    }
}

/// A reader that passes `inner` through but holds back its last chunk until `inner` has
/// ended cleanly: a blob whose hash check fails at its end never delivers its last bytes, so
/// the server never receives a complete (damaged) body.
fn hold_back_last<R>(inner: R) -> impl AsyncRead + Send + Unpin + 'static
where
    R: AsyncRead + Send + Unpin + 'static,
{
    let chunks = ReaderStream::with_capacity(inner, 64 * 1024);
    let held: Option<Bytes> = None;
    let s = futures::stream::unfold(
        (chunks, held, false),
        |(mut chunks, mut held, done)| async move {
            if done {
                return None;
            }
            loop {
                match chunks.next().await {
                    Some(Ok(b)) => {
                        if let Some(prev) = held.replace(b) {
                            return Some((Ok(prev), (chunks, held, false)));
                        }
                    }
                    Some(Err(e)) => return Some((Err(e), (chunks, None, true))),
                    None => return held.map(|h| (Ok(h), (chunks, None, true))),
                }
            }
        },
    );
    StreamReader::new(
        Box::pin(s) as std::pin::Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>
    )
}

/// Put one object back from its blob. The error names the object and the blob.
async fn restore_object(
    m: Minio,
    repo: Repository,
    progress: Progress,
    entry: Entry,
    dst: String,
) -> std::result::Result<(), String> {
    let name = format!("s3://{dst}/{}", entry.key);
    let fail = |e: String| format!("{name} (blob {}): {e}", entry.sha256);
    let blob = BlobRecord {
        sha256: entry.sha256.clone(),
        size: entry.size,
        deduplicated: false,
    };
    let headers = ObjectHeaders::from(&entry.headers);
    if entry.size <= SMALL_BLOB {
        // Read and checked whole before anything is sent.
        let content = repo
            .read_blob(&blob, progress)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let len = content.len() as u64;
        return m
            .client
            .put_object(
                &dst,
                &entry.key,
                &headers,
                std::io::Cursor::new(content),
                len,
            )
            .await
            .map(|_| ())
            .map_err(|e| fail(e.to_string()));
    }
    let reader = repo
        .open_blob(&blob, progress)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let res = if entry.size > m.config.multipart_threshold() {
        m.client
            .put_object_multipart(
                &dst,
                &entry.key,
                &headers,
                hold_back_last(reader),
                m.config.part_size(),
            )
            .await
    } else {
        m.client
            .put_object(
                &dst,
                &entry.key,
                &headers,
                hold_back_last(reader),
                entry.size,
            )
            .await
    };
    res.map(|_| ()).map_err(|e| fail(e.to_string()))
}

#[async_trait]
impl Component for Minio {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::new()
            .online_snapshot(true)
            .consistent_snapshot(false)
            .restore_to_target(true)
            .restore_needs_downtime(false)
            .deep_verify(true)
    }

    async fn probe(&self) -> Result<Probe> {
        let (buckets, _) = self.select_buckets(SnapshotPurpose::Backup).await?;
        let mut per_bucket = BTreeMap::new();
        let (mut objects, mut bytes) = (0u64, 0u64);
        for b in &buckets {
            let (n, size) = self
                .client
                .list_all(b, None)
                .try_fold(
                    (0u64, 0u64),
                    |(n, s), o| async move { Ok((n + 1, s + o.size)) },
                )
                .await
                .map_err(self.s3_err("probe"))?;
            objects += n;
            bytes += size;
            per_bucket.insert(b.clone(), serde_json::json!({"objects": n, "bytes": size}));
        }
        let mut p = Probe {
            reachable: true,
            version: None,
            size_estimate: Some(bytes),
            ..Default::default()
        };
        p.details
            .insert("endpoint".into(), self.config.endpoint.clone().into());
        p.details
            .insert("buckets".into(), serde_json::json!(per_bucket));
        p.details.insert("objects".into(), objects.into());
        Ok(p)
    }

    async fn snapshot(&self, cx: &SnapshotContext) -> Result<ComponentRecord> {
        if let Some(record) = self.data_dir_safety_snapshot(cx).await? {
            return Ok(record);
        }
        let mut record = ComponentRecord::new(KIND, &self.name);
        let mut index = cx.create_artifact(INDEX).await?;
        let mut refs = match cx.create_artifact(REFS).await {
            Ok(r) => r,
            Err(e) => {
                index.abort().await;
                return Err(e);
            }
        };
        match self
            .snapshot_into(cx, &mut index, &mut refs, &mut record)
            .await
        {
            Ok(()) => {
                record.artifacts.push(index.finish().await?);
                record.artifacts.push(refs.finish().await?);
                Ok(record)
            }
            Err(e) => {
                index.abort().await;
                refs.abort().await;
                Err(e)
            }
        }
    }

    async fn verify(
        &self,
        cx: &VerifyContext,
        record: &ComponentRecord,
        level: VerifyLevel,
    ) -> Result<VerifyReport> {
        if let Some(report) = self.verify_data_dir(cx, record, level).await? {
            return Ok(report);
        }
        let mut report = cx.verify_artifacts(record, level).await?;
        if !report.is_ok() {
            return Ok(report);
        }
        let index = record.artifact(INDEX)?;
        let repo = cx.repository();
        let mut lines = open_lines(repo, index).await?;
        let mut seen = HashSet::new();
        let mut running = FuturesUnordered::new();
        let (mut blobs, mut bytes) = (0u64, 0u64);
        let mut reading = true;
        loop {
            while reading && running.len() < self.config.concurrency() {
                match next_entry(&mut lines, &index.path).await {
                    Ok(Some(entry)) => {
                        if !seen.insert(entry.sha256.clone()) {
                            continue;
                        }
                        let repo = repo.clone();
                        let progress = cx.progress().clone();
                        running.push(tokio::spawn(async move {
                            let res = check_blob(&repo, &entry, level, progress).await;
                            (entry, res)
                        }));
                    }
                    Ok(None) => reading = false,
                    Err(e) if e.is_damage() => {
                        report.problems.push(e.to_string());
                        reading = false;
                    }
                    Err(e) => return Err(e),
                }
            }
            let Some(done) = running.next().await else {
                break;
            };
            let (entry, res) = done.map_err(|e| self.err("verify", format!("task failed: {e}")))?;
            blobs += 1;
            match res {
                Ok(()) => {
                    if level == VerifyLevel::Full {
                        bytes += entry.size;
                    }
                }
                Err(e) if e.is_damage() => report.problems.push(format!(
                    "s3://{}/{}: blob {}: {e}",
                    entry.bucket,
                    entry.key,
                    amber_dr_core::blobs::blob_path(&entry.sha256)
                )),
                Err(e) => return Err(e),
            }
        }
        report.bytes_read += bytes;
        report.notes.push(match level {
            VerifyLevel::Quick => format!("{blobs} referenced blob(s) present"),
            VerifyLevel::Full => {
                format!("{blobs} referenced blob(s) read and their SHA-256 checked")
            }
        });
        Ok(report)
    }

    fn legacy_files(&self) -> Vec<&'static str> {
        self.legacy_data_files()
    }

    fn legacy_hints(&self) -> Vec<(&'static str, String)> {
        self.legacy_data_hints()
    }

    async fn check_restore_legacy(
        &self,
        file: &std::path::Path,
        opts: &RestoreOptions,
    ) -> Result<()> {
        self.check_legacy_data(file, opts).await
    }

    /// The runbook's `minio_data.tar.gz`, extracted into `legacy_data_dir` (see `legacy.rs`).
    async fn restore_legacy(
        &self,
        cx: &RestoreContext,
        file: &std::path::Path,
        opts: &RestoreOptions,
    ) -> Result<RestoreReport> {
        self.restore_legacy_data(cx, file, opts).await
    }

    async fn restore(
        &self,
        cx: &RestoreContext,
        record: &ComponentRecord,
        opts: &RestoreOptions,
    ) -> Result<RestoreReport> {
        if let Some(report) = self.restore_data_dir(cx, record, opts).await? {
            return Ok(report);
        }
        let details: Details = record.details()?;
        let index = record.artifact(INDEX)?;
        let in_backup: Vec<String> = details
            .buckets
            .iter()
            .map(|b| b.name.clone())
            .chain(details.absent.iter().cloned())
            .collect();
        let absent: HashSet<&String> = details.absent.iter().collect();
        for item in &opts.items {
            if !in_backup.contains(item) {
                return Err(self.err(
                    "restore",
                    format!(
                        "bucket `{item}` is not in this backup; it holds: {}",
                        if in_backup.is_empty() {
                            "no buckets".into()
                        } else {
                            in_backup.join(", ")
                        }
                    ),
                ));
            }
        }
        let restored: Vec<String> = in_backup
            .iter()
            .filter(|b| opts.items.is_empty() || opts.items.contains(b))
            .cloned()
            .collect();
        let map = self.bucket_map(opts.target.as_deref(), &restored)?;

        // Pass 1, before anything changes: the whole index reads back with its hash, and
        // every blob it references is present.
        cx.progress().set_phase("checking the backup");
        let repo = cx.repository();
        let mut keys: HashMap<String, HashSet<String>> =
            map.keys().map(|b| (b.clone(), HashSet::new())).collect();
        let mut hashes = HashSet::new();
        let mut lines = open_lines(repo, index).await?;
        while let Some(entry) = next_entry(&mut lines, &index.path).await? {
            if let Some(set) = keys.get_mut(&entry.bucket) {
                hashes.insert(entry.sha256.clone());
                set.insert(entry.key);
            }
        }
        let missing: Vec<String> = futures::stream::iter(hashes)
            .map(|h| async move { repo.has_blob(&h).await.map(|ok| (!ok).then_some(h)) })
            .buffer_unordered(self.config.concurrency())
            .try_filter_map(|x| async move { Ok(x) })
            .try_collect()
            .await?;
        if !missing.is_empty() {
            return Err(Error::MissingArtifact {
                artifact: format!(
                    "{} (and {} more blob(s) of this backup)",
                    amber_dr_core::blobs::blob_path(&missing[0]),
                    missing.len() - 1
                ),
            });
        }

        let mut report = RestoreReport::default();
        let existing = self
            .client
            .list_buckets()
            .await
            .map_err(self.s3_err("restore"))?;
        let stats: HashMap<&str, &BucketStat> = details
            .buckets
            .iter()
            .map(|b| (b.name.as_str(), b))
            .collect();
        for (src, dst) in &map {
            let st = stats
                .get(src.as_str())
                .copied()
                .cloned()
                .unwrap_or_default();
            let rename = if src == dst {
                String::new()
            } else {
                format!(" (from bucket `{src}`)")
            };
            if absent.contains(src) {
                if opts.keep_extra {
                    report.actions.push(format!(
                        "keep bucket `{dst}` (absent when the backup was taken)"
                    ));
                } else if existing.contains(dst) {
                    report.actions.push(format!(
                        "empty and delete bucket `{dst}` (absent when the backup was taken)"
                    ));
                }
                continue;
            }
            if !existing.contains(dst) {
                report.actions.push(format!("create bucket `{dst}`"));
            }
            report.actions.push(format!(
                "put {} object(s), {} bytes, into `{dst}`{rename}",
                st.objects, st.bytes
            ));
            if opts.keep_extra {
                report.actions.push(format!(
                    "keep objects of `{dst}` that are not in the backup"
                ));
            } else {
                report.actions.push(format!(
                    "delete objects of `{dst}` that are not in the backup"
                ));
            }
        }
        if opts.dry_run {
            return Ok(report);
        }

        for (src, dst) in &map {
            if !existing.contains(dst) && !absent.contains(src) {
                self.client
                    .create_bucket(dst)
                    .await
                    .map_err(self.s3_err("restore"))?;
            }
        }
        cx.progress().set_phase("putting objects");
        let put = self.restore_objects(cx, index, &map).await?;

        // One listing per bucket after the puts: the objects not in the backup are deleted
        // (unless keep_extra), the rest are counted and compared with the record.
        cx.progress()
            .set_phase("deleting extra objects and comparing");
        let mut deleted = 0u64;
        let (mut live_objects, mut live_bytes) = (0u64, 0u64);
        for (src, dst) in &map {
            let is_absent = absent.contains(src);
            if is_absent && (opts.keep_extra || !existing.contains(dst)) {
                continue;
            }
            let wanted = &keys[src];
            let keep_extra = opts.keep_extra;
            let (extra, n, size) = self
                .client
                .list_all(dst, None)
                .try_fold(
                    (Vec::new(), 0u64, 0u64),
                    |(mut extra, n, s), o| async move {
                        if !keep_extra && !wanted.contains(&o.key) {
                            extra.push(o.key);
                            Ok((extra, n, s))
                        } else {
                            Ok((extra, n + 1, s + o.size))
                        }
                    },
                )
                .await
                .map_err(self.s3_err("restore"))?;
            deleted += extra.len() as u64;
            futures::stream::iter(extra)
                .map(|k| async move {
                    self.client
                        .delete_object(dst, &k)
                        .await
                        .map_err(self.s3_err("restore"))
                })
                .buffer_unordered(self.config.concurrency())
                .try_collect::<Vec<()>>()
                .await?;
            if is_absent {
                self.client
                    .delete_bucket(dst)
                    .await
                    .map_err(self.s3_err("restore"))?;
                continue;
            }
            let st = stats
                .get(src.as_str())
                .copied()
                .cloned()
                .unwrap_or_default();
            let ok = if opts.keep_extra {
                n >= st.objects
            } else {
                n == st.objects && size == st.bytes
            };
            if !ok {
                return Err(self.err(
                    "restore",
                    format!(
                        "after the restore bucket `{dst}` holds {n} object(s) ({size} bytes) but the backup has {} ({} bytes)",
                        st.objects, st.bytes
                    ),
                ));
            }
            live_objects += n;
            live_bytes += size;
        }
        report
            .stats
            .insert("objects_deleted".into(), deleted.into());
        report.stats.insert("objects_put".into(), put.into());
        report.stats.insert("objects".into(), live_objects.into());
        report.stats.insert("bytes".into(), live_bytes.into());
        report.stats.insert("buckets".into(), map.len().into());
        Ok(report)
    }
}

/// Quick: the blob is present. Full: its content reads back with the recorded hash and size.
async fn check_blob(
    repo: &Repository,
    entry: &Entry,
    level: VerifyLevel,
    progress: Progress,
) -> Result<()> {
    let path = amber_dr_core::blobs::blob_path(&entry.sha256);
    match level {
        VerifyLevel::Quick => {
            if repo.has_blob(&entry.sha256).await? {
                Ok(())
            } else {
                Err(Error::MissingArtifact { artifact: path })
            }
        }
        VerifyLevel::Full => {
            let blob = BlobRecord {
                sha256: entry.sha256.clone(),
                size: entry.size,
                deduplicated: false,
            };
            if entry.size <= SMALL_BLOB {
                return repo.read_blob(&blob, progress).await.map(|_| ());
            }
            let mut r = repo.open_blob(&blob, progress).await?;
            tokio::io::copy(&mut r, &mut tokio::io::sink())
                .await
                .map(|_| ())
                .map_err(|e| Error::from_io("read", path, e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_and_get_dates_compare_by_second() {
        let listed = Some("2026-11-26T04:33:01.929Z");
        assert!(same_second(listed, Some("Thu, 26 Nov 2026 04:33:01 GMT")));
        assert!(!same_second(listed, Some("Thu, 26 Nov 2026 04:33:02 GMT")));
        assert!(!same_second(None, Some("Thu, 26 Nov 2026 04:33:01 GMT")));
        assert!(!same_second(listed, Some("not a date")));
    }

    #[tokio::test]
    async fn hold_back_delivers_everything_or_fails_before_the_end() {
        let data: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        let mut out = Vec::new();
        hold_back_last(std::io::Cursor::new(data.clone()))
            .read_to_end(&mut out)
            .await
            .expect("read");
        assert_eq!(out, data);

        // A reader that fails at its end: the last chunk never comes out.
        struct FailAtEnd(std::io::Cursor<Vec<u8>>);
        impl AsyncRead for FailAtEnd {
            fn poll_read(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &mut tokio::io::ReadBuf<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                let before = buf.filled().len();
                match std::pin::Pin::new(&mut self.0).poll_read(cx, buf) {
                    std::task::Poll::Ready(Ok(())) if buf.filled().len() == before => {
                        std::task::Poll::Ready(Err(std::io::Error::other("hash mismatch")))
                    }
                    other => other,
                }
            }
        }
        let mut r = hold_back_last(FailAtEnd(std::io::Cursor::new(data.clone())));
        let mut got = 0usize;
        let mut buf = vec![0u8; 8192];
        let err = loop {
            match r.read(&mut buf).await {
                Ok(0) => panic!("ended without the error"),
                Ok(n) => got += n,
                Err(e) => break e,
            }
        };
        assert!(err.to_string().contains("hash mismatch"));
        assert!(got < data.len(), "the whole body came out before the error");
    }
}

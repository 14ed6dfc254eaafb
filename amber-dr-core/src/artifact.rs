//! Artifact streams: zstd-compressed, SHA-256-checked streams in the repository.
//!
//! An [`ArtifactWriter`] is an `AsyncWrite`: bytes written to it are compressed with zstd
//! (multi-threaded), hashed and uploaded part by part (multipart upload); nothing is held whole
//! in memory, and the artifact appears in the repository only when [`ArtifactWriter::finish`]
//! succeeds. An [`ArtifactReader`] is an `AsyncRead` that fetches, decompresses and, at the end
//! of the stream, checks the stored length and SHA-256 against the manifest; a mismatch is an
//! [`Error::Corrupt`] naming the artifact.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use async_compression::tokio::bufread::ZstdDecoder;
use async_compression::tokio::write::ZstdEncoder;
use async_compression::zstd::CParameter;
use async_compression::Level;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, WriteMultipart};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufRead, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, ReadBuf};
use tokio_util::io::StreamReader;

use crate::crypto::stream::{KeyLookup, OpenReader, SealWriter};
use crate::crypto::{DataKey, STREAM_FORMAT};
use crate::manifest::ArtifactRecord;
use crate::progress::Progress;
use crate::{Error, Result};

/// Part size of multipart uploads (S3's minimum part size is 5 MiB).
pub const PART_SIZE: usize = 5 * 1024 * 1024;
/// zstd job size with worker threads: bounds the compressor's buffers (the default for
/// level 3 is 8 MiB per job and several jobs in flight).
const ZSTD_JOB_SIZE: u32 = 2 * 1024 * 1024;
/// Parts uploaded at once per artifact.
pub const PART_CONCURRENCY: usize = 2;

/// How artifacts are compressed.
#[derive(Debug, Clone, Copy)]
pub struct CompressionOptions {
    /// zstd level (1–19); default 3.
    pub level: i32,
    /// zstd worker threads; 0 = single-threaded in the caller.
    pub workers: u32,
}

impl Default for CompressionOptions {
    fn default() -> Self {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        Self {
            level: 3,
            workers: u32::try_from(cores.min(4)).unwrap_or(1),
        }
    }
}

/// The stored side: hashes, counts and uploads compressed bytes.
struct StoredSink {
    upload: Option<WriteMultipart>,
    hasher: Sha256,
    stored: u64,
}

impl AsyncWrite for StoredSink {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let upload = this
            .upload
            .as_mut()
            .ok_or_else(|| io::Error::other("artifact already finished"))?;
        ready!(upload.poll_for_capacity(cx, PART_CONCURRENCY)).map_err(io::Error::other)?;
        upload.write(buf);
        this.hasher.update(buf);
        this.stored += buf.len() as u64;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// A stream of bytes into one artifact of the repository. See the module docs.
///
/// Dropping a writer without calling [`finish`](Self::finish) abandons the artifact: no
/// object appears at its path, and the parts uploaded so far are removed in the background
/// (see [`crate::uploads`]).
pub struct ArtifactWriter {
    name: String,
    path: Path,
    repo_url: String,
    encoder: ZstdEncoder<SealWriter<StoredSink>>,
    sealed: bool,
    /// Object Lock: the retention this artifact must carry once uploaded.
    lock: Option<Arc<crate::object_lock::LockApi>>,
    raw: u64,
    progress: Progress,
    /// Fault injection (testkit): fail any write that would take the stream past this many bytes.
    fail_after: Option<u64>,
}

impl std::fmt::Debug for ArtifactWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArtifactWriter")
            .field("path", &self.path.as_ref())
            .field("raw", &self.raw)
            .finish()
    }
}

impl ArtifactWriter {
    pub(crate) async fn create(
        repo: &crate::repository::Repository,
        name: &str,
        path: Path,
        progress: Progress,
        key: Option<Arc<DataKey>>,
    ) -> Result<Self> {
        // Blobs being staged stay deletable; everything else of a backup may be locked.
        let staged = path.as_ref().starts_with("blobs/tmp/");
        let store = if staged {
            repo.store()
        } else {
            repo.backup_store()
        };
        let lock = repo.object_lock().filter(|_| !staged).cloned();
        let repo_url = repo.url();
        let (compression, fail_after) = (repo.compression(), repo.fail_writes_after);
        let upload = store
            .put_multipart_opts(&path, Default::default())
            .await
            .map_err(|source| Error::Repository {
                repo: repo_url.to_string(),
                operation: "start upload of",
                path: path.to_string(),
                source: Box::new(source),
            })?;
        crate::uploads::opened();
        let sink = StoredSink {
            upload: Some(WriteMultipart::new_with_chunk_size(upload, PART_SIZE)),
            hasher: Sha256::new(),
            stored: 0,
        };
        let mut params = vec![CParameter::checksum_flag(true)];
        if compression.workers > 0 {
            params.push(CParameter::nb_workers(compression.workers));
            params.push(CParameter::job_size(ZSTD_JOB_SIZE));
        }
        // Compressed first, then sealed (when the repository is encrypted).
        let sink = SealWriter::new(sink, key.as_deref());
        let encoder =
            ZstdEncoder::with_quality_and_params(sink, Level::Precise(compression.level), &params);
        Ok(Self {
            name: name.to_string(),
            path,
            repo_url: repo_url.to_string(),
            encoder,
            sealed: key.is_some(),
            lock,
            raw: 0,
            progress,
            fail_after,
        })
    }

    /// The artifact's path in the repository.
    pub fn path(&self) -> &str {
        self.path.as_ref()
    }

    /// Uncompressed bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.raw
    }

    /// Finish the stream: flush the compressor, complete the upload, and return the record
    /// to put in the manifest. Only now does the artifact exist in the repository.
    pub async fn finish(mut self) -> Result<ArtifactRecord> {
        let repo = self.repo_url.clone();
        let path = self.path.to_string();
        if let Err(e) = self.encoder.shutdown().await {
            return Err(Error::from_io("compress", &path, e));
        }
        let sink = self.encoder.get_mut().get_mut();
        let Some(upload) = sink.upload.take() else {
            return Err(Error::Other(format!("artifact {path} finished twice")));
        };
        let finished = upload.finish().await;
        crate::uploads::closed();
        finished.map_err(|source| Error::Repository {
            repo,
            operation: "complete upload of",
            path: path.clone(),
            source: Box::new(source),
        })?;
        // Object Lock: the retention headers rode on CreateMultipartUpload; a server that did
        // not apply them there (moto) gets a PutObjectRetention now.
        if let Some(api) = &self.lock {
            if let Some(had) = api.ensure(&path, api.until).await? {
                tracing::debug!(path, ?had, until = %api.until, "retention set after the multipart upload (the server did not apply its headers)");
            }
        }
        let sha256 = hex::encode(std::mem::take(&mut sink.hasher).finalize());
        Ok(ArtifactRecord {
            name: self.name.clone(),
            path,
            size: self.raw,
            stored_size: sink.stored,
            sha256,
            compression: "zstd".into(),
            encryption: self.sealed.then(|| STREAM_FORMAT.to_string()),
        })
    }

    /// Abandon the artifact explicitly, removing any uploaded parts.
    pub async fn abort(mut self) {
        if let Some(upload) = self.encoder.get_mut().get_mut().upload.take() {
            let _ = upload.abort().await;
            crate::uploads::closed();
        }
    }
}

impl Drop for ArtifactWriter {
    fn drop(&mut self) {
        if let Some(upload) = self.encoder.get_mut().get_mut().upload.take() {
            crate::uploads::abandon(upload);
        }
    }
}

impl AsyncWrite for ArtifactWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Some(limit) = self.fail_after {
            if self.raw + buf.len() as u64 > limit {
                return Poll::Ready(Err(io::Error::other(format!(
                    "injected write failure after {limit} bytes of {} (testkit)",
                    self.path
                ))));
            }
        }
        let n = ready!(Pin::new(&mut self.encoder).poll_write(cx, buf))?;
        self.raw += n as u64;
        self.progress.add_bytes(n as u64);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.encoder).poll_flush(cx)
    }

    /// Shutting down only flushes: call [`ArtifactWriter::finish`] to complete the artifact.
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.encoder).poll_flush(cx)
    }
}

type ByteStream = futures::stream::BoxStream<'static, io::Result<bytes::Bytes>>;

/// The stored side of a reader: counts and hashes stored bytes, checks them at end of stream.
type StoredRead = Pin<Box<dyn AsyncRead + Send>>;

struct CheckedStored {
    inner: StoredRead,
    hasher: Sha256,
    seen: u64,
    expected_size: u64,
    expected_sha256: String,
    artifact: String,
    done: bool,
}

impl CheckedStored {
    fn check_end(&mut self) -> io::Result<()> {
        if self.done {
            return Ok(());
        }
        self.done = true;
        if self.seen != self.expected_size {
            return Err(Error::Corrupt {
                artifact: self.artifact.clone(),
                message: format!(
                    "stored length is {} bytes, the manifest says {} (truncated or extended)",
                    self.seen, self.expected_size
                ),
            }
            .into_io());
        }
        let got = hex::encode(std::mem::take(&mut self.hasher).finalize());
        // Blobs are named by their content's hash and carry no stored-bytes hash.
        if !self.expected_sha256.is_empty() && got != self.expected_sha256 {
            return Err(Error::Corrupt {
                artifact: self.artifact.clone(),
                message: format!(
                    "SHA-256 mismatch: stored bytes hash to {got}, the manifest says {}",
                    self.expected_sha256
                ),
            }
            .into_io());
        }
        Ok(())
    }
}

impl AsyncRead for CheckedStored {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        ready!(this.inner.as_mut().poll_read(cx, buf))?;
        let new = &buf.filled()[before..];
        if new.is_empty() {
            this.check_end()?;
        } else {
            this.hasher.update(new);
            this.seen += new.len() as u64;
            if this.seen > this.expected_size {
                buf.set_filled(before);
                return Poll::Ready(Err(Error::Corrupt {
                    artifact: this.artifact.clone(),
                    message: format!(
                        "stored data is longer than the {} bytes the manifest says",
                        this.expected_size
                    ),
                }
                .into_io()));
            }
        }
        Poll::Ready(Ok(()))
    }
}

/// A checked, decompressing stream out of one artifact. See the module docs.
///
/// The checks happen when the stream reaches its end: read it to the end (or call
/// [`ArtifactReader::finish`]) before trusting what it returned.
pub struct ArtifactReader {
    decoder: ZstdDecoder<BufReader<OpenReader<CheckedStored>>>,
    artifact: String,
    expected_raw: u64,
    raw: u64,
    /// For content-addressed blobs: the SHA-256 the decompressed content must have.
    raw_check: Option<(Sha256, String)>,
    state: ReadState,
    progress: Progress,
    /// Where to note this artifact once it was read to its end with every check passed.
    read_log: Option<ReadLog>,
}

/// The artifacts read to their end, checks passed (see [`crate::verify`]).
pub(crate) type ReadLog = Arc<std::sync::Mutex<std::collections::HashSet<String>>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadState {
    Decoding,
    Draining,
    Done,
}

impl std::fmt::Debug for ArtifactReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArtifactReader")
            .field("artifact", &self.artifact)
            .field("raw", &self.raw)
            .finish()
    }
}

impl ArtifactReader {
    pub(crate) async fn open(
        store: &Arc<dyn ObjectStore>,
        repo_url: &str,
        record: &ArtifactRecord,
        progress: Progress,
        lookup: Option<KeyLookup>,
    ) -> Result<Self> {
        let path = Path::from(record.path.as_str());
        let got =
            store
                .get_opts(&path, Default::default())
                .await
                .map_err(|source| match source {
                    object_store::Error::NotFound { .. } => Error::MissingArtifact {
                        artifact: record.path.clone(),
                    },
                    source => Error::Repository {
                        repo: repo_url.to_string(),
                        operation: "read",
                        path: record.path.clone(),
                        source: Box::new(source),
                    },
                })?;
        let inner: StoredRead = match got.payload {
            // A local file: read it in large blocks (object_store's stream reads 8 KiB at a time;
            // a sealed artifact is read a chunk at a time, so it goes through a 1 MiB buffer,
            // which reads of 1 MiB and more bypass).
            object_store::GetResultPayload::File(file, _) => Box::pin(
                tokio::io::BufReader::with_capacity(1 << 20, tokio::fs::File::from_std(file)),
            ),
            object_store::GetResultPayload::Stream(s) => {
                let stream: ByteStream = Box::pin(s.map_err(io::Error::other));
                Box::pin(StreamReader::new(stream))
            }
        };
        let stored = CheckedStored {
            inner,
            hasher: Sha256::new(),
            seen: 0,
            expected_size: record.stored_size,
            expected_sha256: record.sha256.clone(),
            artifact: record.path.clone(),
            done: false,
        };
        // Opened (when sealed), then decompressed.
        let opened = OpenReader::new(stored, lookup, &record.path);
        let mut decoder = ZstdDecoder::new(BufReader::with_capacity(1024 * 1024, opened));
        decoder.multiple_members(true);
        Ok(Self {
            decoder,
            artifact: record.path.clone(),
            expected_raw: record.size,
            raw: 0,
            raw_check: None,
            state: ReadState::Decoding,
            progress,
            read_log: None,
        })
    }

    /// Note the artifact in `log` once it has been read to its end, every check passed.
    pub(crate) fn log_into(mut self, log: ReadLog) -> Self {
        self.read_log = Some(log);
        self
    }

    /// Also check, at the end of the stream, that the decompressed content hashes to `sha256`.
    pub(crate) fn check_content_sha256(mut self, sha256: &str) -> Self {
        self.raw_check = Some((Sha256::new(), sha256.to_string()));
        self
    }

    /// Read and discard the rest of the stream, running the end-of-stream checks.
    pub async fn finish(mut self) -> Result<()> {
        tokio::io::copy(&mut self, &mut tokio::io::sink())
            .await
            .map(|_| ())
            .map_err(|e| Error::from_io("read", &self.artifact, e))
    }

    fn damaged(&self, message: String) -> io::Error {
        Error::Corrupt {
            artifact: self.artifact.clone(),
            message,
        }
        .into_io()
    }
}

impl AsyncRead for ArtifactReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            match self.state {
                ReadState::Done => return Poll::Ready(Ok(())),
                ReadState::Draining => {
                    // The compressed stream ended; make sure the stored stream did too, so that
                    // its length and hash get checked.
                    let inner = Pin::new(self.decoder.get_mut());
                    let chunk = ready!(inner.poll_fill_buf(cx))?;
                    if chunk.is_empty() {
                        self.state = ReadState::Done;
                        if self.raw != self.expected_raw {
                            let msg = format!(
                                "decompressed length is {} bytes, the manifest says {}",
                                self.raw, self.expected_raw
                            );
                            return Poll::Ready(Err(self.damaged(msg)));
                        }
                        if let Some((hasher, want)) = self.raw_check.take() {
                            let got = hex::encode(hasher.finalize());
                            if got != want {
                                let msg = format!("content hashes to {got}, its name says {want}");
                                return Poll::Ready(Err(self.damaged(msg)));
                            }
                        }
                        if let Some(log) = &self.read_log {
                            if let Ok(mut l) = log.lock() {
                                l.insert(self.artifact.clone());
                            }
                        }
                        return Poll::Ready(Ok(()));
                    }
                    let n = chunk.len();
                    Pin::new(self.decoder.get_mut()).consume(n);
                    let msg = format!("{n} unexpected bytes after the end of the compressed data");
                    return Poll::Ready(Err(self.damaged(msg)));
                }
                ReadState::Decoding => {
                    let before = buf.filled().len();
                    let res = ready!(Pin::new(&mut self.decoder).poll_read(cx, buf));
                    if let Err(e) = res {
                        // Never hand out bytes together with an error.
                        buf.set_filled(before);
                        // Our own end-of-stream checks travel as an inner Error; keep them.
                        if e.get_ref().map(|i| i.is::<Error>()).unwrap_or(false) {
                            return Poll::Ready(Err(e));
                        }
                        let msg = format!("cannot be decompressed: {e}");
                        return Poll::Ready(Err(self.damaged(msg)));
                    }
                    let n = buf.filled().len() - before;
                    if n == 0 {
                        self.state = ReadState::Draining;
                        continue;
                    }
                    self.raw += n as u64;
                    self.progress.add_bytes(n as u64);
                    if let Some((hasher, _)) = self.raw_check.as_mut() {
                        hasher.update(&buf.filled()[before..]);
                    }
                    return Poll::Ready(Ok(()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repository::{Repository, RepositoryConfig};
    use object_store::{ObjectStoreExt, PutPayload};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn data(n: usize) -> Vec<u8> {
        (0..n)
            .map(|i| ((i * 7919) % 251) as u8 ^ (i >> 12) as u8)
            .collect()
    }

    async fn write(repo: &Repository, bytes: &[u8]) -> ArtifactRecord {
        let mut w = repo
            .create_artifact("20260101_000000", "c", "a.bin", Progress::none())
            .await
            .expect("create");
        for chunk in bytes.chunks(100_000) {
            w.write_all(chunk).await.expect("write");
        }
        w.finish().await.expect("finish")
    }

    async fn read_all(repo: &Repository, rec: &ArtifactRecord) -> Result<Vec<u8>> {
        let mut r = repo.open_artifact(rec, Progress::none()).await?;
        let mut out = Vec::new();
        r.read_to_end(&mut out)
            .await
            .map_err(|e| Error::from_io("read", &rec.path, e))?;
        Ok(out)
    }

    async fn tamper(repo: &Repository, rec: &ArtifactRecord, f: impl FnOnce(&mut Vec<u8>)) {
        let p = Path::from(rec.path.as_str());
        let mut v = repo
            .store()
            .get(&p)
            .await
            .expect("get")
            .bytes()
            .await
            .expect("bytes")
            .to_vec();
        f(&mut v);
        repo.store()
            .put(&p, PutPayload::from(v))
            .await
            .expect("put");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn roundtrip_across_many_parts() {
        let dir = tempfile::tempdir().expect("tmp");
        let repo =
            Repository::open(&RepositoryConfig::new(dir.path().to_string_lossy())).expect("open");
        // Incompressible enough to span several multipart parts.
        let mut bytes = Vec::new();
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..(3 * PART_SIZE) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            bytes.push(x as u8);
        }
        let rec = write(&repo, &bytes).await;
        assert_eq!(rec.size, bytes.len() as u64);
        assert!(rec.stored_size > 2 * PART_SIZE as u64, "spans parts");
        assert_eq!(read_all(&repo, &rec).await.expect("read"), bytes);
        // No staging files left next to the artifact.
        let names: Vec<_> = std::fs::read_dir(dir.path().join("20260101_000000/c"))
            .expect("dir")
            .map(|e| e.expect("e").file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[tokio::test]
    async fn damage_is_detected_and_names_the_artifact() {
        let dir = tempfile::tempdir().expect("tmp");
        let repo =
            Repository::open(&RepositoryConfig::new(dir.path().to_string_lossy())).expect("open");
        let bytes = data(2_000_000);
        let rec = write(&repo, &bytes).await;

        tamper(&repo, &rec, |v| {
            let i = v.len() / 2;
            v[i] ^= 0x20;
        })
        .await;
        let err = read_all(&repo, &rec).await.expect_err("flipped byte");
        assert!(err.is_damage(), "{err}");
        assert!(err.to_string().contains(&rec.path), "{err}");

        let rec = write(&repo, &bytes).await;
        tamper(&repo, &rec, |v| v.truncate(v.len() - 10)).await;
        let err = read_all(&repo, &rec).await.expect_err("truncated");
        assert!(err.is_damage(), "{err}");
        assert!(err.to_string().contains(&rec.path), "{err}");

        let rec = write(&repo, &bytes).await;
        tamper(&repo, &rec, |v| v.extend_from_slice(b"trailing")).await;
        let err = read_all(&repo, &rec).await.expect_err("extended");
        assert!(err.is_damage(), "{err}");

        let rec = write(&repo, &bytes).await;
        let mut wrong = rec.clone();
        wrong.sha256 = "0".repeat(64);
        let err = read_all(&repo, &wrong).await.expect_err("hash mismatch");
        assert!(err.to_string().contains("SHA-256"), "{err}");

        let missing = ArtifactRecord {
            path: "nope/x.zst".into(),
            ..rec
        };
        let err = read_all(&repo, &missing).await.expect_err("missing");
        assert!(matches!(err, Error::MissingArtifact { .. }), "{err}");
    }

    #[tokio::test]
    async fn abandoned_writer_leaves_no_artifact() {
        let dir = tempfile::tempdir().expect("tmp");
        let repo =
            Repository::open(&RepositoryConfig::new(dir.path().to_string_lossy())).expect("open");
        let mut w = repo
            .create_artifact("20260101_000000", "c", "a.bin", Progress::none())
            .await
            .expect("create");
        w.write_all(&data(20 * 1024 * 1024)).await.expect("write");
        drop(w);
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let found: Vec<_> = walk(dir.path());
        assert!(found.iter().all(|p| !p.ends_with("a.bin.zst")), "{found:?}");
        assert!(found.is_empty(), "staging files left: {found:?}");
    }

    fn walk(p: &std::path::Path) -> Vec<String> {
        let mut out = Vec::new();
        if let Ok(rd) = std::fs::read_dir(p) {
            for e in rd.flatten() {
                if e.path().is_dir() {
                    out.extend(walk(&e.path()));
                } else {
                    out.push(e.path().display().to_string());
                }
            }
        }
        out
    }
}

//! Restore of the buckets: the index and every referenced blob checked first, then buckets
//! created, objects put back from their blobs, extras deleted, the result compared.

use std::collections::{BTreeMap, HashMap, HashSet};

use amber_dr_core::blobs::SMALL_BLOB;
use amber_dr_core::{
    BlobRecord, ComponentRecord, Error, Progress, Repository, RestoreContext, RestoreOptions,
    RestoreReport, Result,
};
use bytes::Bytes;
use futures::stream::FuturesUnordered;
use futures::{Stream, StreamExt, TryStreamExt};
use tokio::io::AsyncRead;
use tokio::task::JoinHandle;
use tokio_util::io::{ReaderStream, StreamReader};

use crate::index::{next_entry, open_lines, BucketStat, Details, Entry, INDEX};
use crate::s3::ObjectHeaders;
use crate::Minio;

/// At most this many failed objects are named in an error message.
const NAMED_FAILURES: usize = 10;

impl Minio {
    /// Bucket renames of a restore: `src:dst[,src:dst...]`, or a bare `dst` when exactly one
    /// bucket is restored.
    pub(crate) fn bucket_map(
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

    pub(crate) async fn restore_objects(
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

    /// Restore the selected buckets of `record`: check the index and every blob first, then
    /// create buckets, put objects, delete extras, compare with the record.
    pub(crate) async fn restore_buckets(
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

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

//! Snapshot of the buckets: listing, the previous backup's index (unchanged objects are not
//! read again), bodies stored as content-addressed blobs, the index and blob references.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use amber_dr_core::blobs::{content_hash, SMALL_BLOB};
use amber_dr_core::{
    ArtifactWriter, BlobRecord, ComponentRecord, CompressionOptions, Error, Progress, Repository,
    Result, SnapshotContext, SnapshotPurpose,
};
use bytes::Bytes;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

use crate::index::{next_entry, open_lines, BucketStat, Details, Entry, Headers, INDEX};
use crate::s3::ObjectSummary;
use crate::{Minio, KIND};

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
    /// The buckets a snapshot covers, sorted, and the configured ones that do not exist. A
    /// missing configured bucket is an error for a backup, and recorded as absent by a safety
    /// snapshot (restoring it removes the bucket again).
    pub(crate) async fn select_buckets(
        &self,
        purpose: SnapshotPurpose,
    ) -> Result<(Vec<String>, Vec<String>)> {
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
    pub(crate) async fn previous_index(
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

    pub(crate) async fn snapshot_into(
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
            // On an error the objects still being read are waited for (not left running
            // after the backup returned, storing blobs behind its back).
            let outcome: Result<()> = async {
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
                Ok(())
            }
            .await;
            if outcome.is_err() {
                while running.next().await.is_some() {}
            }
            outcome?;
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
    pub(crate) async fn record_entry(
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
}

async fn write_all(w: &mut ArtifactWriter, data: &[u8]) -> Result<()> {
    let path = w.path().to_string();
    w.write_all(data)
        .await
        .map_err(|e| Error::from_io("write", path, e))
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
}

//! Backing up a collection as Milvus's own segment files ("binlogs"), copied from Milvus's
//! bucket after a flush: no query, so no index, no loaded collection and no change of load
//! state is needed, and the files restore through Milvus's bulk import with their primary
//! keys (see `import.rs`).
//!
//! Artifact `cNNN.binlogs`: a header line, then per file a JSON line `{"key": K, "size": N}`
//! and its `N` bytes, and a last line `{"end": true, "files": COUNT}`. `K` is the file's key
//! below Milvus's root path: `insert_log/COLL/PART/SEG/FIELD/LOG` or
//! `delta_log/COLL/PART/SEG/LOG`.

use std::collections::BTreeMap;
use std::time::Duration;

use amber_dr_core::{ArtifactReader, ArtifactRecord, Error, ReadContext, Result};
use milvus::proto::common::SegmentState;
use milvus::proto::milvus as pb;
use milvus::proto::schema::{CollectionSchema, DataType};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};

use crate::client::Client;
use crate::error::MilvusError;
use crate::pages::corrupt;
use crate::storage::Bucket;

/// First bytes of a binlog artifact.
const HEADER: &str = "amber-dr milvus binlogs v1";

/// One partition of a binlog backup.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct BinlogPartition {
    /// Partition id in the backed-up collection (a directory level of the files' keys).
    pub id: i64,
    pub name: String,
    /// Flushed segments copied.
    pub segments: Vec<i64>,
    /// Rows the segments hold (deletes in their delta logs not subtracted).
    pub rows: u64,
}

/// A collection backed up as binlog files.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct BinlogRecord {
    pub artifact: String,
    /// Id of the backed-up collection (a directory level of the files' keys).
    pub collection_id: i64,
    /// Field name → field id in the backed-up collection (`$meta` included).
    pub field_ids: BTreeMap<String, i64>,
    pub partitions: Vec<BinlogPartition>,
    pub files: u64,
    pub bytes: u64,
    /// `count(*)` at the flush, taken only when the collection was loaded (a query needs
    /// that): a restore that loads it again compares.
    pub count: Option<u64>,
}

/// The data types whose binlogs Milvus 2.3's backup import reads (and the driver knows).
pub(crate) fn check_types(db: &str, coll: &str, schema: &CollectionSchema) -> Result<(), String> {
    for f in &schema.fields {
        let known = matches!(
            DataType::try_from(f.data_type),
            Ok(DataType::Bool
                | DataType::Int8
                | DataType::Int16
                | DataType::Int32
                | DataType::Int64
                | DataType::Float
                | DataType::Double
                | DataType::String
                | DataType::VarChar
                | DataType::Array
                | DataType::Json
                | DataType::BinaryVector
                | DataType::FloatVector)
        );
        if !known {
            let t = DataType::try_from(f.data_type)
                .map(|t| format!("{t:?}"))
                .unwrap_or_else(|_| format!("unknown type {}", f.data_type));
            return Err(format!(
                "collection `{db}.{coll}`, field `{}`: data type {t} is not supported by this driver (it knows the types of Milvus 2.3: Bool, Int8..Int64, Float, Double, VarChar, JSON, Array, FloatVector, BinaryVector); the backup stops rather than leave the field out",
                f.name
            ));
        }
    }
    Ok(())
}

/// Flush `db.coll` and wait until the flushed segments are persisted. Returns the flush's
/// hybrid timestamp (if the server gives one).
pub(crate) async fn flush_and_wait(
    c: &Client,
    db: &str,
    coll: &str,
    timeout: Duration,
) -> Result<Option<u64>, MilvusError> {
    let what = format!("Flush of `{db}.{coll}`");
    let req = pb::FlushRequest {
        db_name: db.to_string(),
        collection_names: vec![coll.to_string()],
        ..Default::default()
    };
    let r = c
        .call(&what, |mut s| async move { s.flush(req).await })
        .await?;
    let ts = r.coll_flush_ts.get(coll).copied().filter(|t| *t > 0);
    let segs = r
        .coll_seg_i_ds
        .get(coll)
        .map(|a| a.data.clone())
        .unwrap_or_default();
    let what = format!("GetFlushState of `{db}.{coll}`");
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let req = pb::GetFlushStateRequest {
            segment_i_ds: segs.clone(),
            flush_ts: ts.unwrap_or(0),
            db_name: db.to_string(),
            collection_name: coll.to_string(),
        };
        let st = c
            .call(&what, |mut s| async move { s.get_flush_state(req).await })
            .await?;
        if st.flushed {
            return Ok(ts);
        }
        if tokio::time::Instant::now() > deadline {
            return Err(c.call_err(&what, format!("not flushed after {}s", timeout.as_secs())));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The flushed segments of `db.coll`: `(segment, partition, rows)`.
pub(crate) async fn flushed_segments(
    c: &Client,
    db: &str,
    coll: &str,
) -> Result<Vec<(i64, i64, u64)>, MilvusError> {
    let what = format!("GetPersistentSegmentInfo of `{db}.{coll}`");
    let req = pb::GetPersistentSegmentInfoRequest {
        db_name: db.to_string(),
        collection_name: coll.to_string(),
        ..Default::default()
    };
    let r = c
        .call(&what, |mut s| async move {
            s.get_persistent_segment_info(req).await
        })
        .await?;
    let mut out: Vec<(i64, i64, u64)> = r
        .infos
        .iter()
        .filter(|i| i.state == SegmentState::Flushed as i32)
        .map(|i| (i.segment_id, i.partition_id, i.num_rows.max(0) as u64))
        .collect();
    out.sort();
    Ok(out)
}

/// Partition ids and names of `db.coll`.
pub(crate) async fn partition_ids(
    c: &Client,
    db: &str,
    coll: &str,
) -> Result<Vec<(i64, String)>, MilvusError> {
    let what = format!("ShowPartitions of `{db}.{coll}`");
    let req = pb::ShowPartitionsRequest {
        db_name: db.to_string(),
        collection_name: coll.to_string(),
        ..Default::default()
    };
    let r = c
        .call(&what, |mut s| async move { s.show_partitions(req).await })
        .await?;
    Ok(r.partition_i_ds
        .into_iter()
        .zip(r.partition_names)
        .collect())
}

/// Copy the files of the flushed segments of collection `cid` into artifact `name`; fills in
/// the record's partitions, file and byte counts.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn copy_segments(
    cx: &amber_dr_core::SnapshotContext,
    bucket: &Bucket,
    db: &str,
    coll: &str,
    cid: i64,
    segments: &[(i64, i64, u64)],
    partitions: &[(i64, String)],
    rec: &mut BinlogRecord,
    fail: impl Fn(String) -> Error,
) -> Result<ArtifactRecord> {
    let w = cx.create_artifact(&rec.artifact).await?;
    let path = w.path().to_string();
    let mut w = BufWriter::with_capacity(256 * 1024, w);
    let io = |e| Error::from_io("write", &path, e);
    w.write_all(format!("{HEADER}\n").as_bytes())
        .await
        .map_err(io)?;
    for (pid, pname) in partitions {
        rec.partitions.push(BinlogPartition {
            id: *pid,
            name: pname.clone(),
            segments: Vec::new(),
            rows: 0,
        });
    }
    let root = &bucket.root;
    for (seg, pid, rows) in segments {
        let Some(part) = rec.partitions.iter_mut().find(|p| p.id == *pid) else {
            return Err(fail(format!(
                "`{db}.{coll}`: segment {seg} belongs to partition id {pid}, which ShowPartitions does not list"
            )));
        };
        part.segments.push(*seg);
        part.rows += rows;
        let insert = bucket
            .list(&format!("{root}/insert_log/{cid}/{pid}/{seg}/"))
            .await
            .map_err(&fail)?;
        if insert.is_empty() && *rows > 0 {
            return Err(fail(format!(
                "`{db}.{coll}`: flushed segment {seg} ({rows} rows) has no files under `{root}/insert_log/{cid}/{pid}/{seg}/` in {}: is `storage` Milvus's bucket and `root_path` its minio.rootPath?",
                bucket.label
            )));
        }
        let delta = bucket
            .list(&format!("{root}/delta_log/{cid}/{pid}/{seg}/"))
            .await
            .map_err(&fail)?;
        for o in insert.iter().chain(delta.iter()) {
            let key = o.key.strip_prefix(&format!("{root}/")).unwrap_or(&o.key);
            let line = serde_json::json!({"key": key, "size": o.size});
            w.write_all(format!("{line}\n").as_bytes())
                .await
                .map_err(io)?;
            bucket
                .copy_to(&o.key, o.size, &mut w)
                .await
                .map_err(&fail)?;
            rec.files += 1;
            rec.bytes += o.size;
            cx.progress().add_bytes(o.size);
        }
        cx.progress().add_items(*rows);
    }
    let end = serde_json::json!({"end": true, "files": rec.files});
    w.write_all(format!("{end}\n").as_bytes())
        .await
        .map_err(io)?;
    w.flush().await.map_err(io)?;
    w.into_inner().finish().await
}

/// The files of a binlog artifact, read in order through its checked stream.
pub(crate) struct BinlogReader {
    r: BufReader<ArtifactReader>,
    path: String,
    files: u64,
    done: bool,
}

/// One file's header in a binlog artifact.
#[derive(Debug, Deserialize)]
struct FileLine {
    #[serde(default)]
    key: String,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    end: bool,
    #[serde(default)]
    files: u64,
}

impl BinlogReader {
    pub(crate) async fn open(cx: &ReadContext, art: &ArtifactRecord) -> Result<Self> {
        let reader = cx.open_artifact(art).await?;
        let mut r = BufReader::with_capacity(256 * 1024, reader);
        let mut line = String::new();
        r.read_line(&mut line)
            .await
            .map_err(|e| corrupt(&art.path, e.to_string()))?;
        if line.trim_end() != HEADER {
            return Err(corrupt(&art.path, "not a milvus binlogs artifact"));
        }
        Ok(Self {
            r,
            path: art.path.clone(),
            files: 0,
            done: false,
        })
    }

    pub(crate) fn path(&self) -> &str {
        &self.path
    }

    /// The next file's key and size; its bytes follow in [`BinlogReader::body`]. `None` after
    /// the end line.
    pub(crate) async fn next(&mut self) -> Result<Option<(String, u64)>> {
        if self.done {
            return Ok(None);
        }
        let mut line = String::new();
        let n = self
            .r
            .read_line(&mut line)
            .await
            .map_err(|e| corrupt(&self.path, e.to_string()))?;
        if n == 0 {
            return Err(corrupt(
                &self.path,
                "the artifact ends without its end line",
            ));
        }
        let f: FileLine = serde_json::from_str(line.trim_end())
            .map_err(|e| corrupt(&self.path, format!("a file header does not parse: {e}")))?;
        if f.end {
            if f.files != self.files {
                return Err(corrupt(
                    &self.path,
                    format!("{} files read, the end line says {}", self.files, f.files),
                ));
            }
            self.done = true;
            return Ok(None);
        }
        if f.key.is_empty() || f.key.contains("..") {
            return Err(corrupt(&self.path, format!("bad file key `{}`", f.key)));
        }
        self.files += 1;
        Ok(Some((f.key, f.size)))
    }

    /// The stream the current file's bytes are read from (exactly its size).
    pub(crate) fn body(&mut self) -> &mut BufReader<ArtifactReader> {
        &mut self.r
    }

    /// Skip `size` bytes (the current file's body).
    pub(crate) async fn skip(&mut self, size: u64) -> Result<()> {
        let mut take = (&mut self.r).take(size);
        let n = tokio::io::copy(&mut take, &mut tokio::io::sink())
            .await
            .map_err(|e| corrupt(&self.path, e.to_string()))?;
        if n != size {
            return Err(corrupt(&self.path, "the artifact ends inside a file"));
        }
        Ok(())
    }

    /// Reach the end of the stream: runs its length and SHA-256 checks.
    pub(crate) async fn finish(self) -> Result<()> {
        if !self.done {
            return Err(corrupt(&self.path, "not read to its end line"));
        }
        self.r.into_inner().finish().await
    }
}

/// Read a binlog artifact through (hash-checked) and check its file count against the record.
pub(crate) async fn check(
    cx: &ReadContext,
    art: &ArtifactRecord,
    rec: &BinlogRecord,
) -> Result<()> {
    let mut r = BinlogReader::open(cx, art).await?;
    let mut bytes = 0u64;
    while let Some((_, size)) = r.next().await? {
        r.skip(size).await?;
        bytes += size;
    }
    let path = r.path().to_string();
    let files = r.files;
    r.finish().await?;
    if files != rec.files || bytes != rec.bytes {
        return Err(corrupt(
            &path,
            format!(
                "holds {files} files of {bytes} bytes, the record says {} of {}",
                rec.files, rec.bytes
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use milvus::proto::schema::FieldSchema;

    #[test]
    fn an_unknown_type_names_collection_field_and_type() {
        let field = |name: &str, t: i32| FieldSchema {
            name: name.into(),
            data_type: t,
            ..Default::default()
        };
        let mut s = CollectionSchema {
            fields: vec![
                field("id", DataType::Int64 as i32),
                field("v", DataType::FloatVector as i32),
            ],
            ..Default::default()
        };
        assert!(check_types("db", "c", &s).is_ok());
        s.fields.push(field("h", DataType::Float16Vector as i32));
        let e = check_types("db", "c", &s).unwrap_err();
        assert!(
            e.contains("`db.c`") && e.contains("`h`") && e.contains("Float16Vector"),
            "{e}"
        );
        s.fields[2] = field("z", 999);
        let e = check_types("db", "c", &s).unwrap_err();
        assert!(e.contains("`z`") && e.contains("unknown type 999"), "{e}");
    }
}

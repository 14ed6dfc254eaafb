//! Milvus's own bucket (its segment files), reached with `object_store`: read at backup time,
//! written to (a staging prefix outside Milvus's root path) at restore time.

use std::fmt;
use std::sync::Arc;

use amber_dr_core::Secret;
use futures::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// `[components.NAME.storage]`: where Milvus keeps its segment files (Milvus's `minio.*`
/// settings). With it, collections are backed up as Milvus's own binlog files and restored
/// through Milvus's bulk import (see the crate docs).
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MilvusStorageConfig {
    /// `http://host:port` of the S3 API Milvus uses (`minio.address` and `minio.port`).
    pub endpoint: String,
    /// Milvus's bucket (`minio.bucketName`, `a-bucket` by default, `milvus-bucket` in
    /// Amber's docker-compose).
    pub bucket: String,
    /// Milvus's root path in the bucket (`minio.rootPath`). Default `files`.
    #[serde(default = "default_root_path")]
    pub root_path: String,
    /// Access key id (`minio.accessKeyID`).
    pub access_key: String,
    /// Secret key (`minio.secretAccessKey`; use `${VAR}`). Never printed.
    pub secret_key: Secret,
    /// Region to sign requests for. Default `us-east-1`.
    #[serde(default = "default_region")]
    pub region: String,
}

fn default_root_path() -> String {
    "files".into()
}
fn default_region() -> String {
    "us-east-1".into()
}

impl fmt::Debug for MilvusStorageConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MilvusStorageConfig")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("root_path", &self.root_path)
            .field("access_key", &self.access_key)
            .field("secret_key", &self.secret_key)
            .field("region", &self.region)
            .finish()
    }
}

impl MilvusStorageConfig {
    /// Milvus's bucket at `endpoint`, root path `files`, region `us-east-1`.
    pub fn new(
        endpoint: impl Into<String>,
        bucket: impl Into<String>,
        access_key: impl Into<String>,
        secret_key: impl Into<String>,
    ) -> Self {
        Self {
            endpoint: endpoint.into(),
            bucket: bucket.into(),
            root_path: default_root_path(),
            access_key: access_key.into(),
            secret_key: Secret::new(secret_key.into()),
            region: default_region(),
        }
    }
}

/// Part size of uploads into the bucket.
const PART: usize = 8 * 1024 * 1024;

/// A connection to Milvus's bucket.
#[derive(Debug, Clone)]
pub(crate) struct Bucket {
    store: Arc<dyn ObjectStore>,
    /// `s3 endpoint/bucket`, for messages.
    pub label: String,
    /// Milvus's root path, without slashes at either end.
    pub root: String,
}

/// An object in the bucket: its key and size.
#[derive(Debug, Clone)]
pub(crate) struct Object {
    pub key: String,
    pub size: u64,
}

impl Bucket {
    pub(crate) fn new(cfg: &MilvusStorageConfig) -> Result<Self, String> {
        let ep = cfg.endpoint.trim_end_matches('/');
        let store = AmazonS3Builder::new()
            .with_endpoint(ep)
            .with_allow_http(ep.starts_with("http://"))
            .with_bucket_name(&cfg.bucket)
            .with_region(&cfg.region)
            .with_access_key_id(&cfg.access_key)
            .with_secret_access_key(cfg.secret_key.expose())
            .build()
            .map_err(|e| format!("storage `{ep}/{}`: {e}", cfg.bucket))?;
        Ok(Self {
            store: Arc::new(store),
            label: format!("{ep}/{}", cfg.bucket),
            root: cfg.root_path.trim_matches('/').to_string(),
        })
    }

    fn err(&self, op: &str, key: &str, e: impl fmt::Display) -> String {
        format!("Milvus's bucket {}: {op} `{key}`: {e}", self.label)
    }

    /// Every object under `prefix` (a key prefix ending in `/`), in key order. Walks the
    /// "directories" with delimiter listings (s3s-fs answers a recursive listing under a
    /// prefix wrongly; MinIO and S3 answer both).
    pub(crate) async fn list(&self, prefix: &str) -> Result<Vec<Object>, String> {
        let mut out = Vec::new();
        let mut dirs = vec![Path::from(prefix.trim_end_matches('/'))];
        while let Some(dir) = dirs.pop() {
            let r = self
                .store
                .list_with_delimiter(Some(&dir))
                .await
                .map_err(|e| self.err("list", prefix, e))?;
            dirs.extend(r.common_prefixes);
            out.extend(r.objects.into_iter().map(|m| Object {
                key: m.location.to_string(),
                size: m.size,
            }));
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// Copy object `key` into `w`; fails unless it has `size` bytes.
    pub(crate) async fn copy_to<W: AsyncWrite + Unpin>(
        &self,
        key: &str,
        size: u64,
        w: &mut W,
    ) -> Result<(), String> {
        let r = self
            .store
            .get(&Path::from(key))
            .await
            .map_err(|e| self.err("read", key, e))?;
        let mut s = r.into_stream();
        let mut n = 0u64;
        while let Some(chunk) = s.next().await {
            let chunk = chunk.map_err(|e| self.err("read", key, e))?;
            n += chunk.len() as u64;
            if n > size {
                break;
            }
            w.write_all(&chunk)
                .await
                .map_err(|e| self.err("copy", key, e))?;
        }
        if n != size {
            return Err(self.err(
                "read",
                key,
                format!("{n} bytes where the listing said {size} (changed while read?)"),
            ));
        }
        Ok(())
    }

    /// Write `size` bytes from `r` to object `key` (multipart for large objects).
    pub(crate) async fn upload<R: AsyncRead + Unpin>(
        &self,
        key: &str,
        size: u64,
        r: &mut R,
    ) -> Result<(), std::io::Error> {
        let path = Path::from(key);
        let io = |e: object_store::Error| std::io::Error::other(self.err("write", key, e));
        if size as usize <= PART {
            let mut buf = vec![0u8; size as usize];
            r.read_exact(&mut buf).await?;
            self.store
                .put(&path, PutPayload::from(buf))
                .await
                .map_err(io)?;
            return Ok(());
        }
        let upload = self.store.put_multipart(&path).await.map_err(io)?;
        let mut w = WriteMultipart::new_with_chunk_size(upload, PART);
        let mut left = size;
        let mut buf = vec![0u8; 1024 * 1024];
        while left > 0 {
            let n = (left as usize).min(buf.len());
            if let Err(e) = r.read_exact(&mut buf[..n]).await {
                w.abort().await.ok();
                return Err(e);
            }
            w.wait_for_capacity(4).await.map_err(io)?;
            w.write(&buf[..n]);
            left -= n as u64;
        }
        w.finish().await.map_err(io)?;
        Ok(())
    }

    /// Delete every object under `prefix`.
    pub(crate) async fn delete_prefix(&self, prefix: &str) -> Result<(), String> {
        for o in self.list(prefix).await? {
            self.store
                .delete(&Path::from(o.key.as_str()))
                .await
                .map_err(|e| self.err("delete", &o.key, e))?;
        }
        Ok(())
    }

    /// Check that the bucket can be listed, written and read back (`doctor`): writes and
    /// deletes one small object under `prefix`.
    pub(crate) async fn check(&self, prefix: &str) -> Result<(), String> {
        self.list(&format!("{}/insert_log/", self.root)).await?;
        let key = format!("{prefix}probe");
        let path = Path::from(key.as_str());
        self.store
            .put(&path, PutPayload::from_static(b"amber-dr probe"))
            .await
            .map_err(|e| self.err("write", &key, e))?;
        let got = self
            .store
            .get(&path)
            .await
            .map_err(|e| self.err("read", &key, e))?
            .bytes()
            .await
            .map_err(|e| self.err("read", &key, e))?;
        self.store
            .delete(&path)
            .await
            .map_err(|e| self.err("delete", &key, e))?;
        if got.as_ref() != b"amber-dr probe" {
            return Err(self.err("read back", &key, "different bytes than written"));
        }
        Ok(())
    }
}

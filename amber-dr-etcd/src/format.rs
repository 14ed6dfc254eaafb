//! The `keys.bin` artifact: a header line, then one record per key in key order:
//! `u32 key length, u32 value length` (big-endian), the key bytes, the value bytes.
//!
//! The fingerprint is the SHA-256 of the records (the stream without its header), so the
//! snapshot and the restored server are compared on exactly the bytes of every key and value.

use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::client::Kv;

/// First bytes of the artifact.
pub(crate) const HEADER: &[u8] = b"amber-dr etcd keys v1\n";
/// Longest key or value accepted when reading (etcd's own limits are far below).
const MAX_LEN: u32 = 256 * 1024 * 1024;

/// Running count and fingerprint of a key stream.
#[derive(Debug, Clone, Default)]
pub(crate) struct Digester {
    hasher: Sha256,
    pub count: u64,
    pub bytes: u64,
}

impl Digester {
    pub(crate) fn add(&mut self, key: &[u8], value: &[u8]) {
        self.hasher.update(record_head(key, value));
        self.hasher.update(key);
        self.hasher.update(value);
        self.count += 1;
        self.bytes += (key.len() + value.len()) as u64;
    }
    pub(crate) fn fingerprint(&self) -> String {
        hex::encode(self.hasher.clone().finalize())
    }
}

fn record_head(key: &[u8], value: &[u8]) -> [u8; 8] {
    let mut h = [0u8; 8];
    h[..4].copy_from_slice(&(key.len() as u32).to_be_bytes());
    h[4..].copy_from_slice(&(value.len() as u32).to_be_bytes());
    h
}

/// Write one record.
pub(crate) async fn write_kv<W: AsyncWrite + Unpin>(w: &mut W, kv: &Kv) -> std::io::Result<()> {
    w.write_all(&record_head(&kv.key, &kv.value)).await?;
    w.write_all(&kv.key).await?;
    w.write_all(&kv.value).await
}

/// Reads records back; checks the header first.
pub(crate) struct KvReader<R> {
    inner: R,
}

impl<R: AsyncRead + Unpin> KvReader<R> {
    /// Check the header.
    pub(crate) async fn new(mut inner: R) -> Result<Self, String> {
        let mut h = vec![0u8; HEADER.len()];
        inner
            .read_exact(&mut h)
            .await
            .map_err(|e| format!("cannot read the header: {e}"))?;
        if h != HEADER {
            return Err(format!(
                "not an etcd keys artifact (header {:?})",
                String::from_utf8_lossy(&h)
            ));
        }
        Ok(Self { inner })
    }

    /// The next record, or `None` at a clean end of stream.
    pub(crate) async fn next(&mut self) -> std::io::Result<Option<Kv>> {
        let mut head = [0u8; 8];
        let mut got = 0;
        while got < head.len() {
            let n = self.inner.read(&mut head[got..]).await?;
            if n == 0 {
                if got == 0 {
                    return Ok(None);
                }
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the stream ends inside a record",
                ));
            }
            got += n;
        }
        let klen = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        let vlen = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
        if klen == 0 || klen > MAX_LEN || vlen > MAX_LEN {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("implausible record lengths (key {klen}, value {vlen})"),
            ));
        }
        let mut key = vec![0u8; klen as usize];
        self.inner.read_exact(&mut key).await?;
        let mut value = vec![0u8; vlen as usize];
        self.inner.read_exact(&mut value).await?;
        Ok(Some(Kv { key, value }))
    }

    /// The underlying reader (to finish it).
    pub(crate) fn into_inner(self) -> R {
        self.inner
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn roundtrip_and_fingerprint() {
        let kvs = vec![
            Kv {
                key: vec![0, 1, 0xff],
                value: vec![],
            },
            Kv {
                key: b"k".to_vec(),
                value: vec![7; 1000],
            },
        ];
        let mut buf = HEADER.to_vec();
        let mut d = Digester::default();
        for kv in &kvs {
            write_kv(&mut buf, kv).await.expect("write");
            d.add(&kv.key, &kv.value);
        }
        let mut r = KvReader::new(&buf[..]).await.expect("header");
        let mut d2 = Digester::default();
        while let Some(kv) = r.next().await.expect("read") {
            d2.add(&kv.key, &kv.value);
        }
        assert_eq!(d2.count, 2);
        assert_eq!(d.fingerprint(), d2.fingerprint());
        // A truncated stream is an error, not a shorter list.
        let mut r = KvReader::new(&buf[..buf.len() - 3]).await.expect("header");
        r.next().await.expect("first");
        assert!(r.next().await.is_err());
        assert!(KvReader::new(&b"garbage header here!!!!"[..])
            .await
            .is_err());
    }
}

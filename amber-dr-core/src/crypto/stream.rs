//! The sealed stream format: a header naming the data key, then ChaCha20-Poly1305 in the STREAM
//! construction (`aead::stream`, 32-bit big-endian counter), over 64 KiB chunks.
//!
//! ```text
//! magic  8 bytes   "amberdr\x01"
//! kid   16 bytes   id of the data key (`keys/data/<hex kid>.age`)
//! salt  16 bytes   random; stream key = HKDF-SHA256(ikm = data key, salt, info = "amber-dr stream v1")
//! chunks           every chunk but the last: 65536 plaintext bytes + 16-byte tag;
//!                  the last: 0..=65535 plaintext bytes + tag, sealed with STREAM's last flag
//! ```
//!
//! The nonce is STREAM's: a 7-byte prefix (zero: the key is unique per stream), a 32-bit
//! big-endian chunk counter and the last-chunk flag. A flipped bit fails the chunk's tag; a
//! stream cut at a chunk boundary lacks its last chunk; chunks swapped fail their counters.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use chacha20poly1305::aead::stream::{DecryptorBE32, EncryptorBE32};
use hkdf::Hkdf;
use sha2::Sha256;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::aead::ChaCha20Poly1305Fast as ChaCha20Poly1305;
use super::DataKey;
use crate::Error;

/// First bytes of every sealed object.
pub const MAGIC: &[u8; 8] = b"amberdr\x01";
/// Plaintext bytes per chunk.
pub const CHUNK: usize = 64 * 1024;
/// Poly1305 tag length.
pub const TAG: usize = 16;
/// Header length: magic, key id, salt.
pub const HEADER: usize = 8 + 16 + 16;

fn stream_key(dk: &DataKey, salt: &[u8]) -> ChaCha20Poly1305 {
    let hk = Hkdf::<Sha256>::new(Some(salt), dk.key.as_ref());
    let mut okm = [0u8; 32];
    // 32 bytes is far below HKDF-SHA256's limit: expand cannot fail.
    let _ = hk.expand(b"amber-dr stream v1", &mut okm);
    ChaCha20Poly1305::from_key(&okm)
}

const NONCE_PREFIX: [u8; 7] = [0u8; 7];

/// Seal `plain` whole (small objects: manifests, whole blobs), in the same format as streams.
pub fn seal_bytes(dk: &DataKey, plain: &[u8]) -> Vec<u8> {
    let salt: [u8; 16] = super::random();
    let mut out = Vec::with_capacity(HEADER + plain.len() + (plain.len() / CHUNK + 1) * TAG);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&dk.id);
    out.extend_from_slice(&salt);
    let mut enc = EncryptorBE32::from_aead(stream_key(dk, &salt), (&NONCE_PREFIX).into());
    let mut chunks = plain.chunks_exact(CHUNK);
    for c in chunks.by_ref() {
        // Encryption of a well-formed chunk cannot fail.
        out.extend(enc.encrypt_next(c).unwrap_or_default());
    }
    out.extend(enc.encrypt_last(chunks.remainder()).unwrap_or_default());
    out
}

/// The key id of a sealed object, or None if it does not start like one.
pub fn sealed_key_id(bytes: &[u8]) -> Option<[u8; 16]> {
    if bytes.len() < HEADER || &bytes[..8] != MAGIC {
        return None;
    }
    bytes[8..24].try_into().ok()
}

/// Open an object sealed whole by [`seal_bytes`] (or a stream); `what` names it in errors.
pub fn open_bytes(dk: &DataKey, sealed: &[u8], what: &str) -> crate::Result<Vec<u8>> {
    let damaged = |message: String| Error::Corrupt {
        artifact: what.to_string(),
        message,
    };
    if sealed_key_id(sealed) != Some(dk.id) {
        return Err(damaged("not sealed with the expected data key".into()));
    }
    let mut dec = DecryptorBE32::from_aead(stream_key(dk, &sealed[24..40]), (&NONCE_PREFIX).into());
    let body = &sealed[HEADER..];
    let mut out = Vec::with_capacity(body.len());
    let mut rest = body;
    let mut n = 0u64;
    loop {
        if rest.len() > CHUNK + TAG {
            let (c, r) = rest.split_at(CHUNK + TAG);
            let p = dec.decrypt_next(c).map_err(|_| {
                damaged(format!(
                    "chunk {n} fails authentication (damaged, reordered or truncated)"
                ))
            })?;
            out.extend(p);
            rest = r;
            n += 1;
        } else if rest.len() == CHUNK + TAG {
            // A full chunk is never the last one: the stream was cut here.
            return Err(damaged(format!(
                "truncated: the stream ends after chunk {n} without its last chunk"
            )));
        } else {
            let p = dec.decrypt_last(rest).map_err(|_| {
                damaged(format!(
                    "last chunk {n} fails authentication (damaged, reordered or truncated)"
                ))
            })?;
            out.extend(p);
            return Ok(out);
        }
    }
}

/// A writer that seals everything written to it into `inner` (or passes it through when it
/// has no key: the plain form of the same stream).
pub struct SealWriter<W> {
    inner: W,
    enc: Option<EncryptorBE32<ChaCha20Poly1305>>,
    sealing: bool,
    plain: Vec<u8>,
    out: Vec<u8>,
    out_pos: usize,
    finished: bool,
}

impl<W> SealWriter<W> {
    /// A writer that seals with `key`, or a pass-through when `key` is None.
    pub fn new(inner: W, key: Option<&DataKey>) -> Self {
        let mut out = Vec::new();
        let enc = key.map(|dk| {
            let salt: [u8; 16] = super::random();
            out.extend_from_slice(MAGIC);
            out.extend_from_slice(&dk.id);
            out.extend_from_slice(&salt);
            EncryptorBE32::from_aead(stream_key(dk, &salt), (&NONCE_PREFIX).into())
        });
        Self {
            inner,
            sealing: enc.is_some(),
            enc,
            plain: Vec::new(),
            out,
            out_pos: 0,
            finished: false,
        }
    }

    /// The wrapped writer.
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }
}

impl<W: AsyncWrite + Unpin> SealWriter<W> {
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.out_pos < self.out.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.out[self.out_pos..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.out_pos += n;
        }
        self.out.clear();
        self.out_pos = 0;
        Poll::Ready(Ok(()))
    }

    fn seal_full_chunk(&mut self) -> io::Result<()> {
        let enc = self
            .enc
            .as_mut()
            .ok_or_else(|| io::Error::other("sealed stream already finished"))?;
        // In place: the chunk buffer becomes the sealed chunk, and (the output being drained)
        // changes places with the output buffer rather than being copied into it.
        enc.encrypt_next_in_place(&[], &mut self.plain)
            .map_err(|_| io::Error::other("cannot seal chunk"))?;
        if self.out.is_empty() {
            std::mem::swap(&mut self.out, &mut self.plain);
        } else {
            self.out.extend_from_slice(&self.plain);
        }
        self.plain.clear();
        self.plain.reserve(CHUNK + TAG);
        Ok(())
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for SealWriter<W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if !this.sealing {
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        }
        loop {
            ready!(this.poll_drain(cx))?;
            if this.plain.len() == CHUNK {
                this.seal_full_chunk()?;
                continue;
            }
            break;
        }
        let n = buf.len().min(CHUNK - this.plain.len());
        this.plain.extend_from_slice(&buf[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    /// Seals the last chunk (a full pending chunk first), then shuts the inner writer down.
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.sealing && !this.finished {
            loop {
                ready!(this.poll_drain(cx))?;
                if this.plain.len() == CHUNK {
                    this.seal_full_chunk()?;
                    continue;
                }
                break;
            }
            let enc = this
                .enc
                .take()
                .ok_or_else(|| io::Error::other("sealed stream already finished"))?;
            let c = enc
                .encrypt_last(this.plain.as_slice())
                .map_err(|_| io::Error::other("cannot seal the last chunk"))?;
            this.out.extend(c);
            this.plain.clear();
            this.finished = true;
        }
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

/// Finds the data key a sealed stream names (the repository's key store).
pub type KeyFuture = Pin<Box<dyn Future<Output = crate::Result<Arc<DataKey>>> + Send>>;
/// Looks up a data key by id.
pub type KeyLookup = Arc<dyn Fn([u8; 16]) -> KeyFuture + Send + Sync>;

enum OpenState {
    Header,
    Key(KeyFuture),
    Chunks,
    Done,
}

/// A reader that opens a sealed stream read from `inner` (or passes it through when `lookup` is
/// None). Damage is an [`Error::Corrupt`] naming `artifact`, carried in the `io::Error`.
pub struct OpenReader<R> {
    inner: R,
    lookup: Option<KeyLookup>,
    artifact: String,
    state: OpenState,
    header: Vec<u8>,
    dec: Option<DecryptorBE32<ChaCha20Poly1305>>,
    cipher: Vec<u8>,
    plain: Vec<u8>,
    plain_pos: usize,
    chunk: u64,
}

impl<R> OpenReader<R> {
    /// Open `inner`, looking up its data key with `lookup` (None: plain pass-through).
    pub fn new(inner: R, lookup: Option<KeyLookup>, artifact: &str) -> Self {
        Self {
            inner,
            lookup,
            artifact: artifact.to_string(),
            state: OpenState::Header,
            header: Vec::with_capacity(HEADER),
            dec: None,
            cipher: Vec::with_capacity(CHUNK + TAG),
            plain: Vec::new(),
            plain_pos: 0,
            chunk: 0,
        }
    }

    fn damaged(&self, message: String) -> io::Error {
        Error::Corrupt {
            artifact: self.artifact.clone(),
            message,
        }
        .into_io()
    }
}

impl<R: AsyncRead + Unpin> OpenReader<R> {
    /// Read into `dst` until it holds `want` bytes or the stream ends; true at end of stream.
    fn poll_fill(
        inner: &mut R,
        cx: &mut Context<'_>,
        dst: &mut Vec<u8>,
        want: usize,
    ) -> Poll<io::Result<bool>> {
        // Straight into `dst`, a whole chunk per read where the source allows (a small
        // intermediate buffer made a local file's restore many times slower: one blocking
        // read per 16 KiB).
        while dst.len() < want {
            let len = dst.len();
            dst.resize(want, 0);
            let mut rb = ReadBuf::new(&mut dst[len..]);
            let res = Pin::new(&mut *inner).poll_read(cx, &mut rb);
            let n = rb.filled().len();
            dst.truncate(len + n);
            ready!(res)?;
            if n == 0 {
                return Poll::Ready(Ok(true));
            }
        }
        Poll::Ready(Ok(false))
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for OpenReader<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let Some(lookup) = this.lookup.clone() else {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        };
        loop {
            if this.plain_pos < this.plain.len() {
                let n = buf.remaining().min(this.plain.len() - this.plain_pos);
                buf.put_slice(&this.plain[this.plain_pos..this.plain_pos + n]);
                this.plain_pos += n;
                return Poll::Ready(Ok(()));
            }
            match &mut this.state {
                OpenState::Done => return Poll::Ready(Ok(())),
                OpenState::Header => {
                    let eof = ready!(Self::poll_fill(
                        &mut this.inner,
                        cx,
                        &mut this.header,
                        HEADER
                    ))?;
                    let Some(kid) = sealed_key_id(&this.header).filter(|_| !eof) else {
                        return Poll::Ready(Err(this
                            .damaged("does not start with the header of a sealed stream".into())));
                    };
                    this.state = OpenState::Key(lookup(kid));
                }
                OpenState::Key(fut) => {
                    let dk = match ready!(fut.as_mut().poll(cx)) {
                        Ok(dk) => dk,
                        Err(e) => {
                            this.state = OpenState::Done;
                            return Poll::Ready(Err(e.into_io()));
                        }
                    };
                    this.dec = Some(DecryptorBE32::from_aead(
                        stream_key(&dk, &this.header[24..40]),
                        (&NONCE_PREFIX).into(),
                    ));
                    this.state = OpenState::Chunks;
                }
                OpenState::Chunks => {
                    // One byte more than a full chunk: a full chunk is never the last one.
                    let eof = ready!(Self::poll_fill(
                        &mut this.inner,
                        cx,
                        &mut this.cipher,
                        CHUNK + TAG + 1
                    ))?;
                    let n = this.chunk;
                    if eof {
                        if this.cipher.len() == CHUNK + TAG {
                            this.state = OpenState::Done;
                            return Poll::Ready(Err(this.damaged(format!(
                                "truncated: the sealed stream ends after chunk {n} without its last chunk"
                            ))));
                        }
                        let dec = this.dec.take();
                        let res = dec.map(|d| d.decrypt_last(this.cipher.as_slice()));
                        this.state = OpenState::Done;
                        match res {
                            Some(Ok(p)) => {
                                this.plain = p;
                                this.plain_pos = 0;
                            }
                            _ => {
                                return Poll::Ready(Err(this.damaged(format!(
                                    "last chunk {n} fails authentication (damaged, reordered or truncated)"
                                ))))
                            }
                        }
                    } else {
                        // In place: the chunk's buffer becomes the plaintext and changes
                        // places with the (consumed) plaintext buffer; the one byte read
                        // past the chunk starts the next one.
                        let extra = this.cipher[CHUNK + TAG];
                        this.cipher.truncate(CHUNK + TAG);
                        let res = this
                            .dec
                            .as_mut()
                            .map(|d| d.decrypt_next_in_place(&[], &mut this.cipher));
                        match res {
                            Some(Ok(())) => {
                                std::mem::swap(&mut this.plain, &mut this.cipher);
                                this.cipher.clear();
                                this.cipher.reserve(CHUNK + TAG + 1);
                                this.cipher.push(extra);
                                this.plain_pos = 0;
                                this.chunk += 1;
                            }
                            _ => {
                                this.state = OpenState::Done;
                                return Poll::Ready(Err(this.damaged(format!(
                                    "chunk {n} fails authentication (damaged, reordered or truncated)"
                                ))));
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn key() -> Arc<DataKey> {
        Arc::new(DataKey {
            id: [7; 16],
            key: [9; 32],
        })
    }

    fn lookup(dk: Arc<DataKey>) -> KeyLookup {
        Arc::new(move |_| {
            let dk = dk.clone();
            Box::pin(async move { Ok(dk) })
        })
    }

    async fn seal(plain: &[u8]) -> Vec<u8> {
        let mut w = SealWriter::new(Vec::new(), Some(&key()));
        // Odd write sizes cross chunk boundaries.
        for c in plain.chunks(10_007) {
            w.write_all(c).await.expect("write");
        }
        w.shutdown().await.expect("shutdown");
        std::mem::take(w.get_mut())
    }

    async fn open(sealed: &[u8]) -> crate::Result<Vec<u8>> {
        let mut r = OpenReader::new(sealed, Some(lookup(key())), "a/b.zst");
        let mut out = Vec::new();
        r.read_to_end(&mut out)
            .await
            .map_err(|e| Error::from_io("read", "a/b.zst", e))?;
        Ok(out)
    }

    #[tokio::test]
    async fn roundtrip_at_every_chunk_edge_and_whole_and_streamed_agree() {
        for n in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 3 * CHUNK + 5] {
            let plain: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
            let sealed = seal(&plain).await;
            let chunks = n / CHUNK + 1;
            assert_eq!(sealed.len(), HEADER + n + chunks * TAG, "n = {n}");
            assert_eq!(open(&sealed).await.expect("open"), plain, "n = {n}");
            assert_eq!(open_bytes(&key(), &sealed, "x").expect("whole"), plain);
            let whole = seal_bytes(&key(), &plain);
            assert_eq!(open(&whole).await.expect("open whole"), plain);
            if n >= 64 {
                assert!(
                    !sealed.windows(64).any(|w| w == &plain[..64]),
                    "plaintext visible"
                );
            }
        }
    }

    #[tokio::test]
    async fn flipped_truncated_reordered_and_wrong_key_fail() {
        let plain: Vec<u8> = (0..3 * CHUNK + 100).map(|i| (i * 7 % 256) as u8).collect();
        let sealed = seal(&plain).await;
        let fail = |r: crate::Result<Vec<u8>>, what: &str| {
            let e = r.expect_err(what);
            assert!(e.is_damage(), "{what}: {e}");
            assert!(e.to_string().contains("a/b.zst"), "{what}: {e}");
        };
        let mut flipped = sealed.clone();
        flipped[HEADER + CHUNK + 3] ^= 1;
        fail(open(&flipped).await, "flipped");
        // Cut at a chunk boundary: every chunk that is there authenticates, the last is gone.
        let cut = &sealed[..HEADER + 2 * (CHUNK + TAG)];
        fail(open(cut).await, "cut at a boundary");
        fail(open_bytes(&key(), cut, "a/b.zst"), "cut whole");
        fail(open(&sealed[..sealed.len() - 1]).await, "cut inside");
        let mut swapped = sealed[..HEADER].to_vec();
        swapped.extend_from_slice(&sealed[HEADER + CHUNK + TAG..HEADER + 2 * (CHUNK + TAG)]);
        swapped.extend_from_slice(&sealed[HEADER..HEADER + CHUNK + TAG]);
        swapped.extend_from_slice(&sealed[HEADER + 2 * (CHUNK + TAG)..]);
        fail(open(&swapped).await, "reordered");
        let mut salt = sealed.clone();
        salt[30] ^= 1;
        fail(open(&salt).await, "salt changed");
        let other = Arc::new(DataKey {
            id: [7; 16],
            key: [8; 32],
        });
        let mut r = OpenReader::new(&sealed[..], Some(lookup(other)), "a/b.zst");
        let mut out = Vec::new();
        assert!(r.read_to_end(&mut out).await.is_err(), "wrong key");
        fail(
            open(b"plain zstd bytes, not sealed at all......").await,
            "plain",
        );
    }
}

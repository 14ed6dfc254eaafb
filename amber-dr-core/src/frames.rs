//! A blob body held whole in memory, made into zstd frames: runs of 64 KiB segments whose
//! bytes look random (compressed media: images, PDFs, archives) are written as raw frames —
//! the bytes as they are, with the frame's content size and checksum — and the other runs are
//! compressed at the repository's level. zstd at level 3 spends as long failing to compress
//! random bytes as compressing text (its match search runs over every position): on a data
//! set that is 60% media, that search was a third of a backup's CPU time and saved nothing.
//! Any zstd decoder reads the result (a blob is one or more frames; RFC 8878).

use std::io;

use bytes::Bytes;

/// Segments are classified this long.
const SEGMENT: usize = 64 * 1024;
/// Bytes sampled per segment: [`SAMPLES`] pieces this long, spread over it.
const SAMPLE: usize = 1024;
/// Samples per segment, 8 KiB apart; a segment is stored raw only if every one looks random
/// (so at most ~8 KiB of compressible bytes at a boundary go raw with it).
const SAMPLES: usize = 8;
/// Samples of a small file (it is read whole for its pack: looking at all of it would cost
/// as much as hashing it).
const FILE_SAMPLES: usize = 4;
/// Order-0 entropy (bits per byte) at or above which a sample looks random. Random bytes
/// measure ~7.82 in 1,024-byte samples (the estimate is biased low by ~0.18), text 4–6,
/// zstd-compressed data about as random bytes.
const RANDOM_BITS: f64 = 7.6;
/// Random-looking segments in a row needed for a raw frame.
const MIN_RAW: usize = 2;
/// A raw block holds at most this many bytes (zstd's maximum block size).
const RAW_BLOCK: usize = 128 * 1024;

/// `content` as zstd frames (content size and checksum in each), appended to `out` as parts
/// to be stored one after the other: compressed at `level` except runs of segments that look
/// random (see the module), whose raw frames refer to `content`'s bytes (no copy). The
/// compressor is kept per thread and level: allocating a zstd context (megabytes at the usual
/// levels) for every small blob cost more than compressing it.
pub(crate) fn compress_parts(content: &Bytes, level: i32, out: &mut Vec<Bytes>) -> io::Result<()> {
    // Each segment classified (a short last one goes with the one before it)...
    let mut random: Vec<bool> = Vec::with_capacity(content.len() / SEGMENT + 1);
    for seg in content.chunks(SEGMENT) {
        let r = match random.last() {
            Some(&r) if seg.len() < SEGMENT => r,
            _ => looks_random(seg),
        };
        random.push(r);
    }
    // ...then runs of segments alike, (start, raw): a random-looking stretch shorter than
    // [`MIN_RAW`] segments stays in the compressed frame around it, whose window keeps the
    // context that the compressible bytes on both sides share (small files in a pack).
    let mut runs: Vec<(usize, bool)> = Vec::new();
    let mut i = 0;
    while i < random.len() {
        let same = random[i..].iter().take_while(|&&r| r == random[i]).count();
        let raw = random[i] && same >= MIN_RAW;
        if runs.last().map(|r| r.1) != Some(raw) {
            runs.push((i * SEGMENT, raw));
        }
        i += same;
    }
    if runs.is_empty() {
        // Empty content: one empty compressed frame.
        runs.push((0, false));
    }
    for (k, &(start, raw)) in runs.iter().enumerate() {
        let end = runs.get(k + 1).map_or(content.len(), |r| r.0);
        if raw {
            raw_frame(out, content.slice(start..end));
        } else {
            // Into a buffer used again once the frame is stored ([`crate::buffers`]).
            let src = &content[start..end];
            let mut frame = crate::buffers::take(zstd::zstd_safe::compress_bound(src.len()));
            with_compressor(level, |c| c.compress_to_buffer(src, &mut frame))?;
            out.push(crate::buffers::into_bytes(frame));
        }
    }
    Ok(())
}

/// `content` as one buffer of zstd frames ([`compress_parts`] joined).
#[cfg(test)]
pub(crate) fn compress_whole(content: &[u8], level: i32) -> io::Result<Vec<u8>> {
    let mut parts = Vec::new();
    compress_parts(&Bytes::copy_from_slice(content), level, &mut parts)?;
    Ok(parts.concat())
}

/// Whether `bytes` (a small file) looks random: up to [`FILE_SAMPLES`] samples spread over it
/// all look random (the last one looked at first: a file's end is where media formats put
/// their compressible index, text its padding); shorter than two samples: never. A pack puts
/// such files after the others, so that the compressible ones form one run whose frame keeps
/// their shared context. A file taken for random wrongly costs some compression, no more.
pub(crate) fn looks_random_file(bytes: &[u8]) -> bool {
    if bytes.len() < 2 * SAMPLE {
        return false;
    }
    let samples = (bytes.len() / SAMPLE).min(FILE_SAMPLES);
    let step = (bytes.len() - SAMPLE) / (samples - 1);
    (0..samples)
        .rev()
        .all(|k| random_sample(&bytes[k * step..k * step + SAMPLE]))
}

/// Whether one sample looks random (order-0 entropy at least [`RANDOM_BITS`]).
fn random_sample(sample: &[u8]) -> bool {
    !few_distinct(sample) && entropy(sample) >= RANDOM_BITS
}

/// Whether the first 32 bytes of `sample` hold fewer than 24 distinct values: random bytes
/// hold ~30 (fewer than 24 about once in 10^5 samples), text and runs of one value far fewer.
/// A cheap way out before the histogram of a sample that is plainly not random.
fn few_distinct(sample: &[u8]) -> bool {
    let mut seen = [0u64; 4];
    for &b in &sample[..sample.len().min(32)] {
        seen[usize::from(b >> 6)] |= 1 << (b & 63);
    }
    seen.iter().map(|w| w.count_ones()).sum::<u32>() < 24
}

/// Whether every sample of `seg` looks random (a short segment: never).
fn looks_random(seg: &[u8]) -> bool {
    if seg.len() < SEGMENT {
        return false;
    }
    let step = seg.len() / SAMPLES;
    (0..SAMPLES).all(|k| random_sample(&seg[k * step..k * step + SAMPLE]))
}

/// Order-0 entropy of `bytes` (at most [`SAMPLE`] long), in bits per byte:
/// `log2 n − Σ c·log2 c / n` over the byte counts `c`, with `c·log2 c` from a table.
fn entropy(bytes: &[u8]) -> f64 {
    static C_LOG2_C: std::sync::OnceLock<Vec<f64>> = std::sync::OnceLock::new();
    let table = C_LOG2_C.get_or_init(|| {
        (0..=SAMPLE)
            .map(|c| {
                if c == 0 {
                    0.0
                } else {
                    c as f64 * (c as f64).log2()
                }
            })
            .collect()
    });
    // Two histograms, even and odd bytes: a run of one byte value (text, padding) does not
    // make every increment wait for the one before it.
    let mut even = [0u16; 256];
    let mut odd = [0u16; 256];
    let bytes = &bytes[..bytes.len().min(SAMPLE)];
    let mut pairs = bytes.chunks_exact(2);
    for p in &mut pairs {
        even[usize::from(p[0])] += 1;
        odd[usize::from(p[1])] += 1;
    }
    for &b in pairs.remainder() {
        even[usize::from(b)] += 1;
    }
    let n = bytes.len() as f64;
    let sum: f64 = even
        .iter()
        .zip(&odd)
        .map(|(&a, &b)| table[usize::from(a + b)])
        .sum();
    n.log2() - sum / n
}

/// Append one frame of raw blocks holding `content`: the frame header (content size in 8
/// bytes, a 128 KiB window, checksum flag), blocks of at most 128 KiB (each a 3-byte header
/// and a slice of `content`), the checksum (the low 32 bits of XXH64 with seed 0).
fn raw_frame(out: &mut Vec<Bytes>, content: Bytes) {
    let mut head = Vec::with_capacity(20);
    head.extend_from_slice(&0xFD2F_B528u32.to_le_bytes());
    // Frame_Content_Size_flag 3 (8 bytes), no single segment, Content_Checksum_flag.
    head.push(0b1100_0100);
    // Window_Descriptor: exponent 7, mantissa 0 → 2^17 bytes.
    head.push(7 << 3);
    head.extend_from_slice(&(content.len() as u64).to_le_bytes());
    let sum = xxhash_rust::xxh64::xxh64(&content, 0) as u32;
    if content.is_empty() {
        head.extend_from_slice(&block_header(0, true));
    }
    let mut start = 0;
    while start < content.len() {
        let end = (start + RAW_BLOCK).min(content.len());
        head.extend_from_slice(&block_header(end - start, end == content.len()));
        out.push(std::mem::take(&mut head).into());
        out.push(content.slice(start..end));
        start = end;
    }
    head.extend_from_slice(&sum.to_le_bytes());
    out.push(head.into());
}

/// A raw block's 3-byte header: Last_Block bit, Block_Type 0 (raw), Block_Size.
fn block_header(len: usize, last: bool) -> [u8; 3] {
    let h = ((len as u32) << 3) | u32::from(last);
    let b = h.to_le_bytes();
    [b[0], b[1], b[2]]
}

/// Run `f` with this thread's compressor for `level` (content size and checksum on).
fn with_compressor<T>(
    level: i32,
    f: impl FnOnce(&mut zstd::bulk::Compressor<'static>) -> io::Result<T>,
) -> io::Result<T> {
    type Slot = std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>>;
    thread_local! {
        static COMPRESSOR: Slot = const { std::cell::RefCell::new(None) };
    }
    COMPRESSOR.with(|slot| {
        let mut slot = slot.borrow_mut();
        if slot.as_ref().is_none_or(|(l, _)| *l != level) {
            let mut c = zstd::bulk::Compressor::new(level)?;
            c.include_checksum(true)?;
            c.include_contentsize(true)?;
            *slot = Some((level, c));
        }
        match slot.as_mut() {
            Some((_, c)) => f(c),
            None => Err(io::Error::other("no zstd compressor")),
        }
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::test_data::noise;

    fn text(len: usize) -> Vec<u8> {
        b"the quick brown fox jumps over the lazy dog 0123456789\n"
            .iter()
            .copied()
            .cycle()
            .take(len)
            .collect()
    }

    fn frames(blob: &[u8]) -> usize {
        let mut n = 0;
        let mut rest = blob;
        while !rest.is_empty() {
            let len = zstd::zstd_safe::find_frame_compressed_size(rest).expect("a frame");
            rest = &rest[len..];
            n += 1;
        }
        n
    }

    /// zstd itself must read every shape back, with the checksums checked.
    fn roundtrip(content: &[u8]) -> Vec<u8> {
        let blob = compress_whole(content, 3).unwrap();
        let back = zstd::bulk::Decompressor::new()
            .unwrap()
            .decompress(&blob, content.len() + 1)
            .unwrap();
        assert_eq!(back, content);
        let mut streamed = Vec::new();
        zstd::stream::copy_decode(&blob[..], &mut streamed).unwrap();
        assert_eq!(streamed, content);
        blob
    }

    #[test]
    fn random_bytes_are_stored_raw_and_text_compressed() {
        let random = noise(1024 * 1024 + 17, 3);
        let blob = roundtrip(&random);
        assert_eq!(frames(&blob), 1);
        // Raw: the bytes, headers (14), block headers (3 per 128 KiB) and checksum (4).
        assert_eq!(blob.len(), random.len() + 14 + 9 * 3 + 4);
        assert_eq!(&blob[14 + 3..14 + 3 + 100], &random[..100]);
        let text = text(1024 * 1024);
        let blob = roundtrip(&text);
        assert_eq!(frames(&blob), 1);
        assert!(blob.len() < text.len() / 20, "{}", blob.len());
    }

    #[test]
    fn mixed_content_is_split_into_runs() {
        let mut c = text(3 * SEGMENT);
        c.extend(noise(5 * SEGMENT, 9));
        c.extend(text(2 * SEGMENT + 100));
        let blob = roundtrip(&c);
        assert_eq!(frames(&blob), 3);
        assert!(blob.len() < 5 * SEGMENT + SEGMENT / 4, "{}", blob.len());
    }

    #[test]
    fn small_and_empty_bodies_are_compressed_frames() {
        for content in [Vec::new(), b"x".to_vec(), noise(SEGMENT - 1, 5)] {
            let blob = roundtrip(&content);
            assert_eq!(frames(&blob), 1);
        }
        let mut out = Vec::new();
        raw_frame(&mut out, Bytes::new());
        let back = zstd::bulk::Decompressor::new()
            .unwrap()
            .decompress(&out.concat(), 1)
            .unwrap();
        assert!(back.is_empty());
    }

    #[test]
    fn entropy_of_known_samples() {
        assert_eq!(entropy(&[7u8; SAMPLE]), 0.0);
        let two: Vec<u8> = (0..SAMPLE).map(|i| (i % 2) as u8).collect();
        assert!((entropy(&two) - 1.0).abs() < 1e-9);
        let all: Vec<u8> = (0..SAMPLE).map(|i| (i % 256) as u8).collect();
        assert!((entropy(&all) - 8.0).abs() < 1e-9);
    }

    #[test]
    fn random_files_are_told_from_text() {
        assert!(looks_random_file(&noise(3000, 1)));
        assert!(looks_random_file(&noise(200_000, 2)));
        assert!(!looks_random_file(&text(200_000)));
        assert!(!looks_random_file(&noise(2000, 3)));
        let mut half = noise(100_000, 4);
        half.extend(text(20_000));
        assert!(!looks_random_file(&half));
    }

    #[test]
    fn a_damaged_raw_frame_fails_its_checksum() {
        let random = noise(2 * SEGMENT, 4);
        let mut blob = compress_whole(&random, 3).unwrap();
        blob[14 + 3 + 10] ^= 1;
        assert!(zstd::bulk::Decompressor::new()
            .unwrap()
            .decompress(&blob, random.len() + 1)
            .is_err());
    }
}

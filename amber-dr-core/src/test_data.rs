//! Deterministic data for unit tests (compiled only for them).

/// `len` pseudo-random bytes (xorshift64 from `seed`, high bits): incompressible, and the same
/// for the same seed on every run.
pub(crate) fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut s = seed;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 24) as u8
        })
        .collect()
}

//! Content-defined chunking: a gear rolling hash with FastCDC's normalised cut points (a
//! stricter mask before the average size, a looser one after), so that an edit in the middle
//! of a large file moves only the cut points near it and the other chunks keep their hashes.

/// No chunk is shorter than this (except a file's last one).
pub(crate) const MIN: usize = 256 * 1024;
/// The average chunk length aimed at.
pub(crate) const AVG: usize = 1024 * 1024;
/// No chunk is longer than this.
pub(crate) const MAX: usize = 4 * 1024 * 1024;

/// Before [`AVG`]: 22 bits must be zero (cuts rarer than the average).
const MASK_S: u64 = ((1u64 << 22) - 1) << 40;
/// After [`AVG`]: 18 bits must be zero (cuts likelier).
const MASK_L: u64 = ((1u64 << 18) - 1) << 40;

/// The gear table: 256 pseudo-random words (splitmix64 of the byte), fixed forever — changing
/// it changes every cut point, and with them every chunk hash (no deduplication with older
/// backups, nothing worse).
const GEAR: [u64; 256] = gear();

const fn gear() -> [u64; 256] {
    let mut t = [0u64; 256];
    let mut state: u64 = 0x616d_6265_722d_6472; // "amber-dr"
    let mut i = 0;
    while i < 256 {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        t[i] = z ^ (z >> 31);
        i += 1;
    }
    t
}

/// The length of the first chunk of `data`. `data` must hold [`MAX`] bytes unless it is the
/// end of the file (then its cut points are the same as if more followed, up to its end).
pub(crate) fn cut(data: &[u8]) -> usize {
    let n = data.len();
    if n <= MIN {
        return n;
    }
    let end = n.min(MAX);
    let normal = AVG.min(end);
    let mut h = 0u64;
    let mut i = MIN;
    while i < normal {
        h = (h << 1).wrapping_add(GEAR[data[i] as usize]);
        if h & MASK_S == 0 {
            return i + 1;
        }
        i += 1;
    }
    while i < end {
        h = (h << 1).wrapping_add(GEAR[data[i] as usize]);
        if h & MASK_L == 0 {
            return i + 1;
        }
        i += 1;
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_data::noise;

    fn chunks(data: &[u8]) -> Vec<&[u8]> {
        let mut out = Vec::new();
        let mut rest = data;
        while !rest.is_empty() {
            let n = cut(&rest[..rest.len().min(MAX)]);
            out.push(&rest[..n]);
            rest = &rest[n..];
        }
        out
    }

    #[test]
    fn bounds_and_average() {
        let data = noise(40 * AVG, 7);
        let c = chunks(&data);
        assert!(c[..c.len() - 1]
            .iter()
            .all(|c| c.len() >= MIN && c.len() <= MAX));
        let avg = data.len() / c.len();
        assert!(avg > AVG / 2 && avg < AVG * 2, "average chunk {avg}");
    }

    #[test]
    fn an_edit_in_the_middle_keeps_most_chunks() {
        let data = noise(24 * AVG, 11);
        let mut edited = data.clone();
        edited.splice(
            12 * AVG..12 * AVG + 10,
            b"inserted bytes here".iter().copied(),
        );
        let a: std::collections::HashSet<&[u8]> = chunks(&data).into_iter().collect();
        let b = chunks(&edited);
        let same = b.iter().filter(|c| a.contains(*c)).count();
        assert!(same + 3 >= b.len(), "{same} of {} chunks kept", b.len());
    }
}

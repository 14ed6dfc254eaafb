//! Large buffers used again instead of freed: a pack of small files, a compressed frame. A
//! fresh buffer of a few MiB is new memory to the process, which the kernel zeroes page by
//! page as it is first written (measured on 100,000 small files: 57,000 page faults, ~5% of
//! the backup's CPU time, against 12,000 for `tar | zstd`). A buffer handed to the store as
//! [`Bytes`] comes back here when the last reference to it is dropped.
//!
//! Only buffers of [`SMALLEST`] bytes or more are pooled. At most [`KEPT`] buffers of at most
//! [`LARGEST`] bytes each are kept; the rest are freed as before, so the memory held back is
//! bounded. [`release`] frees the kept ones (the runner calls it when a backup ends, so that
//! a service embedding amber-dr does not hold them).

use std::sync::Mutex;

use bytes::Bytes;

/// Buffers kept for reuse.
const KEPT: usize = 8;
/// Buffers are asked for in multiples of this.
const ROUND: usize = 1024 * 1024;
/// Smaller requests get a buffer of their own, freed as usual: the heap serves them well, and
/// rounding a small object's frame up to [`ROUND`] would hold (or map) a MiB for it.
const SMALLEST: usize = 256 * 1024;
/// Buffers larger than this are not kept.
const LARGEST: usize = 9 * 1024 * 1024;

/// Kept buffers.
struct Pool(Mutex<Vec<Vec<u8>>>);

/// The process's pool.
static POOL: Pool = Pool(Mutex::new(Vec::new()));

/// An empty buffer with room for `capacity` bytes: a kept one if one is large enough.
pub(crate) fn take(capacity: usize) -> Vec<u8> {
    POOL.take(capacity)
}

/// Give back a buffer that was not made into [`Bytes`].
pub(crate) fn give(buf: Vec<u8>) {
    POOL.give(buf);
}

/// Free every kept buffer (those in use are kept when they come back, as before).
pub fn release() {
    POOL.release();
}

/// `buf` as [`Bytes`] (no copy), kept for reuse once no reference to it is left.
pub(crate) fn into_bytes(buf: Vec<u8>) -> Bytes {
    POOL.bytes_of(buf)
}

impl Pool {
    fn take(&self, capacity: usize) -> Vec<u8> {
        if capacity < SMALLEST {
            return Vec::with_capacity(capacity);
        }
        // Rounded up to whole MiB, so that buffers asked for with slightly different sizes
        // (a pack, the frame it is compressed into) fit each other's requests.
        let capacity = capacity.next_multiple_of(ROUND);
        if capacity > LARGEST {
            return Vec::with_capacity(capacity);
        }
        let kept = self.0.lock().ok().and_then(|mut pool| {
            let i = pool.iter().position(|b| b.capacity() >= capacity)?;
            Some(pool.swap_remove(i))
        });
        kept.unwrap_or_else(|| Vec::with_capacity(capacity))
    }

    fn release(&self) {
        if let Ok(mut pool) = self.0.lock() {
            *pool = Vec::new();
        }
    }

    /// Keep a buffer if there is room and it is not too large, else free it.
    pub(crate) fn give(&self, mut buf: Vec<u8>) {
        if buf.capacity() < SMALLEST || buf.capacity() > LARGEST {
            return;
        }
        buf.clear();
        if let Ok(mut pool) = self.0.lock() {
            if pool.len() < KEPT {
                pool.push(buf);
            }
        }
    }

    fn bytes_of(&'static self, buf: Vec<u8>) -> Bytes {
        if buf.capacity() < SMALLEST || buf.capacity() > LARGEST {
            return Bytes::from(buf);
        }
        Bytes::from_owner(Returned(buf, self))
    }
}

/// A buffer that goes back to its pool when dropped.
struct Returned(Vec<u8>, &'static Pool);

impl AsRef<[u8]> for Returned {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Returned {
    fn drop(&mut self) {
        self.1.give(std::mem::take(&mut self.0));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A pool of the test's own (the process's is shared by tests running at once).
    fn pool() -> &'static Pool {
        Box::leak(Box::new(Pool(Mutex::new(Vec::new()))))
    }

    #[test]
    fn a_buffer_comes_back_when_its_last_reference_is_dropped() {
        let pool = pool();
        let cap = 4 * 1024 * 1024 + 5;
        let mut buf = pool.take(cap);
        assert_eq!(buf.capacity(), 5 * ROUND, "rounded up to whole MiB");
        buf.extend_from_slice(b"pack");
        let ptr = buf.as_ptr();
        let bytes = pool.bytes_of(buf);
        let slice = bytes.slice(1..3);
        drop(bytes);
        assert_eq!(&slice[..], b"ac");
        assert!(pool.0.lock().unwrap().is_empty(), "a slice keeps it in use");
        drop(slice);
        let again = pool.take(cap / 2);
        assert!(again.is_empty());
        assert!(again.capacity() >= cap);
        assert_eq!(again.as_ptr(), ptr, "the same buffer, used again");
    }

    #[test]
    fn release_frees_the_kept_buffers() {
        let pool = pool();
        pool.give(Vec::with_capacity(ROUND));
        assert_eq!(pool.0.lock().unwrap().len(), 1);
        pool.release();
        assert!(pool.0.lock().unwrap().is_empty());
    }

    #[test]
    fn the_pool_is_bounded() {
        let pool = pool();
        drop(pool.bytes_of(Vec::with_capacity(LARGEST + 1)));
        assert!(pool.0.lock().unwrap().is_empty(), "too large to keep");
        for _ in 0..KEPT + 3 {
            pool.give(Vec::with_capacity(ROUND));
        }
        assert_eq!(pool.take(0).capacity(), 0, "nothing asked, nothing taken");
        let small = pool.take(4096);
        assert!(
            (4096..SMALLEST).contains(&small.capacity()),
            "a small request is not rounded up nor served from the pool"
        );
        drop(pool.bytes_of(small));
        assert_eq!(pool.0.lock().unwrap().len(), KEPT, "nor kept");
        assert_eq!(pool.0.lock().unwrap().len(), KEPT);
        // Nothing kept is large enough: a new buffer.
        assert!(pool.take(2 * ROUND).capacity() >= 2 * ROUND);
        assert_eq!(pool.0.lock().unwrap().len(), KEPT);
    }
}

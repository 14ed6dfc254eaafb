//! The chunked, content-addressed format of a directory backup (the `files` driver's):
//! an index artifact listing every entry with its metadata and the blob slices holding its
//! content, the blobs shared by every backup of the repository ([`crate::blobs`]), and a
//! `.blobrefs` artifact for `prune`'s mark and sweep. See docs/repository-format.md.
//!
//! - [`chunker`]: content-defined chunking of large files.
//! - [`index`]: the index's lines, read as a stream.
//! - [`backup`]: the snapshot (incremental against the previous index, concurrent reads).
//! - [`read`]: reading files into packs and chunks, for the snapshot.
//! - [`restore`]: check and extraction.

pub(crate) mod backup;
pub(crate) mod chunker;
mod dirfd;
pub(crate) mod index;
mod read;
pub(crate) mod restore;

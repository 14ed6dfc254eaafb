//! Directory trees as tar archives: the mechanism every driver that backs up a directory on
//! disk uses (the `files` driver's directory, MinIO's data volume), written once here.
//!
//! - [`write_tree`] ([`tree`]): a directory into a tar stream, metadata kept exactly (mode,
//!   owner, nanosecond mtime, symlinks as links, raw-byte names), with a fingerprint of the tree
//!   ([`scan_tree`] makes the same fingerprint of a tree on disk).
//! - [`read_archive`] ([`extract`]): a tar stream checked, or extracted into a new staging
//!   directory, with the guards against hostile archives: no absolute paths, no `..`, nothing
//!   written through a symlink or outside the staging directory, hard links only to files of
//!   the same archive.
//! - [`replace_dir`] ([`swap`]): the staged directory swap — a new tree built beside its target
//!   and swapped in with two renames, so that a failed restore leaves the old directory as it
//!   was; leftovers of interrupted restores cleaned up or pointed out.
//! - [`foreign_layout`] ([`foreign`]): where the tree's root lies in an archive written by
//!   another tool (`tar czf` of the runbook).
//! - `chunked` (crate-private): the content-addressed, incremental format of a directory
//!   backup — content-defined chunks and packs of small files stored as shared blobs
//!   ([`crate::blobs`]), an index streamed against the previous backup's, files read and
//!   written concurrently; chosen by [`Directory::chunked`], read back whatever the setting.
//! - [`Directory`]: the above put together for a component: snapshot, verify and restore of a
//!   directory, and [`Directory::restore_foreign_archive`] for a runbook's `.tar.gz`. Its
//!   records carry the component's kind; restores refuse `/`, system directories, the
//!   repository and the config file's directory.
//!
//! The tar work is blocking (std I/O): callers run it in `spawn_blocking` behind a
//! `SyncIoBridge`, as [`Directory`] does.

mod chunked;
mod directory;
pub mod extract;
pub mod foreign;
mod keys;
mod scratch;
pub mod swap;
mod target;
pub mod tree;

pub use directory::Directory;
pub use extract::{apply_root_meta, read_archive, safe_rel_path, ReadMode};
pub use foreign::{foreign_layout, ForeignLayout};
pub use swap::{is_mount_point, remove_dir, replace_dir, stage_dir, StagedDir};
pub use tree::{root_meta, scan_tree, write_tree, MTime, TreeStats, TreeSummary};

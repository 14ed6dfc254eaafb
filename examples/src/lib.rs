//! Examples for amber-dr.
//!
//! - [`single_file`]: a complete minimal driver (kind `single-file`) that backs up one file.
//!   Its test (`tests/single_file_conformance.rs`) runs the core conformance suite on it: the
//!   path every new driver follows. See `docs/writing-a-driver.md`.
//! - [`embed`] (run by `examples/embed.rs`): another program embedding the `files` driver:
//!   back up a directory, verify, restore into another directory, with Ctrl-C handling and
//!   no CLI involved.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod embed;
pub mod single_file;

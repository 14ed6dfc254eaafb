//! Errors of the `minio` driver, converted into [`amber_dr_core::Error`] where they surface.
//!
//! The S3 client's error ([`S3Error`]: which call, where, on which bucket and key, and why)
//! lives beside the client in `s3/error.rs`, since [`crate::s3`] is public on its own; it is
//! re-exported here, where every driver keeps its errors.

pub use crate::s3::S3Error;

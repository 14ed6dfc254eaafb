//! Errors of the `files` driver.
//!
//! The driver has no error type of its own: every failure comes from core's directory
//! mechanism ([`amber_dr_core::archive::Directory`]), which already reports it as an
//! [`amber_dr_core::Error`] naming this component and what it was doing (a missing directory,
//! a path that is not a directory, an unsafe archive entry, a restored tree that differs from
//! the record, an I/O error with its path), or from core's config checks. They are re-exported
//! here so that the driver's errors are found where every driver keeps them.

pub use amber_dr_core::{Error, Result};

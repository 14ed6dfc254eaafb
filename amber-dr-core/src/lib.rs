#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod archive;
pub mod artifact;
pub mod blobs;
pub mod buffers;
pub mod cancel;
pub mod component;
pub mod config;
pub mod crypto;
pub mod doctor;
pub mod drill;
mod error;
mod frames;
pub mod hooks;
mod host;
pub mod legacy;
pub mod manifest;
pub mod metrics;
pub mod object_lock;
pub mod paths;
pub mod plan;
pub mod precheck;
pub mod progress;
pub mod redact;
pub mod references;
pub mod repository;
pub mod retention;
pub mod runner;
pub mod secret;
mod selection;
#[cfg(test)]
mod test_data;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod tool;
pub mod uploads;
pub mod verify;

pub use artifact::{ArtifactReader, ArtifactWriter, CompressionOptions};
pub use async_trait::async_trait;
pub use blobs::{BlobRecord, BlobWriter, BLOB_REFS_SUFFIX};
pub use component::{
    Capabilities, Component, ComponentSpec, Factory, Probe, ReadContext, Registry, RestoreContext,
    RestoreOptions, RestoreRelation, RestoreReport, SnapshotContext, SnapshotPurpose,
    StagedRestore, VerifyContext, VerifyLevel, VerifyReport,
};
pub use crypto::EncryptionConfig;
pub use error::{Error, Result};
pub use hooks::{HookContext, RunHooks};
pub use legacy::{LegacyImport, LegacyPart, LegacyPlan};
pub use manifest::{
    ArtifactRecord, BackupPurpose, BackupStatus, ComponentRecord, ComponentStatus,
    ConsistencyClass, CutSummary, Manifest, FORMAT_VERSION,
};
pub use progress::{Progress, ProgressEvent, ProgressSink};
pub use repository::{BackupEntry, LockInfo, RepoLock, Repository, RepositoryConfig};
pub use retention::RetentionPolicy;
pub use runner::{
    BackupOptions, CleanupOutcome, CommitState, ComponentPlan, ComponentRestore, DrillOptions,
    PruneOutcome, ReferencesOutcome, RestoreOutcome, RestorePlanOptions, Runner, Selection,
    VerifyOutcome,
};
pub use secret::Secret;

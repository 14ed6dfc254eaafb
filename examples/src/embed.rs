//! Embedding amber-dr in another program, with no CLI code: back up a directory with the
//! `files` driver, verify the backup, and restore it into *another* directory (a per-component
//! target of the restore plan), all under a cancellation token that Ctrl-C / SIGTERM cancels.
//! `examples/embed.rs` is the program; `tests/embed.rs` runs it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use amber_dr_core::cancel::CancellationToken;
use amber_dr_core::{
    BackupOptions, Component, ComponentPlan, Repository, RepositoryConfig, RestoreOptions,
    RestorePlanOptions, Runner, Selection, VerifyLevel,
};
use amber_dr_files::{Files, FilesConfig};

/// The component's name in this program.
pub const COMPONENT: &str = "uploads";

/// What [`backup_verify_restore_elsewhere`] did.
#[derive(Debug, Clone)]
pub struct EmbedOutcome {
    /// The backup taken.
    pub backup_id: String,
    /// `verify --full` found no damage.
    pub verified: bool,
    /// The directory the backup was restored into.
    pub restored_into: PathBuf,
}

/// Back up `dir` into the repository at `repo_url`, verify every byte, then restore the
/// backup into `target` (which must not exist or be empty), leaving `dir` untouched. When
/// `cancel` is cancelled, core stops the run, releases the repository lock and returns
/// [`amber_dr_core::Error::Interrupted`].
pub async fn backup_verify_restore_elsewhere(
    dir: &Path,
    repo_url: &str,
    target: &Path,
    cancel: CancellationToken,
) -> amber_dr_core::Result<EmbedOutcome> {
    // A repository: a local path here; "s3://bucket/prefix" with endpoint/credentials works too.
    let repo = Repository::open(&RepositoryConfig::new(repo_url))?;
    let uploads: Arc<dyn Component> = Arc::new(Files::new(COMPONENT, FilesConfig::new(dir)));
    let runner = Runner::new(repo, vec![uploads]).with_cancellation(cancel);

    let manifest = runner.backup(&BackupOptions::default()).await?;
    let verified = runner
        .verify(&manifest.id, &Selection::all(), VerifyLevel::Full)
        .await?
        .is_ok();

    // The per-component plan: this component goes into `target`. Core checks it against the
    // driver's declared capabilities (`restore_to_target`) before anything is read.
    let mut components = BTreeMap::new();
    components.insert(
        COMPONENT.to_string(),
        ComponentPlan {
            target: Some(target.display().to_string()),
            items: Vec::new(),
        },
    );
    let plan = RestorePlanOptions {
        selection: Selection::all(),
        options: RestoreOptions::new(),
        components,
        // The configured directory is not changed, so there is nothing to save first.
        safety_backup: false,
    };
    let outcome = runner.restore(&manifest.id, &plan).await?;
    if let Some(failed) = outcome.components.iter().find_map(|c| c.error.clone()) {
        return Err(amber_dr_core::Error::Other(format!(
            "restore failed: {failed}"
        )));
    }
    Ok(EmbedOutcome {
        backup_id: manifest.id,
        verified,
        restored_into: target.to_path_buf(),
    })
}

//! Embedding one driver in another program: back up a directory, verify it, restore it.
//!
//! ```sh
//! cargo run -p amber-dr-examples --example embed -- /path/to/dir /path/to/repo
//! ```
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use amber_dr_core::{
    BackupOptions, Component, Repository, RepositoryConfig, RestorePlanOptions, Runner, Selection,
    VerifyLevel,
};
use amber_dr_files::{Files, FilesConfig};

#[tokio::main]
async fn main() -> amber_dr_core::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().unwrap_or_else(|| "./uploads".into());
    let repo_url = args.next().unwrap_or_else(|| "./backups".into());

    // A repository: a local path here; "s3://bucket/prefix" with endpoint/credentials works too.
    let repo = Repository::open(&RepositoryConfig::new(repo_url))?;
    let uploads: Arc<dyn Component> = Arc::new(Files::new("uploads", FilesConfig::new(&dir)));
    let runner = Runner::new(repo, vec![uploads]);

    let manifest = runner.backup(&BackupOptions::default()).await?;
    println!("backup {} is {:?}", manifest.id, manifest.status);

    let verified = runner
        .verify(&manifest.id, &Selection::all(), VerifyLevel::Full)
        .await?;
    println!(
        "verify: {}",
        if verified.is_ok() { "ok" } else { "DAMAGED" }
    );

    // Restore into the same directory (a safety backup of the current state is taken first).
    let plan = RestorePlanOptions {
        safety_backup: true,
        ..Default::default()
    };
    let outcome = runner.restore(&manifest.id, &plan).await?;
    println!("restored; safety backup {:?}", outcome.safety_backup);
    Ok(())
}

//! Checks a restore makes before it changes anything: every artifact of the components to
//! restore is read through and checked against the manifest first, so a damaged backup is
//! found before the safety backup is taken and before any live data is touched.

use crate::component::{ReadContext, VerifyLevel};
use crate::manifest::ComponentRecord;
use crate::progress::{Progress, ProgressSink};
use crate::repository::Repository;
use crate::{Error, Result};

/// Read every artifact of `records` (of backup `id`) through, checking sizes and SHA-256
/// hashes; the first damage found is an [`Error::Corrupt`] (exit code 3) that names the
/// artifact and says that nothing was changed.
pub async fn read_through<'a>(
    repo: &Repository,
    id: &str,
    records: impl IntoIterator<Item = &'a ComponentRecord>,
    sink: std::sync::Arc<dyn ProgressSink>,
) -> Result<()> {
    for rec in records {
        let progress = Progress::new(&rec.name, sink.clone());
        let cx = ReadContext::new(repo.clone(), id.to_string(), progress);
        cx.progress().set_phase("checking the backup");
        let report = cx.verify_artifacts(rec, VerifyLevel::Full).await?;
        if let Some(problem) = report.problems.first() {
            return Err(Error::Corrupt {
                artifact: format!("{id}/{}", rec.name),
                message: format!(
                    "{problem}; nothing was restored and no safety backup was taken (run `amber-dr verify {id}` for every problem, or restore another backup)"
                ),
            });
        }
    }
    Ok(())
}

//! The one verify skeleton every driver shares (the default [`Component::verify`]):
//!
//! - `Quick`: every artifact of the record is present with its recorded size;
//! - `Full`: the same first; then the driver's [`Component::decode`] reads and decodes what it
//!   understands (every artifact it reads to its end has its length and SHA-256 checked on the
//!   way); then every artifact the driver did not read to its end is read and hashed here. So
//!   every byte of a backup is checked at `Full` whatever the driver decodes, and a driver adds
//!   only its decoding.

use crate::component::{Component, ReadContext, VerifyLevel, VerifyReport};
use crate::manifest::ComponentRecord;
use crate::Result;

/// Verify `record` at `level` with `c`'s decoding (see the module docs).
pub async fn verify_component<C: Component + ?Sized>(
    c: &C,
    cx: &ReadContext,
    record: &ComponentRecord,
    level: VerifyLevel,
) -> Result<VerifyReport> {
    let quick = cx.verify_artifacts(record, VerifyLevel::Quick).await?;
    if level == VerifyLevel::Quick || !quick.is_ok() {
        return Ok(quick);
    }
    let cx = cx.fresh();
    let mut report = match c.decode(&cx, record).await {
        Ok(r) => r,
        Err(e) if e.is_damage() => {
            let mut r = VerifyReport::default();
            r.problems.push(e.to_string());
            r
        }
        Err(e) => return damage_behind(&cx, record, e).await,
    };
    report.artifacts_checked = record.artifacts.len() as u64;
    hash_unread(&cx, record, &mut report).await?;
    Ok(report)
}

/// A decoder meets damaged bytes before the stream's hash is checked at its end: its error `e`
/// is then about the content. The hashes decide: a report of the damaged artifacts (with `e`
/// as a note) if any hash fails, else `e` itself.
pub(crate) async fn damage_behind(
    cx: &ReadContext,
    record: &ComponentRecord,
    e: crate::Error,
) -> Result<VerifyReport> {
    let mut hashes = cx
        .fresh()
        .verify_artifacts(record, VerifyLevel::Full)
        .await?;
    if hashes.is_ok() {
        return Err(e);
    }
    hashes
        .notes
        .push(format!("decoding failed on the damaged data: {e}"));
    Ok(hashes)
}

/// Read and hash every artifact of `record` that was not read to its end through `cx`; damage
/// goes into `report.problems`.
pub(crate) async fn hash_unread(
    cx: &ReadContext,
    record: &ComponentRecord,
    report: &mut VerifyReport,
) -> Result<()> {
    for a in &record.artifacts {
        if cx.was_read(&a.path) {
            continue;
        }
        let res = match cx.open_artifact(a).await {
            Ok(r) => r.finish().await,
            Err(e) => Err(e),
        };
        match res {
            Ok(()) => report.bytes_read += a.stored_size,
            Err(e) if e.is_damage() => report.problems.push(e.to_string()),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

//! Uploads in flight, so that an interrupted run leaves no partial artifact behind.
//!
//! Every [`crate::ArtifactWriter`] counts as open from its creation until its upload was
//! completed or aborted. A writer dropped unfinished (its task was cancelled by Ctrl-C, or a
//! snapshot failed) aborts its upload in the background, which removes the parts uploaded so
//! far (a local repository's staging file, an S3 multipart upload). [`settle`] waits for
//! those aborts: the CLI calls it after an interruption, before it exits.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use object_store::WriteMultipart;

static OPEN: AtomicUsize = AtomicUsize::new(0);

/// An upload started.
pub(crate) fn opened() {
    OPEN.fetch_add(1, Ordering::SeqCst);
}

/// An upload completed or aborted.
pub(crate) fn closed() {
    let _ = OPEN.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
}

/// Abort an abandoned upload in the background (when a runtime is running), then count it
/// closed.
pub(crate) fn abandon(upload: WriteMultipart) {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => {
            handle.spawn(async move {
                let _ = upload.abort().await;
                closed();
            });
        }
        Err(_) => closed(),
    }
}

/// Uploads that are still open: being written, or abandoned and being aborted.
pub fn open_uploads() -> usize {
    OPEN.load(Ordering::SeqCst)
}

/// Wait (at most `timeout`) until every upload was completed or aborted; returns how many are
/// still open. Call it once the work that wrote them was cancelled.
pub async fn settle(timeout: Duration) -> usize {
    let deadline = tokio::time::Instant::now() + timeout;
    while open_uploads() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    open_uploads()
}

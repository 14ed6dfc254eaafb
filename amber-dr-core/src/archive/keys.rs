//! A directory's keys for `[[references]]`: the relative paths of its files (everything but
//! directories), from a backup's archive or from the directory on disk. Paths are `/`-separated,
//! relative to the directory, as a reference column holds them (a name that is not UTF-8 is
//! converted lossily: no text column can name it exactly anyway).

use std::io::{self, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_util::io::SyncIoBridge;

use super::directory::{join_err, Details, Directory, ARTIFACT, IO_BUFFER, PATHS};
use crate::references::KeyStream;
use crate::{ComponentRecord, Error, ReadContext, Result};

/// Keys sent ahead of the consumer.
const CHANNEL: usize = 4096;

impl Directory {
    /// The paths of the files in the backup `record`: its paths index (or, in backups written
    /// before it, the archive's entries), read to its end so that its hash is checked.
    pub async fn backup_keys(
        &self,
        cx: &ReadContext,
        record: &ComponentRecord,
    ) -> Result<KeyStream> {
        let details: Details = record.details()?;
        if details.absent {
            return Ok(futures::stream::empty().boxed());
        }
        if let Ok(paths) = record.artifact(PATHS) {
            return crate::references::read_keys(cx, paths).await;
        }
        // Older backups: the paths from the archive itself.
        let art = record.artifact(ARTIFACT)?.clone();
        let bridge = SyncIoBridge::new(cx.open_artifact(&art).await?);
        let (tx, rx) = mpsc::channel::<Result<String>>(CHANNEL);
        let path = art.path.clone();
        let worker = tokio::task::spawn_blocking(move || {
            let res = list_archive(BufReader::with_capacity(IO_BUFFER, bridge), &tx);
            if let Err(e) = res {
                let _ = tx.blocking_send(Err(Error::from_io("read", &path, e)));
            }
        });
        Ok(receive(rx, worker))
    }

    /// The paths of the files under the directory now (symlinks are not followed; a symlink
    /// is a key itself).
    pub async fn live_keys(&self) -> Result<KeyStream> {
        let root = self.root();
        let (tx, rx) = mpsc::channel::<Result<String>>(CHANNEL);
        let worker = tokio::task::spawn_blocking(move || {
            if let Err(e) = walk(&root, Path::new(""), &tx) {
                let _ = tx.blocking_send(Err(Error::io("list", root, e)));
            }
        });
        Ok(receive(rx, worker))
    }
}

/// The keys the blocking `worker` sends, as a stream; a worker that dies is an error.
fn receive(rx: mpsc::Receiver<Result<String>>, worker: tokio::task::JoinHandle<()>) -> KeyStream {
    futures::stream::unfold((rx, Some(worker)), |(mut rx, worker)| async move {
        match rx.recv().await {
            Some(item) => Some((item, (rx, worker))),
            None => match worker?.await {
                Ok(()) => None,
                Err(e) => Some((Err(join_err(e)), (rx, None))),
            },
        }
    })
    .boxed()
}

fn list_archive<R: Read>(r: R, tx: &mpsc::Sender<Result<String>>) -> io::Result<()> {
    let mut archive = tar::Archive::new(r);
    for entry in archive.entries()? {
        let entry = entry?;
        let kind = entry.header().entry_type();
        if kind.is_dir() || kind.is_pax_global_extensions() || kind.is_pax_local_extensions() {
            continue;
        }
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let name = name.trim_start_matches("./").to_string();
        if tx.blocking_send(Ok(name)).is_err() {
            return Ok(()); // the consumer stopped
        }
    }
    // To the end, so that the artifact's length and hash are checked.
    io::copy(&mut archive.into_inner(), &mut io::sink())?;
    Ok(())
}

fn walk(root: &Path, rel: &Path, tx: &mpsc::Sender<Result<String>>) -> io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(root.join(rel))?.collect::<io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let rel = rel.join(e.file_name());
        if e.file_type()?.is_dir() {
            walk(root, &rel, tx)?;
        } else {
            let key = String::from_utf8_lossy(rel.as_os_str().as_bytes()).into_owned();
            if tx.blocking_send(Ok(key)).is_err() {
                return Ok(());
            }
        }
    }
    Ok(())
}

//! Key sets in the repository: the keys a component's snapshot query returned, stored as an
//! artifact of the component (one JSON string per line, zstd-compressed and hashed like every
//! artifact), and read back as a [`KeyStream`].

use futures::StreamExt;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, BufWriter};

use super::{KeySet, KeyStream};
use crate::artifact::ArtifactWriter;
use crate::component::{ReadContext, SnapshotContext};
use crate::manifest::ArtifactRecord;
use crate::{Error, Result};

/// A query a component runs inside its snapshot: the key set of a reference end that has a
/// `query` (see [`SnapshotContext::key_queries`]). The driver writes its result with
/// [`SnapshotContext::key_writer`] and adds the finished artifact to its record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyQuery {
    /// The reference's name (for messages).
    pub reference: String,
    /// The artifact to write the keys to.
    pub artifact: String,
    /// The end: the component's database and query.
    pub set: KeySet,
}

/// Writes the keys of a [`KeyQuery`] into its artifact, one key at a time (streamed).
pub struct KeyWriter {
    out: BufWriter<ArtifactWriter>,
    path: String,
    keys: u64,
}

impl std::fmt::Debug for KeyWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyWriter")
            .field("path", &self.path)
            .field("keys", &self.keys)
            .finish()
    }
}

impl KeyWriter {
    pub(crate) fn new(w: ArtifactWriter) -> Self {
        Self {
            path: w.path().to_string(),
            out: BufWriter::with_capacity(256 * 1024, w),
            keys: 0,
        }
    }

    /// Add one key.
    pub async fn push(&mut self, key: &str) -> Result<()> {
        let mut line = serde_json::to_string(key)
            .map_err(|e| Error::Other(format!("cannot encode a key: {e}")))?;
        line.push('\n');
        self.keys += 1;
        self.out
            .write_all(line.as_bytes())
            .await
            .map_err(|e| Error::from_io("write", &self.path, e))
    }

    /// Keys pushed so far.
    pub fn keys(&self) -> u64 {
        self.keys
    }

    /// Finish the artifact; add the returned record to the component's record.
    pub async fn finish(mut self) -> Result<ArtifactRecord> {
        self.out
            .flush()
            .await
            .map_err(|e| Error::from_io("write", &self.path, e))?;
        self.out.into_inner().finish().await
    }

    /// Abandon the artifact (nothing appears in the repository).
    pub async fn abort(self) {
        self.out.into_inner().abort().await;
    }
}

impl SnapshotContext {
    /// Start the artifact of `query`'s keys.
    pub async fn key_writer(&self, query: &KeyQuery) -> Result<KeyWriter> {
        Ok(KeyWriter::new(self.create_artifact(&query.artifact).await?))
    }
}

/// The keys stored in artifact `art` (written by a [`KeyWriter`]), checked like every artifact
/// read: damage is an error of the stream.
pub async fn read_keys(cx: &ReadContext, art: &ArtifactRecord) -> Result<KeyStream> {
    let reader = BufReader::with_capacity(256 * 1024, cx.open_artifact(art).await?);
    let path = art.path.clone();
    Ok(futures::stream::unfold(
        (reader, String::new(), path),
        |(mut r, mut line, path)| async move {
            line.clear();
            match r.read_line(&mut line).await {
                Ok(0) => None,
                Ok(_) => {
                    let key =
                        serde_json::from_str::<String>(line.trim_end_matches('\n')).map_err(|e| {
                            Error::Corrupt {
                                artifact: path.clone(),
                                message: format!("a line is not a key: {e}"),
                            }
                        });
                    Some((key, (r, line, path)))
                }
                Err(e) => {
                    let err = Error::from_io("read", &path, e);
                    Some((Err(err), (r, line, path)))
                }
            }
        },
    )
    // Stop after the first error.
    .scan(false, |failed, item| {
        let out = if *failed { None } else { Some(item) };
        if let Some(Err(_)) = &out {
            *failed = true;
        }
        futures::future::ready(out)
    })
    .boxed())
}

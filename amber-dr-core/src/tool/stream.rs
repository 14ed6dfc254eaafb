//! The stream handling every [`super::ToolRunner`] shares: feeding the input, keeping the
//! tail of stderr.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{COPY_BUFFER, STDERR_TAIL};
use crate::{Error, Result};

/// The last [`STDERR_TAIL`] bytes of a stream, kept as they pass.
#[derive(Debug, Default)]
pub struct StderrTail {
    tail: Vec<u8>,
}

impl StderrTail {
    /// Keep `bytes` (older bytes beyond the limit are dropped).
    pub fn push(&mut self, bytes: &[u8]) {
        self.tail.extend_from_slice(bytes);
        if self.tail.len() > 2 * STDERR_TAIL {
            self.tail.drain(..self.tail.len() - STDERR_TAIL);
        }
    }

    /// The tail, lossily decoded and trimmed.
    pub fn finish(mut self) -> String {
        if self.tail.len() > STDERR_TAIL {
            self.tail.drain(..self.tail.len() - STDERR_TAIL);
        }
        String::from_utf8_lossy(&self.tail).trim().to_string()
    }
}

/// Stream `input` into a tool's stdin `sink`, then close it. The input is always read to its
/// end, also when the tool stops reading (a failed write stops the writing, not the reading),
/// so that an artifact reader's checks run. An error reading the input closes the sink (so
/// that the tool ends) and is returned: the caller reports it before the tool's own failure.
pub async fn feed_input<W: AsyncWrite + Unpin + ?Sized>(
    input: &mut (dyn AsyncRead + Unpin + Send),
    sink: &mut W,
    what: &str,
) -> Result<()> {
    let mut buf = vec![0u8; COPY_BUFFER];
    let mut open = true;
    loop {
        let n = match input.read(&mut buf).await {
            Ok(n) => n,
            Err(e) => {
                if open {
                    let _ = sink.shutdown().await;
                }
                return Err(Error::from_io("read input of", what, e));
            }
        };
        if n == 0 {
            break;
        }
        if open && sink.write_all(&buf[..n]).await.is_err() {
            // The tool stopped reading (exited or closed stdin): keep draining the input.
            open = false;
        }
    }
    if open {
        let _ = sink.shutdown().await;
    }
    Ok(())
}

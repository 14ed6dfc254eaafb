//! Sorting key sets in bounded memory, and the merge that finds the dangling references.
//!
//! Keys arrive unsorted from a stream. They are gathered into a run until the run's estimated
//! size reaches the budget; a full run is sorted and spilled to an anonymous temporary file
//! (length-prefixed keys), and the next run starts. Reading merges the runs (a k-way merge), so
//! a key set of any size is sorted with memory bounded by the budget plus one buffered key per
//! run. A key set that fits the budget never touches the disk.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, Write};

use futures::StreamExt;

use super::KeyStream;
use crate::{Error, Result};

/// Bytes a key is assumed to take in memory besides its text (the `String` and the vector).
const KEY_OVERHEAD: usize = 32;

/// A key set, sorted: one run in memory and the runs spilled to disk.
#[derive(Debug)]
pub(crate) struct SortedKeys {
    memory: Vec<String>,
    spilled: Vec<File>,
    /// Keys read from the stream (duplicates included).
    pub(crate) count: u64,
}

impl SortedKeys {
    /// Read `keys` to its end and sort them, keeping at most about `budget` bytes in memory.
    pub(crate) async fn collect(mut keys: KeyStream, budget: usize) -> Result<Self> {
        let mut out = SortedKeys {
            memory: Vec::new(),
            spilled: Vec::new(),
            count: 0,
        };
        let mut used = 0usize;
        while let Some(key) = keys.next().await {
            let key = key?;
            used += key.len() + KEY_OVERHEAD;
            out.memory.push(key);
            out.count += 1;
            if used >= budget {
                let run = std::mem::take(&mut out.memory);
                let file = tokio::task::spawn_blocking(move || spill(run))
                    .await
                    .map_err(|e| Error::Other(format!("a sort task died: {e}")))?
                    .map_err(|e| Error::io("spill sorted keys to", std::env::temp_dir(), e))?;
                out.spilled.push(file);
                used = 0;
            }
        }
        Ok(out)
    }

    /// How many runs went to disk.
    #[cfg(test)]
    pub(crate) fn spilled_runs(&self) -> usize {
        self.spilled.len()
    }

    /// The keys in ascending byte order (duplicates kept). Blocking: call from a blocking task.
    pub(crate) fn into_sorted(mut self) -> io::Result<Merge> {
        self.memory.sort_unstable();
        let mut sources: Vec<Source> = Vec::with_capacity(self.spilled.len() + 1);
        for mut f in self.spilled {
            f.rewind()?;
            sources.push(Source::File(BufReader::with_capacity(64 * 1024, f)));
        }
        sources.push(Source::Memory(self.memory.into_iter()));
        let mut heap = BinaryHeap::with_capacity(sources.len());
        for (i, s) in sources.iter_mut().enumerate() {
            if let Some(k) = s.next_key()? {
                heap.push(Head { key: k, source: i });
            }
        }
        Ok(Merge { sources, heap })
    }
}

fn spill(mut run: Vec<String>) -> io::Result<File> {
    run.sort_unstable();
    let mut file = tempfile::tempfile()?;
    {
        let mut w = BufWriter::with_capacity(64 * 1024, &mut file);
        for k in &run {
            let len = u32::try_from(k.len()).map_err(|_| io::Error::other("a key over 4 GiB"))?;
            w.write_all(&len.to_le_bytes())?;
            w.write_all(k.as_bytes())?;
        }
        w.flush()?;
    }
    Ok(file)
}

enum Source {
    Memory(std::vec::IntoIter<String>),
    File(BufReader<File>),
}

impl Source {
    fn next_key(&mut self) -> io::Result<Option<String>> {
        match self {
            Source::Memory(it) => Ok(it.next()),
            Source::File(r) => {
                let mut len = [0u8; 4];
                match r.read_exact(&mut len) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
                    Err(e) => return Err(e),
                }
                let mut buf = vec![0u8; u32::from_le_bytes(len) as usize];
                r.read_exact(&mut buf)?;
                String::from_utf8(buf)
                    .map(Some)
                    .map_err(|_| io::Error::other("a spilled key is not UTF-8"))
            }
        }
    }
}

/// The head key of one source, ordered so that the heap pops the smallest first.
#[derive(PartialEq, Eq)]
struct Head {
    key: String,
    source: usize,
}

impl Ord for Head {
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .key
            .cmp(&self.key)
            .then(other.source.cmp(&self.source))
    }
}

impl PartialOrd for Head {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The merged runs of a [`SortedKeys`], smallest key first.
pub(crate) struct Merge {
    sources: Vec<Source>,
    heap: BinaryHeap<Head>,
}

impl Iterator for Merge {
    type Item = io::Result<String>;

    fn next(&mut self) -> Option<Self::Item> {
        let Head { key, source } = self.heap.pop()?;
        match self.sources[source].next_key() {
            Ok(Some(k)) => self.heap.push(Head { key: k, source }),
            Ok(None) => {}
            Err(e) => return Some(Err(e)),
        }
        Some(Ok(key))
    }
}

/// What the merge of a reference's two key sets found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Joined {
    /// Referring keys (duplicates included).
    pub(crate) checked: u64,
    /// Referring keys with no equal key in the referred set.
    pub(crate) dangling: u64,
    /// The first (smallest) dangling keys, at most the number asked for.
    pub(crate) first: Vec<String>,
}

/// Walk both sorted sets together: every key of `from` without an equal key in `to` dangles.
/// Blocking.
pub(crate) fn join(from: Merge, to: Merge, keep: usize) -> io::Result<Joined> {
    let mut out = Joined::default();
    let mut to = to.peekable();
    for key in from {
        let key = key?;
        out.checked += 1;
        let found = loop {
            match to.peek() {
                None => break false,
                Some(Err(_)) => {
                    return Err(to
                        .next()
                        .and_then(Result::err)
                        .unwrap_or_else(|| io::Error::other("sorted keys")))
                }
                Some(Ok(t)) => match t.as_str().cmp(key.as_str()) {
                    Ordering::Less => {
                        to.next();
                    }
                    Ordering::Equal => break true,
                    Ordering::Greater => break false,
                },
            }
        };
        if !found {
            out.dangling += 1;
            if out.first.len() < keep && out.first.last() != Some(&key) {
                out.first.push(key);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn stream(keys: Vec<String>) -> KeyStream {
        futures::stream::iter(keys.into_iter().map(Ok)).boxed()
    }

    async fn sorted(keys: Vec<String>, budget: usize) -> (Vec<String>, usize) {
        let s = SortedKeys::collect(stream(keys), budget).await.unwrap();
        let runs = s.spilled_runs();
        let out = tokio::task::spawn_blocking(move || {
            s.into_sorted()
                .unwrap()
                .collect::<io::Result<Vec<_>>>()
                .unwrap()
        })
        .await
        .unwrap();
        (out, runs)
    }

    #[tokio::test]
    async fn spilled_runs_merge_into_one_order() {
        let keys: Vec<String> = (0..5000)
            .map(|i| format!("k{}", (i * 7919) % 5000))
            .collect();
        let mut want = keys.clone();
        want.sort();
        let (got, runs) = sorted(keys, 4096).await;
        assert!(runs > 10, "the small budget must spill ({runs} runs)");
        assert_eq!(got, want);
    }

    #[tokio::test]
    async fn join_counts_dangling_with_duplicates() {
        let from = vec!["b", "a", "c", "a", "x", "x"]
            .into_iter()
            .map(String::from)
            .collect();
        let to = vec!["c", "a", "z"].into_iter().map(String::from).collect();
        let f = SortedKeys::collect(stream(from), 8).await.unwrap();
        let t = SortedKeys::collect(stream(to), 1 << 20).await.unwrap();
        let j = tokio::task::spawn_blocking(move || {
            join(f.into_sorted().unwrap(), t.into_sorted().unwrap(), 10).unwrap()
        })
        .await
        .unwrap();
        assert_eq!(j.checked, 6);
        assert_eq!(j.dangling, 3, "b and x twice");
        assert_eq!(j.first, vec!["b".to_string(), "x".to_string()]);
    }
}

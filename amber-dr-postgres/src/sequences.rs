//! The sequence positions a dump actually holds.
//!
//! Sequences are not transactional: `pg_dump --snapshot` reads each sequence's current position
//! (not the one its snapshot saw), so while the application inserts, the dump holds later values
//! than any query in the snapshot can read. The restore must compare with what was dumped. A
//! custom-format archive written to a pipe starts with its table of contents, and every
//! `SEQUENCE SET` entry of that TOC holds the `setval` the restore will run. [`TocTap`] reads
//! those entries as the dump streams into the artifact (nothing is held but the entry being
//! read), so the record keeps exactly the positions that were dumped.

use std::collections::BTreeMap;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;

use crate::catalog::Counts;

/// Largest single TOC entry the scanner buffers (a huge function body, say). Past it the
/// positions are not known and the record says so.
const MAX_ENTRY: usize = 64 * 1024 * 1024;

/// The oldest and newest archive versions read (PostgreSQL 9.0 to 17+).
const MIN_VERSION: (u8, u8) = (1, 12);
const MAX_VERSION: (u8, u8) = (1, 16);

/// What the dump's TOC says of its sequences.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum DumpedSequences {
    /// The TOC was read whole: `schema.sequence` → position set by the dump (`None`: the
    /// sequence was set with `is_called = false`, as `pg_sequences.last_value` shows it).
    Known(BTreeMap<String, Option<i64>>),
    /// The TOC could not be read (why).
    Unknown(String),
    /// The stream ended before the TOC did.
    #[default]
    Incomplete,
}

enum State {
    Header,
    Count,
    Entries(u64),
    Done,
    Failed(String),
}

/// Reads the `SEQUENCE SET` entries of a custom-format archive's TOC, fed chunk by chunk.
pub(crate) struct TocScanner {
    buf: Vec<u8>,
    state: State,
    version: (u8, u8),
    int_size: usize,
    off_size: usize,
    found: BTreeMap<String, Option<i64>>,
}

/// Not enough bytes yet, or a malformed archive.
enum Stop {
    More,
    Bad(String),
}

struct Cur<'a> {
    b: &'a [u8],
    pos: usize,
    int_size: usize,
}

impl<'a> Cur<'a> {
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], Stop> {
        let end = self.pos.checked_add(n).ok_or(Stop::More)?;
        if end > self.b.len() {
            return Err(Stop::More);
        }
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn byte(&mut self) -> Result<u8, Stop> {
        Ok(self.bytes(1)?[0])
    }

    /// pg_dump's `WriteInt`: a sign byte, then `int_size` bytes, least significant first.
    fn int(&mut self) -> Result<i64, Stop> {
        let sign = self.byte()?;
        let raw = self.bytes(self.int_size)?;
        let mut v: u64 = 0;
        for (i, b) in raw.iter().enumerate() {
            if i >= 8 {
                if *b != 0 {
                    return Err(Stop::Bad("integer out of range".into()));
                }
                continue;
            }
            v |= u64::from(*b) << (8 * i);
        }
        let v = i64::try_from(v).map_err(|_| Stop::Bad("integer out of range".into()))?;
        Ok(if sign != 0 { -v } else { v })
    }

    /// pg_dump's `WriteStr`: a length (-1 for NULL), then the bytes.
    fn str(&mut self) -> Result<Option<&'a [u8]>, Stop> {
        let len = self.int()?;
        if len < 0 {
            return Ok(None);
        }
        let len = usize::try_from(len).map_err(|_| Stop::Bad("string length".into()))?;
        if len > MAX_ENTRY {
            return Err(Stop::Bad(format!(
                "a TOC string of {len} bytes is more than the {MAX_ENTRY} bytes read"
            )));
        }
        self.bytes(len).map(Some)
    }

    fn string(&mut self) -> Result<Option<String>, Stop> {
        Ok(self.str()?.map(|s| String::from_utf8_lossy(s).into_owned()))
    }
}

impl Default for TocScanner {
    fn default() -> Self {
        Self {
            buf: Vec::new(),
            state: State::Header,
            version: (0, 0),
            int_size: 4,
            off_size: 8,
            found: BTreeMap::new(),
        }
    }
}

impl TocScanner {
    /// Look at the next bytes of the archive.
    pub(crate) fn feed(&mut self, data: &[u8]) {
        if matches!(self.state, State::Done | State::Failed(_)) {
            return;
        }
        self.buf.extend_from_slice(data);
        let buf = std::mem::take(&mut self.buf);
        let mut start = 0;
        loop {
            let mut cur = Cur {
                b: &buf[start..],
                pos: 0,
                int_size: self.int_size,
            };
            let step = match self.state {
                State::Header => self.header(&mut cur),
                State::Count => cur.int().map(|n| {
                    self.state = State::Entries(u64::try_from(n).unwrap_or(0));
                }),
                State::Entries(0) => {
                    self.state = State::Done;
                    return;
                }
                State::Entries(n) => {
                    Self::entry(&mut cur, self.version, self.off_size, &mut self.found)
                        .map(|()| self.state = State::Entries(n - 1))
                }
                State::Done | State::Failed(_) => return,
            };
            match step {
                Ok(()) => start += cur.pos,
                Err(Stop::More) => {
                    if buf.len() - start > MAX_ENTRY {
                        self.fail(format!(
                            "a TOC entry is larger than the {MAX_ENTRY} bytes read"
                        ));
                    } else {
                        self.buf = buf[start..].to_vec();
                    }
                    return;
                }
                Err(Stop::Bad(why)) => {
                    self.fail(why);
                    return;
                }
            }
        }
    }

    fn fail(&mut self, why: String) {
        self.state = State::Failed(why);
        self.buf = Vec::new();
    }

    fn header(&mut self, cur: &mut Cur<'_>) -> Result<(), Stop> {
        if cur.bytes(5)? != b"PGDMP" {
            return Err(Stop::Bad("not a pg_dump archive".into()));
        }
        let (maj, min, _rev) = (cur.byte()?, cur.byte()?, cur.byte()?);
        if (maj, min) < MIN_VERSION || (maj, min) > MAX_VERSION {
            return Err(Stop::Bad(format!(
                "archive version {maj}.{min} is not one this driver reads ({}.{} to {}.{})",
                MIN_VERSION.0, MIN_VERSION.1, MAX_VERSION.0, MAX_VERSION.1
            )));
        }
        let int_size = usize::from(cur.byte()?);
        let off_size = usize::from(cur.byte()?);
        if int_size == 0 || int_size > 32 || off_size > 32 {
            return Err(Stop::Bad("implausible integer sizes".into()));
        }
        cur.int_size = int_size;
        let _format = cur.byte()?;
        if (maj, min) >= (1, 15) {
            let _algorithm = cur.byte()?;
        } else {
            let _level = cur.int()?;
        }
        for _ in 0..7 {
            let _time = cur.int()?;
        }
        for _ in 0..3 {
            let _names = cur.str()?; // database, server version, pg_dump version
        }
        self.version = (maj, min);
        self.int_size = int_size;
        self.off_size = off_size;
        self.state = State::Count;
        Ok(())
    }

    /// One TOC entry (pg_dump's `WriteToc` and the custom format's `WriteExtraToc`).
    fn entry(
        cur: &mut Cur<'_>,
        version: (u8, u8),
        off_size: usize,
        found: &mut BTreeMap<String, Option<i64>>,
    ) -> Result<(), Stop> {
        let _dump_id = cur.int()?;
        let _had_dumper = cur.int()?;
        let _tableoid = cur.str()?;
        let _oid = cur.str()?;
        let tag = cur.string()?;
        let desc = cur.str()?;
        let _section = cur.int()?;
        let defn = cur.str()?;
        let _drop = cur.str()?;
        let _copy = cur.str()?;
        let namespace = cur.string()?;
        let _tablespace = cur.str()?;
        if version >= (1, 14) {
            let _tableam = cur.str()?;
        }
        if version >= (1, 16) {
            let _relkind = cur.int()?;
        }
        let _owner = cur.str()?;
        let _with_oids = cur.str()?;
        while cur.str()?.is_some() {} // dependencies, ended by a NULL
        let _offset_flag = cur.byte()?;
        let _offset = cur.bytes(off_size)?;
        if desc == Some(b"SEQUENCE SET".as_slice()) {
            let defn = String::from_utf8_lossy(defn.unwrap_or_default());
            let value = parse_setval(&defn)
                .ok_or_else(|| Stop::Bad(format!("unexpected SEQUENCE SET statement `{defn}`")))?;
            let name = format!(
                "{}.{}",
                namespace.unwrap_or_default(),
                tag.unwrap_or_default()
            );
            found.insert(name, value);
        }
        Ok(())
    }

    /// What was read, once the stream has ended.
    pub(crate) fn result(self) -> DumpedSequences {
        match self.state {
            State::Done => DumpedSequences::Known(self.found),
            State::Failed(why) => DumpedSequences::Unknown(why),
            _ => DumpedSequences::Incomplete,
        }
    }
}

/// `SELECT pg_catalog.setval('public.t_id_seq', 414, true);` → `Some(414)`; with `false`
/// (the next `nextval` returns 414 itself) → `None`, as `pg_sequences.last_value` reads it.
pub(crate) fn parse_setval(defn: &str) -> Option<Option<i64>> {
    let body = defn
        .trim()
        .strip_suffix(';')?
        .trim_end()
        .strip_suffix(')')?;
    let (rest, called) = body.rsplit_once(',')?;
    let (_, value) = rest.rsplit_once(',')?;
    let value: i64 = value.trim().parse().ok()?;
    match called.trim() {
        "true" => Some(Some(value)),
        "false" => Some(None),
        _ => None,
    }
}

/// Passes writes through to `inner` and shows every byte written to a [`TocScanner`].
pub(crate) struct TocTap<W> {
    inner: W,
    scanner: TocScanner,
}

impl<W> TocTap<W> {
    pub(crate) fn new(inner: W) -> Self {
        Self {
            inner,
            scanner: TocScanner::default(),
        }
    }

    /// The wrapped writer and the sequences found.
    pub(crate) fn into_parts(self) -> (W, DumpedSequences) {
        (self.inner, self.scanner.result())
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for TocTap<W> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => {
                this.scanner.feed(&buf[..n]);
                Poll::Ready(Ok(n))
            }
            other => other,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Put the positions the dump holds into `counts` (which has those the snapshot's queries saw).
/// True when the record can be compared exactly; otherwise a warning says why not.
pub(crate) fn record(
    counts: &mut Counts,
    dumped: DumpedSequences,
    db: &str,
    warnings: &mut Vec<String>,
) -> bool {
    match dumped {
        DumpedSequences::Known(found) => {
            counts.sequences.extend(found);
            true
        }
        DumpedSequences::Unknown(why) => {
            warnings.push(format!(
                "database `{db}`: the sequence positions could not be read from the dump ({why}); a restore compares its tables and large objects, and only warns about sequences"
            ));
            false
        }
        DumpedSequences::Incomplete => {
            warnings.push(format!(
                "database `{db}`: the dump ended before its table of contents; a restore only warns about sequences"
            ));
            false
        }
    }
}

/// For a record whose sequence positions are not the dumped ones (older backups, or a dump
/// whose TOC could not be read): the dump's positions are kept, and each difference with the
/// record becomes a warning instead of failing the restore. Adjusts `want` to `live`.
pub(crate) fn loosen(want: &mut Counts, live: &Counts, target: &str) -> Vec<String> {
    let mut notes = Vec::new();
    for (name, v) in want.sequences.iter_mut() {
        if let Some(l) = live.sequences.get(name) {
            if l != v {
                notes.push(format!(
                    "database `{target}`: sequence {name} restored at {l:?} as the dump holds it; the backup's record says {v:?} (sequences move outside transactions while the application writes)"
                ));
                *v = *l;
            }
        }
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setval_statements() {
        assert_eq!(
            parse_setval("SELECT pg_catalog.setval('public.t_id_seq', 414, true);\n"),
            Some(Some(414))
        );
        assert_eq!(
            parse_setval("SELECT pg_catalog.setval('\"we,ird\".\"s, q\"', -7, false);"),
            Some(None)
        );
        assert_eq!(parse_setval("SELECT 1;"), None);
    }

    #[test]
    fn record_takes_the_dumped_positions_and_old_records_only_warn() {
        let mut counts = Counts::default();
        counts.sequences.insert("public.a".into(), Some(409));
        counts.sequences.insert("public.ext".into(), Some(3));
        let dumped = DumpedSequences::Known([("public.a".to_string(), Some(414))].into());
        let mut warnings = Vec::new();
        assert!(record(&mut counts, dumped, "db", &mut warnings));
        assert_eq!(counts.sequences["public.a"], Some(414));
        assert_eq!(counts.sequences["public.ext"], Some(3));
        assert!(warnings.is_empty());
        assert!(!record(
            &mut counts.clone(),
            DumpedSequences::Unknown("v9.9".into()),
            "db",
            &mut warnings
        ));
        assert!(warnings[0].contains("v9.9"), "{warnings:?}");

        // An older record: the restored (dumped) position differs; a warning, not a failure.
        let mut want = Counts::default();
        want.sequences.insert("public.a".into(), Some(409));
        let mut live = want.clone();
        live.sequences.insert("public.a".into(), Some(414));
        let notes = loosen(&mut want, &live, "db");
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert_eq!(live.diff(&want), None);
    }

    fn int(out: &mut Vec<u8>, v: i64) {
        out.push(u8::from(v < 0));
        out.extend_from_slice(&(v.unsigned_abs() as u32).to_le_bytes());
    }

    fn s(out: &mut Vec<u8>, v: Option<&str>) {
        match v {
            None => int(out, -1),
            Some(v) => {
                int(out, v.len() as i64);
                out.extend_from_slice(v.as_bytes());
            }
        }
    }

    /// A version 1.14 archive head with two entries, fed one byte at a time.
    #[test]
    fn reads_a_toc_in_pieces() {
        let mut a = b"PGDMP".to_vec();
        a.extend_from_slice(&[1, 14, 0, 4, 8, 1]);
        int(&mut a, 0);
        for _ in 0..7 {
            int(&mut a, 1);
        }
        for v in ["db", "15.1", "15.1"] {
            s(&mut a, Some(v));
        }
        int(&mut a, 2);
        for (desc, tag, defn) in [
            ("TABLE", "t", "CREATE TABLE t ();"),
            (
                "SEQUENCE SET",
                "t_id_seq",
                "SELECT pg_catalog.setval('public.t_id_seq', 414, true);\n",
            ),
        ] {
            int(&mut a, 3);
            int(&mut a, 0);
            s(&mut a, Some("0"));
            s(&mut a, Some("0"));
            s(&mut a, Some(tag));
            s(&mut a, Some(desc));
            int(&mut a, 2);
            s(&mut a, Some(defn));
            s(&mut a, None);
            s(&mut a, None);
            s(&mut a, Some("public"));
            s(&mut a, None);
            s(&mut a, None);
            s(&mut a, Some("postgres"));
            s(&mut a, Some("false"));
            s(&mut a, Some("1"));
            s(&mut a, None);
            a.push(3);
            a.extend_from_slice(&[0; 8]);
        }
        a.extend_from_slice(b"data that follows");
        let mut sc = TocScanner::default();
        for b in &a {
            sc.feed(std::slice::from_ref(b));
        }
        let want: BTreeMap<_, _> = [("public.t_id_seq".to_string(), Some(414))].into();
        assert_eq!(sc.result(), DumpedSequences::Known(want));

        let mut cut = TocScanner::default();
        cut.feed(&a[..a.len() / 2]);
        assert_eq!(cut.result(), DumpedSequences::Incomplete);

        let mut bad = TocScanner::default();
        bad.feed(b"PGDMP\x01\x63\x00");
        assert!(matches!(bad.result(), DumpedSequences::Unknown(_)));
    }
}

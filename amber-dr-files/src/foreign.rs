//! Reading a foreign (runbook) tar archive's layout: which directory prefix is the tree's root.

use std::ffi::OsStr;
use std::io::{self, Read};
use std::path::PathBuf;

use amber_dr_core::Error;
use tar::EntryType;

use crate::archive::{safe_rel_path, unsafe_entry, MTime};

/// How a foreign (runbook) archive is laid out: the directory prefix that is the tree's root
/// (`uploads/`, `srv/amber/uploads/`, or none for an archive of `./...`), and that root's mode
/// and mtime when the archive has an entry for it.
#[derive(Debug, Clone, Default)]
pub(crate) struct ForeignLayout {
    pub strip: Option<PathBuf>,
    pub root: Option<(u32, MTime)>,
    pub entries: u64,
}

/// Walk a foreign tar stream's headers (every byte is read) and find its layout: the longest
/// directory prefix common to every entry, cut after its last component named like one of
/// `root_names` (the target directory's name, `uploads`).
pub(crate) fn foreign_layout<R: Read>(
    reader: R,
    artifact: &str,
    root_names: &[&OsStr],
) -> amber_dr_core::Result<ForeignLayout> {
    let read_err = |e: io::Error| Error::Corrupt {
        artifact: artifact.to_string(),
        message: format!("not a readable gzip-compressed tar archive: {e}"),
    };
    let mut archive = tar::Archive::new(reader);
    let mut common: Option<Vec<std::ffi::OsString>> = None;
    let mut metas: Vec<(PathBuf, u32, MTime)> = Vec::new();
    let mut entries = 0u64;
    for entry in archive.entries().map_err(read_err)? {
        let entry = entry.map_err(read_err)?;
        let raw = entry.path_bytes().into_owned();
        let rel = safe_rel_path(&raw).map_err(|why| unsafe_entry(artifact, &raw, &why))?;
        let kind = entry.header().entry_type();
        if kind == EntryType::XGlobalHeader {
            continue;
        }
        entries += 1;
        let dir_part: Vec<std::ffi::OsString> = if kind == EntryType::Directory {
            rel.iter().map(OsStr::to_os_string).collect()
        } else {
            rel.parent()
                .map(|p| p.iter().map(OsStr::to_os_string).collect())
                .unwrap_or_default()
        };
        common = Some(match common {
            None => dir_part,
            Some(c) => c
                .into_iter()
                .zip(dir_part)
                .take_while(|(a, b)| a == b)
                .map(|(a, _)| a)
                .collect(),
        });
        if kind == EntryType::Directory && metas.len() < 64 {
            let mtime = MTime {
                secs: i64::try_from(entry.header().mtime().unwrap_or(0)).unwrap_or(0),
                nanos: 0,
            };
            metas.push((rel, entry.header().mode().unwrap_or(0o755) & 0o7777, mtime));
        }
    }
    // The tar reader stops at the end-of-archive blocks; read the compressed stream to its end
    // too, so that gzip's CRC and length are checked before anything is changed.
    io::copy(&mut archive.into_inner(), &mut io::sink()).map_err(read_err)?;
    let common = common.unwrap_or_default();
    let cut = common
        .iter()
        .rposition(|c| root_names.contains(&c.as_os_str()));
    let strip: Option<PathBuf> = cut.map(|i| common[..=i].iter().collect());
    let root_path = strip.clone().unwrap_or_default();
    let root = metas
        .iter()
        .find(|(p, _, _)| *p == root_path)
        .map(|(_, m, t)| (*m, *t));
    Ok(ForeignLayout {
        strip,
        root,
        entries,
    })
}

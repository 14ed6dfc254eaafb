//! Foreign (runbook) archives: a gzip-compressed tar written by another tool (`tar czf`),
//! its layout found (which directory prefix is the tree's root), then restored into a
//! [`Directory`] with the same guards and swap as an amber-dr archive.

use std::ffi::OsStr;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use tar::EntryType;

use super::directory::{join_err, report_restored, DirError, IO_BUFFER};
use super::extract::{apply_root_meta, read_archive, safe_rel_path, unsafe_entry, ReadMode};
use super::tree::{scan_tree, MTime};
use super::{swap, Directory};
use crate::{Error, RestoreContext, RestoreOptions, RestoreReport, Result};

/// How a foreign (runbook) archive is laid out: the directory prefix that is the tree's root
/// (`uploads/`, `srv/amber/uploads/`, or none for an archive of `./...`), and that root's mode
/// and mtime when the archive has an entry for it.
#[derive(Debug, Clone, Default)]
pub struct ForeignLayout {
    /// The directory prefix to strip from every entry (`None`: the entries are the tree's).
    pub strip: Option<PathBuf>,
    /// The root's mode and mtime, when the archive has an entry for it.
    pub root: Option<(u32, MTime)>,
    /// How many entries the archive holds.
    pub entries: u64,
}

/// Walk a foreign tar stream's headers (every byte is read) and find its layout: the longest
/// directory prefix common to every entry, cut after its last component named like one of
/// `root_names` (the target directory's name, `uploads`).
pub fn foreign_layout<R: Read>(
    reader: R,
    artifact: &str,
    root_names: &[&OsStr],
) -> crate::Result<ForeignLayout> {
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

impl Directory {
    /// Replace the directory with the tree of a gzip-compressed tar archive written by another
    /// tool (`tar czf`, e.g. the shell runbook's `uploads.tar.gz` or `minio_data.tar.gz`).
    ///
    /// The archive may hold the tree as `./...`, under one directory (`uploads/...`) or under a
    /// longer path (`srv/amber/uploads/...`): the longest directory prefix common to every
    /// entry, cut after its last component named like the target directory, the configured
    /// directory or one of `root_names`, is the tree's root. `file` is read through once
    /// first (gzip and tar framing, every path checked: no absolute paths, no `..`), then
    /// extracted into a staging directory beside the target with every safety check of an
    /// amber-dr archive (nothing written through symlinks or outside the staging directory),
    /// compared with what the archive held (counts and bytes), and swapped in with two
    /// renames. A damaged, truncated or hostile archive fails before the swap and leaves the
    /// old directory as it was. `opts.target` restores into another directory; `opts.dry_run`
    /// only reads the archive through and says what would be done.
    pub async fn restore_foreign_archive(
        &self,
        cx: &RestoreContext,
        file: &Path,
        opts: &RestoreOptions,
        root_names: &[&str],
    ) -> Result<RestoreReport> {
        self.refuse_items(opts)?;
        let target = self.restore_target(opts, cx.repository())?;
        let exists = tokio::fs::symlink_metadata(&target).await.is_ok();
        let mut report = RestoreReport::default();
        let open = |file: &Path| -> Result<flate2::read::MultiGzDecoder<BufReader<std::fs::File>>> {
            let f = std::fs::File::open(file).map_err(|e| Error::io("open", file, e))?;
            Ok(flate2::read::MultiGzDecoder::new(BufReader::with_capacity(
                IO_BUFFER, f,
            )))
        };
        cx.progress().set_phase("reading runbook archive");
        let names: Vec<std::ffi::OsString> = [
            target.file_name().map(|n| n.to_os_string()),
            self.path.file_name().map(|n| n.to_os_string()),
        ]
        .into_iter()
        .flatten()
        .chain(root_names.iter().map(std::ffi::OsString::from))
        .collect();
        let (f, label) = (file.to_path_buf(), file.display().to_string());
        let layout = tokio::task::spawn_blocking(move || {
            let refs: Vec<&std::ffi::OsStr> = names.iter().map(|n| n.as_os_str()).collect();
            foreign_layout(open(&f)?, &label, &refs)
        })
        .await
        .map_err(join_err)??;
        if opts.dry_run {
            report.actions.push(format!(
                "{} `{}` with the {} entries of runbook archive `{}`{}",
                if exists { "replace" } else { "create" },
                target.display(),
                layout.entries,
                file.display(),
                layout
                    .strip
                    .as_ref()
                    .map(|p| format!(" under `{}/`", p.display()))
                    .unwrap_or_default()
            ));
            return Ok(report);
        }
        let (root_mode, root_mtime) = layout.root.unwrap_or((0o755, MTime::default()));
        let summary = swap::replace_dir(
            self.kind,
            &self.name,
            &target,
            exists,
            &mut report,
            |staging| {
                let (f, label, strip) = (
                    file.to_path_buf(),
                    file.display().to_string(),
                    layout.strip.clone(),
                );
                let progress = cx.progress().clone();
                async move {
                    cx.progress().set_phase("extracting runbook archive");
                    let st = staging.clone();
                    let from_archive = tokio::task::spawn_blocking(move || {
                        let (summary, mut rest) = read_archive(
                            open(&f)?,
                            &label,
                            ReadMode::Extract(&st),
                            root_mode,
                            root_mtime,
                            strip.as_deref(),
                            &progress,
                        )?;
                        // To the end of the gzip stream, so that its CRC is checked.
                        std::io::copy(&mut rest, &mut std::io::sink()).map_err(|e| {
                            Error::Corrupt {
                                artifact: label.clone(),
                                message: format!("damaged gzip stream: {e}"),
                            }
                        })?;
                        Ok::<_, Error>(summary)
                    })
                    .await
                    .map_err(join_err)??;
                    let st = staging.clone();
                    let on_disk = tokio::task::spawn_blocking(move || {
                        apply_root_meta(&st, root_mode, root_mtime)?;
                        scan_tree(&st)
                    })
                    .await
                    .map_err(join_err)?
                    .map_err(|e| Error::io("scan restored tree", &staging, e))?;
                    if on_disk.stats != from_archive.stats {
                        return Err(self.err(
                            "restore",
                            DirError::Mismatch(format!(
                                "on disk {:?}, in the archive {:?}; the old directory is unchanged",
                                on_disk.stats, from_archive.stats
                            )),
                        ));
                    }
                    Ok(on_disk.stats)
                }
            },
        )
        .await?;
        report_restored(
            &mut report,
            &target,
            &summary,
            &format!("runbook archive `{}`", file.display()),
        );
        Ok(report)
    }
}

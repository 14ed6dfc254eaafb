//! Files opened relative to their directory: a batch of files in walk order mostly shares a
//! parent, so the parent is opened once and each file by its name alone (`openat`) — the
//! kernel walks one path component per file instead of the whole path from `/`.

use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};

/// The most recent parent directory opened.
#[derive(Default)]
pub(crate) struct Dirs {
    open: Option<(PathBuf, OwnedFd)>,
}

impl Dirs {
    /// Open `root/rel` with `flags` (and `mode` if it creates), relative to its directory.
    pub(crate) fn open(
        &mut self,
        root: &Path,
        rel: &Path,
        flags: OFlags,
        mode: u32,
    ) -> io::Result<File> {
        let (Some(parent), Some(name)) = (rel.parent(), rel.file_name()) else {
            return Err(io::Error::other(format!(
                "`{}` has no file name",
                rel.display()
            )));
        };
        if self.open.as_ref().is_none_or(|(p, _)| p != parent) {
            self.open = None;
            let fd = rustix::fs::open(
                root.join(parent),
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            self.open = Some((parent.to_path_buf(), fd));
        }
        let Some((_, dir)) = &self.open else {
            return Err(io::Error::other("no directory open"));
        };
        let fd = rustix::fs::openat(
            dir,
            name,
            flags | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode),
        )?;
        Ok(File::from(fd))
    }
}

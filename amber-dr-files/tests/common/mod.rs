//! Test data and an independent tree fingerprint for the files driver's tests.
#![allow(dead_code, missing_docs, clippy::unwrap_used)]

use std::ffi::OsStr;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::Path;

use std::path::PathBuf;
use std::sync::Arc;

use amber_dr_core::plan::ComponentPlan;
use amber_dr_core::testkit::Fixture;
use amber_dr_core::{async_trait, Component, ComponentRecord, Result};
use amber_dr_files::{Files, FilesConfig, FilesFormat};
use sha2::{Digest, Sha256};

/// Two upload directories under a temp dir: the conformance fixture of the files driver.
pub struct Dirs {
    pub base: tempfile::TempDir,
    /// The format the components write.
    pub format: FilesFormat,
}

impl Dirs {
    pub fn new() -> Self {
        Self {
            base: tempfile::tempdir().unwrap(),
            format: FilesFormat::Tar,
        }
    }

    pub fn dir(&self, slot: usize) -> PathBuf {
        self.base.path().join(format!("uploads-{slot}"))
    }
}

impl Drop for Dirs {
    fn drop(&mut self) {
        unlock(self.base.path());
    }
}

#[async_trait]
impl Fixture for Dirs {
    fn component(&self, slot: usize) -> Arc<dyn Component> {
        Arc::new(Files::new(
            format!("uploads{slot}"),
            FilesConfig::new(self.dir(slot)).format(self.format),
        ))
    }
    fn failing_component(&self) -> Arc<dyn Component> {
        Arc::new(Files::new(
            "missing",
            FilesConfig::new(self.base.path().join("no-such-dir")).format(self.format),
        ))
    }
    async fn populate(&self, slot: usize) -> Result<()> {
        unlock(&self.dir(slot));
        populate(&self.dir(slot), slot as u8 + 1);
        Ok(())
    }
    async fn make_empty(&self, slot: usize) -> Result<()> {
        make_empty(&self.dir(slot));
        Ok(())
    }
    async fn destroy(&self, slot: usize) -> Result<()> {
        destroy(&self.dir(slot));
        Ok(())
    }
    async fn fingerprint(&self, slot: usize) -> Result<String> {
        Ok(fingerprint(&self.dir(slot)))
    }
    /// A directory beside the slots that does not exist yet.
    async fn other_target(&self) -> Result<Option<ComponentPlan>> {
        let t = self.base.path().join("other-target");
        unlock(&t);
        let _ = fs::remove_dir_all(&t);
        Ok(Some(ComponentPlan {
            target: Some(t.display().to_string()),
            items: Vec::new(),
        }))
    }
    async fn target_fingerprint(&self, plan: &ComponentPlan) -> Result<String> {
        Ok(fingerprint(Path::new(plan.target.as_deref().unwrap())))
    }
    /// The tree's fingerprint, compared by the staged restore before the swap.
    fn falsify(&self, record: &mut ComponentRecord) -> bool {
        match record.details.get_mut("fingerprint") {
            Some(f) => {
                *f = "0".repeat(64).into();
                true
            }
            None => false,
        }
    }
}

/// Fill `dir` with the awkward cases: nested and empty directories, relative and absolute
/// symlinks (one pointing outside, one dangling), a hard link, a non-UTF-8 name, unicode and
/// spaces, a path over 100 bytes, a zero-byte file, odd modes (setuid, read-only file and
/// directory), owners other than the test's user (files, a directory, a symlink and the top
/// directory; as root), and nanosecond mtimes.
pub fn populate(dir: &Path, seed: u8) {
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir).unwrap();
    let w = |rel: &str, data: &[u8]| {
        let p = dir.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::File::create(&p).unwrap().write_all(data).unwrap();
    };
    w("readme.txt", format!("hello {seed}\n").as_bytes());
    w("docs/tenant-1/report.pdf", &vec![seed; 70_000]);
    let big: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 ^ seed)
        .collect();
    w("docs/tenant-1/big.bin", &big);
    w("docs/tenant-2/ünïcödé name with spaces 🎉.txt", b"unicode");
    w("empty-file", b"");
    let long = format!("deep/{}/{}.txt", "d".repeat(60), "f".repeat(80));
    w(&long, b"long path");
    fs::create_dir_all(dir.join("empty-dir/nested-empty")).unwrap();
    // Non-UTF-8 file name.
    let raw = dir.join(OsStr::from_bytes(b"latin1-\xe9t\xe9.txt"));
    fs::write(raw, b"bytes name").unwrap();
    // A second name of a file (stored, and restored, as a file of its own).
    fs::hard_link(
        dir.join("docs/tenant-1/report.pdf"),
        dir.join("hard-link-to-report"),
    )
    .unwrap();
    symlink("docs/tenant-1/report.pdf", dir.join("link-relative")).unwrap();
    symlink("/etc/hostname", dir.join("link-outside")).unwrap();
    symlink("does/not/exist", dir.join("link-dangling")).unwrap();
    // Owners other than the test's user (only root can give files away; otherwise every
    // entry keeps the test's user, which the fingerprint covers just the same). Before the
    // modes: a chown clears the setuid bit.
    own(dir, 1500, 1600);
    own(&dir.join("readme.txt"), 1001, 1002);
    own(&dir.join("docs/tenant-1/report.pdf"), 1234, 5678);
    own(&dir.join("docs/tenant-2"), 4321, 8765);
    own(&dir.join("link-relative"), 2222, 3333);
    own(
        &dir.join(OsStr::from_bytes(b"latin1-\xe9t\xe9.txt")),
        0,
        4242,
    );
    fs::set_permissions(dir.join("readme.txt"), fs::Permissions::from_mode(0o4751)).unwrap();
    fs::set_permissions(dir.join("empty-file"), fs::Permissions::from_mode(0o400)).unwrap();
    fs::write(dir.join("docs/tenant-2/locked.txt"), b"locked").unwrap();
    // mtimes with nanoseconds, and one before 1970.
    filetime::set_file_mtime(
        dir.join("docs/tenant-1/report.pdf"),
        filetime::FileTime::from_unix_time(1_600_000_000, 123_456_789),
    )
    .unwrap();
    filetime::set_file_mtime(
        dir.join("docs/tenant-2/locked.txt"),
        filetime::FileTime::from_unix_time(-86_400, 5),
    )
    .unwrap();
    filetime::set_symlink_file_times(
        dir.join("link-outside"),
        filetime::FileTime::from_unix_time(1_500_000_000, 7),
        filetime::FileTime::from_unix_time(1_500_000_000, 7),
    )
    .unwrap();
    fs::set_permissions(dir.join("docs/tenant-2"), fs::Permissions::from_mode(0o555)).unwrap();
    filetime::set_file_mtime(
        dir.join("empty-dir"),
        filetime::FileTime::from_unix_time(1_400_000_000, 999_999_999),
    )
    .unwrap();
}

/// Give `path` (not following a symlink) owner `uid:gid` when allowed (root); otherwise
/// leave it as it is.
fn own(path: &Path, uid: u32, gid: u32) {
    match std::os::unix::fs::lchown(path, Some(uid), Some(gid)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {}
        Err(e) => panic!("chown {}: {e}", path.display()),
    }
}

/// Make every directory writable again (tests leave read-only directories behind).
pub fn unlock(dir: &Path) {
    if let Ok(rd) = fs::read_dir(dir) {
        let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o755));
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                let _ = fs::set_permissions(e.path(), fs::Permissions::from_mode(0o755));
                unlock(&e.path());
            }
        }
    }
}

/// Remove `dir`'s content (it stays, empty).
pub fn make_empty(dir: &Path) {
    unlock(dir);
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir).unwrap();
}

/// The disaster: delete, change and add files.
pub fn destroy(dir: &Path) {
    unlock(dir);
    fs::remove_dir_all(dir.join("docs/tenant-1")).unwrap();
    fs::write(dir.join("readme.txt"), b"overwritten").unwrap();
    fs::write(dir.join("new-file"), b"should disappear on restore").unwrap();
    fs::remove_file(dir.join("link-outside")).unwrap();
}

/// A listing of the tree computed here, independently of the driver: every entry with its
/// exact name (bytes, escaped — never a lossy string), type, owner (uid:gid), mode, size,
/// mtime (ns), link target (bytes) and a SHA-256 of file contents; the root's owner, mode and
/// mtime.
pub fn fingerprint(dir: &Path) -> String {
    let mut out = String::new();
    match fs::symlink_metadata(dir) {
        Ok(m) => out.push_str(&format!(
            ". owner={}:{} mode={:o} mtime={}.{}\n",
            m.uid(),
            m.gid(),
            m.mode() & 0o7777,
            m.mtime(),
            m.mtime_nsec()
        )),
        Err(_) => return "<absent>".into(),
    }
    let mut entries = Vec::new();
    collect(dir, Path::new(""), &mut entries);
    entries.sort();
    for e in entries {
        out.push_str(&e);
        out.push('\n');
    }
    out
}

/// `bytes` as printable ASCII: every other byte (and `\`, `"`) as `\xNN`, so two names
/// differing in any byte never print alike.
pub fn escape(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() + 2);
    s.push('"');
    for &b in bytes {
        if (0x20..0x7f).contains(&b) && b != b'\\' && b != b'"' {
            s.push(b as char);
        } else {
            s.push_str(&format!("\\x{b:02x}"));
        }
    }
    s.push('"');
    s
}

fn collect(root: &Path, rel: &Path, out: &mut Vec<String>) {
    for e in fs::read_dir(root.join(rel)).unwrap() {
        let e = e.unwrap();
        let rel2 = rel.join(e.file_name());
        let p = root.join(&rel2);
        let m = fs::symlink_metadata(&p).unwrap();
        let name = escape(rel2.as_os_str().as_bytes());
        let owner = format!("owner={}:{}", m.uid(), m.gid());
        let ft = m.file_type();
        let line = if ft.is_symlink() {
            format!(
                "{name} link -> {} {owner} mtime={}.{}",
                escape(fs::read_link(&p).unwrap().as_os_str().as_bytes()),
                m.mtime(),
                m.mtime_nsec()
            )
        } else if ft.is_dir() {
            collect(root, &rel2, out);
            format!(
                "{name} dir {owner} mode={:o} mtime={}.{}",
                m.mode() & 0o7777,
                m.mtime(),
                m.mtime_nsec()
            )
        } else {
            let mut h = Sha256::new();
            let mut f = fs::File::open(&p).unwrap_or_else(|_| {
                // Read-only to owner still opens as root; as another user make it readable.
                fs::set_permissions(&p, fs::Permissions::from_mode(m.mode() | 0o400)).unwrap();
                fs::File::open(&p).unwrap()
            });
            let mut buf = vec![0; 65536];
            loop {
                let n = f.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
            }
            format!(
                "{name} file {owner} mode={:o} size={} mtime={}.{} sha256={}",
                m.mode() & 0o7777,
                m.len(),
                m.mtime(),
                m.mtime_nsec(),
                hex::encode(h.finalize())
            )
        };
        out.push(line);
    }
}

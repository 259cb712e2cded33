//! Files that, after a crash, are either absent or whole: the one place that writes them.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Creates `path` holding `data`, with permission bits `mode` (before the umask): a temp
/// file in the same directory, fsync, linked into place, fsync of the directory. Fails with
/// [`std::io::ErrorKind::AlreadyExists`] if `path` exists, even when another process races
/// to create it, so nothing is ever overwritten.
pub fn create_new(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    let mut tmp = TempFile::create_in(dir_of(path), mode)?;
    tmp.file.write_all(data)?;
    tmp.link_durably(path)
}

/// Temporary files start with this; directory listings skip them.
pub const TEMP_PREFIX: &str = ".tmp-";

/// A file being written under a temporary name (which listings skip) until it is linked
/// into place; removed when dropped, linked or not.
#[derive(Debug)]
pub struct TempFile {
    path: PathBuf,
    file: std::fs::File,
}

impl TempFile {
    /// A new empty file in `dir`, with permission bits `mode` (before the umask).
    pub fn create_in(dir: &Path, mode: u32) -> std::io::Result<Self> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        loop {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let path = dir.join(format!("{TEMP_PREFIX}{}-{n}", std::process::id()));
            match std::fs::OpenOptions::new().read(true).write(true).create_new(true).mode(mode).open(&path) {
                Ok(file) => return Ok(Self { path, file }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// The open file.
    pub fn file(&self) -> &std::fs::File {
        &self.file
    }

    /// Makes the contents durable (fsync), links them at `path` on the same filesystem,
    /// and syncs `path`'s directory. [`std::io::ErrorKind::AlreadyExists`] if `path`
    /// exists: nothing is overwritten.
    ///
    /// After a failed fsync the kernel may have dropped the pages it could not write
    /// and report the next fsync clean: a failure here means "write it again from a
    /// copy", never "call this again".
    pub fn link_durably(&self, path: &Path) -> std::io::Result<()> {
        if path.exists() {
            return Err(exists(path));
        }
        self.file.sync_all()?;
        std::fs::hard_link(&self.path, path)?;
        std::fs::File::open(dir_of(path))?.sync_all()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The directory `path` is in.
fn dir_of(path: &Path) -> &Path {
    path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

fn exists(path: &Path) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::AlreadyExists, format!("{} exists", path.display()))
}

/// Removes the temporary files other processes left in `dir` (not its subdirectories)
/// when they died before linking them; returns how many. Call it only while no other
/// process can be writing there (holding the vault's writer lock).
pub fn remove_stale_temp_files(dir: &Path) -> std::io::Result<usize> {
    let ours = format!("{TEMP_PREFIX}{}-", std::process::id());
    let mut removed = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(TEMP_PREFIX) && !name.starts_with(&ours) && entry.file_type()?.is_file() {
            std::fs::remove_file(entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

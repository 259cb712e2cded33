//! Files that, after a crash, are either absent or whole: the one place that writes them.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Creates `path` holding `data`, with permission bits `mode` (before the umask): a temp
/// file in the same directory, fsync, linked into place, fsync of the directory. Fails with
/// [`std::io::ErrorKind::AlreadyExists`] if `path` exists, even when another process races
/// to create it, so nothing is ever overwritten.
pub fn create_new(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if path.exists() {
        return Err(std::io::Error::new(std::io::ErrorKind::AlreadyExists, format!("{} exists", path.display())));
    }
    let (tmp, mut file) = temp_file_in(dir, mode)?;
    let linked = file.write_all(data).and_then(|()| file.sync_all()).and_then(|()| std::fs::hard_link(&tmp, path));
    let _ = std::fs::remove_file(&tmp);
    linked?;
    std::fs::File::open(dir)?.sync_all()
}

/// Temporary files start with this; directory listings skip them.
pub const TEMP_PREFIX: &str = ".tmp-";

fn temp_file_in(dir: &Path, mode: u32) -> std::io::Result<(PathBuf, std::fs::File)> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("{TEMP_PREFIX}{}-{n}", std::process::id()));
        match std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(&path) {
            Ok(f) => return Ok((path, f)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

//! Where vault objects live. Objects are immutable: `put` creates, never overwrites, and
//! this interface has no delete — the gateway's handle on the vault can add history but
//! never remove it (G4). Garbage collection deletes through its own handle
//! ([`crate::reclaim::Reclaim`]).

use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::VaultError;

/// A vault storage backend.
#[async_trait::async_trait]
pub trait Backend: Send + Sync {
    /// Stores a new object; [`VaultError::AlreadyExists`] if the name is taken. Returns
    /// once the object is durable.
    async fn put(&self, name: &str, data: Bytes) -> Result<(), VaultError>;
    /// Reads a whole object.
    async fn get(&self, name: &str) -> Result<Bytes, VaultError>;
    /// Reads `len` bytes of an object from `offset`.
    async fn get_range(&self, name: &str, offset: u64, len: u64) -> Result<Bytes, VaultError>;
    /// Reads the last `len` bytes of an object (all of it when it is shorter), and its
    /// size: a pack's header is at its end.
    async fn get_tail(&self, name: &str, len: u64) -> Result<(Bytes, u64), VaultError> {
        let whole = self.get(name).await?;
        let size = whole.len() as u64;
        Ok((whole.slice(usize::try_from(size.saturating_sub(len)).unwrap_or(0)..), size))
    }
    /// Names starting with `prefix`, sorted.
    async fn list(&self, prefix: &str) -> Result<Vec<String>, VaultError>;
    /// Names starting with `prefix` that sort after `after`, sorted: what was added past a
    /// known point, without listing everything before it (S3's `StartAfter`).
    async fn list_after(&self, prefix: &str, after: &str) -> Result<Vec<String>, VaultError> {
        let mut names = self.list(prefix).await?;
        names.retain(|n| n.as_str() > after);
        Ok(names)
    }
    /// Whether an object exists.
    async fn exists(&self, name: &str) -> Result<bool, VaultError>;
    /// A new object to write as its bytes come, named once they are all there; `None`
    /// when this backend takes whole objects only (the writer then holds them in memory
    /// and calls [`Backend::put`]). Packs are named by their bytes' hash: a local vault
    /// writes them to a file as they fill, without a copy in memory first.
    fn spool(&self) -> Result<Option<Box<dyn Spool>>, VaultError> {
        Ok(None)
    }
}

/// An object being written as its bytes come (see [`Backend::spool`]). Its methods
/// block: call them where blocking is allowed.
pub trait Spool: Send + std::fmt::Debug {
    /// Appends `data`. After a failure the spool holds what it held before, and the next
    /// append goes where this one would have.
    fn append(&mut self, data: &[u8]) -> std::io::Result<()>;
    /// Bytes appended so far.
    fn written(&self) -> u64;
    /// Makes the bytes durable as the object `name`, as [`Backend::put`] would have
    /// ([`VaultError::AlreadyExists`] if the name is taken). Once this failed otherwise
    /// the spool is not to be finished again: the bytes are to be read back with
    /// [`Spool::read_all`], checked and put.
    fn finish(&mut self, name: &str) -> Result<(), VaultError>;
    /// Reads all the bytes appended.
    fn read_all(&mut self) -> std::io::Result<Vec<u8>>;
}

/// Vault object names: `/`-separated segments of letters, digits, `-`, `_` and `.`, none
/// empty or starting with `.` (so no `.` or `..`, and no name can leave the vault's root;
/// a leading dot is kept for the backend's own files: temp files, the writer lock).
pub fn check_name(name: &str) -> Result<(), VaultError> {
    let ok = !name.is_empty()
        && name.len() <= 512
        && name.split('/').all(|seg| {
            !seg.is_empty()
                && !seg.starts_with('.')
                && seg.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        });
    if ok { Ok(()) } else { Err(VaultError::InvalidName { name: name.to_owned() }) }
}

/// The file in a local vault's root that its writing gateway holds locked.
pub const WRITER_LOCK: &str = ".writer.lock";

/// A vault in a local directory. Writes are durable: temp file, fsync, rename, fsync of
/// the directory, so after a crash an object is either absent or whole.
#[derive(Debug, Clone)]
pub struct LocalBackend {
    root: PathBuf,
}

impl LocalBackend {
    /// A vault rooted at `root` (created if missing).
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, VaultError> {
        let root = root.into();
        std::fs::create_dir_all(&root)?;
        Ok(Self { root })
    }

    /// Takes the lock that the one gateway writing to this vault holds while it runs,
    /// without waiting; `None` when another process holds it. Two gateways shipping their
    /// journals into one vault would fork its history, so the second is refused at start.
    /// The lock goes with the returned file (and with the process).
    pub fn claim_writer(&self) -> Result<Option<std::fs::File>, VaultError> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(self.root.join(WRITER_LOCK))?;
        match file.try_lock() {
            Ok(()) => {
                // Spools of a writer that died before finishing them (see `spool`).
                let removed = crate::durable::remove_stale_temp_files(&self.root)?;
                if removed > 0 {
                    tracing::info!(removed, root = %self.root.display(), "removed unfinished packs a previous writer left");
                }
                Ok(Some(file))
            }
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(VaultError::Io(e)),
        }
    }

    /// The directory the vault is in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, name: &str) -> Result<PathBuf, VaultError> {
        check_name(name)?;
        Ok(self.root.join(name))
    }
}

fn not_found(name: &str, e: std::io::Error) -> VaultError {
    if e.kind() == std::io::ErrorKind::NotFound {
        VaultError::NotFound { name: name.to_owned() }
    } else {
        VaultError::Io(e)
    }
}

/// The permission bits of a vault object (before the umask): those any plainly created
/// file gets.
const OBJECT_MODE: u32 = 0o666;

/// Stores `data` at `path`, with [`Backend::put`]'s errors.
fn put_durably(path: &Path, name: &str, data: &[u8]) -> Result<(), VaultError> {
    std::fs::create_dir_all(path.parent().expect("invariant: vault paths are under the root"))?;
    crate::durable::create_new(path, data, OBJECT_MODE).map_err(|e| put_error(name, e))
}

fn put_error(name: &str, e: std::io::Error) -> VaultError {
    match e.kind() {
        std::io::ErrorKind::AlreadyExists => VaultError::AlreadyExists { name: name.to_owned() },
        _ => VaultError::Io(e),
    }
}

/// A local vault's spool: a temp file in its root, linked into place when finished.
#[derive(Debug)]
struct LocalSpool {
    backend: LocalBackend,
    file: crate::durable::TempFile,
    /// Bytes appended; the file may be longer after a failed append.
    len: u64,
    /// A failed append may have left bytes past `len`.
    torn: bool,
}

impl Spool for LocalSpool {
    fn append(&mut self, data: &[u8]) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        match self.file.file().write_all_at(data, self.len) {
            Ok(()) => {
                self.len += data.len() as u64;
                Ok(())
            }
            Err(e) => {
                self.torn = true;
                Err(e)
            }
        }
    }

    fn written(&self) -> u64 {
        self.len
    }

    fn finish(&mut self, name: &str) -> Result<(), VaultError> {
        let path = self.backend.path(name)?;
        if self.torn {
            self.file.file().set_len(self.len)?;
        }
        std::fs::create_dir_all(path.parent().expect("invariant: vault paths are under the root"))?;
        self.file.link_durably(&path).map_err(|e| put_error(name, e))
    }

    fn read_all(&mut self) -> std::io::Result<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        let mut buf = vec![0; usize::try_from(self.len).expect("invariant: spools are pack-sized")];
        self.file.file().read_exact_at(&mut buf, 0)?;
        Ok(buf)
    }
}

/// Ranges up to this size are read on the calling task (see `get_range`).
const INLINE_READ_MAX: u64 = 64 << 10;

/// Reads `len` bytes at `offset` of the file at `path` (open, size check, positioned read).
fn read_range(path: &Path, name: &str, offset: u64, len: u64) -> Result<Bytes, VaultError> {
    let file = std::fs::File::open(path).map_err(|e| not_found(name, e))?;
    let size = file.metadata()?.len();
    if offset.checked_add(len).is_none_or(|end| end > size) {
        return Err(VaultError::Corrupt {
            what: format!("vault object {name}"),
            detail: format!("range {offset}+{len} beyond its {size} bytes"),
        });
    }
    // Read into spare capacity: zeroing a buffer the read overwrites costs a pass over it.
    let mut buf = Vec::with_capacity(usize::try_from(len).expect("invariant: ranges are chunk-sized"));
    let mut file = std::io::Read::take(&file, len);
    std::io::Seek::seek(file.get_mut(), std::io::SeekFrom::Start(offset))?;
    std::io::Read::read_to_end(&mut file, &mut buf)?;
    if buf.len() as u64 != len {
        return Err(VaultError::Io(std::io::Error::from(std::io::ErrorKind::UnexpectedEof)));
    }
    Ok(Bytes::from(buf))
}

fn list_under(root: &Path, dir: &Path, out: &mut Vec<String>) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            list_under(root, &path, out)?;
        } else if !entry.file_name().to_string_lossy().starts_with('.') {
            // Not an object: a temp file being written, or the writer lock.
            let rel = path.strip_prefix(root).expect("invariant: walked from root");
            out.push(rel.to_string_lossy().replace(std::path::MAIN_SEPARATOR, "/"));
        }
    }
    Ok(())
}

#[async_trait::async_trait]
impl Backend for LocalBackend {
    async fn put(&self, name: &str, data: Bytes) -> Result<(), VaultError> {
        let path = self.path(name)?;
        let name = name.to_owned();
        tokio::task::spawn_blocking(move || put_durably(&path, &name, &data)).await.expect("invariant: no panic in put")
    }

    async fn get(&self, name: &str) -> Result<Bytes, VaultError> {
        let path = self.path(name)?;
        tokio::fs::read(&path).await.map(Bytes::from).map_err(|e| not_found(name, e))
    }

    async fn get_range(&self, name: &str, offset: u64, len: u64) -> Result<Bytes, VaultError> {
        let path = self.path(name)?;
        // A small read from a local file is a page-cache copy: a trip to the blocking pool
        // costs more (two thread switches) than the read. Larger reads go there.
        if len <= INLINE_READ_MAX {
            return read_range(&path, name, offset, len);
        }
        let name = name.to_owned();
        tokio::task::spawn_blocking(move || read_range(&path, &name, offset, len))
            .await
            .expect("invariant: no panic in get_range")
    }

    async fn get_tail(&self, name: &str, len: u64) -> Result<(Bytes, u64), VaultError> {
        let path = self.path(name)?;
        let name = name.to_owned();
        tokio::task::spawn_blocking(move || {
            let size = std::fs::metadata(&path).map_err(|e| not_found(&name, e))?.len();
            let len = len.min(size);
            Ok((read_range(&path, &name, size - len, len)?, size))
        })
        .await
        .expect("invariant: no panic in get_tail")
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, VaultError> {
        let root = self.root.clone();
        let prefix = prefix.to_owned();
        tokio::task::spawn_blocking(move || {
            let mut names = Vec::new();
            // Only the folder the prefix names is walked: listing `segments/` must not
            // read every pack's folder too (a vault holds millions of packs).
            let folder = prefix.rfind('/').map_or("", |end| &prefix[..end]);
            let start = folder.split('/').filter(|s| !s.is_empty()).fold(root.clone(), |dir, s| dir.join(s));
            list_under(&root, &start, &mut names)?;
            names.retain(|n| n.starts_with(&prefix));
            names.sort();
            Ok(names)
        })
        .await
        .expect("invariant: no panic in list")
    }

    async fn exists(&self, name: &str) -> Result<bool, VaultError> {
        Ok(tokio::fs::try_exists(self.path(name)?).await?)
    }

    fn spool(&self) -> Result<Option<Box<dyn Spool>>, VaultError> {
        let file = crate::durable::TempFile::create_in(&self.root, OBJECT_MODE)?;
        Ok(Some(Box::new(LocalSpool { backend: self.clone(), file, len: 0, torn: false })))
    }
}

/// The behaviour every backend must show; run it against each implementation. Test code:
/// compiled for this crate's tests and, through the `conformance` feature, for others'.
#[cfg(any(test, feature = "conformance"))]
#[allow(clippy::unwrap_used)]
pub mod conformance {
    use super::*;

    /// Runs every check against `backend`, which must be empty.
    pub async fn run(backend: &dyn Backend) {
        round_trip_and_ranges(backend).await;
        objects_are_immutable(backend).await;
        listing_is_sorted_and_filtered(backend).await;
        bad_names_and_missing_objects(backend).await;
    }

    async fn round_trip_and_ranges(b: &dyn Backend) {
        let data = Bytes::from((0..100_000u32).map(|i| (i % 251) as u8).collect::<Vec<_>>());
        b.put("packs/ab/one", data.clone()).await.unwrap();
        assert_eq!(b.get("packs/ab/one").await.unwrap(), data);
        assert_eq!(b.get_range("packs/ab/one", 1000, 500).await.unwrap(), data.slice(1000..1500));
        assert!(b.get_range("packs/ab/one", 99_990, 20).await.is_err(), "a range past the end is an error");
        assert_eq!(b.get_tail("packs/ab/one", 300).await.unwrap(), (data.slice(99_700..), 100_000));
        assert_eq!(b.get_tail("packs/ab/one", 200_000).await.unwrap(), (data.clone(), 100_000), "shorter than asked");
        assert!(matches!(b.get_tail("missing", 10).await, Err(VaultError::NotFound { .. })));
        assert!(b.exists("packs/ab/one").await.unwrap());
        b.put("empty", Bytes::new()).await.unwrap();
        assert!(b.get("empty").await.unwrap().is_empty());
    }

    async fn objects_are_immutable(b: &dyn Backend) {
        b.put("keys/master", Bytes::from_static(b"first")).await.unwrap();
        let again = b.put("keys/master", Bytes::from_static(b"second")).await;
        assert!(matches!(again, Err(VaultError::AlreadyExists { .. })), "{again:?}");
        assert_eq!(b.get("keys/master").await.unwrap(), Bytes::from_static(b"first"));
    }

    async fn listing_is_sorted_and_filtered(b: &dyn Backend) {
        for n in ["seg/0003", "seg/0001", "seg/0002", "segment-other"] {
            b.put(n, Bytes::from_static(b"x")).await.unwrap();
        }
        assert_eq!(b.list("seg/").await.unwrap(), ["seg/0001", "seg/0002", "seg/0003"]);
        assert_eq!(b.list("seg/000").await.unwrap(), ["seg/0001", "seg/0002", "seg/0003"]);
        assert_eq!(b.list("seg/0002").await.unwrap(), ["seg/0002"]);
        assert_eq!(b.list("seg").await.unwrap(), ["seg/0001", "seg/0002", "seg/0003", "segment-other"]);
        let everything = b.list("").await.unwrap();
        assert!(["seg/0001", "segment-other"].iter().all(|n| everything.iter().any(|e| e == n)), "{everything:?}");
        assert!(b.list("nothing/").await.unwrap().is_empty());
        assert!(b.list("nothing/deeper/x").await.unwrap().is_empty());
    }

    async fn bad_names_and_missing_objects(b: &dyn Backend) {
        for bad in ["", "/abs", "a/../b", "..", "a//b", "a b", "a\\b", ".writer.lock", "packs/.tmp-1"] {
            assert!(matches!(b.put(bad, Bytes::new()).await, Err(VaultError::InvalidName { .. })), "{bad:?} accepted");
        }
        assert!(matches!(b.get("missing").await, Err(VaultError::NotFound { .. })));
        assert!(!b.exists("missing").await.unwrap());
    }
}

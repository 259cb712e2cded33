//! Restoring into a local directory (`restore --to-dir`), and streaming one version with
//! its BLAKE3 checked (`cat`).

use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::StreamExt;
use rewind_snapshotter::api::ObjectInfo;

use crate::client::CliError;
use crate::target::{ObjectBytes, Target};
use crate::{RestoreArgs, print};

/// Streams `object` into `out`, checking it against its journaled BLAKE3 and size; returns
/// the size.
pub async fn copy_verified(mut object: ObjectBytes, out: &mut impl Write) -> Result<u64, CliError> {
    let mut hasher = blake3::Hasher::new();
    let mut size = 0u64;
    while let Some(piece) = object.chunks.next().await {
        let piece = piece?;
        hasher.update(&piece);
        size += piece.len() as u64;
        out.write_all(&piece)?;
    }
    let hash = hasher.finalize().to_hex().to_string();
    if object.blake3 != hash || object.size != size {
        return Err(CliError::other(
            "the bytes read do not match the journaled BLAKE3 and size: the vault may be damaged; run `rewind verify --read-data`",
        ));
    }
    Ok(size)
}

/// Where `key` goes under `dir`, as the names of its path components, or `None` when it
/// would escape it (`..`, an absolute path) or cannot be a file name. A key ending in
/// `/` (a folder marker) names a directory.
pub fn target_path(dir: &Path, key: &str) -> Option<PathBuf> {
    components(key).map(|parts| parts.iter().fold(dir.to_path_buf(), |p, c| p.join(c)))
}

fn components(key: &str) -> Option<Vec<&str>> {
    if key.is_empty() || key.contains('\0') || key.starts_with('/') {
        return None;
    }
    let mut out = Vec::new();
    for part in key.split('/') {
        match Path::new(part).components().next() {
            None => {} // "a//b": no empty names
            Some(Component::Normal(_)) if Path::new(part).components().count() == 1 => out.push(part),
            _ => return None,
        }
    }
    (!out.is_empty()).then_some(out)
}

/// Why a key is not written.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Refusal {
    /// It would land outside the directory, or names no file.
    Escapes,
    /// Another key maps to the same file (`a//b` and `a/b`).
    SameFile(String),
    /// A file cannot also be a directory (`a` and `a/b`).
    FileAndFolder(String),
    /// A folder marker with content cannot be a directory.
    MarkerWithContent,
}

impl Refusal {
    fn explain(&self, dir: &Path) -> String {
        match self {
            Self::Escapes => {
                format!("it would land outside {} (it names '..', '.', or an absolute path)", dir.display())
            }
            Self::SameFile(other) => format!("it and {:?} name the same file", print::key(other)),
            Self::FileAndFolder(other) => {
                format!("it and {:?} need the same name as a file and a folder", print::key(other))
            }
            Self::MarkerWithContent => "a key ending in '/' that holds bytes cannot be a folder".into(),
        }
    }
}

/// An object and the file (or folder) it goes to.
type Placed = (ObjectInfo, PathBuf);

/// Maps each object to its place under `dir`, refusing keys that escape it or collide:
/// two keys must never be written to one file (a re-run would never converge, review F14).
fn places(dir: &Path, objects: Vec<ObjectInfo>) -> (Vec<Placed>, Vec<(String, Refusal)>) {
    let mut refused = Vec::new();
    let mut by_path: std::collections::BTreeMap<PathBuf, Vec<ObjectInfo>> = std::collections::BTreeMap::new();
    for o in objects {
        match target_path(dir, &o.key) {
            None => refused.push((o.key, Refusal::Escapes)),
            Some(_) if o.key.ends_with('/') && o.size > 0 => refused.push((o.key, Refusal::MarkerWithContent)),
            Some(path) => by_path.entry(path).or_default().push(o),
        }
    }
    let folders: std::collections::BTreeSet<PathBuf> =
        by_path.keys().flat_map(|p| p.ancestors().skip(1).map(Path::to_path_buf).collect::<Vec<_>>()).collect();
    let mut placed = Vec::new();
    for (path, mut objects) in by_path {
        let is_marker = |o: &ObjectInfo| o.key.ends_with('/');
        if objects.len() > 1 {
            let keys: Vec<String> = objects.iter().map(|o| o.key.clone()).collect();
            for o in objects.drain(..) {
                let other = keys.iter().find(|k| **k != o.key).cloned().unwrap_or_default();
                refused.push((o.key, Refusal::SameFile(other)));
            }
            continue;
        }
        let o = objects.pop().expect("invariant: one object");
        if folders.contains(&path) && !is_marker(&o) {
            refused.push((o.key.clone(), Refusal::FileAndFolder(format!("{}/...", o.key))));
            continue;
        }
        placed.push((o, path));
    }
    (placed, refused)
}

fn file_matches(path: &Path, o: &ObjectInfo) -> bool {
    if o.key.ends_with('/') {
        return std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir());
    }
    let Ok(meta) = std::fs::symlink_metadata(path) else { return false };
    if !meta.is_file() || meta.len() != o.size {
        return false;
    }
    let mut hasher = blake3::Hasher::new();
    std::fs::File::open(path).and_then(|mut f| std::io::copy(&mut f, &mut hasher)).is_ok()
        && hasher.finalize().to_hex().as_str() == o.blake3
}

/// Opens (creating as needed) each directory from `dir` down along `parts`, never
/// following a symbolic link: a link placed in the target beforehand must not carry a
/// restore outside it (review F14). Returns the innermost directory.
fn open_dirs(dir: &Path, parts: &[&str]) -> std::io::Result<OwnedFd> {
    use rustix::fs::{Mode, OFlags, mkdirat, openat};
    let flags = OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC;
    let mut at = openat(rustix::fs::CWD, dir, flags, Mode::empty())?;
    for part in parts {
        match mkdirat(&at, *part, Mode::from_raw_mode(0o777)) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
        at = openat(&at, *part, flags, Mode::empty()).map_err(|e| {
            if e == rustix::io::Errno::LOOP || e == rustix::io::Errno::NOTDIR {
                std::io::Error::other(format!(
                    "{part:?} in the target is a symbolic link or a file, not a folder: refused"
                ))
            } else {
                e.into()
            }
        })?;
    }
    Ok(at)
}

async fn fetch_one(target: &Target, args: &RestoreArgs, seq: u64, o: &ObjectInfo, dir: &Path) -> Result<(), CliError> {
    use rustix::fs::{Mode, OFlags, openat, renameat};
    let parts = components(&o.key).expect("invariant: placed keys have components");
    let fail = |e: std::io::Error| CliError::other(format!("cannot write {}: {e}", print::key(&o.key)));
    if o.key.ends_with('/') {
        open_dirs(dir, &parts).map_err(fail)?;
        return Ok(());
    }
    let (name, parents) = parts.split_last().expect("invariant: at least one component");
    let parent = open_dirs(dir, parents).map_err(fail)?;
    let at = format!("seq:{seq}");
    let object = target.object(&args.bucket, &o.key, Some(&at)).await?;
    let tmp = format!(".rewind-restore.{:016x}.tmp", rand_suffix());
    // Created like any file (the process umask applies), never through a link.
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = openat(&parent, tmp.as_str(), flags, Mode::from_raw_mode(0o666)).map_err(|e| fail(e.into()))?;
    let mut file = std::fs::File::from(fd);
    let written = async {
        copy_verified(object, &mut file).await?;
        file.sync_all()?;
        renameat(&parent, tmp.as_str(), &parent, *name).map_err(|e| fail(e.into()))
    };
    let result = written.await;
    if result.is_err() {
        let _ = rustix::fs::unlinkat(&parent, tmp.as_str(), rustix::fs::AtFlags::empty());
    }
    result
}

fn rand_suffix() -> u64 {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    u64::from(t.subsec_nanos()) ^ (u64::from(std::process::id()) << 32) ^ COUNTER.fetch_add(1, Ordering::Relaxed)
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes the objects of `args` as of its instant under `dir`; files already there with the
/// right content are kept, so a re-run finishes an interrupted restore.
pub async fn restore(json: bool, target: &Target, args: &RestoreArgs, dir: &Path) -> Result<ExitCode, CliError> {
    let prefix = args.key.as_deref().unwrap_or(&args.prefix);
    let listing = target.ls(&args.bucket, prefix, Some(&args.at)).await?;
    let mut objects: Vec<ObjectInfo> = listing.objects;
    if let Some(key) = &args.key {
        objects.retain(|o| &o.key == key);
    }
    let (placed, refused) = places(dir, objects);
    let mut todo = Vec::new();
    let mut unchanged = 0u64;
    for (o, path) in placed {
        if file_matches(&path, &o) {
            unchanged += 1;
        } else {
            todo.push(o);
        }
    }
    let total_bytes: u64 = todo.iter().map(|o| o.size).sum();
    if !json {
        outln!(
            "Restore plan for {} as of seq:{} into {}: write {} files ({}), {} already there{}",
            print::key(&args.bucket),
            listing.seq,
            dir.display(),
            todo.len(),
            print::bytes(total_bytes),
            unchanged,
            if refused.is_empty() { String::new() } else { format!(", {} keys refused", refused.len()) }
        );
    }
    for (key, why) in &refused {
        eprintln!("refused: {:?}: {}", print::key(key), why.explain(dir));
    }
    if args.dry_run {
        return Ok(if refused.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE });
    }
    if !todo.is_empty() {
        std::fs::create_dir_all(dir).map_err(|e| CliError::other(format!("cannot create {}: {e}", dir.display())))?;
    }
    let bar = print::progress_bar(todo.len() as u64, json);
    let (written, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    futures::stream::iter(todo)
        .map(|o| {
            let (bar, written, failed) = (bar.clone(), written.clone(), failed.clone());
            async move {
                match fetch_one(target, args, listing.seq, &o, dir).await {
                    Ok(()) => {
                        written.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        bar.suspend(|| eprintln!("failed: {}: {e}", print::key(&o.key)));
                    }
                }
                bar.inc(1);
            }
        })
        .buffer_unordered(args.parallel.max(1))
        .for_each(|()| futures::future::ready(()))
        .await;
    bar.finish_and_clear();
    let (written, failed) = (written.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    let refused: Vec<String> = refused.into_iter().map(|(k, _)| k).collect();
    if json {
        let done =
            serde_json::json!({"written": written, "failed": failed, "unchanged": unchanged, "refused": refused});
        outln!("{done}");
    } else {
        outln!("Wrote {written} files under {}, {failed} failed, {} refused.", dir.display(), refused.len());
    }
    Ok(if failed == 0 && refused.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(key: &str, size: u64) -> ObjectInfo {
        ObjectInfo { key: key.into(), size, ..ObjectInfo::default() }
    }

    #[test]
    fn keys_that_share_a_file_or_need_one_name_twice_are_refused() {
        let dir = Path::new("/restore");
        let objects = vec![
            info("p//q", 1),
            info("p/q", 2),
            info("docs", 3),
            info("docs/a.txt", 4),
            info("dir/", 0),
            info("dir/x", 5),
            info("full/", 9),
        ];
        let (placed, refused) = places(dir, objects);
        let placed: Vec<&str> = placed.iter().map(|(o, _)| o.key.as_str()).collect();
        assert_eq!(placed, ["dir/", "dir/x", "docs/a.txt"]);
        let refused: Vec<(&str, bool)> =
            refused.iter().map(|(k, r)| (k.as_str(), matches!(r, Refusal::SameFile(_)))).collect();
        assert!(refused.contains(&("p//q", true)) && refused.contains(&("p/q", true)), "{refused:?}");
        assert!(refused.iter().any(|(k, _)| *k == "docs") && refused.iter().any(|(k, _)| *k == "full/"));
    }

    #[test]
    fn a_symbolic_link_in_the_target_is_not_followed() {
        let (target, outside) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        std::os::unix::fs::symlink(outside.path(), target.path().join("evil")).unwrap();
        let err = open_dirs(target.path(), &["evil"]).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert!(open_dirs(target.path(), &["fine", "deeper"]).is_ok());
        assert!(target.path().join("fine/deeper").is_dir());
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    }

    #[test]
    fn keys_that_would_escape_the_directory_are_refused() {
        let dir = Path::new("/restore");
        assert_eq!(target_path(dir, "a/b.txt"), Some(PathBuf::from("/restore/a/b.txt")));
        assert_eq!(target_path(dir, "a//b"), Some(PathBuf::from("/restore/a/b")));
        for bad in ["../etc/passwd", "a/../../x", "/etc/passwd", "./a", "a/./b", "..", "", "/", "a\0b", "//"] {
            assert_eq!(target_path(dir, bad), None, "{bad:?}");
        }
    }
}

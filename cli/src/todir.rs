//! Restoring into a local directory (`restore --to-dir`), and streaming one version with
//! its BLAKE3 checked (`cat`).

use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::StreamExt;
use http::Method;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use rewind_snapshotter::api::{Listing, ObjectInfo};

use crate::client::{CliError, Client, with_query};
use crate::{RestoreArgs, print};

/// Streams `res`'s body into `out`, checking it against the `x-rewind-blake3` and
/// `x-rewind-size` headers; returns the size.
pub async fn copy_verified(res: http::Response<Incoming>, out: &mut impl Write) -> Result<u64, CliError> {
    let header = |name: &str| res.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let (want_hash, want_size) = (header("x-rewind-blake3"), header("x-rewind-size"));
    let mut body = res.into_body();
    let mut hasher = blake3::Hasher::new();
    let mut size = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| CliError::other(format!("reading from the gateway failed: {e}")))?;
        if let Ok(data) = frame.into_data() {
            hasher.update(&data);
            size += data.len() as u64;
            out.write_all(&data)?;
        }
    }
    let hash = hasher.finalize().to_hex().to_string();
    if want_hash.as_deref() != Some(hash.as_str()) || want_size.as_deref() != Some(size.to_string().as_str()) {
        return Err(CliError::other(
            "the bytes read do not match the journaled BLAKE3 and size: the vault may be damaged; run `rewind verify --read-data`",
        ));
    }
    Ok(size)
}

/// Where `key` goes under `dir`, or `None` when it would escape it (`..`, an absolute
/// path) or cannot be a file name.
pub fn target_path(dir: &Path, key: &str) -> Option<PathBuf> {
    if key.is_empty() || key.contains('\0') || key.starts_with('/') {
        return None;
    }
    let mut out = dir.to_path_buf();
    for part in key.split('/') {
        match Path::new(part).components().next() {
            None => {} // "a//b": no empty names
            Some(Component::Normal(_)) if Path::new(part).components().count() == 1 => out.push(part),
            _ => return None,
        }
    }
    (out != dir).then_some(out)
}

fn file_matches(path: &Path, o: &ObjectInfo) -> bool {
    let Ok(meta) = std::fs::metadata(path) else { return false };
    if !meta.is_file() || meta.len() != o.size {
        return false;
    }
    let mut hasher = blake3::Hasher::new();
    std::fs::File::open(path).and_then(|mut f| std::io::copy(&mut f, &mut hasher)).is_ok()
        && hasher.finalize().to_hex().as_str() == o.blake3
}

async fn fetch_one(client: &Client, args: &RestoreArgs, seq: u64, o: &ObjectInfo, path: &Path) -> Result<(), CliError> {
    let parent = path.parent().expect("invariant: targets are under the directory");
    std::fs::create_dir_all(parent).map_err(|e| CliError::other(format!("cannot create {}: {e}", parent.display())))?;
    let at = format!("seq:{seq}");
    let query = with_query("object", &[("bucket", Some(&args.bucket)), ("key", Some(&o.key)), ("at", Some(&at))]);
    let res = client.send(Method::GET, &query, None).await?;
    let mut tmp = tempfile::NamedTempFile::new_in(parent)?;
    copy_verified(res, tmp.as_file_mut()).await?;
    // Like a file any tool would create (temporary files are private until complete).
    tmp.as_file().set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| CliError::other(format!("cannot write {}: {e}", path.display())))?;
    Ok(())
}

/// Writes the objects of `args` as of its instant under `dir`; files already there with the
/// right content are kept, so a re-run finishes an interrupted restore.
pub async fn restore(json: bool, client: &Client, args: &RestoreArgs, dir: &Path) -> Result<ExitCode, CliError> {
    let prefix = args.key.as_deref().unwrap_or(&args.prefix);
    let query = with_query("ls", &[("bucket", Some(&args.bucket)), ("prefix", Some(prefix)), ("at", Some(&args.at))]);
    let listing: Listing = client.json(Method::GET, &query, None).await?;
    let mut objects: Vec<ObjectInfo> = listing.objects;
    if let Some(key) = &args.key {
        objects.retain(|o| &o.key == key);
    }
    let mut refused = Vec::new();
    let mut todo = Vec::new();
    let mut unchanged = 0u64;
    for o in objects {
        match target_path(dir, &o.key) {
            None => refused.push(o.key),
            Some(path) if file_matches(&path, &o) => unchanged += 1,
            Some(path) => todo.push((o, path)),
        }
    }
    let total_bytes: u64 = todo.iter().map(|(o, _)| o.size).sum();
    if !json {
        println!(
            "Restore plan for {} as of seq:{} into {}: write {} files ({}), {} already there{}",
            args.bucket,
            listing.seq,
            dir.display(),
            todo.len(),
            print::bytes(total_bytes),
            unchanged,
            if refused.is_empty() { String::new() } else { format!(", {} keys refused", refused.len()) }
        );
    }
    for key in &refused {
        eprintln!("refused: {key:?} would land outside {} (it names '..', '.', or an absolute path)", dir.display());
    }
    if args.dry_run {
        return Ok(if refused.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE });
    }
    let bar = print::progress_bar(todo.len() as u64, json);
    let (written, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    futures::stream::iter(todo)
        .map(|(o, path)| {
            let (bar, written, failed) = (bar.clone(), written.clone(), failed.clone());
            async move {
                match fetch_one(client, args, listing.seq, &o, &path).await {
                    Ok(()) => {
                        written.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        bar.suspend(|| eprintln!("failed: {}: {e}", o.key));
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
    if json {
        let done =
            serde_json::json!({"written": written, "failed": failed, "unchanged": unchanged, "refused": refused});
        println!("{done}");
    } else {
        println!("Wrote {written} files under {}, {failed} failed, {} refused.", dir.display(), refused.len());
    }
    Ok(if failed == 0 && refused.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

#[cfg(test)]
mod tests {
    use super::*;

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

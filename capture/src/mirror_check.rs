//! What `rewind vault mirror ls|sync|verify` asks of the mirrors, from the vaults alone
//! (no journal, so it works while gateways run): how far each is behind, copying what it
//! lacks, and checking what it holds.

use futures::StreamExt;
use rewind_journal::segment;
use rewind_vault::VaultError;
use rewind_vault::backend::Backend;
use rewind_vault::reclaim::Deleted;
use serde::Serialize;

use crate::mirror::{Mirror, MirrorMetrics};

/// Objects whose size `status` asks the primary at once.
const SIZE_LOOKUPS: usize = 16;

/// How far one mirror is behind the primary.
#[derive(Debug, Clone, Serialize)]
pub struct MirrorStatus {
    pub mirror: usize,
    pub location: String,
    /// Objects the primary holds and the mirror lacks, and their bytes.
    pub missing_objects: usize,
    pub missing_bytes: u64,
    pub missing_packs: usize,
    pub missing_segments: usize,
    /// The last journal position each holds in a shipped segment.
    pub primary_position: u64,
    pub mirror_position: u64,
    /// Set when the mirror cannot be listed.
    pub error: Option<String>,
}

/// The last journal position the segments among `names` hold.
fn last_position(names: &[String]) -> u64 {
    names.iter().filter_map(|n| segment::range_of_name(n)).map(|(_, last)| last).max().unwrap_or(0)
}

/// How far `mirror` is behind `primary`.
pub async fn status(mirror: &Mirror, primary: &dyn Backend) -> Result<MirrorStatus, VaultError> {
    let primary_segments = primary.list("segments/").await?;
    let mut out = MirrorStatus {
        mirror: mirror.number,
        location: mirror.location.clone(),
        missing_objects: 0,
        missing_bytes: 0,
        missing_packs: 0,
        missing_segments: 0,
        primary_position: last_position(&primary_segments),
        mirror_position: 0,
        error: None,
    };
    let missing = match mirror.missing(primary).await {
        Ok(missing) => missing,
        Err(e) => {
            out.error = Some(e.to_string());
            return Ok(out);
        }
    };
    out.missing_objects = missing.len();
    // Sizes, several at once (an S3 primary answers each with a one-byte ranged read).
    let sizes: Vec<Result<u64, VaultError>> = futures::stream::iter(&missing)
        .map(|name| async move {
            match primary.get_tail(name, 0).await {
                Ok((_, size)) => Ok(size),
                Err(VaultError::NotFound { .. }) => Ok(0),
                Err(e) => Err(e),
            }
        })
        .buffer_unordered(SIZE_LOOKUPS)
        .collect()
        .await;
    for size in sizes {
        out.missing_bytes += size?;
    }
    out.missing_packs = missing.iter().filter(|n| n.starts_with("packs/")).count();
    out.missing_segments = missing.iter().filter(|n| n.starts_with("segments/")).count();
    out.mirror_position = last_position(&mirror.backend().list("segments/").await?);
    Ok(out)
}

/// What checking one mirror found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MirrorCheck {
    pub mirror: usize,
    pub location: String,
    /// Objects read and checked.
    pub checked: usize,
    /// Objects the primary holds and the mirror lacks (its lag, or losses).
    pub missing: Vec<String>,
    /// Objects whose bytes are not what they should be, and why.
    pub damaged: Vec<(String, String)>,
}

/// Checks `mirror`: what it lacks of `primary` (when the primary can be listed), and with
/// `read_data` every object's bytes: a pack against its content name (on its own, no key
/// needed), anything else against the primary's copy when there is one.
pub async fn verify(
    mirror: &Mirror,
    primary: Option<&dyn Backend>,
    read_data: bool,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<MirrorCheck, VaultError> {
    let mut out = MirrorCheck { mirror: mirror.number, location: mirror.location.clone(), ..MirrorCheck::default() };
    if let Some(primary) = primary {
        out.missing = mirror.missing(primary).await?;
    }
    if !read_data {
        return Ok(out);
    }
    let names = mirror.backend().list("").await?;
    for (i, name) in names.iter().enumerate() {
        progress(i, names.len());
        let bytes = mirror.backend().get(name).await?;
        out.checked += 1;
        if let Some(content) = name.strip_prefix("packs/").and_then(|rest| rest.split('/').nth(1)) {
            if blake3::hash(&bytes).to_hex().as_str() != content {
                out.damaged.push((name.clone(), "its content does not match its name".into()));
            }
            continue;
        }
        if let Some(primary) = primary {
            match primary.get(name).await {
                Ok(theirs) if theirs != bytes => {
                    out.damaged.push((name.clone(), "its bytes differ from the primary vault's".into()));
                }
                Ok(_) | Err(VaultError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
    }
    progress(names.len(), names.len());
    Ok(out)
}

/// Copies what `mirror` lacks of `primary`; returns how many objects.
pub async fn sync(mirror: &Mirror, primary: &dyn Backend, metrics: &MirrorMetrics) -> Result<u64, VaultError> {
    mirror.compare_and_copy(primary, metrics).await
}

/// Replaces each of `names` on `mirror` with the primary's copy: a damaged object is
/// deleted from the mirror, then copied again.
pub async fn repair(mirror: &Mirror, primary: &dyn Backend, names: &[String]) -> Result<usize, VaultError> {
    let mut repaired = 0;
    for name in names {
        let good = primary.get(name).await?;
        if let Deleted::Locked { until_us } = mirror.reclaim().delete(name).await? {
            return Err(VaultError::Corrupt {
                what: format!("{name} on mirror {}", mirror.number),
                detail: format!(
                    "it is damaged but Object Lock keeps it until {until_us} µs since the epoch; it cannot be replaced before"
                ),
            });
        }
        mirror.backend().put(name, good).await?;
        repaired += 1;
    }
    Ok(repaired)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use rewind_vault::backend::LocalBackend;

    use super::*;

    #[tokio::test]
    async fn status_counts_what_a_mirror_lacks_and_verify_names_what_is_damaged() {
        let dir = tempfile::tempdir().unwrap();
        let primary = Arc::new(LocalBackend::open(dir.path().join("p")).unwrap());
        let copy = Arc::new(LocalBackend::open(dir.path().join("m")).unwrap());
        let pack = Bytes::from_static(b"pack bytes");
        let name = format!("packs/xx/{}", blake3::hash(&pack).to_hex());
        primary.put(&name, pack.clone()).await.unwrap();
        primary.put("segments/00000000000000000001-00000000000000000007", Bytes::from_static(b"seg")).await.unwrap();
        copy.put(&name, pack).await.unwrap();
        let mirror = Mirror::new(1, "m".into(), copy.clone(), copy.clone());
        let s = status(&mirror, primary.as_ref()).await.unwrap();
        assert_eq!((s.missing_objects, s.missing_bytes, s.missing_segments, s.missing_packs), (1, 3, 1, 0));
        assert_eq!((s.primary_position, s.mirror_position), (7, 0));

        let check = verify(&mirror, Some(primary.as_ref()), true, &|_, _| {}).await.unwrap();
        assert!(check.damaged.is_empty() && check.missing.len() == 1, "{check:?}");
        std::fs::write(dir.path().join("m").join(&name), b"pack bytez").unwrap();
        let check = verify(&mirror, Some(primary.as_ref()), true, &|_, _| {}).await.unwrap();
        let damaged: Vec<&String> = check.damaged.iter().map(|(n, _)| n).collect();
        assert_eq!(damaged, [&name]);
        assert_eq!(repair(&mirror, primary.as_ref(), std::slice::from_ref(&name)).await.unwrap(), 1);
        let check = verify(&mirror, Some(primary.as_ref()), true, &|_, _| {}).await.unwrap();
        assert!(check.damaged.is_empty(), "{check:?}");
    }
}

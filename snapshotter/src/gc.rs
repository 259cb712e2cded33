//! Garbage collection's mark, as a plan: which vault packs hold nothing any kept version or
//! upload in progress needs (and so could be deleted once the grace period has passed),
//! which hold some dead chunks among live ones (to repack), and how many bytes are chunks
//! that no version references at all (uploads cut, refused or aborted: review finding F12).
//!
//! A chunk is live when a version the retention policy keeps uses it, or a multipart upload
//! in progress captured it. Nothing here deletes.

use std::collections::{BTreeMap, HashSet};

use rewind_config::RetentionConfig;
use rewind_journal::{Journal, layout};
use rewind_model::{ChunkId, ObjectVersion};
use rewind_vault::ChunkLocation;

use crate::HistoryError;
use crate::api::{GcPlan, time_text};
use crate::retention::{Assessment, assess};

/// What a pack holds, by the state of its chunks.
#[derive(Default)]
struct PackUse {
    live: u64,
    expired: u64,
    unreferenced: u64,
}

/// The mark of a GC at `now_us` under `retention`: `packs` are the vault's pack objects
/// (as chunk locations name them).
pub fn plan(
    journal: &Journal,
    retention: &RetentionConfig,
    now_us: i64,
    packs: &[String],
) -> Result<GcPlan, HistoryError> {
    let Assessment { kept_chunks, expired_chunks, .. } = assess(journal, retention, now_us)?;
    let mut live: HashSet<ChunkId> = kept_chunks;
    for (_, value) in journal.progress_scan(layout::UPLOADS)? {
        // Templates and parts are object versions; a part's chunks are live until its upload
        // completes (then a version holds them) or is aborted.
        if let Ok(part) = ObjectVersion::decode(&value) {
            live.extend(part.chunks);
        }
    }
    let expired: HashSet<ChunkId> = expired_chunks.into_values().flatten().collect();
    let mut by_pack: BTreeMap<String, PackUse> = BTreeMap::new();
    let mut bad = None;
    journal.for_each_chunk(|id, value| {
        let id = ChunkId(*id);
        match ChunkLocation::decode(id, value) {
            Ok(location) => {
                let bytes = u64::from(location.entry.stored_len);
                let pack = by_pack.entry(location.pack).or_default();
                if live.contains(&id) {
                    pack.live += bytes;
                } else if expired.contains(&id) {
                    pack.expired += bytes;
                } else {
                    pack.unreferenced += bytes;
                }
            }
            Err(source) => bad = Some(source),
        }
    })?;
    if let Some(source) = bad {
        return Err(HistoryError::Vault { what: "a chunk index entry does not decode", source });
    }
    let mut plan = GcPlan { at: time_text(now_us), packs: packs.len() as u64, ..GcPlan::default() };
    for usage in by_pack.values() {
        let dead = usage.expired + usage.unreferenced;
        plan.bytes_live += usage.live;
        plan.bytes_expired += usage.expired;
        plan.bytes_unreferenced += usage.unreferenced;
        if usage.live == 0 {
            plan.packs_dead += 1;
            plan.bytes_in_dead_packs += dead;
        } else if dead > 0 {
            plan.packs_partly_dead += 1;
            plan.bytes_dead_in_live_packs += dead;
        }
    }
    let indexed: HashSet<&str> = by_pack.keys().map(String::as_str).collect();
    plan.packs_unindexed = packs.iter().filter(|p| !indexed.contains(p.as_str())).count() as u64;
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rewind_crypto::{KeySet, SecretKey};
    use rewind_journal::{Access, Durability, MemoryEngine, Progress};
    use rewind_model::{Body, Commit, Effect, Intent, Op, Seq};
    use rewind_vault::PackEntry;

    use super::*;

    fn version(chunks: Vec<ChunkId>) -> ObjectVersion {
        ObjectVersion {
            size: 1,
            blake3: [0; 32],
            chunks,
            etag: "e".into(),
            version_id: None,
            headers: Vec::new(),
            metadata: Vec::new(),
            tags: Vec::new(),
        }
    }

    async fn put(j: &Journal, key: &str, chunks: Vec<ChunkId>) -> Seq {
        let intent =
            Intent { op: Op::Put, bucket: "b".into(), key: key.into(), access_key: "A".into(), request_id: "r".into() };
        let i = j.append(Body::Intent(intent), Durability::Buffered).await.unwrap();
        let effect = Effect::Version(version(chunks));
        let commit = Commit { intent: i.seq, bucket: "b".into(), key: key.into(), effect };
        j.append(Body::Commit(commit), Durability::Synced).await.unwrap().seq
    }

    /// Every class of chunk and pack: a pack only an expired version uses, a live one, a
    /// pack holding an upload's part beside a chunk nothing references, a pack of nothing
    /// referenced (a cut upload), and a pack the index does not name.
    #[tokio::test]
    async fn the_mark_sorts_packs_by_what_still_needs_them() {
        let keys = Arc::new(KeySet::derive(&SecretKey::generate().unwrap()));
        let j = Journal::over(Arc::new(MemoryEngine::new()), keys, Access::ReadWrite).unwrap();
        let c = |n: u8| ChunkId([n; 32]);
        put(&j, "k", vec![c(1)]).await;
        put(&j, "k", vec![c(2)]).await;
        let upload = layout::upload_prefix("b", "big", "u1");
        j.progress(vec![Progress::Put(layout::upload_part(&upload, 1), version(vec![c(3)]).encode())]).await.unwrap();
        let index = |id: u8, pack: &str| {
            let entry =
                PackEntry { id: c(id), offset: 0, stored_len: 100 * u32::from(id), raw_len: 1, compressed: false };
            (c(id).0, ChunkLocation { pack: pack.into(), entry }.encode())
        };
        j.chunk_put_all(vec![index(1, "A"), index(2, "B"), index(3, "C"), index(4, "C"), index(5, "D")]).await.unwrap();
        let packs: Vec<String> = ["A", "B", "C", "D", "E"].map(String::from).to_vec();
        let now = j.head().unwrap().timestamp_us;

        let only_now =
            RetentionConfig { keep_all_within: rewind_config::HumanDuration::secs(0), ..RetentionConfig::default() };
        let p = plan(&j, &only_now, now, &packs).unwrap();
        assert_eq!((p.packs, p.packs_dead, p.bytes_in_dead_packs), (5, 2, 100 + 500), "A (expired) and D (nothing)");
        assert_eq!((p.packs_partly_dead, p.bytes_dead_in_live_packs), (1, 400), "C: a live part beside an orphan");
        assert_eq!((p.bytes_live, p.bytes_expired, p.bytes_unreferenced), (200 + 300, 100, 400 + 500));
        assert_eq!(p.packs_unindexed, 1);

        // Within the default 30 days, the first version is kept: only the orphans are dead.
        let p = plan(&j, &RetentionConfig::default(), now, &packs).unwrap();
        assert_eq!((p.packs_dead, p.bytes_expired, p.bytes_live), (1, 0, 100 + 200 + 300));
    }
}

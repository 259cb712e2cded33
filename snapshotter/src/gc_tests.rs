use std::sync::Arc;

use rewind_crypto::{KeySet, SecretKey};
use rewind_journal::{Access, Durability, MemoryEngine, Progress};
use rewind_model::{Body, Commit, Effect, Intent, Op, Seq};
use rewind_vault::PackEntry;

use super::*;

fn version(chunks: Vec<ChunkId>) -> ObjectVersion {
    ObjectVersion::of_content(1, [0; 32], chunks, "e")
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
        let entry = PackEntry { id: c(id), offset: 0, stored_len: 100 * u32::from(id), raw_len: 1, compressed: false };
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

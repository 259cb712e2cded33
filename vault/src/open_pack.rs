//! What a vault has stored but not yet indexed: the pack being filled, packs not yet
//! durable, packs durable but not yet indexed, and the packs indexed most recently, so a
//! writer can decide dedup without a second index read.

use std::collections::{HashSet, VecDeque};

use rewind_model::ChunkId;

use crate::budget::Charge;
use crate::pack::PackBuilder;

/// A finished pack that is not yet indexed.
pub(crate) struct Unsynced {
    /// The pack; its bytes are let go once it is written.
    pub(crate) pack: crate::Pack,
    pub(crate) ids: HashSet<ChunkId>,
    /// The budget charges of its chunks, released once it is written.
    pub(crate) charges: Vec<Charge>,
    /// Durable in the backend: only its index entries are still to come.
    pub(crate) written: bool,
}

/// Chunks stored but not yet indexed: the pack being filled, finished packs not yet written
/// (their upload failed or is under way; the next sync retries, and succeeds only once they
/// are all written), and written packs whose index entries are still to come (see
/// `Vault::unindexed`).
#[derive(Default)]
pub(crate) struct OpenPack {
    /// The pack being filled, from its first chunk on.
    pub(crate) builder: Option<PackBuilder>,
    pub(crate) ids: HashSet<ChunkId>,
    pub(crate) charges: Vec<Charge>,
    pub(crate) unsynced: Vec<Unsynced>,
    /// Packs that have left `unsynced` (indexed), counted.
    pub(crate) retired: u64,
    /// The chunks of the last [`RECENT_PACKS`] retired packs, newest last, with their count.
    recent: VecDeque<(u64, HashSet<ChunkId>)>,
    /// The buffer of the last pack made durable, for the next [`PackBuilder`].
    pub(crate) spare: Option<bytes::BytesMut>,
}

/// Retired packs whose chunks a writer can still check without the index: enough for the
/// packs other writers retire while one seals a chunk.
const RECENT_PACKS: usize = 64;

impl OpenPack {
    pub(crate) fn holds(&self, id: &ChunkId) -> bool {
        self.ids.contains(id) || self.unsynced.iter().any(|u| u.ids.contains(id))
    }

    /// Whether a pack retired since `seen` (a value of `retired`) holds `id`; `None` when
    /// too many have retired since to say.
    pub(crate) fn retired_since(&self, seen: u64, id: &ChunkId) -> Option<bool> {
        if self.retired == seen {
            return Some(false);
        }
        let oldest = self.recent.front().map_or(u64::MAX, |(n, _)| *n);
        if oldest > seen + 1 {
            return None;
        }
        Some(self.recent.iter().any(|(n, ids)| *n > seen && ids.contains(id)))
    }

    /// Moves the pack named `name` from `unsynced` to `recent`: it is indexed now.
    pub(crate) fn retire(&mut self, name: &str) {
        let Some(i) = self.unsynced.iter().position(|u| u.pack.name == name) else { return };
        let Unsynced { ids, .. } = self.unsynced.remove(i);
        self.retired += 1;
        if self.recent.len() == RECENT_PACKS {
            self.recent.pop_front();
        }
        self.recent.push_back((self.retired, ids));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unsynced(open: &mut OpenPack, name: &str, ids: &[u8]) {
        let body = crate::pack::Body::Memory(bytes::Bytes::new());
        let pack = crate::Pack { name: name.into(), size: 0, body, entries: Vec::new() };
        let ids = ids.iter().map(|b| ChunkId([*b; 32])).collect();
        open.unsynced.push(Unsynced { pack, ids, charges: Vec::new(), written: false });
    }

    #[test]
    fn a_writer_sees_what_retired_while_it_sealed_without_the_index() {
        let mut open = OpenPack::default();
        unsynced(&mut open, "a", &[1]);
        open.retire("a");
        let seen = open.retired;
        assert_eq!(open.retired_since(seen, &ChunkId([1; 32])), Some(false), "retired before: the index's to say");
        unsynced(&mut open, "b", &[2, 3]);
        assert!(open.holds(&ChunkId([2; 32])));
        open.retire("b");
        assert!(!open.holds(&ChunkId([2; 32])));
        assert_eq!(open.retired_since(seen, &ChunkId([2; 32])), Some(true), "retired meanwhile: found");
        assert_eq!(open.retired_since(seen, &ChunkId([4; 32])), Some(false));
        open.retire("no such pack");
        assert_eq!(open.retired, seen + 1, "only packs that were unsynced retire");
    }

    #[test]
    fn too_many_retired_packs_send_the_writer_to_the_index() {
        let mut open = OpenPack::default();
        let seen = open.retired;
        for i in 0..=RECENT_PACKS {
            let name = format!("p{i}");
            unsynced(&mut open, &name, &[i as u8]);
            open.retire(&name);
        }
        assert_eq!(open.recent.len(), RECENT_PACKS, "the recent list is bounded");
        assert_eq!(open.retired_since(seen, &ChunkId([1; 32])), None, "the first packs are forgotten");
        assert_eq!(open.retired_since(seen + 1, &ChunkId([1; 32])), Some(true));
    }
}

//! Making stored chunks durable: a flush seals the pack being filled and writes every
//! pack not yet written, in order, then indexes them (or leaves that to a journal write
//! that carries their index entries). A pack in memory is put; a spooled one (a local
//! vault's, filled in a file) is linked into place, and when that fails it goes again from
//! a copy read back, never by a second fsync of the same file.

use bytes::{Bytes, BytesMut};

use crate::backend::Spool;
use crate::open_pack::Unsynced;
use crate::pack::{Body, PackBuilder};
use crate::store::{WrittenPack, pack_location};
use crate::{Backend, Vault, VaultError};

impl Vault {
    /// Makes every chunk stored so far durable, and indexed.
    ///
    /// Flushes take turns; each seals the filling pack and uploads, in order, every pack not
    /// yet written, outside the lock writers use, then indexes every written pack. Only
    /// flushes and [`Vault::indexed`] remove packs from the unsynced list, so when this
    /// returns, everything stored before the call is durable and indexed.
    pub async fn sync(&self) -> Result<(), VaultError> {
        let _turn = self.flushing.lock().await;
        self.write_unsynced().await?;
        for pack in self.unindexed() {
            // Indexed before it leaves the unsynced list, so a chunk is always in one or
            // the other; the index's synced write runs under no lock.
            self.index().insert_pack(&pack.location, &pack.entries).await?;
            self.lock_open().retire(pack.content_name());
        }
        Ok(())
    }

    /// Makes every chunk stored so far durable in the backend, leaving the index entries
    /// of the packs it wrote to a journal write that carries them (see
    /// [`Vault::unindexed`]): one synced index write fewer for a writer that journals
    /// anyway. The packs stay in the unsynced list meanwhile, so writers and garbage
    /// collection still see them.
    pub async fn sync_unindexed(&self) -> Result<(), VaultError> {
        let _turn = self.flushing.lock().await;
        self.write_unsynced().await
    }

    /// Seals the filling pack and writes every pack not yet written, in order. Called on a
    /// flush's turn.
    async fn write_unsynced(&self) -> Result<(), VaultError> {
        let pending: Vec<(String, Body)> = {
            let mut open = self.lock_open();
            if let Some(builder) = open.builder.take_if(|b| !b.is_empty()) {
                let pack = match builder.finish(self.keys()) {
                    Ok(pack) => pack,
                    // Its chunks stay in the open pack for the next sync.
                    Err((builder, e)) => {
                        open.builder = Some(builder);
                        return Err(e);
                    }
                };
                let ids = std::mem::take(&mut open.ids);
                let charges = std::mem::take(&mut open.charges);
                open.unsynced.push(Unsynced { pack, ids, charges, written: false });
            }
            // Each pack's body leaves the list while it is written (flushes take turns, so
            // no other takes it) and comes back if that fails.
            let unwritten = open.unsynced.iter_mut().filter(|u| !u.written);
            unwritten.map(|u| (u.pack.name.clone(), u.pack.take_body())).collect()
        };
        let mut pending = pending.into_iter();
        while let Some((content_name, body)) = pending.next() {
            let outcome = self.write_pack(&content_name, body).await;
            let mut open = self.lock_open();
            let Some(u) = open.unsynced.iter_mut().find(|u| u.pack.name == content_name) else { continue };
            let kept = match outcome {
                Ok(kept) => kept,
                // The pack stays unwritten for the next sync; nothing depending on it is
                // acknowledged, since this sync fails.
                Err((body, e)) => {
                    u.pack.body = body;
                    for (name, body) in pending {
                        if let Some(u) = open.unsynced.iter_mut().find(|u| u.pack.name == name) {
                            u.pack.body = body;
                        }
                    }
                    return Err(e);
                }
            };
            u.written = true;
            let (size, charges) = (u.pack.size, std::mem::take(&mut u.charges));
            // Nothing else holds a written pack's bytes: its buffer is reused.
            if let Some(buffer) = kept.and_then(|b| b.try_into_mut().ok()) {
                open.spare = Some(buffer);
            }
            drop(open);
            drop(charges);
            self.count(|s| s.stored_bytes += size);
        }
        Ok(())
    }

    /// Makes one finished pack durable in the backend: puts its bytes, or finishes its
    /// spool. Returns the bytes put, for their buffer's reuse; on failure, the body to
    /// write it from next time.
    pub(crate) async fn write_pack(&self, content_name: &str, body: Body) -> Result<Option<Bytes>, (Body, VaultError)> {
        let location = pack_location(content_name);
        // `AlreadyExists`: the same bytes under their content name, already durable.
        match body {
            Body::Memory(bytes) => match self.backend().put(&location, bytes.clone()).await {
                Ok(()) | Err(VaultError::AlreadyExists { .. }) => Ok(Some(bytes)),
                Err(e) => Err((Body::Memory(bytes), e)),
            },
            Body::Spooled(mut spool) => {
                let name = content_name.to_owned();
                let finish = move || match spool.finish(&location) {
                    Ok(()) | Err(VaultError::AlreadyExists { .. }) => Ok(None),
                    // A failed fsync may have dropped the pages it could not write, and a
                    // second would not say so: the bytes go again, from a copy read back
                    // and checked against the pack's name.
                    Err(e) => Err((recover(spool, &name), e)),
                };
                tokio::task::spawn_blocking(finish).await.expect("invariant: finishing a spool does not panic")
            }
            Body::Lost => Err((Body::Lost, lost(content_name))),
        }
    }

    /// The packs written to the backend whose chunks are not yet indexed. A journal write
    /// that references chunks stored with [`ObjectWriter::finish_written`] carries these
    /// packs' index entries (every such pack, not only its own: it may have found its
    /// chunks in another writer's), then calls [`Vault::indexed`] once it is durable.
    pub fn unindexed(&self) -> Vec<WrittenPack> {
        let open = self.lock_open();
        let written = open.unsynced.iter().filter(|u| u.written);
        written
            .map(|u| WrittenPack { location: pack_location(&u.pack.name), entries: u.pack.entries.clone() })
            .collect()
    }

    /// Says that `packs` (from [`Vault::unindexed`]) are durably indexed now.
    pub fn indexed(&self, packs: &[WrittenPack]) {
        let mut open = self.lock_open();
        for pack in packs {
            open.retire(pack.content_name());
        }
    }
}

/// The builder of the next pack: into a spool of the backend's when it has them, else into
/// a buffer (`spare`, the last written pack's, when there is one: its pages are mapped).
pub(crate) fn next_builder(backend: &dyn Backend, spare: Option<BytesMut>) -> PackBuilder {
    match backend.spool().and_then(|spool| spool.map(PackBuilder::spooled).transpose()) {
        Ok(Some(builder)) => builder,
        Ok(None) => PackBuilder::reusing(spare),
        Err(e) => {
            tracing::warn!(error = %e, "cannot start a pack file in the vault; filling this pack in memory");
            PackBuilder::reusing(spare)
        }
    }
}

/// A copy of a spool's bytes, read back after finishing it failed, if they are the pack
/// named `name` (the hash of its bytes); else the pack is lost.
fn recover(mut spool: Box<dyn Spool>, name: &str) -> Body {
    match spool.read_all() {
        Ok(bytes) if blake3::hash(&bytes).to_hex().as_str() == name => Body::Memory(Bytes::from(bytes)),
        Ok(_) => {
            tracing::error!(pack = name, "a pack file read back after a failed write does not match its name");
            Body::Lost
        }
        Err(e) => {
            tracing::error!(pack = name, error = %e, "cannot read back a pack file after a failed write");
            Body::Lost
        }
    }
}

/// The error of every sync once a pack's bytes are lost.
fn lost(name: &str) -> VaultError {
    VaultError::Corrupt {
        what: format!("pack {name}"),
        detail: "the vault's disk failed to store it and its bytes could not be read back; restart the gateway \
                 (no write that needed it was acknowledged)"
            .into(),
    }
}

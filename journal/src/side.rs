//! The journal's side tables: snapshot labels, legal holds, (views: `views.rs`), unresolved intents, the vault's chunk index,
//! and work in progress (multipart uploads, reconcile resume points). Every change goes
//! through the writer like a record does.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rewind_crypto::{KeySet, aead};
use rewind_model::Seq;

use crate::engine::{EngineExt, Table, Write};
use crate::writer::View;
use crate::{ChunkSwap, Journal, JournalError, Progress, ProgressEntry, Record, layout, segment};

impl Journal {
    /// Names `seq` (a named restore point), durably; `false` if the name is taken.
    pub async fn label_put(&self, name: &str, seq: Seq) -> Result<bool, JournalError> {
        let (key, value) = (layout::label_key(name), layout::label_value(seq, self.now()));
        self.meta_change_if(key.clone(), false, Write::Put(Table::Meta, key, value)).await
    }

    /// The id of the vault this journal belongs to, as first recorded.
    pub fn vault_id(&self) -> Result<Option<String>, JournalError> {
        let stored = self.engine.get(Table::Meta, layout::VAULT_ID_KEY)?;
        Ok(stored.map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Records that this journal belongs to vault `id`, unless it already names one;
    /// returns the id it names now. A journal database handed to the gateways of another
    /// installation is then refused (see `capture::open`).
    pub async fn claim_vault_id(&self, id: &str) -> Result<String, JournalError> {
        let key = layout::VAULT_ID_KEY.to_vec();
        self.meta_change_if(key.clone(), false, Write::Put(Table::Meta, key, id.as_bytes().to_vec())).await?;
        self.vault_id()?.ok_or_else(|| JournalError::Corrupt { seq: Seq(0), detail: "the vault id vanished".into() })
    }

    /// Removes a label; `false` if there was none.
    pub async fn label_delete(&self, name: &str) -> Result<bool, JournalError> {
        let key = layout::label_key(name);
        self.meta_change_if(key.clone(), true, Write::Delete(Table::Meta, key)).await
    }

    /// Every label: name, seq, and when it was made (µs since the epoch), by name.
    pub fn labels(&self) -> Result<Vec<(String, Seq, i64)>, JournalError> {
        let mut out = Vec::new();
        self.engine.scan_prefix(Table::Meta, layout::LABEL_PREFIX, &mut |k, v| {
            let (seq, created) = layout::parse_label(v)
                .ok_or_else(|| JournalError::Corrupt { seq: Seq(0), detail: "malformed label".into() })?;
            out.push((String::from_utf8_lossy(&k[layout::LABEL_PREFIX.len()..]).into_owned(), seq, created));
            Ok(())
        })?;
        Ok(out)
    }

    /// Restores labels shipped from another journal (a rebuild from the vault) with their
    /// creation times; those naming a record past this journal's head are left out (their
    /// records were lost with the host). Returns how many were kept.
    pub async fn import_labels(&self, labels: &[(String, Seq, i64)]) -> Result<usize, JournalError> {
        let head = self.head()?.seq;
        let writes: Vec<Write> = labels
            .iter()
            .filter(|(_, seq, _)| *seq <= head)
            .map(|(name, seq, created)| {
                Write::Put(Table::Meta, layout::label_key(name), layout::label_value(*seq, *created))
            })
            .collect();
        let kept = writes.len();
        self.change(Box::new(move |_| Ok(writes))).await?;
        Ok(kept)
    }

    /// Places a legal hold on `bucket`: on one key when `exact`, else on every key under
    /// the prefix `scope` (all of the bucket for ""); `false` if that hold exists.
    pub async fn hold_put(&self, bucket: &str, scope: &str, exact: bool, reason: &str) -> Result<bool, JournalError> {
        let (key, value) = (layout::hold_key(bucket, scope, exact), layout::hold_value(self.now(), reason));
        self.meta_change_if(key.clone(), false, Write::Put(Table::Meta, key, value)).await
    }

    /// Lifts a hold; `false` if there was none.
    pub async fn hold_delete(&self, bucket: &str, scope: &str, exact: bool) -> Result<bool, JournalError> {
        let key = layout::hold_key(bucket, scope, exact);
        self.meta_change_if(key.clone(), true, Write::Delete(Table::Meta, key)).await
    }

    /// Applies `write` only if the meta entry `key` is there (`present`), or is not;
    /// returns whether it did. The check and the write are one step of the writer.
    pub(crate) async fn meta_change_if(&self, key: Vec<u8>, present: bool, write: Write) -> Result<bool, JournalError> {
        let applied = Arc::new(AtomicBool::new(false));
        let flag = applied.clone();
        self.change(Box::new(move |view: &View<'_>| {
            if view.get(Table::Meta, &key)?.is_some() != present {
                return Ok(Vec::new());
            }
            flag.store(true, Ordering::SeqCst);
            Ok(vec![write])
        }))
        .await?;
        Ok(applied.load(Ordering::SeqCst))
    }

    /// Every legal hold, by bucket then scope.
    pub fn holds(&self) -> Result<Vec<segment::Hold>, JournalError> {
        let mut out = Vec::new();
        self.engine.scan_prefix(Table::Meta, layout::HOLD_PREFIX, &mut |k, v| {
            let malformed = || JournalError::Corrupt { seq: Seq(0), detail: "malformed hold".into() };
            let (bucket, scope, exact) = layout::parse_hold_key(k).ok_or_else(malformed)?;
            let created_us = i64::from_be_bytes(v.get(..8).ok_or_else(malformed)?.try_into().map_err(|_| malformed())?);
            let reason = String::from_utf8_lossy(&v[8..]).into_owned();
            out.push(segment::Hold { bucket, scope, exact, reason, created_us });
            Ok(())
        })?;
        Ok(out)
    }

    /// Restores holds shipped from another journal (a rebuild from the vault).
    pub async fn import_holds(&self, holds: &[segment::Hold]) -> Result<(), JournalError> {
        let writes: Vec<Write> = holds
            .iter()
            .map(|h| {
                let value = layout::hold_value(h.created_us, &h.reason);
                Write::Put(Table::Meta, layout::hold_key(&h.bucket, &h.scope, h.exact), value)
            })
            .collect();
        self.change(Box::new(move |_| Ok(writes))).await
    }

    /// The labels, holds and views, as they ship.
    pub fn side_set(&self) -> Result<segment::SideSet, JournalError> {
        let (labels, holds, views, exact) = (self.labels()?, self.holds()?, self.views()?, self.exact_froms()?);
        Ok(segment::SideSet { labels, holds, views, exact })
    }

    /// Seals the current labels, holds and views as shipped generation `generation`; also
    /// returns their digest.
    pub fn seal_labels(&self, generation: u64) -> Result<(Vec<u8>, [u8; 32]), JournalError> {
        let set = self.side_set()?;
        Ok((segment::seal_labels(&self.keys, generation, &set)?, set.digest()))
    }

    /// Opens a side set sealed with this journal's key: its generation and contents.
    pub fn open_labels(&self, bytes: &[u8]) -> Result<(u64, segment::SideSet), JournalError> {
        segment::open_labels(&self.keys, bytes)
    }

    /// Whether the intent at `seq` has neither a commit nor an abort yet.
    pub fn is_unresolved(&self, seq: Seq) -> Result<bool, JournalError> {
        Ok(self.engine.get(Table::Unresolved, &layout::seq_key(seq))?.is_some())
    }

    /// Intents with neither a commit nor an abort, oldest first: what a crash interrupted.
    pub fn unresolved_intents(&self) -> Result<Vec<Record>, JournalError> {
        Ok(self.unresolved_owned()?.into_iter().map(|(record, _)| record).collect())
    }

    pub(crate) fn unresolved_seqs(&self) -> Result<Vec<Seq>, JournalError> {
        let mut out = Vec::new();
        self.engine.scan(Table::Unresolved, &[], &mut |k, _| {
            out.extend(layout::open_seq(k));
            true
        })?;
        Ok(out)
    }

    /// Looks a chunk up in the vault's chunk index (values are the vault's encoding).
    pub fn chunk_get(&self, id: &[u8; 32]) -> Result<Option<Vec<u8>>, JournalError> {
        Ok(self.engine.get(Table::Chunks, id)?)
    }

    /// Calls `f` with every chunk index entry (id, value), in id order.
    pub fn for_each_chunk(&self, mut f: impl FnMut(&[u8; 32], &[u8])) -> Result<(), JournalError> {
        self.engine.scan(Table::Chunks, &[], &mut |k, v| {
            if let Ok(id) = <&[u8; 32]>::try_from(k) {
                f(id, v);
            }
            true
        })?;
        Ok(())
    }

    /// Adds chunk index entries durably, keeping existing ones.
    pub async fn chunk_put_all(&self, entries: Vec<([u8; 32], Vec<u8>)>) -> Result<(), JournalError> {
        self.change(Box::new(move |view: &View<'_>| {
            let mut writes = Vec::with_capacity(entries.len());
            chunk_puts(view, entries, &mut writes)?;
            Ok(writes)
        }))
        .await
    }

    /// Replaces (`Some`) or removes (`None`) chunk index entries that still hold the
    /// expected value, durably and at once; entries that changed meanwhile are left alone.
    /// Returns how many changed. Garbage collection's step: it never touches an entry it
    /// did not read.
    pub async fn chunk_swap(&self, swaps: Vec<ChunkSwap>) -> Result<usize, JournalError> {
        let changed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = changed.clone();
        self.change(Box::new(move |view: &View<'_>| {
            let mut writes = Vec::with_capacity(swaps.len());
            for ChunkSwap { id, expected, new } in swaps {
                if view.get(Table::Chunks, &id)?.as_deref() != Some(expected.as_slice()) {
                    continue;
                }
                writes.push(match new {
                    Some(value) => Write::Put(Table::Chunks, id.to_vec(), value),
                    None => Write::Delete(Table::Chunks, id.to_vec()),
                });
            }
            count.store(writes.len(), Ordering::Release);
            Ok(writes)
        }))
        .await?;
        Ok(changed.load(Ordering::Acquire))
    }

    /// Changes work-in-progress state durably (see [`Progress`]).
    pub async fn progress(&self, changes: Vec<Progress>) -> Result<(), JournalError> {
        let keys = self.keys.clone();
        self.change(Box::new(move |view| progress_writes(&keys, view, changes))).await
    }

    /// Every work-in-progress entry whose key starts with `prefix`, decrypted, in key order.
    pub fn progress_scan(&self, prefix: &[u8]) -> Result<Vec<ProgressEntry>, JournalError> {
        let mut out = Vec::new();
        self.engine.scan_prefix(Table::Progress, prefix, &mut |k, v| {
            out.push((k.to_vec(), open_progress(&self.keys, k, v)?));
            Ok(())
        })?;
        Ok(out)
    }

    /// One work-in-progress entry, decrypted.
    pub fn progress_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, JournalError> {
        match self.engine.get(Table::Progress, key)? {
            Some(v) => open_progress(&self.keys, key, &v).map(Some),
            None => Ok(None),
        }
    }
}

const PROGRESS_V1: &[u8] = b"rewind pending v1 ";
const PROGRESS_V2: &[u8] = b"rewind pending v2 ";

fn progress_aad(version: &[u8], key: &[u8]) -> Vec<u8> {
    [version, key].concat()
}

/// The writes `changes` make, as of `view`.
pub(crate) fn progress_writes(
    keys: &KeySet,
    view: &View<'_>,
    changes: Vec<Progress>,
) -> Result<Vec<Write>, JournalError> {
    let mut writes = Vec::new();
    for change in changes {
        match change {
            Progress::Put(key, value) => {
                let sealed = aead::seal(&keys.pending_key(&key), &progress_aad(PROGRESS_V2, &key), &value)?;
                writes.push(Write::Put(Table::Progress, key, sealed));
            }
            Progress::Remove(key) => writes.push(Write::Delete(Table::Progress, key)),
            Progress::RemovePrefix(prefix) => {
                for key in view.keys_with_prefix(Table::Progress, &prefix)? {
                    writes.push(Write::Delete(Table::Progress, key));
                }
            }
            Progress::IndexChunks(entries) => chunk_puts(view, entries, &mut writes)?,
        }
    }
    Ok(writes)
}

/// Adds to `writes` the chunk index entries of `entries` that `view` lacks. An entry the
/// batch already wrote counts as existing: many commits of one batch may carry one pack's.
fn chunk_puts(view: &View<'_>, entries: Vec<([u8; 32], Vec<u8>)>, writes: &mut Vec<Write>) -> Result<(), JournalError> {
    let mut added = std::collections::HashSet::new();
    for (id, location) in entries {
        if !added.contains(&id) && view.get(Table::Chunks, &id)?.is_none() {
            added.insert(id);
            writes.push(Write::Put(Table::Chunks, id.to_vec(), location));
        }
    }
    Ok(())
}

/// Decrypts a work-in-progress entry. Entries written before per-entry keys open with the
/// journal key.
fn open_progress(keys: &KeySet, key: &[u8], sealed: &[u8]) -> Result<Vec<u8>, JournalError> {
    aead::open(&keys.pending_key(key), &progress_aad(PROGRESS_V2, key), sealed, "pending journal state")
        .or_else(|_| {
            aead::open(keys.journal.expose(), &progress_aad(PROGRESS_V1, key), sealed, "pending journal state")
        })
        .map_err(|e| JournalError::Corrupt { seq: Seq(0), detail: e.to_string() })
}

//! Removing expired records (retention's `forget`), and what reads the journal needs to
//! know of it: the sealed [`Horizon`].

use std::collections::BTreeSet;

use rewind_model::{Body, Seq};

use crate::engine::{EngineExt, Table, Write};
use crate::horizon::{Horizon, RetainedDigest};
use crate::writer::View;
use crate::{Journal, JournalError, layout, record};

impl Journal {
    /// The first position of `bucket` whose state `forget` left whole (no removed entry
    /// shaped it), if `forget` removed any of the bucket's entries.
    pub fn exact_from(&self, bucket: &str) -> Result<Option<Seq>, JournalError> {
        Ok(self.engine.get(Table::Meta, &layout::exact_key(bucket))?.as_deref().and_then(layout::seq_of))
    }

    /// Every bucket's [`Journal::exact_from`], by bucket.
    pub fn exact_froms(&self) -> Result<Vec<(String, Seq)>, JournalError> {
        let mut out = Vec::new();
        self.engine.scan_prefix(Table::Meta, layout::EXACT_PREFIX, &mut |k, v| {
            let bucket = String::from_utf8_lossy(&k[layout::EXACT_PREFIX.len()..]).into_owned();
            let seq = layout::seq_of(v)
                .ok_or_else(|| JournalError::Corrupt { seq: Seq(0), detail: "malformed exact-from entry".into() })?;
            out.push((bucket, seq));
            Ok(())
        })?;
        Ok(out)
    }

    /// Raises [`Journal::exact_from`] of `bucket` to `seq` (never lowers it), durably.
    pub async fn raise_exact_from(&self, bucket: &str, seq: Seq) -> Result<(), JournalError> {
        let key = layout::exact_key(bucket);
        self.change(Box::new(move |view: &View<'_>| {
            let now = view.get(Table::Meta, &key)?.as_deref().and_then(layout::seq_of);
            Ok(if now.is_some_and(|n| n >= seq) {
                Vec::new()
            } else {
                vec![Write::Put(Table::Meta, key, seq.0.to_be_bytes().to_vec())]
            })
        }))
        .await
    }

    /// The horizon of the last `forget`, if any removed records; its MAC is checked.
    pub fn horizon(&self) -> Result<Option<Horizon>, JournalError> {
        match self.engine.get(Table::Meta, layout::HORIZON_KEY)? {
            Some(bytes) => Horizon::open(&self.keys, &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// What the horizon after removing `remove` (records at or before `upto`) would say:
    /// the digest of the records left at or before `upto`, and the hash record `upto` had.
    /// `segment` is the hash of the vault segment ending at `upto`.
    pub fn horizon_after(&self, remove: &BTreeSet<Seq>, upto: Seq, segment: [u8; 32]) -> Result<Horizon, JournalError> {
        let before = self.horizon()?;
        let mut digest = RetainedDigest::default();
        let mut upto_hash = before.filter(|h| h.seq == upto).map(|h| h.hash);
        self.engine.scan(Table::Records, &[], &mut |k, v| {
            let Some(seq) = layout::seq_of(k).filter(|s| *s <= upto) else { return false };
            let hash = *blake3::hash(v).as_bytes();
            if seq == upto {
                upto_hash = Some(hash);
            }
            if !remove.contains(&seq) {
                digest.add(seq, &hash);
            }
            true
        })?;
        let hash = upto_hash.ok_or_else(|| JournalError::Corrupt {
            seq: upto,
            detail: "the horizon's record is missing and no earlier horizon names it".into(),
        })?;
        let removed = before.map_or(0, |h| h.removed) + remove.len() as u64;
        Ok(Horizon { seq: upto, hash, retained: digest.finish(), removed, segment })
    }

    /// Removes the records at `remove` (every one at or before `horizon.seq`, none an
    /// unresolved intent), their index entries and checkpoints, and stores `horizon` (from
    /// [`Journal::horizon_after`]), durably and at once.
    ///
    /// `whole` raises, in the same batch, each bucket's first whole position
    /// ([`Journal::exact_from`]): the removal and the record of what it cost land together.
    pub async fn forget(
        &self,
        remove: BTreeSet<Seq>,
        horizon: Horizon,
        whole: Vec<(String, Seq)>,
    ) -> Result<(), JournalError> {
        let keys = self.keys.clone();
        self.change(Box::new(move |view: &View<'_>| {
            let mut writes = Vec::with_capacity(remove.len() * 3 + 1 + whole.len());
            for (bucket, seq) in whole {
                let key = layout::exact_key(&bucket);
                if view.get(Table::Meta, &key)?.as_deref().and_then(layout::seq_of).is_none_or(|now| now < seq) {
                    writes.push(Write::Put(Table::Meta, key, seq.0.to_be_bytes().to_vec()));
                }
            }
            for seq in remove {
                if seq > horizon.seq {
                    return Err(JournalError::Corrupt { seq, detail: "forget: a record past the horizon".into() });
                }
                let key = layout::seq_key(seq).to_vec();
                let Some(bytes) = view.get(Table::Records, &key)? else { continue };
                let r = record::decode(&keys, seq, &bytes)?;
                if matches!(r.body, Body::Intent(_)) && view.get(Table::Unresolved, &key)?.is_some() {
                    return Err(JournalError::Corrupt { seq, detail: "forget: an unresolved intent".into() });
                }
                if let Some((bucket, k, _)) = r.body.change() {
                    writes.push(Write::Delete(Table::Versions, layout::version_key(bucket, k, seq)));
                }
                writes.push(Write::Delete(Table::Meta, layout::checkpoint_key(seq)));
                writes.push(Write::Delete(Table::Records, key));
            }
            writes.push(Write::Put(Table::Meta, layout::HORIZON_KEY.to_vec(), horizon.seal(&keys)));
            Ok(writes)
        }))
        .await
    }
}

//! `Journal::verify`: every record, checkpoint and index entry walked, and what is wrong
//! said. Memory is bounded by the intents still unresolved, not by the journal's length.

use std::collections::BTreeSet;

use rewind_model::{Abort, Body, Commit, Effect, Seq};

use crate::engine::{EngineExt, Table};
use crate::horizon::RetainedDigest;
use crate::{Appended, GENESIS_HEAD, Journal, JournalError, layout, record};

/// What [`Journal::verify`] checked and found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checked {
    /// Records walked.
    pub records: u64,
    /// Checkpoints checked.
    pub checkpoints: u64,
    /// What is wrong (the first [`Checked::MAX_PROBLEMS`]); empty when intact.
    pub problems: Vec<String>,
    /// Problems past those listed.
    pub more: u64,
}

impl Checked {
    /// Problems listed; a journal damaged throughout is not reported line by line.
    pub const MAX_PROBLEMS: usize = 1000;

    fn problem(&mut self, text: String) {
        if self.problems.len() < Self::MAX_PROBLEMS {
            self.problems.push(text);
        } else {
            self.more += 1;
        }
    }
}

impl Journal {
    /// Walks every record, checkpoint and index entry, and says what is wrong.
    pub fn verify(&self) -> Result<Checked, JournalError> {
        let mut found = Checked::default();
        let mut prev = GENESIS_HEAD;
        let mut changes = 0u64;
        let mut open = BTreeSet::new();
        // Up to a horizon, `forget` removed records: those left are checked against its
        // digest, and the chain from the record after it on.
        let horizon = match self.horizon() {
            Ok(h) => h,
            Err(e) => {
                found.problem(e.to_string());
                None
            }
        };
        let mut retained = RetainedDigest::default();
        let mut past_horizon = horizon.is_none();
        self.engine.scan(Table::Records, &[], &mut |k, v| {
            let Some(seq) = layout::seq_of(k) else {
                found.problem("a record key is malformed".into());
                return true;
            };
            found.records += 1;
            let before_horizon = horizon.filter(|h| seq <= h.seq);
            if let Some(h) = horizon
                && !past_horizon
                && seq > h.seq
            {
                past_horizon = true;
                prev = Appended { seq: h.seq, hash: h.hash, timestamp_us: prev.timestamp_us };
            }
            let consecutive = seq.0 == prev.seq.0 + 1;
            if !consecutive && before_horizon.is_none() {
                found.problem(format!("records {} to {} are missing", prev.seq.0 + 1, seq.0.saturating_sub(1)));
            }
            match record::decode(&self.keys, seq, v) {
                Ok(r) => {
                    if r.prev_hash != prev.hash && (consecutive || before_horizon.is_none()) {
                        found.problem(format!("record {} does not chain to record {}", seq.0, prev.seq.0));
                    }
                    if before_horizon.is_some() {
                        retained.add(seq, &r.hash);
                    }
                    changes += u64::from(r.body.change().is_some());
                    match &r.body {
                        Body::Intent(_) => {
                            open.insert(seq.0);
                        }
                        Body::Commit(Commit { intent, .. }) | Body::Abort(Abort { intent, .. }) => {
                            open.remove(&intent.0);
                        }
                        _ => {}
                    }
                    prev = Appended { seq, hash: r.hash, timestamp_us: r.timestamp_us };
                }
                Err(e) => {
                    found.problem(e.to_string());
                    let hash = *blake3::hash(v).as_bytes();
                    if before_horizon.is_some() {
                        retained.add(seq, &hash);
                    }
                    prev = Appended { seq, hash, timestamp_us: prev.timestamp_us };
                }
            }
            true
        })?;
        if let Some(h) = horizon {
            if retained.finish() != h.retained {
                found.problem(format!(
                    "the records at or before the horizon (seq:{}) are not the ones forget kept: one was dropped, added or changed",
                    h.seq.0
                ));
            }
            if prev.seq < h.seq {
                prev = Appended { seq: h.seq, hash: h.hash, timestamp_us: prev.timestamp_us };
            }
        }
        let head = self.head()?;
        if head.seq != prev.seq || head.hash != prev.hash {
            found.problem(format!("the head says record {} but the last record is {}", head.seq.0, prev.seq.0));
        }
        self.verify_checkpoints(&mut found)?;
        self.verify_versions_index(changes, &mut found)?;
        let indexed: BTreeSet<u64> = self.unresolved_seqs()?.into_iter().map(|s| s.0).collect();
        if indexed != open {
            found.problem(format!(
                "the index of unresolved intents lists {} intents, the records leave {} unresolved",
                indexed.len(),
                open.len()
            ));
        }
        Ok(found)
    }

    fn verify_checkpoints(&self, found: &mut Checked) -> Result<(), JournalError> {
        let mut checkpoints = Vec::new();
        self.engine.scan_prefix(Table::Meta, layout::CHECKPOINT_PREFIX, &mut |k, v| {
            checkpoints.push((layout::seq_of(&k[layout::CHECKPOINT_PREFIX.len()..]), v.to_vec()));
            Ok(())
        })?;
        for (seq, v) in checkpoints {
            found.checkpoints += 1;
            let Some(seq) = seq else {
                found.problem("a checkpoint key is malformed".into());
                continue;
            };
            let stored = self.engine.get(Table::Records, &layout::seq_key(seq))?;
            let ok = v.len() == 64
                && stored.is_some_and(|r| blake3::hash(&r).as_bytes()[..] == v[..32])
                && record::checkpoint_mac(&self.keys, seq, v[..32].try_into().expect("invariant: 32 bytes"))[..]
                    == v[32..];
            if !ok {
                found.problem(format!("checkpoint at record {} does not verify", seq.0));
            }
        }
        Ok(())
    }

    /// Every entry of the `versions` index must point at a record that changes the bucket
    /// and key the entry names, and there must be one entry per such record: together,
    /// the index is exactly what the records say (review R3: an edited index could hide a
    /// delete or point a key at another key's version, and verify said nothing).
    ///
    /// A tag change's entry may name the version its tags apply to, and reads jump there:
    /// a named version still in the journal must be the key's last version before the tag
    /// change, with no deletion between (one forgotten since is harmless: reads then read
    /// back record by record).
    fn verify_versions_index(&self, changes: u64, found: &mut Checked) -> Result<(), JournalError> {
        let mut entries = 0u64;
        // The key being read, and its last version so far (`None` after a deletion).
        let mut current: Option<(String, String, Option<Seq>)> = None;
        self.engine.scan(Table::Versions, &[], &mut |k, v| {
            entries += 1;
            let Some((bucket, key, seq)) = layout::split_version(k) else {
                found.problem("a versions index entry is malformed".into());
                return true;
            };
            let change = self.record(seq).ok().flatten().map(|r| r.body).and_then(|b| b.into_change());
            let Some(change) = change.filter(|c| c.bucket == bucket && c.key == key) else {
                found.problem(format!(
                    "the versions index points {bucket}/{key:?} at record {}, which does not change it",
                    seq.0
                ));
                return true;
            };
            let last = match current.take() {
                Some((b, k, last)) if b == bucket && k == key => last,
                _ => None,
            };
            let (named, last) = match change.effect {
                Effect::Version(_) => (None, Some(seq)),
                Effect::Tags(_) => (layout::base_of(v), last),
                Effect::Deleted { .. } => (None, None),
                Effect::Bucket => (None, last),
            };
            if !v.is_empty() && named.is_none() {
                found.problem(format!("the versions index entry of {bucket}/{key:?} at record {} is malformed", seq.0));
            }
            if let Some(base) = named
                && last != Some(base)
                && self.record(base).ok().flatten().is_some()
            {
                found.problem(format!(
                    "the versions index says record {} retags {bucket}/{key:?} as written at record {}, \
                     which is not its last version before it",
                    seq.0, base.0
                ));
            }
            current = Some((bucket, key, last));
            true
        })?;
        if entries != changes {
            found.problem(format!("the versions index has {entries} entries for {changes} records that change a key"));
        }
        Ok(())
    }
}

//! The horizon: what retention's `forget` removed from the journal, so that the hash chain
//! stays verifiable with records missing.
//!
//! `forget` removes the records of expired versions (and their intents), all at or before
//! a position `H`, and seals a horizon: `H`, the hash record `H` had (record `H + 1`
//! chains to it), a digest of every record still held at or before `H` (its position and
//! hash), how many records were removed in all, and the hash of the vault segment that
//! ended at `H` (the next segment chains to it). The horizon is MAC'd with the checkpoint
//! key, so it cannot be forged without the vault key: `verify` checks the records up to
//! `H` against the digest (none dropped, none added, none changed: each is authenticated
//! and its hash is in the digest) and the chain from `H + 1` on as before.
//!
//! Encoding (`meta` key `horizon`, and inside a vault base object): `seq (u64 le) | record
//! hash (32) | retained digest (32) | removed (u64 le) | segment hash (32) | MAC (32)`.

use rewind_crypto::KeySet;
use rewind_model::Seq;

use crate::JournalError;

/// What `forget` removed, as sealed in the journal and the vault's base.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Horizon {
    /// Every removed record is at or before this position.
    pub seq: Seq,
    /// The hash record `seq` had when it was appended.
    pub hash: [u8; 32],
    /// [`retained_digest`] of the records still held at or before `seq`.
    pub retained: [u8; 32],
    /// Records removed, by every `forget` so far.
    pub removed: u64,
    /// The hash of the vault segment that ended at `seq`.
    pub segment: [u8; 32],
}

/// Length of an encoded horizon.
pub const ENCODED_LEN: usize = 8 + 32 + 32 + 8 + 32 + 32;

/// Accumulates the digest of retained records, in position order.
pub struct RetainedDigest(blake3::Hasher);

impl Default for RetainedDigest {
    fn default() -> Self {
        let mut h = blake3::Hasher::new();
        h.update(b"rewind retained records v1");
        Self(h)
    }
}

impl RetainedDigest {
    /// Adds the record at `seq` whose stored bytes hash to `hash`.
    pub fn add(&mut self, seq: Seq, hash: &[u8; 32]) {
        self.0.update(&seq.0.to_le_bytes());
        self.0.update(hash);
    }

    /// The digest.
    pub fn finish(&self) -> [u8; 32] {
        *self.0.finalize().as_bytes()
    }
}

fn mac(keys: &KeySet, body: &[u8]) -> [u8; 32] {
    let mut m = blake3::Hasher::new_keyed(keys.checkpoint.expose());
    m.update(b"rewind horizon v1");
    m.update(body);
    *m.finalize().as_bytes()
}

impl Horizon {
    /// The sealed encoding.
    pub fn seal(&self, keys: &KeySet) -> Vec<u8> {
        let mut out = Vec::with_capacity(ENCODED_LEN);
        out.extend_from_slice(&self.seq.0.to_le_bytes());
        out.extend_from_slice(&self.hash);
        out.extend_from_slice(&self.retained);
        out.extend_from_slice(&self.removed.to_le_bytes());
        out.extend_from_slice(&self.segment);
        let tag = mac(keys, &out);
        out.extend_from_slice(&tag);
        out
    }

    /// Opens a sealed horizon, checking its MAC (in constant time).
    pub fn open(keys: &KeySet, bytes: &[u8]) -> Result<Self, JournalError> {
        let corrupt = |detail: &str| JournalError::Corrupt { seq: Seq(0), detail: format!("horizon: {detail}") };
        if bytes.len() != ENCODED_LEN {
            return Err(corrupt("wrong length"));
        }
        let (body, tag) = bytes.split_at(ENCODED_LEN - 32);
        let tag: [u8; 32] = tag.try_into().expect("invariant: 32 bytes");
        if blake3::Hash::from(mac(keys, body)) != blake3::Hash::from(tag) {
            return Err(corrupt("its MAC does not verify with this vault's key"));
        }
        let at = |i: usize, n: usize| &body[i..i + n];
        let arr = |i: usize| -> [u8; 32] { at(i, 32).try_into().expect("invariant: 32 bytes") };
        Ok(Self {
            seq: Seq(u64::from_le_bytes(at(0, 8).try_into().expect("invariant: 8 bytes"))),
            hash: arr(8),
            retained: arr(40),
            removed: u64::from_le_bytes(at(72, 8).try_into().expect("invariant: 8 bytes")),
            segment: arr(80),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use rewind_crypto::SecretKey;

    use super::*;

    #[test]
    fn a_horizon_opens_only_unchanged_and_under_its_key() {
        let keys = KeySet::derive(&SecretKey::generate().unwrap());
        let h = Horizon { seq: Seq(42), hash: [1; 32], retained: [2; 32], removed: 7, segment: [3; 32] };
        let sealed = h.seal(&keys);
        assert_eq!(Horizon::open(&keys, &sealed).unwrap(), h);
        for i in [0, 9, 41, 73, 81, ENCODED_LEN - 1] {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert!(Horizon::open(&keys, &bad).is_err(), "byte {i} changed unnoticed");
        }
        let other = KeySet::derive(&SecretKey::generate().unwrap());
        assert!(Horizon::open(&other, &sealed).is_err());
    }
}

//! Bases: what `forget` left of the journal at or before its horizon, as one vault object
//! that replaces the shipped segments up to it. A rebuild imports the newest base, then the
//! segments after its horizon (the first of which chains to the horizon's segment hash).
//!
//! Encoding, version 1: `version (1) | sealed horizon (see horizon.rs) | envelope`, the
//! envelope (journal key; associated data: the bytes before it) holding a zstd frame of
//! `count (u32 le)` then, per record, `seq (u64 le) | length (u32 le) | the record as
//! stored`. Records are in position order, with the gaps `forget` left.

use rewind_crypto::{KeySet, aead};
use rewind_model::Seq;

use crate::horizon::{self, Horizon};
use crate::segment::RawRecords;
use crate::{Journal, JournalError};

const BASE_V1: u8 = 1;
const ZSTD_LEVEL: i32 = 9;

/// The vault object name of the base whose horizon is `seq` (sorts by position).
pub fn name(seq: Seq) -> String {
    format!("bases/{:020}", seq.0)
}

/// The horizon a base's name says, if it is one.
pub fn seq_of_name(name: &str) -> Option<Seq> {
    name.strip_prefix("bases/")?.parse().ok().map(Seq)
}

fn corrupt(detail: impl Into<String>) -> JournalError {
    JournalError::Corrupt { seq: Seq(0), detail: format!("base: {}", detail.into()) }
}

impl Journal {
    /// Seals the records left at or before `horizon` (stored bytes, in order) as a base.
    pub fn seal_base(&self, horizon: &Horizon, records: &[(Seq, Vec<u8>)]) -> Result<Vec<u8>, JournalError> {
        let mut plain = Vec::with_capacity(4 + records.iter().map(|(_, r)| 12 + r.len()).sum::<usize>());
        plain.extend_from_slice(&u32::try_from(records.len()).map_err(|_| corrupt("too many records"))?.to_le_bytes());
        for (seq, bytes) in records {
            if *seq > horizon.seq {
                return Err(corrupt(format!("record {} is past its horizon", seq.0)));
            }
            plain.extend_from_slice(&seq.0.to_le_bytes());
            plain
                .extend_from_slice(&u32::try_from(bytes.len()).map_err(|_| corrupt("record too large"))?.to_le_bytes());
            plain.extend_from_slice(bytes);
        }
        let mut out = vec![BASE_V1];
        out.extend_from_slice(&horizon.seal(&self.keys));
        let packed = zstd::bulk::compress(&plain, ZSTD_LEVEL).map_err(|e| corrupt(format!("compressing: {e}")))?;
        let envelope = aead::seal(self.keys.journal.expose(), &out, &packed)?;
        out.extend_from_slice(&envelope);
        Ok(out)
    }

    /// Opens a base sealed with this journal's key: its horizon and records. The records
    /// are checked against the horizon when imported ([`Journal::import_base`]).
    pub fn open_base(&self, bytes: &[u8]) -> Result<(Horizon, RawRecords), JournalError> {
        open(&self.keys, bytes)
    }
}

fn open(keys: &KeySet, bytes: &[u8]) -> Result<(Horizon, RawRecords), JournalError> {
    let header_len = 1 + horizon::ENCODED_LEN;
    if bytes.len() < header_len || bytes[0] != BASE_V1 {
        return Err(corrupt("unknown version or too short"));
    }
    let horizon = Horizon::open(keys, &bytes[1..header_len])?;
    let packed = aead::open(keys.journal.expose(), &bytes[..header_len], &bytes[header_len..], "journal base")?;
    let plain = zstd::stream::decode_all(packed.as_slice()).map_err(|e| corrupt(format!("decompressing: {e}")))?;
    let mut rest = plain.as_slice();
    let mut take = |n: usize| -> Result<&[u8], JournalError> {
        if rest.len() < n {
            return Err(corrupt("truncated"));
        }
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Ok(head)
    };
    let count = u32::from_le_bytes(take(4)?.try_into().expect("invariant: 4 bytes"));
    let mut records = Vec::with_capacity((count as usize).min(plain.len() / 12));
    for _ in 0..count {
        let seq = Seq(u64::from_le_bytes(take(8)?.try_into().expect("invariant: 8 bytes")));
        let len = u32::from_le_bytes(take(4)?.try_into().expect("invariant: 4 bytes")) as usize;
        records.push((seq, take(len)?.to_vec()));
    }
    if !rest.is_empty() {
        return Err(corrupt("bytes after its last record"));
    }
    Ok((horizon, records))
}

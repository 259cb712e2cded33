//! Sealed segments: runs of journal records shipped to the vault, so the journal can be
//! rebuilt from the vault alone (G7).
//!
//! Encoding, version 1: `version (1) | first seq (u64 le) | last seq (u64 le) | previous
//! segment hash (32) | envelope`. The envelope (journal key; associated data: the 49 bytes
//! before it) holds `count (u32 le)` then, per record, `seq (u64 le) | length (u32 le) |
//! the record as stored`. A segment's hash is the BLAKE3 of its whole encoding; each names
//! the previous one's, so the segments form a chain like the records do.
//!
//! A checkpoint shipped with a segment is `seq (u64 le) | record hash (32) | MAC (32)`, the
//! MAC as in the journal (`record::checkpoint_mac`).

use rewind_crypto::{KeySet, aead};
use rewind_model::Seq;

use crate::JournalError;
use crate::record::checkpoint_mac;

const SEGMENT_V1: u8 = 1;

/// Records as stored, with their positions: what a segment carries.
pub type RawRecords = Vec<(Seq, Vec<u8>)>;
const HEADER_LEN: usize = 1 + 8 + 8 + 32;

/// A sealed segment.
#[derive(Debug, Clone)]
pub struct Segment {
    /// Its first record.
    pub first: Seq,
    /// Its last record.
    pub last: Seq,
    /// The previous segment's hash (zeros for the first).
    pub prev: [u8; 32],
    /// Its encoding.
    pub bytes: Vec<u8>,
    /// BLAKE3 of `bytes`.
    pub hash: [u8; 32],
}

/// The vault object name of the segment holding `first..=last` (sorts by position).
pub fn name(first: Seq, last: Seq) -> String {
    format!("segments/{:020}-{:020}", first.0, last.0)
}

/// The vault object name of the checkpoint at `seq`.
pub fn checkpoint_name(seq: Seq) -> String {
    format!("checkpoints/{:020}", seq.0)
}

fn corrupt(detail: impl Into<String>) -> JournalError {
    JournalError::Corrupt { seq: Seq(0), detail: format!("segment: {}", detail.into()) }
}

/// Seals `records` (stored record bytes, in order, without gaps) after the segment `prev`.
pub fn seal(keys: &KeySet, records: &[(Seq, Vec<u8>)], prev: [u8; 32]) -> Result<Segment, JournalError> {
    let (Some((first, _)), Some((last, _))) = (records.first(), records.last()) else {
        return Err(corrupt("no records to seal"));
    };
    let mut header = Vec::with_capacity(HEADER_LEN);
    header.push(SEGMENT_V1);
    header.extend_from_slice(&first.0.to_le_bytes());
    header.extend_from_slice(&last.0.to_le_bytes());
    header.extend_from_slice(&prev);
    let mut plain = Vec::with_capacity(4 + records.iter().map(|(_, r)| r.len() + 12).sum::<usize>());
    plain.extend_from_slice(&u32::try_from(records.len()).map_err(|_| corrupt("too many records"))?.to_le_bytes());
    for (seq, bytes) in records {
        plain.extend_from_slice(&seq.0.to_le_bytes());
        plain.extend_from_slice(&u32::try_from(bytes.len()).map_err(|_| corrupt("record too large"))?.to_le_bytes());
        plain.extend_from_slice(bytes);
    }
    let envelope = aead::seal(keys.journal.expose(), &header, &plain)?;
    let mut bytes = header;
    bytes.extend_from_slice(&envelope);
    let hash = *blake3::hash(&bytes).as_bytes();
    Ok(Segment { first: *first, last: *last, prev, bytes, hash })
}

/// Opens a segment: its header and its records (stored bytes), checked to be the run its
/// header names. The records themselves are checked when decoded.
pub fn open(keys: &KeySet, bytes: &[u8]) -> Result<(Segment, RawRecords), JournalError> {
    if bytes.len() < HEADER_LEN || bytes[0] != SEGMENT_V1 {
        return Err(corrupt("unknown version or too short"));
    }
    let u64_at = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().expect("invariant: length checked"));
    let (first, last) = (Seq(u64_at(1)), Seq(u64_at(9)));
    let prev: [u8; 32] = bytes[17..49].try_into().expect("invariant: length checked");
    let plain = aead::open(keys.journal.expose(), &bytes[..HEADER_LEN], &bytes[HEADER_LEN..], "journal segment")?;
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
    let mut records = Vec::with_capacity(count as usize);
    for i in 0..u64::from(count) {
        let seq = Seq(u64::from_le_bytes(take(8)?.try_into().expect("invariant: 8 bytes")));
        if seq.0 != first.0 + i {
            return Err(corrupt(format!("record {} where {} was expected", seq.0, first.0 + i)));
        }
        let len = u32::from_le_bytes(take(4)?.try_into().expect("invariant: 4 bytes")) as usize;
        records.push((seq, take(len)?.to_vec()));
    }
    if records.last().map(|(s, _)| *s) != Some(last) {
        return Err(corrupt("its records do not end where its header says"));
    }
    let hash = *blake3::hash(bytes).as_bytes();
    Ok((Segment { first, last, prev, bytes: bytes.to_vec(), hash }, records))
}

/// A signed checkpoint of record `seq` whose stored bytes hash to `record_hash`.
pub fn checkpoint(keys: &KeySet, seq: Seq, record_hash: &[u8; 32]) -> Vec<u8> {
    let mut out = seq.0.to_le_bytes().to_vec();
    out.extend_from_slice(record_hash);
    out.extend_from_slice(&checkpoint_mac(keys, seq, record_hash));
    out
}

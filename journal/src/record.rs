//! Record framing: header in the clear, body encrypted and bound to the header, each
//! record chained to the previous one by hash.
//!
//! Layout (little-endian):
//! `version (1) | seq (u64) | timestamp µs (i64, gateway clock) | previous record hash (32)
//! | body envelope length (u32) | body envelope`. The envelope is AES-256-GCM with the
//! first 49 bytes as associated data, under the key of the record's epoch (`seq >> 24`,
//! `KeySet::record_key`) in version 2, under the journal key itself in version 1 (still
//! read). A record's hash is the BLAKE3 of all its bytes; the first record's previous hash
//! is all zeroes.

use rewind_crypto::{KeySet, aead};
use rewind_model::{Body, Seq};

use crate::JournalError;

const RECORD_V1: u8 = 1;
const RECORD_V2: u8 = 2;
const HEADER_LEN: usize = 1 + 8 + 8 + 32;
/// Records sealed under one epoch key: 2^24, far below the 2^32 random nonces a key takes.
const EPOCH_BITS: u32 = 24;

/// The hash that precedes the first record.
pub const GENESIS: [u8; 32] = [0; 32];

/// A decoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Its position.
    pub seq: Seq,
    /// Gateway time of the append, microseconds since the Unix epoch.
    pub timestamp_us: i64,
    /// Hash of the previous record.
    pub prev_hash: [u8; 32],
    /// What it says.
    pub body: Body,
    /// Hash of this record's encoding.
    pub hash: [u8; 32],
}

/// What a stored record is made of, less what follows from its position (its seq) and
/// the key: [`Parts::seal`] re-creates the stored bytes bit for bit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parts {
    /// The record format's version (which key seals the body).
    pub version: u8,
    /// Gateway time of the append, microseconds since the Unix epoch.
    pub timestamp_us: i64,
    /// Hash of the previous record.
    pub prev_hash: [u8; 32],
    /// The nonce its body was sealed with.
    pub nonce: [u8; aead::NONCE_LEN],
    /// The body's encoding (plaintext).
    pub body: Vec<u8>,
}

impl Parts {
    /// The stored bytes of this record at `seq`, and their hash.
    pub fn seal(&self, keys: &KeySet, seq: Seq) -> (Vec<u8>, [u8; 32]) {
        let mut out = Vec::with_capacity(HEADER_LEN + 4 + aead::ENVELOPE_OVERHEAD + self.body.len());
        out.push(self.version);
        out.extend_from_slice(&seq.0.to_le_bytes());
        out.extend_from_slice(&self.timestamp_us.to_le_bytes());
        out.extend_from_slice(&self.prev_hash);
        let key = body_key(keys, self.version, seq);
        let envelope = aead::seal_with_nonce(&key, self.nonce, &out, &self.body);
        out.extend_from_slice(
            &u32::try_from(envelope.len()).expect("invariant: bodies are far below 4 GiB").to_le_bytes(),
        );
        out.extend_from_slice(&envelope);
        let hash = *blake3::hash(&out).as_bytes();
        (out, hash)
    }

    /// Opens the record stored under `seq`: checks its framing and authenticates its body.
    pub fn open(keys: &KeySet, seq: Seq, bytes: &[u8]) -> Result<Self, JournalError> {
        let corrupt = |detail: String| JournalError::Corrupt { seq, detail };
        if bytes.len() < HEADER_LEN + 4 {
            return Err(corrupt(format!("{} bytes is shorter than a record", bytes.len())));
        }
        let version = bytes[0];
        if version != RECORD_V1 && version != RECORD_V2 {
            return Err(corrupt(format!("unknown record version {version}")));
        }
        let stored_seq = u64::from_le_bytes(bytes[1..9].try_into().expect("invariant: 8 bytes"));
        if stored_seq != seq.0 {
            return Err(corrupt(format!("record says it is seq {stored_seq}")));
        }
        let timestamp_us = i64::from_le_bytes(bytes[9..17].try_into().expect("invariant: 8 bytes"));
        let prev_hash: [u8; 32] = bytes[17..49].try_into().expect("invariant: 32 bytes");
        let len = u32::from_le_bytes(bytes[49..53].try_into().expect("invariant: 4 bytes")) as usize;
        if bytes.len() != HEADER_LEN + 4 + len {
            return Err(corrupt("body length does not match the record's size".into()));
        }
        let envelope = &bytes[HEADER_LEN + 4..];
        let key = body_key(keys, version, seq);
        let body =
            aead::open(&key, &bytes[..HEADER_LEN], envelope, "journal record").map_err(|e| corrupt(e.to_string()))?;
        let nonce = aead::nonce_of(envelope).ok_or_else(|| corrupt("no nonce".into()))?;
        Ok(Self { version, timestamp_us, prev_hash, nonce, body })
    }
}

/// The key a record's body is sealed with: its epoch's (version 2), or the journal key.
fn body_key(keys: &KeySet, version: u8, seq: Seq) -> zeroize::Zeroizing<[u8; 32]> {
    match version {
        RECORD_V1 => zeroize::Zeroizing::new(*keys.journal.expose()),
        _ => keys.record_key(seq.0 >> EPOCH_BITS),
    }
}

/// Whether `version` is a record format this code reads.
pub fn known_version(version: u8) -> bool {
    version == RECORD_V1 || version == RECORD_V2
}

/// Encodes and seals a record under a fresh nonce; returns the bytes and their hash.
pub fn encode(
    keys: &KeySet,
    seq: Seq,
    timestamp_us: i64,
    prev_hash: &[u8; 32],
    body: &Body,
) -> Result<(Vec<u8>, [u8; 32]), JournalError> {
    let mut nonce = [0u8; aead::NONCE_LEN];
    aead::random_bytes(&mut nonce)?;
    Ok(Parts { version: RECORD_V2, timestamp_us, prev_hash: *prev_hash, nonce, body: body.encode() }.seal(keys, seq))
}

/// Decodes and opens a record stored under `seq`.
pub fn decode(keys: &KeySet, seq: Seq, bytes: &[u8]) -> Result<Record, JournalError> {
    let parts = Parts::open(keys, seq, bytes)?;
    let body = Body::decode(&parts.body).map_err(|e| JournalError::Corrupt { seq, detail: e.to_string() })?;
    Ok(Record {
        seq,
        timestamp_us: parts.timestamp_us,
        prev_hash: parts.prev_hash,
        body,
        hash: *blake3::hash(bytes).as_bytes(),
    })
}

/// The MAC that makes a checkpoint of `(seq, hash)` verifiable with the checkpoint key.
pub fn checkpoint_mac(keys: &KeySet, seq: Seq, hash: &[u8; 32]) -> [u8; 32] {
    let mut m = blake3::Hasher::new_keyed(keys.checkpoint.expose());
    m.update(b"rewind checkpoint v1");
    m.update(&seq.0.to_le_bytes());
    m.update(hash);
    *m.finalize().as_bytes()
}

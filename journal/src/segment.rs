//! Sealed segments: runs of journal records shipped to the vault, so the journal can be
//! rebuilt from the vault alone (G7).
//!
//! Encoding, version 3: `version (3) | first seq (u64 le) | last seq (u64 le) | previous
//! segment hash (32) | hash of the record before the first (32) | envelope`. The envelope
//! (journal key; associated data: the 81 bytes before it) holds a zstd frame of `count
//! (u32 le)` then, per record, `record version (1) | timestamp µs (i64 le) | nonce (12) |
//! body length (u32 le) | body plaintext`: what a stored record holds less what follows
//! from its position. Version 2 (still read) is the same without the record version, all
//! its records being version 1. Opening
//! re-seals each body with its own nonce under its re-created header, which gives back the
//! stored bytes bit for bit (sealing checks that it does), so the records' hash chain and
//! checkpoints hold unchanged; one authentication tag and one compressed run cost a third
//! of shipping the stored records as they are. A segment's hash is the BLAKE3 of its whole
//! encoding; each names the previous one's, so the segments form a chain like the records.
//!
//! Version 1 (still read) carried the stored records as they are: `version (1) | first |
//! last | previous segment hash | envelope` of `count (u32 le)` then, per record, `seq (u64
//! le) | length (u32 le) | the record as stored`.
//!
//! A checkpoint shipped with a segment is `seq (u64 le) | record hash (32) | MAC (32)`, the
//! MAC as in the journal (`record::checkpoint_mac`).

use rewind_crypto::{KeySet, aead};
use rewind_model::Seq;

use crate::record::{Parts, checkpoint_mac};
use crate::{JournalError, ViewEntry};

const SEGMENT_V1: u8 = 1;
const SEGMENT_V2: u8 = 2;
const SEGMENT_V3: u8 = 3;
const V1_HEADER_LEN: usize = 1 + 8 + 8 + 32;
const V2_HEADER_LEN: usize = V1_HEADER_LEN + 32;
/// Segments are written every few seconds and read back only to rebuild: worth a level
/// that squeezes the repeated names and headers well.
const ZSTD_LEVEL: i32 = 9;

/// Records as stored, with their positions: what a segment carries.
pub type RawRecords = Vec<(Seq, Vec<u8>)>;

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

/// The first and last record a segment's vault object name says it holds.
pub fn range_of_name(name: &str) -> Option<(u64, u64)> {
    let (first, last) = name.strip_prefix("segments/")?.split_once('-')?;
    Some((first.parse().ok()?, last.parse().ok()?))
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
    let mut plain = Vec::with_capacity(4 + records.iter().map(|(_, r)| r.len()).sum::<usize>());
    plain.extend_from_slice(&u32::try_from(records.len()).map_err(|_| corrupt("too many records"))?.to_le_bytes());
    let mut before = None;
    for (i, (seq, bytes)) in records.iter().enumerate() {
        if seq.0 != first.0 + i as u64 {
            return Err(corrupt(format!("record {} where {} was expected", seq.0, first.0 + i as u64)));
        }
        let parts = Parts::open(keys, *seq, bytes)?;
        if parts.seal(keys, *seq).0 != *bytes {
            return Err(corrupt(format!("record {} would not come back bit for bit", seq.0)));
        }
        before.get_or_insert(parts.prev_hash);
        plain.push(parts.version);
        plain.extend_from_slice(&parts.timestamp_us.to_le_bytes());
        plain.extend_from_slice(&parts.nonce);
        plain.extend_from_slice(
            &u32::try_from(parts.body.len()).map_err(|_| corrupt("record too large"))?.to_le_bytes(),
        );
        plain.extend_from_slice(&parts.body);
    }
    let mut header = Vec::with_capacity(V2_HEADER_LEN);
    header.push(SEGMENT_V3);
    header.extend_from_slice(&first.0.to_le_bytes());
    header.extend_from_slice(&last.0.to_le_bytes());
    header.extend_from_slice(&prev);
    header.extend_from_slice(&before.expect("invariant: at least one record"));
    let packed = zstd::bulk::compress(&plain, ZSTD_LEVEL).map_err(|e| corrupt(format!("compressing: {e}")))?;
    let envelope = aead::seal(keys.journal.expose(), &header, &packed)?;
    let mut bytes = header;
    bytes.extend_from_slice(&envelope);
    let hash = *blake3::hash(&bytes).as_bytes();
    Ok(Segment { first: *first, last: *last, prev, bytes, hash })
}

/// Reads fixed-size fields off the front of a byte string.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], JournalError> {
        if self.0.len() < n {
            return Err(corrupt("truncated"));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], JournalError> {
        Ok(self.take(N)?.try_into().expect("invariant: N bytes taken"))
    }
}

/// Opens a segment: its header and its records (stored bytes), checked to be the run its
/// header names. The records themselves are checked when decoded.
pub fn open(keys: &KeySet, bytes: &[u8]) -> Result<(Segment, RawRecords), JournalError> {
    let header_len = match bytes.first() {
        Some(&SEGMENT_V1) => V1_HEADER_LEN,
        Some(&SEGMENT_V2 | &SEGMENT_V3) => V2_HEADER_LEN,
        _ => return Err(corrupt("unknown version")),
    };
    if bytes.len() < header_len {
        return Err(corrupt("too short"));
    }
    let mut header = Fields(&bytes[1..header_len]);
    let (first, last) = (Seq(u64::from_le_bytes(header.array()?)), Seq(u64::from_le_bytes(header.array()?)));
    let prev: [u8; 32] = header.array()?;
    let plain = aead::open(keys.journal.expose(), &bytes[..header_len], &bytes[header_len..], "journal segment")?;
    let records = if bytes[0] == SEGMENT_V1 {
        v1_records(&plain, first)?
    } else {
        let plain = zstd::stream::decode_all(plain.as_slice()).map_err(|e| corrupt(format!("decompressing: {e}")))?;
        v2_records(keys, &plain, first, header.array()?, bytes[0] == SEGMENT_V3)?
    };
    if records.last().map(|(s, _)| *s) != Some(last) {
        return Err(corrupt("its records do not end where its header says"));
    }
    let hash = *blake3::hash(bytes).as_bytes();
    Ok((Segment { first, last, prev, bytes: bytes.to_vec(), hash }, records))
}

fn v1_records(plain: &[u8], first: Seq) -> Result<RawRecords, JournalError> {
    let mut rest = Fields(plain);
    let count = u32::from_le_bytes(rest.array()?);
    let mut records = Vec::with_capacity((count as usize).min(plain.len() / 12));
    for i in 0..u64::from(count) {
        let seq = Seq(u64::from_le_bytes(rest.array()?));
        if seq.0 != first.0 + i {
            return Err(corrupt(format!("record {} where {} was expected", seq.0, first.0 + i)));
        }
        let len = u32::from_le_bytes(rest.array()?) as usize;
        records.push((seq, rest.take(len)?.to_vec()));
    }
    Ok(records)
}

/// Version 2 and 3 segments' records; `versioned`: each carries its record version (3).
fn v2_records(
    keys: &KeySet,
    plain: &[u8],
    first: Seq,
    mut prev_hash: [u8; 32],
    versioned: bool,
) -> Result<RawRecords, JournalError> {
    let mut rest = Fields(plain);
    let count = u32::from_le_bytes(rest.array()?);
    // Each record takes at least 24 bytes: a count beyond that is damage, not an allocation.
    let mut records = Vec::with_capacity((count as usize).min(plain.len() / 24));
    for i in 0..u64::from(count) {
        let version = if versioned { rest.take(1)?[0] } else { 1 };
        if !crate::record::known_version(version) {
            return Err(corrupt(format!("unknown record version {version}")));
        }
        let timestamp_us = i64::from_le_bytes(rest.array()?);
        let nonce = rest.array()?;
        let len = u32::from_le_bytes(rest.array()?) as usize;
        let parts = Parts { version, timestamp_us, prev_hash, nonce, body: rest.take(len)?.to_vec() };
        let seq = Seq(first.0 + i);
        let (stored, hash) = parts.seal(keys, seq);
        records.push((seq, stored));
        prev_hash = hash;
    }
    if !rest.0.is_empty() {
        return Err(corrupt("bytes after its last record"));
    }
    Ok(records)
}

/// A signed checkpoint of record `seq` whose stored bytes hash to `record_hash`.
pub fn checkpoint(keys: &KeySet, seq: Seq, record_hash: &[u8; 32]) -> Vec<u8> {
    let mut out = seq.0.to_le_bytes().to_vec();
    out.extend_from_slice(record_hash);
    out.extend_from_slice(&checkpoint_mac(keys, seq, record_hash));
    out
}

/// Opens a shipped checkpoint: the seq and record hash it vouches for, once its MAC
/// verifies (in constant time).
pub fn open_checkpoint(keys: &KeySet, bytes: &[u8]) -> Result<(Seq, [u8; 32]), JournalError> {
    if bytes.len() != 72 {
        return Err(corrupt(format!("checkpoint: {} bytes where 72 were expected", bytes.len())));
    }
    let seq = Seq(u64::from_le_bytes(bytes[..8].try_into().expect("invariant: 8 bytes")));
    let hash: [u8; 32] = bytes[8..40].try_into().expect("invariant: 32 bytes");
    let given: [u8; 32] = bytes[40..].try_into().expect("invariant: 32 bytes");
    if blake3::Hash::from(checkpoint_mac(keys, seq, &hash)) != blake3::Hash::from(given) {
        return Err(JournalError::Corrupt {
            seq,
            detail: "checkpoint: its MAC does not verify with this vault's key".into(),
        });
    }
    Ok((seq, hash))
}

/// Snapshot labels as [`Journal::labels`](crate::Journal::labels) lists them: name, seq,
/// creation time (µs since the epoch).
pub type Labels = Vec<(String, Seq, i64)>;

/// What ships apart from records: snapshot labels, legal holds and time-travel views.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SideSet {
    /// Snapshot labels.
    pub labels: Labels,
    /// Legal holds.
    pub holds: Vec<Hold>,
    /// Time-travel views.
    pub views: Vec<ViewEntry>,
    /// Per bucket, the first position `forget` left whole (see `Journal::exact_from`).
    pub exact: Vec<(String, Seq)>,
}

impl SideSet {
    /// Whether there is nothing in it.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.holds.is_empty() && self.views.is_empty() && self.exact.is_empty()
    }

    /// A digest of the set, to tell whether it changed since last shipped.
    pub fn digest(&self) -> [u8; 32] {
        *blake3::hash(&plain(self)).as_bytes()
    }
}

/// A legal hold: every version of one key (`exact`) or of every key under a prefix is kept
/// whatever the retention policy says, until the hold is lifted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    /// The bucket.
    pub bucket: String,
    /// The key, or the prefix ("" holds the whole bucket).
    pub scope: String,
    /// Whether `scope` is one key rather than a prefix.
    pub exact: bool,
    /// Why, as the operator said it.
    pub reason: String,
    /// When it was placed, µs since the epoch.
    pub created_us: i64,
}

impl Hold {
    /// Whether the hold covers `bucket`/`key`.
    pub fn covers(&self, bucket: &str, key: &str) -> bool {
        self.bucket == bucket && if self.exact { key == self.scope } else { key.starts_with(&self.scope) }
    }
}

/// The vault object name of the `generation`th shipped label set (sorts by generation).
///
/// Labels and holds are not records, so they ship apart from segments: the whole set,
/// whenever it changed, as a new object (the vault never overwrites); a rebuild keeps the
/// newest. Encoding: `version (1) | generation (u64 le) | envelope`, the envelope (journal
/// key; associated data: the 9 bytes before it) holding `count (u32 le)` then, per label,
/// `name length (u16 le) | name | seq (u64 le) | created µs (i64 le)`; in version 2, then
/// `count (u32 le)` and per hold `bucket length (u16 le) | bucket | kind (1: key, 2:
/// prefix) | scope length (u16 le) | scope | created µs (i64 le) | reason length (u16 le) |
/// reason`; in version 3, then `count (u32 le)` and per time-travel view `access key id
/// length (u16 le) | id | bucket length (u16 le) | bucket | seq (u64 le) | at µs | created
/// µs | expires µs (each i64 le)`.
pub fn labels_name(generation: u64) -> String {
    format!("labels/{generation:020}")
}

const LABELS_V1: u8 = 1;
const LABELS_V2: u8 = 2;
const LABELS_V3: u8 = 3;

fn short(text: &str) -> &[u8] {
    &text.as_bytes()[..text.len().min(usize::from(u16::MAX))]
}

fn put_short(out: &mut Vec<u8>, text: &str) {
    let bytes = short(text);
    out.extend_from_slice(&u16::try_from(bytes.len()).unwrap_or(u16::MAX).to_le_bytes());
    out.extend_from_slice(bytes);
}

fn plain(set: &SideSet) -> Vec<u8> {
    let mut plain = labels_plain(&set.labels);
    plain.extend_from_slice(&u32::try_from(set.holds.len()).unwrap_or(u32::MAX).to_le_bytes());
    for h in &set.holds {
        put_short(&mut plain, &h.bucket);
        plain.push(if h.exact { 1 } else { 2 });
        put_short(&mut plain, &h.scope);
        plain.extend_from_slice(&h.created_us.to_le_bytes());
        put_short(&mut plain, &h.reason);
    }
    plain.extend_from_slice(&u32::try_from(set.views.len()).unwrap_or(u32::MAX).to_le_bytes());
    for v in &set.views {
        put_short(&mut plain, &v.access_key_id);
        put_short(&mut plain, &v.bucket);
        plain.extend_from_slice(&v.seq.0.to_le_bytes());
        for n in [v.at_us, v.created_us, v.expires_us] {
            plain.extend_from_slice(&n.to_le_bytes());
        }
    }
    plain.extend_from_slice(&u32::try_from(set.exact.len()).unwrap_or(u32::MAX).to_le_bytes());
    for (bucket, seq) in &set.exact {
        put_short(&mut plain, bucket);
        plain.extend_from_slice(&seq.0.to_le_bytes());
    }
    plain
}

fn labels_plain(labels: &[(String, Seq, i64)]) -> Vec<u8> {
    let mut plain = u32::try_from(labels.len()).unwrap_or(u32::MAX).to_le_bytes().to_vec();
    for (name, seq, created) in labels {
        let name = &name.as_bytes()[..name.len().min(usize::from(u16::MAX))];
        plain.extend_from_slice(&u16::try_from(name.len()).unwrap_or(u16::MAX).to_le_bytes());
        plain.extend_from_slice(name);
        plain.extend_from_slice(&seq.0.to_le_bytes());
        plain.extend_from_slice(&created.to_le_bytes());
    }
    plain
}

/// Seals a side set as the `generation`th shipped one.
pub fn seal_labels(keys: &KeySet, generation: u64, set: &SideSet) -> Result<Vec<u8>, JournalError> {
    let mut header = vec![LABELS_V3];
    header.extend_from_slice(&generation.to_le_bytes());
    let envelope = aead::seal(keys.journal.expose(), &header, &plain(set))?;
    header.extend_from_slice(&envelope);
    Ok(header)
}

/// Opens a shipped side set: its generation and contents (no holds in version 1, no
/// views before version 3).
pub fn open_labels(keys: &KeySet, bytes: &[u8]) -> Result<(u64, SideSet), JournalError> {
    if bytes.len() < 9 || !matches!(bytes[0], LABELS_V1 | LABELS_V2 | LABELS_V3) {
        return Err(corrupt("labels: unknown version or too short"));
    }
    let generation = u64::from_le_bytes(bytes[1..9].try_into().expect("invariant: 8 bytes"));
    let plain = aead::open(keys.journal.expose(), &bytes[..9], &bytes[9..], "shipped labels")?;
    let mut rest = Fields(&plain);
    let count = u32::from_le_bytes(rest.array()?);
    let mut labels = Vec::with_capacity(count.min(1 << 16) as usize);
    for _ in 0..count {
        let len = u16::from_le_bytes(rest.array()?);
        let name = String::from_utf8(rest.take(usize::from(len))?.to_vec())
            .map_err(|_| corrupt("labels: a name is not UTF-8"))?;
        let seq = Seq(u64::from_le_bytes(rest.array()?));
        labels.push((name, seq, i64::from_le_bytes(rest.array()?)));
    }
    let text = |rest: &mut Fields<'_>, what: &str| -> Result<String, JournalError> {
        let len = u16::from_le_bytes(rest.array()?);
        String::from_utf8(rest.take(usize::from(len))?.to_vec())
            .map_err(|_| corrupt(format!("side set: a {what} is not UTF-8")))
    };
    let mut holds = Vec::new();
    if bytes[0] >= LABELS_V2 {
        let count = u32::from_le_bytes(rest.array()?);
        for _ in 0..count {
            let bucket = text(&mut rest, "bucket")?;
            let exact = match rest.take(1)?[0] {
                1 => true,
                2 => false,
                _ => return Err(corrupt("holds: unknown kind")),
            };
            let scope = text(&mut rest, "scope")?;
            let created_us = i64::from_le_bytes(rest.array()?);
            let reason = text(&mut rest, "reason")?;
            holds.push(Hold { bucket, scope, exact, reason, created_us });
        }
    }
    let mut views = Vec::new();
    if bytes[0] >= LABELS_V3 {
        let count = u32::from_le_bytes(rest.array()?);
        for _ in 0..count {
            let (access_key_id, bucket) = (text(&mut rest, "view id")?, text(&mut rest, "bucket")?);
            let seq = Seq(u64::from_le_bytes(rest.array()?));
            let mut n = || rest.array().map(i64::from_le_bytes);
            let (at_us, created_us, expires_us) = (n()?, n()?, n()?);
            views.push(ViewEntry { access_key_id, bucket, seq, at_us, created_us, expires_us });
        }
    }
    let mut exact = Vec::new();
    if bytes[0] >= LABELS_V3 {
        let count = u32::from_le_bytes(rest.array()?);
        for _ in 0..count {
            let bucket = text(&mut rest, "bucket")?;
            exact.push((bucket, Seq(u64::from_le_bytes(rest.array()?))));
        }
    }
    Ok((generation, SideSet { labels, holds, views, exact }))
}

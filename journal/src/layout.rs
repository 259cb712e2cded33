//! Every key the journal stores, built and split here and nowhere else (docs/FORMAT.md,
//! "Journal tables", describes the same layouts).
//!
//! - `records`: `seq` (u64 big-endian).
//! - `versions`: `escaped bucket | escaped key | seq`, where a name is escaped so that
//!   concatenations sort like the names and never prefix each other (0x00 becomes
//!   0x00 0xFF, and 0x00 0x00 ends it). Bucket-level records use the empty key.
//! - `meta`: `head`; `checkpoint/` + seq; `label/` + name; `hold/` + scope; `view/` +
//!   access key id; `incident/` + id; `exact/` + bucket; `shipped`; `labels-shipped`; `horizon`.
//! - `open` (unresolved intents): `seq` (the value names the owning gateway), and a mark
//!   per intent `K | key lock id (u64 big-endian) | seq` (empty value), so whoever takes a
//!   key's lock finds the intents on that key left open.
//! - `chunks`: the 32-byte chunk id.
//! - `pending` (work in progress): `mpu\0 bucket \0 key \0 upload id \0` then `t` (the
//!   upload's template) or `p` + part number (i32 big-endian); `reconcile\0` + bucket (the
//!   last key a pass finished).

use rewind_model::Seq;

use crate::Appended;

/// `meta`: the head (seq, hash, timestamp).
pub const HEAD_KEY: &[u8] = b"head";
/// `meta`: checkpoints, by seq.
pub const CHECKPOINT_PREFIX: &[u8] = b"checkpoint/";
/// `meta`: snapshot labels, by name.
pub const LABEL_PREFIX: &[u8] = b"label/";
/// `meta`: legal holds, by bucket and scope.
pub const HOLD_PREFIX: &[u8] = b"hold/";
/// `meta`: tripwire incidents, by id.
pub const INCIDENT_PREFIX: &[u8] = b"incident/";
/// `meta`: time-travel views, by access key id.
pub const VIEW_PREFIX: &[u8] = b"view/";
/// `meta`: the last record shipped to the vault, and its segment's hash.
pub const SHIPPED_KEY: &[u8] = b"shipped";
/// `meta`: the sealed horizon of the last `forget` (see `horizon.rs`).
pub const HORIZON_KEY: &[u8] = b"horizon";
/// `meta`: leases, by name (see `leases.rs`).
pub const LEASE_PREFIX: &[u8] = b"lease/";
/// `meta`: the id of the vault this journal belongs to (its `vault.toml`'s `vault_id`).
pub const VAULT_ID_KEY: &[u8] = b"vault-id";
/// `meta`: the generation and digest of the label set last shipped.
pub const LABELS_SHIPPED_KEY: &[u8] = b"labels-shipped";
/// `meta`: how far the one-time naming of retag bases has got (see `upgrade.rs`): the last
/// `versions` entry it read, or empty once done.
pub const BASES_NAMED_KEY: &[u8] = b"bases-named";

/// How long [`seq_key`] is: a `versions` entry ends in its record's key.
pub const SEQ_KEY_LEN: usize = 8;

/// The key of record (or unresolved intent) `seq`.
pub fn seq_key(seq: Seq) -> [u8; SEQ_KEY_LEN] {
    seq.0.to_be_bytes()
}

/// The number every process locks `bucket`/`key` under, and files the key's open intents
/// under (see [`open_mark`]): the same in every process and every version.
pub fn key_lock_id(bucket: &str, key: &str) -> i64 {
    let mut h = blake3::Hasher::new();
    h.update(&(bucket.len() as u64).to_le_bytes());
    h.update(bucket.as_bytes());
    h.update(key.as_bytes());
    let bytes: [u8; 8] = h.finalize().as_bytes()[..8].try_into().expect("invariant: 8 of 32 bytes");
    i64::from_le_bytes(bytes)
}

/// `open`: the first byte of every mark (an intent's own entry is its 8-byte seq).
pub const OPEN_MARK_TAG: u8 = b'K';

/// `open`: where the marks of the intents open on key lock id `id` begin.
pub fn open_mark_prefix(id: i64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = OPEN_MARK_TAG;
    k[1..].copy_from_slice(&id.cast_unsigned().to_be_bytes());
    k
}

/// `open`: the mark of intent `seq` on key lock id `id`.
pub fn open_mark(id: i64, seq: Seq) -> Vec<u8> {
    let mut k = open_mark_prefix(id).to_vec();
    k.extend_from_slice(&seq_key(seq));
    k
}

/// `open`: the key lock id a mark is filed under; `None` for an entry that is no mark.
pub fn open_mark_id(k: &[u8]) -> Option<i64> {
    if k.len() != 17 || k[0] != OPEN_MARK_TAG {
        return None;
    }
    Some(u64::from_be_bytes(k[1..9].try_into().ok()?).cast_signed())
}

/// `open`: the intent an entry names, when it is the intent's own entry (not a mark).
pub fn open_seq(k: &[u8]) -> Option<Seq> {
    (k.len() == 8).then(|| seq_of(k)).flatten()
}

/// The seq at the front of `be` (a record key, or the end of an index key).
pub fn seq_of(be: &[u8]) -> Option<Seq> {
    Some(Seq(u64::from_be_bytes(be.get(..8)?.try_into().ok()?)))
}

/// The stored head: seq, hash, timestamp.
pub(crate) fn head_value(head: &Appended) -> Vec<u8> {
    let mut v = head.seq.0.to_be_bytes().to_vec();
    v.extend_from_slice(&head.hash);
    v.extend_from_slice(&head.timestamp_us.to_be_bytes());
    v
}

/// Reads a stored head (`None`: malformed).
pub(crate) fn parse_head(v: &[u8]) -> Option<Appended> {
    (v.len() == 48).then(|| Appended {
        seq: Seq(u64::from_be_bytes(v[..8].try_into().expect("invariant: 8 bytes"))),
        hash: v[8..40].try_into().expect("invariant: 32 bytes"),
        timestamp_us: i64::from_be_bytes(v[40..48].try_into().expect("invariant: 8 bytes")),
    })
}

/// The `meta` key of the checkpoint at `seq`.
pub fn checkpoint_key(seq: Seq) -> Vec<u8> {
    [CHECKPOINT_PREFIX, &seq.0.to_be_bytes()].concat()
}

/// The `meta` key of a label.
pub fn label_key(name: &str) -> Vec<u8> {
    [LABEL_PREFIX, name.as_bytes()].concat()
}

/// `meta`: per bucket, the first position `forget` left whole.
pub const EXACT_PREFIX: &[u8] = b"exact/";

/// The `meta` key of a bucket's first whole position after `forget`.
pub fn exact_key(bucket: &str) -> Vec<u8> {
    [EXACT_PREFIX, bucket.as_bytes()].concat()
}

/// `meta`: incident `id`.
pub fn incident_key(id: &str) -> Vec<u8> {
    [INCIDENT_PREFIX, id.as_bytes()].concat()
}

/// The `meta` key of a view.
pub fn view_key(access_key_id: &str) -> Vec<u8> {
    [VIEW_PREFIX, access_key_id.as_bytes()].concat()
}

/// The `meta` key of a hold: `hold/ bucket 0x00 kind scope`, kind `k` (one key) or `p` (a
/// prefix; the empty prefix holds the whole bucket).
pub fn hold_key(bucket: &str, scope: &str, exact: bool) -> Vec<u8> {
    [HOLD_PREFIX, bucket.as_bytes(), &[0, if exact { b'k' } else { b'p' }], scope.as_bytes()].concat()
}

/// The `meta` value of a hold: when it was placed (µs, i64 be), then its reason.
pub(crate) fn hold_value(created_us: i64, reason: &str) -> Vec<u8> {
    [&created_us.to_be_bytes()[..], reason.as_bytes()].concat()
}

/// The bucket, scope and kind of a hold's key (`None`: malformed).
pub(crate) fn parse_hold_key(key: &[u8]) -> Option<(String, String, bool)> {
    let rest = key.strip_prefix(HOLD_PREFIX)?;
    let at = rest.iter().position(|b| *b == 0)?;
    let exact = match rest.get(at + 1)? {
        b'k' => true,
        b'p' => false,
        _ => return None,
    };
    let bucket = String::from_utf8(rest[..at].to_vec()).ok()?;
    let scope = String::from_utf8(rest[at + 2..].to_vec()).ok()?;
    Some((bucket, scope, exact))
}

/// The `meta` value of a label: its seq and when it was made.
pub(crate) fn label_value(seq: Seq, created_us: i64) -> Vec<u8> {
    [seq.0.to_be_bytes(), created_us.to_be_bytes()].concat()
}

/// A label's seq and creation time (`None`: malformed).
pub(crate) fn parse_label(v: &[u8]) -> Option<(Seq, i64)> {
    (v.len() == 16).then(|| {
        (Seq(u64::from_be_bytes(v[..8].try_into().expect("invariant: 8 bytes"))), {
            i64::from_be_bytes(v[8..16].try_into().expect("invariant: 8 bytes"))
        })
    })
}

/// A shipping mark's value: a number and a hash.
pub(crate) fn mark_value(n: u64, hash: &[u8; 32]) -> Vec<u8> {
    [&n.to_be_bytes()[..], hash].concat()
}

/// A shipping mark (`None`: malformed).
pub(crate) fn parse_mark(v: &[u8]) -> Option<(u64, [u8; 32])> {
    (v.len() == 40).then(|| (seq_of(v).expect("invariant: 8 bytes").0, v[8..].try_into().expect("invariant: 32 bytes")))
}

/// Escapes a name: 0x00 becomes 0x00 0xFF, and 0x00 0x00 ends it.
fn push_escaped(out: &mut Vec<u8>, s: &str) {
    for &b in s.as_bytes() {
        out.push(b);
        if b == 0 {
            out.push(0xFF);
        }
    }
    out.extend_from_slice(&[0, 0]);
}

/// Splits one escaped name off the front of `bytes`.
fn split_escaped(bytes: &[u8]) -> Option<(String, &[u8])> {
    let mut name = Vec::new();
    let mut i = 0;
    while i + 1 < bytes.len() {
        match (bytes[i], bytes[i + 1]) {
            (0, 0) => return Some((String::from_utf8(name).ok()?, &bytes[i + 2..])),
            (0, 0xFF) => {
                name.push(0);
                i += 2;
            }
            (b, _) => {
                name.push(b);
                i += 1;
            }
        }
    }
    None
}

/// The `versions` prefix of one key's entries.
pub fn version_prefix(bucket: &str, key: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(bucket.len() + key.len() + 12);
    push_escaped(&mut out, bucket);
    push_escaped(&mut out, key);
    out
}

/// The `versions` entry of `bucket`/`key` at `seq`.
pub fn version_key(bucket: &str, key: &str, seq: Seq) -> Vec<u8> {
    let mut k = version_prefix(bucket, key);
    k.extend_from_slice(&seq.0.to_be_bytes());
    k
}

/// The version a `versions` entry's value names as the base of a change of tags alone
/// (8 bytes, big-endian); `None` for an empty value (any other change, or a base not
/// known when it was indexed) or a malformed one.
pub fn base_of(value: &[u8]) -> Option<Seq> {
    (value.len() == 8).then(|| seq_of(value)).flatten()
}

/// The `versions` prefix of every key of `bucket` starting with `prefix`, and where the
/// key begins in an entry.
pub(crate) fn version_scan(bucket: &str, prefix: &str) -> (Vec<u8>, usize) {
    let mut scan = Vec::with_capacity(bucket.len() + prefix.len() + 4);
    push_escaped(&mut scan, bucket);
    let key_at = scan.len();
    push_escaped(&mut scan, prefix);
    scan.truncate(scan.len() - 2); // a prefix of the key: no terminator
    (scan, key_at)
}

/// Where the `versions` entries of `bucket`'s keys after `key` begin.
pub(crate) fn keys_after(bucket: &str, key: &str) -> Vec<u8> {
    let mut from = version_prefix(bucket, key);
    *from.last_mut().expect("invariant: escaped names end in 0 0") = 1;
    from
}

/// Where the `versions` entries of `bucket`'s keys past every key that starts with
/// `prefix` begin (`None` when `prefix` ends in a byte that has no successor to seek to).
pub(crate) fn keys_past_prefix(bucket: &str, prefix: &str) -> Option<Vec<u8>> {
    let (&last, init) = prefix.as_bytes().split_last()?;
    if last == 0 || last == 0xFF {
        return None;
    }
    let mut from = Vec::with_capacity(bucket.len() + prefix.len() + 4);
    push_escaped(&mut from, bucket);
    let init = std::str::from_utf8(init).ok()?;
    push_escaped(&mut from, init);
    from.truncate(from.len() - 2);
    from.push(last + 1);
    Some(from)
}

/// Where the entries of the bucket after `bucket` begin.
pub(crate) fn next_bucket(bucket: &str) -> Vec<u8> {
    let mut next = Vec::with_capacity(bucket.len() + 2);
    push_escaped(&mut next, bucket);
    *next.last_mut().expect("invariant: escaped names end in 0 0") = 1;
    next
}

/// Splits a `versions` entry into bucket, key and seq.
pub(crate) fn split_version(bytes: &[u8]) -> Option<(String, String, Seq)> {
    let (bucket, rest) = split_escaped(bytes)?;
    let (key, rest) = split_escaped(rest)?;
    (rest.len() == 8).then(|| (bucket, key, seq_of(rest).expect("invariant: 8 bytes")))
}

/// Splits `escaped key | seq` (an entry past its bucket) into key and seq.
pub(crate) fn split_key_seq(bytes: &[u8]) -> Option<(String, Seq)> {
    let (key, rest) = split_escaped(bytes)?;
    Some((key, seq_of(rest)?))
}

/// The bucket a `versions` entry starts with.
pub(crate) fn bucket_of(bytes: &[u8]) -> Option<String> {
    split_escaped(bytes).map(|(b, _)| b)
}

/// The work-in-progress prefix of garbage collection's condemned packs: the pack's name
/// follows, and the value is [`condemned_value`].
pub const GC_CONDEMNED: &[u8] = b"gc\0condemned\0";

/// The work-in-progress key of a condemned pack.
pub fn condemned_key(pack: &str) -> Vec<u8> {
    [GC_CONDEMNED, pack.as_bytes()].concat()
}

/// When a pack was condemned, and before when it must not be deleted (Object Lock), both in
/// µs since the epoch: `condemned (i64 le) | not before (i64 le)`.
pub fn condemned_value(condemned_us: i64, not_before_us: i64) -> Vec<u8> {
    [condemned_us.to_le_bytes(), not_before_us.to_le_bytes()].concat()
}

/// Reads [`condemned_value`].
pub fn parse_condemned(value: &[u8]) -> Option<(i64, i64)> {
    let at = |i: usize| Some(i64::from_le_bytes(value.get(i..i + 8)?.try_into().ok()?));
    Some((at(0)?, at(8)?))
}

/// The work-in-progress prefix of every multipart upload.
pub const UPLOADS: &[u8] = b"mpu\0";

/// The work-in-progress prefix of one multipart upload.
pub fn upload_prefix(bucket: &str, key: &str, upload_id: &str) -> Vec<u8> {
    let mut p = UPLOADS.to_vec();
    for part in [bucket, key, upload_id] {
        p.extend_from_slice(part.as_bytes());
        p.push(0);
    }
    p
}

/// Where an upload's template (headers, metadata, tags) is kept.
pub fn upload_template(upload: &[u8]) -> Vec<u8> {
    [upload, b"t"].concat()
}

/// The prefix of an upload's captured parts.
pub fn upload_parts(upload: &[u8]) -> Vec<u8> {
    [upload, b"p"].concat()
}

/// Where part `number` of an upload is kept.
pub fn upload_part(upload: &[u8], number: i32) -> Vec<u8> {
    [upload, b"p", &number.to_be_bytes()].concat()
}

/// The part number of a key under [`upload_parts`].
pub fn part_number(parts: &[u8], key: &[u8]) -> Option<i32> {
    key.strip_prefix(parts)?.try_into().ok().map(i32::from_be_bytes)
}

/// Where a reconcile of `bucket` keeps the last key it finished, to resume after it.
pub fn reconcile_resume(bucket: &str) -> Vec<u8> {
    [b"reconcile\0".as_slice(), bucket.as_bytes()].concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_entries_split_back_and_sort_by_key_then_seq() {
        let a = version_key("b", "a\0x", Seq(9));
        assert_eq!(split_version(&a), Some(("b".into(), "a\0x".into(), Seq(9))));
        // "a" sorts before "a\0x" and "ab": no key's entries run into another's.
        let keys = [version_key("b", "a", Seq(u64::MAX)), a, version_key("b", "ab", Seq(1))];
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
        assert!(version_key("b", "z", Seq(1)) < next_bucket("b") && next_bucket("b") < version_key("b\0", "", Seq(1)));
    }

    #[test]
    fn part_keys_give_back_their_numbers() {
        let upload = upload_prefix("b", "k", "u1");
        let parts = upload_parts(&upload);
        assert_eq!(part_number(&parts, &upload_part(&upload, 7)), Some(7));
        assert!(!upload_template(&upload).starts_with(&parts) && upload_part(&upload, 1).starts_with(&parts));
        assert!(upload_template(&upload).starts_with(&upload), "removing the upload removes its template");
    }
}

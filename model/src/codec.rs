//! The versioned binary encoding of what the journal records (the plaintext of a record
//! body; the journal encrypts and chains it). The types are in `record.rs`.
//!
//! Body encoding, version 1: `version (1) | kind (1) | fields`, where strings and byte
//! strings are `u32 le length | bytes`, optional values a `0`/`1` byte then the value,
//! lists a `u32 le count` then the items, integers little-endian.

use crate::ChunkId;
use crate::record::{Abort, Body, Commit, DecodeError, Effect, Intent, ObjectVersion, Observed, Op, Seq};

impl ObjectVersion {
    /// Its versioned encoding on its own (`1 | fields`, or `2 | fields | part sizes |
    /// checksums` when it has either), for state kept outside records, such as the parts of a multipart
    /// upload in progress.
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Enc(Vec::with_capacity(128));
        if self.has_extras() {
            e.u8(STANDALONE_V2);
            e.version(self);
            e.extras(self);
        } else {
            e.u8(BODY_V1);
            e.version(self);
        }
        e.0
    }

    /// Whether it has part sizes or checksums (encoded only then, so that records of
    /// versions without them are as they were).
    fn has_extras(&self) -> bool {
        !self.parts.is_empty() || !self.checksums.is_empty() || self.modified_us.is_some()
    }

    /// Decodes what [`ObjectVersion::encode`] produced.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut d = Dec(bytes);
        let version = d.u8()?;
        if version != BODY_V1 && version != STANDALONE_V2 {
            return Err(DecodeError(format!("unknown object version encoding {version}")));
        }
        let mut v = d.version()?;
        if version == STANDALONE_V2 {
            d.extras(&mut v)?;
        }
        if !d.0.is_empty() {
            return Err(DecodeError(format!("{} trailing bytes", d.0.len())));
        }
        Ok(v)
    }
}

const BODY_V1: u8 = 1;
/// The standalone encoding of a version with part sizes or checksums (`2 | version fields
/// | parts | checksums`).
const STANDALONE_V2: u8 = 2;
const KIND_INTENT: u8 = 1;
const KIND_COMMIT: u8 = 2;
const KIND_ABORT: u8 = 3;
const KIND_OBSERVED: u8 = 4;
const EFFECT_VERSION: u8 = 1;
const EFFECT_DELETED: u8 = 2;
const EFFECT_TAGS: u8 = 3;
const EFFECT_BUCKET: u8 = 4;
/// A version with its part sizes and checksums; a version with neither is written as
/// [`EFFECT_VERSION`], as before they were kept.
const EFFECT_VERSION_PARTS: u8 = 5;

impl Body {
    /// The versioned encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Enc(Vec::with_capacity(128));
        e.u8(BODY_V1);
        match self {
            Self::Intent(i) => {
                e.u8(KIND_INTENT);
                e.intent(i);
            }
            Self::Commit(c) => {
                e.u8(KIND_COMMIT);
                e.u64(c.intent.0);
                e.str(&c.bucket);
                e.str(&c.key);
                e.effect(&c.effect);
            }
            Self::Abort(a) => {
                e.u8(KIND_ABORT);
                e.u64(a.intent.0);
                e.str(&a.reason);
            }
            Self::Observed(o) => {
                e.u8(KIND_OBSERVED);
                e.intent(&o.intent);
                e.effect(&o.effect);
            }
        }
        e.0
    }

    /// Decodes what [`Body::encode`] produced; anything else is an error, never a panic.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut d = Dec(bytes);
        let version = d.u8()?;
        if version != BODY_V1 {
            return Err(DecodeError(format!("unknown body version {version}")));
        }
        let body = match d.u8()? {
            KIND_INTENT => Self::Intent(d.intent()?),
            KIND_COMMIT => {
                let (intent, bucket, key) = (Seq(d.u64()?), d.str()?, d.str()?);
                Self::Commit(Commit { intent, bucket, key, effect: d.effect()? })
            }
            KIND_ABORT => Self::Abort(Abort { intent: Seq(d.u64()?), reason: d.str()? }),
            KIND_OBSERVED => Self::Observed(Observed { intent: d.intent()?, effect: d.effect()? }),
            other => return Err(DecodeError(format!("unknown record kind {other}"))),
        };
        if !d.0.is_empty() {
            return Err(DecodeError(format!("{} trailing bytes", d.0.len())));
        }
        Ok(body)
    }
}

struct Enc(Vec<u8>);

impl Enc {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn raw(&mut self, b: &[u8]) {
        self.0.extend_from_slice(b);
    }
    fn str(&mut self, s: &str) {
        self.u32(u32::try_from(s.len()).expect("invariant: record strings are far below 4 GiB"));
        self.raw(s.as_bytes());
    }
    fn opt(&mut self, s: Option<&str>) {
        match s {
            None => self.u8(0),
            Some(s) => {
                self.u8(1);
                self.str(s);
            }
        }
    }
    fn intent(&mut self, i: &Intent) {
        self.u8(i.op.code());
        for s in [&i.bucket, &i.key, &i.access_key, &i.request_id] {
            self.str(s);
        }
    }
    fn effect(&mut self, effect: &Effect) {
        match effect {
            Effect::Version(v) if !v.has_extras() => {
                self.u8(EFFECT_VERSION);
                self.version(v);
            }
            Effect::Version(v) => {
                self.u8(EFFECT_VERSION_PARTS);
                self.version(v);
                self.extras(v);
            }
            Effect::Deleted { version_id } => {
                self.u8(EFFECT_DELETED);
                self.opt(version_id.as_deref());
            }
            Effect::Tags(tags) => {
                self.u8(EFFECT_TAGS);
                self.pairs(tags);
            }
            Effect::Bucket => self.u8(EFFECT_BUCKET),
        }
    }
    fn version(&mut self, v: &ObjectVersion) {
        self.u64(v.size);
        self.raw(&v.blake3);
        self.u32(v.chunks.len() as u32);
        for id in &v.chunks {
            self.raw(id.as_bytes());
        }
        self.str(&v.etag);
        self.opt(v.version_id.as_deref());
        for pairs in [&v.headers, &v.metadata, &v.tags] {
            self.pairs(pairs);
        }
    }
    /// Part sizes, checksums, then the upstream's Last-Modified (`0`, or `1` and µs).
    fn extras(&mut self, v: &ObjectVersion) {
        self.u32(u32::try_from(v.parts.len()).expect("invariant: at most 10,000 parts"));
        for size in &v.parts {
            self.u64(*size);
        }
        self.pairs(&v.checksums);
        match v.modified_us {
            None => self.u8(0),
            Some(us) => {
                self.u8(1);
                self.u64(us as u64);
            }
        }
    }
    fn pairs(&mut self, pairs: &[(String, String)]) {
        self.u32(pairs.len() as u32);
        for (k, v) in pairs {
            self.str(k);
            self.str(v);
        }
    }
}

struct Dec<'a>(&'a [u8]);

impl<'a> Dec<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError(format!("truncated: wanted {n} more bytes, {} left", self.0.len())));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("invariant: 4 bytes")))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("invariant: 8 bytes")))
    }
    fn array(&mut self) -> Result<[u8; 32], DecodeError> {
        Ok(self.take(32)?.try_into().expect("invariant: 32 bytes"))
    }
    /// A list length, refused if the remaining bytes cannot hold that many items of at
    /// least `min_item` bytes (so a forged count cannot allocate gigabytes).
    fn count(&mut self, min_item: usize) -> Result<usize, DecodeError> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_item) > self.0.len() {
            return Err(DecodeError(format!("count {n} exceeds the remaining bytes")));
        }
        Ok(n)
    }
    fn str(&mut self) -> Result<String, DecodeError> {
        let n = self.u32()? as usize;
        let bytes = self.take(n)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError("string is not UTF-8".into()))
    }
    fn opt(&mut self) -> Result<Option<String>, DecodeError> {
        match self.u8()? {
            0 => Ok(None),
            1 => self.str().map(Some),
            other => Err(DecodeError(format!("bad option tag {other}"))),
        }
    }
    fn intent(&mut self) -> Result<Intent, DecodeError> {
        let op = Op::from_code(self.u8()?).ok_or_else(|| DecodeError("unknown op".into()))?;
        Ok(Intent { op, bucket: self.str()?, key: self.str()?, access_key: self.str()?, request_id: self.str()? })
    }
    fn effect(&mut self) -> Result<Effect, DecodeError> {
        Ok(match self.u8()? {
            EFFECT_VERSION => Effect::Version(self.version()?),
            EFFECT_VERSION_PARTS => {
                let mut v = self.version()?;
                self.extras(&mut v)?;
                Effect::Version(v)
            }
            EFFECT_DELETED => Effect::Deleted { version_id: self.opt()? },
            EFFECT_TAGS => Effect::Tags(self.pairs()?),
            EFFECT_BUCKET => Effect::Bucket,
            other => return Err(DecodeError(format!("unknown effect {other}"))),
        })
    }
    fn version(&mut self) -> Result<ObjectVersion, DecodeError> {
        let size = self.u64()?;
        let blake3 = self.array()?;
        let n = self.count(32)?;
        let chunks = (0..n).map(|_| self.array().map(ChunkId)).collect::<Result<_, _>>()?;
        Ok(ObjectVersion {
            size,
            blake3,
            chunks,
            etag: self.str()?,
            version_id: self.opt()?,
            headers: self.pairs()?,
            metadata: self.pairs()?,
            tags: self.pairs()?,
            parts: Vec::new(),
            checksums: Vec::new(),
            modified_us: None,
        })
    }
    fn extras(&mut self, v: &mut ObjectVersion) -> Result<(), DecodeError> {
        let n = self.count(8)?;
        v.parts = (0..n).map(|_| self.u64()).collect::<Result<_, _>>()?;
        v.checksums = self.pairs()?;
        v.modified_us = match self.u8()? {
            0 => None,
            1 => Some(self.u64()? as i64),
            other => return Err(DecodeError(format!("bad option tag {other}"))),
        };
        Ok(())
    }
    fn pairs(&mut self) -> Result<Vec<(String, String)>, DecodeError> {
        let n = self.count(8)?;
        (0..n).map(|_| Ok((self.str()?, self.str()?))).collect()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::record::ObjectChange;

    fn op() -> impl Strategy<Value = Op> {
        prop::sample::select(Op::ALL.to_vec())
    }

    fn pairs() -> impl Strategy<Value = Vec<(String, String)>> {
        prop::collection::vec((".{0,12}", ".{0,20}"), 0..4)
    }

    fn body() -> impl Strategy<Value = Body> {
        let intent = (op(), ".{0,20}", ".{0,40}", "[A-Z0-9]{0,20}", ".{0,16}")
            .prop_map(|(op, bucket, key, access_key, request_id)| Intent { op, bucket, key, access_key, request_id })
            .boxed();
        let version = (
            any::<u64>(),
            any::<[u8; 32]>(),
            prop::collection::vec(any::<[u8; 32]>(), 0..5),
            ".{0,34}",
            prop::option::of(".{0,32}"),
            pairs(),
            pairs(),
            (pairs(), prop::collection::vec(any::<u64>(), 0..3), pairs(), prop::option::of(any::<i64>())),
        )
            .prop_map(
                |(size, blake3, chunks, etag, version_id, headers, metadata, (tags, parts, checksums, modified_us))| {
                    Effect::Version(ObjectVersion {
                        size,
                        blake3,
                        chunks: chunks.into_iter().map(ChunkId).collect(),
                        etag,
                        version_id,
                        headers,
                        metadata,
                        tags,
                        parts,
                        checksums,
                        modified_us,
                    })
                },
            );
        let effect = prop_oneof![
            version,
            prop::option::of(".{0,32}").prop_map(|version_id| Effect::Deleted { version_id }),
            pairs().prop_map(Effect::Tags),
            Just(Effect::Bucket),
        ]
        .boxed();
        let commit = (any::<u64>(), ".{0,20}", ".{0,40}", effect.clone())
            .prop_map(|(s, bucket, key, effect)| Body::Commit(Commit { intent: Seq(s), bucket, key, effect }));
        let abort = (any::<u64>(), ".{0,40}").prop_map(|(s, reason)| Body::Abort(Abort { intent: Seq(s), reason }));
        let observed =
            (intent.clone(), effect).prop_map(|(intent, effect)| Body::Observed(Observed { intent, effect }));
        prop_oneof![intent.prop_map(Body::Intent), commit, abort, observed]
    }

    proptest! {
        #[test]
        fn bodies_round_trip(b in body()) {
            prop_assert_eq!(Body::decode(&b.encode()).unwrap(), b);
        }

        /// The standalone version encoding (multipart state) round-trips and rejects cuts.
        #[test]
        fn versions_round_trip_on_their_own(b in body(), cut in any::<prop::sample::Index>()) {
            if let Some(ObjectChange { effect: Effect::Version(v), .. }) = b.into_change() {
                let encoded = v.encode();
                prop_assert_eq!(ObjectVersion::decode(&encoded).unwrap(), v);
                prop_assert!(ObjectVersion::decode(&encoded[..cut.index(encoded.len())]).is_err());
            }
        }

        /// Decoding arbitrary or truncated bytes fails cleanly, never panics.
        #[test]
        fn garbage_is_rejected_without_panicking(bytes in prop::collection::vec(any::<u8>(), 0..200), b in body(), cut in any::<prop::sample::Index>()) {
            let _ = Body::decode(&bytes);
            let encoded = b.encode();
            let cut = cut.index(encoded.len());
            prop_assert!(Body::decode(&encoded[..cut]).is_err());
        }
    }
}

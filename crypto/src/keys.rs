//! The key hierarchy.
//!
//! A random 256-bit **master key** is stored only wrapped (AES-256-GCM) under a
//! **key-encryption key**: either the random key in the operator's key file, or one
//! derived from a passphrase with Argon2id. Every working key is derived from the master
//! key with BLAKE3 `derive_key` under its own context string, so no two uses share a key.
//!
//! Wrapped master key format (version 1, stored in the vault next to what it protects):
//! `"RWKEY" | version (1) | kdf (1: key file, 2: Argon2id) | [Argon2id: m_cost u32le,
//! t_cost u32le, p_cost u32le, salt 16] | vault id 16 | envelope(master key)`, where the
//! envelope's associated data is every byte before it, so parameters cannot be swapped.

use std::fmt;

use rewind_model::ChunkId;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::CryptoError;
use crate::aead::{self, random_bytes};

const MAGIC: &[u8; 5] = b"RWKEY";
const WRAP_V1: u8 = 1;
const KDF_KEY_FILE: u8 = 1;
const KDF_ARGON2ID: u8 = 2;
const KEY_FILE_PREFIX: &str = "rewind-key-v1:";

/// Context strings for BLAKE3 `derive_key`; changing one changes every derived key.
mod context {
    pub const CHUNK_ID: &str = "rewind 2026-11 chunk id MAC";
    pub const CHUNK_ENCRYPTION: &str = "rewind 2026-11 chunk encryption";
    pub const PACK_HEADER: &str = "rewind 2026-11 pack header encryption";
    pub const JOURNAL: &str = "rewind 2026-11 journal record encryption";
    pub const CHECKPOINT: &str = "rewind 2026-11 checkpoint signing";
    pub const CHUNKER_SEED: &str = "rewind 2026-11 chunker seed";
    pub const LOG_FINGERPRINT: &str = "rewind 2026-11 log key fingerprint";
    pub const VAULT_PARAMS: &str = "rewind 2026-11 vault parameters MAC";
}

/// 32 secret bytes, wiped from memory when dropped and never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SecretKey([u8; 32]);

impl SecretKey {
    /// A fresh random key.
    pub fn generate() -> Result<Self, CryptoError> {
        let mut k = [0u8; 32];
        random_bytes(&mut k)?;
        Ok(Self(k))
    }

    /// The key bytes, for the cipher or MAC that uses them.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

/// Every working key, derived from the master key.
#[derive(Debug, Clone)]
pub struct KeySet {
    chunk_id: SecretKey,
    chunk_encryption: SecretKey,
    /// Encrypts pack headers.
    pub pack_header: SecretKey,
    /// Encrypts journal record bodies.
    pub journal: SecretKey,
    /// Authenticates checkpoints.
    pub checkpoint: SecretKey,
    /// Keys the fingerprints of object keys in logs.
    log_fingerprint: SecretKey,
    /// Authenticates the vault's parameters (`vault.toml`).
    pub vault_params: SecretKey,
    /// Seeds the content-defined chunker, so chunk boundaries (visible as sizes in the
    /// vault) cannot be used to confirm that a vault holds some known content.
    pub chunker_seed: u64,
}

impl KeySet {
    /// Derives every working key from `master`.
    pub fn derive(master: &SecretKey) -> Self {
        let derive = |ctx: &str| SecretKey(blake3::derive_key(ctx, master.expose()));
        Self {
            chunk_id: derive(context::CHUNK_ID),
            chunk_encryption: derive(context::CHUNK_ENCRYPTION),
            pack_header: derive(context::PACK_HEADER),
            journal: derive(context::JOURNAL),
            checkpoint: derive(context::CHECKPOINT),
            log_fingerprint: derive(context::LOG_FINGERPRINT),
            vault_params: derive(context::VAULT_PARAMS),
            chunker_seed: u64::from_le_bytes(
                blake3::derive_key(context::CHUNKER_SEED, master.expose())[..8]
                    .try_into()
                    .expect("invariant: 8 of 32 bytes"),
            ),
        }
    }

    /// The key object keys are fingerprinted with in logs (see `rewind_model::LogKey`).
    pub fn log_fingerprint(&self) -> [u8; 32] {
        *self.log_fingerprint.expose()
    }

    /// The key journal records of `epoch` are sealed with: records are many (a few per
    /// mutation) and their nonces random, so each run of 2^24 records gets a key of its own,
    /// far below the 2^32 messages a key takes before random nonces risk a collision
    /// (review R2).
    pub fn record_key(&self, epoch: u64) -> Zeroizing<[u8; 32]> {
        let mut h = blake3::Hasher::new_keyed(self.journal.expose());
        h.update(b"rewind record epoch v1");
        h.update(&epoch.to_le_bytes());
        Zeroizing::new(*h.finalize().as_bytes())
    }

    /// The key pending state stored under `name` is sealed with: one per name (a multipart
    /// upload's template or part), so no key seals more than a handful of messages.
    pub fn pending_key(&self, name: &[u8]) -> Zeroizing<[u8; 32]> {
        let mut h = blake3::Hasher::new_keyed(self.journal.expose());
        h.update(b"rewind pending state v2");
        h.update(name);
        Zeroizing::new(*h.finalize().as_bytes())
    }

    /// The secret access key of the time-travel view `access_key_id`: derived, never
    /// stored, so a view survives a rebuild with nothing secret in the journal. 40 hex
    /// characters (160 bits), as long as an AWS secret key.
    pub fn view_secret(&self, access_key_id: &str) -> Zeroizing<String> {
        use std::fmt::Write as _;
        let mut h = blake3::Hasher::new_keyed(self.journal.expose());
        h.update(b"rewind view secret v1");
        h.update(access_key_id.as_bytes());
        let digest = Zeroizing::new(*h.finalize().as_bytes());
        let mut out = Zeroizing::new(String::with_capacity(40));
        for b in &digest[..20] {
            let _ = write!(out, "{b:02x}");
        }
        out
    }

    /// A chunk's identity: keyed BLAKE3 of its plaintext.
    pub fn chunk_id(&self, plaintext: &[u8]) -> ChunkId {
        ChunkId(*blake3::keyed_hash(self.chunk_id.expose(), plaintext).as_bytes())
    }

    /// Encrypts a chunk's stored form under the key for `id`, bound to `id`.
    pub fn seal_chunk(&self, id: &ChunkId, stored: &[u8]) -> Result<Vec<u8>, CryptoError> {
        aead::seal(&self.chunk_key(id), id.as_bytes(), stored)
    }

    /// [`KeySet::seal_chunk`] of a plaintext already in `buf` after the envelope's head
    /// room ([`aead::seal_prepared`]): `buf` becomes the envelope.
    pub fn seal_chunk_prepared(&self, id: &ChunkId, buf: &mut Vec<u8>) -> Result<(), CryptoError> {
        aead::seal_prepared(&self.chunk_key(id), id.as_bytes(), buf)
    }

    /// Decrypts what [`KeySet::seal_chunk`] made for `id`.
    pub fn open_chunk(&self, id: &ChunkId, sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        aead::open(&self.chunk_key(id), id.as_bytes(), sealed, "chunk")
    }

    /// [`KeySet::open_chunk`] where the envelope lies; returns where its plaintext is.
    pub fn open_chunk_in_place(&self, id: &ChunkId, sealed: &mut [u8]) -> Result<std::ops::Range<usize>, CryptoError> {
        aead::open_in_place(&self.chunk_key(id), id.as_bytes(), sealed, "chunk")
    }

    /// Each chunk gets its own AES key, so nonce reuse across chunks is impossible.
    fn chunk_key(&self, id: &ChunkId) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(*blake3::keyed_hash(self.chunk_encryption.expose(), id.as_bytes()).as_bytes())
    }
}

/// Argon2id cost parameters for passphrase-wrapped keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Params {
    /// Memory in KiB.
    pub m_cost: u32,
    /// Iterations.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
}

impl Default for Argon2Params {
    /// 64 MiB, 3 passes, 1 lane: about a quarter second here, and well above OWASP's floor.
    fn default() -> Self {
        Self { m_cost: 64 * 1024, t_cost: 3, p_cost: 1 }
    }
}

/// What unlocks the master key.
pub enum Unlock<'a> {
    /// The random key in a key file (its text, see [`key_file_text`]).
    KeyFile(&'a SecretKey),
    /// A passphrase, stretched with Argon2id.
    Passphrase(&'a str),
}

/// A new random key for a key file, and the file's text (`rewind-key-v1:<hex>`).
pub fn key_file_text(key: &SecretKey) -> Zeroizing<String> {
    let mut text = Zeroizing::new(String::with_capacity(KEY_FILE_PREFIX.len() + 65));
    text.push_str(KEY_FILE_PREFIX);
    for b in key.expose() {
        text.push_str(&format!("{b:02x}"));
    }
    text.push('\n');
    text
}

/// Parses a key file's text.
pub fn parse_key_file(text: &str) -> Result<SecretKey, CryptoError> {
    let malformed = |detail: &str| CryptoError::Malformed { what: "key file", detail: detail.to_owned() };
    let hex =
        text.trim().strip_prefix(KEY_FILE_PREFIX).ok_or_else(|| malformed("it does not start with rewind-key-v1:"))?;
    // Checked as ASCII first: slicing multi-byte text by byte offsets would panic.
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(malformed("the key must be 64 hex digits"));
    }
    let mut key = [0u8; 32];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| malformed("the key is not hexadecimal"))?;
    }
    Ok(SecretKey(key))
}

/// The master key wrapped for storage, with the vault it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedMasterKey {
    /// Serialized form (see the module documentation).
    pub bytes: Vec<u8>,
}

impl WrappedMasterKey {
    /// Wraps `master` of vault `vault_id` so that `unlock` opens it.
    pub fn wrap(
        master: &SecretKey,
        vault_id: [u8; 16],
        unlock: Unlock<'_>,
        params: Argon2Params,
    ) -> Result<Self, CryptoError> {
        let mut header = MAGIC.to_vec();
        header.push(WRAP_V1);
        let kek = match unlock {
            Unlock::KeyFile(key) => {
                header.push(KDF_KEY_FILE);
                key.clone()
            }
            Unlock::Passphrase(passphrase) => {
                let mut salt = [0u8; 16];
                random_bytes(&mut salt)?;
                header.push(KDF_ARGON2ID);
                for v in [params.m_cost, params.t_cost, params.p_cost] {
                    header.extend_from_slice(&v.to_le_bytes());
                }
                header.extend_from_slice(&salt);
                argon2_key(passphrase, &salt, params)?
            }
        };
        header.extend_from_slice(&vault_id);
        let envelope = aead::seal(kek.expose(), &header, master.expose())?;
        header.extend_from_slice(&envelope);
        Ok(Self { bytes: header })
    }

    /// The vault id recorded in the wrapped key.
    pub fn vault_id(&self) -> Result<[u8; 16], CryptoError> {
        let (header_len, _) = self.layout()?;
        Ok(self.bytes[header_len - 16..header_len].try_into().expect("invariant: layout checked"))
    }

    /// Unwraps the master key; a wrong key file or passphrase gives [`CryptoError::WrongKey`].
    pub fn unwrap(&self, unlock: Unlock<'_>) -> Result<SecretKey, CryptoError> {
        let (header_len, params) = self.layout()?;
        let kek = match (unlock, params) {
            (Unlock::KeyFile(key), None) => key.clone(),
            (Unlock::Passphrase(p), Some((params, salt))) => argon2_key(p, &salt, params)?,
            (Unlock::KeyFile(_), Some(_)) => {
                return Err(CryptoError::Kdf("this vault's key is protected by a passphrase, not a key file".into()));
            }
            (Unlock::Passphrase(_), None) => {
                return Err(CryptoError::Kdf("this vault's key is protected by a key file, not a passphrase".into()));
            }
        };
        let (header, envelope) = self.bytes.split_at(header_len);
        let plain = aead::open(kek.expose(), header, envelope, "wrapped master key").map_err(|e| match e {
            CryptoError::Tampered { .. } => CryptoError::WrongKey,
            other => other,
        })?;
        let plain = Zeroizing::new(plain);
        let key: [u8; 32] = plain.as_slice().try_into().map_err(|_| CryptoError::Malformed {
            what: "wrapped master key",
            detail: "the key inside is not 32 bytes".into(),
        })?;
        Ok(SecretKey(key))
    }

    /// Header length and, for passphrase wrapping, the Argon2 parameters and salt.
    #[allow(clippy::type_complexity)]
    fn layout(&self) -> Result<(usize, Option<(Argon2Params, [u8; 16])>), CryptoError> {
        let malformed = |detail: &str| CryptoError::Malformed { what: "wrapped master key", detail: detail.to_owned() };
        let b = &self.bytes;
        if b.len() < 7 || &b[..5] != MAGIC {
            return Err(malformed("not a Rewind key (bad magic)"));
        }
        if b[5] != WRAP_V1 {
            return Err(malformed(&format!("unknown version {}", b[5])));
        }
        let (params, after) = match b[6] {
            KDF_KEY_FILE => (None, 7),
            KDF_ARGON2ID if b.len() >= 7 + 12 + 16 => {
                let word = |i: usize| {
                    u32::from_le_bytes(b[7 + 4 * i..11 + 4 * i].try_into().expect("invariant: length checked"))
                };
                let params = Argon2Params { m_cost: word(0), t_cost: word(1), p_cost: word(2) };
                let salt = b[19..35].try_into().expect("invariant: length checked");
                (Some((params, salt)), 35)
            }
            other => return Err(malformed(&format!("unknown key derivation {other}"))),
        };
        let header_len = after + 16;
        if b.len() < header_len + aead::ENVELOPE_OVERHEAD {
            return Err(malformed("truncated"));
        }
        Ok((header_len, params))
    }
}

fn argon2_key(passphrase: &str, salt: &[u8; 16], p: Argon2Params) -> Result<SecretKey, CryptoError> {
    let params =
        argon2::Params::new(p.m_cost, p.t_cost, p.p_cost, Some(32)).map_err(|e| CryptoError::Kdf(e.to_string()))?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut key = [0u8; 32];
    argon.hash_password_into(passphrase.as_bytes(), salt, &mut key).map_err(|e| CryptoError::Kdf(e.to_string()))?;
    Ok(SecretKey(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cheap parameters: the tests check the format, not the cost.
    const FAST: Argon2Params = Argon2Params { m_cost: 256, t_cost: 1, p_cost: 1 };

    #[test]
    fn key_file_wrapping_round_trips_and_rejects_other_keys() {
        let master = SecretKey::generate().unwrap();
        let kek = SecretKey::generate().unwrap();
        let wrapped = WrappedMasterKey::wrap(&master, [7; 16], Unlock::KeyFile(&kek), FAST).unwrap();
        assert_eq!(wrapped.vault_id().unwrap(), [7; 16]);
        assert_eq!(wrapped.unwrap(Unlock::KeyFile(&kek)).unwrap().expose(), master.expose());
        let other = SecretKey::generate().unwrap();
        assert!(matches!(wrapped.unwrap(Unlock::KeyFile(&other)), Err(CryptoError::WrongKey)));
        assert!(matches!(wrapped.unwrap(Unlock::Passphrase("x")), Err(CryptoError::Kdf(_))));
    }

    #[test]
    fn passphrase_wrapping_round_trips_and_rejects_other_passphrases() {
        let master = SecretKey::generate().unwrap();
        let wrapped = WrappedMasterKey::wrap(&master, [1; 16], Unlock::Passphrase("correct horse"), FAST).unwrap();
        assert_eq!(wrapped.unwrap(Unlock::Passphrase("correct horse")).unwrap().expose(), master.expose());
        assert!(matches!(wrapped.unwrap(Unlock::Passphrase("wrong horse")), Err(CryptoError::WrongKey)));
    }

    #[test]
    fn tampering_with_the_wrapped_key_or_its_parameters_is_detected() {
        let kek = SecretKey::generate().unwrap();
        let wrapped =
            WrappedMasterKey::wrap(&SecretKey::generate().unwrap(), [3; 16], Unlock::KeyFile(&kek), FAST).unwrap();
        for i in 0..wrapped.bytes.len() {
            let mut bad = wrapped.clone();
            bad.bytes[i] ^= 0x40;
            assert!(bad.unwrap(Unlock::KeyFile(&kek)).is_err(), "byte {i} altered unnoticed");
        }
    }

    #[test]
    fn key_files_round_trip_and_bad_ones_say_why() {
        let key = SecretKey::generate().unwrap();
        let text = key_file_text(&key);
        assert_eq!(parse_key_file(&text).unwrap().expose(), key.expose());
        assert!(parse_key_file("rewind-key-v1:abcd").unwrap_err().to_string().contains("64 hex digits"));
        assert!(parse_key_file("something else").unwrap_err().to_string().contains("rewind-key-v1"));
        assert!(!format!("{key:?}").contains(&text[KEY_FILE_PREFIX.len()..KEY_FILE_PREFIX.len() + 8]));
    }

    #[test]
    fn derived_keys_are_distinct_and_chunks_are_bound_to_their_id() {
        let keys = KeySet::derive(&SecretKey::generate().unwrap());
        let all = [&keys.chunk_id, &keys.chunk_encryption, &keys.pack_header, &keys.journal, &keys.checkpoint];
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(a.expose(), b.expose());
            }
        }
        let (a, b) = (keys.chunk_id(b"alpha"), keys.chunk_id(b"beta"));
        assert_ne!(a, b);
        assert_ne!(a.0, *blake3::hash(b"alpha").as_bytes(), "ids are keyed, not plain hashes");
        let sealed = keys.seal_chunk(&a, b"alpha").unwrap();
        assert_eq!(keys.open_chunk(&a, &sealed).unwrap(), b"alpha");
        assert!(keys.open_chunk(&b, &sealed).is_err(), "a chunk cannot be passed off as another");
    }
}

#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// A key file of any text is either a key or an error: never a panic.
        #[test]
        fn key_files_of_any_text_parse_or_fail(text in ".{0,200}") {
            let _ = parse_key_file(&text);
        }

        /// Two hex digits replaced by one two-byte character keep the length at 64 bytes:
        /// slicing that by byte offsets panicked before the digits were checked first.
        #[test]
        fn a_multi_byte_character_in_a_key_file_is_an_error(at in 0usize..63) {
            let text = key_file_text(&SecretKey::generate().unwrap());
            let hex = text.trim().strip_prefix(KEY_FILE_PREFIX).unwrap();
            let damaged = format!("{KEY_FILE_PREFIX}{}é{}", &hex[..at], &hex[at + 2..]);
            prop_assert!(parse_key_file(&damaged).is_err());
        }

        /// A real key file with any character changed (including to a multi-byte one)
        /// parses or fails, never panics.
        #[test]
        fn a_damaged_key_file_never_panics(at in any::<prop::sample::Index>(), c in any::<char>()) {
            let text = key_file_text(&SecretKey::generate().unwrap());
            let mut chars: Vec<char> = text.chars().collect();
            let i = at.index(chars.len());
            chars[i] = c;
            let _ = parse_key_file(&chars.into_iter().collect::<String>());
        }
    }
}

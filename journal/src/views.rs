//! Time-travel views: read-only access keys that show one bucket as it was at one journal
//! position. The journal keeps each view (`meta` key `view/` + access key id) so that it
//! survives a restart, and ships it with the snapshot labels so that it survives a
//! rebuild. A view's secret is never stored: it is derived from the vault key and the
//! access key id (`KeySet::view_secret`).

use rewind_model::Seq;

use crate::engine::{EngineExt, Table, Write};
use crate::{Journal, JournalError, layout};

/// A view as the journal keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewEntry {
    /// The access key id clients sign with.
    pub access_key_id: String,
    /// The bucket it shows.
    pub bucket: String,
    /// The position it shows the bucket at (the state after that record).
    pub seq: Seq,
    /// The instant it was asked for, µs since the epoch.
    pub at_us: i64,
    /// When it was made, µs since the epoch.
    pub created_us: i64,
    /// When it stops answering, µs since the epoch.
    pub expires_us: i64,
}

impl ViewEntry {
    /// Whether it still answers at `now_us`.
    pub fn is_open(&self, now_us: i64) -> bool {
        now_us < self.expires_us
    }
}

/// How every view's access key id begins (client keys begin `RWND`).
pub const VIEW_KEY_PREFIX: &str = "RWVW";

/// A fresh view access key id: the prefix and 16 random upper-case letters and digits.
pub fn new_access_key_id() -> Result<String, rewind_crypto::CryptoError> {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut random = [0u8; 16];
    rewind_crypto::aead::random_bytes(&mut random)?;
    let tail: String = random.iter().map(|b| char::from(ALPHABET[usize::from(b & 31)])).collect();
    Ok(format!("{VIEW_KEY_PREFIX}{tail}"))
}

const VIEW_V1: u8 = 1;

/// The `meta` value of a view: `version (1) | seq | at µs | created µs | expires µs` (each
/// 8 bytes big-endian) then the bucket name.
fn encode(v: &ViewEntry) -> Vec<u8> {
    let mut out = Vec::with_capacity(33 + v.bucket.len());
    out.push(VIEW_V1);
    out.extend_from_slice(&v.seq.0.to_be_bytes());
    for n in [v.at_us, v.created_us, v.expires_us] {
        out.extend_from_slice(&n.to_be_bytes());
    }
    out.extend_from_slice(v.bucket.as_bytes());
    out
}

fn decode(access_key_id: &str, bytes: &[u8]) -> Result<ViewEntry, JournalError> {
    let malformed = || JournalError::Corrupt { seq: Seq(0), detail: format!("view {access_key_id} is malformed") };
    if bytes.len() < 33 || bytes[0] != VIEW_V1 {
        return Err(malformed());
    }
    let n = |i: usize| -> [u8; 8] { bytes[1 + 8 * i..9 + 8 * i].try_into().expect("invariant: 8 bytes") };
    Ok(ViewEntry {
        access_key_id: access_key_id.to_owned(),
        seq: Seq(u64::from_be_bytes(n(0))),
        at_us: i64::from_be_bytes(n(1)),
        created_us: i64::from_be_bytes(n(2)),
        expires_us: i64::from_be_bytes(n(3)),
        bucket: String::from_utf8(bytes[33..].to_vec()).map_err(|_| malformed())?,
    })
}

impl Journal {
    /// Keeps a view, durably; `false` if its access key id is taken.
    pub async fn view_put(&self, view: &ViewEntry) -> Result<bool, JournalError> {
        let key = layout::view_key(&view.access_key_id);
        self.meta_change_if(key.clone(), false, Write::Put(Table::Meta, key, encode(view))).await
    }

    /// Removes a view; `false` if there was none.
    pub async fn view_delete(&self, access_key_id: &str) -> Result<bool, JournalError> {
        let key = layout::view_key(access_key_id);
        self.meta_change_if(key.clone(), true, Write::Delete(Table::Meta, key)).await
    }

    /// The view of `access_key_id`, open or expired.
    pub fn view(&self, access_key_id: &str) -> Result<Option<ViewEntry>, JournalError> {
        match self.engine.get(Table::Meta, &layout::view_key(access_key_id))? {
            Some(bytes) => decode(access_key_id, &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Every view, open or expired, by access key id.
    pub fn views(&self) -> Result<Vec<ViewEntry>, JournalError> {
        let mut out = Vec::new();
        self.engine.scan_prefix(Table::Meta, layout::VIEW_PREFIX, &mut |k, v| {
            let id = String::from_utf8_lossy(&k[layout::VIEW_PREFIX.len()..]).into_owned();
            out.push(decode(&id, v)?);
            Ok(())
        })?;
        Ok(out)
    }

    /// Restores views shipped from another journal (a rebuild from the vault); those
    /// showing a position past this journal's head are left out. Returns how many were kept.
    pub async fn import_views(&self, views: &[ViewEntry]) -> Result<usize, JournalError> {
        let head = self.head()?.seq;
        let writes: Vec<Write> = views
            .iter()
            .filter(|v| v.seq <= head)
            .map(|v| Write::Put(Table::Meta, layout::view_key(&v.access_key_id), encode(v)))
            .collect();
        let kept = writes.len();
        self.change(Box::new(move |_| Ok(writes))).await?;
        Ok(kept)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_view_round_trips_and_damage_is_an_error() {
        let v = ViewEntry {
            access_key_id: "RWVIEW123".into(),
            bucket: "photos".into(),
            seq: Seq(42),
            at_us: 1,
            created_us: 2,
            expires_us: 3,
        };
        assert_eq!(decode("RWVIEW123", &encode(&v)).unwrap(), v);
        assert!(decode("x", &encode(&v)[..20]).is_err());
        assert!(v.is_open(2) && !v.is_open(3));
        let (a, b) = (new_access_key_id().unwrap(), new_access_key_id().unwrap());
        assert!(a.starts_with(VIEW_KEY_PREFIX) && a.len() == 20 && a != b);
    }
}

//! Rewind's cryptography: the key hierarchy, keyed BLAKE3 chunk ids, and AES-256-GCM
//! envelopes. Secrets are zeroized when dropped and never formatted.

pub mod aead;
mod error;
pub mod keys;

pub use error::CryptoError;
pub use keys::{Argon2Params, KeySet, SecretKey, Unlock, WrappedMasterKey};

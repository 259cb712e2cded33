//! The crypto crate's errors.

use rewind_model::ErrorClass;

/// What went wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// Authentication failed while unwrapping a key: the key file or passphrase is wrong
    /// (or the wrapped key was altered; the two cannot be told apart).
    #[error("wrong key file or passphrase: the vault's master key does not decrypt with it")]
    WrongKey,
    /// Authenticated data did not verify: it was altered or belongs elsewhere.
    #[error("{what} failed authentication: it is corrupted or was tampered with")]
    Tampered {
        /// What was being opened.
        what: &'static str,
    },
    /// Bytes that do not have the expected structure.
    #[error("{what} is malformed: {detail}")]
    Malformed {
        /// What was being parsed.
        what: &'static str,
        /// How it is malformed.
        detail: String,
    },
    /// A passphrase-derived key could not be computed (bad parameters).
    #[error("passphrase key derivation failed: {0}")]
    Kdf(String),
    /// The system random number generator failed.
    #[error("the system random number generator failed")]
    Random,
}

impl CryptoError {
    /// The error's class.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::WrongKey | Self::Kdf(_) => ErrorClass::InvalidInput,
            Self::Tampered { .. } | Self::Malformed { .. } => ErrorClass::Corruption,
            Self::Random => ErrorClass::Transient,
        }
    }
}

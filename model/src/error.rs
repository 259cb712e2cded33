//! How a caller should treat an error, whichever crate raised it.

/// How a caller should treat an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// May succeed if retried.
    Transient,
    /// Will not succeed as asked.
    Permanent,
    /// Stored data is damaged.
    Corruption,
    /// The caller's input is wrong.
    InvalidInput,
}

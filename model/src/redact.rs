//! Object keys in logs go through [`LogKey`]: keys are customer data (file names, user
//! ids, paths) and must not leak into log pipelines unless the operator opted in.
//!
//! The fingerprint is a BLAKE3 keyed with a key derived from the vault's master key, so
//! it stays the same across restarts of one installation, but someone who reads the logs
//! cannot confirm a guessed key by hashing it (review R12). Until the gateway has opened
//! its vault, a random per-process key stands in.

use std::fmt;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

/// Process-wide switch; redaction is on until the operator turns it off.
static REDACT_KEYS: AtomicBool = AtomicBool::new(true);
/// The fingerprint key, once the vault is open.
static FINGERPRINT_KEY: OnceLock<[u8; 32]> = OnceLock::new();
/// Until then: random for this process.
static PROCESS_KEY: OnceLock<[u8; 32]> = OnceLock::new();

/// Turns key redaction in logs on or off for the whole process (from configuration).
pub fn set_key_redaction(on: bool) {
    REDACT_KEYS.store(on, Ordering::Relaxed);
}

/// Sets the key fingerprints are computed with (once per process; later calls are ignored).
pub fn set_key_fingerprint_key(key: [u8; 32]) {
    let _first_wins = FINGERPRINT_KEY.set(key);
}

fn fingerprint_key() -> &'static [u8; 32] {
    FINGERPRINT_KEY.get().unwrap_or_else(|| {
        PROCESS_KEY.get_or_init(|| {
            // Enough for an unguessable stand-in: the address space layout and the time.
            let seed = format!("{:p}{:?}", &PROCESS_KEY, std::time::SystemTime::now());
            *blake3::hash(seed.as_bytes()).as_bytes()
        })
    })
}

/// Displays an object key for logs: by default a short keyed fingerprint and the key's
/// length, which lets an operator correlate log lines for one key without revealing it.
#[derive(Clone, Copy)]
pub struct LogKey<'a>(pub &'a str);

impl fmt::Display for LogKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if REDACT_KEYS.load(Ordering::Relaxed) {
            let digest = blake3::keyed_hash(fingerprint_key(), self.0.as_bytes());
            let hex = digest.to_hex();
            write!(f, "key#{}/{}", &hex.as_str()[..12], self.0.len())
        } else {
            // Debug formatting escapes control characters a key may legally contain.
            write!(f, "{:?}", self.0)
        }
    }
}

impl fmt::Debug for LogKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // One test covers both modes: the switch is process-wide and tests run in parallel.
    #[test]
    fn redacts_by_default_and_reveals_when_asked() {
        let shown = LogKey("payroll/2026/alice.csv").to_string();
        assert!(!shown.contains("alice"), "{shown}");
        assert!(shown.starts_with("key#") && shown.ends_with("/22"), "{shown}");
        assert_eq!(shown, LogKey("payroll/2026/alice.csv").to_string(), "stable fingerprint");
        assert_ne!(shown, LogKey("payroll/2026/bob.csv").to_string());

        set_key_redaction(false);
        assert_eq!(LogKey("a\nb").to_string(), "\"a\\nb\"");
        set_key_redaction(true);
    }
}

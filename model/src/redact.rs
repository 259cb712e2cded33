//! Object keys in logs go through [`LogKey`]: keys are customer data (file names, user
//! ids, paths) and must not leak into log pipelines unless the operator opted in.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

/// Process-wide switch; redaction is on until the operator turns it off.
static REDACT_KEYS: AtomicBool = AtomicBool::new(true);

/// Turns key redaction in logs on or off for the whole process (from configuration).
pub fn set_key_redaction(on: bool) {
    REDACT_KEYS.store(on, Ordering::Relaxed);
}

/// Displays an object key for logs: by default a short BLAKE3 fingerprint and the key's
/// length, which lets an operator correlate log lines for one key without revealing it.
#[derive(Clone, Copy)]
pub struct LogKey<'a>(pub &'a str);

impl fmt::Display for LogKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if REDACT_KEYS.load(Ordering::Relaxed) {
            let digest = blake3::hash(self.0.as_bytes());
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

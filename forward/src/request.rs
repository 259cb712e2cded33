//! What one request learns as it is served, shared between the HTTP layer (which logs
//! and counts) and the S3 layer (which resolves the operation and streams the body).

use std::sync::{Mutex, OnceLock};

pub use rewind_embedded::body::BodyFault;

/// Facts about one request, filled in as they become known.
#[derive(Debug, Default)]
pub struct RequestInfo {
    resolved: Mutex<Resolved>,
    fault: OnceLock<BodyFault>,
    id: OnceLock<String>,
    /// The access key of a SigV2 signature the HTTP layer verified (and removed).
    signed_v2: OnceLock<String>,
}

/// What s3s resolved: the operation, and the names it acts on.
#[derive(Debug, Default, Clone)]
pub struct Resolved {
    /// S3 operation name (`PutObject`).
    pub operation: Option<String>,
    /// Bucket, when the request names one.
    pub bucket: Option<String>,
    /// Object key, when the request names one.
    pub key: Option<String>,
    /// The client's access key id (not secret; identifies who acted).
    pub access_key: Option<String>,
}

impl RequestInfo {
    /// Who the request acts for, as a journal intent records it.
    pub fn actor(&self) -> rewind_capture::Actor {
        rewind_capture::Actor {
            access_key: self.resolved().access_key.unwrap_or_default(),
            request_id: self.id().to_owned(),
        }
    }

    /// Records what the access check saw.
    pub fn resolve(&self, resolved: Resolved) {
        *self.resolved.lock().expect("invariant: no panics while holding this lock") = resolved;
    }

    /// A copy of what was resolved so far.
    pub fn resolved(&self) -> Resolved {
        self.resolved.lock().expect("invariant: no panics while holding this lock").clone()
    }

    /// This request's id (random, made on first use): journal records and log lines carry it.
    pub fn id(&self) -> &str {
        self.id.get_or_init(|| format!("{:016x}", rand::random::<u64>()))
    }

    /// Records that the HTTP layer verified a SigV2 signature made with `access_key`.
    pub fn set_signed_v2(&self, access_key: String) {
        let _once = self.signed_v2.set(access_key);
    }

    /// The access key of a verified SigV2 signature, if the request carried one.
    pub fn signed_v2(&self) -> Option<&str> {
        self.signed_v2.get().map(String::as_str)
    }

    /// The body fault, if the body failed.
    pub fn fault(&self) -> Option<&BodyFault> {
        self.fault.get()
    }
}

impl rewind_embedded::body::FaultSink for RequestInfo {
    /// Records a body fault; later ones are ignored.
    fn set_fault(&self, fault: BodyFault) {
        let _first_wins = self.fault.set(fault);
    }

    fn recorded(&self) -> Option<BodyFault> {
        self.fault.get().cloned()
    }
}

/// Marks an unsigned request the gateway forwards (`server.allow_anonymous`): it goes to
/// the upstream unsigned too, so the upstream's policies decide what it may do.
#[derive(Debug, Clone, Copy)]
pub struct Anonymous;

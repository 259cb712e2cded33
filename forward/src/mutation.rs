//! One mutation of a protected key in flight, as a guard: [`Forwarder::mutation`] takes
//! the key's lock, captures the version the mutation would destroy and journals its intent
//! (steps 1 to 3 of `rewind_capture`'s protocol); [`Mutation::forward`] sends it upstream,
//! aborting the intent if the upstream refuses (step 4); [`Mutation::finish`] commits what
//! it did, or aborts (step 5). A mutation dropped before it is finished (the client went
//! away) releases the lock and leaves its intent to be aborted or recovered.

use std::sync::Arc;

use rewind_capture::{Capture, CaptureError, Held, Pending, TeeError};
use rewind_model::{Effect, ObjectVersion, Op};
use rewind_vault::Manifest;
use s3s::dto;
use s3s::{S3Error, S3Response, S3Result};

use crate::errors::{self, Applied};
use crate::request::RequestInfo;
use crate::s3::Forwarder;
use crate::tee::{Ending, Gate};
use rewind_capture::metrics::refusal;

/// Counts a refusal and says why, as an S3 error.
pub(crate) fn refuse(capture: &Capture, operation: &str, err: &CaptureError, applied: Applied) -> S3Error {
    capture.refused(err.reason());
    errors::capture_refused(operation, err, applied)
}

/// Refuses a write of `actor` to `bucket` while an incident in protect mode holds it.
pub(crate) fn refuse_if_tripped(capture: &Capture, actor: &str, bucket: &str) -> S3Result<()> {
    match capture.tripwire().refusing(actor, bucket) {
        Some(incident) => {
            capture.metrics().tripwire_refused.inc();
            Err(errors::tripwire_refused(&incident))
        }
        None => Ok(()),
    }
}

/// A mutation whose intent is journaled, not yet resolved.
pub(crate) struct Mutation<'a> {
    forwarder: &'a Forwarder,
    capture: &'a Capture,
    operation: &'static str,
    info: &'a RequestInfo,
    pending: Pending,
    /// The key's lock (none for bucket operations), held until the mutation is resolved.
    _lock: Option<Held>,
    /// For the tripwire: who acts, where, on which version, and whether with SSE-C.
    actor: String,
    bucket: String,
    replaced: Option<ObjectVersion>,
    sse_c: bool,
}

impl Forwarder {
    /// Steps 1 to 3 for one key: its lock, capture-before-destroy, the intent.
    pub(crate) async fn mutation<'a>(
        &'a self,
        capture: &'a Capture,
        operation: &'static str,
        op: Op,
        (bucket, key): (&str, &str),
        version_id: Option<&str>,
        info: &'a RequestInfo,
    ) -> S3Result<Mutation<'a>> {
        self.check_key(key)?;
        let actor = info.actor();
        refuse_if_tripped(capture, &actor.access_key, bucket)?;
        let lock = capture.lock(bucket, key).await.map_err(|e| refuse(capture, operation, &e, Applied::No))?;
        let replaced = match capture.protect(bucket, key, version_id, &actor).await {
            Ok(p) => p.replaced,
            Err(e) => {
                capture.refused(refusal::CAPTURE_BEFORE_DESTROY);
                return Err(errors::capture_refused(operation, &e, Applied::No));
            }
        };
        let pending =
            capture.begin(op, bucket, key, &actor).await.map_err(|e| refuse(capture, operation, &e, Applied::No))?;
        Ok(Mutation {
            forwarder: self,
            capture,
            operation,
            info,
            pending,
            _lock: Some(lock),
            actor: actor.access_key,
            bucket: bucket.to_owned(),
            replaced,
            sse_c: false,
        })
    }

    /// Step 3 for a bucket operation (CreateBucket, DeleteBucket, a configuration): its
    /// intent; bucket operations take no key lock.
    pub(crate) async fn bucket_mutation<'a>(
        &'a self,
        capture: &'a Capture,
        operation: &'static str,
        op: Op,
        bucket: &str,
        info: &'a RequestInfo,
    ) -> S3Result<Mutation<'a>> {
        let actor = info.actor();
        let pending =
            capture.begin(op, bucket, "", &actor).await.map_err(|e| refuse(capture, operation, &e, Applied::No))?;
        Ok(Mutation {
            forwarder: self,
            capture,
            operation,
            info,
            pending,
            _lock: None,
            actor: actor.access_key,
            bucket: bucket.to_owned(),
            replaced: None,
            sse_c: false,
        })
    }
}

impl Mutation<'_> {
    /// Step 4 without a body: forwards, aborting the intent if the upstream refuses.
    pub(crate) async fn forward<O>(
        self,
        call: impl Future<Output = S3Result<S3Response<O>>>,
    ) -> S3Result<(Self, S3Response<O>)> {
        match self.forwarder.timed(self.operation, self.info, call).await {
            Ok(response) => Ok((self, response)),
            Err(e) => {
                self.capture.abort(self.pending, "the upstream refused it").await;
                Err(e)
            }
        }
    }

    /// Makes the resolution also forget the multipart upload at `upload` (in the same
    /// journal batch; see [`Pending::ending_upload`]).
    pub(crate) fn ending_upload(&mut self, upload: &[u8]) {
        self.pending.ending_upload(upload);
    }

    /// Step 5: settles the intent by what the mutation did (see [`Capture::settle`]), or
    /// answers 503 if that cannot be recorded.
    pub(crate) async fn finish<O>(
        self,
        effect: Result<Option<Effect>, CaptureError>,
        response: S3Response<O>,
    ) -> S3Result<S3Response<O>> {
        let (capture, operation) = (self.capture, self.operation);
        let watched = if capture.tripwire().enabled() { effect.as_ref().ok().cloned().flatten() } else { None };
        let committed = capture
            .settle(self.pending, effect, "the current version is unchanged")
            .await
            .map_err(|e| refuse(capture, operation, &e, Applied::Upstream))?;
        if let (Some(seq), Some(effect)) = (committed, watched) {
            capture.watch(&self.actor, &self.bucket, seq, self.replaced.as_ref(), &effect, self.sse_c).await;
        }
        Ok(response)
    }

    /// Marks it as written with customer-provided encryption (SSE-C), for the tripwire.
    pub(crate) fn with_sse_c(mut self, sse_c: bool) -> Self {
        self.sse_c = sse_c;
        self
    }

    /// An upload the upstream refused: abort, and answer with the vault's failure if it
    /// caused the refusal (the upstream then saw a cut body), else with the upstream's.
    pub(crate) async fn refused_upload(self, upstream: S3Error, manifest: Result<Manifest, CaptureError>) -> S3Error {
        self.capture.abort(self.pending, "the upstream refused it").await;
        unfinished_upload(self.capture, self.operation, Err::<(), _>(upstream), manifest)
    }
}

/// An upload that failed before it could complete: the vault's failure if that cut the
/// upstream's body, else the upstream's answer.
pub(crate) fn unfinished_upload<O>(
    capture: &Capture,
    operation: &str,
    upstream: S3Result<O>,
    manifest: Result<Manifest, CaptureError>,
) -> S3Error {
    match (upstream, manifest) {
        (_, Err(e @ CaptureError::Tee(TeeError::Vault(_) | TeeError::Slow))) => {
            refuse(capture, operation, &e, Applied::No)
        }
        (Err(upstream), _) => upstream,
        // The upstream answered OK to a body whose end it never had: nothing journaled it,
        // so say so (reconcile will find the object).
        (Ok(_), _) => {
            let e = CaptureError::upstream("the upstream accepted a body before its end was sent");
            refuse(capture, operation, &e, Applied::Upstream)
        }
    }
}

/// The vault side of an upload: a running tee, or nothing to read (no body).
pub(crate) enum VaultSide {
    Tee(tokio::task::JoinHandle<Result<Manifest, TeeError>>),
    Empty(Arc<rewind_vault::Vault>),
}

impl VaultSide {
    /// Tees `body` (if any) into the vault; the body is replaced by the upstream's half.
    pub(crate) fn start(capture: &Capture, body: &mut Option<dto::StreamingBlob>) -> Self {
        match body.take() {
            Some(b) => {
                let tee = crate::tee::start(b, capture.vault(), capture.timeout());
                *body = Some(tee.upstream_body);
                Self::Tee(tee.vault)
            }
            None => Self::Empty(capture.vault().clone()),
        }
    }

    /// Like [`VaultSide::start`], holding the body's end back from the upstream until the
    /// returned gate opens; no gate when there is nothing to hold back (see
    /// [`crate::tee::start_gated`]). The body's chunks are indexed by the mutation's commit
    /// when the capture allows it ([`Capture::defers_index`]): the caller commits.
    pub(crate) fn start_gated(capture: &Capture, body: &mut Option<dto::StreamingBlob>) -> (Self, Option<Gate>) {
        let ending = if capture.defers_index() { Ending::Written } else { Ending::Indexed };
        match body.take() {
            Some(b) => {
                let (tee, gate) = crate::tee::start_gated(b, capture.vault(), capture.timeout(), ending);
                *body = Some(tee.upstream_body);
                (Self::Tee(tee.vault), gate)
            }
            None => (Self::Empty(capture.vault().clone()), None),
        }
    }

    pub(crate) async fn finish(self) -> Result<Manifest, CaptureError> {
        match self {
            Self::Tee(task) => Ok(task.await.expect("invariant: the tee pump does not panic")?),
            Self::Empty(vault) => Ok(vault.writer().finish().await?),
        }
    }
}

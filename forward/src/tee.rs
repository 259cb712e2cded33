//! The tee: one upload body into the upstream and into the vault at once.
//!
//! A pump task reads the client's (already verified) body and hands each piece to the
//! vault writer, then to the upstream through a one-slot channel, so the slower of the two
//! paces the client and nothing is buffered whole. The last piece is held back until the
//! vault has made every chunk durable: if the vault fails, the upstream sees a truncated
//! body and discards it, so a refused upload never lands upstream (fail closed).
//!
//! A gated tee also holds the body's end until its [`Gate`] opens. The upstream cannot
//! apply a write before it has the whole body, so a PUT streams its body without its key's
//! lock and takes the lock only to complete: writers of one key send their bodies in
//! parallel, and only the completions (and their journal commits) are ordered.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use std::sync::Arc;

use rewind_capture::TeeError;
use rewind_vault::{Manifest, ObjectWriter, Vault, VaultError};
use s3s::dto::StreamingBlob;
use s3s::stream::{ByteStream, RemainingLength};
use tokio::sync::{mpsc, oneshot};

type StdError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Pieces in flight to the upstream: one, so the upstream never runs ahead of the vault
/// by more than a piece.
const UPSTREAM_SLOTS: usize = 1;

/// A running tee: the body to give the upstream, and the vault side's outcome.
pub struct Tee {
    /// Give this to the upstream call.
    pub upstream_body: StreamingBlob,
    /// Resolves to the vault manifest once every chunk is durable.
    pub vault: tokio::task::JoinHandle<Result<Manifest, TeeError>>,
}

/// The end of a gated tee's body, held back from the upstream.
pub struct Gate {
    /// Resolves once the client's body has ended and every chunk is durable in the vault;
    /// an error if the body, the vault or the upstream failed first.
    pub arrived: oneshot::Receiver<()>,
    /// Send to let the end go to the upstream; drop to withhold it (the upstream then sees
    /// a cut body and applies nothing).
    pub open: oneshot::Sender<()>,
}

/// How the vault side ends the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Its chunks durable and indexed ([`ObjectWriter::finish`]).
    Indexed,
    /// Its chunks durable, their index entries left to the mutation's commit
    /// ([`ObjectWriter::finish_written`], see `Capture::defers_index`).
    Written,
}

/// Starts teeing `body` into `vault`; `timeout` bounds each wait for the vault.
pub fn start(body: StreamingBlob, vault: &Arc<Vault>, timeout: Duration) -> Tee {
    spawn(body, vault, timeout, None, Ending::Indexed)
}

/// Like [`start`], holding the body's end back until the gate opens. `None` for a body
/// known to be empty: an upstream may apply that as soon as it has the request's head,
/// so there is nothing to hold back.
pub fn start_gated(body: StreamingBlob, vault: &Arc<Vault>, timeout: Duration, ending: Ending) -> (Tee, Option<Gate>) {
    if body.remaining_length().exact() == Some(0) {
        return (spawn(body, vault, timeout, None, ending), None);
    }
    let (arrived_tx, arrived) = oneshot::channel();
    let (open, open_rx) = oneshot::channel();
    (spawn(body, vault, timeout, Some((arrived_tx, open_rx)), ending), Some(Gate { arrived, open }))
}

type PumpGate = (oneshot::Sender<()>, oneshot::Receiver<()>);

fn spawn(body: StreamingBlob, vault: &Arc<Vault>, timeout: Duration, gate: Option<PumpGate>, ending: Ending) -> Tee {
    let length = body.remaining_length().exact().map(|n| n as u64);
    let writer = vault.writer_sized(length);
    let (tx, rx) = mpsc::channel(UPSTREAM_SLOTS);
    let vault = tokio::spawn(pump(body, writer, tx, timeout, gate, ending));
    Tee { upstream_body: StreamingBlob::new(UpstreamBody { rx, remaining: length }), vault }
}

async fn pump(
    mut body: StreamingBlob,
    mut writer: ObjectWriter,
    tx: mpsc::Sender<Result<Bytes, StdError>>,
    timeout: Duration,
    gate: Option<PumpGate>,
    ending: Ending,
) -> Result<Manifest, TeeError> {
    let mut held: Option<Bytes> = None;
    loop {
        // Stop as soon as the upstream stops reading, not at the client's next piece; but
        // the client's body first: an upstream that has all it needs (an empty body) may
        // finish its request before the body's end is seen, and that is no failure.
        let item = tokio::select! {
            biased;
            item = body.next() => item,
            () = tx.closed() => return Err(TeeError::UpstreamGone),
        };
        let Some(item) = item else { break };
        let piece = match item {
            Ok(p) => p,
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return Err(TeeError::Body);
            }
        };
        if piece.is_empty() {
            continue;
        }
        if let Err(e) = within(timeout, writer.push(&piece)).await {
            let _ = tx.send(Err(e.to_string().into())).await;
            return Err(e);
        }
        if let Some(previous) = held.replace(piece) {
            tx.send(Ok(previous)).await.map_err(|_| TeeError::UpstreamGone)?;
        }
    }
    let finish = async {
        match ending {
            Ending::Indexed => writer.finish().await,
            Ending::Written => writer.finish_written().await,
        }
    };
    let manifest = match within(timeout, finish).await {
        Ok(m) => m,
        Err(e) => {
            let _ = tx.send(Err(e.to_string().into())).await;
            return Err(e);
        }
    };
    if let Some((arrived, open)) = gate {
        let _ = arrived.send(());
        // The end stays back until the write may complete; the upstream going away
        // meanwhile ends the wait (the completion then sees its error).
        let opened = tokio::select! {
            opened = open => opened.is_ok(),
            () = tx.closed() => return Err(TeeError::UpstreamGone),
        };
        if !opened {
            let _ = tx.send(Err("the write was refused before it completed".into())).await;
            return Err(TeeError::Withheld);
        }
    }
    if let Some(last) = held {
        tx.send(Ok(last)).await.map_err(|_| TeeError::UpstreamGone)?;
    }
    Ok(manifest)
}

async fn within<T>(timeout: Duration, f: impl Future<Output = Result<T, VaultError>>) -> Result<T, TeeError> {
    match tokio::time::timeout(timeout, f).await {
        Ok(r) => r.map_err(TeeError::Vault),
        Err(_) => Err(TeeError::Slow),
    }
}

/// The upstream's view of the body: pieces from the pump, with the exact remaining length
/// aws-sdk-s3 needs to send a streamed body.
struct UpstreamBody {
    rx: mpsc::Receiver<Result<Bytes, StdError>>,
    remaining: Option<u64>,
}

impl Stream for UpstreamBody {
    type Item = Result<Bytes, StdError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let item = std::task::ready!(self.rx.poll_recv(cx));
        if let (Some(Ok(piece)), Some(r)) = (&item, &mut self.remaining) {
            *r = r.saturating_sub(piece.len() as u64);
        }
        Poll::Ready(item)
    }
}

impl ByteStream for UpstreamBody {
    fn remaining_length(&self) -> RemainingLength {
        match self.remaining {
            Some(n) => RemainingLength::new_exact(usize::try_from(n).unwrap_or(usize::MAX)),
            None => RemainingLength::unknown(),
        }
    }
}

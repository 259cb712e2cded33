//! One object through a view: which version a request means, its headers as the original
//! had them, preconditions, the byte range, and the body streamed from the vault.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use rewind_journal::{Entry, Journal};
use rewind_model::{ChunkId, Seq};
use rewind_vault::Vault;
use s3s::dto::{self, ETag, Timestamp};
use s3s::{S3Error, S3ErrorCode, S3Result};

use crate::versions::{self, Kept};
use crate::{ViewMetrics, internal};

/// Chunks read ahead of the one being sent: the next is fetched and checked while this
/// one goes out.
const READ_AHEAD: usize = 2;

/// The version of `bucket`/`key` a request means as of `at`: the current one, or the one
/// `version_id` names among those that existed then.
pub(crate) fn find(
    journal: &Journal,
    bucket: &str,
    key: &str,
    at: Seq,
    version_id: Option<&str>,
) -> S3Result<(Entry, String)> {
    let Some(asked) = version_id else {
        let entry = journal
            .version_at(bucket, key, at)
            .map_err(|e| internal("cannot read the journal", e))?
            .ok_or_else(|| S3Error::with_message(S3ErrorCode::NoSuchKey, "The specified key does not exist."))?;
        let id = versions::version_id(entry.version.version_id.as_deref(), entry.written);
        return Ok((entry, id));
    };
    let kept = versions::of_key(journal, bucket, key, at).map_err(|e| internal("cannot read the journal", e))?;
    // "null" is the version an upstream that does not version gave no id.
    let unversioned = |k: &&Kept| match k {
        Kept::Version { entry, .. } => entry.version.version_id.as_deref().is_none_or(|v| v == "null"),
        Kept::Marker { id, .. } => id.starts_with("rewind-"),
    };
    let found =
        if asked == "null" { kept.iter().rev().find(unversioned) } else { kept.iter().rev().find(|k| k.id() == asked) };
    match found {
        Some(Kept::Version { id, entry }) => Ok((Entry::clone(entry), id.clone())),
        Some(Kept::Marker { .. }) => Err(S3Error::with_message(
            S3ErrorCode::MethodNotAllowed,
            "The specified method is not allowed against this resource: that version is a delete marker.",
        )),
        None => Err(S3Error::with_message(
            S3ErrorCode::NoSuchVersion,
            "The specified version does not exist (as of this view's instant).",
        )),
    }
}

/// An ETag as S3 sends it (quoted); stored ETags are the upstream's, usually quoted.
pub(crate) fn etag(text: &str) -> ETag {
    let quoted = if text.starts_with('"') || text.starts_with("W/") { text.to_owned() } else { format!("\"{text}\"") };
    ETag::parse_http_header(quoted.as_bytes()).unwrap_or_else(|_| ETag::Strong(text.trim_matches('"').to_owned()))
}

/// When the version was written, to the second (what HTTP dates carry): the upstream's
/// Last-Modified for a version read back from it, else the time it was journaled.
pub(crate) fn last_modified(entry: &Entry) -> Timestamp {
    let seconds = entry.version.modified_us.unwrap_or(entry.written_us).div_euclid(1_000_000);
    Timestamp::from(time::OffsetDateTime::from_unix_timestamp(seconds).unwrap_or(time::OffsetDateTime::UNIX_EPOCH))
}

/// A stored content header.
pub(crate) fn header<'e>(entry: &'e Entry, name: &str) -> Option<&'e str> {
    entry.version.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

/// A checksum the upstream gave the version (`crc32`, ..., `type`).
pub(crate) fn checksum<'e>(entry: &'e Entry, name: &str) -> Option<&'e str> {
    entry.version.checksums.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

/// The stored `expires` header, parsed as HTTP sends it.
pub(crate) fn expires(entry: &Entry) -> Option<Timestamp> {
    Timestamp::parse(dto::TimestampFormat::HttpDate, header(entry, "expires")?).ok()
}

/// User metadata.
pub(crate) fn metadata(entry: &Entry) -> Option<dto::Metadata> {
    let m = &entry.version.metadata;
    (!m.is_empty()).then(|| m.iter().cloned().collect())
}

/// How many parts a multipart upload made the object of: its recorded part sizes, or its
/// ETag's `-N` when they were not recorded.
pub(crate) fn parts_count(entry: &Entry) -> Option<i32> {
    if !entry.version.parts.is_empty() {
        return i32::try_from(entry.version.parts.len()).ok();
    }
    let (_, n) = entry.version.etag.trim_matches('"').rsplit_once('-')?;
    n.parse().ok()
}

/// Conditional headers, in the order and with the answers RFC 9110 and S3 give.
pub(crate) struct Conditions<'a> {
    pub if_match: Option<&'a dto::ETagCondition>,
    pub if_none_match: Option<&'a dto::ETagCondition>,
    pub if_modified_since: Option<&'a Timestamp>,
    pub if_unmodified_since: Option<&'a Timestamp>,
}

impl Conditions<'_> {
    pub fn check(&self, entry: &Entry) -> S3Result<()> {
        let tag = etag(&entry.version.etag);
        let matches = |c: &dto::ETagCondition| c.is_any() || c.as_etag().is_some_and(|e| e.value() == tag.value());
        let modified = last_modified(entry);
        let seconds = |t: &Timestamp| time::OffsetDateTime::from(t.clone()).unix_timestamp();
        let failed = || {
            S3Error::with_message(
                S3ErrorCode::PreconditionFailed,
                "At least one of the pre-conditions you specified did not hold",
            )
        };
        let not_modified = || S3Error::new(S3ErrorCode::NotModified);
        match self.if_match {
            Some(c) if !matches(c) => return Err(failed()),
            Some(_) => {}
            None => {
                if self.if_unmodified_since.is_some_and(|t| seconds(&modified) > seconds(t)) {
                    return Err(failed());
                }
            }
        }
        match self.if_none_match {
            Some(c) if matches(c) => return Err(not_modified()),
            Some(_) => {}
            None => {
                if self.if_modified_since.is_some_and(|t| seconds(&modified) <= seconds(t)) {
                    return Err(not_modified());
                }
            }
        }
        Ok(())
    }
}

/// The bytes a GET asks for: a `Range`, or `partNumber` (the whole object is its one part
/// unless a multipart upload made it), or everything (`None`).
pub(crate) fn byte_range(
    entry: &Entry,
    range: Option<&dto::Range>,
    part_number: Option<i32>,
) -> S3Result<Option<Range<u64>>> {
    let size = entry.version.size;
    if let Some(part) = part_number {
        if range.is_some() {
            return Err(S3Error::with_message(
                S3ErrorCode::InvalidRequest,
                "Cannot specify both Range header and partNumber query parameter",
            ));
        }
        let parts = &entry.version.parts;
        let out_of_range = || {
            let mut e = S3Error::with_message(
                S3ErrorCode::Custom("InvalidPartNumber".into()),
                "The requested partnumber is not satisfiable",
            );
            e.set_status_code(http::StatusCode::RANGE_NOT_SATISFIABLE);
            e
        };
        let index = usize::try_from(part).ok().and_then(|p| p.checked_sub(1)).filter(|_| part <= 10_000);
        let Some(index) = index else {
            return Err(S3Error::with_message(
                S3ErrorCode::InvalidArgument,
                "Part number must be an integer between 1 and 10000, inclusive",
            ));
        };
        if !parts.is_empty() {
            let size = *parts.get(index).ok_or_else(out_of_range)?;
            let start: u64 = parts[..index].iter().sum();
            return Ok(Some(start..start + size));
        }
        return match parts_count(entry) {
            None if index == 0 => Ok(None),
            None => Err(out_of_range()),
            Some(_) => Err(S3Error::with_message(
                S3ErrorCode::NotImplemented,
                "partNumber reads of this object are not available through a view: its part boundaries were not recorded (it was read back from the upstream); ask for a byte Range",
            )),
        };
    }
    let Some(range) = range else { return Ok(None) };
    match range.check(size) {
        Ok(r) => Ok(Some(r)),
        Err(_) => Err(S3Error::with_message(S3ErrorCode::InvalidRange, "The requested range is not satisfiable")),
    }
}

/// `bytes first-last/size`.
pub(crate) fn content_range(range: &Range<u64>, size: u64) -> String {
    format!("bytes {}-{}/{size}", range.start, range.end.saturating_sub(1))
}

/// The object's bytes in `range` (all of them for `None`), read from the vault chunk by
/// chunk; each chunk is checked against its keyed BLAKE3 before any of it is sent, and a
/// chunk that fails ends the body with an error (the client sees a cut response, never
/// wrong bytes).
pub(crate) fn body(
    vault: &Arc<Vault>,
    entry: &Entry,
    range: Option<&Range<u64>>,
    metrics: &ViewMetrics,
) -> S3Result<dto::StreamingBlob> {
    let pieces: Vec<(ChunkId, Option<Range<usize>>)> = match range {
        None => entry.version.chunks.iter().map(|id| (*id, None)).collect(),
        Some(want) => {
            let mut pieces = Vec::new();
            let mut start = 0u64;
            for id in &entry.version.chunks {
                if start >= want.end {
                    break;
                }
                let location = vault
                    .locate(id)
                    .map_err(|e| internal("cannot look a chunk up in the vault's index", e))?
                    .ok_or_else(|| internal("a chunk of this version is missing from the vault", id))?;
                let end = start + u64::from(location.entry.raw_len);
                if end > want.start {
                    let from = usize::try_from(want.start.saturating_sub(start)).unwrap_or(usize::MAX);
                    let to = usize::try_from(want.end.min(end) - start).unwrap_or(usize::MAX);
                    pieces.push((*id, Some(from..to)));
                }
                start = end;
            }
            pieces
        }
    };
    // A task reads ahead into a small channel: the next chunk is fetched and checked while
    // this one goes out, and a client that goes away stops the reads (the send fails).
    let (tx, rx) = tokio::sync::mpsc::channel(READ_AHEAD);
    let (vault, sent) = (vault.clone(), metrics.sent_bytes.clone());
    tokio::spawn(async move {
        for (id, cut) in pieces {
            let piece = match vault.read_chunk(&id).await {
                Ok(chunk) => match cut {
                    Some(cut) if cut.end <= chunk.len() => Ok(chunk.slice(cut)),
                    Some(_) => Err(format!("chunk {id} is shorter than the vault's index says")),
                    None => Ok(chunk),
                },
                Err(e) => Err(e.to_string()),
            };
            let piece = piece.map_err(|e| {
                tracing::error!(error = %e, "a view's read from the vault failed; the response is cut short");
                std::io::Error::other(e)
            });
            let failed = piece.is_err();
            if let Ok(bytes) = &piece {
                sent.inc_by(bytes.len() as u64);
            }
            if tx.send(piece).await.is_err() || failed {
                return;
            }
        }
    });
    Ok(dto::StreamingBlob::wrap(Received(rx)))
}

/// The body's side of the read-ahead channel.
struct Received(tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>);

impl futures::Stream for Received {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

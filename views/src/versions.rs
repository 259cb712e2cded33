//! Every version of a key as of a position, and ListObjectVersions' pages of them.
//!
//! A version's id is the upstream's when it had one; otherwise (an upstream that does not
//! version) `rewind-<seq>`, the position of the commit that wrote it, so that every version
//! a view shows can be asked for by id.

use rewind_journal::{Entry, Flow, Journal, JournalError, ScanFrom, indexed_change};
use rewind_model::{Effect, Seq};

use crate::listing::Ask;

/// One entry of a key's history as a view shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kept {
    /// A version, with the tags it had as of the position.
    Version { id: String, entry: Box<Entry> },
    /// A delete marker (a delete, on an upstream that does not version).
    Marker { id: String, key: String, timestamp_us: i64 },
}

impl Kept {
    pub fn id(&self) -> &str {
        match self {
            Self::Version { id, .. } | Self::Marker { id, .. } => id,
        }
    }
}

/// The id a view gives the version written at `written` with upstream id `upstream`.
pub(crate) fn version_id(upstream: Option<&str>, written: Seq) -> String {
    match upstream {
        Some(id) if !id.is_empty() && id != "null" => id.to_owned(),
        _ => format!("rewind-{}", written.0),
    }
}

/// Every version and delete marker of `bucket`/`key` committed at or before `at`, oldest
/// first.
pub(crate) fn of_key(journal: &Journal, bucket: &str, key: &str, at: Seq) -> Result<Vec<Kept>, JournalError> {
    let mut out = Vec::new();
    for record in journal.history(bucket, key)? {
        let (seq, ts) = (record.seq, record.timestamp_us);
        if seq > at {
            break;
        }
        let Some(change) = indexed_change(record.body, seq, bucket, key)? else { continue };
        match change.effect {
            Effect::Version(version) => {
                let id = version_id(version.version_id.as_deref(), seq);
                let entry = Entry { key: key.to_owned(), version, seq, timestamp_us: ts, written: seq, written_us: ts };
                out.push(Kept::Version { id, entry: Box::new(entry) });
            }
            Effect::Tags(tags) => {
                if let Some(Kept::Version { entry, .. }) = out.last_mut() {
                    (entry.version.tags, entry.seq, entry.timestamp_us) = (tags, seq, ts);
                }
            }
            Effect::Deleted { version_id: upstream } => {
                let id = version_id(upstream.as_deref(), seq);
                out.push(Kept::Marker { id, key: key.to_owned(), timestamp_us: ts });
            }
            Effect::Bucket => {}
        }
    }
    Ok(out)
}

/// One item of a ListObjectVersions page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Listed {
    Kept { kept: Kept, latest: bool },
    Prefix(String),
}

/// One ListObjectVersions page.
#[derive(Debug, Default)]
pub(crate) struct VersionsPage {
    pub items: Vec<Listed>,
    /// When more follow: the key and version id to resume after.
    pub next: Option<(String, Option<String>)>,
}

/// One page of the versions of `bucket` as of `at`; `ask.after` is the key marker, and
/// `version_marker` the version id of that key to resume after.
pub(crate) fn page(
    journal: &Journal,
    bucket: &str,
    at: Seq,
    ask: Ask<'_>,
    version_marker: Option<&str>,
) -> Result<VersionsPage, JournalError> {
    let mut page = VersionsPage::default();
    let resume_in = version_marker.and(ask.after);
    // Resuming inside a key starts the scan just before that key; otherwise after the
    // marker (or past the common prefix it names).
    let before = resume_in.map(key_and_after);
    let start = match &before {
        None => ask.scan_from(),
        Some(None) => ScanFrom::Start,
        Some(Some(before)) => ScanFrom::AfterKey(before),
    };
    journal.scan_keys(bucket, ask.prefix, start, at, &mut |key, _| {
        let resume_in_key = resume_in == Some(key);
        if !resume_in_key && ask.after.is_some_and(|a| key <= a) {
            return Ok(Flow::Go);
        }
        if let Some(p) = ask.common_prefix(key) {
            if ask.after.is_some_and(|a| p <= a) {
                return Ok(Flow::SkipPrefix(p.to_owned()));
            }
            if page.items.len() >= ask.max {
                page.next = page.items.last().map(resume_point);
                return Ok(Flow::Stop);
            }
            page.items.push(Listed::Prefix(p.to_owned()));
            return Ok(Flow::SkipPrefix(p.to_owned()));
        }
        let mut kept = of_key(journal, bucket, key, at)?;
        kept.reverse();
        let mut items: Vec<Listed> =
            kept.into_iter().enumerate().map(|(i, kept)| Listed::Kept { kept, latest: i == 0 }).collect();
        if resume_in_key {
            let marker = version_marker.expect("invariant: resuming in a key needs its marker");
            let at_marker = items.iter().position(|l| matches!(l, Listed::Kept { kept, .. } if kept.id() == marker));
            items.drain(..at_marker.map_or(0, |i| i + 1));
        }
        for item in items {
            if page.items.len() >= ask.max {
                page.next = page.items.last().map(resume_point);
                return Ok(Flow::Stop);
            }
            page.items.push(item);
        }
        Ok(Flow::Go)
    })?;
    Ok(page)
}

/// A key a scan can start after so that `key` itself comes next: `key` without its last
/// character (`None` when that leaves nothing: start at the front).
fn key_and_after(key: &str) -> Option<String> {
    let mut before = key.to_owned();
    before.pop()?;
    Some(before).filter(|b| !b.is_empty())
}

fn resume_point(item: &Listed) -> (String, Option<String>) {
    match item {
        Listed::Prefix(p) => (p.clone(), None),
        Listed::Kept { kept: Kept::Version { id, entry }, .. } => (entry.key.clone(), Some(id.clone())),
        Listed::Kept { kept: Kept::Marker { id, key, .. }, .. } => (key.clone(), Some(id.clone())),
    }
}

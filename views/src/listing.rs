//! Listing a bucket as of a position, as S3 pages it: a prefix, a delimiter that rolls keys
//! up into common prefixes, at most `max` items a page, resumed after the last item of the
//! previous page (a key or a common prefix; ListObjects' marker, ListObjectsV2's start-after
//! and continuation token all mean "after this").

use rewind_journal::{Entry, Flow, Journal, JournalError, ScanFrom};
use rewind_model::Seq;

/// What one page asks for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ask<'a> {
    pub prefix: &'a str,
    /// Absent or empty: no rolling up.
    pub delimiter: Option<&'a str>,
    /// Only items after this.
    pub after: Option<&'a str>,
    /// Most items (objects and common prefixes together).
    pub max: usize,
}

/// One listed item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Item {
    Object(Box<Entry>),
    Prefix(String),
}

impl Item {
    pub fn name(&self) -> &str {
        match self {
            Self::Object(e) => &e.key,
            Self::Prefix(p) => p,
        }
    }
}

/// One page.
#[derive(Debug, Default)]
pub(crate) struct Page {
    pub items: Vec<Item>,
    /// Whether more items follow.
    pub truncated: bool,
}

impl Ask<'_> {
    /// The common prefix `key` rolls up into, if any.
    pub fn common_prefix<'k>(&self, key: &'k str) -> Option<&'k str> {
        let d = self.delimiter.filter(|d| !d.is_empty())?;
        let rest = key.get(self.prefix.len()..)?;
        rest.find(d).map(|i| &key[..self.prefix.len() + i + d.len()])
    }

    /// Where the scan starts: after `after`, or past every key under it when it is itself a
    /// common prefix (a page that ended on one).
    pub fn scan_from(&self) -> ScanFrom<'_> {
        match self.after {
            None => ScanFrom::Start,
            Some(a) if a < self.prefix => ScanFrom::Start,
            Some(a) if self.common_prefix(a) == Some(a) => ScanFrom::PastPrefix(a),
            Some(a) => ScanFrom::AfterKey(a),
        }
    }
}

/// One page of the objects of `bucket` as of `at`.
pub(crate) fn objects(journal: &Journal, bucket: &str, at: Seq, ask: Ask<'_>) -> Result<Page, JournalError> {
    let mut page = Page::default();
    journal.scan_state(bucket, ask.prefix, ask.scan_from(), at, &mut |entry| {
        let prefix = ask.common_prefix(&entry.key).map(str::to_owned);
        if let Some(p) = &prefix
            && ask.after.is_some_and(|a| p.as_str() <= a)
        {
            return Ok(Flow::SkipPrefix(prefix.expect("invariant: checked")));
        }
        if page.items.len() >= ask.max {
            page.truncated = true;
            return Ok(Flow::Stop);
        }
        Ok(match prefix {
            Some(p) => {
                page.items.push(Item::Prefix(p.clone()));
                Flow::SkipPrefix(p)
            }
            None => {
                page.items.push(Item::Object(Box::new(entry)));
                Flow::Go
            }
        })
    })?;
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask<'a>(prefix: &'a str, delimiter: Option<&'a str>, after: Option<&'a str>) -> Ask<'a> {
        Ask { prefix, delimiter, after, max: 10 }
    }

    #[test]
    fn keys_roll_up_at_the_first_delimiter_after_the_prefix() {
        let a = ask("photos/", Some("/"), None);
        assert_eq!(a.common_prefix("photos/2026/a.jpg"), Some("photos/2026/"));
        assert_eq!(a.common_prefix("photos/a.jpg"), None);
        assert_eq!(ask("", Some(""), None).common_prefix("a/b"), None, "an empty delimiter rolls nothing up");
        assert_eq!(ask("", Some("--"), None).common_prefix("x--y--z"), Some("x--"));
    }

    #[test]
    fn a_page_resumes_past_a_common_prefix_it_ended_on() {
        assert_eq!(ask("p/", Some("/"), Some("p/a/")).scan_from(), ScanFrom::PastPrefix("p/a/"));
        assert_eq!(ask("p/", Some("/"), Some("p/a")).scan_from(), ScanFrom::AfterKey("p/a"));
        assert_eq!(ask("p/", None, Some("p/a/")).scan_from(), ScanFrom::AfterKey("p/a/"));
        assert_eq!(ask("p/", Some("/"), Some("a")).scan_from(), ScanFrom::Start, "a marker before the prefix");
    }
}

//! Instants in history as operators write them: RFC 3339 (`2026-11-25T09:41:00Z`), `now`,
//! relative to now (`-15m`, `-2h`, `-3d`, `-1w`, `-30s`), a journal position (`seq:1234`), or
//! the name of a snapshot (`before-deploy`).

use std::fmt;

/// An instant in history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum At {
    /// A journal sequence number: the state after that record.
    Seq(u64),
    /// A gateway time, microseconds since the Unix epoch.
    TimeUs(i64),
    /// A named snapshot (a label on a sequence number).
    Name(String),
}

/// Longest snapshot name.
pub const MAX_NAME_LEN: usize = 64;

/// Whether `name` can name a snapshot: a letter, then letters, digits, `.`, `_` or `-`, at
/// most [`MAX_NAME_LEN`] in all, and not `now` (which is a time).
pub fn valid_name(name: &str) -> bool {
    name.len() <= MAX_NAME_LEN
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && name != "now"
}

/// Why a time could not be used; the message shows the accepted forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AtError {
    /// Not a form of time this knows.
    #[error(
        "{input:?} is not a time: use RFC 3339 (2026-11-25T09:41:00Z), now, -15m / -2h / -3d / -1w, seq:N, or a snapshot name"
    )]
    Malformed {
        /// What was given.
        input: String,
    },
    /// A time after now: history does not go there (a typo in the year, usually).
    #[error("{input:?} is in the future (the gateway's clock says {now}); pick now or an earlier time")]
    Future {
        /// What was given.
        input: String,
        /// The gateway's time, RFC 3339.
        now: String,
    },
}

/// How far in the future a time may be and still mean now: clocks of the operator's
/// machine and the gateway's differ a little.
const FUTURE_TOLERANCE_US: i64 = 60 * 1_000_000;

impl At {
    /// Parses `input`; `now_us` is the current time in µs since the epoch.
    pub fn parse(input: &str, now_us: i64) -> Result<Self, AtError> {
        let bad = || AtError::Malformed { input: input.to_owned() };
        let s = input.trim();
        if s == "now" {
            return Ok(Self::TimeUs(now_us));
        }
        if let Some(n) = s.strip_prefix("seq:") {
            return n.parse().map(Self::Seq).map_err(|_| bad());
        }
        if let Some(rel) = s.strip_prefix('-') {
            let split = rel.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
            let (n, unit) = rel.split_at(split);
            let n: i64 = n.parse().map_err(|_| bad())?;
            let seconds = match unit {
                "s" => 1,
                "m" => 60,
                "h" => 3600,
                "d" => 86_400,
                "w" => 604_800,
                _ => return Err(bad()),
            };
            let back = n.checked_mul(seconds * 1_000_000).ok_or_else(bad)?;
            return Ok(Self::TimeUs(now_us.checked_sub(back).ok_or_else(bad)?));
        }
        if valid_name(s) {
            return Ok(Self::Name(s.to_owned()));
        }
        let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).map_err(|_| bad())?;
        let us = i64::try_from(t.unix_timestamp_nanos() / 1000).map_err(|_| bad())?;
        if us > now_us.saturating_add(FUTURE_TOLERANCE_US) {
            return Err(AtError::Future { input: input.to_owned(), now: Self::TimeUs(now_us).to_string() });
        }
        Ok(Self::TimeUs(us))
    }
}

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Seq(n) => write!(f, "seq:{n}"),
            Self::Name(name) => f.write_str(name),
            Self::TimeUs(us) => match time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(*us) * 1000) {
                Ok(t) => match t.format(&time::format_description::well_known::Rfc3339) {
                    Ok(text) => f.write_str(&text),
                    Err(_) => write!(f, "{us}µs"),
                },
                Err(_) => write!(f, "{us}µs"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000_000; // 2027-01-15, after the fixed times below

    #[test]
    fn every_accepted_form_parses() {
        assert_eq!(At::parse("now", NOW), Ok(At::TimeUs(NOW)));
        assert_eq!(At::parse("seq:42", NOW), Ok(At::Seq(42)));
        assert_eq!(At::parse("-15m", NOW), Ok(At::TimeUs(NOW - 15 * 60 * 1_000_000)));
        assert_eq!(At::parse("-2h", NOW), Ok(At::TimeUs(NOW - 2 * 3600 * 1_000_000)));
        assert_eq!(At::parse("-3d", NOW), Ok(At::TimeUs(NOW - 3 * 86_400 * 1_000_000)));
        assert_eq!(At::parse("-1w", NOW), Ok(At::TimeUs(NOW - 604_800 * 1_000_000)));
        assert_eq!(At::parse("2026-11-25T09:41:00Z", NOW), Ok(At::TimeUs(1_795_599_660_000_000)));
        assert_eq!(At::parse("2026-11-25T10:41:00.5+01:00", NOW), Ok(At::TimeUs(1_795_599_660_500_000)));
    }

    #[test]
    fn malformed_times_say_what_is_accepted() {
        for bad in ["", "9am", "-15", "-15y", "seq:", "seq:-1", "2026-11-25", "-99999999999999999d"] {
            let err = At::parse(bad, NOW).unwrap_err();
            assert!(err.to_string().contains("RFC 3339") && err.to_string().contains("seq:N"), "{bad}: {err}");
        }
    }

    #[test]
    fn a_time_in_the_future_is_refused() {
        let err = At::parse("2030-01-01T00:00:00Z", NOW).unwrap_err();
        assert!(matches!(err, AtError::Future { .. }) && err.to_string().contains("future"), "{err}");
        // A few seconds ahead (another machine's clock) is still now.
        let soon = At::TimeUs(NOW + 5_000_000).to_string();
        assert_eq!(At::parse(&soon, NOW), Ok(At::TimeUs(NOW + 5_000_000)));
    }

    #[test]
    fn other_words_are_snapshot_names() {
        assert_eq!(At::parse("before-deploy.2", NOW), Ok(At::Name("before-deploy.2".into())));
        assert_eq!(At::parse("now", NOW), Ok(At::TimeUs(NOW)));
        for bad in ["now", "2026", "-x", "a b", "a/b", &"x".repeat(65)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn times_print_as_rfc3339_and_round_trip() {
        let at = At::parse("2026-11-25T09:41:00.25Z", NOW).unwrap();
        assert_eq!(at.to_string(), "2026-11-25T09:41:00.25Z");
        assert_eq!(At::parse(&at.to_string(), NOW), Ok(at));
        assert_eq!(At::Seq(7).to_string(), "seq:7");
    }
}

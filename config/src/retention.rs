//! How long history is kept: a policy per bucket with a default, and a floor no policy may
//! go under (`[retention]`; see `rewind forget`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{HumanDuration, Problem};

/// What a bucket's history keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Every instant this recent stays restorable, to the individual write.
    pub keep_all_within: Duration,
    /// Beyond that window: the state at the end of each of the last this many hours (with
    /// changes) is kept; likewise days, weeks (ISO, Monday first), months and years.
    pub keep_hourly: u32,
    /// See [`RetentionPolicy::keep_hourly`].
    pub keep_daily: u32,
    /// See [`RetentionPolicy::keep_hourly`].
    pub keep_weekly: u32,
    /// See [`RetentionPolicy::keep_hourly`].
    pub keep_monthly: u32,
    /// See [`RetentionPolicy::keep_hourly`].
    pub keep_yearly: u32,
}

/// The `[retention]` section.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// Every instant this recent stays restorable (`0s`: only the current state).
    pub keep_all_within: HumanDuration,
    /// States kept at the end of each of the last N hours beyond the window.
    pub keep_hourly: u32,
    /// ... days.
    pub keep_daily: u32,
    /// ... weeks.
    pub keep_weekly: u32,
    /// ... months.
    pub keep_monthly: u32,
    /// ... years.
    pub keep_yearly: u32,
    /// The shortest `keep_all_within` any policy may have: read only from the file or the
    /// environment at start, so that no admin API call (a stolen token) can purge recent
    /// history.
    pub min_keep_all_within: HumanDuration,
    /// How long a vault pack condemned by garbage collection waits before it is deleted.
    pub gc_grace: HumanDuration,
    /// How often retention runs in the gateway (`0s`: never on its own).
    pub schedule: HumanDuration,
    /// Per-bucket overrides of the policy.
    pub buckets: BTreeMap<String, BucketRetention>,
}

/// A bucket's overrides of the default policy; what is unset is the default's.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct BucketRetention {
    /// See [`RetentionConfig::keep_all_within`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_all_within: Option<HumanDuration>,
    /// See [`RetentionConfig::keep_hourly`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_hourly: Option<u32>,
    /// See [`RetentionConfig::keep_daily`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_daily: Option<u32>,
    /// See [`RetentionConfig::keep_weekly`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_weekly: Option<u32>,
    /// See [`RetentionConfig::keep_monthly`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_monthly: Option<u32>,
    /// See [`RetentionConfig::keep_yearly`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_yearly: Option<u32>,
}

const DAY: u64 = 24 * 3600;

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            keep_all_within: HumanDuration::secs(30 * DAY),
            keep_hourly: 0,
            keep_daily: 0,
            keep_weekly: 0,
            keep_monthly: 0,
            keep_yearly: 0,
            min_keep_all_within: HumanDuration::secs(DAY),
            gc_grace: HumanDuration::secs(DAY),
            schedule: HumanDuration::secs(DAY),
            buckets: BTreeMap::new(),
        }
    }
}

impl RetentionConfig {
    /// The policy of `bucket`: its overrides over the default.
    pub fn policy(&self, bucket: &str) -> RetentionPolicy {
        let o = self.buckets.get(bucket).cloned().unwrap_or_default();
        RetentionPolicy {
            keep_all_within: o.keep_all_within.unwrap_or(self.keep_all_within).0,
            keep_hourly: o.keep_hourly.unwrap_or(self.keep_hourly),
            keep_daily: o.keep_daily.unwrap_or(self.keep_daily),
            keep_weekly: o.keep_weekly.unwrap_or(self.keep_weekly),
            keep_monthly: o.keep_monthly.unwrap_or(self.keep_monthly),
            keep_yearly: o.keep_yearly.unwrap_or(self.keep_yearly),
        }
    }

    /// Checks that no policy keeps less than the floor.
    pub(crate) fn validate(&self, problems: &mut Vec<Problem>) {
        let floor = self.min_keep_all_within.0;
        let below = |field: String, value: Duration, problems: &mut Vec<Problem>| {
            if value < floor {
                problems.push(Problem {
                    field,
                    message: format!(
                        "{:?} is below retention.min_keep_all_within ({:?}): keep at least that much, or lower the floor in the configuration file",
                        HumanDuration(value),
                        HumanDuration(floor)
                    ),
                });
            }
        };
        below("retention.keep_all_within".into(), self.keep_all_within.0, problems);
        for (bucket, o) in &self.buckets {
            if let Some(d) = o.keep_all_within {
                below(format!("retention.buckets.{bucket}.keep_all_within"), d.0, problems);
            }
        }
    }
}

//! The ransomware tripwire (`[tripwire]`): which signals open an incident, and what an
//! incident does, per bucket with a default.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{HumanDuration, Problem};

/// What an incident does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TripwireAction {
    /// Record it (journal, metric, log line) and let the writes through.
    Alert,
    /// Also refuse every further write of that client key to that bucket until an
    /// operator acknowledges the incident.
    Protect,
}

/// The `[tripwire]` section.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TripwireConfig {
    /// Whether mutations are watched at all.
    pub enabled: bool,
    /// What an incident does, unless a bucket says otherwise.
    pub action: TripwireAction,
    /// The window the counts below cover (a sliding window).
    pub window: HumanDuration,
    /// Deletes of existing objects by one client key in one bucket, beyond the new keys
    /// it created meanwhile (log rotation deletes as much as it creates).
    pub deletes: u32,
    /// Overwrites of existing objects by one client key in one bucket.
    pub overwrites: u32,
    /// Overwrites whose new bytes do not compress where the version replaced did.
    pub encrypted_overwrites: u32,
    /// Writes with customer-provided encryption (SSE-C) over existing objects.
    pub sse_c_overwrites: u32,
    /// Counts above a client key's own baseline by this many standard deviations are also
    /// needed (the baseline of its earlier windows; a key that always deletes a lot
    /// raises its own bar).
    pub sigma: f64,
    /// Per-bucket overrides.
    pub buckets: BTreeMap<String, BucketTripwire>,
}

/// A bucket's overrides; what is unset is the default's.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct BucketTripwire {
    /// See [`TripwireConfig::action`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<TripwireAction>,
    /// See [`TripwireConfig::deletes`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deletes: Option<u32>,
    /// See [`TripwireConfig::overwrites`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overwrites: Option<u32>,
    /// See [`TripwireConfig::encrypted_overwrites`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encrypted_overwrites: Option<u32>,
    /// See [`TripwireConfig::sse_c_overwrites`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sse_c_overwrites: Option<u32>,
}

/// One bucket's effective settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TripwirePolicy {
    /// See [`TripwireConfig::action`].
    pub action: TripwireAction,
    /// See [`TripwireConfig::window`].
    pub window: Duration,
    /// See [`TripwireConfig::deletes`].
    pub deletes: u32,
    /// See [`TripwireConfig::overwrites`].
    pub overwrites: u32,
    /// See [`TripwireConfig::encrypted_overwrites`].
    pub encrypted_overwrites: u32,
    /// See [`TripwireConfig::sse_c_overwrites`].
    pub sse_c_overwrites: u32,
    /// See [`TripwireConfig::sigma`].
    pub sigma: f64,
}

impl Default for TripwireConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            action: TripwireAction::Alert,
            window: HumanDuration::secs(60),
            deletes: 40,
            overwrites: 500,
            encrypted_overwrites: 10,
            sse_c_overwrites: 3,
            sigma: 3.0,
            buckets: BTreeMap::new(),
        }
    }
}

impl TripwireConfig {
    /// The settings of `bucket`: its overrides over the default.
    pub fn policy(&self, bucket: &str) -> TripwirePolicy {
        let o = self.buckets.get(bucket);
        TripwirePolicy {
            action: o.and_then(|o| o.action).unwrap_or(self.action),
            window: self.window.0,
            deletes: o.and_then(|o| o.deletes).unwrap_or(self.deletes),
            overwrites: o.and_then(|o| o.overwrites).unwrap_or(self.overwrites),
            encrypted_overwrites: o.and_then(|o| o.encrypted_overwrites).unwrap_or(self.encrypted_overwrites),
            sse_c_overwrites: o.and_then(|o| o.sse_c_overwrites).unwrap_or(self.sse_c_overwrites),
            sigma: self.sigma,
        }
    }

    pub(crate) fn validate(&self, problems: &mut Vec<Problem>) {
        if self.window.0 < Duration::from_secs(1) {
            problems.push(Problem { field: "tripwire.window".into(), message: "use at least 1s".into() });
        }
        if !(self.sigma.is_finite() && self.sigma >= 0.0) {
            problems.push(Problem { field: "tripwire.sigma".into(), message: "use a number of 0 or more".into() });
        }
    }
}

//! What lets several gateways share one journal: leases, and owners of intents.
//!
//! A lease is a meta entry `lease/<name>` holding who has it and until when. Taking or
//! renewing one is a change the journal's writer builds under its batch lock, which on a
//! shared engine is held across every process: two gateways never both take a lease.
//! Each gateway renews `gateway/<its id>` while it lives (its liveness), and the one that
//! holds `background` runs the work that must run once (shipping, reconcile, scheduled
//! verify, recovery of dead gateways' intents).
//!
//! Each intent's unresolved entry names its owner, the process that appended it. An intent
//! whose owner is alive belongs to a request in flight there; one whose owner's lease has
//! expired was interrupted, and any gateway may resolve it. Lease times are the gateways'
//! clocks, so they must agree to well within a lease's length (NTP does).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rewind_model::{Body, Seq};

use crate::engine::{EngineExt, Table, Write};
use crate::writer::View;
use crate::{Journal, JournalError, Record, layout};

/// How long a lease lasts unless renewed: a dead gateway's intents and background work
/// pass to another within this (plus one renewal).
pub const LEASE_TTL: Duration = Duration::from_secs(20);
/// How often a holder renews its leases: several renewals fit in one lease, so a slow
/// round trip or two does not lose it.
pub const RENEW_EVERY: Duration = Duration::from_secs(5);
/// The lease of the gateway that runs the work that must run once.
pub const BACKGROUND: &str = "background";

/// Who holds a lease, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The holder's id.
    pub holder: String,
    /// When it lapses unless renewed, µs since the epoch.
    pub expires_us: i64,
}

fn lease_key(name: &str) -> Vec<u8> {
    [layout::LEASE_PREFIX, name.as_bytes()].concat()
}

/// The liveness lease of gateway `owner`.
pub fn liveness(owner: &str) -> String {
    format!("gateway/{owner}")
}

fn parse(value: &[u8]) -> Option<Lease> {
    let expires_us = i64::from_be_bytes(value.get(..8)?.try_into().ok()?);
    Some(Lease { holder: String::from_utf8_lossy(&value[8..]).into_owned(), expires_us })
}

fn value(lease: &Lease) -> Vec<u8> {
    [&lease.expires_us.to_be_bytes()[..], lease.holder.as_bytes()].concat()
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

impl Journal {
    /// Who the intents this process appends belong to ("" on a journal it has to itself).
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Takes lease `name` for this process's owner, or renews it, for `ttl` from now;
    /// `false` when another holder has it and it has not lapsed.
    pub async fn lease_renew(&self, name: &str, ttl: Duration) -> Result<bool, JournalError> {
        let key = lease_key(name);
        let holder = self.owner.to_string();
        let clock = self.clock.clone();
        let taken = Arc::new(AtomicBool::new(false));
        let flag = taken.clone();
        self.change(Box::new(move |view: &View<'_>| {
            let now = clock();
            let current = view.get(Table::Meta, &key)?.and_then(|v| parse(&v));
            if current.is_some_and(|l| l.holder != holder && l.expires_us > now) {
                return Ok(Vec::new());
            }
            flag.store(true, Ordering::SeqCst);
            let lease = Lease { holder, expires_us: now.saturating_add(micros(ttl)) };
            Ok(vec![Write::Put(Table::Meta, key, value(&lease))])
        }))
        .await?;
        Ok(taken.load(Ordering::SeqCst))
    }

    /// Gives lease `name` up, if this process's owner holds it.
    pub async fn lease_release(&self, name: &str) -> Result<(), JournalError> {
        let key = lease_key(name);
        let holder = self.owner.to_string();
        self.change(Box::new(move |view: &View<'_>| {
            let current = view.get(Table::Meta, &key)?.and_then(|v| parse(&v));
            Ok(if current.is_some_and(|l| l.holder == holder) { vec![Write::Delete(Table::Meta, key)] } else { vec![] })
        }))
        .await
    }

    /// Lease `name` as stored (lapsed or not).
    pub fn lease(&self, name: &str) -> Result<Option<Lease>, JournalError> {
        Ok(self.engine.get(Table::Meta, &lease_key(name))?.and_then(|v| parse(&v)))
    }

    /// Every lease whose name starts with `prefix`: name and lease.
    pub fn leases(&self, prefix: &str) -> Result<Vec<(String, Lease)>, JournalError> {
        let mut out = Vec::new();
        self.engine.scan_prefix(Table::Meta, &lease_key(prefix), &mut |k, v| {
            if let Some(lease) = parse(v) {
                out.push((String::from_utf8_lossy(&k[layout::LEASE_PREFIX.len()..]).into_owned(), lease));
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// Whether gateway `owner`'s liveness lease holds now.
    pub fn owner_alive(&self, owner: &str) -> Result<bool, JournalError> {
        let now = self.now();
        Ok(self.lease(&liveness(owner))?.is_some_and(|l| l.holder == owner && l.expires_us > now))
    }

    /// Intents with neither a commit nor an abort, oldest first, each with its owner ("" for
    /// intents of a journal one process had to itself).
    pub fn unresolved_owned(&self) -> Result<Vec<(Record, String)>, JournalError> {
        let mut open: Vec<(Seq, String)> = Vec::new();
        self.engine.scan(Table::Unresolved, &[], &mut |k, v| {
            if let Some(seq) = layout::open_seq(k) {
                open.push((seq, String::from_utf8_lossy(v).into_owned()));
            }
            true
        })?;
        let mut out = Vec::with_capacity(open.len());
        for (seq, owner) in open {
            out.extend(self.record(seq)?.map(|r| (r, owner)));
        }
        Ok(out)
    }

    /// Intents on `bucket`/`key` with neither a commit nor an abort, oldest first, each with
    /// its owner: found through the marks filed under the key's lock id.
    pub fn unresolved_on(&self, bucket: &str, key: &str) -> Result<Vec<(Record, String)>, JournalError> {
        let id = layout::key_lock_id(bucket, key);
        if !self.marks.may_have(id) {
            return Ok(Vec::new());
        }
        let mut seqs = Vec::new();
        let prefix = layout::open_mark_prefix(id);
        self.engine.scan_prefix(Table::Unresolved, &prefix, &mut |k, _| {
            seqs.extend(layout::seq_of(&k[prefix.len()..]));
            Ok(())
        })?;
        let mut out = Vec::with_capacity(seqs.len());
        for seq in seqs {
            let Some(owner) = self.engine.get(Table::Unresolved, &layout::seq_key(seq))? else { continue };
            let Some(record) = self.record(seq)? else { continue };
            if matches!(&record.body, Body::Intent(i) if i.bucket == bucket && i.key == key) {
                out.push((record, String::from_utf8_lossy(&owner).into_owned()));
            }
        }
        Ok(out)
    }
}

//! Retention and garbage collection against a model: random workloads of puts, overwrites,
//! deletes, multipart uploads and snapshots over a simulated clock, under random policies
//! and holds, with forget and GC passes interleaved with writes (some racing them) and
//! interrupted at random points as a SIGKILL would (the process's state is then rebuilt
//! from the stores). Afterwards every instant the policy promises reads back byte for byte
//! as the model says, verify reads every chunk clean, the vault's copy of the journal
//! matches, and nothing the policy expired is left in the vault.

use std::collections::{BTreeMap, BTreeSet};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use proptest::prelude::*;
use rewind_capture::open::JournalIndex;
use rewind_config::{HumanDuration, RetentionConfig};
use rewind_crypto::{KeySet, SecretKey};
use rewind_journal::{Access, Durability, Journal, MemoryEngine, Progress, layout};
use rewind_model::{Body, Commit, Effect, Intent, ObjectVersion, Op, Seq};
use rewind_vault::{LocalBackend, Manifest, Vault, VaultSettings};

use crate::History;

const BUCKET: &str = "b";
const KEYS: u8 = 4;

/// One step of a workload.
#[derive(Debug, Clone)]
pub(crate) enum Step {
    /// Writes content `seed` to key `key`.
    Put { key: u8, seed: u8 },
    /// Deletes a key.
    Delete { key: u8 },
    /// A write that found its chunks in the vault before a GC pass and journals after it.
    PutRacingGc { key: u8, seed: u8 },
    /// The same by a writer this process's write epochs do not see (another gateway).
    PutUnseen { key: u8, seed: u8 },
    /// Starts a multipart upload of two parts (left in progress until it completes).
    StartUpload { seeds: (u8, u8) },
    /// Completes the upload in progress into `key`.
    CompleteUpload { key: u8 },
    /// Names the head.
    Snapshot,
    /// Moves the clock on.
    Advance { minutes: u32 },
    /// Applies the policy, interrupted after `polls` polls (0: runs to the end).
    Forget { polls: u8 },
    /// A GC pass, interrupted likewise.
    Gc { polls: u8 },
}

/// What the workload knows it did: every commit and the state after it.
#[derive(Default)]
struct Model {
    /// Position, time, and the bucket's state after it (key -> content seed list).
    states: Vec<(Seq, i64, BTreeMap<u8, Vec<u8>>)>,
    current: BTreeMap<u8, Vec<u8>>,
    labels: Vec<Seq>,
    /// Every version of each held key.
    held: BTreeMap<u8, Vec<Vec<u8>>>,
    upload: Option<(Vec<u8>, Vec<ObjectVersion>)>,
}

/// The settings of one run, and the knobs that break it on purpose.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub retention: RetentionConfig,
    pub held_keys: Vec<u8>,
    /// GC runs as if the grace period were zero (to show what it protects).
    pub skip_grace: bool,
}

/// The stores and the process state over them.
struct World {
    _dir: tempfile::TempDir,
    keys: Arc<KeySet>,
    clock: Arc<AtomicI64>,
    engine: Arc<MemoryEngine>,
    backend: Arc<LocalBackend>,
    journal: Arc<Journal>,
    vault: Arc<Vault>,
    /// Another writer on the same vault and index, outside this process's epochs.
    other: Arc<Vault>,
    model: Model,
    settings: Settings,
}

fn content(seed: u8) -> Vec<u8> {
    // A few sizes, some several chunks long, so that packs mix versions.
    crate::sweep::tests::content(seed, [3_000usize, 40_000, 700_000, 1_300_000][usize::from(seed % 4)])
}

fn version_of(m: &Manifest) -> ObjectVersion {
    ObjectVersion::of_content(m.size, m.blake3, m.chunks.clone(), hex::encode(&m.blake3[..8]))
}

/// Polls a future at most `polls` times (0: to the end), then drops it where it stands.
struct Interrupted<F> {
    inner: Pin<Box<F>>,
    polls: u8,
}

impl<F: Future> Future for Interrupted<F> {
    type Output = Option<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.inner.as_mut().poll(cx) {
            Poll::Ready(out) => Poll::Ready(Some(out)),
            Poll::Pending if self.polls == 1 => Poll::Ready(None),
            Poll::Pending => {
                self.polls = self.polls.saturating_sub(1);
                Poll::Pending
            }
        }
    }
}

impl World {
    fn new(settings: Settings) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let keys = Arc::new(KeySet::derive(&SecretKey::generate().unwrap()));
        let clock = Arc::new(AtomicI64::new(rewind_capture::now_us()));
        let engine = Arc::new(MemoryEngine::new());
        let backend = Arc::new(LocalBackend::open(dir.path()).unwrap());
        let (journal, vault, other) = Self::open(&keys, &clock, &engine, &backend);
        Self { _dir: dir, keys, clock, engine, backend, journal, vault, other, model: Model::default(), settings }
    }

    fn open(
        keys: &Arc<KeySet>,
        clock: &Arc<AtomicI64>,
        engine: &Arc<MemoryEngine>,
        backend: &Arc<LocalBackend>,
    ) -> (Arc<Journal>, Arc<Vault>, Arc<Vault>) {
        let clock = clock.clone();
        let time: rewind_journal::Clock = Arc::new(move || clock.load(Ordering::Relaxed));
        let journal =
            Arc::new(Journal::over_with_clock(engine.clone(), keys.clone(), Access::ReadWrite, time).unwrap());
        let vault = |j: &Arc<Journal>| {
            let index = Arc::new(JournalIndex(j.clone()));
            Arc::new(Vault::new(keys.clone(), backend.clone(), index, VaultSettings::default()))
        };
        (journal.clone(), vault(&journal), vault(&journal))
    }

    /// A restart: the process's state (open packs, write epochs, the journal's writer) is
    /// gone; the stores remain.
    ///
    /// The old writer first writes what the interrupted work had already handed it (a
    /// batch lands whole or not at all, and this is the "whole" case): were it still
    /// writing while the new process opens the stores, two writers would overlap, which
    /// no real restart does (the journal's lock keeps a second process out).
    async fn restart(&mut self) {
        let _ = self.journal.progress(Vec::new()).await;
        let (journal, vault, other) = Self::open(&self.keys, &self.clock, &self.engine, &self.backend);
        (self.journal, self.vault, self.other) = (journal, vault, other);
    }

    fn now(&self) -> i64 {
        self.clock.load(Ordering::Relaxed)
    }

    async fn store(vault: &Arc<Vault>, data: &[u8]) -> Manifest {
        let mut writer = vault.writer();
        writer.push(data).await.unwrap();
        writer.finish().await.unwrap()
    }

    async fn intent(&self, op: Op, key: u8) -> Seq {
        let intent = Intent {
            op,
            bucket: BUCKET.into(),
            key: format!("k{key}"),
            access_key: "AK".into(),
            request_id: "r".into(),
        };
        self.journal.append(Body::Intent(intent), Durability::Buffered).await.unwrap().seq
    }

    async fn commit(&mut self, intent: Seq, key: u8, effect: Effect, data: Option<Vec<u8>>, end_upload: bool) {
        let body = Body::Commit(Commit { intent, bucket: BUCKET.into(), key: format!("k{key}"), effect });
        let then = if end_upload { vec![Progress::RemovePrefix(upload_prefix())] } else { Vec::new() };
        let seq = self.journal.append_with(body, Durability::Synced, then).await.unwrap().seq;
        match &data {
            Some(d) => {
                self.model.current.insert(key, d.clone());
                if let Some(versions) = self.model.held.get_mut(&key) {
                    versions.push(d.clone());
                }
            }
            None => {
                self.model.current.remove(&key);
            }
        }
        self.model.states.push((seq, self.now(), self.model.current.clone()));
    }

    async fn gc(&self) -> Option<crate::api::GcReport> {
        let grace = if self.settings.skip_grace { Duration::ZERO } else { self.settings.retention.gc_grace.0 };
        let pass = crate::sweep::collect(&self.journal, &self.vault, self.backend.as_ref(), grace, self.now());
        Some(pass.await.unwrap())
    }

    async fn forget(&self) {
        let (backend, retention) = (self.backend.as_ref(), &self.settings.retention);
        crate::forget::forget(&self.journal, backend, backend, retention, None, self.now(), |_| Ok(0)).await.unwrap();
    }

    async fn step(&mut self, step: &Step) {
        match *step {
            Step::Put { key, seed } => {
                let _writes = self.vault.enter_write();
                let intent = self.intent(Op::Put, key).await;
                let data = content(seed);
                let m = Self::store(&self.vault, &data).await;
                self.commit(intent, key, Effect::Version(version_of(&m)), Some(data), false).await;
            }
            Step::Delete { key } => {
                let intent = self.intent(Op::Delete, key).await;
                self.commit(intent, key, Effect::Deleted { version_id: None }, None, false).await;
            }
            Step::PutRacingGc { key, seed } => {
                let writes = self.vault.enter_write();
                let intent = self.intent(Op::Put, key).await;
                let data = content(seed);
                let m = Self::store(&self.vault, &data).await;
                // The pass runs while the write is between its lookups and its commit.
                let pass = {
                    let (journal, vault, backend) = (self.journal.clone(), self.vault.clone(), self.backend.clone());
                    let grace =
                        if self.settings.skip_grace { Duration::ZERO } else { self.settings.retention.gc_grace.0 };
                    let now = self.now();
                    tokio::spawn(async move {
                        crate::sweep::collect(&journal, &vault, backend.as_ref(), grace, now).await.unwrap()
                    })
                };
                tokio::time::sleep(Duration::from_millis(20)).await;
                self.commit(intent, key, Effect::Version(version_of(&m)), Some(data), false).await;
                drop(writes);
                pass.await.unwrap();
            }
            Step::PutUnseen { key, seed } => {
                let intent = self.intent(Op::Put, key).await;
                let data = content(seed);
                let m = Self::store(&self.other, &data).await;
                self.gc().await;
                self.commit(intent, key, Effect::Version(version_of(&m)), Some(data), false).await;
            }
            Step::StartUpload { seeds } => {
                if self.model.upload.is_some() {
                    return;
                }
                let _writes = self.vault.enter_write();
                let mut data = Vec::new();
                let mut parts = Vec::new();
                for (n, seed) in [(1, seeds.0), (2, seeds.1)] {
                    let part = content(seed);
                    let m = Self::store(&self.vault, &part).await;
                    let key = layout::upload_part(&upload_prefix(), n);
                    self.journal.progress(vec![Progress::Put(key, version_of(&m).encode())]).await.unwrap();
                    parts.push(version_of(&m));
                    data.extend(part);
                }
                self.model.upload = Some((data, parts));
            }
            Step::CompleteUpload { key } => {
                let Some((data, parts)) = self.model.upload.take() else { return };
                let intent = self.intent(Op::CompleteMultipart, key).await;
                let chunks = parts.iter().flat_map(|p| p.chunks.clone()).collect();
                let m = Manifest { chunks, size: data.len() as u64, blake3: *blake3::hash(&data).as_bytes() };
                self.commit(intent, key, Effect::Version(version_of(&m)), Some(data), true).await;
            }
            Step::Snapshot => {
                let head = self.journal.head().unwrap().seq;
                let name = format!("s{}", self.model.labels.len());
                self.journal.label_put(&name, head).await.unwrap();
                self.model.labels.push(head);
            }
            Step::Advance { minutes } => {
                self.clock.fetch_add(i64::from(minutes) * 60_000_000, Ordering::Relaxed);
            }
            Step::Forget { polls } => {
                let done = Interrupted { inner: Box::pin(self.forget()), polls }.await;
                if done.is_none() {
                    self.restart().await;
                }
            }
            Step::Gc { polls } => {
                let done = Interrupted { inner: Box::pin(self.gc()), polls }.await;
                if done.is_none() {
                    self.restart().await;
                }
            }
        }
    }

    /// Reads the state at `seq` back from the journal and the vault.
    async fn read_state(&self, seq: Seq) -> Result<BTreeMap<u8, Vec<u8>>, String> {
        let entries = History::new(&self.journal).state_at(BUCKET, "", seq).map_err(|e| e.to_string())?;
        let mut out = BTreeMap::new();
        for e in entries {
            let key: u8 = e.key[1..].parse().unwrap();
            let v = &e.version;
            let m = Manifest { chunks: v.chunks.clone(), size: v.size, blake3: v.blake3 };
            let data = self.vault.read_object(&m).await.map_err(|err| format!("{} at seq:{}: {err}", e.key, seq.0))?;
            out.insert(key, data);
        }
        Ok(out)
    }

    /// Every promise the policy makes, checked against the model.
    async fn check(&mut self) -> Result<(), String> {
        // Nothing in flight, and past two grace periods (one to condemn, one to delete):
        // everything expired goes.
        // The promises are those of the policy as the last forget applied it.
        let grace = i64::try_from(self.settings.retention.gc_grace.0.as_micros()).unwrap() + 1;
        let applied = self.now();
        self.forget().await;
        self.gc().await;
        self.clock.fetch_add(grace, Ordering::Relaxed);
        self.gc().await;
        self.gc().await;
        let window = i64::try_from(self.settings.retention.keep_all_within.0.as_micros()).unwrap();
        let start = applied - window;
        let mut promised: BTreeSet<Seq> = self.model.labels.iter().copied().collect();
        for (seq, time, _) in &self.model.states {
            if *time > start {
                promised.insert(*seq);
            }
        }
        // The state at the window's start: the last commit at or before it.
        if let Some((seq, _, _)) = self.model.states.iter().rev().find(|(_, t, _)| *t <= start) {
            promised.insert(*seq);
        }
        // Every instant from the earliest one a time-travel view may show is whole, not only
        // the promised ones.
        let earliest = match self.journal.exact_from(BUCKET).map_err(|e| e.to_string())? {
            Some(seq) => Some(seq),
            None => self.journal.horizon().map_err(|e| e.to_string())?.map(|h| Seq(h.seq.0 + 1)),
        };
        let whole = self.model.states.iter().map(|(seq, _, _)| *seq).filter(|s| earliest.is_none_or(|e| *s >= e));
        promised.extend(whole.collect::<Vec<_>>());
        for seq in promised {
            let want = self.model_state_at(seq);
            let got = self.read_state(seq).await?;
            if got != want {
                return Err(format!("the state at seq:{} differs from the model's", seq.0));
            }
        }
        for (key, versions) in &self.model.held {
            let history = self.journal.history(BUCKET, &format!("k{key}")).map_err(|e| e.to_string())?;
            let mut kept = Vec::new();
            for r in history {
                if let Body::Commit(Commit { effect: Effect::Version(v), .. }) = r.body {
                    let m = Manifest { chunks: v.chunks, size: v.size, blake3: v.blake3 };
                    kept.push(self.vault.read_object(&m).await.map_err(|e| format!("held k{key}: {e}"))?);
                }
            }
            if &kept != versions {
                return Err(format!("held key k{key} lost versions: {} kept of {}", kept.len(), versions.len()));
            }
        }
        if let Some((data, parts)) = &self.model.upload {
            for p in parts {
                let m = Manifest { chunks: p.chunks.clone(), size: p.size, blake3: p.blake3 };
                self.vault.read_object(&m).await.map_err(|e| format!("an upload in progress lost a part: {e}"))?;
            }
            let _ = data;
        }
        let report = crate::verify::verify(&self.journal, &self.vault, crate::verify::ReadData::ALL)
            .await
            .map_err(|e| e.to_string())?;
        if !report.ok() {
            return Err(format!("verify: {:?} {:?}", report.journal_problems, report.damaged));
        }
        let shipped = rewind_capture::ship::compare_with_vault(&self.journal, self.backend.as_ref())
            .await
            .map_err(|e| e.to_string())?;
        if !shipped.problems.is_empty() {
            return Err(format!("the vault's copy of the journal: {:?}", shipped.problems));
        }
        let packs = self.vault.pack_names().await.map_err(|e| e.to_string())?;
        let plan =
            crate::gc::plan(&self.journal, &self.settings.retention, applied, &packs).map_err(|e| e.to_string())?;
        if plan.packs_dead + plan.packs_unindexed > 0 || plan.bytes_expired > 0 {
            return Err(format!("the vault keeps what the policy expired: {plan:?}"));
        }
        Ok(())
    }

    fn model_state_at(&self, seq: Seq) -> BTreeMap<u8, Vec<u8>> {
        self.model.states.iter().rev().find(|(s, _, _)| *s <= seq).map(|(_, _, st)| st.clone()).unwrap_or_default()
    }
}

fn upload_prefix() -> Vec<u8> {
    layout::upload_prefix(BUCKET, "upload", "u1")
}

/// Runs `steps` under `settings`; the first broken promise, if any.
pub(crate) async fn run(steps: &[Step], settings: Settings) -> Result<(), String> {
    let mut world = World::new(settings.clone());
    for key in &settings.held_keys {
        world.journal.hold_put(BUCKET, &format!("k{key}"), true, "model").await.unwrap();
        world.model.held.insert(*key, Vec::new());
    }
    for step in steps {
        match *step {
            // Writers outside the epochs need a grace period (see `sweep.rs`).
            Step::PutUnseen { key, seed } if settings.retention.gc_grace.0.is_zero() && !settings.skip_grace => {
                world.step(&Step::Put { key, seed }).await;
            }
            _ => world.step(step).await,
        }
    }
    world.check().await
}

fn step() -> impl Strategy<Value = Step> {
    let key = 0..KEYS;
    let seed = 0u8..12; // few contents: writes deduplicate against old versions
    prop_oneof![
        6 => (key.clone(), seed.clone()).prop_map(|(key, seed)| Step::Put { key, seed }),
        2 => key.clone().prop_map(|key| Step::Delete { key }),
        2 => (key.clone(), seed.clone()).prop_map(|(key, seed)| Step::PutRacingGc { key, seed }),
        1 => (key.clone(), seed.clone()).prop_map(|(key, seed)| Step::PutUnseen { key, seed }),
        1 => (seed.clone(), seed).prop_map(|seeds| Step::StartUpload { seeds }),
        1 => key.prop_map(|key| Step::CompleteUpload { key }),
        1 => Just(Step::Snapshot),
        4 => (1u32..4 * 24 * 60).prop_map(|minutes| Step::Advance { minutes }),
        2 => (0u8..12).prop_map(|polls| Step::Forget { polls }),
        3 => (0u8..12).prop_map(|polls| Step::Gc { polls }),
    ]
}

fn settings() -> impl Strategy<Value = Settings> {
    let window = prop_oneof![Just(0u64), Just(3600), Just(86_400), Just(3 * 86_400)];
    let grace = prop_oneof![Just(0u64), Just(3600), Just(86_400)];
    (window, 0u32..4, 0u32..3, grace, proptest::collection::vec(0..KEYS, 0..2)).prop_map(
        |(window, hourly, daily, grace, held_keys)| Settings {
            retention: RetentionConfig {
                keep_all_within: HumanDuration::secs(window),
                keep_hourly: hourly,
                keep_daily: daily,
                keep_weekly: 0,
                keep_monthly: 0,
                keep_yearly: 0,
                min_keep_all_within: HumanDuration::secs(0),
                gc_grace: HumanDuration::secs(grace),
                ..RetentionConfig::default()
            },
            held_keys,
            skip_grace: false,
        },
    )
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

proptest! {
    // REWIND_MODEL_CASES=500 for a longer soak.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("REWIND_MODEL_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(24),
        ..ProptestConfig::default()
    })]

    #[test]
    fn retention_keeps_every_promise_through_crashes_and_races(
        steps in proptest::collection::vec(step(), 10..40),
        settings in settings(),
    ) {
        crate::sweep::SKIP_SETTLE.store(false, Ordering::Relaxed);
        let outcome = runtime().block_on(run(&steps, settings));
        prop_assert!(outcome.is_ok(), "{}", outcome.unwrap_err());
    }
}

/// The workload each negative test breaks: a version expires, then a write deduplicates
/// against its chunks and a pass runs before it journals: during the write (`racing`,
/// with no grace period), or from a writer outside the epochs.
fn expired_then_rewritten(racing: bool) -> Vec<Step> {
    let rewrite = if racing { Step::PutRacingGc { key: 1, seed: 2 } } else { Step::PutUnseen { key: 1, seed: 2 } };
    vec![
        Step::Put { key: 0, seed: 2 },
        Step::Put { key: 0, seed: 3 },
        Step::Advance { minutes: 3 * 24 * 60 },
        Step::Forget { polls: 0 },
        rewrite,
        Step::Advance { minutes: 3 * 24 * 60 },
        Step::Gc { polls: 0 },
    ]
}

fn short_policy(grace: u64, skip_grace: bool) -> Settings {
    Settings {
        retention: RetentionConfig {
            keep_all_within: HumanDuration::secs(3600),
            min_keep_all_within: HumanDuration::secs(0),
            gc_grace: HumanDuration::secs(grace),
            ..RetentionConfig::default()
        },
        held_keys: Vec::new(),
        skip_grace,
    }
}

#[test]
fn the_model_passes_the_workloads_the_negative_tests_break() {
    for (racing, grace) in [(true, 0), (false, 86_400)] {
        let outcome = runtime().block_on(run(&expired_then_rewritten(racing), short_policy(grace, false)));
        assert!(outcome.is_ok(), "{outcome:?}");
    }
}

/// The model test can fail: a GC that does not wait for writes in flight deletes the pack
/// a racing write deduplicated against.
#[test]
fn the_model_fails_when_gc_ignores_writes_in_flight() {
    crate::sweep::SKIP_SETTLE.store(true, Ordering::Relaxed);
    let outcome = runtime().block_on(run(&expired_then_rewritten(true), short_policy(0, false)));
    let error = outcome.expect_err("a GC ignoring writes in flight lost nothing: does the test still race?");
    assert!(error.contains("seq:"), "{error}");
}

/// And when the grace period is skipped: a writer outside the epochs loses its chunks.
#[test]
fn the_model_fails_when_the_grace_period_is_skipped() {
    let outcome = runtime().block_on(run(&expired_then_rewritten(false), short_policy(86_400, true)));
    let error = outcome.expect_err("skipping the grace period lost nothing: does the test still exercise it?");
    assert!(error.contains("seq:"), "{error}");
}

//! Mirrors: every object the primary vault holds (packs, journal segments and
//! checkpoints, labels, key material) copied to further vaults in the background, so that
//! each mirror alone can rebuild the history (`rewind rebuild --vault <mirror>`).
//!
//! A client write waits for the primary vault only. Each gateway queues what it wrote to
//! the primary ([`Mirrored`]), and a task per mirror copies the queue in order; a mirror
//! that is down keeps its queue and is retried, so it never slows or refuses a write. A
//! full comparison of each mirror with the primary (at start, after a failure, and every
//! `vault.mirror_check_interval`) copies what no queue held: other gateways' writes, a
//! queue lost with a stop. Deletions (garbage collection) reach a mirror only after the
//! primary's succeeded, and only those: an object the primary lacks is never removed from a
//! mirror on the strength of a listing, so a lost primary cannot empty its mirrors.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use prometheus::{GaugeVec, IntCounterVec, IntGaugeVec, Opts, Registry};
use rewind_vault::VaultError;
use rewind_vault::backend::Backend;
use rewind_vault::reclaim::{Deleted, Reclaim};
use tokio_util::sync::CancellationToken;

mod handles;
pub use handles::{Mirrored, MirroredReclaim};

/// Metric names.
pub mod names {
    pub const MIRROR_PENDING_OBJECTS: &str = "rewind_mirror_pending_objects";
    pub const MIRROR_PENDING_BYTES: &str = "rewind_mirror_pending_bytes";
    pub const MIRROR_LAG_SECONDS: &str = "rewind_mirror_lag_seconds";
    pub const MIRROR_COPIED_BYTES_TOTAL: &str = "rewind_mirror_copied_bytes_total";
    pub const MIRROR_ERRORS_TOTAL: &str = "rewind_mirror_errors_total";
}

/// Queued objects a mirror may fall behind by before its queue is dropped for a full
/// comparison when it is back: bounded memory however long a mirror is down.
const MAX_QUEUE: usize = 1_000_000;
/// Packs copied to one mirror at once.
const PARALLEL_COPIES: usize = 16;
/// First and longest pause after a mirror failed.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MOST: Duration = Duration::from_secs(30);

/// The mirrors' metrics, labelled by the mirror's number (1, 2, …: its place in
/// `vault.mirrors`), never its location.
#[derive(Clone)]
pub struct MirrorMetrics {
    pending_objects: IntGaugeVec,
    pending_bytes: IntGaugeVec,
    lag_seconds: GaugeVec,
    copied_bytes: IntCounterVec,
    errors: IntCounterVec,
}

impl MirrorMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &Registry) -> Self {
        let label = &["mirror"];
        let fail = "invariant: static metric definition";
        let m = Self {
            pending_objects: IntGaugeVec::new(
                Opts::new(names::MIRROR_PENDING_OBJECTS, "Vault objects queued for a mirror, not yet copied."),
                label,
            )
            .expect(fail),
            pending_bytes: IntGaugeVec::new(
                Opts::new(names::MIRROR_PENDING_BYTES, "Bytes queued for a mirror, not yet copied."),
                label,
            )
            .expect(fail),
            lag_seconds: GaugeVec::new(
                Opts::new(
                    names::MIRROR_LAG_SECONDS,
                    "Age of the oldest object queued for a mirror (0: caught up): what losing the primary vault would lose from this mirror.",
                ),
                label,
            )
            .expect(fail),
            copied_bytes: IntCounterVec::new(
                Opts::new(names::MIRROR_COPIED_BYTES_TOTAL, "Bytes copied to a mirror."),
                label,
            )
            .expect(fail),
            errors: IntCounterVec::new(
                Opts::new(names::MIRROR_ERRORS_TOTAL, "Copies to (or deletions from) a mirror that failed and wait for a retry."),
                label,
            )
            .expect(fail),
        };
        let collectors: [Box<dyn prometheus::core::Collector>; 5] = [
            Box::new(m.pending_objects.clone()),
            Box::new(m.pending_bytes.clone()),
            Box::new(m.lag_seconds.clone()),
            Box::new(m.copied_bytes.clone()),
            Box::new(m.errors.clone()),
        ];
        for c in collectors {
            registry.register(c).expect("invariant: metric names are unique");
        }
        m
    }
}

/// What a mirror still has to do, in order.
#[derive(Debug, Clone)]
enum Task {
    /// Copy this object from the primary; its bytes when they are still held from the
    /// primary's write (shared by every mirror's queue, not copied), else read again.
    Copy { name: String, bytes: u64, data: Option<Bytes> },
    /// Delete this object, which the primary's garbage collection deleted.
    Delete { name: String },
}

impl Task {
    /// Whether two entries are the same task (the bytes they hold aside).
    fn same(&self, other: &Task) -> bool {
        match (self, other) {
            (Task::Copy { name: a, .. }, Task::Copy { name: b, .. })
            | (Task::Delete { name: a }, Task::Delete { name: b }) => a == b,
            _ => false,
        }
    }
}

/// Bytes of written objects a mirror's queue keeps in memory unless told otherwise
/// ([`Mirror::holding`]), so a mirror that keeps up copies without reading the primary
/// again; beyond it, objects are queued by name. The bytes are shared by every mirror's
/// queue, so all mirrors together pin no more than the largest limit.
const HELD_MAX: u64 = 64 << 20;

#[derive(Default)]
struct Queue {
    tasks: VecDeque<(Task, Instant)>,
    bytes: u64,
    /// Of `bytes`, those held in memory.
    held: u64,
}

/// One mirror: where it is, how to reach it, and its queue.
pub struct Mirror {
    /// Its number, as the metrics and the CLI name it.
    pub number: usize,
    /// Where it is, for messages.
    pub location: String,
    backend: Arc<dyn Backend>,
    reclaim: Arc<dyn Reclaim>,
    queue: Mutex<Queue>,
    /// Bytes of written objects the queue may hold in memory.
    held_max: u64,
    /// Set when the queue may miss something: the next pass compares in full.
    compare: AtomicBool,
    wake: tokio::sync::Notify,
    /// Woken each time the queue empties.
    drained: tokio::sync::Notify,
}

impl Mirror {
    /// A mirror numbered `number` (from 1) over `backend`, deleting with `reclaim`.
    pub fn new(number: usize, location: String, backend: Arc<dyn Backend>, reclaim: Arc<dyn Reclaim>) -> Self {
        Self {
            number,
            location,
            backend,
            reclaim,
            queue: Mutex::default(),
            held_max: HELD_MAX,
            compare: AtomicBool::new(true),
            wake: tokio::sync::Notify::new(),
            drained: tokio::sync::Notify::new(),
        }
    }

    /// Holds at most `bytes` of written objects in memory (the gateway gives
    /// `vault.memory_budget`).
    #[must_use]
    pub fn holding(mut self, bytes: u64) -> Self {
        self.held_max = bytes;
        self
    }

    /// The mirror's storage.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// What deletes from the mirror.
    pub fn reclaim(&self) -> &Arc<dyn Reclaim> {
        &self.reclaim
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn push(&self, mut task: Task) {
        {
            let mut q = self.lock();
            if q.tasks.len() >= MAX_QUEUE {
                *q = Queue::default();
                self.compare.store(true, Ordering::Release);
            }
            if let Task::Copy { bytes, data, .. } = &mut task {
                q.bytes += *bytes;
                if data.is_some() && q.held + *bytes > self.held_max {
                    *data = None;
                }
                if data.is_some() {
                    q.held += *bytes;
                }
            }
            q.tasks.push_back((task, Instant::now()));
        }
        self.wake.notify_one();
    }

    /// Objects and bytes queued, and the age of the oldest.
    pub fn pending(&self) -> (usize, u64, Duration) {
        let q = self.lock();
        (q.tasks.len(), q.bytes, q.tasks.front().map_or(Duration::ZERO, |(_, at)| at.elapsed()))
    }

    fn label(&self) -> String {
        self.number.to_string()
    }

    fn observe(&self, metrics: &MirrorMetrics) {
        let (objects, bytes, age) = self.pending();
        let label = self.label();
        metrics.pending_objects.with_label_values(&[&label]).set(objects as i64);
        metrics.pending_bytes.with_label_values(&[&label]).set(i64::try_from(bytes).unwrap_or(i64::MAX));
        metrics.lag_seconds.with_label_values(&[&label]).set(age.as_secs_f64());
    }

    /// Carries out the queue's first tasks; `Ok(false)` when the queue is empty. Packs
    /// are copied up to [`PARALLEL_COPIES`] at once (a remote mirror's latency would
    /// otherwise bound its rate); anything else waits for what is before it and goes
    /// alone, so a mirror never holds a journal segment before the packs it names.
    async fn step(&self, primary: &dyn Backend, metrics: &MirrorMetrics) -> Result<bool, VaultError> {
        let batch: Vec<Task> = {
            let q = self.lock();
            let mut batch = Vec::new();
            for (task, _) in q.tasks.iter().take(PARALLEL_COPIES) {
                let pack = matches!(task, Task::Copy { name, .. } if name.starts_with("packs/"));
                if !batch.is_empty() && !pack {
                    break;
                }
                batch.push(task.clone());
                if !pack {
                    break;
                }
            }
            batch
        };
        if batch.is_empty() {
            return Ok(false);
        }
        let done = futures::future::join_all(batch.iter().map(|task| self.carry_out(primary, task))).await;
        let mut copied = 0;
        for outcome in done {
            copied += outcome?;
        }
        metrics.copied_bytes.with_label_values(&[&self.label()]).inc_by(copied);
        let mut q = self.lock();
        for task in batch {
            if q.tasks.front().is_some_and(|(t, _)| t.same(&task)) {
                q.tasks.pop_front();
                if let Task::Copy { bytes, data, .. } = task {
                    q.bytes = q.bytes.saturating_sub(bytes);
                    if data.is_some() {
                        q.held = q.held.saturating_sub(bytes);
                    }
                }
            }
        }
        Ok(true)
    }

    /// One task; the bytes it copied.
    async fn carry_out(&self, primary: &dyn Backend, task: &Task) -> Result<u64, VaultError> {
        match task {
            Task::Copy { name, data: Some(data), .. } => put_one(self.backend.as_ref(), name, data.clone()).await,
            Task::Copy { name, data: None, .. } => copy_one(primary, self.backend.as_ref(), name).await,
            Task::Delete { name } => match self.reclaim.delete(name).await? {
                // Kept by the mirror's own Object Lock: left there, as mirrors never delete
                // on the strength of a listing.
                Deleted::Gone | Deleted::Missing | Deleted::Locked { .. } => Ok(0),
            },
        }
    }

    /// Copies every object the primary holds and this mirror lacks, primary's key material
    /// first and journal segments last, so a mirror never holds a segment whose packs it
    /// lacks.
    pub async fn compare_and_copy(&self, primary: &dyn Backend, metrics: &MirrorMetrics) -> Result<u64, VaultError> {
        let missing = self.missing(primary).await?;
        let count = missing.len() as u64;
        // Key material first, then packs in parallel, then the journal in order (see `step`).
        let (packs, rest): (Vec<String>, Vec<String>) = missing.into_iter().partition(|n| n.starts_with("packs/"));
        let (first, last): (Vec<String>, Vec<String>) = rest.into_iter().partition(|n| copy_order(n) == 0);
        let label = self.label();
        for name in &first {
            metrics
                .copied_bytes
                .with_label_values(&[&label])
                .inc_by(copy_one(primary, self.backend.as_ref(), name).await?);
        }
        for group in packs.chunks(PARALLEL_COPIES) {
            let done =
                futures::future::join_all(group.iter().map(|n| copy_one(primary, self.backend.as_ref(), n))).await;
            for n in done {
                metrics.copied_bytes.with_label_values(&[&label]).inc_by(n?);
            }
        }
        for name in &last {
            metrics
                .copied_bytes
                .with_label_values(&[&label])
                .inc_by(copy_one(primary, self.backend.as_ref(), name).await?);
        }
        Ok(count)
    }

    /// The primary's objects this mirror lacks, in the order they are copied.
    pub async fn missing(&self, primary: &dyn Backend) -> Result<Vec<String>, VaultError> {
        let here: HashSet<String> = self.backend.list("").await?.into_iter().collect();
        let mut missing: Vec<String> = primary.list("").await?.into_iter().filter(|n| !here.contains(n)).collect();
        missing.sort_by_key(|n| copy_order(n));
        Ok(missing)
    }
}

/// Where an object comes in a full copy: what the rest needs comes first.
fn copy_order(name: &str) -> u8 {
    match name.split('/').next().unwrap_or("") {
        "keys" => 0,
        "packs" => 1,
        "labels" => 2,
        "bases" => 3,
        "segments" => 4,
        "checkpoints" => 5,
        _ => 6,
    }
}

/// Copies `name` from `from` to `to`; returns the bytes written (0: it was there already,
/// or the primary no longer holds it).
async fn copy_one(from: &dyn Backend, to: &dyn Backend, name: &str) -> Result<u64, VaultError> {
    let data: Bytes = match from.get(name).await {
        Ok(data) => data,
        // Deleted by garbage collection since it was queued: its deletion follows.
        Err(VaultError::NotFound { .. }) => return Ok(0),
        Err(e) => return Err(e),
    };
    put_one(to, name, data).await
}

/// Writes `data` as `name` to `to`; the bytes written (0: it was there already).
async fn put_one(to: &dyn Backend, name: &str, data: Bytes) -> Result<u64, VaultError> {
    let len = data.len() as u64;
    match to.put(name, data).await {
        Ok(()) => Ok(len),
        Err(VaultError::AlreadyExists { .. }) => Ok(0),
        Err(e) => Err(e),
    }
}

/// Every mirror of one vault.
pub struct Mirrors {
    primary: Arc<dyn Backend>,
    mirrors: Vec<Arc<Mirror>>,
}

impl Mirrors {
    /// The mirrors of `primary`.
    pub fn new(primary: Arc<dyn Backend>, mirrors: Vec<Mirror>) -> Arc<Self> {
        Arc::new(Self { primary, mirrors: mirrors.into_iter().map(Arc::new).collect() })
    }

    /// Each mirror.
    pub fn each(&self) -> &[Arc<Mirror>] {
        &self.mirrors
    }

    /// The primary vault's storage.
    pub fn primary(&self) -> &Arc<dyn Backend> {
        &self.primary
    }

    fn queue(&self, task: &Task) {
        for m in &self.mirrors {
            m.push(task.clone());
        }
    }

    /// Runs every mirror's copying until `stop`, then waits up to `stop_wait` for each
    /// reachable mirror to catch up. Full comparisons every `check_every`.
    pub async fn run(
        self: Arc<Self>,
        metrics: MirrorMetrics,
        check_every: Duration,
        stop_wait: Duration,
        stop: CancellationToken,
    ) {
        let tasks: Vec<_> = self
            .mirrors
            .iter()
            .map(|m| tokio::spawn(self.clone().run_one(m.clone(), metrics.clone(), check_every, stop.clone())))
            .collect();
        stop.cancelled().await;
        let deadline = tokio::time::Instant::now() + stop_wait;
        for m in &self.mirrors {
            loop {
                let drained = m.drained.notified();
                let (objects, _, _) = m.pending();
                if objects == 0 {
                    break;
                }
                if tokio::time::timeout_at(deadline, drained).await.is_err() {
                    tracing::warn!(
                        mirror = m.number,
                        objects,
                        "stopping with objects not yet copied to a mirror; they are copied at the next start"
                    );
                    break;
                }
            }
        }
        for t in tasks {
            t.abort();
        }
    }

    async fn run_one(
        self: Arc<Self>,
        m: Arc<Mirror>,
        metrics: MirrorMetrics,
        check_every: Duration,
        stop: CancellationToken,
    ) {
        let mut pause = RETRY_FIRST;
        let mut last_check = Instant::now();
        loop {
            if last_check.elapsed() >= check_every {
                m.compare.store(true, Ordering::Release);
            }
            let outcome = async {
                if m.compare.swap(false, Ordering::AcqRel) {
                    last_check = Instant::now();
                    let copied = m.compare_and_copy(self.primary.as_ref(), &metrics).await.inspect_err(|_| {
                        m.compare.store(true, Ordering::Release);
                    })?;
                    if copied > 0 {
                        tracing::info!(mirror = m.number, copied, "a mirror caught up with the primary vault");
                    }
                }
                while m.step(self.primary.as_ref(), &metrics).await? {
                    m.observe(&metrics);
                }
                Ok::<(), VaultError>(())
            }
            .await;
            m.observe(&metrics);
            match outcome {
                Ok(()) => {
                    pause = RETRY_FIRST;
                    m.drained.notify_waiters();
                    let until = check_every.saturating_sub(last_check.elapsed());
                    tokio::select! {
                        () = m.wake.notified() => {}
                        () = tokio::time::sleep(until) => {}
                    }
                }
                Err(e) => {
                    metrics.errors.with_label_values(&[&m.label()]).inc();
                    tracing::warn!(mirror = m.number, location = %m.location, error = %e, retry_in = ?pause, "could not copy to a mirror; client writes go on, the mirror catches up when it is back");
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        () = stop.cancelled() => {}
                    }
                    pause = (pause * 2).min(RETRY_MOST);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rewind_vault::backend::LocalBackend;

    fn local(dir: &std::path::Path) -> Arc<LocalBackend> {
        Arc::new(LocalBackend::open(dir).unwrap())
    }

    #[test]
    fn a_queue_holds_written_bytes_up_to_its_limit_then_names_only() {
        let dir = tempfile::tempdir().unwrap();
        let backend = local(dir.path());
        let mirror = Mirror::new(1, "m".into(), backend.clone(), backend).holding(10);
        let copy = |name: &str| Task::Copy { name: name.into(), bytes: 6, data: Some(Bytes::from_static(b"sixsix")) };
        mirror.push(copy("packs/a"));
        mirror.push(copy("packs/b"));
        let q = mirror.lock();
        assert_eq!((q.bytes, q.held), (12, 6), "the second pack would pass the limit: queued by name");
        let held: Vec<bool> = q.tasks.iter().map(|(t, _)| matches!(t, Task::Copy { data: Some(_), .. })).collect();
        assert_eq!(held, [true, false]);
    }

    #[tokio::test]
    async fn a_mirror_copies_in_order_survives_an_outage_and_follows_deletions() {
        let dir = tempfile::tempdir().unwrap();
        let primary = local(&dir.path().join("primary"));
        let mirror_dir = dir.path().join("mirror");
        let mirror = local(&mirror_dir);
        let registry = Registry::new();
        let metrics = MirrorMetrics::register(&registry);
        let mirrors =
            Mirrors::new(primary.clone(), vec![Mirror::new(1, "mirror".into(), mirror.clone(), mirror.clone())]);
        // Written before the mirror's task runs: found by the first full comparison.
        primary.put("segments/0001", Bytes::from_static(b"s")).await.unwrap();
        primary.put("keys/master", Bytes::from_static(b"k")).await.unwrap();
        let vault = Mirrored::new(mirrors.clone());
        let reclaim = MirroredReclaim::new(primary.clone(), mirrors.clone());
        let stop = CancellationToken::new();
        let runner = tokio::spawn(mirrors.clone().run(
            metrics,
            Duration::from_secs(3600),
            Duration::from_secs(10),
            stop.clone(),
        ));
        vault.put("packs/ab/one", Bytes::from_static(b"pack one")).await.unwrap();
        wait_for(|| mirror_dir.join("packs/ab/one").exists()).await;
        assert!(mirror_dir.join("keys/master").exists() && mirror_dir.join("segments/0001").exists());

        // The mirror goes away: writes go on, and queue.
        let away = dir.path().join("away");
        std::fs::rename(&mirror_dir, &away).unwrap();
        std::fs::write(&mirror_dir, b"not a directory").unwrap();
        vault.put("packs/cd/two", Bytes::from_static(b"pack two")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(mirrors.each()[0].pending().0, 1, "the copy waits for the mirror");
        std::fs::remove_file(&mirror_dir).unwrap();
        std::fs::rename(&away, &mirror_dir).unwrap();
        wait_for(|| mirror_dir.join("packs/cd/two").exists()).await;

        // Deletions follow the primary's; a listing never deletes.
        reclaim.delete("packs/ab/one").await.unwrap();
        wait_for(|| !mirror_dir.join("packs/ab/one").exists()).await;
        std::fs::remove_file(dir.path().join("primary/segments/0001")).unwrap();
        mirrors.each()[0].compare.store(true, Ordering::Release);
        vault.put("packs/ef/three", Bytes::from_static(b"three")).await.unwrap();
        wait_for(|| mirror_dir.join("packs/ef/three").exists()).await;
        assert!(mirror_dir.join("segments/0001").exists(), "what the primary lost stays on the mirror");
        stop.cancel();
        runner.await.unwrap();
        let text = prometheus::TextEncoder::new().encode_to_string(&registry.gather()).unwrap();
        assert!(text.contains("rewind_mirror_errors_total{mirror=\"1\"}"), "the outage was counted");
    }

    async fn wait_for(done: impl Fn() -> bool) {
        for _ in 0..300 {
            if done() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("timed out");
    }

    #[test]
    fn key_material_and_packs_come_before_the_journal() {
        let mut names = vec!["segments/1", "checkpoints/1", "packs/aa/x", "labels/1", "keys/master", "bases/1"];
        names.sort_by_key(|n| copy_order(n));
        assert_eq!(names, ["keys/master", "packs/aa/x", "labels/1", "bases/1", "segments/1", "checkpoints/1"]);
    }
}

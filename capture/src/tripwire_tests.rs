//! The tripwire's windows and signals, and the position an incident starts at.

use super::*;

fn policy() -> TripwirePolicy {
    TripwireConfig::default().policy("b")
}

fn feed(w: &mut Watch, at_us: i64, change: Change, n: u64) {
    for _ in 0..n {
        w.roll(at_us, micros(policy().window));
        w.cur.add(change);
    }
}

#[test]
fn deletes_fire_unless_as_many_keys_are_created() {
    let mut w = Watch::default();
    feed(&mut w, 1_000_000, Change::Deleted, 39);
    assert!(w.signals(&policy(), 1_000_000).is_empty());
    feed(&mut w, 1_000_000, Change::Deleted, 1);
    assert_eq!(w.signals(&policy(), 1_000_000), ["deletes"]);

    let mut rotation = Watch::default();
    for _ in 0..500 {
        feed(&mut rotation, 1_000_000, Change::Created, 1);
        feed(&mut rotation, 1_000_000, Change::Deleted, 1);
    }
    assert!(rotation.signals(&policy(), 1_000_000).is_empty());
}

#[test]
fn a_key_that_always_deletes_a_lot_raises_its_own_bar() {
    let window = micros(policy().window);
    let mut w = Watch::default();
    // Windows of 100 to 140 deletes, an hour of them.
    for i in 0..60 {
        feed(&mut w, 1 + i * window, Change::Deleted, 100 + (i as u64 % 5) * 10);
    }
    let at = 1 + 60 * window + window - 1;
    feed(&mut w, at, Change::Deleted, 150);
    assert!(w.signals(&policy(), at).is_empty(), "within its usual spread: mean {} sd {}", w.mean, w.var.sqrt());
    feed(&mut w, at, Change::Deleted, 150);
    assert_eq!(w.signals(&policy(), at), ["deletes"], "far beyond it");
}

#[test]
fn encrypted_overwrites_fire_long_before_plain_ones() {
    let mut w = Watch::default();
    feed(&mut w, 1_000_000, Change::Overwrote { encrypted: false, sse_c: false }, 400);
    assert!(w.signals(&policy(), 1_000_000).is_empty(), "a sync rewriting many objects");
    feed(&mut w, 1_000_000, Change::Overwrote { encrypted: true, sse_c: false }, 10);
    assert_eq!(w.signals(&policy(), 1_000_000), ["encrypted_overwrites"]);
}

/// Parallel deletes commit at positions in one order and reach the tripwire in another:
/// the incident (and so its undo) must start at the lowest, even one observed after it
/// opened.
#[tokio::test]
async fn an_incident_starts_at_its_lowest_change_whatever_order_they_are_seen_in() {
    let keys = Arc::new(rewind_crypto::KeySet::derive(&rewind_crypto::SecretKey::generate().unwrap()));
    let engine = Arc::new(rewind_journal::MemoryEngine::new());
    let journal = Journal::over(engine, keys, rewind_journal::Access::ReadWrite).unwrap();
    let metrics = Metrics::register(&prometheus::Registry::new());
    let config = TripwireConfig { enabled: true, ..TripwireConfig::default() };
    let tripwire = Tripwire::new(config, Arc::new(journal), metrics);
    // Positions 110..150 observed out of order, 105 withheld until the incident is open.
    for seq in (110..150).rev() {
        tripwire.observe("AKID", "b", Seq(seq), Change::Deleted).await.unwrap();
    }
    let opened = incidents(&tripwire.journal).unwrap();
    assert_eq!(opened.len(), 1, "forty deletes open an incident");
    assert_eq!(opened[0].first_seq, 110, "the lowest delete seen, not the first one seen");
    tripwire.observe("AKID", "b", Seq(105), Change::Deleted).await.unwrap();
    tripwire.observe("AKID", "b", Seq(104), Change::Created).await.unwrap();
    let [incident] = &incidents(&tripwire.journal).unwrap()[..] else { panic!("one incident") };
    assert_eq!(incident.first_seq, 105, "an earlier delete seen late moves the start back");
}

#[test]
fn counts_fade_with_the_window() {
    let window = micros(policy().window);
    let mut w = Watch::default();
    feed(&mut w, 1_000_000, Change::Deleted, 39);
    // Half a window later, the first 39 count as about 20; that window also raised the
    // key's bar (its baseline) to about 55.
    let later = 1_000_000 + window + window / 2;
    feed(&mut w, later, Change::Deleted, 30);
    assert!(w.signals(&policy(), later).is_empty());
    feed(&mut w, later, Change::Deleted, 10);
    assert_eq!(w.signals(&policy(), later), ["deletes"]);
}

//! The ransomware tripwire, end to end: an attacker key overwriting text objects with
//! random bytes opens an incident within the first objects; in protect mode its further
//! writes are refused while another key keeps writing; `rewind undo --incident` puts back
//! every object it touched, byte-exact; `rewind incidents ack` lets the key write again.
//! A mass delete (one by one and in batches) opens one too; benign workloads open none.

#![allow(clippy::unwrap_used)]

use std::process::Command;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use rewind_capture::tripwire::{Incident, IncidentState};
use rewind_config::{Secret, TripwireAction};
use rewind_testkit::{FsUpstream, TestGateway, key_pair, pattern, s3_client};

fn rewind(gw: &TestGateway, args: &[&str]) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_rewind"))
        .arg("--json")
        .args(args)
        .env("REWIND_ADMIN_URL", gw.admin_url())
        .env("REWIND_ADMIN_TOKEN", gw.admin_token())
        .output()
        .unwrap();
    assert!(out.status.success(), "rewind {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

fn incidents(gw: &TestGateway) -> Vec<Incident> {
    serde_json::from_slice(&rewind(gw, &["incidents", "ls"]).stdout).unwrap()
}

/// About 4 KiB of text that compresses, different per key.
fn text(key: &str) -> Vec<u8> {
    (0..60)
        .flat_map(|i| format!("{key} line {i}: the quick brown fox jumps over the lazy dog\n").into_bytes())
        .collect()
}

async fn body(s3: &aws_sdk_s3::Client, key: &str) -> Option<Vec<u8>> {
    let got = s3.get_object().bucket("bkt").key(key).send().await.ok()?;
    Some(got.body.collect().await.unwrap().into_bytes().to_vec())
}

async fn put(s3: &aws_sdk_s3::Client, key: &str, data: Vec<u8>) -> Result<(), String> {
    s3.put_object().bucket("bkt").key(key).body(ByteStream::from(data)).send().await.map(|_| ()).map_err(|e| {
        use aws_sdk_s3::error::ProvideErrorMetadata;
        format!("{}: {}", e.code().unwrap_or_default(), e.message().unwrap_or_default())
    })
}

/// A gateway with a second client key (the attacker's) and the tripwire's `action`.
async fn gateway(upstream: &FsUpstream, action: TripwireAction) -> (TestGateway, aws_sdk_s3::Client, String) {
    let (id, secret) = key_pair();
    let gw = TestGateway::start_with(&upstream.target, |c| {
        c.set_client_key(id.clone(), Secret::new(secret.clone()));
        c.tripwire.action = action;
    })
    .await;
    let attacker = s3_client(&gw.endpoint(), &id, &secret);
    gw.client().create_bucket().bucket("bkt").send().await.unwrap();
    (gw, attacker, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)] // the rewind binary runs beside an in-process gateway
async fn encrypting_overwrites_are_stopped_in_protect_mode_and_undone_by_incident() {
    let upstream = FsUpstream::start().await;
    let (gw, attacker, attacker_id) = gateway(&upstream, TripwireAction::Protect).await;
    let legit = gw.client();
    let keys: Vec<String> = (0..100).map(|i| format!("doc{i:03}")).collect();
    for k in &keys {
        put(&legit, k, text(k)).await.unwrap();
    }

    // The attack, one object after another, while the legitimate key writes new ones.
    let mut changed = 0;
    let refusal = loop {
        let k = &keys[changed];
        match put(&attacker, k, pattern(4096, changed as u64)).await {
            Ok(()) => changed += 1,
            Err(e) => break e,
        }
        put(&legit, &format!("legit{changed:03}"), text("legit")).await.unwrap();
        assert!(changed < keys.len(), "the attack went through the whole bucket");
    };
    assert!(changed <= 50, "stopped after {changed} objects");
    let listed = incidents(&gw);
    assert_eq!(listed.len(), 1, "{listed:?}");
    let incident = &listed[0];
    assert_eq!((incident.actor.as_str(), incident.bucket.as_str()), (attacker_id.as_str(), "bkt"));
    assert!(incident.signals.contains(&"encrypted_overwrites".to_owned()), "{incident:?}");
    assert_eq!(incident.state, IncidentState::Open);
    assert!(incident.first_seq <= incident.last_seq);
    assert!(refusal.starts_with("AccessDenied") && refusal.contains(&incident.id), "{refusal}");
    // Refused for every write of that key to that bucket; the other key writes on.
    let del = attacker.delete_object().bucket("bkt").key(&keys[70]).send().await;
    assert!(del.is_err(), "deletes are refused too");
    put(&legit, "legit-after", text("after")).await.unwrap();
    let direct = upstream.client();
    for k in &keys[changed..] {
        let got = direct.get_object().bucket("bkt").key(k).send().await.unwrap();
        assert_eq!(got.body.collect().await.unwrap().into_bytes().as_ref(), text(k), "{k} untouched upstream");
    }

    let out = rewind(&gw, &["undo", "--incident", &incident.id, "--yes"]);
    assert!(!out.stdout.is_empty());
    for k in &keys {
        assert_eq!(body(&legit, k).await, Some(text(k)), "{k} is back byte-exact");
    }
    for i in 0..changed {
        assert_eq!(body(&legit, &format!("legit{:03}", i + 1)).await, Some(text("legit")), "legit writes stay");
    }
    assert_eq!(body(&legit, "legit-after").await, Some(text("after")));

    let acked: Incident = serde_json::from_slice(&rewind(&gw, &["incidents", "ack", &incident.id]).stdout).unwrap();
    assert_eq!(acked.state, IncidentState::Acknowledged);
    put(&attacker, "after-ack", b"allowed again".to_vec()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mass_deletes_open_an_incident_and_benign_churn_does_not() {
    let upstream = FsUpstream::start().await;
    let (gw, attacker, attacker_id) = gateway(&upstream, TripwireAction::Alert).await;
    let legit = gw.client();
    // Benign: a bulk import, log rotation (a new key for each old one deleted), compressed
    // archives under new keys, a sync rewriting 1% of the bucket.
    for i in 0..400 {
        put(&legit, &format!("obj{i:04}"), text(&format!("obj{i}"))).await.unwrap();
    }
    for i in 0..120 {
        put(&legit, &format!("log/{i:04}"), text("log line")).await.unwrap();
        if i >= 20 {
            legit.delete_object().bucket("bkt").key(format!("log/{:04}", i - 20)).send().await.unwrap();
        }
    }
    for i in 0..30 {
        put(&legit, &format!("archive/{i}.tar.zst"), pattern(8192, 1000 + i)).await.unwrap();
    }
    for i in 0..4 {
        put(&legit, &format!("obj{:04}", i * 100), text(&format!("obj{i} edited"))).await.unwrap();
    }
    assert!(incidents(&gw).is_empty(), "benign workloads open no incident: {:?}", incidents(&gw));

    // The attack: deletes one by one, then in batches of 20.
    let first = gw.gateway.capture().journal().head().unwrap().seq.0;
    for i in 0..30 {
        attacker.delete_object().bucket("bkt").key(format!("obj{i:04}")).send().await.unwrap();
    }
    for batch in 0..3 {
        let ids: Vec<_> = (0..20)
            .map(|j| ObjectIdentifier::builder().key(format!("obj{:04}", 30 + batch * 20 + j)).build().unwrap())
            .collect();
        let delete = Delete::builder().set_objects(Some(ids)).build().unwrap();
        attacker.delete_objects().bucket("bkt").delete(delete).send().await.unwrap();
    }
    let listed = incidents(&gw);
    assert_eq!(listed.len(), 1, "{listed:?}");
    let incident = &listed[0];
    assert_eq!(incident.actor, attacker_id);
    assert_eq!(incident.signals, ["deletes"]);
    assert!(incident.first_seq > first && incident.first_seq <= first + 3, "from the first delete: {incident:?}");
    assert!(incident.counts.deletes >= 40, "{incident:?}");
    // Alert mode: nothing is refused.
    put(&attacker, "still-writing", b"x".to_vec()).await.unwrap();
    let shown: Incident = serde_json::from_slice(&rewind(&gw, &["incidents", "show", &incident.id]).stdout).unwrap();
    assert_eq!(shown.id, incident.id);
}

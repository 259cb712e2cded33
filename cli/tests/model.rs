//! Model-based test of history and restore: random sequences of puts, overwrites,
//! multipart uploads, copies, deletes, batch deletes and tag changes go both to an
//! in-memory model and through the gateway to moto. Then, for random instants, `ls --at`
//! must equal the model's state then, and a restore into a fresh bucket must produce
//! exactly that state (bytes, content-type, user metadata, tags). Run against one gateway,
//! and against three that share a PostgreSQL journal and a vault, each request going to
//! another gateway.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    CompletedMultipartUpload, CompletedPart, Delete, MetadataDirective, ObjectIdentifier, Tag, Tagging,
};
use http::Method;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};
use rewind_cli::{Client, Lines};
use rewind_journal::conformance::PostgresFixture;
use rewind_snapshotter::api::{Listing, Mode, RestoreEvent, RestoreRequest};
use rewind_testkit::TestGateway;
use rewind_testkit::moto::Moto;

const KEYS: [&str; 4] = ["a", "b", "dir/c", "dir/d"];
const TYPES: [Option<&str>; 3] = [None, Some("text/plain"), Some("application/json")];
/// What the SDK sends when a PutObject names no content type.
const SDK_DEFAULT_TYPE: &str = "application/octet-stream";
/// What S3 reports for an object written without a content type.
const DEFAULT_TYPE: &str = "binary/octet-stream";
/// moto's smallest non-last part, lowered so multipart uploads stay small.
const PART_MIN: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Obj {
    bytes: Vec<u8>,
    content_type: Option<String>,
    metadata: BTreeMap<String, String>,
    tags: BTreeMap<String, String>,
}

type State = BTreeMap<String, Obj>;

/// Key, size, BLAKE3, content type, metadata, tags: what `ls` and the model must agree on.
type Row = (String, u64, String, Option<String>, Vec<(String, String)>, Vec<(String, String)>);

#[derive(Debug, Clone)]
enum Step {
    Put { key: usize, size: usize, seed: u64, ty: usize, meta: Option<u8>, tags: Option<u8> },
    Multipart { key: usize, parts: usize, seed: u64, ty: usize, tags: Option<u8> },
    Copy { from: usize, to: usize, replace: Option<(usize, u8)> },
    Delete { key: usize },
    BatchDelete { keys: Vec<usize> },
    Tag { key: usize, tags: u8 },
    Untag { key: usize },
}

fn step() -> impl Strategy<Value = Step> {
    let key = 0..KEYS.len();
    let size = prop_oneof![4 => 0..20_000usize, 1 => Just(2_700_000usize)];
    prop_oneof![
        4 => (key.clone(), size, any::<u64>(), 0..TYPES.len(), any::<Option<u8>>(), any::<Option<u8>>())
            .prop_map(|(key, size, seed, ty, meta, tags)| Step::Put { key, size, seed, ty, meta, tags }),
        1 => (key.clone(), 2..4usize, any::<u64>(), 0..TYPES.len(), any::<Option<u8>>())
            .prop_map(|(key, parts, seed, ty, tags)| Step::Multipart { key, parts, seed, ty, tags }),
        1 => (key.clone(), key.clone(), any::<Option<(usize, u8)>>())
            .prop_map(|(from, to, replace)| Step::Copy { from, to, replace: replace.map(|(t, m)| (t % TYPES.len(), m)) }),
        2 => key.clone().prop_map(|key| Step::Delete { key }),
        1 => proptest::collection::vec(key.clone(), 1..4).prop_map(|keys| Step::BatchDelete { keys }),
        1 => (key.clone(), any::<u8>()).prop_map(|(key, tags)| Step::Tag { key, tags }),
        1 => key.prop_map(|key| Step::Untag { key }),
    ]
}

fn pairs(seed: u8, what: &str) -> BTreeMap<String, String> {
    (0..=seed % 3).map(|i| (format!("{what}{i}"), format!("v{}", seed.wrapping_add(i)))).collect()
}

fn tagging_header(tags: &BTreeMap<String, String>) -> Option<String> {
    (!tags.is_empty()).then(|| tags.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&"))
}

fn tag_set(tags: &BTreeMap<String, String>) -> Tagging {
    let set = tags.iter().map(|(k, v)| Tag::builder().key(k).value(v).build().unwrap()).collect();
    Tagging::builder().set_tag_set(Some(set)).build().unwrap()
}

/// Applies `step` to the gateway and to `model`.
/// Whether any of `steps` gave `key` tags.
fn ever_tagged(steps: &[Step], key: usize) -> bool {
    steps.iter().any(|s| match *s {
        Step::Put { key: k, tags, .. } | Step::Multipart { key: k, tags, .. } => k == key && tags.is_some(),
        Step::Tag { key: k, .. } => k == key,
        _ => false,
    })
}

async fn apply(s3: &aws_sdk_s3::Client, bucket: &str, step: &Step, model: &mut State) {
    match step {
        Step::Put { key, size, seed, ty, meta, tags } => {
            let obj = Obj {
                bytes: rewind_testkit::pattern(*size, *seed),
                // The SDK sends this when a PutObject names no content type.
                content_type: Some(TYPES[*ty].unwrap_or(SDK_DEFAULT_TYPE).into()),
                metadata: meta.map(|m| pairs(m, "m")).unwrap_or_default(),
                tags: tags.map(|t| pairs(t, "t")).unwrap_or_default(),
            };
            s3.put_object()
                .bucket(bucket)
                .key(KEYS[*key])
                .body(ByteStream::from(obj.bytes.clone()))
                .set_content_type(TYPES[*ty].map(Into::into))
                .set_metadata(Some(obj.metadata.clone().into_iter().collect()))
                .set_tagging(tagging_header(&obj.tags))
                .send()
                .await
                .unwrap();
            model.insert(KEYS[*key].into(), obj);
        }
        Step::Multipart { key, parts, seed, ty, tags } => {
            let tags = tags.map(|t| pairs(t, "t")).unwrap_or_default();
            let up = s3
                .create_multipart_upload()
                .bucket(bucket)
                .key(KEYS[*key])
                .set_content_type(TYPES[*ty].map(Into::into))
                .set_tagging(tagging_header(&tags))
                .send()
                .await
                .unwrap();
            let id = up.upload_id().unwrap();
            let (mut bytes, mut done) = (Vec::new(), Vec::new());
            for n in 1..=*parts {
                let part = rewind_testkit::pattern(PART_MIN + n * 100, seed.wrapping_add(n as u64));
                bytes.extend_from_slice(&part);
                let out = s3
                    .upload_part()
                    .bucket(bucket)
                    .key(KEYS[*key])
                    .upload_id(id)
                    .part_number(n as i32)
                    .body(ByteStream::from(part))
                    .send()
                    .await
                    .unwrap();
                done.push(
                    CompletedPart::builder().part_number(n as i32).set_e_tag(out.e_tag().map(Into::into)).build(),
                );
            }
            s3.complete_multipart_upload()
                .bucket(bucket)
                .key(KEYS[*key])
                .upload_id(id)
                .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(done)).build())
                .send()
                .await
                .unwrap();
            let obj = Obj { bytes, content_type: TYPES[*ty].map(Into::into), metadata: BTreeMap::new(), tags };
            model.insert(KEYS[*key].into(), obj);
        }
        Step::Copy { from, to, replace } => {
            let Some(source) = model.get(KEYS[*from]).cloned() else { return };
            if from == to && replace.is_none() {
                return; // S3 refuses a copy onto itself that changes nothing
            }
            let mut req =
                s3.copy_object().bucket(bucket).key(KEYS[*to]).copy_source(format!("{bucket}/{}", KEYS[*from]));
            let mut copy = source;
            if let Some((ty, meta)) = replace {
                copy.content_type = TYPES[*ty].map(Into::into);
                copy.metadata = pairs(*meta, "r");
                req = req
                    .metadata_directive(MetadataDirective::Replace)
                    .set_content_type(copy.content_type.clone())
                    .set_metadata(Some(copy.metadata.clone().into_iter().collect()));
            }
            req.send().await.unwrap();
            model.insert(KEYS[*to].into(), copy);
        }
        Step::Delete { key } => {
            s3.delete_object().bucket(bucket).key(KEYS[*key]).send().await.unwrap();
            model.remove(KEYS[*key]);
        }
        Step::BatchDelete { keys } => {
            let ids: Vec<ObjectIdentifier> =
                keys.iter().map(|k| ObjectIdentifier::builder().key(KEYS[*k]).build().unwrap()).collect();
            let delete = Delete::builder().set_objects(Some(ids)).build().unwrap();
            s3.delete_objects().bucket(bucket).delete(delete).send().await.unwrap();
            for k in keys {
                model.remove(KEYS[*k]);
            }
        }
        Step::Tag { key, tags } => {
            let Some(obj) = model.get_mut(KEYS[*key]) else { return };
            obj.tags = pairs(*tags, "t");
            s3.put_object_tagging().bucket(bucket).key(KEYS[*key]).tagging(tag_set(&obj.tags)).send().await.unwrap();
        }
        Step::Untag { key } => {
            let Some(obj) = model.get_mut(KEYS[*key]) else { return };
            obj.tags.clear();
            s3.delete_object_tagging().bucket(bucket).key(KEYS[*key]).send().await.unwrap();
        }
    }
}

fn header(headers: &[(String, String)], name: &str) -> Option<String> {
    headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone())
}

/// What the bucket holds now, read through the gateway.
async fn read_bucket(s3: &aws_sdk_s3::Client, bucket: &str) -> State {
    let mut out = State::new();
    for key in rewind_testkit::list_keys(s3, bucket).await {
        let got = s3.get_object().bucket(bucket).key(&key).send().await.unwrap();
        let content_type = got.content_type().map(str::to_owned);
        let metadata = got.metadata().cloned().unwrap_or_default().into_iter().collect();
        let bytes = got.body.collect().await.unwrap().into_bytes().to_vec();
        let tagging = s3.get_object_tagging().bucket(bucket).key(&key).send().await.unwrap();
        let tags = tagging.tag_set().iter().map(|t| (t.key().to_owned(), t.value().to_owned())).collect();
        out.insert(key, Obj { bytes, content_type, metadata, tags });
    }
    out
}

/// The model as S3 reports it (an absent content type reads back as the default).
fn as_read(state: &State) -> State {
    let mut out = state.clone();
    for obj in out.values_mut() {
        obj.content_type.get_or_insert_with(|| DEFAULT_TYPE.into());
    }
    out
}

async fn restore(admin: &Client, ask: &RestoreRequest) -> (u64, u64, u64) {
    let res = admin.send(Method::POST, "restore", Some(serde_json::to_vec(ask).unwrap())).await.unwrap();
    let mut lines = Lines::of(res);
    while let Some(event) = lines.next::<RestoreEvent>().await.unwrap() {
        if let RestoreEvent::Done { written, deleted, failed, .. } = event {
            return (written, deleted, failed);
        }
    }
    panic!("the restore stream ended without Done");
}

/// The gateways under test (one, or several sharing a journal and a vault): steps and
/// checks go to each in turn.
struct World {
    gateways: Vec<TestGateway>,
    admins: Vec<Client>,
    clients: Vec<aws_sdk_s3::Client>,
    cases: AtomicUsize,
}

impl World {
    fn new(gateways: Vec<TestGateway>) -> Self {
        let admins = gateways.iter().map(|gw| Client::new(&gw.admin_url(), gw.admin_token())).collect();
        let clients = gateways.iter().map(TestGateway::client).collect();
        Self { gateways, admins, clients, cases: AtomicUsize::new(0) }
    }

    /// The client of the gateway the `i`th request goes to.
    fn s3(&self, i: usize) -> &aws_sdk_s3::Client {
        &self.clients[i % self.clients.len()]
    }

    fn admin(&self, i: usize) -> &Client {
        &self.admins[i % self.admins.len()]
    }

    async fn shutdown(self) {
        for gw in self.gateways {
            gw.gateway.shutdown().await;
        }
    }
}

async fn check(world: &World, steps: Vec<Step>, picks: Vec<prop::sample::Index>) -> Result<(), TestCaseError> {
    let case = world.cases.fetch_add(1, Ordering::Relaxed);
    let bucket = format!("model{case}");
    world.s3(case).create_bucket().bucket(&bucket).send().await.unwrap();
    let journal = world.gateways[0].gateway.capture().journal().clone();
    let mut model = State::new();
    let mut instants = vec![(journal.head().unwrap().seq.0, model.clone())];
    for (i, step) in steps.iter().enumerate() {
        if let Step::Copy { to, .. } = step
            && ever_tagged(&steps[..i], *to)
        {
            // moto merges into a copy the tags its destination key ever had, even once
            // deleted (S3 gives the copy the source's tags); the gateway records what the
            // upstream holds, so the case is skipped.
            continue;
        }
        apply(world.s3(case + i), &bucket, step, &mut model).await;
        instants.push((journal.head().unwrap().seq.0, model.clone()));
    }
    for (i, pick) in picks.iter().enumerate() {
        // An object stored without a content type reads back with S3's default; the
        // journal records either (as sent, or as read back from the upstream).
        let (seq, want) = pick.get(&instants);
        let listing: Listing = world
            .admin(case + i)
            .json(Method::GET, &format!("ls?bucket={bucket}&at=seq:{seq}"), None)
            .await
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let listed: Vec<Row> = listing
            .objects
            .iter()
            .map(|o| {
                let ty = header(&o.headers, "content-type").unwrap_or_else(|| DEFAULT_TYPE.into());
                (o.key.clone(), o.size, o.blake3.clone(), Some(ty), o.metadata.clone(), o.tags.clone())
            })
            .collect();
        let modelled: Vec<Row> = want
            .iter()
            .map(|(k, o)| {
                let meta = o.metadata.clone().into_iter().collect();
                let tags = o.tags.clone().into_iter().collect();
                let ty = o.content_type.clone().unwrap_or_else(|| DEFAULT_TYPE.into());
                (k.clone(), o.bytes.len() as u64, blake3::hash(&o.bytes).to_hex().to_string(), Some(ty), meta, tags)
            })
            .collect();
        prop_assert_eq!(&listed, &modelled, "ls at seq:{} after {:?}", seq, steps);

        let copy = format!("{bucket}-copy{i}");
        world.s3(case + i + 1).create_bucket().bucket(&copy).send().await.unwrap();
        let ask = RestoreRequest {
            bucket: bucket.clone(),
            at: format!("seq:{seq}"),
            prefix: String::new(),
            key: None,
            to_bucket: Some(copy.clone()),
            mode: Mode::Rewind,
            dry_run: false,
            parallel: 4,
        };
        let (written, _, failed) = restore(world.admin(case + i + 1), &ask).await;
        prop_assert_eq!(failed, 0);
        prop_assert_eq!(written, want.len() as u64);
        let read = read_bucket(world.s3(case + i + 2), &copy).await;
        prop_assert_eq!(read, as_read(want), "restore of seq:{} after {:?}", seq, steps);
        // Restoring the same instant again changes nothing.
        prop_assert_eq!(restore(world.admin(case + i + 2), &ask).await, (0, 0, 0));
    }
    Ok(())
}

/// Runs the model's cases (`REWIND_MODEL_CASES`, else `default_cases`) against the
/// gateways `start` gives, in front of moto.
fn run_model<F>(default_cases: u32, start: impl FnOnce(rewind_gateway::upstream::UpstreamTarget) -> F)
where
    F: Future<Output = Vec<TestGateway>>,
{
    let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter("warn").try_init();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (moto, world) = rt.block_on(async {
        let moto = Moto::start_with_env(&[("S3_UPLOAD_PART_MIN_SIZE", &PART_MIN.to_string())]).await;
        let gateways = start(moto.target.clone()).await;
        (moto, World::new(gateways))
    });
    let cases = std::env::var("REWIND_MODEL_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(default_cases);
    let mut runner = TestRunner::new(ProptestConfig { cases, max_shrink_iters: 64, ..ProptestConfig::default() });
    let strategy =
        (proptest::collection::vec(step(), 1..14), proptest::collection::vec(any::<prop::sample::Index>(), 2));
    let result = runner.run(&strategy, |(steps, picks)| rt.block_on(check(&world, steps, picks)));
    rt.block_on(world.shutdown());
    drop(moto);
    result.unwrap();
}

#[test]
fn history_and_restore_match_a_model_of_s3() {
    run_model(12, async |target| vec![TestGateway::start(&target).await]);
}

/// The same, with each request (writes, `ls`, restores) going to another of three
/// gateways that share a PostgreSQL journal and one vault.
#[test]
fn history_and_restore_match_a_model_of_s3_over_three_gateways() {
    let db = PostgresFixture::new();
    let shared = tempfile::tempdir().unwrap();
    run_model(12, async |target| {
        let mut gateways = Vec::new();
        for _ in 0..3 {
            // The first creates the vault and its key; the others open them.
            let gw = TestGateway::start_with(&target, |c| {
                c.journal.set_url(db.url().to_owned());
                c.vault.location = Some(shared.path().join("vault").display().to_string());
                c.vault.key_file = Some(shared.path().join("vault.key"));
            })
            .await;
            gateways.push(gw);
        }
        gateways
    });
}

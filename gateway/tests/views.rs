//! Time-travel views through the real gateway and an S3 SDK: a model-based test (random
//! histories, random instants: every listing page size and delimiter, HEADs, whole and
//! ranged GETs equal the model's state then), and the refusals a view gives.

#![allow(clippy::unwrap_used)] // test helpers, like tests, may unwrap

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use rewind_model::Seq;
use rewind_snapshotter::At;
use rewind_testkit::{TestGateway, pattern, s3_client};

/// An object as the model holds it.
#[derive(Debug, Clone, PartialEq)]
struct Object {
    bytes: Vec<u8>,
    content_type: String,
    metadata: BTreeMap<String, String>,
    /// Made by a multipart upload of a 5 MiB part and a short one (a copy onto itself keeps
    /// its parts: the embedded upstream keeps the ETag).
    multipart: bool,
}

type State = BTreeMap<String, Object>;

/// A small deterministic generator (xorshift), so a failure names its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Keys with common prefixes at several depths; none is a directory of another (the
/// embedded upstream stores keys as files).
const KEYS: [&str; 9] = ["a/b", "a/c/d", "a/c/e", "b/x", "b/y/z", "c", "d e+f%", "ec", "f/g"];
const BUCKET: &str = "hist";

async fn head_seq(gw: &TestGateway) -> Seq {
    gw.gateway.capture().journal().head().unwrap().seq
}

/// Applies random mutations through the gateway, recording the model's state after each.
async fn random_history(gw: &TestGateway, rng: &mut Rng, steps: usize) -> Vec<(Seq, State)> {
    let s3 = gw.client();
    let mut state = State::new();
    let mut seen = vec![(head_seq(gw).await, state.clone())];
    for step in 0..steps {
        let key = KEYS[rng.below(KEYS.len())].to_owned();
        match rng.below(10) {
            0..=5 => {
                let size = [0, 1, 100, 70_000, 300_000][rng.below(5)];
                let object = Object {
                    bytes: pattern(size, rng.next()),
                    content_type: ["text/plain", "application/json"][rng.below(2)].into(),
                    metadata: BTreeMap::from([("step".to_owned(), step.to_string())]),
                    multipart: false,
                };
                s3.put_object()
                    .bucket(BUCKET)
                    .key(&key)
                    .content_type(&object.content_type)
                    .set_metadata(Some(object.metadata.clone().into_iter().collect()))
                    .body(ByteStream::from(object.bytes.clone()))
                    .send()
                    .await
                    .unwrap();
                state.insert(key, object);
            }
            6 | 7 => {
                s3.delete_object().bucket(BUCKET).key(&key).send().await.unwrap();
                state.remove(&key);
            }
            8 => {
                // An overwrite by a multipart upload (5 MiB, then a short last part).
                let bytes = pattern((5 << 20) + 1000, rng.next());
                let up = s3
                    .create_multipart_upload()
                    .bucket(BUCKET)
                    .key(&key)
                    .content_type("application/x-mp")
                    .send()
                    .await
                    .unwrap();
                let id = up.upload_id().unwrap();
                let mut parts = Vec::new();
                for (n, piece) in [(1, &bytes[..5 << 20]), (2, &bytes[5 << 20..])] {
                    let p = s3
                        .upload_part()
                        .bucket(BUCKET)
                        .key(&key)
                        .upload_id(id)
                        .part_number(n)
                        .body(ByteStream::from(piece.to_vec()))
                        .send()
                        .await
                        .unwrap();
                    parts.push(
                        aws_sdk_s3::types::CompletedPart::builder().part_number(n).e_tag(p.e_tag().unwrap()).build(),
                    );
                }
                let done = aws_sdk_s3::types::CompletedMultipartUpload::builder().set_parts(Some(parts)).build();
                s3.complete_multipart_upload()
                    .bucket(BUCKET)
                    .key(&key)
                    .upload_id(id)
                    .multipart_upload(done)
                    .send()
                    .await
                    .unwrap();
                let (content_type, metadata) = ("application/x-mp".into(), BTreeMap::new());
                state.insert(key, Object { bytes, content_type, metadata, multipart: true });
            }
            _ => {
                // A metadata change: the object copied onto itself with new metadata.
                if let Some(object) = state.get_mut(&key) {
                    object.metadata = BTreeMap::from([("copied".to_owned(), step.to_string())]);
                    object.content_type = "text/csv".into();
                    s3.copy_object()
                        .bucket(BUCKET)
                        .key(&key)
                        .copy_source(format!("{BUCKET}/{}", urlencode(&key)))
                        .metadata_directive(aws_sdk_s3::types::MetadataDirective::Replace)
                        .content_type("text/csv")
                        .set_metadata(Some(object.metadata.clone().into_iter().collect()))
                        .send()
                        .await
                        .unwrap();
                }
            }
        }
        seen.push((head_seq(gw).await, state.clone()));
    }
    seen
}

fn urlencode(key: &str) -> String {
    key.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// What a listing of `state` under `prefix` rolled up at `delimiter` holds: keys and
/// common prefixes, in order.
fn expected_listing(state: &State, prefix: &str, delimiter: Option<&str>) -> (Vec<String>, Vec<String>) {
    let (mut keys, mut prefixes) = (Vec::new(), Vec::<String>::new());
    for key in state.keys().filter(|k| k.starts_with(prefix)) {
        let rolled =
            delimiter.and_then(|d| key[prefix.len()..].find(d).map(|i| key[..prefix.len() + i + d.len()].to_owned()));
        match rolled {
            Some(p) if prefixes.last() != Some(&p) => prefixes.push(p),
            Some(_) => {}
            None => keys.push(key.clone()),
        }
    }
    (keys, prefixes)
}

async fn list_v2(
    s3: &aws_sdk_s3::Client,
    prefix: &str,
    delimiter: Option<&str>,
    page: i32,
) -> (Vec<String>, Vec<String>) {
    let (mut keys, mut prefixes, mut token) = (Vec::new(), Vec::new(), None);
    for _ in 0..100 {
        let out = s3
            .list_objects_v2()
            .bucket(BUCKET)
            .prefix(prefix)
            .set_delimiter(delimiter.map(str::to_owned))
            .max_keys(page)
            .set_continuation_token(token)
            .send()
            .await
            .unwrap();
        let got = out.contents().len() + out.common_prefixes().len();
        assert!(got <= page as usize, "a page holds at most max-keys items");
        keys.extend(out.contents().iter().map(|o| o.key().unwrap().to_owned()));
        prefixes.extend(out.common_prefixes().iter().map(|p| p.prefix().unwrap().to_owned()));
        match out.next_continuation_token() {
            Some(t) if out.is_truncated() == Some(true) => token = Some(t.to_owned()),
            _ => return (keys, prefixes),
        }
    }
    panic!("a listing that never ends: {keys:?} {prefixes:?}");
}

async fn list_v1(
    s3: &aws_sdk_s3::Client,
    prefix: &str,
    delimiter: Option<&str>,
    page: i32,
) -> (Vec<String>, Vec<String>) {
    let (mut keys, mut prefixes, mut marker) = (Vec::new(), Vec::new(), None::<String>);
    for _ in 0..100 {
        let out = s3
            .list_objects()
            .bucket(BUCKET)
            .prefix(prefix)
            .set_delimiter(delimiter.map(str::to_owned))
            .max_keys(page)
            .set_marker(marker)
            .send()
            .await
            .unwrap();
        keys.extend(out.contents().iter().map(|o| o.key().unwrap().to_owned()));
        prefixes.extend(out.common_prefixes().iter().map(|p| p.prefix().unwrap().to_owned()));
        if out.is_truncated() != Some(true) {
            return (keys, prefixes);
        }
        marker = Some(out.next_marker().unwrap().to_owned());
    }
    panic!("a listing that never ends: {keys:?} {prefixes:?}");
}

/// Checks everything a view of `state` serves.
async fn check_view(gw: &TestGateway, at: Seq, state: &State, rng: &mut Rng) {
    let made =
        gw.gateway.operations().view_create(BUCKET.into(), At::Seq(at.0), Duration::from_secs(600)).await.unwrap();
    let s3 = s3_client(&gw.endpoint(), &made.access_key_id, made.secret_access_key.as_deref().unwrap());
    for prefix in ["", "a/", "a/c", "b", "zzz"] {
        for delimiter in [None, Some("/"), Some("c")] {
            let want = expected_listing(state, prefix, delimiter);
            for page in [1, 2, 3, 1000] {
                assert_eq!(
                    list_v2(&s3, prefix, delimiter, page).await,
                    want,
                    "v2 at {at:?} {prefix:?} {delimiter:?} page {page}"
                );
            }
            assert_eq!(list_v1(&s3, prefix, delimiter, 2).await, want, "v1 at {at:?} {prefix:?} {delimiter:?}");
        }
    }
    for key in KEYS {
        match state.get(key) {
            Some(object) => {
                let head = s3.head_object().bucket(BUCKET).key(key).send().await.unwrap();
                assert_eq!(head.content_length(), Some(object.bytes.len() as i64), "{key}");
                assert_eq!(head.content_type(), Some(object.content_type.as_str()), "{key}");
                let metadata: BTreeMap<String, String> =
                    head.metadata().cloned().unwrap_or_default().into_iter().collect();
                assert_eq!(metadata, object.metadata, "{key}");
                let whole = s3.get_object().bucket(BUCKET).key(key).send().await.unwrap();
                assert_eq!(whole.body.collect().await.unwrap().into_bytes().as_ref(), &object.bytes[..], "{key}");
                if object.multipart {
                    // Made by a multipart upload: each part reads back by number.
                    let cut = 5 << 20;
                    for (n, want) in [(1, &object.bytes[..cut]), (2, &object.bytes[cut..])] {
                        let part = s3.get_object().bucket(BUCKET).key(key).part_number(n).send().await.unwrap();
                        assert_eq!(part.parts_count(), Some(2), "{key}");
                        assert_eq!(part.body.collect().await.unwrap().into_bytes().as_ref(), want, "{key} part {n}");
                    }
                    let beyond = s3.get_object().bucket(BUCKET).key(key).part_number(3).send().await.unwrap_err();
                    assert_eq!(beyond.code(), Some("InvalidPartNumber"));
                } else {
                    let whole = s3.head_object().bucket(BUCKET).key(key).part_number(1).send().await.unwrap();
                    assert_eq!(whole.content_length(), Some(object.bytes.len() as i64), "{key}: one part, all of it");
                }
                if !object.bytes.is_empty() {
                    let len = object.bytes.len();
                    let first = rng.below(len);
                    let last = first + rng.below(len - first);
                    let part = s3
                        .get_object()
                        .bucket(BUCKET)
                        .key(key)
                        .range(format!("bytes={first}-{last}"))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(part.content_range(), Some(format!("bytes {first}-{last}/{len}").as_str()));
                    let got = part.body.collect().await.unwrap().into_bytes();
                    assert_eq!(got.as_ref(), &object.bytes[first..=last], "{key} bytes={first}-{last}");
                }
            }
            None => {
                let err = s3.get_object().bucket(BUCKET).key(key).send().await.unwrap_err();
                assert_eq!(err.code(), Some("NoSuchKey"), "{key} is absent at {at:?}");
            }
        }
    }
    // The versions listing: each key's latest entry is a version exactly when it exists.
    let versions = s3.list_object_versions().bucket(BUCKET).send().await.unwrap();
    let latest: BTreeMap<String, bool> = versions
        .versions()
        .iter()
        .filter(|v| v.is_latest() == Some(true))
        .map(|v| (v.key().unwrap().to_owned(), true))
        .chain(
            versions
                .delete_markers()
                .iter()
                .filter(|m| m.is_latest() == Some(true))
                .map(|m| (m.key().unwrap().to_owned(), false)),
        )
        .collect();
    for (key, live) in &latest {
        assert_eq!(*live, state.contains_key(key), "{key}: latest entry at {at:?}");
    }
    assert!(state.keys().all(|k| latest.get(k) == Some(&true)), "every live key has a latest version");
    // Paged, the versions listing gives the same entries in the same order.
    for delimiter in [None, Some("/")] {
        let whole = list_versions(&s3, delimiter, 1000).await;
        for page in [1, 2, 5] {
            assert_eq!(
                list_versions(&s3, delimiter, page).await,
                whole,
                "versions at {at:?} {delimiter:?} page {page}"
            );
        }
    }
}

/// Every entry of a ListObjectVersions listing, paged: (key or prefix, version id, latest).
async fn list_versions(s3: &aws_sdk_s3::Client, delimiter: Option<&str>, page: i32) -> Vec<(String, String, bool)> {
    let (mut out, mut key_marker, mut version_marker) = (Vec::new(), None::<String>, None::<String>);
    for _ in 0..1000 {
        let got = s3
            .list_object_versions()
            .bucket(BUCKET)
            .set_delimiter(delimiter.map(str::to_owned))
            .max_keys(page)
            .set_key_marker(key_marker.clone())
            .set_version_id_marker(version_marker.clone())
            .send()
            .await
            .unwrap();
        let mut items: Vec<(String, String, bool)> = got
            .versions()
            .iter()
            .map(|v| (v.key().unwrap().to_owned(), v.version_id().unwrap().to_owned(), v.is_latest().unwrap()))
            .chain(
                got.delete_markers()
                    .iter()
                    .map(|m| (m.key().unwrap().to_owned(), m.version_id().unwrap().to_owned(), m.is_latest().unwrap())),
            )
            .chain(got.common_prefixes().iter().map(|p| (p.prefix().unwrap().to_owned(), String::new(), false)))
            .collect();
        assert!(items.len() <= page as usize, "a page holds at most max-keys entries");
        // Versions of one key come newest first; delete markers and versions interleave
        // by position, which their ids (`rewind-<seq>`) carry.
        items.sort_by_key(|(k, id, _)| {
            (k.clone(), std::cmp::Reverse(id.trim_start_matches("rewind-").parse::<u64>().unwrap_or(0)))
        });
        out.extend(items);
        if got.is_truncated() != Some(true) {
            return out;
        }
        (key_marker, version_marker) =
            (got.next_key_marker().map(str::to_owned), got.next_version_id_marker().map(str::to_owned));
    }
    panic!("a versions listing that never ends");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_answer_as_the_model_did_at_random_instants() {
    let cases: u64 = std::env::var("REWIND_VIEW_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2);
    for case in 0..cases {
        let seed = 0x5EED_0000 + case;
        let gw = TestGateway::start_embedded(|_| {}).await;
        gw.client().create_bucket().bucket(BUCKET).send().await.unwrap();
        let mut rng = Rng(seed);
        let seen = random_history(&gw, &mut rng, 40).await;
        // The live bucket is then wiped: views read the vault, never the upstream.
        for key in KEYS {
            gw.client().delete_object().bucket(BUCKET).key(key).send().await.unwrap();
        }
        for _ in 0..4 {
            let (at, state) = &seen[rng.below(seen.len())];
            check_view(&gw, *at, state, &mut rng).await;
        }
        let (at, state) = seen.last().unwrap();
        check_view(&gw, *at, state, &mut rng).await;
        gw.gateway.shutdown().await;
        eprintln!("seed {seed:#x}: ok");
    }
}

#[tokio::test]
async fn a_view_refuses_writes_other_buckets_and_stops_when_removed() {
    let gw = TestGateway::start_embedded(|_| {}).await;
    let live = gw.client();
    for bucket in [BUCKET, "other"] {
        live.create_bucket().bucket(bucket).send().await.unwrap();
        live.put_object().bucket(bucket).key("k").body(ByteStream::from_static(b"old")).send().await.unwrap();
    }
    let summed = live
        .put_object()
        .bucket(BUCKET)
        .key("summed")
        .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Sha256)
        .body(ByteStream::from_static(b"checked"))
        .send()
        .await
        .unwrap();
    let sha256 = summed.checksum_sha256().expect("the upstream keeps the checksum").to_owned();
    let ops = gw.gateway.operations();
    let made =
        ops.view_create(BUCKET.into(), At::TimeUs(rewind_capture::now_us()), Duration::from_secs(600)).await.unwrap();
    live.put_object().bucket(BUCKET).key("k").body(ByteStream::from_static(b"new")).send().await.unwrap();
    let view = s3_client(&gw.endpoint(), &made.access_key_id, made.secret_access_key.as_deref().unwrap());
    // Checksums as the original had them, when asked for.
    let head = view
        .head_object()
        .bucket(BUCKET)
        .key("summed")
        .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
        .send()
        .await
        .unwrap();
    assert_eq!(head.checksum_sha256(), Some(sha256.as_str()));
    let plain = view.head_object().bucket(BUCKET).key("summed").send().await.unwrap();
    assert_eq!(plain.checksum_sha256(), None, "only when asked for");
    let attrs = view
        .get_object_attributes()
        .bucket(BUCKET)
        .key("summed")
        .object_attributes(aws_sdk_s3::types::ObjectAttributes::Checksum)
        .send()
        .await
        .unwrap();
    assert_eq!(attrs.checksum().and_then(|c| c.checksum_sha256()), Some(sha256.as_str()));
    let got = view.get_object().bucket(BUCKET).key("k").send().await.unwrap().body.collect().await.unwrap();
    assert_eq!(got.into_bytes().as_ref(), b"old");
    let put = view.put_object().bucket(BUCKET).key("k").body(ByteStream::from_static(b"x")).send().await.unwrap_err();
    assert_eq!(put.code(), Some("AccessDenied"));
    assert!(
        put.message().unwrap().contains(&made.access_key_id)
            && put.message().unwrap().contains(&format!("seq:{}", made.seq))
    );
    let delete = view.delete_object().bucket(BUCKET).key("k").send().await.unwrap_err();
    assert_eq!(delete.code(), Some("AccessDenied"));
    let acl = view.get_bucket_acl().bucket(BUCKET).send().await.unwrap_err();
    assert_eq!(acl.code(), Some("AccessDenied"), "an operation a view does not serve is refused, not forwarded");
    let other = view.get_object().bucket("other").key("k").send().await.unwrap_err();
    assert_eq!(other.code(), Some("AccessDenied"));
    let buckets = view.list_buckets().send().await.unwrap();
    assert_eq!(buckets.buckets().iter().map(|b| b.name().unwrap()).collect::<Vec<_>>(), [BUCKET]);
    let newer = view
        .get_object()
        .bucket(BUCKET)
        .key("k")
        .version_id(format!("rewind-{}", made.seq + 2))
        .send()
        .await
        .unwrap_err();
    assert_eq!(newer.code(), Some("NoSuchVersion"), "a version from after the view's instant");
    assert_eq!(
        live.get_object()
            .bucket(BUCKET)
            .key("k")
            .send()
            .await
            .unwrap()
            .body
            .collect()
            .await
            .unwrap()
            .into_bytes()
            .as_ref(),
        b"new"
    );

    // An earlier version by its id, conditional requests and response header overrides.
    let versions = view.list_object_versions().bucket(BUCKET).prefix("k").send().await.unwrap();
    let old = versions.versions().iter().find(|v| v.key() == Some("k")).unwrap();
    assert_eq!(old.is_latest(), Some(true), "as of the view, the first write is the latest");
    let id = old.version_id().unwrap();
    let by_id = view.get_object().bucket(BUCKET).key("k").version_id(id).send().await.unwrap();
    assert_eq!(by_id.version_id(), Some(id));
    let etag = by_id.e_tag().unwrap().to_owned();
    assert_eq!(by_id.body.collect().await.unwrap().into_bytes().as_ref(), b"old");
    let unchanged = view.get_object().bucket(BUCKET).key("k").if_none_match(&etag).send().await.unwrap_err();
    assert_eq!(unchanged.raw_response().map(|r| r.status().as_u16()), Some(304));
    let failed = view.get_object().bucket(BUCKET).key("k").if_match("\"other\"").send().await.unwrap_err();
    assert_eq!(failed.code(), Some("PreconditionFailed"));
    let matched = view.get_object().bucket(BUCKET).key("k").if_match(&etag).send().await.unwrap();
    assert_eq!(matched.body.collect().await.unwrap().into_bytes().as_ref(), b"old");
    let overridden = view
        .get_object()
        .bucket(BUCKET)
        .key("k")
        .response_content_type("text/x-then")
        .response_content_disposition("attachment")
        .send()
        .await
        .unwrap();
    assert_eq!(overridden.content_type(), Some("text/x-then"));
    assert_eq!(overridden.content_disposition(), Some("attachment"));
    // start-after and fetch-owner.
    let after = view.list_objects_v2().bucket(BUCKET).start_after("k").fetch_owner(true).send().await.unwrap();
    let keys: Vec<&str> = after.contents().iter().map(|o| o.key().unwrap()).collect();
    assert_eq!(keys, ["summed"]);
    assert!(after.contents()[0].owner().is_some(), "fetch-owner");
    // Every request above was answered by the view, and counted.
    let served = gw.gateway.metrics.views.requests.with_label_values(&["GetObject", "ok"]).get();
    assert!(served >= 4, "{served}");
    assert!(gw.gateway.metrics.views.sent_bytes.get() >= 9);

    // Bad input when making one.
    let unknown = ops.view_create("nope".into(), At::Seq(1), Duration::from_secs(60)).await.unwrap_err();
    assert!(unknown.to_string().contains("has no history"), "{unknown}");
    let early = ops.view_create(BUCKET.into(), At::TimeUs(1_000_000), Duration::from_secs(60)).await.unwrap_err();
    assert!(early.to_string().contains("before history began"), "{early}");
    assert!(ops.view_create(BUCKET.into(), At::Seq(1), Duration::ZERO).await.is_err());

    ops.view_rm(&made.access_key_id).await.unwrap();
    let gone = view.list_objects_v2().bucket(BUCKET).send().await.unwrap_err();
    assert_eq!(gone.code(), Some("InvalidAccessKeyId"), "a removed view's key stops working at once");
    assert!(ops.view_rm(&made.access_key_id).await.is_err());
}

#[tokio::test]
async fn a_view_never_sends_bytes_that_fail_their_check() {
    let gw = TestGateway::start_embedded(|_| {}).await;
    let live = gw.client();
    live.create_bucket().bucket(BUCKET).send().await.unwrap();
    let body = pattern(200_000, 7);
    live.put_object().bucket(BUCKET).key("k").body(ByteStream::from(body.clone())).send().await.unwrap();
    gw.gateway.capture().vault().sync().await.unwrap();
    let made = gw.gateway.operations().view_create(BUCKET.into(), At::Seq(4), Duration::from_secs(60)).await.unwrap();
    let view = s3_client(&gw.endpoint(), &made.access_key_id, made.secret_access_key.as_deref().unwrap());
    let whole = view.get_object().bucket(BUCKET).key("k").send().await.unwrap().body.collect().await.unwrap();
    assert_eq!(whole.into_bytes().as_ref(), body.as_slice());
    // Damage every pack in the vault, in place, behind the gateway's back.
    let packs = gw.data_dir.path().join("vault").join("packs");
    let mut damaged = 0;
    for entry in walk(&packs) {
        let mut bytes = std::fs::read(&entry).unwrap();
        let middle = bytes.len() / 3;
        bytes[middle] ^= 0xFF;
        std::fs::write(&entry, bytes).unwrap();
        damaged += 1;
    }
    assert!(damaged > 0, "no pack under {}", packs.display());
    match view.get_object().bucket(BUCKET).key("k").send().await {
        Err(_) => {}
        Ok(out) => assert!(out.body.collect().await.is_err(), "a damaged chunk must cut the body, never be sent"),
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().map(Result::unwrap) {
        let path = entry.path();
        if path.is_dir() { out.extend(walk(&path)) } else { out.push(path) }
    }
    out
}

/// A version found in the upstream (written before Rewind) keeps the upstream's
/// Last-Modified through a view, not the time the gateway captured it.
#[tokio::test]
async fn a_version_found_upstream_keeps_its_last_modified() {
    let upstream = rewind_testkit::FsUpstream::start().await;
    let t = &upstream.target;
    let direct = s3_client(&t.endpoint, &t.access_key_id, t.secret.expose());
    direct.create_bucket().bucket(BUCKET).send().await.unwrap();
    direct.put_object().bucket(BUCKET).key("old").body(ByteStream::from_static(b"before")).send().await.unwrap();
    let original = direct.head_object().bucket(BUCKET).key("old").send().await.unwrap().last_modified().unwrap().secs();
    tokio::time::sleep(Duration::from_millis(2100)).await; // a capture time two seconds later
    let gw = TestGateway::start(t).await;
    // The overwrite captures the version it destroys first, read from the upstream.
    gw.client().put_object().bucket(BUCKET).key("old").body(ByteStream::from_static(b"after")).send().await.unwrap();
    let ops = gw.gateway.operations();
    let made =
        ops.view_create(BUCKET.into(), At::TimeUs(rewind_capture::now_us()), Duration::from_secs(60)).await.unwrap();
    let view = s3_client(&gw.endpoint(), &made.access_key_id, made.secret_access_key.as_deref().unwrap());
    let versions = view.list_object_versions().bucket(BUCKET).send().await.unwrap();
    let found = versions.versions().iter().find(|v| v.is_latest() == Some(false)).expect("the captured version");
    assert_eq!(found.last_modified().unwrap().secs(), original);
    let latest = versions.versions().iter().find(|v| v.is_latest() == Some(true)).unwrap();
    assert!(latest.last_modified().unwrap().secs() >= original + 2, "the write through the gateway is newer");
    gw.gateway.shutdown().await;
}

//! The gateway in front of a real S3 server (s3s-fs on loopback), driven by aws-sdk-s3 over
//! HTTP: every answer must be the upstream's, every byte the client's.

#![allow(clippy::unwrap_used)] // test helpers, like tests, may unwrap

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, ChecksumMode, CompletedMultipartUpload, CompletedPart, Delete, MetadataDirective,
    ObjectIdentifier,
};
use rewind_testkit::{FsUpstream, TestGateway, bucket_names, list_keys, pattern, raw};

async fn setup() -> (FsUpstream, TestGateway, aws_sdk_s3::Client) {
    let upstream = FsUpstream::start().await;
    let gw = TestGateway::start(&upstream.target).await;
    let client = gw.client();
    (upstream, gw, client)
}

async fn body_of(out: aws_sdk_s3::operation::get_object::GetObjectOutput) -> Vec<u8> {
    out.body.collect().await.unwrap().into_bytes().to_vec()
}

fn status_of<E>(err: &aws_sdk_s3::error::SdkError<E, aws_smithy_runtime_api::http::Response>) -> u16 {
    err.raw_response().expect("an HTTP answer").status().as_u16()
}

#[tokio::test]
async fn buckets_pass_through() {
    let (upstream, _gw, s3) = setup().await;
    s3.create_bucket().bucket("alpha").send().await.unwrap();
    s3.create_bucket().bucket("beta").send().await.unwrap();
    let names = bucket_names(&s3).await;
    assert_eq!(names, ["alpha", "beta"]);
    s3.head_bucket().bucket("alpha").send().await.unwrap();
    let err = s3.head_bucket().bucket("missing").send().await.unwrap_err();
    assert_eq!(status_of(&err), 404);
    s3.delete_bucket().bucket("beta").send().await.unwrap();
    // What the client sees is what the upstream holds.
    let direct = bucket_names(&upstream.client()).await;
    assert_eq!(direct, ["alpha"]);
    let location = s3.get_bucket_location().bucket("alpha").send().await;
    assert!(location.is_ok(), "GetBucketLocation is forwarded: {location:?}");
}

#[tokio::test]
async fn objects_round_trip_with_headers_metadata_and_ranges() {
    let (upstream, _gw, s3) = setup().await;
    s3.create_bucket().bucket("bkt").send().await.unwrap();
    let data = pattern(300_000, 1);
    let put = s3
        .put_object()
        .bucket("bkt")
        .key("dir/file one.bin")
        .body(ByteStream::from(data.clone()))
        .content_type("application/x-test")
        .content_disposition("attachment")
        .cache_control("max-age=60")
        .metadata("owner", "alice")
        .metadata("purpose", "round trip")
        .send()
        .await
        .unwrap();
    let get = s3.get_object().bucket("bkt").key("dir/file one.bin").send().await.unwrap();
    assert_eq!(get.e_tag(), put.e_tag(), "ETag passes through");
    assert_eq!(get.content_type(), Some("application/x-test"));
    assert_eq!(get.content_disposition(), Some("attachment"));
    assert_eq!(get.cache_control(), Some("max-age=60"));
    assert_eq!(get.metadata().unwrap().get("owner").map(String::as_str), Some("alice"));
    assert_eq!(get.metadata().unwrap().get("purpose").map(String::as_str), Some("round trip"));
    assert_eq!(get.content_length(), Some(300_000));
    assert_eq!(body_of(get).await, data);

    let head = s3.head_object().bucket("bkt").key("dir/file one.bin").send().await.unwrap();
    assert_eq!(head.content_length(), Some(300_000));
    assert_eq!(head.e_tag(), put.e_tag());

    let ranged = s3.get_object().bucket("bkt").key("dir/file one.bin").range("bytes=1000-1999").send().await.unwrap();
    assert_eq!(ranged.content_range(), Some("bytes 1000-1999/300000"));
    assert_eq!(body_of(ranged).await, &data[1000..2000]);
    let tail = s3.get_object().bucket("bkt").key("dir/file one.bin").range("bytes=-10").send().await.unwrap();
    assert_eq!(body_of(tail).await, &data[data.len() - 10..]);

    // Byte-exact upstream, and errors are the upstream's.
    let direct = upstream.client().get_object().bucket("bkt").key("dir/file one.bin").send().await.unwrap();
    assert_eq!(body_of(direct).await, data);
    let err = s3.get_object().bucket("bkt").key("nope").send().await.unwrap_err();
    assert!(err.as_service_error().unwrap().is_no_such_key(), "{err:?}");
    let err = s3.head_object().bucket("bkt").key("nope").send().await.unwrap_err();
    assert_eq!(status_of(&err), 404);
    let err = s3.get_object().bucket("bkt").key("dir/file one.bin").range("bytes=400000-").send().await.unwrap_err();
    assert_eq!(status_of(&err), 416);
}

#[tokio::test]
async fn listings_with_prefix_delimiter_and_pagination() {
    let (_upstream, _gw, s3) = setup().await;
    s3.create_bucket().bucket("lst").send().await.unwrap();
    let keys: Vec<String> = (0..7)
        .map(|i| format!("logs/2026/{i:02}.txt"))
        .chain(["logs/readme", "photos/a.jpg", "top.txt"].map(String::from))
        .collect();
    for k in &keys {
        s3.put_object().bucket("lst").key(k).body(ByteStream::from_static(b"x")).send().await.unwrap();
    }

    let v2 = s3.list_objects_v2().bucket("lst").delimiter("/").send().await.unwrap();
    let prefixes: Vec<&str> = v2.common_prefixes().iter().filter_map(|p| p.prefix()).collect();
    assert_eq!(prefixes, ["logs/", "photos/"]);
    let top: Vec<&str> = v2.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(top, ["top.txt"]);

    let mut seen = Vec::new();
    let mut token = None;
    loop {
        let page = s3
            .list_objects_v2()
            .bucket("lst")
            .prefix("logs/")
            .max_keys(3)
            .set_continuation_token(token)
            .send()
            .await
            .unwrap();
        assert!(page.contents().len() <= 3);
        seen.extend(page.contents().iter().filter_map(|o| o.key().map(String::from)));
        token = page.next_continuation_token().map(String::from);
        if !page.is_truncated().unwrap_or(false) {
            break;
        }
    }
    let want: Vec<String> = keys.iter().filter(|k| k.starts_with("logs/")).cloned().collect();
    assert_eq!(seen, want);

    let v1 = s3.list_objects().bucket("lst").prefix("logs/2026/").max_keys(4).send().await.unwrap();
    assert_eq!(v1.contents().len(), 4);
    assert_eq!(v1.is_truncated(), Some(true));
    let marker = v1.contents().last().and_then(|o| o.key()).unwrap().to_owned();
    let v1b = s3.list_objects().bucket("lst").prefix("logs/2026/").marker(marker).send().await.unwrap();
    assert_eq!(v1b.contents().len(), 3);
}

#[tokio::test]
async fn copy_object_with_copy_and_replace_directives() {
    let (_upstream, _gw, s3) = setup().await;
    s3.create_bucket().bucket("cpy").send().await.unwrap();
    let data = pattern(5000, 2);
    s3.put_object()
        .bucket("cpy")
        .key("src")
        .body(ByteStream::from(data.clone()))
        .content_type("text/x-src")
        .metadata("k", "v1")
        .send()
        .await
        .unwrap();
    s3.copy_object().bucket("cpy").key("same-meta").copy_source("cpy/src").send().await.unwrap();
    let got = s3.get_object().bucket("cpy").key("same-meta").send().await.unwrap();
    assert_eq!(got.metadata().unwrap().get("k").map(String::as_str), Some("v1"));
    assert_eq!(body_of(got).await, data);

    s3.copy_object()
        .bucket("cpy")
        .key("new-meta")
        .copy_source("cpy/src")
        .metadata_directive(MetadataDirective::Replace)
        .content_type("text/x-new")
        .metadata("k", "v2")
        .send()
        .await
        .unwrap();
    let got = s3.head_object().bucket("cpy").key("new-meta").send().await.unwrap();
    assert_eq!(got.metadata().unwrap().get("k").map(String::as_str), Some("v2"));
    assert_eq!(got.content_type(), Some("text/x-new"));
    let err = s3.copy_object().bucket("cpy").key("x").copy_source("cpy/missing").send().await.unwrap_err();
    assert_eq!(status_of(&err), 404);
}

#[tokio::test]
async fn multipart_upload_with_part_copy_list_parts_and_abort() {
    let (upstream, _gw, s3) = setup().await;
    s3.create_bucket().bucket("mpu").send().await.unwrap();
    let part1 = pattern(5 * 1024 * 1024, 3);
    let source = pattern(2 * 1024 * 1024, 4);
    s3.put_object().bucket("mpu").key("source").body(ByteStream::from(source.clone())).send().await.unwrap();

    let upload =
        s3.create_multipart_upload().bucket("mpu").key("big").content_type("application/x-mp").send().await.unwrap();
    let id = upload.upload_id().unwrap();
    let p1 = s3
        .upload_part()
        .bucket("mpu")
        .key("big")
        .upload_id(id)
        .part_number(1)
        .body(ByteStream::from(part1.clone()))
        .send()
        .await
        .unwrap();
    let p2 = s3
        .upload_part_copy()
        .bucket("mpu")
        .key("big")
        .upload_id(id)
        .part_number(2)
        .copy_source("mpu/source")
        .copy_source_range("bytes=0-1048575")
        .send()
        .await
        .unwrap();
    let parts = s3.list_parts().bucket("mpu").key("big").upload_id(id).send().await.unwrap();
    // s3s-fs lists parts in directory order; S3 sorts them. Compare as sets.
    let mut numbers: Vec<i32> = parts.parts().iter().filter_map(|p| p.part_number()).collect();
    numbers.sort_unstable();
    assert_eq!(numbers, [1, 2]);

    let completed = CompletedMultipartUpload::builder()
        .parts(CompletedPart::builder().part_number(1).e_tag(p1.e_tag().unwrap()).build())
        .parts(CompletedPart::builder().part_number(2).e_tag(p2.copy_part_result().unwrap().e_tag().unwrap()).build())
        .build();
    let done = s3
        .complete_multipart_upload()
        .bucket("mpu")
        .key("big")
        .upload_id(id)
        .multipart_upload(completed)
        .send()
        .await
        .unwrap();
    assert!(done.e_tag().unwrap().contains("-2"), "multipart ETag passes through: {:?}", done.e_tag());

    let mut want = part1;
    want.extend_from_slice(&source[..1024 * 1024]);
    let got = upstream.client().get_object().bucket("mpu").key("big").send().await.unwrap();
    assert_eq!(body_of(got).await, want);

    let abandoned = s3.create_multipart_upload().bucket("mpu").key("abandoned").send().await.unwrap();
    let aid = abandoned.upload_id().unwrap();
    s3.upload_part()
        .bucket("mpu")
        .key("abandoned")
        .upload_id(aid)
        .part_number(1)
        .body(ByteStream::from_static(b"tiny"))
        .send()
        .await
        .unwrap();
    s3.abort_multipart_upload().bucket("mpu").key("abandoned").upload_id(aid).send().await.unwrap();
    // After the abort no part is left; the answer is the upstream's own (s3s-fs lists an
    // empty upload where AWS says NoSuchUpload), whichever way it is asked.
    let via_gateway =
        s3.list_parts().bucket("mpu").key("abandoned").upload_id(aid).send().await.map(|o| o.parts().len());
    let direct = upstream
        .client()
        .list_parts()
        .bucket("mpu")
        .key("abandoned")
        .upload_id(aid)
        .send()
        .await
        .map(|o| o.parts().len());
    assert_eq!(via_gateway.as_ref().ok(), direct.as_ref().ok());
    assert!(via_gateway.as_ref().map_or(true, |n| *n == 0));
    assert!(s3.head_object().bucket("mpu").key("abandoned").send().await.is_err());
}

#[tokio::test]
async fn delete_object_and_delete_objects() {
    let (upstream, _gw, s3) = setup().await;
    s3.create_bucket().bucket("del").send().await.unwrap();
    for k in ["a", "bkt", "cpy", "keep"] {
        s3.put_object().bucket("del").key(k).body(ByteStream::from_static(b"1")).send().await.unwrap();
    }
    s3.delete_object().bucket("del").key("a").send().await.unwrap();
    let batch = Delete::builder()
        .objects(ObjectIdentifier::builder().key("bkt").build().unwrap())
        .objects(ObjectIdentifier::builder().key("cpy").build().unwrap())
        .build()
        .unwrap();
    let out = s3.delete_objects().bucket("del").delete(batch).send().await.unwrap();
    assert_eq!(out.deleted().len(), 2);
    let left = list_keys(&upstream.client(), "del").await;
    assert_eq!(left, ["keep"]);
}

/// Current SDKs upload with aws-chunked bodies and trailing checksums; every algorithm must
/// be decoded, verified and stored with the same checksum upstream.
#[tokio::test]
async fn uploads_with_every_checksum_algorithm() {
    let (upstream, _gw, s3) = setup().await;
    s3.create_bucket().bucket("cks").send().await.unwrap();
    let data = pattern(200_000, 5);
    for algorithm in [
        ChecksumAlgorithm::Crc32,
        ChecksumAlgorithm::Crc32C,
        ChecksumAlgorithm::Crc64Nvme,
        ChecksumAlgorithm::Sha1,
        ChecksumAlgorithm::Sha256,
    ] {
        let key = format!("obj-{}", algorithm.as_str());
        s3.put_object()
            .bucket("cks")
            .key(&key)
            .checksum_algorithm(algorithm.clone())
            .body(ByteStream::from(data.clone()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{algorithm:?}: {e:?}"));
        let got = upstream.client().get_object().bucket("cks").key(&key).send().await.unwrap();
        assert_eq!(body_of(got).await, data, "{algorithm:?}");
    }
    let head =
        s3.head_object().bucket("cks").key("obj-CRC32C").checksum_mode(ChecksumMode::Enabled).send().await.unwrap();
    assert!(head.checksum_crc32_c().is_some(), "the client's algorithm is stored upstream: {head:?}");
}

/// Virtual-host addressing under a configured base domain reaches the same bucket. The Host
/// header is set by hand so the connection still goes to 127.0.0.1.
#[tokio::test]
async fn virtual_host_style_addressing() {
    let upstream = FsUpstream::start().await;
    let gw = TestGateway::start_with(&upstream.target, |c| c.server.base_domains = vec!["localhost".into()]).await;
    gw.client().create_bucket().bucket("vhb").send().await.unwrap();
    let port = gw.addr().port();
    let mut req = http::Request::builder()
        .method("GET")
        .uri(format!("http://vhb.localhost:{port}/?list-type=2"))
        .header("host", format!("vhb.localhost:{port}"))
        .body(Vec::new())
        .unwrap();
    raw::sign_request(&mut req, &gw.access_key_id, &gw.secret, std::time::SystemTime::now(), &raw::sha256_hex(b""));
    let res = raw::send(gw.addr(), &req).await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert!(res.text().contains("<Name>vhb</Name>"), "{}", res.text());
}

#[tokio::test]
async fn unsupported_operations_answer_not_implemented() {
    let (_upstream, _gw, s3) = setup().await;
    s3.create_bucket().bucket("nim").send().await.unwrap();
    s3.put_object().bucket("nim").key("k").body(ByteStream::from_static(b"v")).send().await.unwrap();
    // s3s-fs has no tagging: the upstream's NotImplemented reaches the client unchanged,
    // never a silent fall-through to another action.
    let err = s3.get_object_tagging().bucket("nim").key("k").send().await.unwrap_err();
    assert_eq!(status_of(&err), 501);
    assert_eq!(err.as_service_error().and_then(|e| e.code()), Some("NotImplemented"));
}

/// Keys of only whitespace, which aws-sdk-s3 will not send as they are (S3 stores them):
/// written, read, copied and deleted through the gateway, and journaled under themselves.
#[tokio::test]
async fn keys_of_only_whitespace_work_as_on_s3() {
    let (_upstream, gw, s3) = setup().await;
    s3.create_bucket().bucket("bkt").send().await.unwrap();
    let signed = |method: &str, path: &str, body: &[u8], copy_source: Option<&str>| {
        let mut req = http::Request::builder().method(method).uri(format!("{}{path}", gw.endpoint()));
        if let Some(source) = copy_source {
            req = req.header("x-amz-copy-source", source);
        }
        let mut req = req.body(body.to_vec()).unwrap();
        raw::sign_request(
            &mut req,
            &gw.access_key_id,
            &gw.secret,
            std::time::SystemTime::now(),
            &raw::sha256_hex(body),
        );
        req
    };
    for (key, encoded) in [(" ", "%20"), ("\t \t", "%09%20%09")] {
        let put = raw::send(gw.addr(), &signed("PUT", &format!("/bkt/{encoded}"), b"blank", None)).await;
        assert_eq!(put.status, 200, "{key:?}: {}", put.text());
        let get = raw::send(gw.addr(), &signed("GET", &format!("/bkt/{encoded}"), b"", None)).await;
        assert_eq!((get.status, get.body.as_slice()), (200, &b"blank"[..]), "{key:?}");
        let copy = raw::send(gw.addr(), &signed("PUT", "/bkt/copied", b"", Some(&format!("bkt/{encoded}")))).await;
        assert_eq!(copy.status, 200, "{key:?}: {}", copy.text());
        let del = raw::send(gw.addr(), &signed("DELETE", &format!("/bkt/{encoded}"), b"", None)).await;
        assert_eq!(del.status, 204, "{key:?}: {}", del.text());
        let history = gw.gateway.capture().journal().history("bkt", key).unwrap();
        assert_eq!(history.len(), 2, "{key:?}: the PUT and the DELETE are journaled under the key itself");
    }
    assert_eq!(list_keys(&s3, "bkt").await, ["copied"]);
}

/// A PUT whose body comes in HTTP chunks without a length (a client streaming from a pipe,
/// or s3-tests' `test_object_write_with_chunked_transfer_encoding`): taken up to the body
/// limit and captured like any other; past the limit, S3's own answer (411).
#[tokio::test]
async fn uploads_without_a_length_are_taken_up_to_the_limit() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_upstream, gw, s3) = setup().await;
    s3.create_bucket().bucket("bkt").send().await.unwrap();
    let put_chunked = |key: &str, body: Vec<u8>| {
        let mut req = http::Request::put(format!("{}/bkt/{key}", gw.endpoint()))
            .header("transfer-encoding", "chunked")
            .body(Vec::new())
            .unwrap();
        raw::sign_request(
            &mut req,
            &gw.access_key_id,
            &gw.secret,
            std::time::SystemTime::now(),
            &raw::sha256_hex(&body),
        );
        let addr = gw.addr();
        async move {
            let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            let mut wire = format!("PUT {} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n", req.uri().path());
            for (k, v) in req.headers() {
                wire.push_str(&format!("{k}: {}\r\n", v.to_str().unwrap()));
            }
            let mut wire = format!("{wire}\r\n").into_bytes();
            for piece in body.chunks(100_000) {
                wire.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
                wire.extend_from_slice(piece);
                wire.extend_from_slice(b"\r\n");
            }
            wire.extend_from_slice(b"0\r\n\r\n");
            // The gateway may answer (411) before it has read everything: a failed write is fine then.
            let _ = stream.write_all(&wire).await;
            let mut answer = Vec::new();
            let _ = stream.read_to_end(&mut answer).await;
            String::from_utf8_lossy(&answer).into_owned()
        }
    };
    let body = pattern(300_000, 3);
    let answer = put_chunked("streamed", body.clone()).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let got = s3.get_object().bucket("bkt").key("streamed").send().await.unwrap();
    assert_eq!(body_of(got).await, body);
    let history = gw.gateway.capture().journal().history("bkt", "streamed").unwrap();
    assert_eq!(history.len(), 1, "captured like any PUT");

    // The default body limit is 4 MiB.
    let answer = put_chunked("too-long", pattern(5 << 20, 4)).await;
    assert!(answer.starts_with("HTTP/1.1 411") && answer.contains("MissingContentLength"), "{answer}");
    assert!(s3.head_object().bucket("bkt").key("too-long").send().await.is_err(), "nothing stored");
}

#!/usr/bin/env python3
"""Interop: real S3 clients through the real rewind-gateway binary, in front of moto.

Starts moto_server and rewind-gateway on free loopback ports with fresh credentials, then
drives aws cli, boto3, rclone and s3cmd through the gateway: single and multipart uploads
with each client's default checksums, downloads, listings, sync and deletes. Every object
is compared byte for byte, with its metadata, against what moto holds (read directly).

Usage: tests/interop/run.py [--gateway PATH]   (default: $CARGO_TARGET_DIR or ./target)
Prints one line per check and a closing 'N passed, N failed' line; exits 1 on failure.
"""

import argparse
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request
from pathlib import Path

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from harness import MIB, free_port, random_key_pair, wait_until, write_random  # noqa: E402


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(MIB), b""):
            h.update(block)
    return h.hexdigest()




class Env:
    """moto + gateway, and the credentials to reach each."""

    def __init__(self, gateway_bin, work):
        self.work = work
        self.gateway_bin = gateway_bin
        self.moto_port = free_port()
        self.gw_port = free_port()
        self.admin_port = free_port()
        self.moto_key = random_key_pair()
        self.client_key = random_key_pair()
        self.procs = []
        logs = work / "logs"
        logs.mkdir()
        self.moto = self._spawn(
            ["moto_server", "-H", "127.0.0.1", "-p", str(self.moto_port)], logs / "moto.log", os.environ
        )
        env = dict(os.environ)
        env.update(
            REWIND_UPSTREAM_ACCESS_KEY_ID=self.moto_key[0],
            REWIND_UPSTREAM_SECRET_ACCESS_KEY=self.moto_key[1],
            REWIND_ACCESS_KEY_ID=self.client_key[0],
            REWIND_SECRET_ACCESS_KEY=self.client_key[1],
        )
        env.setdefault("REWIND_LOG", "warn")
        wait_until("moto", lambda: socket.create_connection(("127.0.0.1", self.moto_port), 1).close() is None)
        self.gateway = self._spawn(
            [
                gateway_bin,
                "--listen", f"127.0.0.1:{self.gw_port}",
                "--admin-listen", f"127.0.0.1:{self.admin_port}",
                "--data-dir", str(work / "data"),
                "--upstream", f"http://127.0.0.1:{self.moto_port}",
            ],
            logs / "gateway.log",
            env,
        )
        wait_until("gateway /ready", lambda: urllib.request.urlopen(self.admin_url("/ready"), timeout=2).status == 200)
        self.endpoint = f"http://127.0.0.1:{self.gw_port}"

    def _spawn(self, cmd, log, env):
        proc = subprocess.Popen(cmd, stdout=open(log, "wb"), stderr=subprocess.STDOUT, env=env)
        self.procs.append(proc)
        return proc

    def admin_url(self, path):
        return f"http://127.0.0.1:{self.admin_port}{path}"

    def client_env(self):
        """Environment for CLI clients: the gateway's key, no config files, no metadata service."""
        env = dict(os.environ)
        env.update(
            AWS_ACCESS_KEY_ID=self.client_key[0],
            AWS_SECRET_ACCESS_KEY=self.client_key[1],
            AWS_DEFAULT_REGION="us-east-1",
            AWS_CONFIG_FILE=os.devnull,
            AWS_SHARED_CREDENTIALS_FILE=os.devnull,
            AWS_EC2_METADATA_DISABLED="true",
            HOME=str(self.work),
        )
        # Plain HTTP on loopback: a machine-wide CA bundle setting only confuses clients
        # (rclone refuses to start with one).
        env.pop("AWS_CA_BUNDLE", None)
        return env

    def via_gateway(self):
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.client_key[0],
            aws_secret_access_key=self.client_key[1],
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )

    def direct(self):
        return boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{self.moto_port}",
            aws_access_key_id=self.moto_key[0],
            aws_secret_access_key=self.moto_key[1],
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}),
        )

    def stop(self):
        for proc in reversed(self.procs):
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def run(cmd, env, cwd=None):
    started = time.monotonic()
    result = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    if time.monotonic() - started > 5:
        print(f"  slow ({time.monotonic() - started:.1f}s): {' '.join(map(str, cmd[:3]))}", flush=True)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def assert_upstream_matches(env, bucket, key, local_path, content_type=None, metadata=None):
    """The object as moto holds it equals the local file (and headers, when given)."""
    direct = env.direct()
    obj = direct.get_object(Bucket=bucket, Key=key)
    data = obj["Body"].read()
    want = Path(local_path).read_bytes()
    assert hashlib.sha256(data).hexdigest() == hashlib.sha256(want).hexdigest(), f"{bucket}/{key}: bytes differ upstream"
    assert obj.get("ContentEncoding") in (None, ""), f"{bucket}/{key}: stored with Content-Encoding {obj.get('ContentEncoding')!r}"
    if content_type is not None:
        assert obj["ContentType"] == content_type, f"{key}: content type {obj['ContentType']!r}"
    if metadata is not None:
        missing = {k: v for k, v in metadata.items() if obj["Metadata"].get(k) != v}
        assert not missing, f"{key}: metadata {obj['Metadata']!r} lacks {missing!r}"


def upstream_keys(env, bucket, prefix=""):
    pages = env.direct().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"] for p in pages for o in p.get("Contents", []))


# ---------------------------------------------------------------------------------------
# Checks, one per client. Each gets the environment and a scratch directory.


def check_aws_cli(env, tmp):
    cli = ["aws", "--endpoint-url", env.endpoint]
    e = env.client_env()
    run(cli + ["s3", "mb", "s3://awscli"], e)
    small, big = tmp / "small.txt", tmp / "big.bin"
    small.write_text("hello from the aws cli\n")
    write_random(big, 20 * MIB, "awscli-big")  # over the 8 MiB multipart threshold
    run(cli + ["s3", "cp", str(small), "s3://awscli/docs/small.txt", "--content-type", "text/plain",
               "--metadata", "origin=awscli"], e)
    run(cli + ["s3", "cp", str(big), "s3://awscli/blobs/big.bin", "--only-show-errors"], e)
    assert_upstream_matches(env, "awscli", "docs/small.txt", small, "text/plain", {"origin": "awscli"})
    assert_upstream_matches(env, "awscli", "blobs/big.bin", big)
    head = json.loads(run(cli + ["s3api", "head-object", "--bucket", "awscli", "--key", "blobs/big.bin"], e))
    assert head["ContentLength"] == 20 * MIB and "-" in head["ETag"], f"multipart upload expected: {head}"

    back = tmp / "back.bin"
    run(cli + ["s3", "cp", "s3://awscli/blobs/big.bin", str(back), "--only-show-errors"], e)
    assert sha256_of(back) == sha256_of(big), "download differs"
    listing = run(cli + ["s3", "ls", "s3://awscli/", "--recursive"], e)
    assert "docs/small.txt" in listing and "blobs/big.bin" in listing, listing

    tree = tmp / "tree"
    for i in range(12):
        write_random(tree / f"d{i % 3}" / f"f{i}.bin", 1000 * (i + 1), f"tree{i}")
    run(cli + ["s3", "sync", str(tree), "s3://awscli/tree", "--only-show-errors"], e)
    assert len(upstream_keys(env, "awscli", "tree/")) == 12
    (tree / "d0" / "f0.bin").unlink()
    run(cli + ["s3", "sync", str(tree), "s3://awscli/tree", "--delete", "--only-show-errors"], e)
    assert "tree/d0/f0.bin" not in upstream_keys(env, "awscli", "tree/")
    assert len(upstream_keys(env, "awscli", "tree/")) == 11
    run(cli + ["s3", "rm", "s3://awscli/", "--recursive", "--only-show-errors"], e)
    assert upstream_keys(env, "awscli") == []


def check_aws_sync_of_a_folder_with_empty_files(env, tmp):
    """Newcomer bug 1: an empty file in `aws s3 sync` (one request at a time) stalled ~30 s
    per run through the gateway and once lost the next multipart part's ETag. The time is
    reported beside the same sync straight to moto, not asserted: machines differ."""
    e = env.client_env()
    config = tmp / "aws-serial.conf"
    config.write_text("[default]\ns3 =\n    max_concurrent_requests = 1\n")
    e["AWS_CONFIG_FILE"] = str(config)
    folder = tmp / "folder"
    (folder / "a").mkdir(parents=True)
    (folder / "a" / "empty").write_bytes(b"")
    (folder / "b-empty-too").write_bytes(b"")
    for i in range(4):
        write_random(folder / "c" / f"small-{i}.bin", 3000 + i, f"sync-small-{i}")
    write_random(folder / "d-big.bin", 9 * MIB, "sync-big")  # multipart, after the empty files
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())

    direct = env.direct()
    direct.create_bucket(Bucket="syncdirect")
    moto_env = dict(e, AWS_ACCESS_KEY_ID=env.moto_key[0], AWS_SECRET_ACCESS_KEY=env.moto_key[1])
    started = time.monotonic()
    run(["aws", "--endpoint-url", f"http://127.0.0.1:{env.moto_port}", "s3", "sync", str(folder),
         "s3://syncdirect/", "--only-show-errors"], moto_env)
    straight = time.monotonic() - started

    run(["aws", "--endpoint-url", env.endpoint, "s3", "mb", "s3://syncempty"], e)
    started = time.monotonic()
    run(["aws", "--endpoint-url", env.endpoint, "s3", "sync", str(folder), "s3://syncempty/", "--only-show-errors"], e)
    through = time.monotonic() - started
    assert upstream_keys(env, "syncempty") == files, upstream_keys(env, "syncempty")
    for name in files:
        assert_upstream_matches(env, "syncempty", name, folder / name)
    budget = max(10.0, 3 * straight)
    verdict = "within budget" if through <= budget else "OVER BUDGET (the empty-file stall is back?)"
    return f"sync {len(files)} files: {through:.1f}s through the gateway, {straight:.1f}s straight to moto; " \
           f"budget {budget:.0f}s: {verdict}"


def check_boto3(env, tmp):
    s3 = env.via_gateway()
    s3.create_bucket(Bucket="boto")
    s3.put_object(Bucket="boto", Key="plain.txt", Body=b"plain body", ContentType="text/x-plain",
                  Metadata={"who": "boto3"}, CacheControl="no-cache")
    obj = env.direct().get_object(Bucket="boto", Key="plain.txt")
    assert obj["Body"].read() == b"plain body" and obj["Metadata"] == {"who": "boto3"}
    assert obj["CacheControl"] == "no-cache" and obj["ContentType"] == "text/x-plain"

    for algorithm in ["CRC32", "CRC32C", "SHA1", "SHA256"]:
        s3.put_object(Bucket="boto", Key=f"ck/{algorithm}", Body=os.urandom(50_000), ChecksumAlgorithm=algorithm)
    assert len(upstream_keys(env, "boto", "ck/")) == 4

    big = tmp / "boto-big.bin"
    write_random(big, 12 * MIB, "boto-big")
    s3.upload_file(str(big), "boto", "big.bin", Config=TransferConfig(multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB),
                   ExtraArgs={"ContentType": "application/x-big", "Metadata": {"parts": "3"}})
    assert_upstream_matches(env, "boto", "big.bin", big, "application/x-big", {"parts": "3"})
    back = tmp / "boto-back.bin"
    s3.download_file("boto", "big.bin", str(back))
    assert sha256_of(back) == sha256_of(big)

    s3.copy_object(Bucket="boto", Key="copy.txt", CopySource={"Bucket": "boto", "Key": "plain.txt"})
    assert env.direct().get_object(Bucket="boto", Key="copy.txt")["Metadata"] == {"who": "boto3"}
    s3.put_object_tagging(Bucket="boto", Key="copy.txt", Tagging={"TagSet": [{"Key": "k", "Value": "v"}]})
    assert env.direct().get_object_tagging(Bucket="boto", Key="copy.txt")["TagSet"] == [{"Key": "k", "Value": "v"}]

    ranged = s3.get_object(Bucket="boto", Key="big.bin", Range="bytes=100-199")["Body"].read()
    assert ranged == big.read_bytes()[100:200]
    keys = [{"Key": k} for k in upstream_keys(env, "boto")]
    out = s3.delete_objects(Bucket="boto", Delete={"Objects": keys})
    assert len(out.get("Deleted", [])) == len(keys) and upstream_keys(env, "boto") == []
    try:
        s3.get_object(Bucket="boto", Key="plain.txt")
        raise AssertionError("deleted object still readable")
    except s3.exceptions.NoSuchKey:
        pass


def check_rclone(env, tmp):
    e = env.client_env()
    e.update(
        RCLONE_CONFIG=str(tmp / "rclone.conf"),
        RCLONE_CONFIG_GW_TYPE="s3",
        RCLONE_CONFIG_GW_PROVIDER="Other",
        RCLONE_CONFIG_GW_ENV_AUTH="false",
        RCLONE_CONFIG_GW_ACCESS_KEY_ID=env.client_key[0],
        RCLONE_CONFIG_GW_SECRET_ACCESS_KEY=env.client_key[1],
        RCLONE_CONFIG_GW_ENDPOINT=env.endpoint,
        RCLONE_CONFIG_GW_REGION="us-east-1",
    )
    (tmp / "rclone.conf").write_text("")
    src = tmp / "src"
    for i in range(8):
        write_random(src / f"dir{i % 2}" / f"file{i}.bin", 3000 * (i + 1), f"rclone{i}")
    write_random(src / "large.bin", 12 * MIB, "rclone-large")
    run(["rclone", "mkdir", "gw:rclone"], e)
    # moto tells unversioned buckets' uploads 'x-amz-version-id: null', then refuses
    # 'HEAD ?versionId=null' (400), so rclone's post-upload check fails against moto even
    # without the gateway. Real version ids avoid that moto quirk.
    env.via_gateway().put_bucket_versioning(Bucket="rclone", VersioningConfiguration={"Status": "Enabled"})
    run(["rclone", "copy", str(src), "gw:rclone/data", "--s3-upload-cutoff", "5M", "--s3-chunk-size", "5M"], e)
    for path in src.rglob("*.bin"):
        assert_upstream_matches(env, "rclone", f"data/{path.relative_to(src)}", path)
    run(["rclone", "check", str(src), "gw:rclone/data"], e)
    listing = run(["rclone", "lsf", "-R", "gw:rclone/data"], e)
    assert "dir1/file1.bin" in listing and "large.bin" in listing, listing

    (src / "dir0" / "file0.bin").unlink()
    write_random(src / "dir0" / "new.bin", 777, "rclone-new")
    run(["rclone", "sync", str(src), "gw:rclone/data"], e)
    keys = upstream_keys(env, "rclone", "data/")
    assert "data/dir0/file0.bin" not in keys and "data/dir0/new.bin" in keys, keys
    out = tmp / "rclone-back"
    run(["rclone", "copy", "gw:rclone/data", str(out)], e)
    assert sha256_of(out / "large.bin") == sha256_of(src / "large.bin")
    # Not 'purge': it asks GetBucketVersioning, whose moto 5.2.5 answer has the wrong XML
    # root (<GetBucketVersioningResponse>); aws-sdk-s3 rejects it, so the gateway answers
    # 500 and rclone backs off for ~100 s. A moto bug, unrelated to what is tested here.
    run(["rclone", "delete", "gw:rclone/data"], e)
    assert upstream_keys(env, "rclone") == []


def check_s3cmd(env, tmp):
    cfg = tmp / "s3cfg"
    host = f"127.0.0.1:{env.gw_port}"
    cfg.write_text(
        "[default]\n"
        f"access_key = {env.client_key[0]}\n"
        f"secret_key = {env.client_key[1]}\n"
        f"host_base = {host}\nhost_bucket = {host}\n"
        "use_https = False\nsignature_v2 = False\nbucket_location = us-east-1\n"
    )
    s3cmd = ["s3cmd", "-c", str(cfg)]
    e = env.client_env()
    run(s3cmd + ["mb", "s3://s3cmd"], e)
    small, big = tmp / "s3cmd-small.txt", tmp / "s3cmd-big.bin"
    small.write_text("s3cmd was here\n")
    write_random(big, 16 * MIB, "s3cmd-big")
    run(s3cmd + ["put", str(small), "s3://s3cmd/small.txt", "--mime-type=text/plain", "--add-header=x-amz-meta-tool:s3cmd", "--no-preserve",
                 "--no-guess-mime-type"], e)
    run(s3cmd + ["put", str(big), "s3://s3cmd/big.bin", "--multipart-chunk-size-mb=5"], e)
    assert_upstream_matches(env, "s3cmd", "small.txt", small, "text/plain", {"tool": "s3cmd"})
    assert_upstream_matches(env, "s3cmd", "big.bin", big)
    head = env.direct().head_object(Bucket="s3cmd", Key="big.bin")
    assert "-" in head["ETag"], f"multipart upload expected, got ETag {head['ETag']}"

    back = tmp / "s3cmd-back.bin"
    run(s3cmd + ["get", "s3://s3cmd/big.bin", str(back)], e)
    assert sha256_of(back) == sha256_of(big)
    listing = run(s3cmd + ["ls", "s3://s3cmd/"], e)
    assert "small.txt" in listing and "big.bin" in listing, listing

    tree = tmp / "s3cmd-tree"
    for i in range(5):
        write_random(tree / f"f{i}.bin", 2000 + i, f"s3cmd{i}")
    run(s3cmd + ["sync", str(tree) + "/", "s3://s3cmd/tree/"], e)
    assert len(upstream_keys(env, "s3cmd", "tree/")) == 5
    run(s3cmd + ["del", "--recursive", "--force", "s3://s3cmd/"], e)
    assert upstream_keys(env, "s3cmd") == []
    run(s3cmd + ["rb", "s3://s3cmd"], e)


def curl(url):
    """GET `url` with curl: (status, body)."""
    out = subprocess.run(["curl", "-s", "-o", "-", "-w", "\n%{http_code}", url], capture_output=True, timeout=60)
    body, _, status = out.stdout.rpartition(b"\n")
    return int(status), body


def check_presigned_links(env, tmp):
    """`aws s3 presign` as aws cli v1 makes it (SigV2, its default) and with SigV4, fetched
    with curl; a link valid longer than S3's 7 days is refused."""
    cli = ["aws", "--endpoint-url", env.endpoint]
    e = env.client_env()
    run(cli + ["s3", "mb", "s3://presign"], e)
    shared = tmp / "shared.txt"
    shared.write_text("shared with a link\n")
    run(cli + ["s3", "cp", str(shared), "s3://presign/docs/shared file.txt"], e)
    v2 = run(cli + ["s3", "presign", "s3://presign/docs/shared file.txt", "--expires-in", "600"], e).strip()
    assert "AWSAccessKeyId=" in v2 and "Signature=" in v2, f"aws cli v1 should sign with SigV2: {v2}"
    assert curl(v2) == (200, b"shared with a link\n"), curl(v2)
    tampered = v2.replace("shared%20file", "other%20file")
    assert curl(tampered)[0] == 403, "a link for another key must not verify"

    v4_config = tmp / "aws-v4.conf"
    v4_config.write_text("[default]\ns3 =\n    signature_version = s3v4\n")
    e4 = dict(e, AWS_CONFIG_FILE=str(v4_config))
    v4 = run(cli + ["s3", "presign", "s3://presign/docs/shared file.txt", "--expires-in", "600"], e4).strip()
    assert "X-Amz-Signature=" in v4, f"expected SigV4: {v4}"
    assert curl(v4) == (200, b"shared with a link\n"), curl(v4)

    # aws cli v1 signs a SigV2 link for any lifetime; beyond 7 days the gateway refuses it.
    long = run(cli + ["s3", "presign", "s3://presign/docs/shared file.txt", "--expires-in", str(8 * 86400)], e).strip()
    status, body = curl(long)
    assert status == 400 and b"AuthorizationQueryParametersError" in body, (status, body)

    # s3cmd with SigV2 header signing: uploads and downloads.
    cfg = tmp / "s3cfg-v2"
    host = f"127.0.0.1:{env.gw_port}"
    cfg.write_text(
        "[default]\n"
        f"access_key = {env.client_key[0]}\nsecret_key = {env.client_key[1]}\n"
        f"host_base = {host}\nhost_bucket = {host}\n"
        "use_https = False\nsignature_v2 = True\nbucket_location = us-east-1\n"
    )
    run(["s3cmd", "-c", str(cfg), "put", str(shared), "s3://presign/v2.txt"], e)
    back = tmp / "v2-back.txt"
    run(["s3cmd", "-c", str(cfg), "get", "s3://presign/v2.txt", str(back)], e)
    assert back.read_bytes() == shared.read_bytes()
    assert_upstream_matches(env, "presign", "v2.txt", shared)


def check_boto3_empties_an_unversioned_bucket(env, tmp):
    """`Bucket.object_versions.delete()` names each object's version as "null" on a bucket
    that never versioned; moto refuses to read "null" directly, and capture-before-destroy
    used to fail on it (503)."""
    s3 = env.via_gateway()
    s3.create_bucket(Bucket="unversioned")
    for i in range(5):
        s3.put_object(Bucket="unversioned", Key=f"k{i}", Body=f"body {i}".encode())
    env.direct().put_object(Bucket="unversioned", Key="behind", Body=b"written around the gateway")
    resource = boto3.resource(
        "s3",
        endpoint_url=env.endpoint,
        aws_access_key_id=env.client_key[0],
        aws_secret_access_key=env.client_key[1],
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )
    resource.Bucket("unversioned").object_versions.delete()
    assert upstream_keys(env, "unversioned") == []
    # The object written around the gateway was captured before it went.
    log = subprocess.run(
        [str(Path(env.gateway_bin).with_name("rewind")), "--json", "log", "--bucket", "unversioned", "--key", "behind"],
        env=dict(os.environ, REWIND_ADMIN_URL=env.admin_url(""), REWIND_ADMIN_TOKEN_FILE=str(env.work / "data" / "admin-token")),
        capture_output=True, text=True, timeout=60,
    )
    assert log.returncode == 0, log.stderr
    ops = [line["op"] for line in json.loads(log.stdout)]
    assert ops[0] == "capture-existing" and ops[-1] == "delete", ops


def check_views_read_the_past(env, tmp):
    """A time-travel view, made through the admin API, read by aws cli, boto3 and rclone
    after the live bucket was emptied: the old bytes come back; every write is refused."""
    live = env.via_gateway()
    live.create_bucket(Bucket="past")
    src = tmp / "src"
    for i in range(25):
        write_random(src / f"d{i % 3}" / f"f{i}.bin", 700 * i + 1, f"past{i}")
    write_random(src / "big.bin", 9 * MIB, "past-big")
    files = sorted(p for p in src.rglob("*") if p.is_file())
    for path in files:
        live.upload_file(str(path), "past", str(path.relative_to(src)))
    token = (env.work / "data" / "admin-token").read_text().strip()
    req = urllib.request.Request(env.admin_url("/admin/v1/views?bucket=past&ttl=1h"), method="POST",
                                 headers={"Authorization": f"Bearer {token}"})
    view = json.loads(urllib.request.urlopen(req, timeout=10).read())[0]
    assert view["endpoint"] == env.endpoint and view["seq"] > 0, view
    run(["aws", "--endpoint-url", env.endpoint, "s3", "rm", "s3://past/", "--recursive", "--only-show-errors"],
        env.client_env())
    assert upstream_keys(env, "past") == []

    e = env.client_env()
    e.update(AWS_ACCESS_KEY_ID=view["access_key_id"], AWS_SECRET_ACCESS_KEY=view["secret_access_key"])
    cli = ["aws", "--endpoint-url", env.endpoint]
    listing = run(cli + ["s3", "ls", "s3://past/", "--recursive"], e)
    assert len(listing.splitlines()) == len(files), listing
    out = tmp / "aws-out"
    run(cli + ["s3", "sync", "s3://past/", str(out), "--only-show-errors"], e)
    for path in files:
        assert sha256_of(out / path.relative_to(src)) == sha256_of(path), f"aws sync: {path}"
    one = tmp / "one.bin"
    run(cli + ["s3", "cp", "s3://past/big.bin", str(one), "--only-show-errors"], e)
    assert sha256_of(one) == sha256_of(src / "big.bin")
    refused = subprocess.run(cli + ["s3", "cp", str(one), "s3://past/new.bin"], env=e, capture_output=True, text=True)
    assert refused.returncode != 0 and "AccessDenied" in refused.stderr, refused.stderr

    b3 = boto3.client("s3", endpoint_url=env.endpoint, aws_access_key_id=view["access_key_id"],
                      aws_secret_access_key=view["secret_access_key"], region_name="us-east-1",
                      config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
    keys = []
    for page in b3.get_paginator("list_objects_v2").paginate(Bucket="past", PaginationConfig={"PageSize": 7}):
        keys += [o["Key"] for o in page.get("Contents", [])]
    assert keys == sorted(str(p.relative_to(src)) for p in files), keys
    data = (src / "big.bin").read_bytes()
    got = b3.get_object(Bucket="past", Key="big.bin", Range="bytes=1000000-5000000")["Body"].read()
    assert got == data[1000000:5000001], "ranged read through a view"
    for call in (lambda: b3.delete_object(Bucket="past", Key="big.bin"),
                 lambda: b3.get_object(Bucket="past", Key="absent")):
        try:
            call()
            raise AssertionError("expected an error")
        except live.exceptions.ClientError as err:
            assert err.response["Error"]["Code"] in ("AccessDenied", "NoSuchKey"), err.response

    r = env.client_env()
    r.update(RCLONE_CONFIG=str(tmp / "rclone.conf"), RCLONE_CONFIG_VIEW_TYPE="s3", RCLONE_CONFIG_VIEW_PROVIDER="Other",
             RCLONE_CONFIG_VIEW_ENV_AUTH="false", RCLONE_CONFIG_VIEW_ACCESS_KEY_ID=view["access_key_id"],
             RCLONE_CONFIG_VIEW_SECRET_ACCESS_KEY=view["secret_access_key"],
             RCLONE_CONFIG_VIEW_ENDPOINT=env.endpoint, RCLONE_CONFIG_VIEW_REGION="us-east-1")
    (tmp / "rclone.conf").write_text("")
    listed = run(["rclone", "lsf", "-R", "--files-only", "view:past"], r).split()
    assert sorted(listed) == sorted(str(p.relative_to(src)) for p in files), listed
    back = tmp / "rclone-out"
    run(["rclone", "copy", "view:past", str(back)], r)
    for path in files:
        assert sha256_of(back / path.relative_to(src)) == sha256_of(path), f"rclone copy: {path}"
    return f"{len(files)} objects back from seq:{view['seq']} after the live bucket was emptied"


def check_metrics_saw_the_traffic(env, tmp):
    text = urllib.request.urlopen(env.admin_url("/metrics"), timeout=5).read().decode()
    for series in ['operation="PutObject"', 'operation="UploadPart"', 'operation="CompleteMultipartUpload"',
                   'operation="DeleteObjects"', 'operation="ListObjectsV2"']:
        assert f"rewind_requests_total{{{series}" in text, f"no {series} in /metrics"
    assert env.client_key[1] not in text
    # Every client's writes were captured: commits journaled, chunks stored, none refused.
    def value(series):
        for line in text.splitlines():
            if line.startswith(series + " "):
                return float(line.split()[-1])
        return 0.0
    commits = value('rewind_journal_records_total{record="commit",result="ok"}')
    assert commits >= 20, f"only {commits} commits journaled"
    assert value('rewind_vault_chunks_total{result="new"}') > 0, "no chunk reached the vault"
    assert "rewind_capture_refusals_total{" not in text, "a mutation was refused"


CHECKS = [
    check_aws_cli,
    check_aws_sync_of_a_folder_with_empty_files,
    check_boto3,
    check_rclone,
    check_s3cmd,
    check_presigned_links,
    check_boto3_empties_an_unversioned_bucket,
    check_views_read_the_past,
    check_metrics_saw_the_traffic,
]


def default_gateway():
    target = os.environ.get("CARGO_TARGET_DIR", str(Path(__file__).resolve().parents[2] / "target"))
    for profile in ("debug", "release"):
        candidate = Path(target) / profile / "rewind-gateway"
        if candidate.exists():
            return str(candidate)
    return str(Path(target) / "debug" / "rewind-gateway")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gateway", default=default_gateway(), help="the rewind-gateway binary")
    args = parser.parse_args()
    for tool in ["moto_server", "aws", "rclone", "s3cmd", "curl"]:
        if shutil.which(tool) is None:
            sys.exit(f"interop: {tool} is not installed; .ci/run installs it (or see README.md)")
    if not Path(args.gateway).exists():
        sys.exit(f"interop: no gateway binary at {args.gateway}; build it with: cargo build -p rewind-gateway")

    passed = failed = 0
    with tempfile.TemporaryDirectory(prefix="rewind-interop-") as work:
        work = Path(work)
        env = Env(args.gateway, work)
        try:
            for check in CHECKS:
                scratch = work / check.__name__
                scratch.mkdir()
                started = time.monotonic()
                try:
                    note = check(env, scratch)
                    passed += 1
                    note = f": {note}" if note else ""
                    print(f"PASS {check.__name__} ({time.monotonic() - started:.1f}s){note}", flush=True)
                except Exception:
                    failed += 1
                    print(f"FAIL {check.__name__}\n{traceback.format_exc()}", flush=True)
        finally:
            env.stop()
            if failed:
                log = (work / "logs" / "gateway.log").read_text(errors="replace")
                print("--- gateway log (last 40 lines) ---\n" + "\n".join(log.splitlines()[-40:]))
    print(f"interop: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Tripwire drill: attacks replayed with boto3 and the aws cli through the real gateway
(in front of moto), each while a legitimate client key writes other keys of the same
bucket, and benign workloads that must raise no alarm.

Bucket `victim` is in protect mode, `benign` in alert mode (the default).
  1. An attacker key overwrites 1,000 text objects with random bytes, one by one: an
     incident within the first 50, its further writes refused, the rest untouched
     upstream; `rewind undo --incident` brings every object back byte-exact and every
     legitimate write stays.
  2. One DeleteObjects of 1,000 keys (boto3): refused whole, nothing deleted.
     `aws s3 rm --recursive` (one DeleteObject per key, ten at a time): stopped at the
     40th, undone by incident.
  3. Codefinger: CopyObject of each object onto itself with SSE-C under the attacker's
     key, then a lifecycle rule expiring everything: an incident within the first
     objects, the rule refused, the copies undone by incident. A lifecycle rule alone
     opens an incident too.
  4. Benign, in `benign`: a bulk import of 10,000 new objects, log rotation (a new key for
     each old one deleted), compressed archives under new keys, a sync rewriting 1%: no
     incident.

Usage: tests/drill/tripwire.py [--bin-dir DIR] [--objects N] [--import N]
"""

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from harness import Gateway, Moto, random_key_pair, sh  # noqa: E402


def client(endpoint, key):
    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=key[0], aws_secret_access_key=key[1],
                        region_name="us-east-1",
                        config=Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"}))


def text(key):
    """About 4 KiB of text that compresses, different per key."""
    return "".join(f"{key} line {i}: the quick brown fox jumps over the lazy dog\n" for i in range(60)).encode()


def noise(size, seed):
    out, counter = b"", 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return out[:size]


def body(s3, bucket, key):
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def code(e):
    return e.response.get("Error", {}).get("Code")


class Legit(threading.Thread):
    """The legitimate writer: new keys under legit/ until stopped; every write must succeed."""

    def __init__(self, s3, bucket, tag):
        super().__init__()
        self.s3, self.bucket, self.tag = s3, bucket, tag
        self.stop, self.written, self.errors = threading.Event(), [], []

    def run(self):
        n = 0
        while not self.stop.is_set():
            key = f"legit/{self.tag}-{n:05d}"
            try:
                self.s3.put_object(Bucket=self.bucket, Key=key, Body=text(key))
                self.written.append(key)
            except Exception as e:  # noqa: BLE001 - reported below
                self.errors.append(f"{key}: {e}")
            n += 1

    def finish(self):
        self.stop.set()
        self.join()
        assert not self.errors, f"legitimate writes failed: {self.errors[:3]}"
        assert self.written, "the legitimate writer wrote nothing"
        return self.written


def main():
    parser = argparse.ArgumentParser()
    default_bins = Path(os.environ.get("CARGO_TARGET_DIR", "target")) / "debug"
    parser.add_argument("--bin-dir", type=Path, default=default_bins)
    parser.add_argument("--objects", type=int, default=1000)
    parser.add_argument("--import", dest="bulk", type=int, default=10_000)
    args = parser.parse_args()
    rewind = args.bin_dir / "rewind"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        moto = Moto(tmp / "moto.log")
        legit_key, attacker_key = random_key_pair("LG"), random_key_pair("AT")
        (tmp / "attacker.secret").write_text(attacker_key[1])
        (tmp / "rewind.toml").write_text(f"""
[[credentials.client_keys]]
access_key_id = "{attacker_key[0]}"
secret_access_key_file = "{tmp / 'attacker.secret'}"

[tripwire.buckets.victim]
action = "protect"
""")
        env = {**moto.gateway_env(), "REWIND_CONFIG": str(tmp / "rewind.toml"),
               "REWIND_ACCESS_KEY_ID": legit_key[0], "REWIND_SECRET_ACCESS_KEY": legit_key[1]}
        gw = Gateway(args.bin_dir / "rewind-gateway", tmp / "data", tmp / "gateway.log", env)
        try:
            drill(gw, moto, rewind, legit_key, attacker_key, args, tmp)
        except BaseException:
            print((tmp / "gateway.log").read_text()[-4000:], file=sys.stderr)
            raise
        finally:
            if gw.proc.poll() is None:
                gw.stop()
            moto.stop()
    print("tripwire drill: ok")


def incidents(rewind, gw, bucket):
    out = sh([rewind, "--json", "incidents", "ls"], env=gw.rewind_env())
    return [i for i in json.loads(out.stdout) if i["bucket"] == bucket]


def undo_and_ack(rewind, gw, incident):
    sh([rewind, "--json", "undo", "--incident", incident["id"], "--yes"], env=gw.rewind_env())
    sh([rewind, "incidents", "ack", incident["id"]], env=gw.rewind_env())


def refuse_expiring_lifecycle(attacker):
    """An expiring lifecycle rule on `victim` must be refused."""
    try:
        attacker.put_bucket_lifecycle_configuration(Bucket="victim", LifecycleConfiguration={"Rules": [
            {"ID": "x", "Status": "Enabled", "Filter": {"Prefix": ""}, "Expiration": {"Days": 7}}]})
        raise AssertionError("an expiring lifecycle rule was accepted")
    except ClientError as e:
        assert code(e) == "AccessDenied", e


def drill(gw, moto, rewind, legit_key, attacker_key, args, tmp):
    legit, attacker = client(gw.endpoint, legit_key), client(gw.endpoint, attacker_key)
    direct = client(moto.endpoint, moto.key)
    for bucket in ("victim", "benign"):
        legit.create_bucket(Bucket=bucket)
    docs = [f"docs/{i:04d}.txt" for i in range(args.objects)]
    src = tmp / "docs"
    src.mkdir()
    for k in docs:
        (src / Path(k).name).write_bytes(text(k))
    aws_legit = {**gw.aws_env(), "AWS_ACCESS_KEY_ID": legit_key[0], "AWS_SECRET_ACCESS_KEY": legit_key[1]}
    aws_attacker = {**gw.aws_env(), "AWS_ACCESS_KEY_ID": attacker_key[0], "AWS_SECRET_ACCESS_KEY": attacker_key[1]}
    sh(["aws", "--endpoint-url", gw.endpoint, "s3", "cp", "--recursive", "--only-show-errors", src, "s3://victim/docs/"],
       env=aws_legit)

    def untouched_except(changed):
        for k in docs:
            if k not in changed:
                assert body(direct, "victim", k) == text(k), f"{k} changed upstream"

    # 1. Overwrites with random bytes, one by one (boto3).
    writer = Legit(legit, "victim", "overwrite")
    writer.start()
    changed, started = [], time.monotonic()
    for i, k in enumerate(docs):
        try:
            attacker.put_object(Bucket="victim", Key=k, Body=noise(4096, i))
            changed.append(k)
        except ClientError as e:
            assert code(e) == "AccessDenied", e
            break
    stopped_after = time.monotonic() - started
    written = writer.finish()
    [incident] = incidents(rewind, gw, "victim")
    assert incident["actor"] == attacker_key[0] and "encrypted_overwrites" in incident["signals"], incident
    assert len(changed) <= 50 or stopped_after <= 10, f"{len(changed)} overwritten in {stopped_after:.1f} s"
    print(f"1. overwrites: incident {incident['id']} after {len(changed)} objects ({stopped_after:.1f} s), "
          f"signals {incident['signals']}; {len(written)} legitimate writes meanwhile")
    untouched_except(set(changed))
    undo_and_ack(rewind, gw, incident)
    untouched_except(set())
    for k in written:
        assert body(direct, "victim", k) == text(k), f"legitimate {k} lost"
    print(f"   undo --incident: all {len(docs)} objects byte-exact, every legitimate write kept")

    # 2. One DeleteObjects of every key (boto3): refused whole.
    writer = Legit(legit, "victim", "batch")
    writer.start()
    try:
        attacker.delete_objects(Bucket="victim", Delete={"Objects": [{"Key": k} for k in docs], "Quiet": True})
        raise AssertionError("a batch delete of the whole bucket went through")
    except ClientError as e:
        assert code(e) == "AccessDenied", e
    finally:
        written = writer.finish()
    for k in written:
        assert body(direct, "victim", k) == text(k), f"legitimate {k} lost"
    [incident] = [i for i in incidents(rewind, gw, "victim") if i["state"] == "open"]
    assert "batch_deletes" in incident["signals"], incident
    untouched_except(set())
    print(f"2. DeleteObjects of {len(docs)} keys: refused whole (incident {incident['id']}), nothing deleted")
    sh([rewind, "incidents", "ack", incident["id"]], env=gw.rewind_env())
    # ... and `aws s3 rm --recursive`, which deletes one key per request, ten at a time.
    writer = Legit(legit, "victim", "delete")
    writer.start()
    started = time.monotonic()
    out = sh(["aws", "--endpoint-url", gw.endpoint, "s3", "rm", "--recursive", "--only-show-errors", "s3://victim/docs/"],
             env=aws_attacker, check=False)
    stopped_after = time.monotonic() - started
    written = writer.finish()
    assert out.returncode != 0 and "AccessDenied" in out.stdout + out.stderr, out
    listed = direct.list_objects_v2(Bucket="victim", Prefix="docs/", MaxKeys=1000).get("Contents", [])
    deleted = set(docs) - {o["Key"] for o in listed}
    [incident] = [i for i in incidents(rewind, gw, "victim") if i["state"] == "open"]
    assert "deletes" in incident["signals"], incident
    # Opened at the 40th delete; up to ten more were in flight by then.
    assert len(deleted) <= 50 + 10 or stopped_after <= 10, f"{len(deleted)} deleted in {stopped_after:.1f} s"
    untouched_except(deleted)
    undo_and_ack(rewind, gw, incident)
    untouched_except(set())
    for k in written:
        assert body(direct, "victim", k) == text(k), f"legitimate {k} lost"
    print(f"   aws s3 rm --recursive: stopped after {len(deleted)} deletes ({stopped_after:.1f} s), "
          f"incident {incident['id']}; undone byte-exact, {len(written)} legitimate writes kept")

    # 3. Codefinger: each object copied onto itself with SSE-C under the attacker's key (moto
    # wants a metadata change too), then a lifecycle rule that expires everything.
    sse_key = os.urandom(32)
    writer = Legit(legit, "victim", "sse-c")
    writer.start()
    copied, started = [], time.monotonic()
    for k in docs:
        try:
            attacker.copy_object(Bucket="victim", Key=k, CopySource={"Bucket": "victim", "Key": k},
                                 SSECustomerAlgorithm="AES256", SSECustomerKey=sse_key,
                                 MetadataDirective="REPLACE", Metadata={"locked": "pay"})
            copied.append(k)
        except ClientError as e:
            assert code(e) == "AccessDenied", e
            break
    refuse_expiring_lifecycle(attacker)
    written = writer.finish()
    [incident] = [i for i in incidents(rewind, gw, "victim") if i["state"] == "open"]
    assert "sse_c_overwrites" in incident["signals"], incident
    assert len(copied) <= 50, f"{len(copied)} copied with SSE-C"
    untouched_except(set(copied))
    undo_and_ack(rewind, gw, incident)
    untouched_except(set())
    for k in written:
        assert body(direct, "victim", k) == text(k), f"legitimate {k} lost"
    print(f"3. SSE-C in-place copies: incident {incident['id']} after {len(copied)} objects "
          f"({time.monotonic() - started:.1f} s); the lifecycle rule refused; undone byte-exact, readable without the key")
    # An expiring lifecycle rule alone opens one too.
    refuse_expiring_lifecycle(attacker)
    [incident] = [i for i in incidents(rewind, gw, "victim") if i["state"] == "open"]
    assert incident["signals"] == ["expiring_lifecycle"], incident
    sh([rewind, "incidents", "ack", incident["id"]], env=gw.rewind_env())
    print(f"   an expiring lifecycle rule alone: refused, incident {incident['id']}")

    # 4. Benign workloads in `benign`: no incident.
    started = time.monotonic()
    bulk = tmp / "bulk"
    bulk.mkdir()
    for i in range(args.bulk):
        (bulk / f"{i:05d}.txt").write_bytes(text(f"bulk {i}")[: 200 + i % 300])
    sh(["aws", "--endpoint-url", gw.endpoint, "s3", "cp", "--recursive", "--only-show-errors", bulk, "s3://benign/import/"],
       env=aws_legit)
    for i in range(300):
        legit.put_object(Bucket="benign", Key=f"logs/{i:04d}.log", Body=text(f"log {i}"))
        if i >= 50:
            legit.delete_object(Bucket="benign", Key=f"logs/{i - 50:04d}.log")
    for i in range(30):
        legit.put_object(Bucket="benign", Key=f"archives/night-{i}.tar.zst", Body=noise(64 * 1024, 1000 + i))
    for i in range(0, args.bulk, 100):
        legit.put_object(Bucket="benign", Key=f"import/{i:05d}.txt", Body=text(f"bulk {i} synced"))
    found = incidents(rewind, gw, "benign")
    assert not found, f"benign workloads raised incidents: {found}"
    print(f"4. benign: {args.bulk} imported, 250 logs rotated, 30 archives, {args.bulk // 100} rewritten: "
          f"no incident ({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()

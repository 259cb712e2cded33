#!/usr/bin/env python3
"""Three gateways, one history: real rewind-gateway binaries over one PostgreSQL journal
and one vault directory, in front of one versioned moto bucket.

Writers spread at random over the gateways put and delete the same few keys at once. Mid
traffic one gateway is SIGKILLed, holding keys' locks and open intents. Then:
  1. every acknowledged write is in the journal, and each key's journaled versions and
     delete markers are the upstream's, in the upstream's order (G1, G2 across gateways);
  2. the dead gateway's open intents are resolved by another gateway once its lease
     lapses (within 20 s plus a round of the background work);
  3. `rewind verify --read-data` through a surviving gateway finds nothing wrong.

The PostgreSQL is the one in REWIND_TEST_POSTGRES_URL (a database of its own is made on
it), or one this script starts with .ci/postgres and removes.

Usage: tests/multi/gateways.py [--bin-dir DIR] [--seconds 8]
"""

import argparse
import hashlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import boto3
from botocore.config import Config

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from harness import Gateway, Moto, Postgres, random_key_pair, sh, wait_until  # noqa: E402

BUCKET = "shared"
KEYS = [f"k{i}" for i in range(6)]
WRITERS = 6
GATEWAYS = 3


def s3(endpoint, key):
    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=key[0], aws_secret_access_key=key[1],
                        region_name="us-east-1",
                        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1},
                                      connect_timeout=2, read_timeout=20))


def write(gateways, alive, client_key, writer, stop, acked):
    """Until `stop`: a put (distinct bytes) or a delete of a random key, through a random
    live gateway. Records each acknowledged put's ETag."""
    rng = random.Random(writer)
    clients = [s3(gw.endpoint, client_key) for gw in gateways]
    n = 0
    while not stop.is_set():
        i = rng.choice([i for i in range(len(gateways)) if alive[i]])
        key = rng.choice(KEYS)
        try:
            if rng.random() < 0.75:
                body = hashlib.sha256(f"{writer}:{n}".encode()).digest() * (1 + rng.randrange(64))
                out = clients[i].put_object(Bucket=BUCKET, Key=key, Body=body)
                acked.append((key, out["ETag"].strip('"')))
            else:
                clients[i].delete_object(Bucket=BUCKET, Key=key)
        except Exception:  # noqa: BLE001 - the gateway was killed under this request
            pass
        n += 1


def upstream_history(direct, key):
    """The upstream's version ids of `key`, oldest first: its versions, and apart from
    them its delete markers. moto lists the two apart, each newest first, with times to
    the second, so their interleaving cannot be read back from it."""
    out = direct.list_object_versions(Bucket=BUCKET, Prefix=key)
    versions = [v["VersionId"] for v in out.get("Versions", []) if v["Key"] == key]
    markers = [d["VersionId"] for d in out.get("DeleteMarkers", []) if d["Key"] == key]
    return versions[::-1], markers[::-1]


def journal_history(rewind, env, key):
    """The journal's version ids of `key`, in journal order, as `upstream_history` gives
    them."""
    out = sh([rewind, "--json", "log", "--bucket", BUCKET, "--key", key], env=env)
    lines = json.loads(out.stdout)
    versions = [line.get("version_id") for line in lines if line["effect"] == "version"]
    markers = [line.get("version_id") for line in lines if line["effect"] == "deleted"]
    return versions, markers


def difference(mine, theirs):
    """Where the journal's history of a key first differs from the upstream's."""
    out = []
    for kind, a, b in (("versions", mine[0], theirs[0]), ("delete markers", mine[1], theirs[1])):
        if a != b:
            at = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
            out.append(f"{kind}: journal has {len(a)}, upstream {len(b)}; first difference at {at}: "
                       f"journal {a[at:at + 3]}, upstream {b[at:at + 3]}")
    return "; ".join(out)


def open_intents(url):
    """Open intents in the shared journal, by owning gateway."""
    out = sh(["psql", "-At", url, "-c", "SELECT convert_from(v, 'UTF8'), count(*) FROM rewind_open WHERE length(k) = 8 GROUP BY 1"])
    return {owner: int(n) for owner, n in (line.split("|") for line in out.stdout.split())}


def main():
    parser = argparse.ArgumentParser()
    default_bins = Path(os.environ.get("CARGO_TARGET_DIR", "target")) / "debug"
    parser.add_argument("--bin-dir", type=Path, default=default_bins)
    parser.add_argument("--seconds", type=float, default=8.0, help="traffic before and after the kill")
    args = parser.parse_args()
    rewind = args.bin_dir / "rewind"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        pg = Postgres()
        moto = Moto(tmp / "moto.log")
        client_key = random_key_pair("RW")
        gateways = []
        try:
            direct = s3(moto.endpoint, moto.key)
            direct.create_bucket(Bucket=BUCKET)
            direct.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
            env = {"REWIND_JOURNAL_URL": pg.url, "REWIND_VAULT": str(tmp / "vault"),
                   "REWIND_KEY_FILE": str(tmp / "vault.key"), **moto.gateway_env(),
                   "REWIND_ACCESS_KEY_ID": client_key[0], "REWIND_SECRET_ACCESS_KEY": client_key[1],
                   "REWIND_LOG": "warn,rewind_capture::open=info"}
            # The first creates the vault and its key; the others open them.
            for i in range(GATEWAYS):
                gateways.append(Gateway(args.bin_dir / "rewind-gateway", tmp / f"gw{i}", tmp / f"gw{i}.log", env))
            # Every key exists before the traffic: moto records no delete marker for a delete
            # of a key that never existed (S3 does), which the journal does record.
            for key in KEYS:
                s3(gateways[0].endpoint, client_key).put_object(Bucket=BUCKET, Key=key, Body=b"first")
            alive = [True] * GATEWAYS
            stop, acked = threading.Event(), []
            threads = [threading.Thread(target=write, args=(gateways, alive, client_key, w, stop, acked))
                       for w in range(WRITERS)]
            for t in threads:
                t.start()
            time.sleep(args.seconds)
            dead = re.search(r"joined the shared journal gateway=(\S+)", (tmp / "gw2.log").read_text()).group(1)
            # Frozen (SIGSTOP) until it is seen holding an intent open, then SIGKILLed:
            # what it leaves open is then known, and the recovery of it tested every run.
            for _ in range(50):
                gateways[2].proc.send_signal(signal.SIGSTOP)
                left_open = open_intents(pg.url).get(dead, 0)
                if left_open:
                    break
                gateways[2].proc.send_signal(signal.SIGCONT)
                time.sleep(0.05)
            alive[2] = False
            gateways[2].proc.kill()  # requests in flight, keys locked
            gateways[2].proc.wait()
            killed_at = time.time()
            print(f"gateway 2 ({dead}) killed with {left_open} intents open")
            assert left_open > 0, "the kill left nothing open: nothing here tests the recovery of a dead gateway"
            time.sleep(args.seconds)
            stop.set()
            for t in threads:
                t.join()
            print(f"{len(acked)} puts acknowledged over {GATEWAYS} gateways; gateway 2 killed mid-traffic")

            # 2. The dead gateway's intents are resolved by a live one.
            survivor_env = gateways[0].rewind_env()
            try:
                wait_until("the dead gateway's open intents to be resolved",
                           lambda: not open_intents(pg.url) and journal_matches(rewind, survivor_env, direct),
                           timeout=90)
            except AssertionError:
                print("open intents by gateway:", open_intents(pg.url))
                for key in KEYS:
                    mine, theirs = journal_history(rewind, survivor_env, key), upstream_history(direct, key)
                    if mine != theirs:
                        print(f"{key}: {difference(mine, theirs)}")
                raise
            print(f"open intents resolved and the journal matches the upstream {time.time() - killed_at:.0f} s after the kill")

            # 1. Each key's history, in order, and every acknowledged put.
            journaled = set()
            for key in KEYS:
                mine, theirs = journal_history(rewind, survivor_env, key), upstream_history(direct, key)
                assert mine == theirs, f"{key}: {difference(mine, theirs)}"
                out = json.loads(sh([rewind, "--json", "log", "--bucket", BUCKET, "--key", key],
                                    env=survivor_env).stdout)
                journaled |= {(key, line["etag"]) for line in out if line.get("etag")}
            missing = [a for a in acked if a not in journaled]
            assert not missing, f"acknowledged puts not in the journal: {missing[:5]}"

            # 3. The whole history checks out, bytes included.
            out = sh([rewind, "--json", "verify", "--read-data"], env=survivor_env)
            report = json.loads(out.stdout)
            assert not report["journal_problems"] and not report["damaged"], report
            print(f"verify --read-data: clean ({report['records']} records, {report['chunks_read']} chunks re-hashed)")
        finally:
            for gw in gateways:
                if gw.proc.poll() is None:
                    gw.stop()
            moto.stop()
            pg.stop()
    print("three gateways, one history: OK")


def journal_matches(rewind, env, direct):
    return all(journal_history(rewind, env, key) == upstream_history(direct, key) for key in KEYS)


if __name__ == "__main__":
    main()

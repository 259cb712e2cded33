#!/usr/bin/env python3
"""Host-loss drill: real binaries, writes in flight when the gateway's host dies.

A protected rewind-gateway (the "host") sits in front of an upstream that lives elsewhere
(a second rewind-gateway, pass-through, standing in for the S3 service) and ships its
journal to a vault directory every second. Four clients write and overwrite objects
through it; mid-traffic the host is SIGKILLed and its whole data directory (journal,
indexes, key file) is deleted. Then, with only the vault and the operator's copy of the
key:
  1. `rewind rebuild` makes a new data directory from the vault;
  2. `rewind --data-dir NEW restore --at <the moment of the kill> --to-dir` brings back,
     byte for byte, every write acknowledged more than one shipping interval before the
     kill; a younger write may be missing (the recovery point), and nothing else is;
  3. `rewind --data-dir NEW verify --read-data` passes.

Usage: tests/drill/host_loss.py [--bin-dir DIR] [--seconds 6]
"""

import argparse
import datetime
import hashlib
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import boto3
from botocore.config import Config

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from harness import Gateway, sh  # noqa: E402

BUCKET = "ingest"
WRITERS = 4
SHIP_SECONDS = 1.0
# A write acknowledged this long before the kill must have been shipped: one interval,
# plus time for the ship that interval ends with.
RECOVERY_POINT = SHIP_SECONDS + 1.0


def body_of(writer, n):
    """Distinct, deterministic bytes for write n of a writer (1 KiB to 96 KiB)."""
    seed = hashlib.sha256(f"{writer}:{n}".encode()).digest()
    return seed * (32 + (seed[0] * 91) % 3040)


def client(gw):
    return boto3.client("s3", endpoint_url=gw.endpoint, aws_access_key_id=gw.key_id,
                        aws_secret_access_key=gw.secret, region_name="us-east-1",
                        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1},
                                      connect_timeout=2, read_timeout=5))


def write(gw, writer, stop, log):
    """Writes until `stop`: new keys, and every third write overwrites an earlier key.
    Logs (key, body hash, started, acknowledged or None)."""
    s3 = client(gw)
    n = 0
    while not stop.is_set():
        key = f"w{writer}/{(n // 3 if n % 3 == 2 else n):05d}.bin"
        body = body_of(writer, n)
        entry = [key, hashlib.sha256(body).hexdigest(), time.time(), None]
        log.append(entry)
        try:
            s3.put_object(Bucket=BUCKET, Key=key, Body=body)
            entry[3] = time.time()
        except Exception:  # noqa: BLE001 - the host died under this write
            return
        n += 1


def main():
    parser = argparse.ArgumentParser()
    default_bins = Path(os.environ.get("CARGO_TARGET_DIR", "target")) / "debug"
    parser.add_argument("--bin-dir", type=Path, default=default_bins)
    parser.add_argument("--seconds", type=float, default=6.0, help="traffic before the kill")
    args = parser.parse_args()
    rewind = args.bin_dir / "rewind"
    shm = Path("/dev/shm") if Path("/dev/shm").is_dir() else None
    with tempfile.TemporaryDirectory(dir=shm) as tmp:
        tmp = Path(tmp)
        # The S3 service: survives the host.
        (tmp / "s3.toml").write_text('[protection]\nbuckets = ["none"]\nreconcile_interval = "0s"\n')
        s3_service = Gateway(args.bin_dir / "rewind-gateway", tmp / "s3-service", tmp / "s3.log",
                             {"REWIND_CONFIG": str(tmp / "s3.toml")})
        try:
            (tmp / "host.toml").write_text(
                f'[upstream]\nendpoint = "{s3_service.endpoint}"\nforce_path_style = true\n'
                f'[vault]\nlocation = "{tmp / "vault"}"\nsegment_interval = "{SHIP_SECONDS:.0f}s"\n'
                '[protection]\nreconcile_interval = "0s"\n')
            host_dir = tmp / "host"
            host = Gateway(args.bin_dir / "rewind-gateway", host_dir, tmp / "host.log",
                           {"REWIND_CONFIG": str(tmp / "host.toml"),
                            "REWIND_UPSTREAM_ACCESS_KEY_ID": s3_service.key_id,
                            "REWIND_UPSTREAM_SECRET_ACCESS_KEY": s3_service.secret})
            # The operator's copy of the key, kept off the host.
            shutil.copy(host_dir / "vault.key", tmp / "operator.key")
            client(host).create_bucket(Bucket=BUCKET)

            stop, logs = threading.Event(), [[] for _ in range(WRITERS)]
            threads = [threading.Thread(target=write, args=(host, w, stop, logs[w])) for w in range(WRITERS)]
            for t in threads:
                t.start()
            time.sleep(args.seconds)
            killed_at = time.time()
            host.proc.kill()  # SIGKILL, writes in flight
            host.proc.wait()
            stop.set()
            for t in threads:
                t.join()
            shutil.rmtree(host_dir)
            print(f"killed the host after {sum(len(log) for log in logs)} writes started; data dir deleted")

            new = tmp / "rebuilt"
            out = sh([rewind, "--json", "--data-dir", new, "rebuild", "--vault", tmp / "vault",
                      "--key-file", tmp / "operator.key"])
            print(f"1. rebuild: {out.stdout.strip()}")

            at = datetime.datetime.fromtimestamp(killed_at, datetime.timezone.utc).isoformat()
            restored = tmp / "restored"
            sh([rewind, "--json", "--data-dir", new, "restore", "--bucket", BUCKET, "--at", at,
                "--to-dir", restored, "--yes"])
            got = {p.relative_to(restored).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                   for p in restored.rglob("*") if p.is_file()}

            cutoff = killed_at - RECOVERY_POINT
            problems, must, young, young_missing = [], 0, 0, 0
            for log in logs:
                for key in sorted({e[0] for e in log}):
                    writes = [e for e in log if e[0] == key]
                    old = [i for i, e in enumerate(writes) if e[3] is not None and e[3] < cutoff]
                    # Acceptable: the newest old write, or any write started after it.
                    allowed = {e[1] for e in writes[old[-1]:]} if old else {e[1] for e in writes}
                    if old:
                        must += 1
                        if key not in got:
                            problems.append(f"{key}: acknowledged {killed_at - writes[old[-1]][3]:.1f} s before the kill, lost")
                    else:
                        young += 1
                        young_missing += key not in got
                    if key in got and got[key] not in allowed:
                        problems.append(f"{key}: restored bytes are no version that may be current")
            unknown = got.keys() - {e[0] for log in logs for e in log}
            problems += [f"{k}: restored but never written" for k in sorted(unknown)]
            acked = sum(1 for log in logs for e in log if e[3] is not None)
            print(f"2. restore --at the kill: {len(got)} keys; all {must} keys written > {RECOVERY_POINT:.0f} s "
                  f"before the kill are there byte-exact ({acked} writes acknowledged in all; "
                  f"{young} keys only written in the last {RECOVERY_POINT:.0f} s, {young_missing} of them missing)")
            assert must > 100, f"too little traffic to mean anything ({must} keys)"
            assert not problems, "\n".join(problems[:20])

            out = sh([rewind, "--json", "--data-dir", new, "verify", "--read-data"])
            report = json.loads(out.stdout)
            print(f"3. verify --read-data on the rebuilt journal: ok ({report['chunks_read']} chunks re-hashed)")
        finally:
            s3_service.stop()
    print("host-loss drill: ok")


if __name__ == "__main__":
    main()

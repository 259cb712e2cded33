#!/usr/bin/env python3
"""Measures how the journal and the vault grow: runs the real gateway (embedded upstream),
writes N small objects (unique contents) and N overwrites of them, deletes them, stops the
gateway cleanly, and prints bytes on disk per mutation. A measurement, not a test.

Usage: python3 tests/ops/capacity.py [--gateway PATH] [--objects N] [--size BYTES]
"""

import argparse
import concurrent.futures
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3
from botocore.config import Config

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from harness import free_port  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]




def du(path):
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def main():
    parser = argparse.ArgumentParser()
    target = os.environ.get("CARGO_TARGET_DIR", str(ROOT / "target"))
    parser.add_argument("--gateway", default=str(Path(target) / "debug" / "rewind-gateway"))
    parser.add_argument("--objects", type=int, default=5000)
    parser.add_argument("--size", type=int, default=4096)
    args = parser.parse_args()
    key_id, secret = "RWND" + secrets.token_hex(8).upper(), secrets.token_urlsafe(30)
    port, admin = free_port(), free_port()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        env = {**os.environ, "REWIND_ACCESS_KEY_ID": key_id, "REWIND_SECRET_ACCESS_KEY": secret, "REWIND_LOG": "warn"}
        gw = subprocess.Popen([args.gateway, "--data-dir", str(data), "--listen", f"127.0.0.1:{port}",
                               "--admin-listen", f"127.0.0.1:{admin}"], env=env, stdout=subprocess.DEVNULL)
        try:
            for _ in range(200):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.1)
            s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", aws_access_key_id=key_id,
                              aws_secret_access_key=secret, region_name="us-east-1",
                              config=Config(s3={"addressing_style": "path"}, max_pool_connections=16))
            s3.create_bucket(Bucket="capacity")
            start = time.monotonic()

            def put(i):
                s3.put_object(Bucket="capacity", Key=f"dir/object-{i:08d}", Body=os.urandom(args.size),
                              ContentType="application/octet-stream", Metadata={"source": "capacity"})
            with concurrent.futures.ThreadPoolExecutor(16) as pool:
                list(pool.map(put, range(args.objects)))
                list(pool.map(put, range(args.objects)))
                keys = [f"dir/object-{i:08d}" for i in range(args.objects)]
                batches = [keys[i:i + 1000] for i in range(0, len(keys), 1000)]
                list(pool.map(lambda b: s3.delete_objects(
                    Bucket="capacity", Delete={"Objects": [{"Key": k} for k in b], "Quiet": True}), batches))
            seconds = time.monotonic() - start
        finally:
            gw.terminate()
            gw.wait(timeout=60)
        mutations = 3 * args.objects
        journal, vault = du(data / "journal"), du(data / "vault")
        print(f"{mutations} mutations ({args.objects} puts, {args.objects} overwrites, {args.objects} deletes; "
              f"{args.size}-byte objects) in {seconds:.1f}s")
        print(f"journal: {journal / 1e6:.1f} MB = {journal / mutations:.0f} bytes per mutation "
              f"= {journal / mutations:.0f} MB per million mutations (before RocksDB compaction settles)")
        print(f"vault:   {vault / 1e6:.1f} MB for {2 * args.objects * args.size / 1e6:.1f} MB of object data "
              f"({vault / (2 * args.objects * args.size):.3f}x)")


if __name__ == "__main__":
    main()

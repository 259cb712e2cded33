#!/usr/bin/env python3
"""Baseline import (reconcile) of a bucket that existed before Rewind, against `restic
backup` of the same files from local disk, in one run. Prints throughput and stored size
for both; asserts nothing about time.

The dataset is deterministic: mixed file sizes (many small, some medium, a few large) and
contents (incompressible random, compressible text-like, and duplicated files). It is
uploaded through the gateway with protection off (pass-through), then the gateway is
restarted with protection on and `rewind reconcile` imports the bucket into the vault.

Usage: tests/bench/import_vs_restic.py [--bin-dir target/release] [--gib 1] [--parallel 4]
Needs: release binaries (cargo build --release --bins), restic (apt install restic), boto3.
"""

import argparse
import concurrent.futures
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3
from botocore.config import Config

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from harness import MIB, Gateway  # noqa: E402


def content(i, size):
    """Kind by index: 60% random, 30% text-like (compressible), 10% copies of an earlier file."""
    kind = i % 10
    if kind == 9 and i >= 10:
        return content(i - 9, size)
    seed = hashlib.sha256(str(i).encode()).digest()
    if kind < 6:
        return hashlib.shake_256(seed).digest(size)
    words = [b"rewind", b"journal", b"vault", b"bucket", b"object", b"restore", b"chunk", b"segment", b"\n"]
    out = bytearray()
    j = 0
    while len(out) < size:
        out += words[(seed[j % 32] + j) % len(words)] + b" "
        j += 1
    return bytes(out[:size])


def size_of(i):
    if i % 200 == 0:
        return 24 * MIB + i * 37
    if i % 20 == 0:
        return 2 * MIB + i * 101
    return 4096 + (i * 7919) % (256 * 1024)


def generate(root, total):
    files, written, i = [], 0, 0
    while written < total:
        size = min(size_of(i), total - written)
        path = root / f"set{i % 7}" / f"file-{i:06d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content(i, size))
        files.append(path)
        written += size
        i += 1
    return files, written


def du(path):
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin-dir", type=Path, default=Path("target/release"))
    parser.add_argument("--gib", type=float, default=1.0)
    parser.add_argument("--parallel", type=int, default=4, help="objects the import captures at once")
    args = parser.parse_args()
    shm = Path("/dev/shm") if Path("/dev/shm").is_dir() else None
    with tempfile.TemporaryDirectory(dir=shm) as tmp:
        tmp = Path(tmp)
        src = tmp / "src"
        files, total = generate(src, int(args.gib * 1024 * MIB))
        print(f"dataset: {len(files)} files, {total / MIB:.0f} MiB (60% random, 30% text-like, 10% duplicates)")

        # Upload through the gateway with protection off: a bucket as it was before Rewind.
        config = tmp / "unprotected.toml"
        config.write_text('[protection]\nbuckets = ["nothing-here"]\nreconcile_interval = "0s"\n')
        data = tmp / "data"
        gw = Gateway(args.bin_dir / "rewind-gateway", data, tmp / "gw1.log", {"REWIND_CONFIG": str(config)})
        s3 = boto3.client("s3", endpoint_url=gw.endpoint, aws_access_key_id=gw.key_id,
                          aws_secret_access_key=gw.secret, region_name="us-east-1",
                          config=Config(s3={"addressing_style": "path"}, max_pool_connections=8))
        s3.create_bucket(Bucket="legacy")
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda p: s3.upload_file(str(p), "legacy", str(p.relative_to(src))), files))
        gw.stop()
        assert du(data / "vault" / "packs") == 0 if (data / "vault" / "packs").exists() else True

        # Import with protection on.
        config.write_text('[protection]\nreconcile_interval = "0s"\nreconcile_parallel = 4\n')
        gw = Gateway(args.bin_dir / "rewind-gateway", data, tmp / "gw2.log", {"REWIND_CONFIG": str(config)})
        start = time.monotonic()
        out = subprocess.run([str(args.bin_dir / "rewind"), "--json", "reconcile", "--bucket", "legacy",
                              "--parallel", str(args.parallel)],
                             env=gw.rewind_env(), capture_output=True, text=True, check=True)
        rewind_seconds = time.monotonic() - start
        gw.stop()
        print(f"rewind reconcile: {json.dumps(json.loads(out.stdout))}")
        vault = du(data / "vault")

        restic_repo = tmp / "restic"
        env = {**os.environ, "RESTIC_PASSWORD": "bench-only-password", "RESTIC_REPOSITORY": str(restic_repo)}
        subprocess.run(["restic", "init", "--quiet"], env=env, check=True, capture_output=True)
        start = time.monotonic()
        subprocess.run(["restic", "backup", "--quiet", "--no-cache", str(src)], env=env, check=True,
                       capture_output=True)
        restic_seconds = time.monotonic() - start
        restic = du(restic_repo)

        mb = total / 1e6
        print(f"rewind import (upstream -> vault, through S3): {mb / rewind_seconds:7.1f} MB/s ({rewind_seconds:.1f} s), "
              f"vault {vault / MIB:.0f} MiB ({vault / total:.3f}x)")
        print(f"restic backup (local disk -> repository):     {mb / restic_seconds:7.1f} MB/s ({restic_seconds:.1f} s), "
              f"repository {restic / MIB:.0f} MiB ({restic / total:.3f}x)")
        print(f"import / restic throughput: {restic_seconds / rewind_seconds * 100:.0f}% (target >= 100%); "
              f"vault / restic size: {vault:,} / {restic:,} bytes = {vault / restic * 100:.3f}% (target <= 100%)")
        shutil.rmtree(src)


if __name__ == "__main__":
    main()

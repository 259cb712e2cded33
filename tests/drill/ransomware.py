#!/usr/bin/env python3
"""Ransomware drill: real binaries, real aws cli.

A bucket of 500 objects of mixed sizes is uploaded through rewind-gateway. An "attacker"
holding valid client keys overwrites half of them with random bytes and deletes the rest
(aws s3 rm --recursive). Then:
  1. `rewind restore --at <before> --mode rewind --yes` brings the bucket back byte-exact;
  2. a second restore finds nothing to do;
  3. restoring to just before the restore undoes it (the attacked state is back);
  4. a restore killed halfway (SIGKILL) is resumed by re-running it, and finishes;
  5. `rewind verify` passes, online and offline with --read-data.

With --gateways N (N > 1) the same runs on N gateways that share a PostgreSQL journal and
one vault, in front of moto: each step (upload, attack, restores, checks) goes through
another gateway.

Usage: tests/drill/ransomware.py [--bin-dir DIR] [--objects N] [--gateways N]
       (binaries from DIR, default $CARGO_TARGET_DIR/debug or ./target/debug)
"""

import argparse
import datetime
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from harness import MIB, Gateway, Moto, Postgres, random_key_pair, same_tree, sh, wait_until, write_random  # noqa: E402,E501

BUCKET = "victim"
PREFIXES = ["docs", "img", "logs", "data"]


def size_of(i):
    """Mostly small objects, some medium, a few large (multipart uploads, and one restored
    through multipart because it exceeds the gateway's single-PUT size), and empty files,
    which aws cli uploads with `Expect: 100-continue` and no body."""
    if i % 50 in (7, 8):
        return 0
    if i % 100 == 0:
        return 20 * MIB if i == 0 else 9 * MIB + i * 1000
    if i % 10 == 0:
        return 200_000 + i * 3000
    return 1000 + (i * 7919) % 64_000


def name_of(i):
    return f"{PREFIXES[i % 4]}/{i:04d}.bin"


def main():
    parser = argparse.ArgumentParser()
    default_bins = Path(os.environ.get("CARGO_TARGET_DIR", "target")) / "debug"
    parser.add_argument("--bin-dir", type=Path, default=default_bins)
    parser.add_argument("--objects", type=int, default=500)
    parser.add_argument("--gateways", type=int, default=1)
    args = parser.parse_args()
    rewind = str(args.bin_dir / "rewind")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        pg = moto = None
        shared = {}
        if args.gateways > 1:
            pg, moto = Postgres(), Moto(work / "moto.log")
            client = random_key_pair("RW")
            shared = {"REWIND_JOURNAL_URL": pg.url, "REWIND_VAULT": str(work / "vault"),
                      "REWIND_KEY_FILE": str(work / "vault.key"), **moto.gateway_env(),
                      "REWIND_ACCESS_KEY_ID": client[0], "REWIND_SECRET_ACCESS_KEY": client[1]}
        gateways = []
        try:
            # The first creates the vault and its key; the others open them.
            for i in range(args.gateways):
                gateways.append(Gateway(args.bin_dir / "rewind-gateway", work / f"data{i}", work / f"gateway{i}.log",
                                        shared))
            drill(gateways, rewind, work, args.objects)
        except BaseException:
            for i in range(args.gateways):
                log = work / f"gateway{i}.log"
                if log.exists():
                    print(f"--- gateway {i} log:\n" + log.read_text()[-5000:], file=sys.stderr)
            raise
        finally:
            for gw in gateways:
                if gw.proc.poll() is None:
                    gw.stop()
            if moto:
                moto.stop()
            if pg and sys.exc_info()[0]:
                pg.stop()  # the drill failed: nothing reads the database after this
        # Offline, on the stopped gateways' data: every chunk read back and re-hashed.
        try:
            out = sh([rewind, "--json", "--data-dir", str(work / "data0"), "verify", "--read-data"],
                     {**os.environ, **shared})
            report = json.loads(out.stdout)
            assert not report["journal_problems"] and not report["damaged"], report
            print(f"ok: offline verify --read-data: {report['records']} records, {report['chunks_read']} chunks "
                  "re-hashed")
        finally:
            if pg:
                pg.stop()


def restore(rewind, env, at, *extra):
    out = sh([rewind, "--json", "restore", "--bucket", BUCKET, "--at", at, "--mode", "rewind", "--yes", *extra], env)
    lines = [l for l in out.stdout.splitlines() if l.strip()]
    return json.loads("\n".join(lines)) if lines else {}


def drill(gateways, rewind, work, count):
    # Step k goes through gateway k (of however many there are); all share client keys.
    gw = lambda k: gateways[k % len(gateways)]
    aws = gw(0).aws_env()
    s3 = lambda k: ["aws", "--endpoint-url", gw(k).endpoint, "s3"]
    rw = lambda k: gw(k).rewind_env()
    src, attack = work / "src", work / "attack"
    for i in range(count):
        write_random(src / name_of(i), size_of(i), f"orig{i}")
    total = sum(size_of(i) for i in range(count))
    sh([*s3(0), "mb", f"s3://{BUCKET}"], aws)
    start = time.monotonic()
    sh([*s3(0), "sync", "--quiet", str(src), f"s3://{BUCKET}/"], aws)
    print(f"ok: uploaded {count} objects ({total / MIB:.0f} MiB) in {time.monotonic() - start:.1f}s")
    time.sleep(1.1)
    before = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")
    time.sleep(1.1)

    # The attack: odd keys overwritten with random bytes, even keys deleted.
    for i in range(1, count, 2):
        write_random(attack / name_of(i), 500 + i * 13, f"ransom{i}")
    sh([*s3(1), "sync", "--quiet", str(attack), f"s3://{BUCKET}/"], aws)
    sh([*s3(2), "rm", "--quiet", f"s3://{BUCKET}/", "--recursive", "--exclude", "*", "--include", "*[02468].bin"], aws)
    check_bucket(s3(0), aws, work / "seen-attacked", attack, "after the attack")
    print(f"ok: attack done: {count // 2} overwritten, {count - count // 2} deleted")

    # 1. Rewind.
    plan = json.loads(sh([rewind, "--json", "restore", "--bucket", BUCKET, "--at", before, "--mode", "rewind",
                          "--dry-run"], rw(1)).stdout)
    assert (plan["writes"], plan["deletes"]) == (count, 0), plan
    start = time.monotonic()
    done = restore(rewind, rw(2), before)
    seconds = time.monotonic() - start
    assert (done["event"], done["written"], done["failed"]) == ("done", count, 0), done
    check_bucket(s3(1), aws, work / "seen-restored", src, "after the restore")
    print(f"ok: restore --at {before} brought back {count} objects byte-exact in {seconds:.1f}s")

    # 2. Nothing left to do.
    plan = json.loads(sh([rewind, "--json", "restore", "--bucket", BUCKET, "--at", before, "--mode", "rewind",
                          "--dry-run"], rw(0)).stdout)
    assert (plan["writes"], plan["deletes"], plan["unchanged"]) == (0, 0, count), plan
    again = sh([rewind, "restore", "--bucket", BUCKET, "--at", before, "--mode", "rewind", "--yes"], rw(1))
    assert "Nothing to restore" in again.stdout, again.stdout
    print("ok: a second restore is a no-op")

    # 3. Undo the restore.
    undo = restore(rewind, rw(2), f"seq:{done['before_seq']}")
    assert undo["failed"] == 0, undo
    check_bucket(s3(0), aws, work / "seen-undone", attack, "after undoing the restore")
    print(f"ok: restore --at seq:{done['before_seq']} undid the restore ({undo['written']} written, "
          f"{undo['deleted']} deleted)")

    # 4. Kill a restore halfway, then re-run it.
    head = lambda: json.loads(sh([rewind, "--json", "status"], rw(1)).stdout)["head_seq"]
    start_head = head()
    proc = subprocess.Popen([rewind, "restore", "--bucket", BUCKET, "--at", before, "--mode", "rewind", "--yes",
                             "--parallel", "2"], env=rw(0), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until("the restore to make progress", lambda: head() > start_head + 60, timeout=120)
    assert proc.poll() is None, "the restore finished before it could be interrupted"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # The gateway finishes the objects in flight and starts no new one once a write to the
    # caller fails (progress goes out every 250 ms), so a few objects may still be restored
    # after the kill: settled means no open intents and a head that stayed put for a second.
    def settled():
        before = json.loads(sh([rewind, "--json", "status"], rw(2)).stdout)
        time.sleep(1)
        after = json.loads(sh([rewind, "--json", "status"], rw(2)).stdout)
        return after["unresolved_intents"] == 0 and after["head_seq"] == before["head_seq"]
    wait_until("the gateway to settle the interrupted restore", settled)
    plan = json.loads(sh([rewind, "--json", "restore", "--bucket", BUCKET, "--at", before, "--mode", "rewind",
                          "--dry-run"], rw(1)).stdout)
    assert 0 < plan["writes"] < count, f"expected a partly done restore, plan: {plan}"
    resumed = restore(rewind, rw(2), before)
    assert resumed["failed"] == 0 and resumed["written"] == plan["writes"], (plan, resumed)
    check_bucket(s3(0), aws, work / "seen-resumed", src, "after resuming the killed restore")
    print(f"ok: a restore killed after {count - plan['writes']} objects resumed with the {plan['writes']} left")

    # 5. The history is intact.
    report = json.loads(sh([rewind, "--json", "verify"], rw(1)).stdout)
    assert not report["journal_problems"] and not report["damaged"], report
    log = json.loads(sh([rewind, "--json", "log", "--bucket", BUCKET, "--key", name_of(1)], rw(2)).stdout)
    ops = [line["op"] for line in log]
    assert ops[0] == "put" and "restore" in ops, ops
    print(f"ok: verify passed; log of {name_of(1)}: {' '.join(ops)}")


def check_bucket(s3, env, into, want, when):
    sh([*s3, "sync", "--quiet", f"s3://{BUCKET}/", str(into)], env)
    problems = same_tree(want, into)
    assert not problems, f"{when}: {len(problems)} differences, first: {problems[:5]}"


if __name__ == "__main__":
    main()

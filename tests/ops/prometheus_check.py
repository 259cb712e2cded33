#!/usr/bin/env python3
"""Operations checks with the real tools:

1. `promtool check rules` / `check config` on the shipped Prometheus files, and every YAML
   and JSON file under deploy/ parses;
2. every rewind_* metric the alert rules use is one the gateway defines (gateway/src/metrics.rs, capture/src/metrics.rs);
3. a real Prometheus server on 127.0.0.1 scrapes a running rewind-gateway (embedded
   upstream) while boto3 writes through it, and its query API shows the key series with
   plausible values (requests counted, bytes received, journal commits, vault chunks).

Usage: python3 tests/ops/prometheus_check.py [--gateway PATH]
"""

import argparse
import json
import os
import re
import secrets
import socket
import string
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import boto3
import yaml
from botocore.config import Config

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from harness import free_port, wait_until  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]






def check_shipped_files():
    for args in (["check", "rules", "deploy/prometheus/alerts.yml"],
                 ["check", "config", "deploy/prometheus/prometheus.yml"]):
        subprocess.run(["promtool", *args], cwd=ROOT, check=True, capture_output=True)
    # The compose setup mounts alerts.yml next to its prometheus.yml: check them that way.
    with tempfile.TemporaryDirectory() as tmp:
        for src in ("deploy/compose/prometheus.yml", "deploy/prometheus/alerts.yml"):
            (Path(tmp) / Path(src).name).write_text((ROOT / src).read_text())
        subprocess.run(["promtool", "check", "config", str(Path(tmp) / "prometheus.yml")], check=True,
                       capture_output=True)
    for path in sorted((ROOT / "deploy").rglob("*")):
        if path.suffix in (".yml", ".yaml"):
            list(yaml.safe_load_all(path.read_text()))
        elif path.suffix == ".json":
            json.loads(path.read_text())
    # Kubernetes manifests against the API schemas (bundled with kubernetes-validate).
    for manifest in sorted((ROOT / "deploy/kubernetes").glob("*.yaml")):
        subprocess.run([sys.executable, "-m", "kubernetes_validate", "--strict", "--kubernetes-version", "1.31",
                        str(manifest)], check=True, capture_output=True)
    for path in sorted((ROOT / "deploy/compose").glob("*.yml")):
        compose = yaml.safe_load(path.read_text())
        if "services" not in compose:
            continue  # prometheus.yml
        for name, service in compose["services"].items():
            assert "image" in service or "build" in service, f"{path.name}: {name} has neither image nor build"
            for dep in service.get("depends_on", []):
                assert dep in compose["services"], f"{path.name}: {name} depends on unknown {dep}"
            for mount in service.get("volumes", []):
                source = mount.split(":")[0]
                if source.startswith("./"):
                    assert (path.parent / source).exists(), f"{path.name}: {name} mounts missing {source}"


DASHBOARD = ROOT / "deploy/grafana/rewind-dashboard.json"
# Panels that stay empty on a healthy gateway (they chart failures).
# Charts of events a healthy gateway under this test's traffic does not have.
EMPTY_WHEN_HEALTHY = {"Errors by status", "Writes refused to protect history", "Objects restored"}


def dashboard_queries():
    """(panel title, PromQL) for every dashboard target, with Grafana's variables filled in."""
    dashboard = json.loads(DASHBOARD.read_text())
    return [(p["title"], t["expr"].replace("$__rate_interval", "1m"))
            for p in dashboard["panels"] for t in p["targets"]]


def check_alert_and_dashboard_metrics_exist():
    # Every crate's metrics, registered in the gateway's one registry (the mirrors' are
    # defined beside their copying).
    sources = sorted(ROOT.glob("*/src/**/metrics.rs")) + [ROOT / "capture/src/mirror.rs"]
    defined = set(re.findall(r'"(rewind_[a-z0-9_]+)"', "".join(p.read_text() for p in sources)))
    rules = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yml").read_text())
    exprs = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    exprs += [expr for _, expr in dashboard_queries()]
    used = set()
    for expr in exprs:
        used |= set(re.findall(r"rewind_[a-z0-9_]+", expr))
    # Histograms are used through their _bucket/_sum/_count series.
    used = {re.sub(r"_(bucket|sum|count)$", "", m) for m in used}
    missing = used - defined
    assert not missing, f"alerts or dashboard use metrics the gateway does not export: {sorted(missing)}"


def query(prom, expr):
    url = f"http://127.0.0.1:{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    answer = json.load(urllib.request.urlopen(url, timeout=5))
    assert answer["status"] == "success", answer
    return [float(r["value"][1]) for r in answer["data"]["result"]]


def check_prometheus_scrapes_a_gateway(gateway_bin):
    alphabet = string.ascii_uppercase + string.digits
    key_id = "RWND" + "".join(secrets.choice(alphabet) for _ in range(16))
    secret = secrets.token_urlsafe(30)
    s3_port, admin_port, prom_port = free_port(), free_port(), free_port()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        token = secrets.token_urlsafe(24)
        # The retention plan every 2 s, so that its vault-bytes panel has data in time.
        env = {**os.environ, "REWIND_ACCESS_KEY_ID": key_id, "REWIND_SECRET_ACCESS_KEY": secret, "REWIND_LOG": "warn",
               "REWIND_ADMIN_TOKEN": token, "REWIND_RETENTION_SCHEDULE": "2s"}
        gateway = subprocess.Popen(
            [gateway_bin, "--data-dir", str(tmp / "data"), "--listen", f"127.0.0.1:{s3_port}",
             "--admin-listen", f"127.0.0.1:{admin_port}"],
            env=env, stdout=subprocess.DEVNULL, stderr=open(tmp / "gateway.log", "w"))
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(ROOT / "deploy/prometheus/alerts.yml")],
            "scrape_configs": [{"job_name": "rewind", "static_configs": [{"targets": [f"127.0.0.1:{admin_port}"]}]}],
        }
        (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
        prometheus = subprocess.Popen(
            ["prometheus", f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{prom_port}"],
            stdout=subprocess.DEVNULL, stderr=open(tmp / "prometheus.log", "w"))
        try:
            wait_until("the gateway", lambda: socket.create_connection(("127.0.0.1", s3_port), timeout=1))
            s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{s3_port}", aws_access_key_id=key_id,
                              aws_secret_access_key=secret, region_name="us-east-1",
                              config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
            s3.create_bucket(Bucket="metrics")
            body = os.urandom(300_000)
            for i in range(10):
                s3.put_object(Bucket="metrics", Key=f"k{i}", Body=body + bytes([i]))
            s3.get_object(Bucket="metrics", Key="k0")["Body"].read()
            s3.delete_object(Bucket="metrics", Key="k1")
            # A verify through the admin API, as `rewind verify` runs it (the scheduled one
            # starts a minute after start-up).
            verify = urllib.request.Request(f"http://127.0.0.1:{admin_port}/admin/v1/verify", method="POST",
                                            headers={"Authorization": f"Bearer {token}"})
            report = json.load(urllib.request.urlopen(verify, timeout=30))
            assert not report["damaged"] and not report["journal_problems"], report
            # And a reconcile, as `rewind reconcile` runs it: every object is already held.
            reconcile = urllib.request.Request(f"http://127.0.0.1:{admin_port}/admin/v1/reconcile?bucket=metrics",
                                               method="POST", headers={"Authorization": f"Bearer {token}"})
            events = [json.loads(line) for line in urllib.request.urlopen(reconcile, timeout=30).read().splitlines()]
            assert events[-1]["event"] == "done" and events[-1]["unchanged"] == 9, events

            def series_ready():
                commits = query(prom_port, 'sum(rewind_journal_records_total{record="commit",result="ok"})')
                return commits and commits[0] >= 12  # bucket + 10 puts + delete
            wait_until("Prometheus to scrape the journal commits", series_ready, timeout=60)
            puts = query(prom_port, 'sum(rewind_requests_total{operation="PutObject",status_code="200"})')
            assert puts == [10.0], puts
            received = query(prom_port, 'sum(rewind_client_received_bytes_total{operation="PutObject"})')
            assert received and received[0] >= 10 * 300_000, received
            verified = wait_until("the verify to be scraped",
                                  lambda: query(prom_port, "rewind_verify_last_success_timestamp_seconds"))
            assert abs(verified[0] - time.time()) < 120, verified
            chunks = query(prom_port, 'sum(rewind_vault_chunks_total{result="new"})')
            assert chunks and chunks[0] >= 10, chunks
            assert query(prom_port, 'up{job="rewind"}') == [1.0]
            assert query(prom_port, "rewind_build_info") == [1.0]
            rules = json.load(urllib.request.urlopen(f"http://127.0.0.1:{prom_port}/api/v1/rules", timeout=5))
            loaded = [r["name"] for g in rules["data"]["groups"] for r in g["rules"]]
            assert "RewindCaptureRefusals" in loaded, loaded
            firing = query(prom_port, 'ALERTS{alertstate="firing"}')
            assert not firing, f"alerts fire on a healthy gateway: {firing}"
            # Every dashboard query is valid PromQL, and every panel but the failure
            # charts has data after this traffic.
            def empty_panels():
                return [title for title, expr in dashboard_queries()
                        if not query(prom_port, expr) and title not in EMPTY_WHEN_HEALTHY]
            # rate() needs two scrapes after the traffic: poll rather than guess a delay.
            try:
                wait_until("every dashboard panel to have data", lambda: not empty_panels(), timeout=30)
            except AssertionError:
                raise AssertionError(f"dashboard panels without data: {empty_panels()}") from None
        finally:
            for p in (prometheus, gateway):
                p.terminate()
                p.wait(timeout=30)


def main():
    parser = argparse.ArgumentParser()
    target = os.environ.get("CARGO_TARGET_DIR", str(ROOT / "target"))
    parser.add_argument("--gateway", default=str(Path(target) / "debug" / "rewind-gateway"))
    args = parser.parse_args()
    checks = [
        ("check_shipped_files", check_shipped_files),
        ("check_alert_and_dashboard_metrics_exist", check_alert_and_dashboard_metrics_exist),
        ("check_prometheus_scrapes_a_gateway", lambda: check_prometheus_scrapes_a_gateway(args.gateway)),
    ]
    failed = 0
    for name, check in checks:
        start = time.monotonic()
        try:
            check()
            print(f"PASS {name} ({time.monotonic() - start:.1f}s)")
        except Exception as e:  # noqa: BLE001 - every failure is reported
            failed += 1
            print(f"FAIL {name}: {e!r}")
    print(f"ops: {len(checks) - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

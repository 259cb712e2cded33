#!/usr/bin/env python3
"""The ceph s3-tests suite run direct against an upstream, then through rewind-gateway in
front of a fresh upstream of the same kind; prints the tests that pass direct and fail
through the gateway (regressions). Exits 1 if there is any.

It fetches nothing. Give it an s3-tests checkout whose requirements are installed:

    git clone https://github.com/ceph/s3-tests ~/s3-tests
    python3 -m pip install -r ~/s3-tests/requirements.txt
    cargo build --workspace --bins
    python3 tests/conformance/run.py --s3-tests ~/s3-tests

Upstreams: `fs` is the embedded upstream (s3s-fs, as rewind-gateway runs it by default,
served alone by rewind-test-upstream), `moto` is moto_server. The selection and what
each upstream is known to fail are in tests/conformance/README.md.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from harness import Gateway, Moto  # noqa: E402

SUITES = ["s3tests/functional/test_s3.py", "s3tests/functional/test_headers.py"]

# Features neither upstream here has, or that need several real users or a cluster: their
# tests fail direct, so they say nothing about the gateway. What is left is the "core".
EXCLUDED_MARKERS = [
    "appendobject", "bucket_policy", "bucket_encryption", "bucket_logging", "bucket_logging_cleanup",
    "fails_without_logging_rollover", "target_by_bucket", "cloud_transition", "cloud_restore", "encryption",
    "sse_s3", "fails_on_aws", "fails_on_rgw", "fails_with_subdomain", "iam_account",
    "iam_cross_account", "iam_role", "iam_tenant", "iam_user", "group", "group_policy", "role_policy",
    "session_policy", "user_policy", "lifecycle", "lifecycle_expiration", "lifecycle_transition",
    "object_lock", "object_ownership", "s3select", "s3website", "s3website_routing_rules",
    "s3website_redirect_location", "sns", "storage_class", "test_of_sts", "webidentity_test", "abac_test",
    "token_claims_trust_policy_test", "token_principal_tag_role_policy_test",
    "token_request_tag_trust_policy_test", "token_resource_tags_test", "token_role_tags_test",
    "token_tag_keys_test",
]
SELECTION = "not (" + " or ".join(EXCLUDED_MARKERS) + ")"
# Browser-form POST uploads, which Rewind refuses by design (README: s3s would buffer the
# file before authentication decides anything); no marker names them.
EXCLUDED_NAMES = "not post_object"


def conf(path, endpoint, key_id, secret):
    """An s3tests.conf where every user is the one key (the gateway has one client key)."""
    host, port = endpoint.removeprefix("http://").split(":")
    user = (f"access_key = {key_id}\nsecret_key = {secret}\ndisplay_name = tester\n"
            "user_id = tester\nemail = tester@example.com\n")
    path.write_text(
        f"[DEFAULT]\nhost = {host}\nport = {port}\nis_secure = False\nssl_verify = False\n"
        "[fixtures]\nbucket prefix = s3t-{random}-\n"
        f"[s3 main]\n{user}[s3 alt]\n{user}[s3 tenant]\n{user}tenant = tenant\n"
        f"[iam]\n{user}[iam root]\n{user}[iam alt root]\n{user}")


class FsUpstream:
    """The embedded upstream alone (rewind-test-upstream), serving a fresh directory."""

    def __init__(self, bin_dir, root, log):
        self.proc = subprocess.Popen([str(bin_dir / "rewind-test-upstream"), str(root)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=open(log, "wb"), text=True)
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"rewind-test-upstream did not start; see {log}")
        info = json.loads(line)
        self.endpoint, self.key = info["endpoint"], (info["access_key_id"], info["secret_access_key"])

    def gateway_env(self):
        return {"REWIND_UPSTREAM": self.endpoint, "REWIND_UPSTREAM_ACCESS_KEY_ID": self.key[0],
                "REWIND_UPSTREAM_SECRET_ACCESS_KEY": self.key[1]}

    def stop(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def start_upstream(kind, bin_dir, work):
    if kind == "fs":
        return FsUpstream(bin_dir, work / "upstream", work / "upstream.log")
    return Moto(work / "moto.log")


def pytest(s3_tests, conf_path, junit, extra_k, log):
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "s3tests_cleanup",
           "-m", SELECTION, f"--junitxml={junit}", *SUITES]
    cmd += ["-k", f"{EXCLUDED_NAMES} and ({extra_k})" if extra_k else EXCLUDED_NAMES]
    here = str(Path(__file__).resolve().parent)
    env = {**os.environ, "S3TEST_CONF": str(conf_path),
           "PYTHONPATH": os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")]))}
    with open(log, "wb") as out:
        subprocess.run(cmd, cwd=s3_tests, env=env, stdout=out, stderr=subprocess.STDOUT, check=False)
    return outcomes(junit)


def outcomes(junit):
    """test name -> passed | failed | skipped, from pytest's JUnit XML. A test is judged by
    its own steps: the suite's cleanup failing after a passed test does not fail it (see
    s3tests_cleanup.py)."""
    result = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        name = f"{case.get('classname', '').rsplit('.', 1)[-1]}::{case.get('name')}"
        errors = [e for e in case.findall("error") if not e.get("message", "").startswith("failed on teardown")]
        if case.find("failure") is not None or errors:
            result[name] = "failed"
        elif case.find("skipped") is not None:
            result[name] = "skipped"
        else:
            result[name] = "passed"
    return result


def run(kind, through_gateway, args, work):
    work.mkdir()
    upstream = start_upstream(kind, args.bin_dir, work)
    gw = None
    try:
        endpoint, key = upstream.endpoint, upstream.key
        if through_gateway:
            # Anonymous requests go to the upstream unsigned, as they would reach it direct.
            toml = "[server]\nallow_anonymous = true\n"
            if args.uncaptured:
                # No bucket captured: uploads take the lean path (rewind_forward::lean).
                toml += "[protection]\nbuckets = []\n"
            (work / "gateway.toml").write_text(toml)
            gw = Gateway(args.bin_dir / "rewind-gateway", work / "gateway", work / "gateway.log",
                         {**upstream.gateway_env(), "REWIND_CONFIG": str(work / "gateway.toml")})
            endpoint, key = gw.endpoint, (gw.key_id, gw.secret)
        conf(work / "s3tests.conf", endpoint, *key)
        started = time.monotonic()
        result = pytest(args.s3_tests, work / "s3tests.conf", work / "junit.xml", args.k, work / "pytest.log")
        passed = sum(1 for o in result.values() if o == "passed")
        where = "through the gateway" if through_gateway else "direct"
        print(f"  {kind} {where}: {passed} of {len(result)} pass ({time.monotonic() - started:.0f} s; "
              f"log {work / 'pytest.log'})", flush=True)
        return result
    finally:
        if gw is not None:
            gw.stop()
        upstream.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--s3-tests", type=Path, required=True, help="an s3-tests checkout")
    default_bins = Path(os.environ.get("CARGO_TARGET_DIR", "target")) / "debug"
    parser.add_argument("--bin-dir", type=Path, default=default_bins)
    parser.add_argument("--upstream", choices=["fs", "moto", "both"], default="both")
    parser.add_argument("--uncaptured", action="store_true",
                        help="run the gateway capturing no bucket (its pass-through paths)")
    parser.add_argument("-k", help="a further pytest -k filter (e.g. one test while fixing it)")
    parser.add_argument("--keep", type=Path, help="keep logs and JUnit files here (else a temp dir)")
    args = parser.parse_args()
    args.s3_tests = args.s3_tests.resolve()
    if not (args.s3_tests / SUITES[0]).is_file():
        raise SystemExit(f"{args.s3_tests} is not an s3-tests checkout (no {SUITES[0]})")
    out = args.keep or Path(tempfile.mkdtemp(prefix="rewind-s3-tests."))
    out.mkdir(parents=True, exist_ok=True)
    print(f"s3-tests core selection ({len(EXCLUDED_MARKERS)} markers excluded); logs in {out}")
    regressions = {}
    for kind in (["fs", "moto"] if args.upstream == "both" else [args.upstream]):
        direct = run(kind, False, args, out / f"{kind}-direct")
        gateway = run(kind, True, args, out / f"{kind}-gateway")
        lost = sorted(t for t, o in direct.items() if o == "passed" and gateway.get(t) != "passed")
        gained = sorted(t for t, o in gateway.items() if o == "passed" and direct.get(t) != "passed")
        summary = {"direct_passed": sum(o == "passed" for o in direct.values()),
                   "gateway_passed": sum(o == "passed" for o in gateway.values()),
                   "selected": len(direct), "regressions": lost, "only_through_gateway": gained}
        (out / f"{kind}-summary.json").write_text(json.dumps(summary, indent=2))
        print(f"{kind}: {summary['direct_passed']} pass direct, {summary['gateway_passed']} through the gateway, "
              f"of {summary['selected']}; {len(lost)} regressions")
        for t in lost:
            print(f"  REGRESSION {t}")
        for t in gained:
            print(f"  passes only through the gateway: {t}")
        regressions[kind] = lost
    sys.exit(1 if any(regressions.values()) else 0)


if __name__ == "__main__":
    main()

"""What the Python end-to-end checks share: free loopback ports, polling, credentials,
deterministic file contents, and the real rewind-gateway binary as a child process."""

import hashlib
import os
import secrets
import signal
import socket
import string
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

MIB = 1024 * 1024
ROOT = Path(__file__).resolve().parent.parent


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(what, check, timeout=60):
    """Polls `check` until it returns something true, which is returned."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except Exception as e:  # noqa: BLE001 - reported on timeout
            last = e
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what} (last error: {last})")


def random_key_pair(prefix="IT"):
    alphabet = string.ascii_uppercase + string.digits
    key_id = prefix + "".join(secrets.choice(alphabet) for _ in range(20 - len(prefix)))
    return key_id, secrets.token_urlsafe(30)


def write_random(path, size, seed):
    """Deterministic, incompressible content so a failure reproduces."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        counter = 0
        written = 0
        while written < size:
            block = hashlib.sha256(f"{seed}:{counter}".encode()).digest() * 2048
            block = block[: size - written]
            f.write(block)
            written += len(block)
            counter += 1


def sh(cmd, env=None, check=True):
    """Runs a command; with `check`, a non-zero exit fails with its output."""
    out = subprocess.run([str(c) for c in cmd], env=env, capture_output=True, text=True)
    if check and out.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} exited {out.returncode}:\n{out.stdout}\n{out.stderr}")
    return out


class Gateway:
    """rewind-gateway on free loopback ports with an embedded upstream under `data_dir`,
    fresh client keys and admin token; `stop()` sends SIGTERM and checks a clean exit."""

    def __init__(self, binary, data_dir, log, extra_env=None):
        self.port, self.admin_port = free_port(), free_port()
        self.key_id, self.secret = random_key_pair("RW")
        self.token = secrets.token_urlsafe(24)
        env = {**os.environ, "REWIND_ACCESS_KEY_ID": self.key_id, "REWIND_SECRET_ACCESS_KEY": self.secret,
               "REWIND_ADMIN_TOKEN": self.token, "REWIND_LOG": "warn", **(extra_env or {})}
        # Client keys given (several gateways, one set of clients) are the ones clients use.
        self.key_id, self.secret = env["REWIND_ACCESS_KEY_ID"], env["REWIND_SECRET_ACCESS_KEY"]
        self.proc = subprocess.Popen(
            [str(binary), "--data-dir", str(data_dir), "--listen", f"127.0.0.1:{self.port}",
             "--admin-listen", f"127.0.0.1:{self.admin_port}"],
            stdout=open(log, "wb"), stderr=subprocess.STDOUT, env=env)
        # The listeners are bound before the stores are opened (and the vault key file made):
        # an answer from the admin listener says the gateway has started.
        wait_until("the gateway to start", self._answers)

    def _answers(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"the gateway exited with {self.proc.returncode}")
        try:
            urllib.request.urlopen(f"{self.admin_url}/ready", timeout=2).close()
        except urllib.error.HTTPError:
            pass  # an answer all the same (the upstream may not be ready)
        return True

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_url(self):
        return f"http://127.0.0.1:{self.admin_port}"

    def aws_env(self):
        """Environment for the aws cli (and boto3) signing with the gateway's client key."""
        return {**os.environ, "AWS_ACCESS_KEY_ID": self.key_id, "AWS_SECRET_ACCESS_KEY": self.secret,
                "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
                "AWS_MAX_ATTEMPTS": "1"}

    def rewind_env(self):
        """Environment for the rewind CLI to reach this gateway's admin API."""
        return {**os.environ, "REWIND_ADMIN_URL": self.admin_url, "REWIND_ADMIN_TOKEN": self.token}

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=60)
        assert code == 0, f"the gateway exited with {code} on SIGTERM"


class Postgres:
    """A database of its own for this run: on the server in REWIND_TEST_POSTGRES_URL (what
    .ci/run starts), or on one started here by .ci/postgres; `stop()` removes the latter."""

    def __init__(self):
        self.dir = None
        server = os.environ.get("REWIND_TEST_POSTGRES_URL")
        if not server:
            self.dir = Path(tempfile.mkdtemp(prefix="rewind-e2e-pg."))
            server = sh([ROOT / ".ci/postgres", "start", self.dir]).stdout.strip()
        name = "rewind_e2e_" + secrets.token_hex(4)
        sh(["psql", "-q", server, "-c", f"CREATE DATABASE {name}"])
        self.url = server.rsplit("/", 1)[0] + "/" + name

    def stop(self):
        if self.dir:
            sh([ROOT / ".ci/postgres", "stop", self.dir], check=False)


class Moto:
    """moto_server on a free loopback port, with a fresh key pair; `stop()` ends it."""

    def __init__(self, log):
        self.port = free_port()
        self.key = random_key_pair("MT")
        self.proc = subprocess.Popen(["moto_server", "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=open(log, "wb"), stderr=subprocess.STDOUT)
        wait_until("moto", lambda: socket.create_connection(("127.0.0.1", self.port), 1).close() is None)

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.port}"

    def gateway_env(self):
        """What a gateway needs to forward to it."""
        return {"REWIND_UPSTREAM": self.endpoint, "REWIND_UPSTREAM_ACCESS_KEY_ID": self.key[0],
                "REWIND_UPSTREAM_SECRET_ACCESS_KEY": self.key[1]}

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def same_tree(a, b):
    """Differences between two directory trees (relative paths), byte for byte."""
    files = lambda root: {p.relative_to(root).as_posix(): p for p in Path(root).rglob("*") if p.is_file()}
    fa, fb = files(a), files(b)
    problems = [f"only in {a}: {k}" for k in sorted(fa.keys() - fb.keys())]
    problems += [f"only in {b}: {k}" for k in sorted(fb.keys() - fa.keys())]
    problems += [f"differs: {k}" for k in sorted(fa.keys() & fb.keys()) if fa[k].read_bytes() != fb[k].read_bytes()]
    return problems

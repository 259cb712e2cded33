#!/usr/bin/env python3
"""README walk-through: every ```sh block of README.md, in order, run as a newcomer pastes it.

Each command runs in a pseudo-terminal, as in a terminal window, in a scratch directory
that holds what a fresh clone has there (README.md, docs/, .ci/). A command that asks
"[y/N]" is answered y. What a test must change, and nothing else, is substituted:

- the fixed ports (9000, 9001) become free loopback ports; a gateway started without
  `--admin-listen` gets one, and the CLI's default admin URL follows it;
- `cargo run [-q] --release --bin X [--]` becomes the built binary X (the build under
  test, from --bin-dir), so the suite does not build everything twice;
- the AWS endpoint becomes a moto server on loopback, `0.0.0.0` becomes 127.0.0.1,
  `/var/lib/rewind` a scratch directory, and `...` placeholders the values the gateway
  printed (client keys) or that the test generated (the upstream's keys);
- `.ci/run` is not run: it is what runs this.

After each command, and after each block, the walk-through checks what README says it
prints or does. A block or command it has no check for fails the run, so README and this
script change together.

Usage: tests/readme/run.py [--bin-dir DIR]   (default: $CARGO_TARGET_DIR/debug or ./target/debug)
"""

import argparse
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import traceback
from pathlib import Path

import boto3
from botocore.config import Config

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
from harness import free_port, random_key_pair, wait_until  # noqa: E402

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def sh_blocks(readme):
    """The ```sh blocks of README, each a list of command lines (continuations joined)."""
    blocks, current = [], None
    for line in readme.splitlines():
        if current is None:
            if line.strip() == "```sh":
                current = []
        elif line.strip() == "```":
            blocks.append(current)
            current = None
        elif current and current[-1].endswith("\\"):
            current[-1] = current[-1][:-1].rstrip() + " " + line.strip()
        elif line.strip():
            current.append(line.strip())
    return blocks


def without_comment(line):
    """The command part of a line (a trailing `# ...` outside quotes removed)."""
    quote = None
    for i, c in enumerate(line):
        if quote:
            quote = None if c == quote else quote
        elif c in "'\"":
            quote = c
        elif c == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line


class Terminal:
    """A process on a pseudo-terminal whose output is collected as it comes."""

    def __init__(self, cmd, env, cwd, answer=None):
        master, slave = pty.openpty()
        self.proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=cwd,
                                     start_new_session=True)
        os.close(slave)
        self.master = master
        self.answer = answer
        self.output = ""
        self.lock = threading.Lock()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        answered = False
        while True:
            ready, _, _ = select.select([self.master], [], [], 0.2)
            if not ready:
                if self.proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(self.master, 65536)
            except OSError:  # the other side closed: the process ended
                break
            if not data:
                break
            with self.lock:
                self.output += data.decode(errors="replace").replace("\r\n", "\n")
                if self.answer and not answered and "[y/N]" in self.output:
                    os.write(self.master, (self.answer + "\n").encode())
                    answered = True

    def text(self):
        with self.lock:
            return ANSI.sub("", self.output)

    def wait(self, timeout):
        code = self.proc.wait(timeout=timeout)
        self.reader.join(timeout=10)
        os.close(self.master)
        return code

    def interrupt(self):
        """Ctrl-C in its terminal."""
        os.killpg(self.proc.pid, signal.SIGINT)


class Walk:
    """The newcomer's session: environment, scratch directory, background gateways."""

    def __init__(self, bin_dir, scratch):
        self.bin_dir = Path(bin_dir).resolve()
        self.cwd = scratch / "clone"
        self.cwd.mkdir()
        shutil.copy(ROOT / "README.md", self.cwd / "README.md")
        shutil.copytree(ROOT / "docs", self.cwd / "docs")
        (self.cwd / ".ci").symlink_to(ROOT / ".ci")
        self.scratch = scratch
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "REWIND_"))}
        self.env.update(
            PATH=f"{self.bin_dir}:{os.environ['PATH']}",
            HOME=str(scratch),
            AWS_CONFIG_FILE=os.devnull,
            AWS_SHARED_CREDENTIALS_FILE=os.devnull,
            AWS_EC2_METADATA_DISABLED="true",
            REWIND_LOG="info",
            TERM="xterm",
        )
        self.ports = {"9000": str(free_port()), "9001": str(free_port())}
        self.env["REWIND_ADMIN_URL"] = f"http://127.0.0.1:{self.ports['9001']}"  # the CLI's default, moved
        self.gateways = []
        self.moto = None
        self.moto_key = random_key_pair("UP")
        self.client_export = None  # the export line the first gateway printed
        self.view_key = None  # the key pair `rewind view create` printed
        self.transcript = []

    # -- substitutions -----------------------------------------------------------------

    def substitute(self, line):
        line = re.sub(r"cargo run (-q )?--release --bin (\S+)( --)?", r"\2", line)
        for fixed, free in self.ports.items():
            line = line.replace(f"127.0.0.1:{fixed}", f"127.0.0.1:{free}")
        line = line.replace("0.0.0.0:9000", f"127.0.0.1:{self.ports['9000']}")
        line = line.replace("/var/lib/rewind", str(self.scratch / "var-lib-rewind"))
        if self.moto:
            line = line.replace("https://s3.eu-west-1.amazonaws.com", f"http://127.0.0.1:{self.moto_port}")
        if line.startswith("export AWS_ACCESS_KEY_ID=RWND..."):
            assert self.client_export, "README pastes the client key before any gateway printed one"
            names = lambda text: re.findall(r"(\w+)=", text)
            assert names(without_comment(line)) == names(self.client_export), \
                f"README's export line and the gateway's differ:\n  {line}\n  {self.client_export}"
            line = self.client_export
        if "RWVW..." in line:
            assert self.view_key, "README pastes a view's key before `rewind view create` printed one"
            line = line.replace("RWVW...", self.view_key[0]).replace("SECRET_ACCESS_KEY=...",
                                                                     f"SECRET_ACCESS_KEY={self.view_key[1]}")
        if line.startswith("export REWIND_UPSTREAM_ACCESS_KEY_ID=..."):
            line = line.replace("REWIND_UPSTREAM_ACCESS_KEY_ID=...", f"REWIND_UPSTREAM_ACCESS_KEY_ID={self.moto_key[0]}")
            line = line.replace("REWIND_UPSTREAM_SECRET_ACCESS_KEY=...",
                                f"REWIND_UPSTREAM_SECRET_ACCESS_KEY={self.moto_key[1]}")
        assert "..." not in without_comment(line), f"a placeholder the walk-through cannot fill: {line}"
        return line

    # -- running -----------------------------------------------------------------------

    def apply_exports(self, line):
        """`export A=B C=D`: into the session's environment (as the shell would)."""
        out = subprocess.run(["bash", "-c", f"{line}\nenv -0"], env=self.env, capture_output=True, check=True)
        self.env = dict(item.split("=", 1) for item in out.stdout.decode().split("\0") if "=" in item)

    def run(self, line, timeout=300):
        """One command in a terminal; returns its output. A non-zero exit fails."""
        command = without_comment(self.substitute(line))
        if command.startswith("export "):
            self.apply_exports(command)
            return ""
        if command.startswith("alias "):
            # `alias rewind='cargo run … --bin rewind --'` is `rewind` itself after substitution.
            assert re.fullmatch(r"alias (\S+)='\1'", command), f"unexpected alias: {command}"
            return ""
        started = time.monotonic()
        term = Terminal(["bash", "-c", command], self.env, self.cwd, answer="y")
        try:
            code = term.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(term.proc.pid, signal.SIGKILL)
            raise AssertionError(f"`{command}` did not finish in {timeout}s:\n{term.text()}")
        out = term.text()
        self.transcript.append(f"$ {line}\n{out}")
        print(f"  $ {line[:110]}  ({time.monotonic() - started:.1f}s)", flush=True)
        assert code == 0, f"`{command}` exited {code}:\n{out}"
        return out

    def cli(self, args, env=None):
        """The rewind CLI, as the walk-through's own probe (not a README line)."""
        out = subprocess.run([str(self.bin_dir / "rewind"), *args], env=env or self.env, cwd=self.cwd,
                             capture_output=True, text=True, timeout=120)
        return out

    def start_gateway(self, line):
        """A gateway line: in its own terminal, in the background, until it is ready."""
        command = without_comment(self.substitute(line))
        if "--admin-listen" not in command:
            admin = str(free_port()) if self.gateways else self.ports["9001"]
            command += f" --admin-listen 127.0.0.1:{admin}"
        if "--listen" not in command:
            command += f" --listen 127.0.0.1:{self.ports['9000']}"
        print(f"  $ {line[:110]}  (in the background)", flush=True)
        term = Terminal(["bash", "-c", command], self.env, self.cwd)
        self.gateways.append(term)
        deadline = time.monotonic() + 120
        while "REWIND_ADMIN_URL=" not in term.text():
            if term.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the gateway did not start (exit {term.proc.poll()}):\n{term.text()}")
            time.sleep(0.1)
        return term

    def stop_gateway(self, term):
        term.interrupt()
        code = term.wait(60)
        assert code == 0, f"the gateway exited {code} on Ctrl-C:\n{term.text()[-3000:]}"
        self.gateways.remove(term)

    def stop(self):
        for term in list(self.gateways):
            try:
                self.stop_gateway(term)
            except Exception:  # noqa: BLE001 - already failing; do not hide the first error
                os.killpg(term.proc.pid, signal.SIGKILL)
        if self.moto:
            self.moto.terminate()
            self.moto.wait(timeout=20)

    def s3(self, endpoint, key):
        return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=key[0], aws_secret_access_key=key[1],
                            region_name="us-east-1", config=Config(s3={"addressing_style": "path"}))

    def gateway_s3(self):
        return self.s3(f"http://127.0.0.1:{self.ports['9000']}", (self.env["AWS_ACCESS_KEY_ID"],
                                                                 self.env["AWS_SECRET_ACCESS_KEY"]))

    def docs_files(self):
        return sorted(p.relative_to(self.cwd).as_posix() for p in (self.cwd / "docs").rglob("*") if p.is_file())


def banner_line(text, prefix):
    for line in text.splitlines():
        if line.strip().startswith(prefix):
            return line.strip()
    raise AssertionError(f"the gateway printed no `{prefix}` line:\n{text}")


# ---------------------------------------------------------------------------------------
# One function per README block, recognised by its first command; each runs the block's
# lines (through `walk.run`) and checks what README says about them.


def block_quick_start(walk, lines):
    assert len(lines) == 2, lines
    gateway, tests = lines
    assert gateway.startswith(".ci/build-deps && cargo run --release --bin rewind-gateway"), gateway
    assert tests.startswith(".ci/run"), tests
    prep, start = without_comment(gateway).split(" && ", 1)
    walk.run(prep)  # installs what is missing (nothing, under .ci/run)
    term = walk.start_gateway(start)
    text = term.text()
    # "prints its access key", once, in a terminal; the files README names are there, private.
    walk.client_export = banner_line(text, "export AWS_ACCESS_KEY_ID=")
    assert "secret access key:" in text and "shown only now" in text, text
    data = walk.cwd / "rewind-data"
    for name in ["vault.key", "credentials.toml", "admin-token"]:
        mode = (data / name).stat().st_mode & 0o777
        assert mode == 0o600, f"{name} has mode {mode:o}"
    for name in ["vault", "journal", "upstream"]:
        assert (data / name).is_dir(), f"no ./rewind-data/{name}"
    admin = banner_line(text, "export REWIND_ADMIN_URL=")
    assert f"127.0.0.1:{walk.ports['9001']}" in admin and str(data.resolve() / "admin-token") in admin, admin
    print("  (.ci/run is what runs this walk-through: not run again)")


def block_first_try(walk, lines):
    assert lines[0].startswith("export AWS_ACCESS_KEY_ID=RWND..."), lines
    for line in lines:
        out = walk.run(line)
        if " s3 mb s3://demo" in line:
            assert "make_bucket: demo" in out, out
        if " s3 ls s3://demo/" in line:
            assert "README.md" in out, out
    got = walk.gateway_s3().get_object(Bucket="demo", Key="README.md")["Body"].read()
    assert got == (walk.cwd / "README.md").read_bytes(), "README.md came back different"


def block_recover(walk, lines):
    assert lines[0].startswith("export AWS_ACCESS_KEY_ID=RWND..."), lines
    files = walk.docs_files()
    keys = sorted(["README.md", *files])
    for line in lines:
        out = walk.run(line)
        if "s3 sync docs s3://demo/docs/" in line:
            assert out.count("upload:") == len(files), out
        elif line.startswith("rewind snapshot create before-mistake"):
            assert "Created snapshot before-mistake" in out, out
        elif "s3 rm s3://demo --recursive" in line:
            assert out.count("delete:") == len(keys), out
        elif line.startswith("rewind diff --bucket demo --from before-mistake"):
            assert f"0 added, 0 changed, {len(keys)} deleted" in out, out
        elif line.startswith("rewind ls --bucket demo --at before-mistake"):
            missing = [k for k in keys if k not in out]
            assert not missing and f"{len(keys)} objects" in out, f"missing {missing}:\n{out}"
        elif line.startswith("rewind restore --bucket demo --at before-mistake --mode rewind"):
            assert "Apply this restore? [y/N]" in out, out  # "shows the plan, asks, restores"
            assert f"Restored {len(keys)} objects" in out and "To undo this restore:" in out, out
        elif "s3 ls s3://demo --recursive" in line:
            missing = [k for k in keys if k not in out]
            assert not missing, f"not back: {missing}"
        elif line.startswith(("export ", "alias ")):
            pass
        else:
            raise AssertionError(f"no check for README line: {line}")
    s3 = walk.gateway_s3()
    for key in keys:
        body = s3.get_object(Bucket="demo", Key=key)["Body"].read()
        local = walk.cwd / key
        assert body == local.read_bytes(), f"{key} differs after the restore"

    # The bullets under the block.
    out = walk.run("rewind log --bucket demo --key docs/FORMAT.md")
    for op in ["put", "delete", "restore"]:
        assert re.search(rf"\b{op}\b", out), f"log lacks {op}:\n{out}"
    assert "demo" in walk.run("rewind ls")  # "rewind ls alone lists the buckets with history"
    for args in (["ls", "--bucket", "demo", "--at", "-15m"], ["diff", "--bucket", "demo", "--from", "-2h"]):
        out = walk.cli(args)  # the history is minutes old: a valid time before it began
        assert out.returncode != 0 and "before history began" in out.stderr, (args, out.stderr)
    out = walk.cli(["ls", "--bucket", "demo", "--at", "2099-01-01T00:00:00Z"])
    assert out.returncode != 0 and "in the future" in out.stderr, out.stderr
    out = walk.cli(["--json", "status"])
    assert out.returncode == 0 and out.stdout.lstrip().startswith("{"), out


def block_offline(walk, lines):
    assert lines[0].startswith("rewind --data-dir ./rewind-data"), lines
    walk.stop_gateway(walk.gateways[0])  # "With the gateway stopped (Ctrl-C in its terminal)"
    data = walk.cwd / "rewind-data"
    before = sorted(p.relative_to(data).as_posix() for p in data.rglob("*") if "LOG" not in p.name)
    for line in lines:
        out = walk.run(line)
        if " ls --bucket demo --at before-mistake" in line:
            assert "docs/FORMAT.md" in out and "README.md" in out, out
        elif " verify --read-data" in line:
            assert "No damage found" in out, out
        else:
            raise AssertionError(f"no check for README line: {line}")
    after = sorted(p.relative_to(data).as_posix() for p in data.rglob("*") if "LOG" not in p.name)
    assert after == before, "reading offline changed the data directory"


def block_past(walk, lines):
    assert lines[0].startswith("rewind view create --bucket demo --at before-mistake"), lines
    if not walk.gateways:  # "start it again if you stopped it"
        walk.start_gateway("cargo run --release --bin rewind-gateway")
    keys = sorted(["README.md", *walk.docs_files()])
    # The live bucket is emptied again: what a view shows comes from the vault.
    walk.run("aws --endpoint-url http://127.0.0.1:9000 s3 rm s3://demo --recursive")
    for line in lines:
        out = walk.run(line)
        if line.startswith("rewind view create"):
            assert "Created a read-only view of bucket demo" in out, out
            view = banner_line(out, "export AWS_ACCESS_KEY_ID=RWVW")
            found = re.search(r"AWS_ACCESS_KEY_ID=(\S+) AWS_SECRET_ACCESS_KEY=(\S+)", view)
            walk.view_key = found.groups()
        elif " s3 ls s3://demo/ --recursive" in line:
            missing = [k for k in keys if k not in out]
            assert not missing, f"the view lacks {missing}:\n{out}"
        elif " s3 sync s3://demo/docs/ ./docs-then/" in line:
            for name in walk.docs_files():
                then = walk.cwd / "docs-then" / name.removeprefix("docs/")
                assert then.read_bytes() == (walk.cwd / name).read_bytes(), f"{name} differs through the view"
        elif line.startswith(("export ", "# ")):
            pass
        else:
            raise AssertionError(f"no check for README line: {line}")
    refused = subprocess.run(["aws", "--endpoint-url", f"http://127.0.0.1:{walk.ports['9000']}", "s3", "cp",
                              "README.md", "s3://demo/x"], env=walk.env, cwd=walk.cwd, capture_output=True, text=True)
    assert refused.returncode != 0 and "AccessDenied" in refused.stderr, refused.stderr  # "every write is refused"


def block_past_rclone(walk, lines):
    assert lines[0].startswith("export RCLONE_CONFIG_PAST_TYPE=s3"), lines
    mount = None
    for line in lines:
        if line.startswith("rclone mount"):
            mount = line
            continue
        walk.run(line)
        if line.startswith("rclone copy past:demo ./demo-then"):
            for name in ["README.md", *walk.docs_files()]:
                assert (walk.cwd / "demo-then" / name).read_bytes() == (walk.cwd / name).read_bytes(), name
    assert mount and "--read-only" in mount, lines
    if Path("/dev/fuse").exists() and (shutil.which("fusermount3") or shutil.which("fusermount")):
        point = walk.scratch / "mnt-demo-then"
        point.mkdir()
        walk.run(mount.replace("/mnt/demo-then", str(point)))
        try:
            wait_until("the mount", lambda: (point / "README.md").exists(), timeout=30)
            assert (point / "README.md").read_bytes() == (walk.cwd / "README.md").read_bytes()
        finally:
            subprocess.run([shutil.which("fusermount3") or "fusermount", "-u", str(point)], check=False)
    else:
        print("  (rclone mount skipped: this machine has no FUSE)")
    # Back to the client's own key, and the first gateway stopped, as the next block expects.
    walk.apply_exports(walk.client_export)
    walk.stop_gateway(walk.gateways[0])


def block_real_bucket(walk, lines):
    assert lines[0].startswith("export REWIND_UPSTREAM_ACCESS_KEY_ID="), lines
    # "An existing bucket": moto on loopback, holding objects written before Rewind.
    walk.moto_port = free_port()
    walk.moto = subprocess.Popen(["moto_server", "-H", "127.0.0.1", "-p", str(walk.moto_port)],
                                 stdout=open(walk.scratch / "moto.log", "wb"), stderr=subprocess.STDOUT)
    moto = walk.s3(f"http://127.0.0.1:{walk.moto_port}", walk.moto_key)
    wait_until("moto", lambda: moto.list_buckets() is not None)
    moto.create_bucket(Bucket="existing")
    for i in range(5):
        moto.put_object(Bucket="existing", Key=f"before/{i}.txt", Body=f"written before Rewind {i}\n".encode())
    export, start = lines
    walk.run(export)
    walk.ports["9000"] = str(free_port())  # the first gateway is stopped, but keep them apart
    term = walk.start_gateway(start)
    text = term.text()
    # Clients sign with Rewind's own keys: it generated one, printed in the terminal.
    client = banner_line(text, "export AWS_ACCESS_KEY_ID=")
    walk.client_export = client
    walk.apply_exports(client)
    admin = banner_line(text, "export REWIND_ADMIN_URL=")
    walk.apply_exports(admin)  # "each prints the export … line that points rewind at it"
    assert str(walk.scratch / "var-lib-rewind") in admin, admin
    # "At its first start the gateway imports what the bucket already holds".
    imported = lambda: "capture-existing" in walk.cli(["log", "--bucket", "existing", "--key", "before/3.txt"]).stdout
    wait_until("the existing objects to be imported", imported, timeout=60)
    gateway = walk.gateway_s3()
    gateway.put_object(Bucket="existing", Key="through/rewind.txt", Body=b"through Rewind\n")
    assert moto.get_object(Bucket="existing", Key="through/rewind.txt")["Body"].read() == b"through Rewind\n"
    # A second gateway on the same data directory is refused, saying so.
    second = subprocess.run(
        ["rewind-gateway", "--upstream", f"http://127.0.0.1:{walk.moto_port}", "--data-dir",
         str(walk.scratch / "var-lib-rewind"), "--listen", f"127.0.0.1:{free_port()}",
         "--admin-listen", f"127.0.0.1:{free_port()}"],
        env=walk.env, cwd=walk.cwd, capture_output=True, text=True, timeout=60)
    assert second.returncode != 0 and "in use" in second.stderr, second.stderr
    # `--check-config` validates and prints the configuration, secrets redacted.
    check = subprocess.run(["rewind-gateway", "--upstream", f"http://127.0.0.1:{walk.moto_port}", "--check-config"],
                           env=walk.env, cwd=walk.cwd, capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr
    config = tomllib.loads(check.stdout)
    assert config["upstream"]["endpoint"] == f"http://127.0.0.1:{walk.moto_port}", config["upstream"]
    assert walk.moto_key[1] not in check.stdout and walk.moto_key[1] not in check.stderr, "a secret was printed"
    walk.stop_gateway(term)


BLOCKS = [block_quick_start, block_first_try, block_recover, block_offline, block_past, block_past_rclone,
          block_real_bucket]


def default_bin_dir():
    target = os.environ.get("CARGO_TARGET_DIR", str(ROOT / "target"))
    return str(Path(target) / "debug")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin-dir", default=default_bin_dir(), help="where rewind-gateway and rewind are built")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args()
    for tool in ["aws", "moto_server"]:
        if shutil.which(tool) is None:
            sys.exit(f"readme: {tool} is not installed; .ci/run installs it")
    for binary in ["rewind-gateway", "rewind"]:
        if not (Path(args.bin_dir) / binary).exists():
            sys.exit(f"readme: no {binary} in {args.bin_dir}; build with: cargo build --workspace --bins")

    blocks = sh_blocks((ROOT / "README.md").read_text())
    scratch = Path(tempfile.mkdtemp(prefix="rewind-readme-"))
    walk = Walk(args.bin_dir, scratch)
    failed = False
    try:
        if len(blocks) != len(BLOCKS):
            raise AssertionError(f"README has {len(blocks)} sh blocks, the walk-through knows {len(BLOCKS)}: "
                                 "give each new block its checks")
        for number, (lines, check) in enumerate(zip(blocks, BLOCKS), 1):
            started = time.monotonic()
            print(f"block {number}/{len(blocks)}: {check.__name__}", flush=True)
            check(walk, lines)
            print(f"PASS block {number} ({time.monotonic() - started:.1f}s)", flush=True)
    except Exception:
        failed = True
        print(f"FAIL\n{traceback.format_exc()}", flush=True)
        for term in walk.gateways:
            print("--- gateway terminal (last 40 lines) ---\n" + "\n".join(term.text().splitlines()[-40:]))
    finally:
        walk.stop()
        if args.keep or failed:
            (scratch / "transcript.txt").write_text("\n".join(walk.transcript))
            print(f"readme: scratch directory and transcript kept in {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    print("readme: every block " + ("did NOT run as README says" if failed else "ran as README says"))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

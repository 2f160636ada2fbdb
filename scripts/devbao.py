# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A local OpenBao dev server set up the way the product's docs ask: for `make demo` and the molecule scenario.

The server is `bao server -dev` (TLS, loopback, a free port; no docker) from tests/support/bao.py, with:

- KV v2 at secret/ (the dev server's own),
- the policy `certautopilot` - the sample policy of the product's Vault docs, for secret/data/certs/*,
- AppRole at approle/ with the role `certautopilot` holding that policy, and one secret_id.

As a library, `start_server(workdir)` returns a running, provisioned server; the caller stops it.

As a command, for tools whose steps are separate processes (molecule's create and destroy):

    devbao.py start --state-dir DIR   start a keeper process in the background that runs the server, wait until
                                      it is ready, and write DIR/bao.json (addr, ca_cert, role_id, secret_id,
                                      root_token, pid); prints that JSON
    devbao.py stop --state-dir DIR    stop the keeper (which stops the server) and remove DIR/bao.json

The keeper stops the server on SIGTERM/SIGINT and, whatever happens, after --max-lifetime seconds; the server
dies with the keeper (PR_SET_PDEATHSIG), so nothing outlives a forgotten `stop` for long.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests" / "support"))

from bao import BaoServer  # noqa: E402

POLICY_NAME = "certautopilot"
APPROLE_ROLE = "certautopilot"
# The collection's sample policy (docs/guide.md, paths under secret/certs/): the product's Vault module docs'
# policy plus create and update on metadata, where every push records its managed_by mark.
SAMPLE_POLICY = """\
path "secret/data/certs/*" {
  capabilities = ["create", "update", "read", "patch"]
}
path "secret/metadata/certs/*" {
  capabilities = ["read", "list", "delete", "create", "update"]
}
"""
STATE_FILE = "bao.json"
START_TIMEOUT = 60.0
DEFAULT_MAX_LIFETIME = 3600.0


def provision(server: BaoServer) -> dict[str, str]:
    """Apply the operator setup as root; return the connection and AppRole credentials."""
    for method, path, payload in (
        ("PUT", f"sys/policies/acl/{POLICY_NAME}", {"policy": SAMPLE_POLICY}),
        ("POST", "sys/auth/approle", {"type": "approle"}),
        (
            "POST",
            f"auth/approle/role/{APPROLE_ROLE}",
            {"token_policies": [POLICY_NAME], "token_ttl": "10m", "secret_id_num_uses": 0},
        ),
    ):
        status, body = server.api(method, path, payload)
        if status not in (200, 204):
            raise RuntimeError(f"{method} {path}: HTTP {status}: {body}")
    return {
        "addr": server.addr,
        "ca_cert": server.ca_cert,
        "role_id": server.approle_role_id(APPROLE_ROLE),
        "secret_id": server.new_approle_secret_id(APPROLE_ROLE),
        "root_token": server.root_token,
    }


def start_server(workdir: Path) -> tuple[BaoServer, dict[str, str]]:
    """A running dev server with the setup above, and its credentials. Stop it with server.stop()."""
    server = BaoServer.start_dev(workdir, audit=False, root_token=os.urandom(12).hex())
    try:
        return server, provision(server)
    except BaseException:
        server.stop()
        raise


def _write_private(path: Path, text: str) -> None:
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(text)


def keep(state_dir: Path, max_lifetime: float) -> int:
    """The keeper: run the server until signalled or max_lifetime, then stop it."""
    stop = threading.Event()
    for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(number, lambda *_: stop.set())
    server, credentials = start_server(state_dir / "server")
    try:
        state = {**credentials, "pid": os.getpid()}
        _write_private(state_dir / f"{STATE_FILE}.tmp", json.dumps(state, indent=2) + "\n")
        os.replace(state_dir / f"{STATE_FILE}.tmp", state_dir / STATE_FILE)
        deadline = time.monotonic() + max_lifetime
        while not stop.is_set() and server.process.poll() is None and time.monotonic() < deadline:
            stop.wait(0.5)
    finally:
        server.stop()
    return 0


def start(state_dir: Path, max_lifetime: float) -> int:
    state_dir.mkdir(parents=True, exist_ok=True)
    state_file = state_dir / STATE_FILE
    if state_file.exists():
        state = json.loads(state_file.read_text())
        if _alive(state.get("pid")):
            print(json.dumps(state))
            return 0
        state_file.unlink()
    log_path = state_dir / "keeper.log"
    with open(log_path, "ab") as log:
        # Own session, no inherited pipes: the caller (an Ansible task) returns as soon as we do.
        keeper = subprocess.Popen(  # noqa: S603 - our own script and arguments
            [sys.executable, __file__, "keep", "--state-dir", str(state_dir), "--max-lifetime", str(max_lifetime)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=state_dir,
        )
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if state_file.exists():
            print(state_file.read_text().strip())
            return 0
        if keeper.poll() is not None:
            print(f"the OpenBao keeper exited with {keeper.returncode}; see {log_path}:", file=sys.stderr)
            print(log_path.read_text(errors="replace")[-4000:], file=sys.stderr)
            return 1
        time.sleep(0.1)
    keeper.terminate()
    print(f"the OpenBao dev server was not ready after {START_TIMEOUT:.0f}s; see {log_path}", file=sys.stderr)
    return 1


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is not alive; only its parent can reap it.
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z":
            return False
    return True


def stop(state_dir: Path) -> int:
    state_file = state_dir / STATE_FILE
    if not state_file.exists():
        print(f"no {state_file}: nothing to stop")
        return 0
    pid = json.loads(state_file.read_text()).get("pid")
    if _alive(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
    state_file.unlink()
    print(f"stopped the OpenBao dev server (keeper pid {pid})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("start", "keep", "stop"):
        command = commands.add_parser(name)
        command.add_argument("--state-dir", type=Path, required=True)
        if name != "stop":
            command.add_argument("--max-lifetime", type=float, default=DEFAULT_MAX_LIFETIME)
    args = parser.parse_args(argv)
    state_dir = args.state_dir.resolve()
    if args.command == "start":
        return start(state_dir, args.max_lifetime)
    if args.command == "keep":
        return keep(state_dir, args.max_lifetime)
    return stop(state_dir)


if __name__ == "__main__":
    raise SystemExit(main())

"""Performance benchmark: certautopilot.vault against hvac alone and against a vault_kv2_write loop.

One local OpenBao dev server (TLS, AppRole, file audit device) serves every
case. Each case delivers the same N certificates twice - first run (every
secret new), second run (every secret unchanged) - to a path prefix of its own:

- floor:  bench/floor.py, hvac in one Python process
- module: bench/playbooks/module.yml, one vault_cert_push task (inline PEM)
- role:   bench/playbooks/role.yml, the cert_distribution role (certificate files)
- peer:   bench/playbooks/peer.yml, community.hashi_vault.vault_kv2_write in a loop

It records wall seconds, requests (from the audit log, by kind), TCP
connections and the module process's peak memory, checks that each run wrote
exactly what it had to, prints the tables and, at N=1000 only, writes
docs/performance.md from bench/performance.md.in.

Then the distance run (issue 13): the same, on a fresh server, through
bench/relay.py, which adds a round-trip time (--rtt-ms, default 10) as a
server a few network hops away would, with one more case, floor8 (floor.py
with 8 threads, the module's default concurrency). The peer can run a smaller
batch (--peer-n), in both runs: its time per certificate is then extrapolated to N.
--rtt-ms 0 skips the distance run.

The fleet case (issue 27), on loopback only: --fleet-hosts (default 100) hosts
of an inventory with `ansible_connection: local`, each with one certificate in
its host_vars (certificate and key files), delivered three ways, each to a
path prefix of its own, first and second run:

- fleet-single: bench/playbooks/fleet_single.yml, every host's certificate in one list on localhost (the yardstick)
- fleet-hosts:  bench/playbooks/fleet_hosts.yml, `hosts: fleet`, the role per host (one module run per host)
- fleet:        bench/playbooks/fleet.yml, the same play with `cert_distribution_fleet: true` (one module run)

--cases runs only the cases named (comma-separated: floor, module, role,
peer, fleet; the memory runs come with module, floor8 with floor). The page
is rewritten only by a run at N=1000 with floor, module, role and peer; a run
without fleet says so on it.

`make bench` runs it from .venv with tests/support on PYTHONPATH (the OpenBao
server and certificates of the integration tests); the timed processes run
from build/bench-venv, whose `ansible` package ships community.hashi_vault.

    make bench                      # N=1000, RTT 10 ms
    make bench N=200 RTT_MS=20      # another N, another round-trip time
    make bench PEER_N=100           # the peer at N=100, extrapolated to N
    make bench RTT_MS=0             # no distance run
    make bench CASES=fleet          # the fleet case alone (FLEET_HOSTS=10 for a quick look)
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import fcntl
import json
import os
import platform
import resource
import shlex
import shutil
import signal
import statistics
import string
import subprocess
import sys
import time
import typing as t
import urllib.parse
from dataclasses import asdict, dataclass
from pathlib import Path

import pki
from bao import ProvisionedBao, find_bao_binary
from relay import Relay

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
PLAYBOOKS = BENCH / "playbooks"
WORKDIR = REPO / "build" / "bench"
# Made by `make collection-link`: certautopilot.vault is this repository.
COLLECTIONS = REPO / "build" / "collections"
REPORT = REPO / "docs" / "performance.md"
REPORT_N = 1000  # the page holds the full run: other sizes leave it as it is
MEMORY_COUNTS = (1, 5000)  # besides N, for the growth of peak memory with the batch
CASES = {
    "floor": "floor: hvac, one process",
    "module": "ours: module alone (1 task)",
    "role": "ours: role cert_distribution",
    "peer": "peer: vault_kv2_write loop",
}
# The distance run's cases: floor8 is floor.py with the module's default concurrency in threads.
FLOOR_THREADS = 8
DISTANCE_CASES = {
    "floor": "floor: hvac, sequential",
    "floor8": f"floor: hvac, {FLOOR_THREADS} threads",
    "module": "ours: module alone (1 task, concurrency 8)",
    "role": "ours: role cert_distribution",
    "peer": "peer: vault_kv2_write loop",
}
DEFAULT_RTT_MS = 10.0
# (name, case, compared with, issue 13's target at RTT 10 ms and N=1000: at most; None: for information).
DISTANCE_RATIOS = (
    ("module / floor, 8 threads", "module", "floor8", 1.5),
    ("role / floor, 8 threads", "role", "floor8", 1.8),
    ("peer / module", "peer", "module", None),
)
# The fleet case's runs (issue 27): what each delivers the fleet's certificates with.
FLEET_CASES = {
    "fleet-single": "role, one batch on localhost (yardstick)",
    "fleet-hosts": "role per host (`hosts: fleet`)",
    "fleet": "role, fleet mode (`cert_distribution_fleet: true`)",
}
FLEET_PLAYBOOKS = {"fleet-single": "fleet_single.yml", "fleet-hosts": "fleet_hosts.yml", "fleet": "fleet.yml"}
DEFAULT_FLEET_HOSTS = 100
FLEET_GOAL = 1.5  # issue 27: fleet mode within this factor of the single batch's wall (reported, not asserted)
# What --cases can name: the loopback cases, then the fleet's three runs as one.
SELECTABLE_CASES = (*CASES, "fleet")
# The cases without which the page's main tables would be empty: a run that leaves one out does not rewrite it.
REPORT_CASES = tuple(CASES)
RUNS = ("first", "second")
REQUEST_KINDS = ("login", "mount", "read", "write", "revoke", "other")
# Fixed requests of one of our runs: login, mount check, token revoke (+1 spare).
FIXED_REQUESTS = 4
MODULE_SCRIPT = "AnsiballZ_vault_cert_push"


# -- inputs ------------------------------------------------------------------------


@dataclass(frozen=True)
class Certificates:
    chain: str
    leaves: list[tuple[str, str, str]]  # (cn, certificate, private key)


def make_certificates(count: int) -> Certificates:
    root = pki.make_ca("certautopilot bench root CA")
    intermediate = pki.make_intermediate(root, "certautopilot bench intermediate CA")
    leaves = []
    for index in range(count):
        cn = f"bench-{index:05d}.example.com"
        leaf = pki.make_leaf(intermediate, cn, sans=(cn,))
        leaves.append((cn, leaf.cert_pem, leaf.key_pem))
    return Certificates(chain=intermediate.cert_pem, leaves=leaves)


def write_items(path: Path, certificates: Certificates, prefix: str, count: int) -> int:
    """The batch as the module, the peer and the floor take it; returns the module's input size in bytes."""
    items = [
        {"path": f"{prefix}/{cn}", "certificate": cert, "private_key": key, "chain": certificates.chain}
        for cn, cert, key in certificates.leaves[:count]
    ]
    path.write_text(json.dumps({"bench_items": items}))
    return len(json.dumps(items))


def write_certificate_files(directory: Path, certificates: Certificates, count: int) -> list[dict[str, str]]:
    """The batch as files, as the role takes it; returns its cert_distribution_certs items."""
    directory.mkdir(exist_ok=True)  # the distance run writes the same files again
    chain = directory / "chain.pem"
    chain.write_text(certificates.chain)
    listed = []
    for cn, cert, key in certificates.leaves[:count]:
        (directory / f"{cn}.pem").write_text(cert)
        (directory / f"{cn}.key").write_text(key)
        listed.append(
            {
                "certificate_file": str(directory / f"{cn}.pem"),
                "private_key_file": str(directory / f"{cn}.key"),
                "chain_file": str(chain),
            }
        )
    return listed


def write_role_files(directory: Path, certificates: Certificates, count: int) -> Path:
    """The batch as files, as the role takes it; returns the extra-vars file that lists them."""
    path = directory.with_suffix(".json")
    path.write_text(json.dumps({"bench_role_certificates": write_certificate_files(directory, certificates, count)}))
    return path


def write_fleet_inventory(directory: Path, items: list[dict[str, str]], python: str) -> Path:
    """An inventory of one local host per item, the item in its host_vars; returns the inventory file.

    JSON is YAML: Ansible reads hosts.yml and host_vars/<host>.yml as they are written here.
    """
    hosts = [f"fleet-{index:03d}" for index in range(len(items))]
    (directory / "host_vars").mkdir(parents=True)
    for host, item in zip(hosts, items):
        (directory / "host_vars" / f"{host}.yml").write_text(json.dumps({"cert_distribution_certs": [item]}))
    # Every host runs its modules on the bench venv's python, as localhost does in inventory.ini.
    fleet = {
        "hosts": dict.fromkeys(hosts, {}),
        "vars": {"ansible_connection": "local", "ansible_python_interpreter": python},
    }
    inventory = directory / "hosts.yml"
    inventory.write_text(json.dumps({"all": {"children": {"fleet": fleet}}}))
    return inventory


# -- measurements ------------------------------------------------------------------


@dataclass
class Measurement:
    """One timed run of one case."""

    case: str
    run: str
    count: int
    wall: float
    cpu: float  # of the whole process tree
    load: float  # 1-minute load average at the start
    requests: dict[str, int]  # by kind, see request_kind()
    other_requests: list[str]  # "operation path" of the kind "other", to explain them
    connections: int  # distinct client ports; 0 if the audit entries have none
    module_process: dict | None  # rss_exec.py's record of the vault_cert_push process
    input_bytes: int
    problems: list[str]
    rtt_ms: float = 0.0  # the round-trip time the relay added; 0: straight to the server, on loopback

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())


def request_kind(request: dict) -> str:
    path, operation = request.get("path", ""), request.get("operation", "")
    if path.startswith("auth/") and path.endswith("/login"):
        return "login"
    if path == "auth/token/revoke-self":
        return "revoke"
    if path.startswith("sys/internal/ui/mounts"):
        return "mount"
    if "/data/" in path and operation == "read":
        return "read"
    if "/data/" in path and operation in ("create", "update"):
        return "write"
    return "other"


def count_requests(entries: list[dict]) -> tuple[dict[str, int], list[str], int]:
    """Audit entries by kind, the distinct requests of the kind other, and the client connections."""
    requests = dict.fromkeys(REQUEST_KINDS, 0)
    other, client_ports = set(), set()
    for entry in entries:
        request = entry["request"]
        kind = request_kind(request)
        requests[kind] += 1
        if kind == "other":
            other.add(f"{request.get('operation')} {request.get('path')}")
        client_ports.add(request.get("remote_port"))
    # remote_port is in the audit entries of OpenBao 2.x; without it there is nothing to count.
    connections = 0 if None in client_ports else len(client_ports)
    return requests, sorted(other), connections


class Bench:
    """The server, the environment of the timed processes and what they measured."""

    def __init__(
        self, n: int, python: str, certificates: Certificates, peer_n: int, *, cases: tuple[str, ...], fleet_hosts: int
    ) -> None:
        self.n = n
        self.peer_n = peer_n  # the peer's batch in the distance run
        self.cases = cases  # what --cases selected (every case by default)
        self.fleet_hosts = fleet_hosts
        self.rtt_ms = 0.0  # what the relay adds to the runs measured now
        self.python = python
        self.bin = Path(python).parent
        self.certificates = certificates
        self.inputs = WORKDIR / "inputs"
        self.server_vars = self.inputs / "server.json"  # the extra vars of every case: URL, CA, AppRole
        self.logs = WORKDIR / "logs"
        self.module_log = WORKDIR / "module-processes.jsonl"
        self.measuring_python = WORKDIR / "measuring-python"
        self.server: ProvisionedBao | None = None
        self.measurements: list[Measurement] = []
        self.startup_seconds: list[float] = []
        self.memory: list[dict] = []

    def start_server(self, directory: Path) -> None:
        self.server = ProvisionedBao.start_dev(directory)
        self.server.provision()
        self.use_url(self.server.addr)

    def use_url(self, url: str) -> None:
        """Every case reaches the server at this URL: its own address, or the relay's."""
        self.server_vars.write_text(
            json.dumps(
                {
                    "bench_url": url,
                    "bench_ca_cert": self.server.ca_cert,
                    "bench_role_id": self.server.role_ids["certs"],
                    "bench_secret_id": self.server.new_approle_secret_id("certs"),
                }
            )
        )

    def stop_server(self) -> None:
        if self.server is not None:
            self.server.stop()

    def write_measuring_python(self) -> None:
        # Ansible takes only an executable as the interpreter, not a command line.
        command = shlex.join([self.python, "-I", "-S", str(BENCH / "rss_exec.py"), str(self.module_log)])
        self.measuring_python.write_text(f'#!/bin/sh\nexec {command} "$@"\n')
        self.measuring_python.chmod(0o755)

    @property
    def env(self) -> dict[str, str]:
        """The caller's environment without Ansible, Vault or Python path settings, plus ours."""
        foreign = ("ANSIBLE_", "VAULT_", "BAO_", "PYTHONPATH")
        env = {key: value for key, value in os.environ.items() if not key.startswith(foreign)}
        env["ANSIBLE_CONFIG"] = str(PLAYBOOKS / "ansible.cfg")
        env["ANSIBLE_HOME"] = str(WORKDIR / "ansible-home")
        env["ANSIBLE_COLLECTIONS_PATH"] = str(COLLECTIONS)
        return env

    def playbook(
        self, name: str, batch: Path | None, *, measured: bool = True, inventory: Path | None = None
    ) -> list[str]:
        command = [str(self.bin / "ansible-playbook"), str(PLAYBOOKS / name)]
        if inventory is not None:
            command += ["--inventory", str(inventory)]
        command += ["--extra-vars", f"@{self.server_vars}"]
        if batch is not None:
            command += ["--extra-vars", f"@{batch}"]
        if measured:
            command += ["--extra-vars", f"ansible_python_interpreter={self.measuring_python}"]
        return command

    def timed(self, command: list[str], log_name: str, timeout: float) -> tuple[int, float, float]:
        """Runs the command, its output to a log; returns its exit code, wall and CPU seconds."""
        # The server is a child too, but its CPU counts only once it is reaped, at the end.
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        with open(self.logs / f"{log_name}.log", "w", encoding="utf-8") as log:
            completed = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=WORKDIR,
                timeout=timeout,
                check=False,
            )
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
        return completed.returncode, wall, cpu

    def module_processes(self) -> list[dict]:
        if not self.module_log.exists():
            return []
        return [json.loads(line) for line in self.module_log.read_text().splitlines()]

    def measure(
        self,
        case: str,
        run: str,
        count: int,
        command: list[str],
        input_bytes: int = 0,
        *,
        expected_logins: int | None = None,
    ) -> Measurement:
        log_name = f"{case}-{run}-{count}" + (f"-rtt{self.rtt_ms:g}ms" if self.rtt_ms else "")
        known_processes = len(self.module_processes())
        load = os.getloadavg()[0]
        mark = self.server.audit_mark()
        returncode, wall, cpu = self.timed(command, log_name, timeout=120 + 3.0 * count)
        requests, other, connections = count_requests(self.server.audit_requests(mark))
        problems = []
        if returncode != 0:
            problems.append(f"exit code {returncode}, see {self.logs / log_name}.log")
        expected_writes = count if run == "first" else 0
        if requests["write"] != expected_writes:
            problems.append(f"{requests['write']} writes, expected {expected_writes}")
        if expected_logins is not None and requests["login"] != expected_logins:
            problems.append(f"{requests['login']} logins, expected {expected_logins}")
        ours = [p for p in self.module_processes()[known_processes:] if MODULE_SCRIPT in " ".join(p["argv"])]
        measured = Measurement(
            case=case,
            run=run,
            count=count,
            wall=wall,
            cpu=cpu,
            load=load,
            requests=requests,
            other_requests=other,
            connections=connections,
            module_process=ours[-1] if ours else None,
            input_bytes=input_bytes,
            problems=problems,
            rtt_ms=self.rtt_ms,
        )
        print(progress_line(measured), flush=True)
        return measured

    # -- the runs --------------------------------------------------------------------

    def run_startup(self, repeat: int = 3) -> None:
        """The fixed cost of one Ansible task, for the targets."""
        command = [str(self.bin / "ansible-playbook"), str(PLAYBOOKS / "startup.yml")]
        for attempt in range(repeat):
            returncode, wall, _cpu = self.timed(command, f"startup-{attempt}", timeout=120)
            if returncode != 0:
                raise SystemExit(f"the start-up playbook failed: see {self.logs}/startup-{attempt}.log")
            self.startup_seconds.append(wall)
        print(f"  start-up of one Ansible task: {self.startup:.2f} s (median of {repeat})", flush=True)

    @property
    def startup(self) -> float:
        return statistics.median(self.startup_seconds)

    def run_case(self, case: str, count: int) -> None:
        batch = self.inputs / f"{case}.json"
        input_bytes = 0
        if case in ("floor", "floor8"):
            write_items(batch, self.certificates, f"certs/bench-{case}", count)
            threads = FLOOR_THREADS if case == "floor8" else 1
            command = [self.python, str(BENCH / "floor.py"), f"--threads={threads}", str(self.server_vars), str(batch)]
        elif case == "module":
            input_bytes = write_items(batch, self.certificates, "certs/bench-module", count)
            command = self.playbook("module.yml", batch)
        elif case == "role":
            # The secret path is role.yml's template: certs/bench-role/{{ cn }}.
            command = self.playbook("role.yml", write_role_files(self.inputs / "role", self.certificates, count))
        else:  # peer
            write_items(batch, self.certificates, "certs/bench-peer", count)
            # Not measured: the wrapper's start-up, once per item, would be charged to the peer.
            command = self.playbook("peer.yml", batch, measured=False)
        for run in RUNS:
            self.measurements.append(self.measure(case, run, count, command, input_bytes))

    def run_fleet(self) -> None:
        """Issue 27: the fleet's certificates in one batch, host by host, then in fleet mode."""
        hosts = self.fleet_hosts
        items = write_certificate_files(self.inputs / "fleet-files", self.certificates, hosts)
        batch = self.inputs / "fleet-single.json"
        batch.write_text(json.dumps({"bench_role_certificates": items}))
        inventory = write_fleet_inventory(self.inputs / "fleet-inventory", items, self.python)
        # Not measured (rss_exec.py): the wrapper's start-up, once per host, would be charged to the per-host runs.
        commands = {
            "fleet-single": self.playbook(FLEET_PLAYBOOKS["fleet-single"], batch, measured=False),
            "fleet-hosts": self.playbook(FLEET_PLAYBOOKS["fleet-hosts"], None, measured=False, inventory=inventory),
            "fleet": self.playbook(FLEET_PLAYBOOKS["fleet"], None, measured=False, inventory=inventory),
        }
        # A role without fleet mode would run fleet.yml host by host too: its logins tell.
        logins = {"fleet-single": 1, "fleet-hosts": hosts, "fleet": 1}
        for case, command in commands.items():
            for run in RUNS:
                self.measurements.append(self.measure(case, run, hosts, command, expected_logins=logins[case]))

    def run_distance(self, rtt_ms: float) -> None:
        """The cases again through a relay that adds rtt_ms, against a fresh server: every secret is new again."""
        self.stop_server()
        self.start_server(WORKDIR / "bao-distance")
        upstream = urllib.parse.urlsplit(self.server.addr)
        with Relay(upstream.hostname, upstream.port, rtt=rtt_ms / 1000) as relay:
            # 127.0.0.1 like the server: its certificate is valid for the relay's address too.
            self.use_url(f"https://127.0.0.1:{relay.port}")
            self.rtt_ms = rtt_ms
            print(f"distance run: RTT {rtt_ms:g} ms through the relay on port {relay.port} ...", flush=True)
            for case in self.distance_cases:
                self.run_case(case, self.peer_n if case == "peer" else self.n)

    @property
    def distance_cases(self) -> list[str]:
        """The selected cases the distance run has; floor8 comes with floor."""
        return [case for case in DISTANCE_CASES if case.removesuffix("8") in self.cases]

    def run_memory(self) -> None:
        """Peak memory of the module process, module alone, first run, at several N."""
        for count in sorted({*MEMORY_COUNTS, self.n}):
            if count == self.n:
                measured = self.find("module", "first")
            else:
                batch = self.inputs / f"memory-{count}.json"
                input_bytes = write_items(batch, self.certificates, f"certs/bench-memory-{count}", count)
                measured = self.measure("module", "first", count, self.playbook("module.yml", batch), input_bytes)
            process = measured.module_process or {}
            self.memory.append(
                {
                    "count": count,
                    "input_bytes": measured.input_bytes,
                    "maxrss_kib": process.get("maxrss_kib"),
                    "module_wall": process.get("wall_seconds"),
                }
            )

    def find(self, case: str, run: str, rtt_ms: float = 0.0) -> Measurement:
        return next(m for m in self.measurements if m.case == case and m.run == run and m.rtt_ms == rtt_ms)

    def ran(self, *cases: str, rtt_ms: float = 0.0) -> bool:
        return all(any(m.case == case and m.rtt_ms == rtt_ms for m in self.measurements) for case in cases)

    def wall_at_n(self, m: Measurement) -> float:
        """The wall of the run at N: measured, or for a smaller batch extrapolated from its time per certificate.

        The fixed start-up of one Ansible task is taken out before scaling: it is paid once, whatever the batch.
        """
        return m.wall if m.count == self.n else self.startup + (m.wall - self.startup) * self.n / m.count

    def at_loopback(self) -> list[Measurement]:
        """The loopback runs of the main cases (the fleet's have a table of their own)."""
        return [m for m in self.measurements if not m.rtt_ms and m.case in CASES]

    def of_fleet(self) -> list[Measurement]:
        return [m for m in self.measurements if m.case in FLEET_CASES]

    def at_distance(self) -> list[Measurement]:
        return [m for m in self.measurements if m.rtt_ms]


def progress_line(m: Measurement) -> str:
    requests = {kind: count for kind, count in m.requests.items() if count}
    line = f"  {m.case:<12} {m.run:<6} N={m.count:<5} {m.wall:8.2f} s ({m.cpu:.2f} s CPU)  {requests}"
    if m.rtt_ms:
        line += f"  TCP conns {m.connections or '?'}"
    if m.other_requests:
        line += f" other: {m.other_requests}"
    if m.module_process:
        process = m.module_process
        line += f"  module process {process['wall_seconds']:.2f} s, {process['maxrss_kib'] / 1024:.1f} MiB"
    return line + f"  load {m.load:.2f}  " + ("; ".join(m.problems) if m.problems else "ok")


# -- tables ------------------------------------------------------------------------


def table(header: list[str], rows: list[list[object]], *, right_from: int | None = None) -> str:
    """A Markdown table; the columns from right_from on are right-aligned (numbers)."""
    align = ["---" if right_from is None or i < right_from else "---:" for i in range(len(header))]
    return "\n".join(f"| {' | '.join(str(cell) for cell in row)} |" for row in [header, align, *rows])


def ratio(numerator: Measurement, denominator: Measurement) -> float:
    return numerator.wall / denominator.wall


def results_table(bench: Bench) -> str:
    header = ["case", "run", "N", "wall s", "s / cert", "requests", *REQUEST_KINDS]
    header += ["TCP conns", "ours / floor", "peer / ours"]
    rows = []
    for m in bench.at_loopback():
        ours_floor = peer_ours = ""
        if m.case in ("module", "role") and bench.ran("floor"):
            ours_floor = f"{ratio(m, bench.find('floor', m.run)):.2f}"
        if m.case in ("module", "role") and bench.ran("peer"):
            peer_ours = f"{bench.wall_at_n(bench.find('peer', m.run)) / m.wall:.2f}"
        wall = f"{m.wall:.2f}" + (" (FAILED)" if m.problems else "")
        rows.append(
            [CASES[m.case], m.run, m.count, wall, f"{m.wall / m.count:.4f}", m.total_requests]
            + [m.requests[kind] for kind in REQUEST_KINDS]
            + [m.connections or "?", ours_floor, peer_ours]
        )
    return table(header, rows, right_from=2)


def targets_table(bench: Bench) -> str:
    """Issue 8's targets: wall against the floor, requests per certificate, the peer's slowness."""
    if not bench.ran(*REPORT_CASES):
        return f"Not run: they need every case of {', '.join(REPORT_CASES)}."
    rows = []
    for run in RUNS:
        floor = bench.find("floor", run)
        for case, factor in (("module", 1.5), ("role", 2.0)):
            wall, limit = bench.find(case, run).wall, factor * floor.wall + bench.startup
            formula = f"{factor} × {floor.wall:.2f} + {bench.startup:.2f} = {limit:.2f} s"
            rows.append([f"{case} wall ≤ {factor}× floor + start-up", run, formula, f"{wall:.2f} s", wall <= limit])
        # Without an owner no mark is written: a new secret costs a read and a write; an unchanged one a read.
        budget = (bench.n if run == "second" else 2 * bench.n) + FIXED_REQUESTS
        for case in ("module", "role"):
            total = bench.find(case, run).total_requests
            rows.append([f"{case} requests", run, f"≤ {budget}", total, total <= budget])
        for case in ("module", "role"):
            slower = bench.wall_at_n(bench.find("peer", run)) / bench.find(case, run).wall
            rows.append([f"peer / {case}", run, "≥ 30", f"{slower:.1f}", slower >= 30])
    return table(
        ["target", "run", "limit", "measured", "met"], [[*row[:-1], "yes" if row[-1] else "no"] for row in rows]
    )


def memory_table(bench: Bench) -> str:
    if not bench.memory:
        return "Not run: the memory runs come with the module case."
    header = ["N", "module input (JSON of certificates:)", "module process peak RSS", "module process wall s"]
    rows = []
    for entry in bench.memory:
        rss, wall = entry["maxrss_kib"], entry["module_wall"]
        rows.append(
            [
                entry["count"],
                f"{entry['input_bytes'] / 1024 / 1024:.2f} MiB",
                f"{rss / 1024:.1f} MiB" if rss else "?",
                f"{wall:.2f}" if wall is not None else "?",
            ]
        )
    text = table(header, rows, right_from=0)
    low, high = bench.memory[0], bench.memory[-1]
    if low["maxrss_kib"] and high["maxrss_kib"]:
        certificates = high["count"] - low["count"]
        rss_growth = (high["maxrss_kib"] - low["maxrss_kib"]) / certificates
        input_growth = (high["input_bytes"] - low["input_bytes"]) / 1024 / certificates
        text += (
            f"\n\nGrowth from N={low['count']} to N={high['count']}: {rss_growth:.1f} KiB of peak RSS per "
            f"certificate, for {input_growth:.2f} KiB of input per certificate."
        )
    return text


def module_process_table(bench: Bench) -> str:
    header = ["case", "run", "ansible-playbook wall s", "module process wall s", "module CPU s (user+sys)", "peak RSS"]
    rows = [
        [m.case, m.run, f"{m.wall:.2f}", f"{p['wall_seconds']:.2f}", f"{p['cpu_seconds']:.2f}"]
        + [f"{p['maxrss_kib'] / 1024:.1f} MiB"]
        for m in bench.at_loopback()
        if (p := m.module_process)
    ]
    return table(header, rows, right_from=2)


def distance_table(bench: Bench) -> str:
    header = ["case", "run", "N", "wall s", "s / cert", "requests", *REQUEST_KINDS, "TCP conns"]
    rows = [
        [DISTANCE_CASES[m.case], m.run, m.count, f"{m.wall:.2f}" + (" (FAILED)" if m.problems else "")]
        + [f"{m.wall / m.count:.4f}", m.total_requests, *(m.requests[kind] for kind in REQUEST_KINDS)]
        + [m.connections or "?"]
        for m in bench.at_distance()
    ]
    text = table(header, rows, right_from=2)
    if bench.peer_n != bench.n and bench.ran("peer", rtt_ms=bench.rtt_ms):
        peer_runs = [bench.find("peer", run, bench.rtt_ms) for run in RUNS]
        estimates = ", ".join(f"{bench.wall_at_n(m):.0f} s ({m.run} run)" for m in peer_runs)
        text += (
            f"\n\nThe peer ran N={bench.peer_n} certificates, not {bench.n}. Extrapolated to N={bench.n} "
            f"(an estimate, not a measurement): {estimates}, that is start-up + (wall - start-up) × "
            f"{bench.n} / {bench.peer_n}, with the start-up of one Ansible task measured above ({bench.startup:.2f} s)."
        )
    return text


def distance_ratios_table(bench: Bench) -> str:
    """Wall at N, one case against another, and issue 13's targets (set for RTT 10 ms, N=1000)."""
    rows = []
    for run in RUNS:
        for name, case, base, limit in DISTANCE_RATIOS:
            if not bench.ran(case, base, rtt_ms=bench.rtt_ms):
                continue
            measured = bench.find(case, run, bench.rtt_ms)
            compared = bench.find(base, run, bench.rtt_ms)
            value = bench.wall_at_n(measured) / bench.wall_at_n(compared)
            if measured.count != bench.n:
                name += f" (peer extrapolated from N={measured.count})"
            target, met = "", ""
            if limit is not None:
                target, met = f"≤ {limit}", "yes" if value <= limit else "no"
            rows.append([name, run, f"{value:.2f}", target, met])
    return table(["ratio of wall s", "run", "measured", "target", "met"], rows, right_from=2)


def fleet_table(bench: Bench) -> str:
    """Issue 27: the fleet's runs, each against the single batch of the same certificates, then the goal."""
    if not bench.ran(*FLEET_CASES):
        return "Not run: this run did not select the fleet case (`make bench CASES=fleet` runs it alone)."
    header = ["case", "run", "hosts", "wall s", "s / host", "× single batch", "requests", *REQUEST_KINDS]
    rows = []
    for m in sorted(bench.of_fleet(), key=lambda m: (list(FLEET_CASES).index(m.case), RUNS.index(m.run))):
        single = bench.find("fleet-single", m.run)
        wall = f"{m.wall:.2f}" + (" (FAILED)" if m.problems else "")
        rows.append(
            [FLEET_CASES[m.case], m.run, m.count, wall, f"{m.wall / m.count:.3f}", f"{ratio(m, single):.2f}"]
            + [m.total_requests, *(m.requests[kind] for kind in REQUEST_KINDS)]
        )
    goals = []
    for run in RUNS:
        fleet, single, per_host = (bench.find(case, run) for case in ("fleet", "fleet-single", "fleet-hosts"))
        value = ratio(fleet, single)
        goals.append(
            ["fleet / single batch", run, f"{value:.2f}", f"≤ {FLEET_GOAL}", "yes" if value <= FLEET_GOAL else "no"]
        )
        goals.append(["per host / fleet", run, f"{ratio(per_host, fleet):.1f}", "", ""])
    goal_table = table(["ratio of wall s", "run", "measured", "goal", "met"], goals, right_from=2)
    load = f"Load average (1 min) at the start of these runs: {load_range(bench.of_fleet())}."
    return f"{table(header, rows, right_from=2)}\n\n{goal_table}\n\n{load}"


# -- the report --------------------------------------------------------------------


def versions(bench_python: str) -> dict[str, str]:
    """The versions the timed processes ran on (bench venv), OpenBao's and ours."""
    probe = (
        "import importlib.metadata as m, json, platform\n"
        "from ansible_collections.community import hashi_vault\n"
        "names = ['ansible', 'ansible-core', 'hvac', 'cryptography', 'requests', 'urllib3']\n"
        "found = {name: m.version(name) for name in names}\n"
        "found['python'] = platform.python_version()\n"
        "manifest = json.load(open(list(hashi_vault.__path__)[0] + '/MANIFEST.json'))\n"
        "found['community.hashi_vault'] = manifest['collection_info']['version']\n"
        "print(json.dumps(found))\n"
    )
    found = json.loads(subprocess.run([bench_python, "-c", probe], capture_output=True, check=True).stdout)
    bao = subprocess.run([find_bao_binary(), "version"], capture_output=True, text=True, check=False).stdout.split()
    found["OpenBao"] = bao[1] if len(bao) > 1 else "unknown"
    found["certautopilot.vault"] = f"{file_field(REPO / 'galaxy.yml', 'version', ':')} ({source_state()})"
    return found


def source_state() -> str:
    """The commit measured, and whether the collection's code had uncommitted changes."""
    git = ["git", "-C", str(REPO)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True)
    changed = subprocess.run(
        [*git, "status", "--porcelain", "--", "plugins", "roles", "meta"], capture_output=True, text=True, check=True
    ).stdout.strip()
    return f"commit {head.stdout.strip()}" + (", with uncommitted changes in plugins/roles/meta" if changed else "")


def file_field(path: Path, name: str, separator: str) -> str:
    """The value of the first `name<separator>value` line of a file, 'unknown' if there is none."""
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            key, found, value = line.partition(separator)
            if found and key.strip() == name:
                return value.strip().strip('"')
    return "unknown"


def machine() -> dict[str, str]:
    memory_kib = file_field(Path("/proc/meminfo"), "MemTotal", ":").split()[0]
    return {
        "cpu": file_field(Path("/proc/cpuinfo"), "model name", ":"),
        "cores": str(os.cpu_count()),
        "memory": f"{int(memory_kib) / 1024 / 1024:.1f} GiB" if memory_kib.isdigit() else "unknown",
        "os": f"{platform.system()} {platform.release()}",
        "distribution": file_field(Path("/etc/os-release"), "PRETTY_NAME", "="),
    }


def load_range(measurements: list[Measurement]) -> str:
    loads = [m.load for m in measurements]
    return f"{min(loads):.2f} to {max(loads):.2f} ({os.cpu_count()} cores)" if loads else "-"


def render_report(bench: Bench, wall: float) -> str:
    distance_run = bool(bench.at_distance())
    template = string.Template((BENCH / "performance.md.in").read_text())
    return template.substitute(
        date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        n=bench.n,
        startup=f"{bench.startup:.2f}",
        startup_runs=", ".join(f"{s:.2f}" for s in bench.startup_seconds),
        results=results_table(bench),
        targets=targets_table(bench),
        memory=memory_table(bench),
        module_processes=module_process_table(bench),
        machine="\n".join(f"| {key} | {value} |" for key, value in machine().items()),
        versions="\n".join(f"| {key} | {value} |" for key, value in versions(bench.python).items()),
        bench_wall=f"{wall:.0f}",
        load=load_range(bench.at_loopback()),
        rtt_ms=f"{bench.rtt_ms:g}",
        peer_n=bench.peer_n,
        distance_results=distance_table(bench) if distance_run else "Not run: this run had `RTT_MS=0`.",
        distance_ratios=distance_ratios_table(bench) if distance_run else "Not run.",
        distance_load=load_range(bench.at_distance()),
        fleet_hosts=bench.fleet_hosts,
        fleet=fleet_table(bench),
    )


# -- main --------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=REPORT_N, help=f"certificates per run (default {REPORT_N})")
    parser.add_argument("--bench-python", required=True, help="the python of make bench-venv")
    parser.add_argument(
        "--rtt-ms",
        type=float,
        default=DEFAULT_RTT_MS,
        help=f"round-trip time the relay adds in the distance run (default {DEFAULT_RTT_MS:g}; 0: no distance run)",
    )
    parser.add_argument("--peer-n", type=int, help="the peer's certificates, extrapolated to --n (default: --n)")
    parser.add_argument(
        "--cases",
        type=selected_cases,
        default=SELECTABLE_CASES,
        help=f"the cases to run, comma-separated, of {', '.join(SELECTABLE_CASES)} (default: every case)",
    )
    parser.add_argument(
        "--fleet-hosts",
        type=int,
        default=DEFAULT_FLEET_HOSTS,
        help=f"hosts of the fleet case, one certificate each (default {DEFAULT_FLEET_HOSTS})",
    )
    args = parser.parse_args()
    if not Path(args.bench_python).exists():
        parser.error(f"{args.bench_python} does not exist: run make bench-venv")
    args.peer_n = args.peer_n or args.n
    if not 1 <= args.peer_n <= args.n or args.rtt_ms < 0:
        parser.error("--peer-n goes from 1 to --n, and --rtt-ms is not negative")
    if not 1 <= args.fleet_hosts <= 1000:
        parser.error("--fleet-hosts goes from 1 to 1000")
    return args


def selected_cases(value: str) -> tuple[str, ...]:
    """--cases: names of SELECTABLE_CASES, comma-separated, kept in the bench's own order."""
    names = {name.strip() for name in value.split(",") if name.strip()}
    unknown = names.difference(SELECTABLE_CASES)
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(SELECTABLE_CASES)}")
    return tuple(case for case in SELECTABLE_CASES if case in names)


def certificates_needed(args: argparse.Namespace) -> int:
    """Enough certificates for every selected case: N, the memory runs' counts with module, the fleet's hosts."""
    counts = [args.n] if set(args.cases).intersection(CASES) else []
    if "module" in args.cases:
        counts += MEMORY_COUNTS
    if "fleet" in args.cases:
        counts.append(args.fleet_hosts)
    return max(counts)


def lock_workdir() -> t.IO[str]:
    """Refuses to run beside another bench: they would share the work directory."""
    WORKDIR.mkdir(parents=True, exist_ok=True)
    lock = open(WORKDIR / ".lock", "w")  # noqa: SIM115 - held until the process exits
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise SystemExit(f"another bench is running in {WORKDIR}") from None
    return lock


def clean_workdir() -> None:
    for scratch in ("ansible-home", "bao", "bao-distance", "inputs", "logs", "module-processes.jsonl"):
        path = WORKDIR / scratch
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    # 0700: the inputs hold the private keys and the secret_id.
    for directory in ("ansible-home", "inputs", "logs"):
        (WORKDIR / directory).mkdir(mode=0o700)


def main() -> int:
    args = parse_args()
    started = time.perf_counter()
    # A terminated bench still stops its server (the finally below).
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(143))
    _lock = lock_workdir()
    clean_workdir()
    count = certificates_needed(args)
    print(f"generating {count} certificates ...", flush=True)
    certificates = make_certificates(count)
    python = str(Path(args.bench_python).absolute())
    bench = Bench(args.n, python, certificates, args.peer_n, cases=args.cases, fleet_hosts=args.fleet_hosts)
    bench.write_measuring_python()
    print("starting OpenBao ...", flush=True)
    try:
        bench.start_server(WORKDIR / "bao")
        bench.run_startup()
        for case in CASES:
            if case in args.cases:
                bench.run_case(case, args.peer_n if case == "peer" else args.n)
        if "module" in args.cases:
            bench.run_memory()
        if "fleet" in args.cases:
            bench.run_fleet()
        if args.rtt_ms and bench.distance_cases:
            bench.run_distance(args.rtt_ms)
    finally:
        bench.stop_server()
        # The audit logs (log_raw: every secret in clear) and the generated keys: 150 MB at N=1000.
        for scratch in ("bao", "bao-distance", "inputs"):
            shutil.rmtree(WORKDIR / scratch, ignore_errors=True)
    if bench.at_loopback():
        print(f"\n{results_table(bench)}\n\n{targets_table(bench)}\n\n{memory_table(bench)}\n")
    if bench.at_distance():
        print(f"distance run, RTT {bench.rtt_ms:g} ms:\n\n{distance_table(bench)}\n\n{distance_ratios_table(bench)}\n")
    if bench.of_fleet():
        print(f"fleet, {bench.fleet_hosts} hosts:\n\n{fleet_table(bench)}\n")
    raw = {"startup_seconds": bench.startup_seconds, "memory": bench.memory}
    raw |= {"rtt_ms": bench.rtt_ms, "peer_n": bench.peer_n, "cases": bench.cases, "fleet_hosts": bench.fleet_hosts}
    raw["measurements"] = [asdict(m) for m in bench.measurements]
    (WORKDIR / "results.json").write_text(json.dumps(raw, indent=1))
    wall = time.perf_counter() - started
    if args.n == REPORT_N and bench.ran(*REPORT_CASES):
        REPORT.write_text(render_report(bench, wall))
        print(f"wrote {REPORT.relative_to(REPO)}")
    else:
        print(f"{REPORT.relative_to(REPO)} not written: it holds a run at N={REPORT_N} of {', '.join(REPORT_CASES)}")
    print(f"bench wall time: {wall:.0f} s")
    return 1 if any(m.problems for m in bench.measurements) else 0


if __name__ == "__main__":
    raise SystemExit(main())

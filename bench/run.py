"""Performance benchmark: certautopilot.vault against hvac alone and against a vault_kv2_write loop.

One local OpenBao dev server (TLS, AppRole, file audit device) serves every
case. Each case delivers the same N certificates twice - first run (every
secret new), second run (every secret unchanged) - to a path prefix of its own:

- floor:  bench/floor.py, hvac in one Python process (login once, read + cas write)
- module: one ansible-playbook, one vault_cert_push task with certificates: (inline PEM)
- role:   one ansible-playbook running the cert_distribution role (certificate files)
- peer:   one ansible-playbook looping community.hashi_vault.vault_kv2_write over the batch

It records wall seconds, HTTP requests (from the audit log, by kind) and TCP
connections, the module process's peak memory (at N, and for the module alone
at --mem-n), checks that each run wrote exactly what it had to, prints a
table and writes docs/performance.md from bench/performance.md.in.

The timed processes run from the bench venv (make bench-venv: the `ansible`
package, which ships community.hashi_vault, on the same ansible-core, hvac and
cryptography as .venv). This script itself runs from .venv, which has the
test support code (tests/support: server, provisioning, certificates).

    make bench                 # N=1000
    make bench N=200           # another N
    .venv/bin/python bench/run.py --help
"""

from __future__ import annotations

import argparse
import collections
import datetime
import fcntl
import json
import os
import platform
import resource
import shutil
import signal
import statistics
import string
import subprocess
import sys
import time
import typing as t
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
sys.path.insert(0, str(REPO / "tests" / "support"))

import pki  # noqa: E402
from bao import ProvisionedBao  # noqa: E402

CASES = ("floor", "module", "role", "peer")
RUNS = ("first", "second")
RUN_LABEL = {"first": "first run (all new)", "second": "second run (all unchanged)"}
CASE_LABEL = {
    "floor": "floor: hvac, one process",
    "module": "ours: module alone (1 task)",
    "role": "ours: role cert_distribution",
    "peer": "peer: vault_kv2_write loop",
}
ROLE_TASKS = Path("roles", "cert_distribution", "tasks", "main.yml")
# As PLAYBOOKS['role.yml'] writes it (with !unsafe).
ROLE_PATH_TEMPLATE = "certs/bench-role/{{ cn }}"
MODULE_PROCESS_MARK = "AnsiballZ_vault_cert_push"
# Fixed requests of one of our runs: login, mount check, token revoke (+1 spare).
FIXED_REQUEST_ALLOWANCE = 4


# The playbooks, written into the work directory at run time (kept out of the tree that
# ansible-lint checks: peer.yml needs community.hashi_vault, which only the bench venv has).
PLAYBOOKS = {
    "startup.yml": """\
---
# The fixed cost of one Ansible task: ansible-playbook start-up, one play on
# localhost and one module run (ping) through AnsiballZ.
- name: Start-up of one Ansible task
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Run one trivial module
      ansible.builtin.ping:
""",
    "module.yml": """\
---
# Ours, module alone: the whole batch in one vault_cert_push task.
# Extra vars: bench_url, bench_ca_cert, bench_role_id, bench_secret_id,
# bench_items (list of {path, certificate, private_key, chain}).
- name: Push the batch with vault_cert_push
  hosts: localhost
  gather_facts: false
  module_defaults:
    group/certautopilot.vault.vault:
      url: "{{ bench_url }}"
      ca_cert: "{{ bench_ca_cert }}"
      auth_method: approle
      role_id: "{{ bench_role_id }}"
      secret_id: "{{ bench_secret_id }}"
  tasks:
    - name: Push every certificate in one task
      certautopilot.vault.vault_cert_push:
        certificates: "{{ bench_items }}"
""",
    "role.yml": """\
---
# Ours, the role: cert_distribution with its defaults (health check on), the
# certificates given as files on the controller, the secret path rendered from
# a template with each certificate's metadata.
# Extra vars: bench_url, bench_ca_cert, bench_role_id, bench_secret_id,
# bench_role_certificates (list of {certificate_file, private_key_file, chain_file}).
- name: Push the batch with the cert_distribution role
  hosts: localhost
  gather_facts: false
  roles:
    - role: certautopilot.vault.cert_distribution
      vars:
        cert_distribution_certs: "{{ bench_role_certificates }}"
        # !unsafe: the role renders it once per certificate, with that certificate's cn.
        cert_distribution_path_template: !unsafe "certs/bench-role/{{ cn }}"
        cert_distribution_vault:
          url: "{{ bench_url }}"
          ca_cert: "{{ bench_ca_cert }}"
          auth_method: approle
          role_id: "{{ bench_role_id }}"
          secret_id: "{{ bench_secret_id }}"
""",
    "peer.yml": """\
---
# The peer: community.hashi_vault.vault_kv2_write looped over the batch, one
# module run (and so one AppRole login) per certificate, read_before_write so
# that an unchanged certificate is not written again.
# Extra vars: as module.yml.
- name: Push the batch with a loop over vault_kv2_write
  hosts: localhost
  gather_facts: false
  module_defaults:
    community.hashi_vault.vault_kv2_write:
      url: "{{ bench_url }}"
      ca_cert: "{{ bench_ca_cert }}"
      auth_method: approle
      role_id: "{{ bench_role_id }}"
      secret_id: "{{ bench_secret_id }}"
      engine_mount_point: secret
  tasks:
    - name: Write each certificate
      community.hashi_vault.vault_kv2_write:
        path: "{{ item.path }}"
        read_before_write: true
        data:
          certificate: "{{ item.certificate }}"
          private_key: "{{ item.private_key }}"
          chain: "{{ item.chain }}"
          fullchain: "{{ item.certificate ~ item.chain }}"
      loop: "{{ bench_items }}"
      loop_control:
        label: "{{ item.path }}"
""",
}


# -- inputs -------------------------------------------------------------------


@dataclass(frozen=True)
class Certificate:
    cn: str
    certificate: str
    private_key: str


@dataclass
class Inputs:
    chain: str
    certificates: list[Certificate]
    directory: Path

    def items(self, prefix: str, count: int) -> list[dict[str, str]]:
        return [
            {
                "path": f"{prefix}/{cert.cn}",
                "certificate": cert.certificate,
                "private_key": cert.private_key,
                "chain": self.chain,
            }
            for cert in self.certificates[:count]
        ]

    def write_items(self, name: str, prefix: str, count: int) -> tuple[Path, int]:
        """A JSON extra-vars file {"bench_items": [...]}; returns it and the byte size of the item list."""
        items = self.items(prefix, count)
        path = self.directory / f"{name}.json"
        path.write_text(json.dumps({"bench_items": items}))
        return path, len(json.dumps(items))

    def write_files(self, count: int) -> Path:
        """cert.pem/key.pem per certificate and one chain.pem; returns the role's extra-vars file."""
        files = self.directory / "files"
        files.mkdir(exist_ok=True)
        chain = files / "chain.pem"
        chain.write_text(self.chain)
        listed = []
        for cert in self.certificates[:count]:
            folder = files / cert.cn
            folder.mkdir(exist_ok=True)
            (folder / "cert.pem").write_text(cert.certificate)
            key = folder / "key.pem"
            key.write_text(cert.private_key)
            key.chmod(0o600)
            listed.append(
                {"certificate_file": str(folder / "cert.pem"), "private_key_file": str(key), "chain_file": str(chain)}
            )
        path = self.directory / "role-certificates.json"
        path.write_text(json.dumps({"bench_role_certificates": listed}))
        return path


def make_inputs(directory: Path, count: int, key_type: str) -> Inputs:
    directory.mkdir(parents=True, exist_ok=True)
    root = pki.make_ca("certautopilot bench root CA", key_type=key_type)
    intermediate = pki.make_intermediate(root, "certautopilot bench intermediate CA", key_type=key_type)
    certificates = []
    for index in range(count):
        cn = f"bench-{index:05d}.example.com"
        leaf = pki.make_leaf(intermediate, cn, sans=(cn,), key_type=key_type)
        certificates.append(Certificate(cn=cn, certificate=leaf.cert_pem, private_key=leaf.key_pem))
    return Inputs(chain=intermediate.cert_pem, certificates=certificates, directory=directory)


# -- measurements ---------------------------------------------------------------


@dataclass
class Requests:
    total: int = 0
    by_kind: dict[str, int] = field(default_factory=collections.Counter)
    other_paths: dict[str, int] = field(default_factory=collections.Counter)
    connections: int = 0

    @classmethod
    def from_audit(cls, entries: list[dict[str, t.Any]]) -> Requests:
        counted = cls()
        peers = set()
        for entry in entries:
            request = entry.get("request", {})
            counted.total += 1
            kind = _request_kind(request)
            counted.by_kind[kind] += 1
            if kind == "other":
                counted.other_paths[f"{request.get('operation')} {request.get('path')}"] += 1
            peers.add((request.get("remote_address"), request.get("remote_port")))
        # remote_port is in the audit entries of OpenBao 2.x; without it the count means nothing.
        counted.connections = len(peers) if all(port for _addr, port in peers) else 0
        return counted


def _request_kind(request: dict[str, t.Any]) -> str:
    path = request.get("path", "")
    operation = request.get("operation", "")
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


@dataclass
class Measurement:
    case: str
    run: str
    count: int
    wall: float
    requests: Requests
    ok: bool
    problem: str = ""
    module_process: dict[str, t.Any] | None = None
    detail: dict[str, t.Any] = field(default_factory=dict)

    @property
    def per_certificate(self) -> float:
        return self.wall / self.count


# -- the runner -------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.workdir: Path = args.workdir
        self.python = str(Path(args.bench_python).absolute())
        self.bin_dir = Path(self.python).parent
        self.server: ProvisionedBao | None = None
        self.secret_id = ""
        self.role_id = ""
        self.rss_log = self.workdir / "module-processes.jsonl"
        self.measurements: list[Measurement] = []
        self.last_cpu = 0.0
        self.source_state = ""
        self.startup_seconds: list[float] = []
        self.memory: list[dict[str, t.Any]] = []

    # environment ---------------------------------------------------------------

    def prepare_ansible(self) -> None:
        ansible_dir = self.workdir / "ansible"
        if ansible_dir.exists():
            shutil.rmtree(ansible_dir)
        (ansible_dir / "home").mkdir(parents=True)
        link = ansible_dir / "collections" / "ansible_collections" / "certautopilot" / "vault"
        link.parent.mkdir(parents=True)
        link.symlink_to(self.args.collection_root.absolute(), target_is_directory=True)
        (ansible_dir / "ansible.cfg").write_text("[defaults]\n")
        (ansible_dir / "playbooks").mkdir()
        for name, text in PLAYBOOKS.items():
            (ansible_dir / "playbooks" / name).write_text(text)
        (ansible_dir / "inventory.ini").write_text(
            f"localhost ansible_connection=local ansible_python_interpreter={self.python}\n"
        )
        self.ansible_dir = ansible_dir
        self.measuring_interpreter = self._write_interpreter("none")

    def _write_interpreter(self, profile: str) -> Path:
        """A shell script Ansible takes for Python: it runs the module under bench/rss_exec.py."""
        script = self.ansible_dir / f"python-measured-{profile}"
        script.write_text(
            "#!/bin/sh\n"
            f'exec "{self.python}" -I -S "{BENCH / "rss_exec.py"}" "{self.python}" "{self.rss_log}" {profile} "$@"\n'
        )
        script.chmod(0o755)
        return script

    def ansible_env(self) -> dict[str, str]:
        strip = ("ANSIBLE_", "VAULT_", "BAO_", "PYTHONPATH")
        env = {key: value for key, value in os.environ.items() if not key.startswith(strip)}
        home = self.ansible_dir / "home"
        env.update(
            {
                "PATH": f"{self.bin_dir}{os.pathsep}{env.get('PATH', '')}",
                "ANSIBLE_CONFIG": str(self.ansible_dir / "ansible.cfg"),
                "ANSIBLE_HOME": str(home),
                "ANSIBLE_LOCAL_TEMP": str(home / "tmp"),
                "ANSIBLE_COLLECTIONS_PATH": str(self.ansible_dir / "collections"),
                "ANSIBLE_INVENTORY": str(self.ansible_dir / "inventory.ini"),
                "ANSIBLE_NOCOLOR": "1",
                "ANSIBLE_RETRY_FILES_ENABLED": "0",
            }
        )
        return env

    def conn_vars(self) -> Path:
        path = self.ansible_dir / "conn.json"
        path.write_text(
            json.dumps(
                {
                    "bench_url": self.server.addr,
                    "bench_ca_cert": self.server.ca_cert,
                    "bench_role_id": self.role_id,
                    "bench_secret_id": self.secret_id,
                }
            )
        )
        path.chmod(0o600)
        return path

    # server ----------------------------------------------------------------------

    def start_server(self) -> None:
        server_dir = self.workdir / "bao"
        if server_dir.exists():
            shutil.rmtree(server_dir)
        self.server = ProvisionedBao.start_dev(server_dir)
        self.server.provision()
        self.role_id = self.server.role_ids["certs"]
        self.secret_id = self.server.new_approle_secret_id("certs")

    def stop_server(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    # one timed run -------------------------------------------------------------

    def timed(self, command: list[str], *, env: dict[str, str], log_name: str, timeout: float) -> tuple[int, float]:
        log_path = self.workdir / "logs" / f"{log_name}.log"
        log_path.parent.mkdir(exist_ok=True)
        with open(log_path, "w", encoding="utf-8") as log:
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            started = time.perf_counter()
            completed = subprocess.run(  # noqa: S603 - our own command lines
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=str(self.workdir),
                timeout=timeout,
                check=False,
            )
            wall = time.perf_counter() - started
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
        # CPU of the whole process tree (ansible-playbook, its workers, the modules), not the server's.
        self.last_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        return completed.returncode, wall

    def measure(
        self,
        case: str,
        run: str,
        count: int,
        command: list[str],
        *,
        env: dict[str, str],
        expect_writes: int,
        log_name: str | None = None,
    ) -> Measurement:
        log_name = log_name or f"{case}-{run}-{count}"
        rss_before = self._rss_records()
        load_before = os.getloadavg()[0]
        mark = self.server.audit_mark()
        rc, wall = self.timed(command, env=env, log_name=log_name, timeout=120 + 3.0 * count)
        counted = Requests.from_audit(self.server.audit_requests(mark))
        problems = []
        if rc != 0:
            problems.append(f"exit code {rc} (see {self.workdir / 'logs' / log_name}.log)")
        if counted.by_kind["write"] != expect_writes:
            problems.append(f"{counted.by_kind['write']} writes, expected {expect_writes}")
        processes = [
            record
            for record in self._rss_records()[len(rss_before) :]
            if any(MODULE_PROCESS_MARK in arg for arg in record["argv"])
        ]
        measurement = Measurement(
            case=case,
            run=run,
            count=count,
            wall=wall,
            requests=counted,
            ok=not problems,
            problem="; ".join(problems),
            module_process=processes[-1] if processes else None,
        )
        measurement.detail["load_before"] = load_before
        measurement.detail["cpu_seconds"] = self.last_cpu
        status = "ok" if measurement.ok else f"FAILED: {measurement.problem}"
        other = f" other: {dict(counted.other_paths)}" if counted.other_paths else ""
        process = measurement.module_process
        module = (
            f"  module process {process['wall_seconds']:.2f} s wall, "
            f"{process['user_seconds'] + process['system_seconds']:.2f} s CPU, {process['maxrss_kib'] / 1024:.1f} MiB"
            if process
            else ""
        )
        print(
            f"  {case:<6} {run:<6} N={count:<5} {wall:8.2f} s ({self.last_cpu:.2f} s CPU)  {counted.total:6d} requests "
            f"{dict(counted.by_kind)}{other}{module}  load {load_before:.2f}  {status}",
            flush=True,
        )
        return measurement

    def _rss_records(self) -> list[dict[str, t.Any]]:
        if not self.rss_log.exists():
            return []
        with open(self.rss_log, encoding="utf-8") as log:
            return [json.loads(line) for line in log if line.strip()]

    # cases -----------------------------------------------------------------------

    def playbook(self, name: str, *extra_vars: Path, interpreter: Path | None = None) -> list[str]:
        command = [str(self.bin_dir / "ansible-playbook"), str(self.ansible_dir / "playbooks" / name)]
        for path in extra_vars:
            command += ["--extra-vars", f"@{path}"]
        if interpreter is not None:
            command += ["--extra-vars", f"ansible_python_interpreter={interpreter}"]
        return command

    def run_startup(self, repeat: int = 3) -> None:
        env = self.ansible_env()
        for attempt in range(repeat):
            rc, wall = self.timed(self.playbook("startup.yml"), env=env, log_name=f"startup-{attempt}", timeout=120)
            if rc != 0:
                raise SystemExit(f"the start-up playbook failed: see {self.workdir}/logs/startup-{attempt}.log")
            self.startup_seconds.append(wall)
        print(f"  start-up of one Ansible task: {self.startup:.2f} s (median of {repeat})", flush=True)

    @property
    def startup(self) -> float:
        return statistics.median(self.startup_seconds) if self.startup_seconds else 0.0

    def run_case(self, case: str, inputs: Inputs, count: int) -> None:
        env = self.ansible_env()
        conn = self.conn_vars()
        detail: dict[str, t.Any] = {}
        if case == "floor":
            items, _size = inputs.write_items("items-floor", "certs/bench-floor", count)
            command = [
                self.python,
                str(BENCH / "floor.py"),
                f"--url={self.server.addr}",
                f"--ca-cert={self.server.ca_cert}",
                f"--role-id={self.role_id}",
                f"--items={items}",
            ]
            env = {**env, "VAULT_SECRET_ID": self.secret_id}
        elif case == "module":
            items, size = inputs.write_items("items-module", "certs/bench-module", count)
            command = self.playbook("module.yml", conn, items, interpreter=self.measuring_interpreter)
            detail["input_bytes"] = size
        elif case == "role":
            role_tasks = self.args.collection_root / ROLE_TASKS
            if not role_tasks.exists():
                print(f"  role   skipped: {role_tasks} does not exist yet", flush=True)
                return
            command = self.playbook("role.yml", conn, inputs.write_files(count), interpreter=self.measuring_interpreter)
        elif case == "peer":
            items, _size = inputs.write_items("items-peer", "certs/bench-peer", count)
            command = self.playbook("peer.yml", conn, items)
        else:
            raise ValueError(case)
        for run in RUNS:
            expect = count if run == "first" else 0
            measured = self.measure(case, run, count, command, env=env, expect_writes=expect)
            measured.detail.update(detail)
            self.measurements.append(measured)

    def run_memory(self, inputs: Inputs, counts: t.Sequence[int]) -> None:
        """Peak memory of the module process, module alone, first run (all new) at each N."""
        env = self.ansible_env()
        conn = self.conn_vars()
        for count in counts:
            measured = next(
                (m for m in self.measurements if m.case == "module" and m.run == "first" and m.count == count),
                None,
            )
            if measured is None:
                items, size = inputs.write_items(f"items-mem-{count}", f"certs/bench-mem-{count}", count)
                command = self.playbook("module.yml", conn, items, interpreter=self.measuring_interpreter)
                measured = self.measure("module", "first", count, command, env=env, expect_writes=count)
                measured.detail["input_bytes"] = size
            process = measured.module_process or {}
            self.memory.append(
                {
                    "count": count,
                    "input_bytes": measured.detail.get("input_bytes", 0),
                    "maxrss_kib": process.get("maxrss_kib"),
                    "module_wall": process.get("wall_seconds"),
                    "ok": measured.ok,
                }
            )
            print(
                f"  memory N={count}: {process.get('maxrss_kib')} KiB peak RSS, "
                f"input {self.memory[-1]['input_bytes']} bytes",
                flush=True,
            )

    def run_profile(self, inputs: Inputs, count: int, mode: str, case: str = "module") -> list[Path]:
        """Run the module alone (or the role) under a profiler, first and second run; returns the profiles."""
        env = self.ansible_env()
        conn = self.conn_vars()
        if case == "role":
            # The role writes to certs/bench-role/: run it on a server that has not seen this batch yet.
            playbook, batch = "role.yml", inputs.write_files(count)
        else:
            playbook, batch = (
                "module.yml",
                inputs.write_items(f"items-profile-{count}", f"certs/bench-profile-{mode}", count)[0],
            )
        profiles = []
        if mode == "controller":
            # The whole tree: ansible-playbook, its worker, the module (each stack starts with its process).
            command = self.playbook(playbook, conn, batch)
            for run in RUNS:
                target = self.workdir / f"profile-controller-{case}-{run}-{count}.txt"
                sampler = [str(self.bin_dir / "py-spy"), "record", "--subprocesses", "--nonblocking", "--rate", "250"]
                sampler += ["--format", "raw", "--output", str(target), "--"]
                self.measure(
                    case,
                    run,
                    count,
                    sampler + command,
                    env=env,
                    expect_writes=count if run == "first" else 0,
                    log_name=f"profile-controller-{run}-{count}",
                )
                profiles.append(target)
            return profiles
        interpreter = self._write_interpreter(mode)
        command = self.playbook(playbook, conn, batch, interpreter=interpreter)
        for run in RUNS:
            measured = self.measure(
                case,
                run,
                count,
                command,
                env=env,
                expect_writes=count if run == "first" else 0,
                log_name=f"profile-{mode}-{case}-{run}-{count}",
            )
            if measured.module_process and measured.module_process.get("profile"):
                suffix = Path(measured.module_process["profile"]).suffix
                target = self.workdir / f"profile-{mode}-{case}-{run}-{count}{suffix}"
                shutil.move(measured.module_process["profile"], target)
                profiles.append(target)
        return profiles


# -- reporting ----------------------------------------------------------------------


def versions(bench_python: str, root: Path) -> dict[str, str]:
    probe = (
        "import json, importlib.metadata as m, platform\n"
        "names = ['ansible', 'ansible-core', 'hvac', 'cryptography', 'requests', 'urllib3']\n"
        "out = {n: m.version(n) for n in names}\n"
        "out['python'] = platform.python_version()\n"
        "import importlib.util, os\n"
        "spec = importlib.util.find_spec('ansible_collections.community.hashi_vault')\n"
        "manifest = os.path.join(list(spec.submodule_search_locations)[0], 'MANIFEST.json')\n"
        "out['community.hashi_vault'] = json.load(open(manifest))['collection_info']['version']\n"
        "print(json.dumps(out))\n"
    )
    found = json.loads(subprocess.run([bench_python, "-c", probe], capture_output=True, text=True, check=True).stdout)
    bao = subprocess.run([_bao_binary(), "version"], capture_output=True, text=True, check=False).stdout.split()
    found["OpenBao"] = bao[1] if len(bao) > 1 else "unknown"
    galaxy = (root / "galaxy.yml").read_text()
    found["certautopilot.vault"] = next(
        (line.split(":", 1)[1].strip() for line in galaxy.splitlines() if line.startswith("version:")), "unknown"
    )
    return found


def _source_state(root: Path) -> str:
    """The commit measured, and whether plugins/ or roles/ had uncommitted changes."""
    git = ["git", "-C", str(root)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False)
    if head.returncode != 0:
        return f"{root}, not a git checkout"
    dirty = subprocess.run(
        [*git, "status", "--porcelain", "--", "plugins", "roles", "meta"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return f"commit {head.stdout.strip()}" + (", with uncommitted changes in plugins/roles/meta" if dirty else "")


def _bao_binary() -> str:
    from bao import find_bao_binary

    return find_bao_binary()


def machine() -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory": memory,
        "os": f"{platform.system()} {platform.release()}",
        "distribution": _os_release(),
    }


def _os_release() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return "unknown"


def find(measurements: list[Measurement], case: str, run: str) -> Measurement | None:
    return next((m for m in measurements if m.case == case and m.run == run), None)


def _ratio(numerator: Measurement | None, denominator: Measurement | None) -> str:
    if not numerator or not denominator or denominator.wall <= 0:
        return ""
    return f"{numerator.wall / denominator.wall:.2f}"


def results_table(bench: Bench) -> str:
    rows = [
        "| case | run | N | wall s | s / cert | requests | login | mount | read | write | revoke | other "
        "| TCP conns | ours / floor | peer / ours |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    main = [m for m in bench.measurements if m.count == bench.args.n]
    for case in CASES:
        for run in RUNS:
            m = find(main, case, run)
            if m is None:
                if run == "first":
                    rows.append(f"| {CASE_LABEL[case]} | not run | | | | | | | | | | | | | |")
                continue
            kinds = m.requests.by_kind
            ours_floor = peer_ours = ""
            if case in ("module", "role"):
                ours_floor = _ratio(m, find(main, "floor", run))
                peer_ours = _ratio(find(main, "peer", run), m)
            wall = f"{m.wall:.2f}" + ("" if m.ok else " (FAILED)")
            rows.append(
                f"| {CASE_LABEL[case]} | {run} | {m.count} | {wall} | {m.per_certificate:.4f} | {m.requests.total} "
                f"| {kinds['login']} | {kinds['mount']} | {kinds['read']} | {kinds['write']} | {kinds['revoke']} "
                f"| {kinds['other']} | {m.requests.connections or '?'} | {ours_floor} | {peer_ours} |"
            )
    return "\n".join(rows)


def targets_table(bench: Bench) -> str:
    n = bench.args.n
    main = [m for m in bench.measurements if m.count == n]
    startup = bench.startup
    rows = ["| target | run | limit | measured | met |", "| --- | --- | --- | --- | --- |"]

    def add(name: str, run: str, limit: str, measured: str, met: bool | None) -> None:
        rows.append(f"| {name} | {run} | {limit} | {measured} | {'yes' if met else 'no' if met is False else 'n/a'} |")

    for run in RUNS:
        floor = find(main, "floor", run)
        for case, factor in (("module", 1.5), ("role", 2.0)):
            m = find(main, case, run)
            if m is None or floor is None:
                add(f"{case} wall ≤ {factor}× floor + start-up", run, "", "not run", None)
                continue
            limit = factor * floor.wall + startup
            add(
                f"{case} wall ≤ {factor}× floor + start-up",
                run,
                f"{factor} × {floor.wall:.2f} + {startup:.2f} = {limit:.2f} s",
                f"{m.wall:.2f} s",
                m.wall <= limit,
            )
        budget = n + FIXED_REQUEST_ALLOWANCE if run == "second" else 2 * n + FIXED_REQUEST_ALLOWANCE
        for case in ("module", "role"):
            m = find(main, case, run)
            if m is None:
                continue
            add(f"{case} requests", run, f"≤ {budget}", str(m.requests.total), m.requests.total <= budget)
        peer = find(main, "peer", run)
        for case in ("module", "role"):
            m = find(main, case, run)
            if m is None or peer is None:
                continue
            ratio = peer.wall / m.wall
            add(f"peer / {case}", run, "≥ 30", f"{ratio:.1f}", ratio >= 30)
    return "\n".join(rows)


def memory_table(bench: Bench) -> str:
    rows = [
        "| N | module input (JSON of certificates:) | module process peak RSS | module process wall s |",
        "| ---: | ---: | ---: | ---: |",
    ]
    for entry in sorted(bench.memory, key=lambda e: e["count"]):
        rss = entry["maxrss_kib"]
        rss_text = f"{rss / 1024:.1f} MiB" if rss else "?"
        wall = entry["module_wall"]
        wall_text = f"{wall:.2f}" if wall is not None else "?"
        rows.append(f"| {entry['count']} | {entry['input_bytes'] / 1024 / 1024:.2f} MiB | {rss_text} | {wall_text} |")
    known = [entry for entry in bench.memory if entry["maxrss_kib"]]
    if len(known) >= 2:
        low, high = min(known, key=lambda e: e["count"]), max(known, key=lambda e: e["count"])
        slope = (high["maxrss_kib"] - low["maxrss_kib"]) * 1024 / (high["count"] - low["count"])
        input_per_cert = (high["input_bytes"] - low["input_bytes"]) / (high["count"] - low["count"])
        rows.append("")
        rows.append(
            f"Growth from N={low['count']} to N={high['count']}: {slope / 1024:.1f} KiB of peak RSS per certificate, "
            f"for {input_per_cert / 1024:.2f} KiB of input per certificate."
        )
    return "\n".join(rows)


def module_process_table(bench: Bench) -> str:
    rows = [
        "| case | run | ansible-playbook wall s | module process wall s | module CPU s (user+sys) | peak RSS |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for m in bench.measurements:
        if m.count != bench.args.n or not m.module_process:
            continue
        p = m.module_process
        rows.append(
            f"| {m.case} | {m.run} | {m.wall:.2f} | {p['wall_seconds']:.2f} "
            f"| {p['user_seconds'] + p['system_seconds']:.2f} | {p['maxrss_kib'] / 1024:.1f} MiB |"
        )
    return "\n".join(rows)


def save_raw(bench: Bench, path: Path) -> None:
    """Every measurement as JSON, beside the report, for a second look."""
    raw = {
        "n": bench.args.n,
        "startup_seconds": bench.startup_seconds,
        "source": bench.source_state,
        "measurements": [
            {
                "case": m.case,
                "run": m.run,
                "count": m.count,
                "wall": m.wall,
                "ok": m.ok,
                "problem": m.problem,
                "requests": {"total": m.requests.total, **m.requests.by_kind, "connections": m.requests.connections},
                "module_process": m.module_process,
                **m.detail,
            }
            for m in bench.measurements
        ],
        "memory": bench.memory,
    }
    path.write_text(json.dumps(raw, indent=1))


def _shown_arguments(argv: list[str]) -> list[str]:
    """The command line for the report, without the interpreter path (it names this machine's tree)."""
    shown, skip = [], False
    for argument in argv:
        if skip:
            skip = False
        elif argument == "--bench-python":
            skip = True
        elif not argument.startswith("--bench-python="):
            shown.append(argument)
    return shown


def load_summary(bench: Bench) -> str:
    loads = [m.detail["load_before"] for m in bench.measurements if "load_before" in m.detail]
    if not loads:
        return "not recorded"
    return f"{min(loads):.2f} to {max(loads):.2f} ({os.cpu_count()} cores)"


def render_report(bench: Bench, started: float, finished_at: datetime.datetime) -> str:
    found_versions = versions(bench.python, bench.args.collection_root)
    found_versions["certautopilot.vault"] += f" ({bench.source_state})"
    box = machine()
    template = string.Template((BENCH / "performance.md.in").read_text())
    return template.substitute(
        date=finished_at.strftime("%Y-%m-%d %H:%M UTC"),
        n=bench.args.n,
        key_type=bench.args.key_type,
        startup=f"{bench.startup:.2f}",
        startup_runs=", ".join(f"{s:.2f}" for s in bench.startup_seconds),
        results=results_table(bench),
        targets=targets_table(bench),
        memory=memory_table(bench) if bench.memory else "(not measured in this run)",
        module_processes=module_process_table(bench),
        machine="\n".join(f"| {key} | {value} |" for key, value in box.items()),
        versions="\n".join(f"| {key} | {value} |" for key, value in found_versions.items()),
        bench_wall=f"{time.perf_counter() - started:.0f}",
        role_path_template=ROLE_PATH_TEMPLATE,
        load=load_summary(bench),
        command=" ".join(["bench/run.py", *_shown_arguments(bench.args.argv)]),
    )


# -- main -------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="certificates per run (default 1000)")
    parser.add_argument(
        "--cases", default=",".join(CASES), help=f"comma-separated subset of {','.join(CASES)} (default: all)"
    )
    parser.add_argument(
        "--mem-n",
        default="1,5000",
        help="extra N values at which to measure the module alone's peak memory, comma-separated; "
        "N itself is always included when the module case runs ('' for none; default 1,5000)",
    )
    parser.add_argument("--key-type", default="ec", choices=("ec", "rsa"), help="leaf key type (default ec)")
    parser.add_argument(
        "--profile",
        choices=("none", "py-spy", "cprofile", "controller"),
        default="none",
        help="instead of the benchmark: run the module alone at N under this profiler and print the top entries "
        "(py-spy, cprofile: the module process; controller: py-spy over ansible-playbook and all its children)",
    )
    parser.add_argument("--profile-case", choices=("module", "role"), default="module", help="what --profile runs")
    parser.add_argument(
        "--bench-python", default=str(REPO / "build" / "bench-venv" / "bin" / "python"), help="make bench-venv's python"
    )
    parser.add_argument("--workdir", type=Path, default=REPO / "build" / "bench", help="scratch directory")
    parser.add_argument(
        "--collection-root",
        type=Path,
        default=REPO,
        help="the collection to measure (default: this repository; a scratch copy to try a change)",
    )
    parser.add_argument(
        "--output",
        default=str(REPO / "docs" / "performance.md"),
        help="report to write ('' for none); written only by a full run (N=1000, every case) or with --force-output",
    )
    parser.add_argument("--force-output", action="store_true", help="write the report whatever N and cases")
    parser.add_argument(
        "--keep", action="store_true", help="keep the server's directory (audit log) and the generated certificates"
    )
    args = parser.parse_args(argv)
    args.argv = list(argv if argv is not None else sys.argv[1:])
    args.case_list = [case.strip() for case in args.cases.split(",") if case.strip()]
    unknown = set(args.case_list) - set(CASES)
    if unknown:
        parser.error(f"unknown case(s): {', '.join(sorted(unknown))}")
    args.mem_counts = sorted({int(value) for value in args.mem_n.split(",") if value.strip()})
    if not Path(args.bench_python).exists():
        parser.error(f"{args.bench_python} does not exist: run make bench-venv")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # A terminated bench still stops its server (the finally below).
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(143))
    started = time.perf_counter()
    args.workdir.mkdir(parents=True, exist_ok=True)
    # Two benches in one work directory would share inputs and audit log: refuse the second.
    lock = open(args.workdir / ".lock", "w")  # noqa: SIM115 - held until the process exits
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise SystemExit(f"another bench is running in {args.workdir}") from None
    bench = Bench(args)
    bench.source_state = _source_state(args.collection_root)
    if bench.rss_log.exists():
        bench.rss_log.unlink()
    largest = max([args.n, *args.mem_counts])
    print(f"generating {largest} {args.key_type} certificates ...", flush=True)
    inputs = make_inputs(args.workdir / "inputs", largest, args.key_type)
    bench.prepare_ansible()
    print("starting OpenBao ...", flush=True)
    bench.start_server()
    try:
        if args.profile != "none":
            for profile in bench.run_profile(inputs, args.n, args.profile, args.profile_case):
                print(f"profile written to {profile}")
                if profile.suffix == ".txt":
                    subprocess.run([sys.executable, str(BENCH / "profile_top.py"), str(profile)], check=False)
                else:
                    import pstats

                    pstats.Stats(str(profile)).sort_stats("cumulative").print_stats(30)
            return 0
        bench.run_startup()
        for case in args.case_list:
            bench.run_case(case, inputs, args.n)
        if "module" in args.case_list and args.mem_counts:
            bench.run_memory(inputs, sorted({*args.mem_counts, args.n}))
    finally:
        bench.stop_server()
        if not args.keep:
            # The audit log (every secret in clear, log_raw) and the generated keys: 150 MB at N=1000.
            for scratch in (args.workdir / "bao", args.workdir / "inputs"):
                shutil.rmtree(scratch, ignore_errors=True)
    report = render_report(bench, started, datetime.datetime.now(datetime.UTC))
    save_raw(bench, args.workdir / "results.json")
    table = results_table(bench)
    print()
    print(table)
    print()
    print(targets_table(bench))
    if bench.memory:
        print()
        print(memory_table(bench))
    complete = args.n == 1000 and set(args.case_list) == set(CASES)
    if args.output and (complete or args.force_output):
        Path(args.output).write_text(report)
        print(f"\nwrote {args.output}")
    elif args.output:
        print(f"\n{args.output} not written: it holds the full run (N=1000, every case); use --force-output")
    failed = [m for m in bench.measurements if not m.ok]
    print(f"bench wall time: {time.perf_counter() - started:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

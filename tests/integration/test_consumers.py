"""docs/consumers.md's OpenBao Agent configuration, run against the real server: the page cannot rot.

The agent block is taken from the page as written; only what names the reader's environment is
replaced (server address and CA, credential files, the files rendered, the secret), the render
interval becomes 1s and the reload command appends a line to a marker file. Each test pushes a
certificate with vault_cert_push (in-process, AppRole role certs), starts `bao agent` as a
local process that logs in with the read-only AppRole role `readonly`, and checks the files the
agent writes against the pushed PEMs, the key file's mode and the reloads. The agent is stopped
by the fixture whatever happens, and its log is scanned for the private keys and the secret_id.
Rendered files are compared by field name (`files_differing_from`), so a failing assertion never
prints a key.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import time
import typing as t
from datetime import UTC, datetime
from pathlib import Path

import pytest
from bao import find_bao_binary, hermetic_environ, stop_process
from leaks import assert_no_leak, find_leaks
from pki import Issued, make_ca, make_intermediate, make_leaf
from push_runs import single

REPO = Path(__file__).resolve().parents[2]
CONSUMERS_PAGE = REPO / "docs" / "consumers.md"
TESTED_BLOCK_MARK = "<!-- tests/integration/test_consumers.py runs the next block"
# What the page's example names, as it names it.
DOCS_ADDRESS = '"https://vault.example.com:8200"'
DOCS_CA_CERT = '"/etc/pki/vault-ca.pem"'
DOCS_CREDENTIALS_DIR = "/etc/openbao-agent/"
DOCS_FILES_DIR = "/etc/nginx/tls/www.example.com/"
DOCS_SECRET = "secret/data/certs/www.example.com"
DOCS_INTERVAL = 'static_secret_render_interval = "5m"'
DOCS_RELOAD = '["systemctl", "reload", "nginx"]'
RENDERED_FILES = {"cert.pem": "certificate", "key.pem": "private_key", "fullchain.pem": "fullchain"}

RENDER_INTERVAL = "1s"
START_TIMEOUT = 20.0
# Generous: with a 1s interval a renewal arrives within about a second.
RENEWAL_TIMEOUT = 20.0
POLL = 0.05


def agent_config_from_docs() -> str:
    """The fenced hcl block that follows the page's marker comment, verbatim."""
    page = CONSUMERS_PAGE.read_text(encoding="utf-8")
    assert TESTED_BLOCK_MARK in page, f"{CONSUMERS_PAGE} lost the marker of its tested block"
    match = re.match(r"[^\n]*\n```hcl\n(.*?)\n```", page.split(TESTED_BLOCK_MARK, 1)[1], re.DOTALL)
    assert match, f"no ```hcl block right after the marker in {CONSUMERS_PAGE}"
    return match.group(1)


def localise(config: str, replacements: t.Mapping[str, str]) -> str:
    """Replace each example value; a value the page no longer holds fails (the test would test nothing)."""
    for example, local in replacements.items():
        assert example in config, f"the agent block in {CONSUMERS_PAGE.name} no longer holds {example}"
        config = config.replace(example, local)
    return config


class RunningAgent:
    """One `bao agent` process rendering the page's templates into `files_dir`."""

    def __init__(
        self, *, process: subprocess.Popen[bytes], files_dir: Path, marker: Path, log_path: Path, secret_id: str
    ) -> None:
        self.process = process
        self.secret_id = secret_id
        self.files_dir = files_dir
        self.marker = marker
        self.log_path = log_path

    def rendered(self) -> dict[str, str]:
        """The payload field each rendered file holds now (a file not written yet is left out)."""
        found = {}
        for name, field in RENDERED_FILES.items():
            path = self.files_dir / name
            if path.exists():
                found[field] = path.read_text()
        return found

    def files_differing_from(self, expected: t.Mapping[str, str]) -> list[str]:
        """The payload fields whose file is missing or differs from `expected` (names only: the values hold keys)."""
        rendered = self.rendered()
        return sorted(field for field in expected if rendered.get(field) != expected[field])

    def reloads(self) -> int:
        return len(self.marker.read_text().splitlines()) if self.marker.exists() else 0

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for(
        self, condition: t.Callable[[], bool], *, timeout: float, what: str, secrets: t.Sequence[str]
    ) -> float:
        """Poll until `condition` holds; returns the seconds it took. Fails with the log, if it holds no secret."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if condition():
                return time.monotonic() - start
            assert self.process.poll() is None, f"bao agent exited {self.process.returncode}:\n{self.safe_log(secrets)}"
            time.sleep(POLL)
        raise AssertionError(f"{what}: not after {timeout:.0f}s; agent log:\n{self.safe_log(secrets)}")

    def safe_log(self, secrets: t.Sequence[str]) -> str:
        text = self.log()
        if find_leaks([text], *secrets):
            return "(withheld: the agent's log holds secret material)"
        return "\n".join(text.splitlines()[-30:])

    def stop(self) -> None:
        stop_process(self.process)


@pytest.fixture
def start_agent(bao, tmp_path: Path) -> t.Iterator[t.Callable[[str], RunningAgent]]:
    """Starts the page's agent for one secret path, logged in as AppRole role readonly; stops it afterwards."""
    started: list[RunningAgent] = []

    def start(path: str) -> RunningAgent:
        workdir = tmp_path / f"agent-{len(started)}"
        credentials = workdir / "credentials"
        credentials.mkdir(parents=True)
        credentials.chmod(0o700)
        secret_id = bao.new_approle_secret_id("readonly")
        for name, value in (("role_id", bao.role_ids["readonly"]), ("secret_id", secret_id)):
            (credentials / name).write_text(value)
            (credentials / name).chmod(0o600)
        files_dir = workdir / "tls"
        marker = workdir / "reloads"
        reload_command = ["sh", "-c", f"echo reloaded >> {shlex.quote(str(marker))}"]
        config = localise(
            agent_config_from_docs(),
            {
                DOCS_ADDRESS: json.dumps(bao.addr),
                DOCS_CA_CERT: json.dumps(bao.ca_cert),
                DOCS_CREDENTIALS_DIR: f"{credentials}/",
                DOCS_FILES_DIR: f"{files_dir}/",
                DOCS_SECRET: f"secret/data/{path}",
                DOCS_INTERVAL: f'static_secret_render_interval = "{RENDER_INTERVAL}"',
                DOCS_RELOAD: json.dumps(reload_command),
            },
        )
        config_path = workdir / "agent.hcl"
        config_path.write_text(config)
        log_path = workdir / "agent.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(  # noqa: S603 - argv built from our own paths
                [find_bao_binary(), "agent", f"-config={config_path}"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=hermetic_environ(),
                cwd=workdir,
            )
        agent = RunningAgent(
            process=process, files_dir=files_dir, marker=marker, log_path=log_path, secret_id=secret_id
        )
        started.append(agent)
        return agent

    try:
        yield start
    finally:
        for agent in started:
            agent.stop()


@pytest.fixture
def cert_path(request: pytest.FixtureRequest, bao) -> t.Iterator[str]:
    """A secret path below certs/ that no other test uses, removed afterwards."""
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower().removeprefix("test_")).strip("-")
    path = f"certs/consumers/{slug}"
    bao.api("DELETE", f"secret/metadata/{path}")
    yield path
    bao.api("DELETE", f"secret/metadata/{path}")


def issue(cn: str) -> tuple[Issued, Issued]:
    """A leaf for `cn` with a fresh key, and the intermediate that issued it."""
    intermediate = make_intermediate(make_ca("Consumers Test Root CA"), "Consumers Test Intermediate CA")
    return make_leaf(intermediate, cn, sans=(cn,)), intermediate


def payload(leaf: Issued, intermediate: Issued) -> dict[str, str]:
    """What the agent must render from a push of `leaf` with its chain (default fields)."""
    return {
        "certificate": leaf.cert_pem,
        "private_key": leaf.key_pem,
        "fullchain": leaf.cert_pem + intermediate.cert_pem,
    }


def push(modules, connection: dict[str, str], path: str, leaf: Issued, intermediate: Issued) -> None:
    """vault_cert_push of `leaf` with its chain to `path` (the harness scans it for the key and the secret_id)."""
    run = modules.run_module("vault_cert_push", {**connection, **single(path, leaf, intermediate)})
    assert not run.failed, run.msg
    assert run.changed


def current_version(bao, path: str) -> int:
    status, body = bao.api("GET", f"secret/data/{path}")
    assert status == 200, status
    return body["data"]["metadata"]["version"]


def written_at(bao, path: str, version: int) -> float:
    """When the server stored `version` of the secret, as a Unix time (its clock is ours)."""
    created = bao.kv_versions("secret", path)[str(version)]["created_time"]
    # RFC 3339 with nanoseconds: fromisoformat takes microseconds at most.
    seconds, _sep, fraction = created.rstrip("Z").partition(".")
    return datetime.fromisoformat(seconds).replace(tzinfo=UTC).timestamp() + float(f"0.{fraction or 0}")


@pytest.fixture
def connection(vault_conn: dict[str, str], approle_auth: dict[str, str]) -> dict[str, str]:
    """The pushes log in as AppRole role certs (write access); the agent as role readonly."""
    return {**vault_conn, **approle_auth}


def test_agent_renders_the_pushed_certificate_and_reloads_once(bao, modules, connection, cert_path, start_agent):
    leaf, intermediate = issue("consumers.example.com")
    push(modules, connection, cert_path, leaf, intermediate)
    assert current_version(bao, cert_path) == 1

    agent = start_agent(cert_path)
    secrets = [leaf.key_pem, agent.secret_id]
    expected = payload(leaf, intermediate)
    agent.wait_for(
        lambda: not agent.files_differing_from(expected) and agent.reloads() >= 1,
        timeout=START_TIMEOUT,
        what="the agent rendered the pushed certificate and ran the reload command",
        secrets=secrets,
    )

    assert (agent.files_dir / "key.pem").stat().st_mode & 0o777 == 0o600
    assert (agent.files_dir / "cert.pem").stat().st_mode & 0o777 == 0o644
    assert (agent.files_dir / "fullchain.pem").stat().st_mode & 0o777 == 0o644
    # More passes over an unchanged secret: nothing rewritten, no reload.
    time.sleep(2.5)
    assert agent.files_differing_from(expected) == []
    assert agent.reloads() == 1, "the three templates' reload command ran more than once for one render"
    assert_no_leak([agent.log()], *secrets)


def test_agent_renders_a_renewal_and_reloads_again(bao, modules, connection, cert_path, start_agent):
    leaf, intermediate = issue("renewed.example.com")
    push(modules, connection, cert_path, leaf, intermediate)
    agent = start_agent(cert_path)
    secrets = [leaf.key_pem, agent.secret_id]
    agent.wait_for(
        lambda: not agent.files_differing_from(payload(leaf, intermediate)) and agent.reloads() == 1,
        timeout=START_TIMEOUT,
        what="the agent rendered the first certificate",
        secrets=secrets,
    )

    renewal, renewal_intermediate = issue("renewed.example.com")
    secrets.append(renewal.key_pem)
    push(modules, connection, cert_path, renewal, renewal_intermediate)
    assert current_version(bao, cert_path) == 2
    expected = payload(renewal, renewal_intermediate)
    delay = agent.wait_for(
        lambda: not agent.files_differing_from(expected) and agent.reloads() == 2,
        timeout=RENEWAL_TIMEOUT,
        what="the agent rendered the renewal and ran the reload command again",
        secrets=secrets,
    )
    stored = written_at(bao, cert_path, 2)
    rendered = (agent.files_dir / "cert.pem").stat().st_mtime - stored
    reloaded = agent.marker.stat().st_mtime - stored
    print(
        f"renewal: files written {rendered:.2f}s and reload run {reloaded:.2f}s after the server stored version 2; "
        f"seen {delay:.2f}s after vault_cert_push returned (interval {RENDER_INTERVAL})"
    )

    assert (agent.files_dir / "key.pem").stat().st_mode & 0o777 == 0o600
    assert agent.files_differing_from(expected) == []
    assert agent.reloads() == 2
    assert_no_leak([agent.log()], *secrets)

"""Integration test fixtures: one real OpenBao server per session, and an Ansible runner.

The server code lives in tests/support/bao.py and the runner in
tests/support/ansible_runner.py; this file only wires them into pytest.

Under pytest-xdist (`make integration` runs two workers) a session is a worker: each worker starts its
own OpenBao server, so tests never share a server across workers. Every file runs on one worker
(its xdist_group is its file name, `--dist loadgroup`), so a module-scoped fixture is set up once, as in
a run without workers (test_write_outcomes.py's starts every selected scenario of the session). The files
whose proof depends on timing (elections, replication lag, races, slow or lost answers) share one group,
so they run on one worker, one at a time, never two of them competing for the CPU.
"""

from __future__ import annotations

import sys
import typing as t
from pathlib import Path

import pytest

SUPPORT_DIR = Path(__file__).resolve().parents[1] / "support"
if str(SUPPORT_DIR) not in sys.path:
    sys.path.insert(0, str(SUPPORT_DIR))

from ansible_runner import AnsibleRunner  # noqa: E402
from bao import ProvisionedBao  # noqa: E402
from module_call import ModuleCall  # noqa: E402
from module_process import ModuleProcess  # noqa: E402

# Files whose tests measure or race against time: a 3-node raft cluster and its elections, lagging standbys,
# concurrent writers, deadlines and delayed answers. One worker runs all of them, one at a time.
TIMING_SENSITIVE_FILES = frozenset(
    {
        "test_failover.py",
        "test_races.py",
        "test_concurrency.py",
        "test_consumers.py",
        "test_write_outcomes.py",
        "test_faults.py",
        "test_consistency.py",
    }
)
TIMING_GROUP = "timing"


def pytest_configure(config: pytest.Config) -> None:
    # pytest-xdist registers the mark too; this keeps a run without it (the matrix) free of warnings.
    config.addinivalue_line("markers", "xdist_group(name): run on the worker that runs the group")


# First: pytest-xdist's worker reads the mark in its own collection hook, to keep a group on one worker.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Each file into an xdist_group of its own, the timing-sensitive ones into one (a no-op without pytest-xdist)."""
    for item in items:
        name = item.path.name
        item.add_marker(pytest.mark.xdist_group(TIMING_GROUP if name in TIMING_SENSITIVE_FILES else name))


@pytest.fixture(scope="session")
def bao(tmp_path_factory: pytest.TempPathFactory) -> t.Iterator[ProvisionedBao]:
    """A running OpenBao dev server (TLS, file audit device) with the operator setup applied."""
    server = ProvisionedBao.start_dev(tmp_path_factory.mktemp("bao"))
    try:
        server.provision()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def vault_conn(bao: ProvisionedBao) -> dict[str, str]:
    """Connection options for the collection's modules."""
    return {"url": bao.addr, "ca_cert": bao.ca_cert}


@pytest.fixture
def approle_auth(bao: ProvisionedBao) -> dict[str, str]:
    """AppRole auth options for role certs, with a fresh secret_id."""
    return {
        "auth_method": "approle",
        "role_id": bao.role_ids["certs"],
        "secret_id": bao.new_approle_secret_id("certs"),
    }


# Every runner scans each run for the secrets it was given and the tokens the server's audit log shows it used.


@pytest.fixture(scope="session")
def modules(tmp_path_factory: pytest.TempPathFactory, bao: ProvisionedBao) -> ModuleCall:
    """Runs a module's main() in this process against the server: decisions, refusals, masking, outcomes."""
    return ModuleCall(tmp_path_factory.mktemp("module-call"), audit=bao)


@pytest.fixture(scope="session")
def ansible(tmp_path_factory: pytest.TempPathFactory, bao: ProvisionedBao) -> AnsibleRunner:
    """Runs playbooks with ansible-playbook on localhost: what only the controller does (actions, roles, display)."""
    return AnsibleRunner(tmp_path_factory.mktemp("ansible"), audit=bao)


@pytest.fixture(scope="session")
def module_process(tmp_path_factory: pytest.TempPathFactory, bao: ProvisionedBao) -> ModuleProcess:
    """Runs one module as its own process, without a playbook, capturing its syslog lines."""
    return ModuleProcess(tmp_path_factory.mktemp("module-process"), audit=bao)

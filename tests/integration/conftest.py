"""Integration test fixtures: one real OpenBao server per session, and an Ansible runner.

The server code lives in tests/support/bao.py and the runner in
tests/support/ansible_runner.py; this file only wires them into pytest.

Under pytest-xdist (`make integration` runs two workers) a session is a worker: each worker starts its
own OpenBao server (and, when a test asks, its own raft cluster), so tests never share a server across
workers. With `--dist loadgroup` the work units handed to the workers are chosen here
(`pytest_xdist_make_scheduler`): each file is one unit, so a module-scoped fixture is set up once, as in a
run without workers (test_write_outcomes.py's runs each scenario once, for every test that checks it); the files
whose proof depends on timing (elections, replication lag, races, slow or lost answers) are one unit
together, so they run on one worker, one at a time, never two of them competing for the CPU, and share that
worker's cluster.

pytest-xdist's own `xdist_group` mark cannot do this here: its worker renames each test (`nodeid@group`)
through an attribute pytest 9 no longer reads, so every test would be scheduled on its own.
"""

from __future__ import annotations

import re
import sys
import typing as t
import uuid
from pathlib import Path

import pytest

SUPPORT_DIR = Path(__file__).resolve().parents[1] / "support"
if str(SUPPORT_DIR) not in sys.path:
    sys.path.insert(0, str(SUPPORT_DIR))

from cluster import RaftCluster  # noqa: E402
from harness_fixtures import ansible, approle_auth, bao, module_process, modules, vault_conn  # noqa: E402, F401  # pylint: disable=unused-import

# Files whose tests measure or race against time: a 3-node raft cluster and its elections, lagging standbys,
# concurrent writers, deadlines and delayed answers. One worker runs all of them, one at a time. (The write-outcome
# matrix's faults are rules on answers, not delays, and the consumers' waits are generous: they run beside.)
TIMING_SENSITIVE_FILES = frozenset(
    {
        "test_failover.py",
        "test_races.py",
        "test_concurrency.py",
        "test_faults.py",
        "test_consistency.py",
    }
)
TIMING_GROUP = "timing"


def work_unit(nodeid: str) -> str:
    """The unit of work a test belongs to under pytest-xdist: its file, or TIMING_GROUP for a timing-sensitive one."""
    path = nodeid.split("::", 1)[0]
    return TIMING_GROUP if Path(path).name in TIMING_SENSITIVE_FILES else path


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: t.Any) -> t.Any:
    """With `--dist loadgroup` (make integration): whole work units to each worker, biggest first.

    Other modes stay pytest-xdist's (the matrix's smoke, `-n 2` alone, spreads its independent tests one by one).
    """
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling  # noqa: PLC0415 - only under pytest-xdist

    class ByWorkUnit(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    return ByWorkUnit(config, log)


@pytest.fixture(scope="session")
def raft_cluster(tmp_path_factory: pytest.TempPathFactory) -> t.Iterator[RaftCluster]:
    """A 3-node raft cluster (tests/support/cluster.py) for the whole session, started by the first test that asks.

    OpenBao's default raft timing (what users run, and what the default retries must outlast), with a lag relay
    on the last node (no lag until a test sets one). Tests use it through ``cluster``.
    """
    raft = RaftCluster.start(tmp_path_factory.mktemp("raft"), lagging=True)
    try:
        yield raft
    finally:
        raft.stop()


@pytest.fixture
def cluster(raft_cluster: RaftCluster) -> t.Iterator[RaftCluster]:
    """The session's cluster, healthy when the test starts and healed when it ends (nodes killed by the test
    restarted, lag removed, the lagging node a standby), so that the next test finds it as this one did."""
    raft_cluster.heal()
    yield raft_cluster
    raft_cluster.heal()


@pytest.fixture
def cluster_prefix(request: pytest.FixtureRequest) -> str:
    """A secret path prefix of the test's own: the cluster, like the server, outlives every test."""
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower().removeprefix("test_"))[:40].strip("-")
    return f"certs/{slug}-{uuid.uuid4().hex[:8]}"

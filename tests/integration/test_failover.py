"""Failover: a batch pushed through a standby of a 3-node raft cluster while nodes die.

The cluster (tests/support/cluster.py) runs real `bao server` processes on
loopback, with OpenBao's default raft timing (an election took 11 to 22 s
here), which the default retries must ride through. The batch goes to a
standby's address, as a user behind a load balancer would, and nodes are
killed with SIGKILL once part of it is written. Whatever the run reports, the
server must agree: every certificate written exactly once, or a failure that
names each certificate not written, which a rerun then writes and nothing else.

The cluster is the session's (tests/integration/conftest.py: `cluster`), healed after each test. The push
runs in-process (the `modules` fixture) on a thread of its own while the test kills nodes: the controller
plays no part, and no other module runs meanwhile.
"""

from __future__ import annotations

import threading
import time
import typing as t
from dataclasses import dataclass

import pki
from cluster import ClusterNode, RaftCluster
from fault_proxy import FaultProxy

BATCH_SIZE = 200
KILL_AFTER_WRITES = 40
# The batch's items in flight at once (the module's default), and the seconds each read through the relay
# waits: 200 reads, 8 at a time, make the batch last at least 4 s.
CONCURRENCY = 8
READ_DELAY = 0.16
MOUNT = "secret"
WATCH_TIMEOUT = 120.0
# Retries for the batch that must run out of them: waits of 0.5, 1 and 2 s. The default (8, about 40 s in all)
# only makes it wait longer for the same report.
SHORT_RETRIES = 3


def certificate_batch(prefix: str, size: int = BATCH_SIZE) -> list[dict[str, str]]:
    """`size` distinct certificates from one CA, with EC keys (generated in microseconds)."""
    root = pki.make_ca("CertAutoPilot Failover Root CA")
    intermediate = pki.make_intermediate(root, "CertAutoPilot Failover Intermediate CA")
    batch = []
    for index in range(size):
        name = f"host-{index:03d}"
        leaf = pki.make_leaf(intermediate, f"{name}.example.com", sans=(f"{name}.example.com",))
        batch.append(
            {
                "path": f"{prefix}/{name}",
                "certificate": leaf.cert_pem,
                "private_key": leaf.key_pem,
                "chain": intermediate.cert_pem,
            }
        )
    return batch


def push_args(cluster: RaftCluster, entry: ClusterNode, batch: list[dict[str, str]]) -> dict[str, t.Any]:
    """Module arguments for a batch sent to `entry`, with the default retries."""
    return {
        "url": entry.addr,
        "ca_cert": cluster.ca_cert,
        "auth_method": "approle",
        "role_id": cluster.role_id,
        "secret_id": cluster.new_approle_secret_id(),
        "certificates": batch,
        "concurrency": CONCURRENCY,
    }


def written_count(node: ClusterNode, prefix: str) -> int:
    """How many secrets under `prefix` exist, as `node` sees them (a standby answers from its own replica)."""
    try:
        status, body = node.server.api("LIST", f"{MOUNT}/metadata/{prefix}", timeout=2)
    except OSError:
        return 0
    return len(body["data"]["keys"]) if status == 200 else 0


def version_counts(node: ClusterNode, paths: t.Iterable[str]) -> dict[str, int]:
    return {path: len(node.server.kv_versions(MOUNT, path)) for path in paths}


@dataclass
class KilledMidRun:
    run: t.Any
    written_before_kill: int
    seconds: float
    new_active: ClusterNode | None = None
    election_seconds: float = 0.0


def push_while_killing(
    cluster: RaftCluster,
    modules,
    *,
    entry: ClusterNode,
    victims: list[ClusterNode],
    prefix: str,
    args: dict,
    await_election: bool = False,
) -> KilledMidRun:
    """Run the batch in the background; SIGKILL `victims` once KILL_AFTER_WRITES secrets exist.

    With `await_election`, also time how long the survivors take to present a new active node.
    """
    outcome: dict[str, t.Any] = {}
    # On an idle machine 200 certificates take well under a second: a relay that slows each read a little keeps
    # the batch running long enough to kill a node mid-run, whatever the load. Redirects pass through it.
    relay = FaultProxy(entry.addr, cluster.ca_cert)
    relay.add_rule("GET", f"{MOUNT}/data/", delay=READ_DELAY, times=None)
    args = {**args, "url": relay.url}
    pushing = threading.Thread(target=lambda: outcome.update(run=modules.run_module("vault_cert_push", args)))
    started = time.monotonic()
    pushing.start()
    try:
        deadline = started + WATCH_TIMEOUT
        while written_count(entry, prefix) < KILL_AFTER_WRITES and pushing.is_alive():
            assert time.monotonic() < deadline, "the batch wrote too little to kill a node mid-run"
            time.sleep(0.02)
        assert pushing.is_alive(), "the batch finished before a node could be killed"
        result = KilledMidRun(run=None, written_before_kill=written_count(entry, prefix), seconds=0.0)
        for victim in victims:
            cluster.kill(victim)
        if await_election:
            result.new_active, result.election_seconds = cluster.wait_for_new_active(victims[0])
    finally:
        pushing.join(timeout=300)
        relay.close()
    result.run, result.seconds = outcome["run"], time.monotonic() - started
    return result


def test_batch_through_standby_rides_through_the_election_when_the_active_node_dies(cluster, modules, cluster_prefix):
    prefix = cluster_prefix
    batch = certificate_batch(prefix)
    paths = [item["path"] for item in batch]
    old_active = cluster.active()
    entry = cluster.standbys()[0]

    outcome = push_while_killing(
        cluster,
        modules,
        entry=entry,
        victims=[old_active],
        prefix=prefix,
        args=push_args(cluster, entry, batch),
        await_election=True,
    )

    print(
        f"\nkilled {old_active.name} with {outcome.written_before_kill} written; {outcome.new_active.name} active "
        f"{outcome.election_seconds:.1f}s later; the run took {outcome.seconds:.1f}s"
    )
    assert not outcome.run.failed, outcome.run.msg
    assert [result["path"] for result in outcome.run.result["results"]] == paths
    # The write in flight at the kill counts as this run's change too.
    misreported = [
        result for result in outcome.run.result["results"] if not result["changed"] or result["version"] != 1
    ]
    assert misreported == []
    counts = version_counts(outcome.new_active, paths)
    assert {path: count for path, count in counts.items() if count != 1} == {}


def test_batch_that_outlasts_its_retries_names_every_certificate_not_written(cluster, modules, cluster_prefix):
    prefix = cluster_prefix
    batch = certificate_batch(prefix)
    paths = [item["path"] for item in batch]
    entry = cluster.standbys()[0]
    args = push_args(cluster, entry, batch)
    # Without the active node and the other standby, no leader can be elected.
    victims = [node for node in cluster.nodes if node is not entry and node.alive]

    outcome = push_while_killing(
        cluster, modules, entry=entry, victims=victims, prefix=prefix, args={**args, "retries": SHORT_RETRIES}
    )

    run = outcome.run
    print(f"\nkilled {[node.name for node in victims]}; after {outcome.seconds:.1f}s the run said: {run.msg[:400]}")
    assert run.failed
    for node in cluster.nodes:
        cluster.restart(node)
    active = cluster.active()
    counts = version_counts(active, paths)
    assert set(counts.values()) <= {0, 1}, {path: count for path, count in counts.items() if count > 1}
    missing = [path for path, count in counts.items() if count == 0]
    delivered = [result["path"] for result in run.result["results"]]
    # The write in flight when the retries ran out is named apart: it may have landed after all.
    unknown, not_written = run.result["outcome_unknown"], run.result["not_written"]
    assert missing
    assert all(path in run.msg for path in unknown + not_written), run.msg
    assert set(not_written) <= set(missing) <= set(unknown + not_written)
    assert delivered + unknown + not_written == paths
    assert all(counts[path] == 1 for path in delivered)

    rerun = modules.run_module("vault_cert_push", {**args, "secret_id": cluster.new_approle_secret_id()})

    assert not rerun.failed, rerun.msg
    # Data is written again only where it is missing (no owner: no mark is written at all).
    rewritten = {result["path"] for result in rerun.result["results"] if "certificate" in result["changed_fields"]}
    assert rewritten == set(missing)
    assert not any(result["owner"] for result in rerun.result["results"])
    assert set(version_counts(active, paths).values()) == {1}

"""Read-your-writes through a lagging standby of a real 3-node OpenBao raft cluster.

The cluster (tests/support/cluster.py, `lagging=True`) has one standby whose
replication runs LAG seconds behind the active node (tests/support/lag_relay.py
on its advertised cluster_addr). Every module run here is pointed at that
standby, as a load balancer may do: without X-Vault-Index the standby answers
reads from its stale replica, and even the token a login just created is
unknown there (on main the first push fails with "mount 'secret' not found, or
the token may not use it").

The cluster is the session's (tests/integration/conftest.py), given lag for each test here and healed after
it. Module runs go in-process, except the token lifecycle, which hands the consistency_index from task to task
the way a playbook does.
"""

from __future__ import annotations

import json
import runpy
import time
import typing as t
import uuid
from pathlib import Path

import pki
import pytest
import requests
from cluster import RaftCluster
from fault_proxy import FaultProxy

LAG = 2.0
OWNER = "consistency"
CERT_EXPIRY_SOURCE = "ansible_collections/certautopilot/vault/extensions/eda/plugins/event_source/cert_expiry.py"
MOUNT = "secret"


@pytest.fixture
def lagging(cluster: RaftCluster) -> RaftCluster:
    """The session's cluster with its last node a standby LAG seconds behind (`cluster` heals it afterwards)."""
    cluster.make_standby(cluster.lagging)
    cluster.set_lag(LAG)
    return cluster


@pytest.fixture(scope="module")
def credentials(raft_cluster: RaftCluster) -> dict[str, str]:
    """An AppRole secret_id and a `certs` token, made at the active node and replicated to the lagging one."""
    secret_id = raft_cluster.new_approle_secret_id()
    active = raft_cluster.active().server
    status, body = active.api("POST", "auth/token/create", {"policies": ["certs"], "ttl": "30m"})
    assert status == 200, body
    _wait_until_replicated(raft_cluster)
    return {"secret_id": secret_id, "token": body["auth"]["client_token"]}


def _wait_until_replicated(cluster: RaftCluster) -> None:
    """Until the lagging node has everything written so far: a KV read there answers from its own replica."""
    marker = f"{MOUNT}/data/replication-marker/{uuid.uuid4().hex}"
    assert cluster.active().server.api("POST", marker, {"data": {"written": "now"}})[0] == 200
    deadline = time.monotonic() + 4 * LAG + 10
    while time.monotonic() < deadline:
        if cluster.lagging.server.api("GET", marker)[0] == 200:
            return
        time.sleep(0.2)
    raise AssertionError("the lagging standby never caught up")


def _api(node_addr: str, cluster: RaftCluster, method: str, path: str, **kwargs: t.Any) -> requests.Response:
    headers = {"X-Vault-Token": cluster.root_token, **kwargs.pop("headers", {})}
    return requests.request(method, f"{node_addr}/v1/{path}", headers=headers, verify=cluster.ca_cert, **kwargs)


def _leaf(name: str) -> dict[str, str]:
    leaf = pki.make_leaf(None, f"{name}.example.com", sans=(f"{name}.example.com",))
    return {"certificate": leaf.cert_pem, "private_key": leaf.key_pem}


def _connection(cluster: RaftCluster, credentials: dict[str, str], auth: str, url: str | None = None) -> dict:
    connection = {"url": url or cluster.lagging.addr, "ca_cert": cluster.ca_cert}
    if auth == "token":
        return {**connection, "auth_method": "token", "token": credentials["token"]}
    return {**connection, "auth_method": "approle", "role_id": cluster.role_id, "secret_id": credentials["secret_id"]}


def test_the_lagging_standby_serves_stale_reads(lagging: RaftCluster) -> None:
    """Nothing below passes vacuously: a write at the active node is not readable at once on the lagging node."""
    cluster = lagging
    path = f"{MOUNT}/data/stale-proof/{uuid.uuid4().hex}"
    write = _api(cluster.active().addr, cluster, "POST", path, json={"data": {"v": "1"}})
    assert write.status_code == 200, write.text
    index = write.headers.get("X-Vault-Index")
    assert index, "OpenBao 2.7 answers a write with X-Vault-Index"

    assert _api(cluster.lagging.addr, cluster, "GET", path).status_code == 404
    # With the write's index the node refuses to answer from its replica (429), or forwards when asked to.
    assert _api(cluster.lagging.addr, cluster, "GET", path, headers={"X-Vault-Index": index}).status_code == 429
    forwarded = _api(
        cluster.lagging.addr,
        cluster,
        "GET",
        path,
        headers={"X-Vault-Index": index, "X-Vault-Inconsistent": "forward-active-node"},
    )
    assert forwarded.status_code == 200
    assert forwarded.json()["data"]["data"] == {"v": "1"}


# A lifecycle step: its name, the module, its own arguments, and the options it takes from an earlier step's
# result (option -> (step, field)).
Step = tuple[str, str, dict[str, t.Any], dict[str, tuple[str, str]]]


def _lifecycle_steps(path: str) -> list[Step]:
    """push -> push (unchanged) -> info -> push (new) -> rollback guarded by it -> retire guarded by that.

    All with an owner: retire takes out only a marked secret, and the mark is read through the lagging node too.
    """
    first, second = _leaf("first"), _leaf("second")
    secret = {"path": path, "owner": OWNER}
    return [
        ("push", "vault_cert_push", {**secret, **first}, {}),
        ("push unchanged", "vault_cert_push", {**secret, **first}, {}),
        ("info", "vault_cert_info", {"paths": [path], "owner": OWNER}, {}),
        ("push new", "vault_cert_push", {**secret, **second}, {}),
        ("rollback", "vault_cert_rollback", secret, {"current_version": ("push new", "version")}),
        ("retire", "vault_cert_retire", secret, {"current_version": ("rollback", "version")}),
    ]


def _with_index_passed(steps: list[Step]) -> list[Step]:
    """Each step after the first given the consistency_index the step before it returned."""
    return [
        (name, module, args, {**taken, "consistency_index": (steps[index - 1][0], "consistency_index")})
        if index
        else (name, module, args, taken)
        for index, (name, module, args, taken) in enumerate(steps)
    ]


def _run_steps_in_process(modules: t.Any, connection: dict[str, t.Any], steps: list[Step]) -> dict[str, dict]:
    results: dict[str, dict] = {}
    for name, module, args, taken in steps:
        given = {option: results[step][field] for option, (step, field) in taken.items()}
        run = modules.run_module(module, {**connection, **args, **given})
        assert not run.failed, f"{name}: {run.msg}"
        results[name] = run.result
    return results


def _run_steps_as_playbook(ansible: t.Any, tmp_path: Path, connection: dict[str, t.Any], steps: list[Step]) -> dict:
    """The steps as the tasks of one play: what a step takes from an earlier one is templated from its register."""
    registers = {name: f"step_{index}" for index, (name, _module, _args, _taken) in enumerate(steps)}
    tasks = [
        {
            "name": name,
            f"certautopilot.vault.{module}": {
                **args,
                **{option: f"{{{{ {registers[step]}.{field} }}}}" for option, (step, field) in taken.items()},
            },
            "register": registers[name],
        }
        for name, module, args, taken in steps
    ]
    play = {
        "hosts": "localhost",
        "gather_facts": False,
        "module_defaults": {"group/certautopilot.vault.vault": connection},
        "tasks": tasks,
    }
    playbook = tmp_path / "consistency.yml"
    playbook.write_text(json.dumps([play]))
    run = ansible.run_playbook(playbook)
    results = {task.task: task.result for task in run.tasks}
    assert not run.failed, {name: result.get("msg") for name, result in results.items()}
    return results


@pytest.mark.parametrize("auth", ["approle", "token"])
def test_runs_through_the_lagging_standby_see_the_writes_before_them(
    lagging: RaftCluster, credentials: dict[str, str], modules: t.Any, ansible: t.Any, tmp_path: Path, auth: str
) -> None:
    """AppRole runs see everything before their login; token runs what the consistency_index given covers.

    A token run is handed the index as a playbook hands it: templated from the register of the task before, which
    the controller must pass on as the string it is (ansible-playbook, module_defaults for the connection). An
    AppRole run is handed nothing, so its runs go in-process.
    """
    cluster = lagging
    path = f"certs/consistency/{auth}-{uuid.uuid4().hex[:8]}"
    connection = _connection(cluster, credentials, auth)
    if auth == "token":
        results = _run_steps_as_playbook(ansible, tmp_path, connection, _with_index_passed(_lifecycle_steps(path)))
    else:
        results = _run_steps_in_process(modules, connection, _lifecycle_steps(path))
    assert results["push"]["changed"] and results["push"]["version"] == 1
    assert results["push"]["consistency_index"]
    assert not results["push unchanged"]["changed"], results["push unchanged"]
    assert results["push unchanged"]["version"] == 1
    assert [cert["version"] for cert in results["info"]["certificates"]] == [1]
    assert results["push new"]["changed"] and results["push new"]["version"] == 2
    assert results["rollback"]["changed"] and results["rollback"]["version"] == 3
    assert results["retire"]["changed"]
    versions = cluster.active().server.kv_versions(MOUNT, path)
    assert versions["3"]["deletion_time"], versions


def test_a_push_right_after_a_write_at_the_active_node_rewrites_it(
    lagging: RaftCluster, credentials: dict[str, str], modules: t.Any
) -> None:
    """Someone else's write reaches the active node between two AppRole pushes: the second push must see it."""
    cluster = lagging
    path = f"certs/consistency/foreign-{uuid.uuid4().hex[:8]}"
    arguments = {**_connection(cluster, credentials, "approle"), "path": path, **_leaf("foreign")}

    first = modules.run_module("vault_cert_push", arguments)
    foreign = _api(cluster.active().addr, cluster, "POST", f"{MOUNT}/data/{path}", json={"data": {"someone": "else"}})
    again = modules.run_module("vault_cert_push", arguments)

    assert not first.failed and first.result["version"] == 1, first.msg
    assert foreign.status_code == 200, foreign.text
    assert not again.failed, again.msg
    assert again.changed, again.result
    assert again.result["version"] == 3


def test_request_budgets_hold_through_the_lagging_standby(
    lagging: RaftCluster, credentials: dict[str, str], modules: t.Any
) -> None:
    """Headers only: a new batch costs at most 3N+4 requests, an unchanged one N+4, as on a single node."""
    cluster = lagging
    count = 10
    prefix = f"certs/consistency/budget-{uuid.uuid4().hex[:8]}"
    batch = [{"path": f"{prefix}/{index}", **_leaf(f"budget{index}")} for index in range(count)]
    with FaultProxy(cluster.lagging.addr, cluster.ca_cert) as proxy:
        arguments = {**_connection(cluster, credentials, "approle", url=proxy.url), "certificates": batch}
        new = modules.run_module("vault_cert_push", arguments)
        assert not new.failed, new.result.get("msg")
        assert all(result["changed"] for result in new.result["results"])
        new_requests = len(proxy.hits())
        unchanged = modules.run_module("vault_cert_push", arguments)
        assert not unchanged.failed, unchanged.result.get("msg")
        assert not unchanged.changed
        unchanged_requests = len(proxy.hits()) - new_requests
    assert new_requests <= 3 * count + 4
    assert unchanged_requests <= count + 4


def test_a_write_whose_answer_is_lost_after_apply_is_reported_written(
    lagging: RaftCluster, credentials: dict[str, str], modules: t.Any
) -> None:
    """The read-back that settles a lost answer must not trust the lagging node's replica."""
    cluster = lagging
    path = f"certs/consistency/lost-{uuid.uuid4().hex[:8]}"
    with FaultProxy(cluster.lagging.addr, cluster.ca_cert) as proxy:
        # Held until the lagging node has caught up with the run's login and reads, so that the read-back
        # is not forwarded merely because the node is behind the login.
        proxy.add_rule("POST", f"^{MOUNT}/data/{path}$", drop=True, after_forward=True, delay=LAG + 1)
        arguments = {**_connection(cluster, credentials, "approle", url=proxy.url), "path": path, **_leaf("lost")}
        run = modules.run_module("vault_cert_push", arguments)
        writes = proxy.hits("POST", f"^{MOUNT}/data/{path}$")
    assert not run.failed, run.result.get("msg")
    assert run.changed and run.result["version"] == 1, run.result
    assert len(writes) == 1, "the write that landed was sent again"
    assert list(cluster.active().server.kv_versions(MOUNT, path)) == ["1"]


def test_the_event_source_never_reads_older_data_than_its_previous_poll(
    lagging: RaftCluster, credentials: dict[str, str], ansible
) -> None:
    """A token watch (no login write to order it) polled once at the active node, then at the lagging standby."""
    cluster = lagging
    watch_module = runpy.run_path(str(ansible.collections_path / CERT_EXPIRY_SOURCE))["_watch"]
    path = f"certs/watch/{uuid.uuid4().hex}"
    data = f"{MOUNT}/data/{path}"
    assert _api(cluster.active().addr, cluster, "POST", data, json={"data": _leaf("old")}).status_code == 200
    _wait_until_replicated(cluster)
    cluster.set_lag(3 * LAG)
    try:
        assert _api(cluster.active().addr, cluster, "POST", data, json={"data": _leaf("new")}).status_code == 200
        args = {**_connection(cluster, credentials, "token"), "paths": [path], "interval": 60}
        watch = watch_module.watch_from_args({**args, "url": cluster.active().addr})
        without_index = watch_module.watch_from_args(args)

        watch.poll()
        without_index.poll()
        watch.params["url"] = cluster.lagging.addr
        second = watch.poll()
    finally:
        cluster.set_lag(LAG)

    assert watch.seen[path]["version"] == 2 and second == []
    # The lagging node's own replica was still at version 1: the index is what kept the watch from going back.
    assert without_index.seen[path]["version"] == 1

"""Read-your-writes through a lagging standby of a real 3-node OpenBao raft cluster.

The cluster (tests/support/cluster.py, `lagging=True`) has one standby whose
replication runs LAG seconds behind the active node (tests/support/lag_relay.py
on its advertised cluster_addr). Every module run here is pointed at that
standby, as a load balancer may do: without X-Vault-Index the standby answers
reads from its stale replica, and even the token a login just created is
unknown there (on main the first push fails with "mount 'secret' not found, or
the token may not use it").

One cluster for the whole module; each case is a single batched playbook.
"""

from __future__ import annotations

import json
import runpy
import time
import typing as t
import uuid

import pki
import pytest
import requests
from cluster import RaftCluster
from fault_proxy import FaultProxy

LAG = 2.0
OWNER = "consistency"
CERT_EXPIRY_SOURCE = "ansible_collections/certautopilot/vault/extensions/eda/plugins/event_source/cert_expiry.py"
MOUNT = "secret"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> t.Iterator[RaftCluster]:
    raft = RaftCluster.start(tmp_path_factory.mktemp("raft-lagging"), lagging=True)
    try:
        raft.set_lag(LAG)
        yield raft
    finally:
        raft.stop()


@pytest.fixture(scope="module")
def credentials(cluster: RaftCluster) -> dict[str, str]:
    """An AppRole secret_id and a `certs` token, made at the active node and replicated to the lagging one."""
    secret_id = cluster.new_approle_secret_id()
    active = cluster.active().server
    status, body = active.api("POST", "auth/token/create", {"policies": ["certs"], "ttl": "30m"})
    assert status == 200, body
    _wait_until_replicated(cluster)
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


def test_the_lagging_standby_serves_stale_reads(cluster: RaftCluster) -> None:
    """Nothing below passes vacuously: a write at the active node is not readable at once on the lagging node."""
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


def _lifecycle_tasks(path: str, *, pass_index: bool) -> list[dict[str, t.Any]]:
    """push -> push (unchanged) -> info -> push (new) -> rollback guarded by it -> retire guarded by that.

    All with an owner: retire takes out only a marked secret, and the mark is read through the lagging node too.
    """
    first, second = _leaf("first"), _leaf("second")

    def index_from(previous: str) -> dict[str, str]:
        return {"consistency_index": f"{{{{ {previous}.consistency_index }}}}"} if pass_index else {}

    return [
        {
            "name": "push",
            "certautopilot.vault.vault_cert_push": {"path": path, "owner": OWNER, **first},
            "register": "push1",
        },
        {
            "name": "push unchanged",
            "certautopilot.vault.vault_cert_push": {"path": path, "owner": OWNER, **first, **index_from("push1")},
            "register": "push2",
        },
        {
            "name": "info",
            "certautopilot.vault.vault_cert_info": {"paths": [path], "owner": OWNER, **index_from("push2")},
            "register": "info",
        },
        {
            "name": "push new",
            "certautopilot.vault.vault_cert_push": {"path": path, "owner": OWNER, **second, **index_from("info")},
            "register": "push3",
        },
        {
            "name": "rollback",
            "certautopilot.vault.vault_cert_rollback": {
                "path": path,
                "owner": OWNER,
                "current_version": "{{ push3.version }}",
                **index_from("push3"),
            },
            "register": "rollback",
        },
        {
            "name": "retire",
            "certautopilot.vault.vault_cert_retire": {
                "path": path,
                "owner": OWNER,
                "current_version": "{{ rollback.version }}",
                **index_from("rollback"),
            },
            "register": "retire",
        },
    ]


def _run_tasks(ansible: t.Any, tmp_path: t.Any, defaults: dict, tasks: list[dict]) -> dict[str, dict]:
    play = {
        "hosts": "localhost",
        "gather_facts": False,
        "module_defaults": {"group/certautopilot.vault.vault": defaults},
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
    cluster: RaftCluster, credentials: dict[str, str], ansible: t.Any, tmp_path: t.Any, auth: str
) -> None:
    """AppRole runs see everything before their login; token runs what the consistency_index given covers."""
    path = f"certs/consistency/{auth}-{uuid.uuid4().hex[:8]}"
    results = _run_tasks(
        ansible,
        tmp_path,
        _connection(cluster, credentials, auth),
        _lifecycle_tasks(path, pass_index=auth == "token"),
    )
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
    cluster: RaftCluster, credentials: dict[str, str], ansible: t.Any, tmp_path: t.Any
) -> None:
    """Someone else's write reaches the active node between two AppRole pushes: the second push must see it."""
    path = f"certs/consistency/foreign-{uuid.uuid4().hex[:8]}"
    leaf = _leaf("foreign")
    foreign_write = {
        "name": "foreign write",
        "ansible.builtin.uri": {
            "url": f"{cluster.active().addr}/v1/{MOUNT}/data/{path}",
            "method": "POST",
            "headers": {"X-Vault-Token": cluster.root_token},
            "body_format": "json",
            "body": {"data": {"someone": "else"}},
            "ca_path": cluster.ca_cert,
        },
    }
    results = _run_tasks(
        ansible,
        tmp_path,
        _connection(cluster, credentials, "approle"),
        [
            {"name": "push", "certautopilot.vault.vault_cert_push": {"path": path, **leaf}, "register": "push1"},
            foreign_write,
            {"name": "push again", "certautopilot.vault.vault_cert_push": {"path": path, **leaf}},
        ],
    )
    assert results["push again"]["changed"], results["push again"]
    assert results["push again"]["version"] == 3


def test_request_budgets_hold_through_the_lagging_standby(
    cluster: RaftCluster, credentials: dict[str, str], ansible: t.Any
) -> None:
    """Headers only: a new batch costs at most 3N+4 requests, an unchanged one N+4, as on a single node."""
    count = 10
    prefix = f"certs/consistency/budget-{uuid.uuid4().hex[:8]}"
    batch = [{"path": f"{prefix}/{index}", **_leaf(f"budget{index}")} for index in range(count)]
    with FaultProxy(cluster.lagging.addr, cluster.ca_cert) as proxy:
        arguments = {**_connection(cluster, credentials, "approle", url=proxy.url), "certificates": batch}
        new = ansible.run_module("vault_cert_push", arguments)
        assert not new.failed, new.result.get("msg")
        assert all(result["changed"] for result in new.result["results"])
        new_requests = len(proxy.hits())
        unchanged = ansible.run_module("vault_cert_push", arguments)
        assert not unchanged.failed, unchanged.result.get("msg")
        assert not unchanged.changed
        unchanged_requests = len(proxy.hits()) - new_requests
    assert new_requests <= 3 * count + 4
    assert unchanged_requests <= count + 4


def test_a_write_whose_answer_is_lost_after_apply_is_reported_written(
    cluster: RaftCluster, credentials: dict[str, str], ansible: t.Any
) -> None:
    """The read-back that settles a lost answer must not trust the lagging node's replica."""
    path = f"certs/consistency/lost-{uuid.uuid4().hex[:8]}"
    with FaultProxy(cluster.lagging.addr, cluster.ca_cert) as proxy:
        # Held until the lagging node has caught up with the run's login and reads, so that the read-back
        # is not forwarded merely because the node is behind the login.
        proxy.add_rule("POST", f"^{MOUNT}/data/{path}$", drop=True, after_forward=True, delay=LAG + 1)
        arguments = {**_connection(cluster, credentials, "approle", url=proxy.url), "path": path, **_leaf("lost")}
        run = ansible.run_module("vault_cert_push", arguments)
        writes = proxy.hits("POST", f"^{MOUNT}/data/{path}$")
    assert not run.failed, run.result.get("msg")
    assert run.changed and run.result["version"] == 1, run.result
    assert len(writes) == 1, "the write that landed was sent again"
    assert list(cluster.active().server.kv_versions(MOUNT, path)) == ["1"]


def test_the_event_source_never_reads_older_data_than_its_previous_poll(
    cluster: RaftCluster, credentials: dict[str, str], ansible
) -> None:
    """A token watch (no login write to order it) polled once at the active node, then at the lagging standby."""
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

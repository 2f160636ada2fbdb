# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Role cert_distribution in fleet mode: a play over many hosts, each with its own certificates in its host vars,
runs each state once for the play (one module run, one login) and hands each host its own results.

The hosts are local connections standing in for remote ones; each play's hosts are its own (a host that fails is
out of the rest of an ansible-playbook run), and each play writes under its own prefix.
"""

from __future__ import annotations

import uuid

import pytest
from pki import make_chain
from role_runs import FleetPlay, run_fleet

LOGIN = "auth/approle/login"
MOUNT_CHECK = "sys/internal/ui/mounts/secret"
# Rendered on each host with its own variables: the host's name is in its secret's path.
PER_HOST_TEMPLATE = "{{ fleet_prefix }}/{{ inventory_hostname }}/{{ cn }}"


def fleet_hosts(prefix: str, count: int, *, name: str = "web") -> dict[str, dict]:
    """``count`` hosts, each with one certificate (inline key) in its host vars, rendered below ``prefix``."""
    hosts = {}
    for number in range(1, count + 1):
        host = f"{name}{number:02d}-{prefix.rsplit('/', 1)[-1]}"
        leaf = make_chain(f"{host}.example.com").leaf
        hosts[host] = {"cert_distribution_certs": [{"certificate": leaf.cert_pem, "private_key": leaf.key_pem}]}
    return hosts


def own_path(prefix: str, host: str) -> str:
    return f"{prefix}/{host}/{host}.example.com"


def requests_to(run, path: str) -> list[dict]:
    return [entry for entry in run.requests if entry["request"]["path"] == path]


def kv_writes(run) -> list[str]:
    return [
        entry["request"]["path"]
        for entry in run.requests
        if entry["request"]["operation"] in ("create", "update", "delete")
        and entry["request"]["path"].startswith("secret/")
    ]


@pytest.fixture(scope="module")
def twenty(ansible, bao, vault_conn, tmp_path_factory):
    """20 hosts in fleet mode, run twice (the second run changes nothing)."""
    prefix = f"certs/fleet-{uuid.uuid4().hex[:8]}"
    hosts = fleet_hosts(prefix, 20)
    play = FleetPlay(hosts, {"cert_distribution_path_template": PER_HOST_TEMPLATE, "fleet_prefix": prefix})
    workdir = tmp_path_factory.mktemp("fleet")
    first = run_fleet(ansible, bao, vault_conn, workdir, {"twenty": play})
    again = run_fleet(ansible, bao, vault_conn, workdir, {"twenty": play})
    return prefix, hosts, first, again


def test_twenty_hosts_push_with_one_login_and_one_mount_check(twenty):
    prefix, hosts, (found, run), _ = twenty
    assert not run.failed, run.output
    assert len(requests_to(run, LOGIN)) == 1
    assert len(requests_to(run, MOUNT_CHECK)) == 1
    assert sorted(kv_writes(run)) == sorted(f"secret/data/{own_path(prefix, host)}" for host in hosts)
    assert set(found["twenty"]) == set(hosts)
    for host, record in found["twenty"].items():
        assert record.error is None
        assert [(r["path"], r["changed"], r["version"], r["previous_version"]) for r in record.results] == [
            (own_path(prefix, host), True, 1, None)
        ]

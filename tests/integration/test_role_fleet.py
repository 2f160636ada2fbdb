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
from push_runs import approle
from role_runs import FleetPlay, metadata, new_owner, run_fleet

LOGIN = "auth/approle/login"
MOUNT_CHECK = "sys/internal/ui/mounts/secret"
# Rendered on each host with its own variables: the host's name is in its secret's path.
PER_HOST_TEMPLATE = "{{ fleet_prefix }}/{{ inventory_hostname }}/{{ cn }}"


def fleet_hosts(prefix: str, count: int, *, name: str = "web") -> dict[str, dict]:
    """``count`` hosts, each with one certificate (inline key) in its host vars, rendered below ``prefix``, and a
    renewal of it (same name, new key) in ``renewed``."""
    hosts = {}
    for number in range(1, count + 1):
        host = f"{name}{number:02d}-{prefix.rsplit('/', 1)[-1]}"
        first, second = (make_chain(f"{host}.example.com").leaf for _copy in range(2))
        hosts[host] = {
            "cert_distribution_certs": [{"certificate": first.cert_pem, "private_key": first.key_pem}],
            "renewed": [{"certificate": second.cert_pem, "private_key": second.key_pem}],
        }
    return hosts


def per_host(prefix: str, **role_vars) -> dict:
    """Role variables that render each host's certificate below ``prefix``/<host>."""
    return {"cert_distribution_path_template": PER_HOST_TEMPLATE, "fleet_prefix": prefix, **role_vars}


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
    play = FleetPlay(hosts, per_host(prefix))
    workdir = tmp_path_factory.mktemp("fleet")
    first = run_fleet(ansible, bao, vault_conn, workdir, {"twenty": play})
    again = run_fleet(ansible, bao, vault_conn, workdir, {"twenty": play})
    return prefix, hosts, first, again


def test_twenty_hosts_push_with_one_login_and_one_mount_check(twenty):
    prefix, hosts, (found, run), _rerun = twenty
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


def test_twenty_hosts_rerun_changes_nothing(twenty):
    prefix, hosts, _first, (found, run) = twenty
    assert not run.failed, run.output
    assert len(requests_to(run, LOGIN)) == 1
    assert kv_writes(run) == []
    assert not run.changed
    for host, record in found["twenty"].items():
        assert [(r["path"], r["changed"], r["version"]) for r in record.results] == [(own_path(prefix, host), False, 1)]


def test_fleet_mode_runs_one_task_per_host(twenty):
    # Ansible forks a worker and computes a host's variables for each host and task, even a skipped one: a fleet
    # costs its per-host tasks times its hosts. Every task of the role but one runs once for the whole run.
    _prefix, hosts, (_found, run), _rerun = twenty
    hosts_of: dict[str, set[str]] = {}
    for result in run.tasks:
        if not result.task.startswith("Fleet "):
            hosts_of.setdefault(result.task, set()).add(result.host)
    per_host = sorted(task for task, seen in hosts_of.items() if len(seen) > 1)
    assert len(per_host) <= 1, per_host
    assert all(len(hosts_of[task]) == len(hosts) for task in per_host)


# -- refusals, failed hosts, serial and every state: one ansible-playbook run --------------------------------------

STRAY = "stray"
# Options the one module run takes from the first host of the run, set on that host alone.
FIRST_HOST_OPTIONS = {
    "cert_distribution_custom_metadata": True,
    "cert_distribution_validate": False,
    "cert_distribution_adopt": False,
    "cert_distribution_keep_other_fields": False,
    "cert_distribution_health_check": False,
}


@pytest.fixture(scope="module")
def cases(ansible, bao, vault_conn, tmp_path_factory):
    """Plays in one run, each over its own hosts and prefix, at -vvv (the harness scans it for the keys)."""
    tag = uuid.uuid4().hex[:8]
    prefixes = {
        name: f"certs/fleet-{name}-{tag}"
        for name in (
            "clash",
            "disagree",
            "broken",
            "failed",
            "serial",
            "states",
            "pruneserial",
            "logins",
            "options",
            "serialclash",
            "invalid",
        )
    }
    owner = new_owner("fleet")
    # A secret of the owner under the states' prefix that no host delivers: the fleet prune retires it.
    stray = f"{prefixes['states']}/{STRAY}"
    assert bao.api("POST", f"secret/data/{stray}", {"data": {"certificate": "old"}})[0] == 200
    marks = {"managed_by": "certautopilot.vault", "certautopilot_owner": owner}
    assert bao.api("POST", f"secret/metadata/{stray}", {"custom_metadata": marks})[0] == 204

    clash = fleet_hosts(prefixes["clash"], 2, name="clash")
    shared = f"{prefixes['clash']}/shared"
    for host_vars in clash.values():
        host_vars["cert_distribution_certs"][0]["path"] = shared
    failed = fleet_hosts(prefixes["failed"], 3, name="down")
    down = sorted(failed)[2]
    states = fleet_hosts(prefixes["states"], 2, name="state")
    # A misspelt variable in one host's own vars: the warning names that host.
    states[max(states)]["cert_distribution_cert"] = []
    # One host gives a value the role's arguments refuse: the run is refused, naming the host and the variable.
    invalid = fleet_hosts(prefixes["invalid"], 2, name="inv")
    invalid[max(invalid)]["cert_distribution_retire_mode"] = "shred"
    state = per_host(prefixes["states"], cert_distribution_owner=owner)
    # One host gives another layout than the rest: the one run cannot give both.
    disagree = fleet_hosts(prefixes["disagree"], 2, name="odd")
    disagree[max(disagree)]["cert_distribution_layout"] = "haproxy"
    # One host's certificate is no PEM: that host fails building its part, the other is delivered.
    broken = fleet_hosts(prefixes["broken"], 2, name="bad")
    broken[max(broken)]["cert_distribution_certs"][0]["certificate"] = "not a certificate"
    # Each host logs in with its own login: the one run would carry every host's keys with the first host's.
    logins = fleet_hosts(prefixes["logins"], 2, name="login")
    for host_vars in logins.values():
        host_vars["own_vault"] = {**vault_conn, **approle(bao)}
    # The first host of the run (whose options the one module run takes) gives options of its own.
    options = fleet_hosts(prefixes["options"], 2, name="opt")
    options[min(options)].update(FIRST_HOST_OPTIONS)
    # Two hosts in two serial slices on one secret path: the second slice's run cannot see the first's parts.
    serialclash = fleet_hosts(prefixes["serialclash"], 2, name="sclash")
    serial_shared = f"{prefixes['serialclash']}/shared"
    for host_vars in serialclash.values():
        host_vars["cert_distribution_certs"][0]["path"] = serial_shared
    plays = {
        "clash": FleetPlay(clash, per_host(prefixes["clash"])),
        "logins": FleetPlay(logins, per_host(prefixes["logins"], cert_distribution_vault="{{ own_vault }}")),
        "options": FleetPlay(options, per_host(prefixes["options"])),
        "serialclash": FleetPlay(serialclash, per_host(prefixes["serialclash"]), serial=1),
        "disagree": FleetPlay(disagree, per_host(prefixes["disagree"])),
        "invalid": FleetPlay(invalid, per_host(prefixes["invalid"])),
        "serial": FleetPlay(fleet_hosts(prefixes["serial"], 4, name="slice"), per_host(prefixes["serial"]), serial=2),
        "pruneserial": FleetPlay(
            fleet_hosts(prefixes["pruneserial"], 2, name="pslice"),
            per_host(
                prefixes["pruneserial"],
                cert_distribution_owner=owner,
                cert_distribution_prune=True,
                cert_distribution_prune_prefix=prefixes["pruneserial"],
            ),
            serial=1,
        ),
        "push": FleetPlay(states, state),
        "renew": FleetPlay(states, {**state, "cert_distribution_certs": "{{ renewed }}"}),
        "rollback": FleetPlay(states, {**state, "cert_distribution_state": "rollback"}),
        "report": FleetPlay(
            states,
            {**state, "cert_distribution_state": "report", "cert_distribution_report_prefix": prefixes["states"]},
        ),
        "prune": FleetPlay(
            states,
            {**state, "cert_distribution_prune": True, "cert_distribution_prune_prefix": prefixes["states"]},
        ),
        "absent": FleetPlay(states, {**state, "cert_distribution_state": "absent"}),
        # Last: the hosts that fail are out of the rest of the run.
        "broken": FleetPlay(broken, per_host(prefixes["broken"])),
        "failed": FleetPlay(
            failed,
            per_host(prefixes["failed"]),
            before=[
                {
                    "name": "Fail one host",
                    "ansible.builtin.fail": {"msg": "down"},
                    "when": f"inventory_hostname == '{down}'",
                }
            ],
        ),
    }
    found, run = run_fleet(ansible, bao, vault_conn, tmp_path_factory.mktemp("fleet-cases"), plays, verbosity=3)
    hosts = {
        "clash": clash,
        "disagree": disagree,
        "invalid": invalid,
        "broken": broken,
        "failed": failed,
        "states": states,
        "serial": plays["serial"].hosts,
        "logins": logins,
        "options": options,
        "serialclash": serialclash,
    }
    return {
        "prefixes": prefixes,
        "hosts": hosts,
        "down": down,
        "shared": shared,
        "serial_shared": serial_shared,
        "found": found,
        "run": run,
    }


def tokens_under(run, prefix: str) -> set[str]:
    """The client tokens of the requests on secrets under ``prefix``."""
    return {
        entry["request"]["client_token"]
        for entry in run.requests
        if prefix in entry["request"]["path"] and entry["request"].get("client_token")
    }


def test_each_module_run_logs_in_once_and_checks_the_mount_once(cases):
    run = cases["run"]
    # failed 1, broken 1, serial 2 (one per slice), states: push, renew, rollback, report, absent 1 each, prune 3
    # (the push, the listing, the retirement), serialclash 1 (its first slice; the second is refused); the refusals
    # none.
    assert len(requests_to(run, LOGIN)) == 13
    tokens = {entry["request"]["client_token"] for entry in run.requests if entry["request"].get("client_token")}
    assert len(tokens) == 13
    checks = [entry["request"]["client_token"] for entry in requests_to(run, MOUNT_CHECK)]
    assert sorted(checks) == sorted(tokens)


def test_two_hosts_on_one_path_are_refused_naming_both(cases, bao):
    found, shared = cases["found"]["clash"], cases["shared"]
    assert set(found) == set(cases["hosts"]["clash"])
    # The run_once refusal fails every host of the run; Ansible gives its message to the first.
    assert all(record.error for record in found.values())
    message = found[min(found)].error
    assert f"{shared} is the secret path of {' and '.join(sorted(found))}" in message
    assert "Nothing was written" in message
    assert metadata(bao, shared) is None
    assert tokens_under(cases["run"], cases["prefixes"]["clash"]) == set()


def test_a_host_failed_before_the_role_is_left_out_and_named(cases, bao):
    found, down, prefix = cases["found"]["failed"], cases["down"], cases["prefixes"]["failed"]
    live = sorted(set(cases["hosts"]["failed"]) - {down})
    assert sorted(found) == live
    for host in live:
        assert [(r["path"], r["changed"]) for r in found[host].results] == [(own_path(prefix, host), True)]
    assert metadata(bao, own_path(prefix, down)) is None
    assert f"WARNING: {down} failed or were unreachable earlier in the play" in cases["run"].output


def test_serial_runs_one_batch_per_slice(cases):
    found, prefix = cases["found"]["serial"], cases["prefixes"]["serial"]
    hosts = sorted(cases["hosts"]["serial"])
    assert sorted(found) == hosts
    for host in hosts:
        assert found[host].error is None
        assert [(r["path"], r["changed"]) for r in found[host].results] == [(own_path(prefix, host), True)]
    slices = [tokens_under(cases["run"], f"{prefix}/{host}/") for host in hosts]
    assert slices[0] == slices[1] and slices[2] == slices[3] and len(slices[0] | slices[2]) == 2


def test_prune_is_refused_when_hosts_of_the_play_are_not_in_the_run(cases, bao):
    found, prefix = cases["found"]["pruneserial"], cases["prefixes"]["pruneserial"]
    assert len(found) == 2
    for host, record in found.items():
        assert "cert_distribution_prune in fleet mode" in record.error, record.error
        other = max(found) if host == min(found) else min(found)
        assert f"{other} of the play" in record.error
        assert metadata(bao, own_path(prefix, host)) is None
    assert tokens_under(cases["run"], prefix) == set()


def test_every_state_runs_once_for_the_play_and_hands_back_each_hosts_own(cases, bao):
    found, prefix = cases["found"], cases["prefixes"]["states"]
    hosts = sorted(cases["hosts"]["states"])
    for step in ("push", "renew", "rollback", "report", "prune", "absent"):
        assert sorted(found[step]) == hosts, step
        assert all(record.error is None for record in found[step].values()), (step, found[step])
    for host in hosts:
        path = own_path(prefix, host)
        assert [(r["path"], r["version"]) for r in found["push"][host].results] == [(path, 1)]
        assert [(r["path"], r["version"]) for r in found["renew"][host].results] == [(path, 2)]
        rolled = found["rollback"][host].results
        assert [(r["path"], r["version"], r["restored_version"]) for r in rolled] == [(path, 3, 1)]
        report = found["report"][host].report
        assert sorted(entry["path"] for entry in report["certificates"]) == sorted(
            [*(own_path(prefix, each) for each in hosts), f"{prefix}/{STRAY}"]
        )
        assert [r["changed"] for r in found["prune"][host].results] == [False]
        assert found["prune"][host].pruned == [f"{prefix}/{STRAY}"]
        assert [(r["path"], r["changed"]) for r in found["absent"][host].results] == [(path, True)]
        assert bao.kv_version_numbers(path) == [1, 2, 3]


def test_hosts_that_disagree_on_a_shared_setting_are_refused(cases, bao):
    found, prefix = cases["found"]["disagree"], cases["prefixes"]["disagree"]
    assert set(found) == set(cases["hosts"]["disagree"])
    assert all(record.error for record in found.values())
    assert "every host must give the same cert_distribution_layout" in found[min(found)].error
    assert tokens_under(cases["run"], prefix) == set()
    assert all(metadata(bao, own_path(prefix, host)) is None for host in found)


def test_a_host_whose_certificates_do_not_read_fails_alone(cases, bao):
    prefix, found = cases["prefixes"]["broken"], cases["found"]["broken"]
    good, bad = sorted(cases["hosts"]["broken"])
    # The play rescues the failure: the host stays in the play, but has no part in the run.
    assert f"{bad}: " in found[bad].error and "cert_distribution_certs[0]" in found[bad].error
    assert found[good].error is None
    assert [(r["path"], r["changed"]) for r in found[good].results] == [(own_path(prefix, good), True)]
    assert metadata(bao, own_path(prefix, bad)) is None
    output = cases["run"].output
    assert "not a certificate" not in output
    assert f"WARNING: {bad} failed or were unreachable earlier in the play" in output


def test_a_host_whose_arguments_are_refused_is_named_and_nothing_is_written(cases, bao):
    found, prefix = cases["found"]["invalid"], cases["prefixes"]["invalid"]
    hosts = sorted(cases["hosts"]["invalid"])
    assert sorted(found) == hosts and all(record.error for record in found.values())
    message = found[min(found)].error
    assert message.startswith("Validation of arguments failed:")
    assert f"{max(hosts)}" in message and "cert_distribution_retire_mode" in message
    assert min(hosts) not in message
    assert tokens_under(cases["run"], prefix) == set()
    assert all(metadata(bao, own_path(prefix, host)) is None for host in hosts)


def test_a_misspelt_variable_of_one_host_is_named_with_its_host(cases):
    host = max(cases["hosts"]["states"])
    assert f"WARNING: {host}: cert_distribution_cert: not a variable of the role" in cases["run"].output
    assert f"WARNING: {min(cases['hosts']['states'])}: cert_distribution_cert" not in cases["run"].output


def test_hosts_that_log_in_differently_are_refused_and_nothing_is_written(cases, bao):
    # The one module run logs in with the first host's cert_distribution_vault: the other host's key would go with
    # a login (a server, a namespace, a role) it was never given.
    found, prefix = cases["found"]["logins"], cases["prefixes"]["logins"]
    assert set(found) == set(cases["hosts"]["logins"])
    assert all(record.error for record in found.values()), found
    assert "every host must give the same" in found[min(found)].error
    assert "cert_distribution_vault" in found[min(found)].error
    assert tokens_under(cases["run"], prefix) == set()
    assert all(metadata(bao, own_path(prefix, host)) is None for host in found)


def test_options_the_first_host_gives_alone_are_refused_not_applied_to_every_host(cases, bao):
    found, prefix = cases["found"]["options"], cases["prefixes"]["options"]
    hosts = sorted(cases["hosts"]["options"])
    assert all(record.error for record in found.values()), found
    message = found[hosts[0]].error
    assert "every host must give the same" in message
    for name in FIRST_HOST_OPTIONS:
        assert name in message, (name, message)
    # Not the first host's options (its custom_metadata, its validate) on the second host's secret.
    assert metadata(bao, own_path(prefix, hosts[1])) is None
    assert tokens_under(cases["run"], prefix) == set()


def test_two_hosts_on_one_path_in_two_serial_slices_are_refused(cases, bao):
    # One run per slice: the second slice's run must still see the path the first slice's host delivered.
    found, shared = cases["found"]["serialclash"], cases["serial_shared"]
    first, second = sorted(cases["hosts"]["serialclash"])
    assert found[first].error is None
    assert [(r["path"], r["changed"]) for r in found[first].results] == [(shared, True)]
    assert found[second].error and f"{shared} is the secret path of {first} and {second}" in found[second].error
    assert bao.kv_version_numbers(shared) == [1]

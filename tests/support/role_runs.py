"""Runs of the cert_distribution role and the expiry report playbook, and what they leave in the server."""

from __future__ import annotations

import dataclasses
import json
import typing as t
import uuid
from pathlib import Path

from pki import make_chain
from push_runs import approle

REPORT_PLAYBOOK = Path(__file__).resolve().parents[2] / "playbooks" / "expiry_report.yml"


def certs_for(prefix: str, *names: str) -> tuple[list[dict], list[str]]:
    """Role certificate items whose paths are under ``prefix``, and their keys."""
    issued = [make_chain(f"{name}.example.com").leaf for name in names]
    items = [
        {"path": f"{prefix}/{name}", "certificate": leaf.cert_pem, "private_key": leaf.key_pem}
        for name, leaf in zip(names, issued)
    ]
    return items, [leaf.key_pem for leaf in issued]


def new_owner(team: str) -> str:
    return f"{team}-{uuid.uuid4().hex[:8]}"


def run_role(
    ansible,
    bao,
    vault_conn,
    tmp_path,
    role_vars: dict,
    *,
    check: bool = False,
    apply: dict | None = None,
    hosts: dict[str, dict] | None = None,
):
    """Run the role once; the facts it set (results, pruned) and the run (the harness scans it for secrets).

    ``apply`` is include_role's: keywords for every task of the role (``{"ignore_errors": True}``, say).
    ``hosts``: a play over these hosts (name -> host vars, each a local connection) instead of localhost.
    """
    facts = tmp_path / f"facts-{uuid.uuid4().hex}.json"
    include = {"name": "certautopilot.vault.cert_distribution", **({"apply": apply} if apply else {})}
    role = {"ansible.builtin.include_role": include, "vars": role_vars}
    record = {
        "ansible.builtin.copy": {
            "dest": str(facts),
            "content": "{{ {'results': cert_distribution_results | default(None),"
            " 'pruned': cert_distribution_pruned | default(None)} | to_json }}",
            "mode": "0600",
        },
        "check_mode": False,
    }
    playbook = tmp_path / f"site-{uuid.uuid4().hex}.yml"
    play = {"hosts": "localhost", "connection": "local", "gather_facts": False, "tasks": [role, record]}
    env = None
    if hosts:
        play = {**play, "hosts": "all", "tasks": [role]}
        inventory = tmp_path / f"hosts-{uuid.uuid4().hex}.json"
        local = {"ansible_connection": "local", "ansible_python_interpreter": ansible.python}
        inventory.write_text(json.dumps({"all": {"hosts": {name: {**local, **v} for name, v in hosts.items()}}}))
        env = {"ANSIBLE_INVENTORY": str(inventory)}
    playbook.write_text(json.dumps([play]))
    login = {**vault_conn, **approle(bao)}
    # The inventory's per-host certificates are no part of the playbook the harness reads its secrets from.
    per_host = [item for host_vars in (hosts or {}).values() for item in host_vars.get("host_certs", [])]
    keys = [item["private_key"] for item in per_host if item.get("private_key")]
    run = ansible.run_playbook(
        playbook, extra_vars={"cert_distribution_vault": login}, check=check, env=env, secrets=keys
    )
    return (json.loads(facts.read_text()) if facts.exists() else None), run


def metadata(bao, path: str) -> dict | None:
    status, body = bao.api("GET", f"secret/metadata/{path}")
    assert status in (200, 404), body
    return body["data"] if status == 200 else None


def current_deleted(bao, path: str) -> bool:
    meta = metadata(bao, path)
    return bool(meta["versions"][str(meta["current_version"])]["deletion_time"])


def html_report(ansible, login: dict, prefix: str, page: Path):
    """Run the playbook for its HTML summary of ``prefix`` only (it never fails the job)."""
    extra_vars = {"cert_distribution_vault": login, "expiry_report_prefix": prefix, "expiry_report_fail_on": "never"}
    return ansible.run_playbook(REPORT_PLAYBOOK, extra_vars={**extra_vars, "expiry_report_html_file": str(page)})


# -- many role runs in one ansible-playbook run -------------------------------------------------------------------

ROLE = "certautopilot.vault.cert_distribution"
# What one role run leaves behind as facts: reset before each case, so a case never reads the one before.
_ROLE_FACTS = ("cert_distribution_results", "cert_distribution_pruned", "cert_distribution_report")


@dataclasses.dataclass
class RoleCall:
    """One include of the role: its variables, include_role's ``apply``, and the hosts of its own play if any
    (name -> host vars, each a local connection; else localhost)."""

    role_vars: dict[str, t.Any]
    apply: dict[str, t.Any] | None = None
    hosts: dict[str, dict[str, t.Any]] | None = None


@dataclasses.dataclass
class RoleCase:
    """What one case's include of the role left: its facts, the message of the failure its block rescued
    (None when it did not fail), and the console output of the case alone."""

    results: t.Any
    pruned: t.Any
    error: str | None
    output: str

    @property
    def failed(self) -> bool:
        return self.error is not None


def _case_tasks(name: str, call: RoleCall) -> list[dict[str, t.Any]]:
    """The case's include of the role in a block: a refusal is rescued (and recorded), so the next case runs.

    Only a failure that is not ignored reaches the rescue, as only such a failure would end a play of its own.
    """
    include = {"name": ROLE, **({"apply": call.apply} if call.apply else {})}
    facts = ", ".join(f"'{fact[len('cert_distribution_') :]}': {fact}" for fact in _ROLE_FACTS)
    return [
        {
            "name": f"Case {name}",
            "block": [
                {
                    "name": f"Case {name}: start",
                    "ansible.builtin.set_fact": {**dict.fromkeys(_ROLE_FACTS), "__case_error": None},
                },
                {"name": f"Case {name}: role", "ansible.builtin.include_role": include, "vars": call.role_vars},
            ],
            "rescue": [
                {
                    "name": f"Case {name}: refused",
                    "ansible.builtin.set_fact": {"__case_error": "{{ ansible_failed_result.msg | default('failed') }}"},
                }
            ],
            "always": [
                {
                    "name": f"Case {name}: record",
                    "ansible.builtin.set_fact": {"__case_record": f"{{{{ {{{facts}, 'error': __case_error}} }}}}"},
                    "check_mode": False,
                }
            ],
        }
    ]


def run_role_cases(
    ansible,
    bao,
    vault_conn: dict,
    workdir: Path,
    cases: dict[str, RoleCall],
    *,
    check: bool = False,
    diff: bool = False,
    verbosity: int = 0,
    secrets: t.Sequence[str] = (),
):
    """Run every case's include of the role in one ansible-playbook run (the cases in order, one play for those on
    localhost, one play each for those with hosts); each case by name, and the run (the harness scans it).

    A case's name is in its tasks' names, which Ansible renders: plain text. The login is a play variable, so a
    case may give its own ``cert_distribution_vault`` (a whole login) among its role variables.
    ``secrets``: more values the run must never show (a key read from a file, say).
    """
    login = {"cert_distribution_vault": {**vault_conn, **approle(bao)}}
    play = {"connection": "local", "gather_facts": False, "vars": login}
    local = [task for name, call in cases.items() if not call.hosts for task in _case_tasks(name, call)]
    plays = [{"name": "Cases on localhost", "hosts": "localhost", **play, "tasks": local}] if local else []
    inventory: dict[str, dict] = {}
    for name, call in cases.items():
        if call.hosts:
            plays.append({"name": f"Cases on {name}'s hosts", "hosts": sorted(call.hosts), **play})
            plays[-1]["tasks"] = _case_tasks(name, call)
            plays[-1].pop("connection")
            inventory.update(call.hosts)
    playbook = workdir / f"cases-{uuid.uuid4().hex}.yml"
    playbook.write_text(json.dumps(plays))
    env, keys = None, list(secrets)
    if inventory:
        python = {"ansible_connection": "local", "ansible_python_interpreter": ansible.python}
        hosts_file = workdir / f"hosts-{uuid.uuid4().hex}.json"
        hosts_file.write_text(json.dumps({"all": {"hosts": {name: {**python, **v} for name, v in inventory.items()}}}))
        env = {"ANSIBLE_INVENTORY": str(hosts_file)}
        # The inventory's certificates are no part of the playbook the harness reads its secrets from.
        keys += [item["private_key"] for v in inventory.values() for item in v.get("host_certs", [])]
    run = ansible.run_playbook(playbook, check=check, diff=diff, verbosity=verbosity, env=env, secrets=keys)
    return _cases_of(run, cases), run


def _cases_of(run, cases: dict[str, RoleCall]) -> dict[str, RoleCase]:
    starts = {name: run.output.find(f"TASK [Case {name}: start]") for name in cases}
    found: dict[str, RoleCase] = {}
    for name in cases:
        records = [task for task in run.tasks if task.task == f"Case {name}: record"]
        assert records, f"case {name} did not run:\n{run.output}"
        facts = records[0].result["ansible_facts"]["__case_record"]
        later = [start for start in starts.values() if start > starts[name]]
        output = run.output[starts[name] : min(later, default=len(run.output))]
        found[name] = RoleCase(facts["results"], facts["pruned"], facts["error"], output)
    return found


# -- fleet mode: plays over many hosts, each with its own certificates --------------------------------------------


@dataclasses.dataclass
class FleetPlay:
    """One play over ``hosts`` (name -> host vars, each a local connection) that runs the role once in fleet mode.

    ``before``: tasks that run on every host before the role (a host that fails one is left out of the run).
    ``serial``: the play's serial. A refusal is rescued (recorded per host), so the next play runs.
    """

    hosts: dict[str, dict[str, t.Any]]
    role_vars: dict[str, t.Any] = dataclasses.field(default_factory=dict)
    before: list[dict[str, t.Any]] = dataclasses.field(default_factory=list)
    serial: int | None = None


@dataclasses.dataclass
class FleetHost:
    """What the role left on one host of a fleet play: its facts, and the message of a refusal (None if none)."""

    results: t.Any
    pruned: t.Any
    report: t.Any
    error: str | None


def _fleet_play(name: str, play: FleetPlay, login: dict[str, t.Any]) -> dict[str, t.Any]:
    facts = ", ".join(f"'{fact[len('cert_distribution_') :]}': {fact}" for fact in _ROLE_FACTS)
    role = {"name": ROLE}
    return {
        "name": f"Fleet {name}",
        "hosts": sorted(play.hosts),
        "gather_facts": False,
        **({"serial": play.serial} if play.serial else {}),
        "vars": {"cert_distribution_vault": login, "cert_distribution_fleet": True},
        "tasks": [
            *play.before,
            {
                "name": f"Fleet {name}",
                "block": [
                    {
                        "name": f"Fleet {name}: start",
                        "ansible.builtin.set_fact": {**dict.fromkeys(_ROLE_FACTS), "__case_error": None},
                    },
                    {"name": f"Fleet {name}: role", "ansible.builtin.include_role": role, "vars": play.role_vars},
                ],
                "rescue": [
                    {
                        "name": f"Fleet {name}: refused",
                        "ansible.builtin.set_fact": {
                            "__case_error": "{{ ansible_failed_result.msg | default('failed') }}"
                        },
                    }
                ],
            },
            {
                "name": f"Fleet {name}: record",
                "ansible.builtin.set_fact": {"__case_record": f"{{{{ {{{facts}, 'error': __case_error}} }}}}"},
                "check_mode": False,
            },
        ],
    }


def run_fleet(
    ansible,
    bao,
    vault_conn: dict,
    workdir: Path,
    plays: dict[str, FleetPlay],
    *,
    check: bool = False,
    verbosity: int = 0,
):
    """Run every play, in order, in one ansible-playbook run; per play, what each host that reached its end holds
    (play name -> host -> FleetHost), and the run. A host in several plays has the same host vars in each (and a host
    that fails is out of the rest of the run). The inventory's keys are passed to the harness's leak scan."""
    login = {**vault_conn, **approle(bao)}
    playbook = workdir / f"fleet-{uuid.uuid4().hex}.yml"
    playbook.write_text(json.dumps([_fleet_play(name, play, login) for name, play in plays.items()]))
    local = {"ansible_connection": "local", "ansible_python_interpreter": ansible.python}
    hosts: dict[str, dict] = {}
    for play in plays.values():
        for name, host_vars in play.hosts.items():
            assert hosts.get(name, host_vars) == host_vars, f"{name} has other host vars in another play"
            hosts[name] = host_vars
    inventory = workdir / f"fleet-hosts-{uuid.uuid4().hex}.json"
    inventory.write_text(json.dumps({"all": {"hosts": {name: {**local, **v} for name, v in hosts.items()}}}))
    # Every certificate list of the inventory (cert_distribution_certs, or one a play names instead).
    keys = [
        item["private_key"]
        for v in hosts.values()
        for value in v.values()
        if isinstance(value, list)
        for item in value
        if isinstance(item, dict) and item.get("private_key")
    ]
    run = ansible.run_playbook(
        playbook, check=check, verbosity=verbosity, env={"ANSIBLE_INVENTORY": str(inventory)}, secrets=keys
    )
    found: dict[str, dict[str, FleetHost]] = {}
    for name in plays:
        records = [task for task in run.tasks if task.task == f"Fleet {name}: record"]
        found[name] = {task.host: FleetHost(**task.result["ansible_facts"]["__case_record"]) for task in records}
    return found, run

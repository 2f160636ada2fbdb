"""Runs of the cert_distribution role and the expiry report playbook, and what they leave in the server."""

from __future__ import annotations

import json
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

"""playbooks/push.yml and playbooks/rollback.yml as a user chains them, against a real OpenBao.

What push.yml records (its push_results_file, its set_stats) is read back as variables by rollback.yml
(``-e @FILE``), so nothing recorded may act as a template: a path holding template syntax is refused before
anything is written, and every string of the results file is tagged !unsafe.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pki
from ansible.parsing.yaml.loader import AnsibleLoader
from push_runs import approle

COLLECTION_ROOT = Path(__file__).resolve().parents[2]
PUSH_PLAYBOOK = COLLECTION_ROOT / "playbooks" / "push.yml"
ROLLBACK_PLAYBOOK = COLLECTION_ROOT / "playbooks" / "rollback.yml"


def kv_writes(bao, mark: int) -> list[str]:
    """The paths the server was asked to change (data or metadata) since ``mark``."""
    return [
        entry["request"]["path"]
        for entry in bao.audit_requests(mark, path_prefix="secret/")
        if entry["request"].get("operation") in ("create", "update", "delete")
    ]


def hostile(marker: Path) -> str:
    """What a survey answer may hold: a lookup that runs a command on the controller when rendered (no whitespace,
    which a path may not hold)."""
    assert not any(char.isspace() for char in str(marker))
    return "{{lookup('pipe','id>" + str(marker) + "')}}"


def unsafe_vars_file(path: Path, name: str, value: object) -> str:
    """A vars file as AWX writes a survey answer: the value tagged !unsafe, so that reading it runs nothing."""
    path.write_text(f"{name}: !unsafe {json.dumps(value)}\n")
    return f"@{path}"


def read_results_file(path: Path) -> dict:
    """The results file as Ansible reads it (its !unsafe tags included)."""
    return AnsibleLoader(path.read_text()).get_single_data()


def test_push_refuses_a_path_with_template_syntax_and_rollback_of_its_results_runs_nothing(
    bao, ansible, vault_conn, tmp_path
):
    marker = tmp_path / "ran"
    certs = tmp_path / "certs"
    pki.write_leaf(certs, "trust-hostile.example.com")
    base = f"certs/trust-{uuid.uuid4().hex[:8]}"
    good = {"certificate_file": str(certs / "cert.pem"), "private_key_file": str(certs / "key.pem"), "path": base}
    bad = {**good, "path": f"{base}/{hostile(marker)}"}
    results = tmp_path / "pushed.yml"
    auth = approle(bao)
    mark = bao.audit_mark()

    push = ansible.run_playbook(
        PUSH_PLAYBOOK,
        extra_vars={"cert_distribution_vault": {**vault_conn, **auth}, "push_results_file": str(results)},
        extra_vars_args=[unsafe_vars_file(tmp_path / "survey.yml", "cert_distribution_certs", [good, bad])],
    )
    if results.exists():  # what main did: the chain as documented, push then rollback -e @FILE
        ansible.run_playbook(
            ROLLBACK_PLAYBOOK,
            extra_vars={"cert_distribution_vault": {**vault_conn, **approle(bao)}},
            extra_vars_args=[f"@{results}"],
        )

    assert not marker.exists(), "a path from a survey ran a command on the controller"
    assert push.rc != 0, push.output
    assert "the path of cert_distribution_certs[1] holds template syntax" in push.output, push.output
    assert "lookup(" not in push.output  # the refused path is not quoted
    assert not results.exists()
    assert kv_writes(bao, mark) == []
    assert bao.kv_versions("secret", base) == {}


def test_every_string_of_the_results_file_stays_data_when_rollback_reads_it(bao, ansible, vault_conn, tmp_path):
    marker = tmp_path / "ran"
    certs = tmp_path / "certs"
    pki.write_leaf(certs, "trust-inert.example.com")
    path = f"certs/trust-{uuid.uuid4().hex[:8]}"
    item = {"certificate_file": str(certs / "cert.pem"), "private_key_file": str(certs / "key.pem"), "path": path}
    results = tmp_path / "pushed.yml"
    # Extra variables win over set_fact: this stands for any string push.yml may record (a path, a certificate's
    # name or issuer), here one that would run a command when rendered.
    recorded = [{"path": hostile(marker), "version": 2, "previous_version": 1, "changed": True, "cn": hostile(marker)}]
    push = ansible.run_playbook(
        PUSH_PLAYBOOK,
        extra_vars={
            "cert_distribution_vault": {**vault_conn, **approle(bao)},
            "cert_distribution_certs": [item],
            "push_results_file": str(results),
        },
        extra_vars_args=[unsafe_vars_file(tmp_path / "recorded.yml", "push_rollback_results", recorded)],
    )
    assert push.rc == 0, push.output
    assert bao.kv_versions("secret", path).keys() == {"1"}
    assert read_results_file(results) == {"cert_distribution_rollback_results": recorded}
    mark = bao.audit_mark()

    rollback = ansible.run_playbook(
        ROLLBACK_PLAYBOOK,
        extra_vars={"cert_distribution_vault": {**vault_conn, **approle(bao)}},
        extra_vars_args=[f"@{results}"],
    )

    assert not marker.exists(), "a string of the results file ran a command on the controller"
    assert rollback.rc != 0, rollback.output
    assert "invalid path: it holds template syntax" in rollback.output, rollback.output
    assert kv_writes(bao, mark) == []


def test_the_results_file_of_a_real_push_rolls_it_back(bao, ansible, vault_conn, tmp_path):
    certs = tmp_path / "certs"
    path = f"certs/trust-{uuid.uuid4().hex[:8]}"
    item = {"certificate_file": str(certs / "cert.pem"), "private_key_file": str(certs / "key.pem"), "path": path}
    results = tmp_path / "pushed.json"  # the name the docs used before: the content is YAML either way
    common = {"cert_distribution_vault": {**vault_conn, **approle(bao)}, "cert_distribution_certs": [item]}
    # The certificate the push renews, as any earlier writer left it: version 1.
    earlier = pki.make_chain("trust-first.example.com").leaf
    status, body = bao.api("POST", f"secret/data/{path}", {"data": {"certificate": earlier.cert_pem}})
    assert status == 200, body
    renewed = pki.write_leaf(certs, "trust-second.example.com")
    # The key reaches the run in a file: the harness scans for it as given here.
    push = ansible.run_playbook(
        PUSH_PLAYBOOK, extra_vars={**common, "push_results_file": str(results)}, secrets=[renewed.key_pem]
    )
    assert push.rc == 0, push.output
    assert read_results_file(results) == {
        "cert_distribution_rollback_results": [{"path": path, "version": 2, "previous_version": 1, "changed": True}]
    }

    rollback = ansible.run_playbook(
        ROLLBACK_PLAYBOOK,
        extra_vars={"cert_distribution_vault": {**vault_conn, **approle(bao)}},
        extra_vars_args=[f"@{results}"],
    )

    assert rollback.rc == 0, rollback.output
    assert bao.kv_versions("secret", path).keys() == {"1", "2", "3"}
    assert bao.kv_data(path, version=1) is not None
    assert bao.kv_data(path) == bao.kv_data(path, version=1)

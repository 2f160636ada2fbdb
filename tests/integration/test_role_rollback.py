# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The role's rollback from a push's recorded results: a push that wrote metadata only (no new version) is
reported as not rolled back and nothing is written - rolling it "back" would restore an older certificate.

Against a real OpenBao; playbooks/push.yml and playbooks/rollback.yml under ansible-playbook (the role and its
recorded results are the controller's); the first delivery is pushed in-process (``modules``).
"""

from __future__ import annotations

import uuid
from pathlib import Path

from ansible.parsing.yaml.loader import AnsibleLoader
from kv_requests import kv_writes
from pki import make_chain
from push_runs import approle, expected_data, push, single

PLAYBOOKS = Path(__file__).resolve().parents[2] / "playbooks"


def test_role_rollback_from_results_skips_a_metadata_only_push(modules, ansible, bao, vault_conn, tmp_path):
    path = f"certs/role-rollback-{uuid.uuid4().hex[:8]}.example.com"
    chain = make_chain(path.removeprefix("certs/"))
    first = push(modules, {**vault_conn, **approle(bao, "meta"), **single(path, chain.leaf, chain.intermediate)})
    assert not first.failed, first.msg
    assert bao.kv_version_numbers(path) == [1]
    results_file = tmp_path / "push-results.json"
    delivered = single(path, chain.leaf, chain.intermediate)
    second = ansible.run_playbook(
        PLAYBOOKS / "push.yml",
        extra_vars={
            "cert_distribution_vault": {**vault_conn, **approle(bao, "meta")},
            "cert_distribution_certs": [delivered],
            "cert_distribution_custom_metadata": True,
            "push_results_file": str(results_file),
        },
    )
    assert second.rc == 0, second.output
    recorded = AnsibleLoader(results_file.read_text()).get_single_data()["cert_distribution_rollback_results"]
    assert [(item["path"], item["changed"], item["version"], item["previous_version"]) for item in recorded] == [
        (path, True, 1, 1)
    ], "the second push should have written metadata only"

    rollback = ansible.run_playbook(
        PLAYBOOKS / "rollback.yml",
        extra_vars={
            "cert_distribution_vault": {**vault_conn, **approle(bao, "meta")},
            "cert_distribution_rollback_results": recorded,
        },
    )

    assert rollback.rc == 0, rollback.output
    reported = [line for line in rollback.output.splitlines() if "not rolled back" in line.lower() and path in line]
    assert reported, rollback.output
    restores = [task for task in rollback.tasks if task.action.endswith("vault_cert_rollback")]
    assert not any(task.result.get("changed") for task in restores), restores
    assert kv_writes(rollback.requests) == []
    assert bao.kv_version_numbers(path) == [1]
    assert bao.kv_data(path) == expected_data(chain.leaf, chain.intermediate)

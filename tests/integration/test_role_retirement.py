# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the cert_distribution role retires (prune, state absent) and what it never touches: secrets with a forged
mark, a sibling folder, the secrets just delivered (the four of an acme_sh certificate too); no prune after a push
that failed part way, none over several hosts; absent in check mode writes nothing.

Against a real OpenBao. The role runs under ansible-playbook; the secrets it starts from are pushed in-process
(``modules``) with the role's owner, as the role's own push would write them.
"""

from __future__ import annotations

import json
import uuid

from pki import make_chain
from push_runs import approle, push
from role_runs import certs_for, current_deleted, metadata, run_role

ACME_SH_FILES = ("cert.pem", "cert.key", "ca.pem", "fullchain.pem")


def deliver(modules, bao, vault_conn, items: list[dict], owner: str, **options) -> None:
    """The secrets a role run with ``cert_distribution_owner: owner`` would have delivered."""
    run = push(modules, {**vault_conn, **approle(bao), "certificates": items, "owner": owner, **options})
    assert not run.failed, run.msg


def root_write(bao, path: str, data: dict, custom_metadata: dict) -> None:
    status, body = bao.api("POST", f"secret/data/{path}", {"data": data})
    assert status == 200, body
    status, body = bao.api("POST", f"secret/metadata/{path}", {"custom_metadata": custom_metadata})
    assert status == 204, body


def new_owner() -> str:
    return f"retirement-{uuid.uuid4().hex[:8]}"


def test_prune_leaves_forged_marks_sibling_folders_and_secrets_just_delivered_alone(
    modules, ansible, bao, vault_conn, tmp_path
):
    prefix = f"certs/prune-{uuid.uuid4().hex[:8]}"
    items, _keys = certs_for(prefix, "kept", "stale")
    sibling_items, _sibling_keys = certs_for(f"{prefix}-other", "managed")
    owner = new_owner()
    deliver(modules, bao, vault_conn, items + sibling_items, owner)
    forged = {
        "suffix": "certautopilot.vaultX",
        "case": "CERTAUTOPILOT.VAULT",
        "space": " certautopilot.vault",
        "json": '["certautopilot.vault"]',
    }
    for name, value in forged.items():
        root_write(bao, f"{prefix}/forged-{name}", {"certificate": "x"}, {"managed_by": value})
    before = {
        secret: metadata(bao, secret)
        for secret in [f"{prefix}/forged-{name}" for name in forged] + [f"{prefix}-other/managed", f"{prefix}/kept"]
    }

    pruned, run = run_role(
        ansible,
        bao,
        vault_conn,
        tmp_path,
        {
            "cert_distribution_owner": owner,
            "cert_distribution_certs": items[:1],
            "cert_distribution_prune": True,
            # A trailing slash names the same folder; the sibling folder certs/prune-xxx-other is not in it.
            "cert_distribution_prune_prefix": f"{prefix}/",
        },
    )

    assert run.rc == 0, run.output
    assert pruned["pruned"] == [f"{prefix}/stale"]
    assert current_deleted(bao, f"{prefix}/stale")
    after = {secret: metadata(bao, secret) for secret in before}
    # The pushed secret is unchanged (no new version); the others were not touched.
    assert after == before


def test_prune_does_not_run_when_the_push_fails_part_way(modules, ansible, bao, vault_conn, tmp_path):
    prefix = f"certs/prune-{uuid.uuid4().hex[:8]}"
    items, _keys = certs_for(prefix, "first", "stale")
    owner = new_owner()
    deliver(modules, bao, vault_conn, items, owner)
    before = metadata(bao, f"{prefix}/stale")
    denied_items, _denied_keys = certs_for("denied-folder", f"x-{uuid.uuid4().hex[:6]}")

    _facts, run = run_role(
        ansible,
        bao,
        vault_conn,
        tmp_path,
        {
            "cert_distribution_owner": owner,
            # The second certificate's path is outside the policy: refused after the first was written.
            "cert_distribution_certs": items[:1] + denied_items,
            "cert_distribution_prune": True,
            # The whole mount: the only prefix that holds both paths, as a prune prefix must.
            "cert_distribution_prune_prefix": "",
            "cert_distribution_health_check": False,
            "cert_distribution_concurrency": 1,
        },
    )

    assert run.rc != 0
    assert "permission denied" in run.output, run.output
    assert metadata(bao, f"{prefix}/stale") == before


def test_prune_in_a_play_over_several_hosts_is_refused_before_anything_is_written(ansible, bao, vault_conn, tmp_path):
    """Each host of a play runs the role with its own cert_distribution_certs under one prune prefix (one
    certificate per web server, say). Each host's prune knows only its own list, so it would retire what the
    other hosts just delivered. The role refuses prune over more than one host, before any push.
    """
    prefix = f"certs/prune-hosts-{uuid.uuid4().hex[:8]}"
    web1_items, _web1_keys = certs_for(prefix, "web1")
    web2_items, _web2_keys = certs_for(prefix, "web2")
    inventory = tmp_path / "hosts.ini"
    python = ansible.python
    inventory.write_text(
        "".join(f"{host} ansible_connection=local ansible_python_interpreter={python}\n" for host in ("web1", "web2"))
    )
    playbook = tmp_path / "site.yml"
    play = {
        "hosts": "all",
        "gather_facts": False,
        "tasks": [
            {
                "ansible.builtin.include_role": {"name": "certautopilot.vault.cert_distribution"},
                "vars": {
                    "cert_distribution_certs": "{{ certs_by_host[inventory_hostname] }}",
                    # One owner for the fleet: each host would retire the secrets of this owner the others deliver.
                    "cert_distribution_owner": new_owner(),
                    "cert_distribution_prune": True,
                    "cert_distribution_prune_prefix": prefix,
                },
            }
        ],
    }
    playbook.write_text(json.dumps([play]))

    # The keys are in the extra vars: the harness scans the run for them, and for the login's secret_id.
    run = ansible.run_playbook(
        playbook,
        extra_vars={
            "cert_distribution_vault": {**vault_conn, **approle(bao)},
            "certs_by_host": {"web1": web1_items, "web2": web2_items},
        },
        env={"ANSIBLE_INVENTORY": str(inventory)},
    )

    assert run.rc != 0
    assert "with 2 hosts in the play it would retire the other hosts' certificates" in run.output
    assert bao.kv_version_numbers(f"{prefix}/web1") == [] and bao.kv_version_numbers(f"{prefix}/web2") == []


def test_absent_in_check_mode_writes_nothing_and_refuses_nothing_it_does_not_own(
    modules, ansible, bao, vault_conn, tmp_path
):
    prefix = f"certs/absent-{uuid.uuid4().hex[:8]}"
    items, _keys = certs_for(prefix, "ours")
    owner = new_owner()
    deliver(modules, bao, vault_conn, items, owner)
    before = metadata(bao, f"{prefix}/ours")

    retired, run = run_role(
        ansible,
        bao,
        vault_conn,
        tmp_path,
        {
            "cert_distribution_owner": owner,
            "cert_distribution_state": "absent",
            "cert_distribution_retire_mode": "purge",
            "cert_distribution_certs": items,
        },
        check=True,
    )

    assert run.rc == 0, run.output
    assert [(result["path"], result["changed"]) for result in retired["results"]] == [(f"{prefix}/ours", True)]
    assert metadata(bao, f"{prefix}/ours") == before
    writes = [
        entry["request"]["path"]
        for entry in run.requests
        if entry["request"]["operation"] in ("create", "update", "delete")
    ]
    assert [write for write in writes if write.startswith("secret/")] == []


def _role_cert(name: str) -> dict:
    leaf = make_chain(name).leaf
    return {"certificate": leaf.cert_pem, "private_key": leaf.key_pem}


def test_role_prune_after_an_acme_sh_push_keeps_the_four_secrets_just_delivered(
    modules, ansible, bao, vault_conn, tmp_path
):
    """Prune after an acme_sh push compares the inventory with the four secret paths of each delivered
    certificate: none of them is retired, a managed secret no longer delivered is."""
    prefix = f"certs/prune-acme-{uuid.uuid4().hex[:8]}"
    kept = {"path": f"{prefix}/kept", **_role_cert("kept.example.com")}
    gone = {"path": f"{prefix}/gone", **_role_cert("gone.example.com")}
    owner = new_owner()
    deliver(modules, bao, vault_conn, [kept, gone], owner, layout="acme_sh")

    facts, pruned = run_role(
        ansible,
        bao,
        vault_conn,
        tmp_path,
        {
            "cert_distribution_layout": "acme_sh",
            "cert_distribution_prune_prefix": prefix,
            "cert_distribution_owner": owner,
            "cert_distribution_certs": [kept],
            "cert_distribution_prune": True,
        },
    )

    assert pruned.rc == 0, pruned.output[-3000:]
    kept_paths = [f"{prefix}/kept/{name}" for name in ACME_SH_FILES]
    assert [result["path"] for result in facts["results"]] == kept_paths
    assert sorted(facts["pruned"] or []) == sorted(f"{prefix}/gone/{name}" for name in ACME_SH_FILES)
    assert all(bao.kv_data(item) is not None for item in kept_paths)
    assert all(bao.kv_data(f"{prefix}/gone/{name}") is None for name in ACME_SH_FILES)

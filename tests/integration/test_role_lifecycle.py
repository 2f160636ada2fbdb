# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Role cert_distribution against OpenBao: state absent, and prune after a push."""

from __future__ import annotations

import json
import uuid

from leaks import assert_no_leak
from pki import make_chain

TAG = {"managed_by": "certautopilot.vault"}


def approle(bao) -> dict[str, str]:
    return {"auth_method": "approle", "role_id": bao.role_ids["certs"], "secret_id": bao.new_approle_secret_id("certs")}


def certs_for(prefix: str, *names: str) -> tuple[list[dict], list[str]]:
    """Role certificate items whose paths are under ``prefix``, and their keys."""
    issued = [make_chain(f"{name}.example.com").leaf for name in names]
    items = [
        {"path": f"{prefix}/{name}", "certificate": leaf.cert_pem, "private_key": leaf.key_pem}
        for name, leaf in zip(names, issued)
    ]
    return items, [leaf.key_pem for leaf in issued]


def run_role(ansible, bao, vault_conn, tmp_path, role_vars: dict, *, check: bool = False):
    """Run the role once; the facts it set (results, pruned), the run, and a leak check of its output."""
    facts = tmp_path / f"facts-{uuid.uuid4().hex}.json"
    role = {"ansible.builtin.include_role": {"name": "certautopilot.vault.cert_distribution"}, "vars": role_vars}
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
    playbook.write_text(json.dumps([play]))
    login = {**vault_conn, **approle(bao)}
    run = ansible.run_playbook(playbook, extra_vars={"cert_distribution_vault": login}, check=check)
    keys = [item["private_key"] for item in role_vars.get("cert_distribution_certs", [])]
    assert_no_leak([run.output], login["secret_id"], *keys)
    return (json.loads(facts.read_text()) if facts.exists() else None), run


def metadata(bao, path: str) -> dict | None:
    status, body = bao.api("GET", f"secret/metadata/{path}")
    assert status in (200, 404), body
    return body["data"] if status == 200 else None


def current_deleted(bao, path: str) -> bool:
    meta = metadata(bao, path)
    return bool(meta["versions"][str(meta["current_version"])]["deletion_time"])


def foreign_secret(bao, path: str) -> None:
    """A certificate secret someone else wrote: no managed_by mark."""
    leaf = make_chain("foreign.example.com").leaf
    status, body = bao.api("POST", f"secret/data/{path}", {"data": {"certificate": leaf.cert_pem}})
    assert status == 200, body


def test_absent_soft_deletes_the_listed_certificates_and_leaves_the_others(ansible, bao, vault_conn, tmp_path):
    prefix = f"certs/absent-{uuid.uuid4().hex[:8]}"
    items, _keys = certs_for(prefix, "gone", "kept")
    pushed, run = run_role(ansible, bao, vault_conn, tmp_path, {"cert_distribution_certs": items})
    assert run.rc == 0, run.output

    retired, run = run_role(
        ansible, bao, vault_conn, tmp_path, {"cert_distribution_state": "absent", "cert_distribution_certs": items[:1]}
    )
    again, rerun = run_role(
        ansible, bao, vault_conn, tmp_path, {"cert_distribution_state": "absent", "cert_distribution_certs": items[:1]}
    )

    assert run.rc == 0, run.output
    assert [(result["path"], result["changed"], result["mode"]) for result in retired["results"]] == [
        (f"{prefix}/gone", True, "delete")
    ]
    assert current_deleted(bao, f"{prefix}/gone")
    assert not current_deleted(bao, f"{prefix}/kept")
    assert all(result["managed"] for result in pushed["results"])
    assert rerun.rc == 0 and not again["results"][0]["changed"]


def test_absent_purge_refuses_a_secret_without_the_mark_and_writes_nothing(ansible, bao, vault_conn, tmp_path):
    prefix = f"certs/absent-{uuid.uuid4().hex[:8]}"
    items, _keys = certs_for(prefix, "ours", "theirs")
    run_role(ansible, bao, vault_conn, tmp_path, {"cert_distribution_certs": items[:1]})
    foreign_secret(bao, f"{prefix}/theirs")
    before = {path: metadata(bao, path) for path in (f"{prefix}/ours", f"{prefix}/theirs")}

    _facts, run = run_role(
        ansible,
        bao,
        vault_conn,
        tmp_path,
        {
            "cert_distribution_state": "absent",
            "cert_distribution_retire_mode": "purge",
            "cert_distribution_certs": items,
            "cert_distribution_concurrency": 1,
        },
    )

    assert run.rc != 0
    assert f"{prefix}/theirs" in run.output and "managed_by" in run.output, run.output
    assert metadata(bao, f"{prefix}/theirs") == before[f"{prefix}/theirs"]


def test_prune_lists_in_check_mode_then_retires_only_managed_secrets_not_delivered(ansible, bao, vault_conn, tmp_path):
    prefix = f"certs/prune-{uuid.uuid4().hex[:8]}"
    items, _keys = certs_for(prefix, "web", "old-api", "team/old-db")
    run_role(ansible, bao, vault_conn, tmp_path, {"cert_distribution_certs": items})
    foreign_secret(bao, f"{prefix}/foreign")
    foreign_secret(bao, f"{prefix}/team/foreign")
    prune = {
        "cert_distribution_certs": items[:1],
        "cert_distribution_prune": True,
        "cert_distribution_prune_prefix": prefix,
    }
    untouched = {path: metadata(bao, f"{prefix}/{path}") for path in ("web", "foreign", "team/foreign")}
    before = {path: metadata(bao, f"{prefix}/{path}") for path in ("old-api", "team/old-db")}

    listed, check_run = run_role(ansible, bao, vault_conn, tmp_path, prune, check=True)
    after_check = {path: metadata(bao, f"{prefix}/{path}") for path in ("old-api", "team/old-db")}
    pruned, run = run_role(ansible, bao, vault_conn, tmp_path, prune)
    again, rerun = run_role(ansible, bao, vault_conn, tmp_path, prune)

    assert check_run.rc == 0, check_run.output
    assert sorted(listed["pruned"]) == [f"{prefix}/old-api", f"{prefix}/team/old-db"]
    assert after_check == before
    assert run.rc == 0, run.output
    assert sorted(pruned["pruned"]) == [f"{prefix}/old-api", f"{prefix}/team/old-db"]
    assert current_deleted(bao, f"{prefix}/old-api") and current_deleted(bao, f"{prefix}/team/old-db")
    assert {path: metadata(bao, f"{prefix}/{path}") for path in untouched} == untouched
    assert rerun.rc == 0 and again["pruned"] == []


def test_prune_with_no_certificates_is_refused_before_anything_is_written(ansible, bao, vault_conn, tmp_path):
    prefix = f"certs/prune-{uuid.uuid4().hex[:8]}"
    items, _keys = certs_for(prefix, "only")
    run_role(ansible, bao, vault_conn, tmp_path, {"cert_distribution_certs": items})
    before = metadata(bao, f"{prefix}/only")

    _facts, run = run_role(
        ansible,
        bao,
        vault_conn,
        tmp_path,
        {"cert_distribution_certs": [], "cert_distribution_prune": True, "cert_distribution_prune_prefix": prefix},
    )

    assert run.rc != 0
    assert (
        "cert_distribution_prune with an empty cert_distribution_certs would retire every managed secret" in run.output
    )
    assert metadata(bao, f"{prefix}/only") == before


def test_absent_with_the_acme_sh_layout_retires_the_four_secrets_of_each_certificate(
    ansible, bao, vault_conn, tmp_path
):
    prefix = f"certs/absent-acme-{uuid.uuid4().hex[:8]}"
    items, _keys = certs_for(prefix, "acme")
    layout = {"cert_distribution_layout": "acme_sh", "cert_distribution_certs": items}
    run_role(ansible, bao, vault_conn, tmp_path, layout)

    retired, run = run_role(ansible, bao, vault_conn, tmp_path, {**layout, "cert_distribution_state": "absent"})

    assert run.rc == 0, run.output
    files = ("cert.pem", "cert.key", "ca.pem", "fullchain.pem")
    assert [result["path"] for result in retired["results"]] == [f"{prefix}/acme/{name}" for name in files]
    assert all(current_deleted(bao, f"{prefix}/acme/{name}") for name in files)

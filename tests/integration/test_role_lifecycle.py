# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Role cert_distribution against OpenBao: state absent, and prune after a push."""

from __future__ import annotations

import re
import uuid

import pytest
from fault_proxy import FaultProxy
from pki import make_chain
from role_runs import certs_for, current_deleted, metadata, new_owner, run_role

TAG = {"managed_by": "certautopilot.vault"}
OWNER_KEY = "certautopilot_owner"


def foreign_secret(bao, path: str, custom_metadata: dict | None = None) -> None:
    """A certificate secret someone else wrote: no mark, unless ``custom_metadata`` sets one by hand."""
    leaf = make_chain("foreign.example.com").leaf
    status, body = bao.api("POST", f"secret/data/{path}", {"data": {"certificate": leaf.cert_pem}})
    assert status == 200, body
    if custom_metadata is not None:
        status, body = bao.api("POST", f"secret/metadata/{path}", {"custom_metadata": custom_metadata})
        assert status == 204, body


def live(bao, path: str) -> bool:
    """The secret exists and its current version is not deleted."""
    return metadata(bao, path) is not None and not current_deleted(bao, path)


def writes_since(bao, mark: int) -> list[str]:
    """The KV paths written (created, updated, deleted) after the audit mark."""
    return [
        entry["request"]["path"]
        for entry in bao.audit_requests(mark)
        if entry["request"]["operation"] in ("create", "update", "delete")
        and entry["request"]["path"].startswith("secret/")
    ]


def test_absent_soft_deletes_the_listed_certificates_and_leaves_the_others(ansible, bao, vault_conn, tmp_path):
    prefix = f"certs/absent-{uuid.uuid4().hex[:8]}"
    owner = {"cert_distribution_owner": new_owner("absent")}
    items, _keys = certs_for(prefix, "gone", "kept")
    pushed, run = run_role(ansible, bao, vault_conn, tmp_path, {**owner, "cert_distribution_certs": items})
    assert run.rc == 0, run.output
    absent = {**owner, "cert_distribution_state": "absent", "cert_distribution_certs": items[:1]}

    retired, run = run_role(ansible, bao, vault_conn, tmp_path, absent)
    again, rerun = run_role(ansible, bao, vault_conn, tmp_path, absent)

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
    owner = {"cert_distribution_owner": new_owner("absent")}
    items, _keys = certs_for(prefix, "ours", "theirs")
    run_role(ansible, bao, vault_conn, tmp_path, {**owner, "cert_distribution_certs": items[:1]})
    foreign_secret(bao, f"{prefix}/theirs")
    before = {path: metadata(bao, path) for path in (f"{prefix}/ours", f"{prefix}/theirs")}

    _facts, run = run_role(
        ansible,
        bao,
        vault_conn,
        tmp_path,
        {
            **owner,
            "cert_distribution_state": "absent",
            "cert_distribution_retire_mode": "purge",
            "cert_distribution_certs": items,
            "cert_distribution_concurrency": 1,
        },
    )

    assert run.rc != 0
    assert f"{prefix}/theirs" in run.output and "managed_by" in run.output, run.output
    assert metadata(bao, f"{prefix}/theirs") == before[f"{prefix}/theirs"]


def test_absent_of_one_owner_refuses_the_secret_of_another_owner_and_writes_nothing(ansible, bao, vault_conn, tmp_path):
    prefix = f"certs/absent-{uuid.uuid4().hex[:8]}"
    items, _keys = certs_for(prefix, "b-api")
    team_b = {"cert_distribution_owner": new_owner("team-b"), "cert_distribution_certs": items}
    _facts, seeded = run_role(ansible, bao, vault_conn, tmp_path, team_b)
    assert seeded.rc == 0, seeded.output
    before = metadata(bao, f"{prefix}/b-api")

    _facts, run = run_role(
        ansible,
        bao,
        vault_conn,
        tmp_path,
        {**team_b, "cert_distribution_owner": new_owner("team-a"), "cert_distribution_state": "absent"},
    )

    assert run.rc != 0
    assert f"{prefix}/b-api" in run.output, run.output
    assert metadata(bao, f"{prefix}/b-api") == before


def test_absent_without_an_owner_refuses_a_secret_marked_with_an_owner_and_writes_nothing(
    ansible, bao, vault_conn, tmp_path
):
    """Retiring without an owner follows the push's rule: a secret whose mark names an owner is that owner's."""
    prefix = f"certs/absent-{uuid.uuid4().hex[:8]}"
    items, _keys = certs_for(prefix, "a-web")
    team_a = new_owner("team-a")
    foreign_secret(bao, f"{prefix}/a-web", {**TAG, OWNER_KEY: team_a})
    before = metadata(bao, f"{prefix}/a-web")
    at = bao.audit_mark()

    _facts, run = run_role(
        ansible, bao, vault_conn, tmp_path, {"cert_distribution_state": "absent", "cert_distribution_certs": items}
    )

    assert run.rc != 0
    assert f"is owned by {team_a}: give owner {team_a} or another path" in " ".join(run.output.split()), run.output
    assert writes_since(bao, at) == [], run.output
    assert metadata(bao, f"{prefix}/a-web") == before


def two_versions_marked(bao, path: str, owner: str) -> None:
    for body in ("v1", "v2"):
        assert bao.api("POST", f"secret/data/{path}", {"data": {"certificate": body}})[0] == 200
    assert bao.api("POST", f"secret/metadata/{path}", {"custom_metadata": {**TAG, OWNER_KEY: owner}})[0] == 204


def test_rollback_of_one_owner_refuses_the_secret_of_another_owner_and_writes_nothing(
    ansible, bao, vault_conn, tmp_path
):
    path = f"certs/rollback-{uuid.uuid4().hex[:8]}"
    team_a, team_b = new_owner("team-a"), new_owner("team-b")
    two_versions_marked(bao, path, team_b)
    before = metadata(bao, path)
    at = bao.audit_mark()
    rollback = {
        "cert_distribution_state": "rollback",
        "cert_distribution_rollback_items": [{"path": path, "version": 1}],
    }

    _facts, run = run_role(ansible, bao, vault_conn, tmp_path, {**rollback, "cert_distribution_owner": team_a})

    assert run.rc != 0
    assert f"is owned by {team_b}, not by owner {team_a}" in " ".join(run.output.split()), run.output
    assert writes_since(bao, at) == [], run.output
    assert metadata(bao, path) == before
    restored, own = run_role(ansible, bao, vault_conn, tmp_path, {**rollback, "cert_distribution_owner": team_b})
    assert own.rc == 0, own.output
    assert [(result["version"], result["restored_version"]) for result in restored["results"]] == [(3, 1)]


def test_prune_lists_in_check_mode_then_retires_only_managed_secrets_not_delivered(ansible, bao, vault_conn, tmp_path):
    prefix = f"certs/prune-{uuid.uuid4().hex[:8]}"
    owner = {"cert_distribution_owner": new_owner("prune")}
    items, _keys = certs_for(prefix, "web", "old-api", "team/old-db")
    run_role(ansible, bao, vault_conn, tmp_path, {**owner, "cert_distribution_certs": items})
    foreign_secret(bao, f"{prefix}/foreign")
    foreign_secret(bao, f"{prefix}/team/foreign")
    prune = {
        **owner,
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


def seed_two_teams(ansible, bao, vault_conn, tmp_path) -> tuple[str, dict, dict, list[dict]]:
    """Team A and team B, each with its own owner, deliver under one folder of the default prune prefix (certs).

    Returns the folder, team A's and team B's role variables (owner and whole list) and team A's list.
    """
    folder = f"certs/teams-{uuid.uuid4().hex[:8]}"
    a_items, _a_keys = certs_for(f"{folder}/team-a", "web", "old-api")
    b_items, _b_keys = certs_for(f"{folder}/team-b", "api", "old-db")
    team_a = {"cert_distribution_owner": new_owner("team-a"), "cert_distribution_certs": a_items}
    team_b = {"cert_distribution_owner": new_owner("team-b"), "cert_distribution_certs": b_items}
    for team in (team_a, team_b):
        _facts, seeded = run_role(ansible, bao, vault_conn, tmp_path, team)
        assert seeded.rc == 0, seeded.output
    return folder, team_a, team_b, a_items


def test_prune_of_one_owner_never_retires_another_owners_secrets_under_the_default_prefix(
    ansible, bao, vault_conn, tmp_path
):
    """The audit's data-loss case: team A's prune with default settings retired team B's certificates."""
    folder, team_a, _team_b, a_items = seed_two_teams(ansible, bao, vault_conn, tmp_path)
    team_b_secrets = {path: metadata(bao, path) for path in (f"{folder}/team-b/api", f"{folder}/team-b/old-db")}

    pruned, run = run_role(
        ansible,
        bao,
        vault_conn,
        tmp_path,
        {**team_a, "cert_distribution_certs": a_items[:1], "cert_distribution_prune": True},
    )

    assert run.rc == 0, run.output
    assert pruned["pruned"] == [f"{folder}/team-a/old-api"]
    assert current_deleted(bao, f"{folder}/team-a/old-api") and live(bao, f"{folder}/team-a/web")
    assert {path: metadata(bao, path) for path in team_b_secrets} == team_b_secrets


def test_prune_in_check_mode_lists_only_this_owners_secrets_and_writes_nothing(ansible, bao, vault_conn, tmp_path):
    folder, team_a, _team_b, a_items = seed_two_teams(ansible, bao, vault_conn, tmp_path)
    mark = bao.audit_mark()

    listed, run = run_role(
        ansible,
        bao,
        vault_conn,
        tmp_path,
        {**team_a, "cert_distribution_certs": a_items[:1], "cert_distribution_prune": True},
        check=True,
    )

    assert run.rc == 0, run.output
    assert listed["pruned"] == [f"{folder}/team-a/old-api"]
    assert writes_since(bao, mark) == []
    assert live(bao, f"{folder}/team-a/old-api")


def test_prune_without_an_owner_is_refused_before_anything_is_written(ansible, bao, vault_conn, tmp_path):
    prefix = f"certs/prune-{uuid.uuid4().hex[:8]}"
    owner = {"cert_distribution_owner": new_owner("prune")}
    items, _keys = certs_for(prefix, "stale", "new")
    run_role(ansible, bao, vault_conn, tmp_path, {**owner, "cert_distribution_certs": items[:1]})
    mark = bao.audit_mark()

    _facts, run = run_role(
        ansible,
        bao,
        vault_conn,
        tmp_path,
        {
            "cert_distribution_certs": items[1:],
            "cert_distribution_prune": True,
            "cert_distribution_prune_prefix": prefix,
        },
    )

    assert writes_since(bao, mark) == []
    assert run.rc != 0
    assert "cert_distribution_prune needs cert_distribution_owner" in run.output, run.output
    assert live(bao, f"{prefix}/stale") and metadata(bao, f"{prefix}/new") is None


def test_prune_after_a_push_that_failed_part_way_with_errors_ignored_retires_nothing(
    ansible, bao, vault_conn, tmp_path
):
    """include_role with apply: {ignore_errors: true}: the push stops at the second certificate, the role goes on.

    Before, prune compared the inventory with the results of the first certificate alone and retired the second
    and third, still in the list. Prune must not run at all after a push that did not deliver everything.
    """
    prefix = f"certs/prune-{uuid.uuid4().hex[:8]}"
    owner = {"cert_distribution_owner": new_owner("prune")}
    items, _keys = certs_for(prefix, "first", "second", "third", "stale")
    _facts, seeded = run_role(ansible, bao, vault_conn, tmp_path, {**owner, "cert_distribution_certs": items})
    assert seeded.rc == 0, seeded.output
    renewed, _renewed_keys = certs_for(prefix, "first", "second", "third")
    before = {item["path"]: metadata(bao, item["path"]) for item in items[1:]}

    with FaultProxy(bao.addr, bao.ca_cert) as proxy:
        proxy.add_rule("POST", rf"^secret/data/{re.escape(prefix)}/second$", status=403, times=None)
        facts, run = run_role(
            ansible,
            bao,
            {**vault_conn, "url": proxy.url, "retries": 0},
            tmp_path,
            {
                **owner,
                "cert_distribution_certs": renewed,
                "cert_distribution_prune": True,
                "cert_distribution_prune_prefix": prefix,
                "cert_distribution_concurrency": 1,
            },
            apply={"ignore_errors": True},
        )

    assert {path: metadata(bao, path) for path in before} == before
    assert "cert_distribution_prune did not run" in run.output, run.output
    assert [result["path"] for result in facts["results"]] == [f"{prefix}/first"]
    assert facts["pruned"] == []


def test_prune_whose_prefix_does_not_hold_every_delivered_path_is_refused_before_anything_is_written(
    ansible, bao, vault_conn, tmp_path
):
    folder = f"certs/prune-{uuid.uuid4().hex[:8]}"
    owner = {"cert_distribution_owner": new_owner("prune")}
    stale, _stale_keys = certs_for(f"{folder}/pruned", "stale")
    inside, _inside_keys = certs_for(f"{folder}/pruned", "web")
    outside, _outside_keys = certs_for(f"{folder}/elsewhere", "api")
    run_role(ansible, bao, vault_conn, tmp_path, {**owner, "cert_distribution_certs": stale})
    mark = bao.audit_mark()

    _facts, run = run_role(
        ansible,
        bao,
        vault_conn,
        tmp_path,
        {
            **owner,
            "cert_distribution_certs": inside + outside,
            "cert_distribution_prune": True,
            "cert_distribution_prune_prefix": f"{folder}/pruned",
        },
    )

    assert writes_since(bao, mark) == []
    assert run.rc != 0
    assert "cert_distribution_prune_prefix does not contain the secret path of cert_distribution_certs[1]:" in (
        " ".join(run.output.split())
    ), run.output
    assert live(bao, f"{folder}/pruned/stale")


def test_a_secret_of_this_owner_whose_name_holds_a_space_is_left_out_with_a_warning_and_the_rest_pruned(
    ansible, bao, vault_conn, tmp_path
):
    prefix = f"certs/prune-{uuid.uuid4().hex[:8]}"
    owner = new_owner("prune")
    items, _keys = certs_for(prefix, "kept", "stale")
    run_role(ansible, bao, vault_conn, tmp_path, {"cert_distribution_owner": owner, "cert_distribution_certs": items})
    odd = f"{prefix}/has space"
    foreign_secret(bao, odd, {**TAG, OWNER_KEY: owner})
    odd_before = metadata(bao, odd)

    pruned, run = run_role(
        ansible,
        bao,
        vault_conn,
        tmp_path,
        {
            "cert_distribution_owner": owner,
            "cert_distribution_certs": items[:1],
            "cert_distribution_prune": True,
            "cert_distribution_prune_prefix": prefix,
        },
    )

    assert run.rc == 0, run.output
    assert pruned["pruned"] == [f"{prefix}/stale"]
    assert current_deleted(bao, f"{prefix}/stale")
    assert metadata(bao, odd) == odd_before
    warning = " ".join(run.output[run.output.index("[WARNING]") :].split())
    assert f"'{odd}'" in warning and "not a valid secret path" in warning, run.output


def test_an_owner_that_is_not_a_name_is_refused_by_the_role_before_anything_is_written(
    ansible, bao, vault_conn, tmp_path
):
    prefix = f"certs/prune-{uuid.uuid4().hex[:8]}"
    items, _keys = certs_for(prefix, "web")
    mark = bao.audit_mark()

    _facts, run = run_role(
        ansible, bao, vault_conn, tmp_path, {"cert_distribution_owner": "team a/x", "cert_distribution_certs": items}
    )

    assert writes_since(bao, mark) == []
    assert run.rc != 0
    assert "cert_distribution_owner must be 1 to 64 characters" in run.output, run.output
    assert "team a/x" not in run.output


def test_prune_with_no_certificates_is_refused_before_anything_is_written(ansible, bao, vault_conn, tmp_path):
    prefix = f"certs/prune-{uuid.uuid4().hex[:8]}"
    owner = {"cert_distribution_owner": new_owner("prune")}
    items, _keys = certs_for(prefix, "only")
    run_role(ansible, bao, vault_conn, tmp_path, {**owner, "cert_distribution_certs": items})
    before = metadata(bao, f"{prefix}/only")

    _facts, run = run_role(
        ansible,
        bao,
        vault_conn,
        tmp_path,
        {
            **owner,
            "cert_distribution_certs": [],
            "cert_distribution_prune": True,
            "cert_distribution_prune_prefix": prefix,
        },
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
    layout = {
        "cert_distribution_layout": "acme_sh",
        "cert_distribution_certs": items,
        "cert_distribution_owner": new_owner("acme"),
    }
    run_role(ansible, bao, vault_conn, tmp_path, layout)

    retired, run = run_role(ansible, bao, vault_conn, tmp_path, {**layout, "cert_distribution_state": "absent"})

    assert run.rc == 0, run.output
    files = ("cert.pem", "cert.key", "ca.pem", "fullchain.pem")
    assert [result["path"] for result in retired["results"]] == [f"{prefix}/acme/{name}" for name in files]
    assert all(current_deleted(bao, f"{prefix}/acme/{name}") for name in files)


@pytest.mark.parametrize("refusal", ["empty list", "prefix outside", "several hosts"])
def test_a_prune_refusal_holds_when_the_role_is_included_with_errors_ignored(
    ansible, bao, vault_conn, tmp_path, refusal
):
    """include_role's apply: {ignore_errors: true} (or the play's) must not turn a refusal into a push and a prune."""
    prefix = f"certs/ignored-{uuid.uuid4().hex[:8]}"
    owner = {"cert_distribution_owner": new_owner("team-a")}
    delivered, _keys = certs_for(prefix, "web", "api")
    _facts, first = run_role(ansible, bao, vault_conn, tmp_path, {**owner, "cert_distribution_certs": delivered})
    assert first.rc == 0, first.output
    prune = {**owner, "cert_distribution_prune": True, "cert_distribution_prune_prefix": prefix}
    hosts = None
    if refusal == "empty list":
        role_vars, expected = {**prune, "cert_distribution_certs": []}, "would retire every managed secret"
    elif refusal == "prefix outside":
        outside, _keys = certs_for(f"certs/elsewhere-{uuid.uuid4().hex[:8]}", "web")
        role_vars, expected = {**prune, "cert_distribution_certs": outside}, "does not contain the secret path"
    else:
        # Each host delivers one of the two: each would retire the other's.
        role_vars = {**prune, "cert_distribution_certs": "{{ host_certs }}"}
        hosts = {"web1": {"host_certs": delivered[:1]}, "web2": {"host_certs": delivered[1:]}}
        expected = "it would retire the other hosts' certificates"
    mark = bao.audit_mark()

    _facts, run = run_role(ansible, bao, vault_conn, tmp_path, role_vars, apply={"ignore_errors": True}, hosts=hosts)

    assert run.rc != 0 and expected in run.output, run.output
    assert writes_since(bao, mark) == [], run.output
    assert live(bao, f"{prefix}/web") and live(bao, f"{prefix}/api")


def test_prune_with_acme_sh_and_no_private_key_retires_the_stale_certificate(ansible, bao, vault_conn, tmp_path):
    """Without the key, acme_sh delivers three secrets a certificate (no cert.key): prune must count those."""
    prefix = f"certs/acme-nokey-{uuid.uuid4().hex[:8]}"
    common = {
        "cert_distribution_owner": new_owner("acme"),
        "cert_distribution_layout": "acme_sh",
        "cert_distribution_include_private_key": False,
    }
    stale, _keys = certs_for(prefix, "stale")
    web, _keys = certs_for(prefix, "web")
    _facts, first = run_role(ansible, bao, vault_conn, tmp_path, {**common, "cert_distribution_certs": stale})
    assert first.rc == 0, first.output

    facts, run = run_role(
        ansible,
        bao,
        vault_conn,
        tmp_path,
        {
            **common,
            "cert_distribution_certs": web,
            "cert_distribution_prune": True,
            "cert_distribution_prune_prefix": prefix,
        },
    )

    assert run.rc == 0, run.output
    assert sorted(facts["pruned"]) == [f"{prefix}/stale/{name}" for name in ("ca.pem", "cert.pem", "fullchain.pem")]
    assert live(bao, f"{prefix}/web/cert.pem") and metadata(bao, f"{prefix}/web/cert.key") is None


# -- the first hour: a misspelt variable is named, not silently ignored -------------------------------------


def test_a_misspelt_role_variable_and_an_empty_certificate_list_are_each_warned_about_by_name(
    ansible, bao, vault_conn, tmp_path
):
    items, _keys = certs_for(f"certs/typo-{uuid.uuid4().hex[:8]}", "typo")

    facts, run = run_role(ansible, bao, vault_conn, tmp_path, {"cert_distribution_cert": items})

    assert run.rc == 0, run.output
    assert "WARNING: cert_distribution_cert: not a variable of the role cert_distribution" in run.output
    assert "WARNING: cert_distribution_certs is empty" in run.output
    assert facts["results"] == []
    # The role's own variables and the facts it sets are never named.
    assert "cert_distribution_vault:" not in run.output and "cert_distribution_results," not in run.output

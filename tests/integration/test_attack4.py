# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Attacks on the managed_by mark, the version policy options, the role's absent/prune and the HTML report.

Against a real OpenBao dev server. A test named for a defect fails on the code it was written against and
states the safe behaviour; the others are attacks that held, kept as regressions.
"""

from __future__ import annotations

import json
import re
import uuid
from html.parser import HTMLParser

import pytest
from fault_proxy import FaultProxy
from leaks import assert_no_leak
from pki import make_chain
from push_runs import approle, expected_data, push, single
from role_runs import certs_for, current_deleted, html_report, metadata, run_role

TAG = {"managed_by": "certautopilot.vault"}
# The contract changed (issue 21): the mark is opt-in, names an owner and goes before the data.
OWNER = "team-a"
MARK = {**TAG, "certautopilot_owner": OWNER}


@pytest.fixture
def path() -> str:
    return f"certs/attack4-{uuid.uuid4().hex[:10]}"


def root_write(bao, path: str, data: dict, custom_metadata: dict | None = None) -> None:
    """Another owner's secret: written with the root token, optionally with its own custom_metadata."""
    status, body = bao.api("POST", f"secret/data/{path}", {"data": data})
    assert status == 200, body
    if custom_metadata is not None:
        status, body = bao.api("POST", f"secret/metadata/{path}", {"custom_metadata": custom_metadata})
        assert status == 204, body


def custom_metadata_of(bao, path: str) -> dict | None:
    found = metadata(bao, path)
    return None if found is None else (found.get("custom_metadata") or {})


# -- 1. the managed_by mark ---------------------------------------------------------------------------------------


def test_a_tag_write_failing_after_the_data_write_does_not_report_the_written_certificate_as_not_written(
    ansible, bao, path
):
    """Applied writes are never reported as unwritten, and unapplied ones never as written.

    With an owner the mark goes before the data: its metadata write fails with HTTP 500, the read-back shows
    it did not land, and the data is never sent - the item is reported not written, and that is true.
    """
    leaves = [make_chain(f"tag500-{index}.example.com").leaf for index in range(2)]
    paths = [f"{path}-a", f"{path}-b"]
    args = {
        "retries": 0,
        "concurrency": 1,
        **approle(bao, "certs"),
        "owner": OWNER,
        "certificates": [
            {"path": item_path, "certificate": leaf.cert_pem, "private_key": leaf.key_pem}
            for item_path, leaf in zip(paths, leaves)
        ],
    }
    with FaultProxy(bao.addr, bao.ca_cert) as proxy:
        proxy.add_rule("POST", rf"^secret/metadata/{re.escape(paths[0])}$", status=500, times=None)
        run = push(ansible, {"url": proxy.url, **args})

    assert run.failed
    assert bao.kv_version_numbers(paths[0]) == [] and bao.kv_version_numbers(paths[1]) == []
    assert paths[0] in (run.result.get("not_written") or []), run.result
    assert not run.result.get("results"), run.result


def test_a_tag_write_failing_after_the_data_write_of_a_single_certificate_reports_the_version_written(
    ansible, bao, path
):
    """Same fault, one certificate: the mark's write fails before any data is sent, and the task says so."""
    leaf = make_chain("tag500-single.example.com").leaf
    with FaultProxy(bao.addr, bao.ca_cert) as proxy:
        proxy.add_rule("POST", rf"^secret/metadata/{re.escape(path)}$", status=500, times=None)
        args = {"url": proxy.url, "retries": 0, **approle(bao, "certs"), **single(path, leaf), "owner": OWNER}
        run = push(ansible, args)

    assert bao.kv_version_numbers(path) == []
    assert run.failed and "shows it was not written" in run.msg, run.msg


def test_a_cas_conflict_after_the_metadata_first_write_does_not_wipe_the_other_writers_custom_metadata(
    ansible, bao, path
):
    """A new secret pushed with a version policy: metadata is written first (tag, max_versions), then the data
    with cas=0. Another owner creates the secret in between, with custom_metadata of its own.

    Expected: the other owner's custom_metadata survives (the conflict means someone else owns this write;
    nothing of theirs may be overwritten). Before: the refused data write "restores" custom_metadata to {} -
    the snapshot of a secret that did not exist - wiping {team: web}; the retry then tags the wiped map.
    """
    leaf = make_chain("race.example.com").leaf

    def other_owner_creates_it() -> None:
        root_write(bao, path, {"owner": "team-web"}, {"team": "web"})

    with FaultProxy(bao.addr, bao.ca_cert) as proxy:
        proxy.add_rule("POST", rf"^secret/data/{re.escape(path)}$", action=other_owner_creates_it)
        args = {"url": proxy.url, **approle(bao, "certs"), **single(path, leaf), "max_versions": 5, "owner": OWNER}
        run = push(ansible, args)

    assert not run.failed, run.msg
    assert bao.kv_version_numbers(path) == [1, 2]
    assert custom_metadata_of(bao, path) == {"team": "web", **MARK}


def test_the_mark_on_a_secret_whose_current_version_is_deleted_keeps_the_other_custom_metadata(
    ansible, bao, vault_conn, path
):
    leaf = make_chain("deleted-current.example.com").leaf
    root_write(bao, path, {"certificate": "old"}, {"team": "web", "ticket": "CHG-1"})
    assert bao.api("DELETE", f"secret/data/{path}")[0] == 204

    run = push(ansible, {**vault_conn, **approle(bao, "certs"), **single(path, leaf), "owner": OWNER})
    again = push(ansible, {**vault_conn, **approle(bao, "certs"), **single(path, leaf), "owner": OWNER})

    assert not run.failed, run.msg
    assert run.result["managed"] is True and run.result["version"] == 2
    assert custom_metadata_of(bao, path) == {"team": "web", "ticket": "CHG-1", **MARK}
    assert not again.changed, again.result


@pytest.mark.parametrize("options", [{}, {"custom_metadata": True}, {"max_versions": 4}])
def test_the_mark_on_a_secret_with_metadata_but_no_version_keeps_the_other_custom_metadata(
    ansible, bao, vault_conn, path, options
):
    leaf = make_chain("metadata-only.example.com").leaf
    status, body = bao.api("POST", f"secret/metadata/{path}", {"custom_metadata": {"team": "db"}})
    assert status == 204, body

    run = push(ansible, {**vault_conn, **approle(bao, "certs"), **single(path, leaf), **options, "owner": OWNER})

    assert not run.failed, run.msg
    assert run.result["managed"] is True
    found = custom_metadata_of(bao, path)
    assert found["team"] == "db" and found["certautopilot_owner"] == OWNER, found
    assert bao.kv_version_numbers(path) == [1]


def test_the_mark_is_not_written_in_check_mode_and_a_token_that_may_not_write_it_is_refused_with_nothing_written(
    ansible, bao, vault_conn, path
):
    leaf = make_chain("check-mark.example.com").leaf
    root_write(bao, path, expected_data(leaf), {"team": "web"})

    args = {**vault_conn, **single(path, leaf), "owner": OWNER}
    checked = push(ansible, {**args, **approle(bao, "certs")}, check=True)
    refused = push(ansible, {**args, **approle(bao, "sample")})

    assert checked.changed and checked.result["changed_fields"] == ["certautopilot_owner"], checked.result
    assert not [
        entry
        for entry in checked.requests
        if entry["request"]["path"].startswith("secret/") and entry["request"]["operation"] in ("create", "update")
    ]
    assert custom_metadata_of(bao, path) == {"team": "web"}
    # The token may not write metadata: refused, nothing changes.
    assert refused.failed and f"permission denied on secret/metadata/{path}" in refused.msg, refused.msg
    assert custom_metadata_of(bao, path) == {"team": "web"}
    assert bao.kv_version_numbers(path) == [1]


# -- 2. max_versions, delete_version_after, cas_required ----------------------------------------------------------


def test_a_version_policy_given_in_other_spellings_is_idempotent_and_cas_required_does_not_stop_our_writes(
    ansible, bao, vault_conn, path
):
    first, second = make_chain("spell-1.example.com").leaf, make_chain("spell-2.example.com").leaf
    policy = {"max_versions": 3, "delete_version_after": "1h30m", "cas_required": True}

    created = push(ansible, {**vault_conn, **approle(bao, "certs"), **single(path, first), **policy})
    respelled = [
        push(
            ansible,
            {**vault_conn, **approle(bao, "certs"), **single(path, first), **policy, "delete_version_after": spelling},
        )
        for spelling in ("5400", 5400, "90m", "1h29m60s", " 1h30m0s ")
    ]
    renewed = push(ansible, {**vault_conn, **approle(bao, "certs"), **single(path, second), **policy})

    assert not created.failed, created.msg
    assert [(run.failed, run.changed) for run in respelled] == [(False, False)] * 5, [run.msg for run in respelled]
    assert not renewed.failed and renewed.result["version"] == 2, renewed.msg
    assert renewed.result["changed_fields"] == ["certificate", "private_key", "fullchain"]
    found = metadata(bao, path)
    assert (found["max_versions"], found["delete_version_after"], found["cas_required"]) == (3, "1h30m0s", True)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"delete_version_after": "1e9h"}, "delete_version_after must be a number of seconds or a duration"),
        ({"delete_version_after": "-5s"}, "delete_version_after must be a number of seconds or a duration"),
        ({"delete_version_after": True}, "delete_version_after must be a number of seconds or a duration"),
        ({"delete_version_after": 1.5}, "delete_version_after must be a number of seconds or a duration"),
        ({"delete_version_after": "99999999999999999999999h"}, "delete_version_after"),
    ],
)
def test_an_odd_duration_is_refused_by_name_and_nothing_is_written(ansible, bao, vault_conn, path, options, message):
    leaf = make_chain("odd-duration.example.com").leaf

    run = push(ansible, {**vault_conn, **approle(bao, "certs"), **single(path, leaf), **options})

    assert run.failed and message in run.msg, run.msg
    assert "unexpected error" not in run.msg
    assert bao.api("GET", f"secret/metadata/{path}")[0] == 404


# -- 3. the role: absent and prune ------------------------------------------------------------------------------


def test_prune_leaves_forged_marks_sibling_folders_and_secrets_just_delivered_alone(ansible, bao, vault_conn, tmp_path):
    prefix = f"certs/prune4-{uuid.uuid4().hex[:8]}"
    items, _keys = certs_for(prefix, "kept", "stale")
    sibling_items, _sibling_keys = certs_for(f"{prefix}-other", "managed")
    owner = {"cert_distribution_owner": f"attack4-{uuid.uuid4().hex[:8]}"}
    _facts, seeded = run_role(
        ansible, bao, vault_conn, tmp_path, {**owner, "cert_distribution_certs": items + sibling_items}
    )
    assert seeded.rc == 0, seeded.output
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
            **owner,
            "cert_distribution_certs": items[:1],
            "cert_distribution_prune": True,
            # A trailing slash names the same folder; the sibling folder certs/prune4-xxx-other is not in it.
            "cert_distribution_prune_prefix": f"{prefix}/",
        },
    )

    assert run.rc == 0, run.output
    assert pruned["pruned"] == [f"{prefix}/stale"]
    assert current_deleted(bao, f"{prefix}/stale")
    after = {secret: metadata(bao, secret) for secret in before}
    # The pushed secret is unchanged (no new version); the others were not touched.
    assert after == before


def test_prune_does_not_run_when_the_push_fails_part_way(ansible, bao, vault_conn, tmp_path):
    prefix = f"certs/prune4-{uuid.uuid4().hex[:8]}"
    items, _keys = certs_for(prefix, "first", "stale")
    owner = {"cert_distribution_owner": f"attack4-{uuid.uuid4().hex[:8]}"}
    run_role(ansible, bao, vault_conn, tmp_path, {**owner, "cert_distribution_certs": items})
    before = metadata(bao, f"{prefix}/stale")
    denied_items, _denied_keys = certs_for("denied-folder", f"x-{uuid.uuid4().hex[:6]}")

    _facts, run = run_role(
        ansible,
        bao,
        vault_conn,
        tmp_path,
        {
            **owner,
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
    other hosts just delivered (found by attack round 4: every certificate of the play was soft-deleted). The
    role refuses prune over more than one host, before any push.
    """
    prefix = f"certs/prune4-hosts-{uuid.uuid4().hex[:8]}"
    web1_items, web1_keys = certs_for(prefix, "web1")
    web2_items, web2_keys = certs_for(prefix, "web2")
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
                    "cert_distribution_owner": f"attack4-{uuid.uuid4().hex[:8]}",
                    "cert_distribution_prune": True,
                    "cert_distribution_prune_prefix": prefix,
                },
            }
        ],
    }
    playbook.write_text(json.dumps([play]))
    login = {**vault_conn, **approle(bao, "certs")}

    run = ansible.run_playbook(
        playbook,
        extra_vars={"cert_distribution_vault": login, "certs_by_host": {"web1": web1_items, "web2": web2_items}},
        env={"ANSIBLE_INVENTORY": str(inventory)},
    )

    assert_no_leak([run.output], login["secret_id"], *web1_keys, *web2_keys)
    assert run.rc != 0
    assert "with 2 hosts in the play it would retire the other hosts' certificates" in run.output
    assert bao.kv_version_numbers(f"{prefix}/web1") == [] and bao.kv_version_numbers(f"{prefix}/web2") == []


def test_absent_in_check_mode_writes_nothing_and_refuses_nothing_it_does_not_own(ansible, bao, vault_conn, tmp_path):
    prefix = f"certs/absent4-{uuid.uuid4().hex[:8]}"
    items, _keys = certs_for(prefix, "ours")
    owner = {"cert_distribution_owner": f"attack4-{uuid.uuid4().hex[:8]}"}
    run_role(ansible, bao, vault_conn, tmp_path, {**owner, "cert_distribution_certs": items})
    mark = bao.audit_mark()
    before = metadata(bao, f"{prefix}/ours")

    retired, run = run_role(
        ansible,
        bao,
        vault_conn,
        tmp_path,
        {
            **owner,
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
        for entry in bao.audit_requests(mark)
        if entry["request"]["operation"] in ("create", "update", "delete")
    ]
    assert [write for write in writes if write.startswith("secret/")] == []


# -- 4. the HTML expiry report ------------------------------------------------------------------------------------


class _Elements(HTMLParser):
    """Every start tag and its attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))


def test_the_html_report_escapes_a_hostile_common_name_path_and_reason(bao, ansible, vault_conn, tmp_path):
    prefix = f"certs/html4-{uuid.uuid4().hex[:8]}"
    hostile = "<script>alert(1)</script>\"'><img src=x onerror=alert(2)>"
    leaf = make_chain(hostile, sans=["hostile.example.com"]).leaf
    root_write(bao, f"{prefix}/cn", {"certificate": leaf.cert_pem, "private_key": leaf.key_pem})
    root_write(bao, f"{prefix}/<b>x\"y'", {"certificate": leaf.cert_pem})
    label = "<img src=x onerror=alert(3)>"
    root_write(bao, f"{prefix}/label", {"certificate": f"-----BEGIN {label}-----\nAAAA\n-----END {label}-----\n"})
    page = tmp_path / "report.html"
    login = {**vault_conn, **approle(bao, "certs")}

    run = html_report(ansible, login, prefix, page)

    assert run.rc == 0, run.output
    text = page.read_text()
    parser = _Elements()
    parser.feed(text)
    allowed = {"html", "head", "meta", "title", "style", "body", "h1", "p", "code", "table", "tr", "th", "td"}
    assert {tag for tag, _attrs in parser.tags} <= allowed, parser.tags
    attributes = {name for _tag, attrs in parser.tags for name, _value in attrs}
    assert attributes <= {"lang", "charset", "class"}, attributes
    assert "&lt;script&gt;" in text and "<script>" not in text
    assert_no_leak([run.output, text], login["secret_id"], leaf.key_pem)


def test_max_versions_given_as_a_boolean_is_refused_not_sent_as_one_version(ansible, bao, vault_conn, path):
    """Ansible's int type passes a bool through (max_versions: yes, or a templated "{{ flag }}"), and OpenBao
    reads JSON true as 1: the secret then keeps one version, and the rollback history is gone.

    Expected: refused by name before any request, like delete_version_after: true is. Before: the metadata is
    written with max_versions true, OpenBao keeps 1 version, the earlier versions are dropped.
    """
    old = make_chain("bool-old.example.com").leaf
    for number in range(3):
        root_write(bao, path, {**expected_data(old), "n": str(number)})
    leaf = make_chain("bool-new.example.com").leaf

    run = push(ansible, {**vault_conn, **approle(bao, "certs"), **single(path, leaf), "max_versions": True})

    kept = (metadata(bao, path)["max_versions"], bao.kv_version_numbers(path))
    assert run.failed and "max_versions" in run.msg, f"pushed; max_versions and versions kept now: {kept}"
    assert metadata(bao, path)["max_versions"] == 0
    assert bao.kv_version_numbers(path) == [1, 2, 3]

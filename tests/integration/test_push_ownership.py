# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""vault_cert_push against OpenBao: the managed_by mark every write records, and the version policy options."""

from __future__ import annotations

import json

import pytest
from pki import make_chain
from test_vault_cert_push import approle, expected_data, push, single, versions

TAG = {"managed_by": "certautopilot.vault"}


@pytest.fixture
def path(request: pytest.FixtureRequest) -> str:
    return f"certs/owner-{request.node.name[5:40].replace('_', '-')}-{id(request) % 100000}.example.com"


def metadata_get(bao, path: str) -> dict:
    """What `bao kv metadata get` prints for the secret, as JSON."""
    completed = bao.cli("kv", "metadata", "get", "-format=json", "-mount=secret", path)
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout)["data"]


def metadata_requests(run, path: str) -> list[str]:
    """The operations the run sent to the secret's metadata path, in order."""
    return [
        entry["request"]["operation"] for entry in run.requests if entry["request"]["path"] == f"secret/metadata/{path}"
    ]


def test_a_new_secret_is_marked_with_one_metadata_write_and_an_unchanged_one_costs_no_metadata_request(
    ansible, bao, vault_conn, path
):
    leaf = make_chain("mark.example.com").leaf
    args = {**vault_conn, **approle(bao, "certs"), **single(path, leaf)}

    first = push(ansible, bao, args)
    again = push(ansible, bao, {**args, **approle(bao, "certs")})

    assert not first.failed, first.msg
    assert first.result["managed"] is True and "managed_by" in first.result["changed_fields"]
    assert metadata_get(bao, path)["custom_metadata"] == TAG
    assert metadata_requests(first, path) == ["update"]
    assert not again.changed and again.result["managed"] is True
    assert metadata_requests(again, path) == []
    assert versions(bao, path) == [1]


def test_a_secret_without_the_mark_gets_it_once_other_custom_metadata_kept_and_no_new_version(
    ansible, bao, vault_conn, path
):
    leaf = make_chain("adopt.example.com").leaf
    assert bao.api("POST", f"secret/data/{path}", {"data": expected_data(leaf)})[0] == 200
    assert bao.api("POST", f"secret/metadata/{path}", {"custom_metadata": {"team": "web"}})[0] == 204

    run = push(ansible, bao, {**vault_conn, **approle(bao, "certs"), **single(path, leaf)})
    check = push(ansible, bao, {**vault_conn, **approle(bao, "certs"), **single(path, leaf)}, check=True)

    assert run.changed and run.result["changed_fields"] == ["managed_by"], run.result
    assert metadata_get(bao, path)["custom_metadata"] == {"team": "web", **TAG}
    assert versions(bao, path) == [1]
    assert not check.changed


def test_a_token_that_may_not_write_metadata_still_delivers_warns_once_and_stops_asking(ansible, bao, vault_conn, path):
    leaves = [make_chain(f"unmarked{index}.example.com").leaf for index in range(3)]
    paths = [f"{path}-{index}" for index in range(3)]
    args = {
        **vault_conn,
        **approle(bao, "sample"),
        "concurrency": 1,
        "certificates": [
            {"path": item_path, "certificate": leaf.cert_pem, "private_key": leaf.key_pem}
            for item_path, leaf in zip(paths, leaves)
        ],
    }

    run = push(ansible, bao, args)

    assert not run.failed, run.msg
    assert [result["managed"] for result in run.result["results"]] == [False, False, False]
    assert [versions(bao, item_path) for item_path in paths] == [[1], [1], [1]]
    assert all(not metadata_get(bao, item_path)["custom_metadata"] for item_path in paths)
    warning = " ".join(run.result.get("warnings", []))
    assert "3 secret(s) were delivered but are not marked managed_by: certautopilot.vault" in warning, run.output
    assert f"First failure - {paths[0]}: permission denied on secret/metadata/{paths[0]}" in warning
    # One refused metadata write; the run stopped asking for the other two.
    assert sum(len(metadata_requests(run, item_path)) for item_path in paths) == 1


def test_version_policy_is_set_on_create_visible_in_bao_kv_metadata_get_and_changed_only_when_it_differs(
    ansible, bao, vault_conn, path
):
    leaf = make_chain("policy.example.com").leaf
    policy = {"max_versions": 20, "delete_version_after": "30d", "cas_required": True}

    created = push(ansible, bao, {**vault_conn, **approle(bao, "certs"), **single(path, leaf), **policy})
    unchanged = push(ansible, bao, {**vault_conn, **approle(bao, "certs"), **single(path, leaf), **policy})
    shrunk = push(
        ansible, bao, {**vault_conn, **approle(bao, "certs"), **single(path, leaf), **policy, "max_versions": 15}
    )

    assert not created.failed, created.msg
    assert {"max_versions", "delete_version_after", "cas_required", "managed_by"} <= set(
        created.result["changed_fields"]
    )
    assert not unchanged.changed, unchanged.result
    assert shrunk.changed and shrunk.result["changed_fields"] == ["max_versions"]
    metadata = metadata_get(bao, path)
    assert metadata["max_versions"] == 15
    assert metadata["delete_version_after"] == "720h0m0s"
    assert metadata["cas_required"] is True
    assert metadata["custom_metadata"] == TAG
    assert versions(bao, path) == [1]


def test_version_policy_in_check_mode_reports_the_change_and_writes_nothing(ansible, bao, vault_conn, path):
    leaf = make_chain("policy-check.example.com").leaf
    push(ansible, bao, {**vault_conn, **approle(bao, "certs"), **single(path, leaf)})
    before = metadata_get(bao, path)

    run = push(
        ansible, bao, {**vault_conn, **approle(bao, "certs"), **single(path, leaf), "max_versions": 30}, check=True
    )

    assert run.changed and run.result["changed_fields"] == ["max_versions"]
    assert metadata_get(bao, path) == before


def test_version_policy_the_token_may_not_write_is_refused_before_any_data_is_written(ansible, bao, vault_conn, path):
    leaf = make_chain("policy-denied.example.com").leaf

    run = push(ansible, bao, {**vault_conn, **approle(bao, "sample"), **single(path, leaf), "max_versions": 20})

    assert run.failed
    assert f"permission denied on secret/metadata/{path}" in run.msg, run.msg
    assert versions(bao, path) == []
    assert bao.api("GET", f"secret/metadata/{path}")[0] == 404


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("max_versions", -1, "max_versions must be 0 (the mount's setting) or more, got -1"),
        ("delete_version_after", "soon", "delete_version_after must be a number of seconds or a duration"),
    ],
)
def test_a_bad_version_policy_is_refused_by_name_before_any_request(
    ansible, bao, vault_conn, path, option, value, message
):
    leaf = make_chain("policy-bad.example.com").leaf

    run = push(ansible, bao, {**vault_conn, **approle(bao, "certs"), **single(path, leaf), option: value})

    assert run.failed and message in run.msg, run.msg
    assert not [entry for entry in run.requests if "/login" not in entry["request"]["path"]]
    assert versions(bao, path) == []

# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""vault_cert_push's version policy options (max_versions, delete_version_after, cas_required): other spellings of
the same policy write nothing, cas_required does not stop the push's own writes, and a value that is no duration or
no count is refused by name before anything is written.

Against a real OpenBao; the module in-process (``modules``).
"""

from __future__ import annotations

import uuid

import pytest
from pki import make_chain
from push_runs import approle, expected_data, push, single
from role_runs import metadata


@pytest.fixture
def path() -> str:
    return f"certs/version-policy-{uuid.uuid4().hex[:10]}"


def test_a_version_policy_given_in_other_spellings_is_idempotent_and_cas_required_does_not_stop_our_writes(
    modules, bao, vault_conn, path
):
    first, second = make_chain("spell-1.example.com").leaf, make_chain("spell-2.example.com").leaf
    policy = {"max_versions": 3, "delete_version_after": "1h30m", "cas_required": True}

    created = push(modules, {**vault_conn, **approle(bao, "certs"), **single(path, first), **policy})
    respelled = [
        push(
            modules,
            {**vault_conn, **approle(bao, "certs"), **single(path, first), **policy, "delete_version_after": spelling},
        )
        for spelling in ("5400", 5400, "90m", "1h29m60s", " 1h30m0s ")
    ]
    renewed = push(modules, {**vault_conn, **approle(bao, "certs"), **single(path, second), **policy})

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
def test_an_odd_duration_is_refused_by_name_and_nothing_is_written(modules, bao, vault_conn, path, options, message):
    leaf = make_chain("odd-duration.example.com").leaf

    run = push(modules, {**vault_conn, **approle(bao, "certs"), **single(path, leaf), **options})

    assert run.failed and message in run.msg, run.msg
    assert "unexpected error" not in run.msg
    assert bao.api("GET", f"secret/metadata/{path}")[0] == 404


def test_max_versions_given_as_a_boolean_is_refused_not_sent_as_one_version(modules, bao, vault_conn, path):
    """Ansible's int type passes a bool through (max_versions: yes, or a templated "{{ flag }}"), and OpenBao
    reads JSON true as 1: the secret would keep one version, and the rollback history would be gone. Refused by
    name before any request, like delete_version_after: true is."""
    old = make_chain("bool-old.example.com").leaf
    for number in range(3):
        status, body = bao.api("POST", f"secret/data/{path}", {"data": {**expected_data(old), "n": str(number)}})
        assert status == 200, body
    leaf = make_chain("bool-new.example.com").leaf

    run = push(modules, {**vault_conn, **approle(bao, "certs"), **single(path, leaf), "max_versions": True})

    kept = (metadata(bao, path)["max_versions"], bao.kv_version_numbers(path))
    assert run.failed and "max_versions" in run.msg, f"pushed; max_versions and versions kept now: {kept}"
    assert metadata(bao, path)["max_versions"] == 0
    assert bao.kv_version_numbers(path) == [1, 2, 3]

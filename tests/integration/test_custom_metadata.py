# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""vault_cert_push and a secret's custom_metadata: the ownership mark goes before the data and is reported
truthfully when its write fails; another writer's custom_metadata is kept (a race, a deleted current version,
metadata with no version); custom_metadata: true keeps foreign keys; metadata written before a refused data write
is set back; check mode writes no mark, and a token that may not write it is refused with nothing written.

Against a real OpenBao; the module in-process (``modules``), faults through FaultProxy.
"""

from __future__ import annotations

import re
import uuid

import pytest
from fault_proxy import FaultProxy
from pki import make_chain
from push_runs import approle, expected_data, push, single
from role_runs import metadata

TAG = {"managed_by": "certautopilot.vault"}
OWNER = "team-a"
MARK = {**TAG, "certautopilot_owner": OWNER}
CUSTOM_METADATA_KEYS = ("cn", "serial", "not_after", "fingerprint_sha256")


@pytest.fixture
def path() -> str:
    return f"certs/custom-metadata-{uuid.uuid4().hex[:10]}"


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


# -- the mark goes first, and its failure is told as it is --------------------------------------


def test_a_refused_mark_write_in_a_batch_writes_no_data_and_reports_every_certificate_not_written(modules, bao, path):
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
        run = push(modules, {"url": proxy.url, **args})

    assert run.failed
    assert bao.kv_version_numbers(paths[0]) == [] and bao.kv_version_numbers(paths[1]) == []
    assert paths[0] in (run.result.get("not_written") or []), run.result
    assert not run.result.get("results"), run.result


def test_a_refused_mark_write_of_a_single_certificate_writes_no_data_and_says_so(modules, bao, path):
    """Same fault, one certificate: the mark's write fails before any data is sent, and the task says so."""
    leaf = make_chain("tag500-single.example.com").leaf
    with FaultProxy(bao.addr, bao.ca_cert) as proxy:
        proxy.add_rule("POST", rf"^secret/metadata/{re.escape(path)}$", status=500, times=None)
        args = {"url": proxy.url, "retries": 0, **approle(bao, "certs"), **single(path, leaf), "owner": OWNER}
        run = push(modules, args)

    assert bao.kv_version_numbers(path) == []
    assert run.failed and "shows it was not written" in run.msg, run.msg


# -- another writer's custom_metadata is kept ----------------------------------------------------


def test_a_cas_conflict_after_the_metadata_first_write_does_not_wipe_the_other_writers_custom_metadata(
    modules, bao, path
):
    """A new secret pushed with a version policy: metadata first (mark, max_versions), then the data with cas=0.
    Another owner creates the secret in between, with custom_metadata of its own: it survives (the conflict means
    someone else owns this write; nothing of theirs may be overwritten), and the retry marks the kept map."""
    leaf = make_chain("race.example.com").leaf

    def other_owner_creates_it() -> None:
        root_write(bao, path, {"owner": "team-web"}, {"team": "web"})

    with FaultProxy(bao.addr, bao.ca_cert) as proxy:
        proxy.add_rule("POST", rf"^secret/data/{re.escape(path)}$", action=other_owner_creates_it)
        args = {"url": proxy.url, **approle(bao, "certs"), **single(path, leaf), "max_versions": 5, "owner": OWNER}
        run = push(modules, args)

    assert not run.failed, run.msg
    assert bao.kv_version_numbers(path) == [1, 2]
    assert custom_metadata_of(bao, path) == {"team": "web", **MARK}


def test_the_mark_on_a_secret_whose_current_version_is_deleted_keeps_the_other_custom_metadata(
    modules, bao, vault_conn, path
):
    leaf = make_chain("deleted-current.example.com").leaf
    root_write(bao, path, {"certificate": "old"}, {"team": "web", "ticket": "CHG-1"})
    assert bao.api("DELETE", f"secret/data/{path}")[0] == 204

    run = push(modules, {**vault_conn, **approle(bao, "certs"), **single(path, leaf), "owner": OWNER})
    again = push(modules, {**vault_conn, **approle(bao, "certs"), **single(path, leaf), "owner": OWNER})

    assert not run.failed, run.msg
    assert run.result["managed"] is True and run.result["version"] == 2
    assert custom_metadata_of(bao, path) == {"team": "web", "ticket": "CHG-1", **MARK}
    assert not again.changed, again.result


@pytest.mark.parametrize("options", [{}, {"custom_metadata": True}, {"max_versions": 4}])
def test_the_mark_on_a_secret_with_metadata_but_no_version_keeps_the_other_custom_metadata(
    modules, bao, vault_conn, path, options
):
    leaf = make_chain("metadata-only.example.com").leaf
    status, body = bao.api("POST", f"secret/metadata/{path}", {"custom_metadata": {"team": "db"}})
    assert status == 204, body

    run = push(modules, {**vault_conn, **approle(bao, "certs"), **single(path, leaf), **options, "owner": OWNER})

    assert not run.failed, run.msg
    assert run.result["managed"] is True
    found = custom_metadata_of(bao, path)
    assert found["team"] == "db" and found["certautopilot_owner"] == OWNER, found
    assert bao.kv_version_numbers(path) == [1]


def test_custom_metadata_keeps_foreign_keys_on_a_secret_with_metadata_but_no_version(modules, bao, vault_conn, path):
    cn = f"foreign-metadata-{uuid.uuid4().hex[:8]}.example.com"
    chain = make_chain(cn)
    status, body = bao.api("POST", f"secret/metadata/{path}", {"custom_metadata": {"owner": "team-a"}})
    assert status in (200, 204), body
    assert bao.kv_version_numbers(path) == []

    run = push(
        modules,
        {**vault_conn, **approle(bao, "meta"), **single(path, chain.leaf, chain.intermediate, custom_metadata=True)},
    )

    assert not run.failed, run.msg
    assert run.changed
    custom = custom_metadata_of(bao, path)
    assert custom.get("owner") == "team-a", custom
    for key in CUSTOM_METADATA_KEYS:
        assert custom.get(key), f"custom_metadata lacks {key}: {custom}"
    assert custom["cn"] == cn
    assert bao.kv_version_numbers(path) == [1]
    assert bao.kv_data(path) == expected_data(chain.leaf, chain.intermediate)


def test_metadata_written_before_a_refused_data_write_is_set_back(modules, bao, vault_conn, path):
    first, renewed = make_chain("first.set-back.example.com"), make_chain("renewed.set-back.example.com")
    args = {**vault_conn, **approle(bao, "meta"), "custom_metadata": True}
    assert not push(modules, {**args, **single(path, first.leaf, first.intermediate)}).failed
    before = metadata(bao, path)
    with FaultProxy(bao.addr, bao.ca_cert) as proxy:
        proxy.add_rule("POST", rf"^secret/data/{re.escape(path)}$", status=403, times=None)

        run = push(
            modules,
            {**args, **approle(bao, "meta"), "url": proxy.url, **single(path, renewed.leaf, renewed.intermediate)},
        )

    assert run.failed and "permission denied" in run.msg, run.msg
    assert metadata(bao, path)["custom_metadata"] == before["custom_metadata"]
    assert bao.kv_version_numbers(path) == [1]


# -- check mode and a token that may not write the mark ----------------------------------------


def test_the_mark_is_not_written_in_check_mode_and_a_token_that_may_not_write_it_is_refused_with_nothing_written(
    modules, bao, vault_conn, path
):
    leaf = make_chain("check-mark.example.com").leaf
    root_write(bao, path, expected_data(leaf), {"team": "web"})

    args = {**vault_conn, **single(path, leaf), "owner": OWNER}
    checked = push(modules, {**args, **approle(bao, "certs")}, check=True)
    refused = push(modules, {**args, **approle(bao, "sample")})

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

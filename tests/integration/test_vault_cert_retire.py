"""vault_cert_retire against a real OpenBao server (SPEC.md, Round 2, vault_cert_retire).

Histories are written directly as root, and the collection's mark set there too (a push writes it
only with an owner). Every test checks the server afterwards through its metadata
(``deletion_time``, ``destroyed``, a 404 after a purge) and counts the writes the run sent in the
audit log where nothing may be written. The module runs in-process (``modules``); the harness scans
every run for the credentials it was given and the tokens it used, and the tests hand it the
secrets' private keys, which reach a run from the server. One playbook run carries every mode, with
task-level check and diff, as a user's play does.
"""

from __future__ import annotations

import json
import re
import uuid

import pytest
from fault_proxy import FaultProxy
from kv_histories import cert_data, write

MODULE = "vault_cert_retire"
MANAGED = {"managed_by": "certautopilot.vault"}
# Audit operations that change a secret; login and token revocation are outside the KV mount.
WRITE_OPERATIONS = frozenset({"create", "update", "delete"})


# -- helpers -------------------------------------------------------------------


def unique_path(name: str) -> str:
    return f"certs/retire-{name}-{uuid.uuid4().hex[:8]}.example.com"


def tag(bao, path: str, custom_metadata: dict) -> None:
    status, body = bao.api("POST", f"secret/metadata/{path}", {"custom_metadata": custom_metadata})
    assert status in (200, 204), body


def certificate_secret(bao, path: str, versions: int = 2, *, managed: bool = True) -> list[str]:
    """A secret with ``versions`` certificate versions, tagged as the collection's; returns its private keys."""
    datas = [cert_data(f"v{number}.{path[6:]}") for number in range(1, versions + 1)]
    for data in datas:
        write(bao, path, data)
    if managed:
        tag(bao, path, MANAGED)
    return [data["private_key"] for data in datas]


def metadata(bao, path: str) -> dict | None:
    """The secret's KV v2 metadata as the server holds it; None after a purge (404)."""
    status, body = bao.api("GET", f"secret/metadata/{path}")
    if status == 404:
        return None
    assert status == 200, body
    return body["data"]


def states(bao, path: str) -> dict[int, tuple[bool, bool]]:
    """Per kept version: (deleted, destroyed)."""
    found = metadata(bao, path)
    assert found is not None, f"{path} has no metadata"
    return {
        int(number): (bool(state["deletion_time"]), state["destroyed"]) for number, state in found["versions"].items()
    }


def writes(entries: list[dict]) -> list[tuple[str, str]]:
    """(operation, path) of the audited requests that change something under the KV mount."""
    return [
        (entry["request"]["operation"], entry["request"]["path"])
        for entry in entries
        if entry["request"]["operation"] in WRITE_OPERATIONS and entry["request"]["path"].startswith("secret/")
    ]


def retire(runner, args: dict, *, check=False, diff=False, keys=(), **options):
    """Run the module; ``keys`` (the secrets' private keys, which reach the run from the server) are never shown."""
    return runner.run_module(MODULE, {**args, **options}, check=check, diff=diff, secrets=keys)


@pytest.fixture
def auth(vault_conn, approle_auth) -> dict:
    return {**vault_conn, **approle_auth}


# -- each mode, then the server, then a rerun ------------------------------------


def test_delete_soft_deletes_the_current_version_only_and_a_rerun_is_unchanged(bao, modules, auth):
    path = unique_path("delete")
    keys = certificate_secret(bao, path, 2)

    run = retire(modules, auth, path=path, diff=True, keys=keys)

    assert not run.failed, run.msg
    assert run.changed
    assert {key: run.result[key] for key in ("mount", "path", "mode", "version", "destroyed_versions")} == {
        "mount": "secret",
        "path": path,
        "mode": "delete",
        "version": 2,
        "destroyed_versions": [],
    }
    assert states(bao, path) == {1: (False, False), 2: (True, False)}
    assert writes(run.requests) == [("update", f"secret/delete/{path}")]
    diff = run.result["diff"]
    assert diff["before"] == {"current_version": 2, "versions": {"1": "live", "2": "live"}}
    assert diff["after"] == {"current_version": 2, "versions": {"1": "live", "2": "deleted"}}
    assert "-----BEGIN" not in json.dumps(diff)

    rerun = retire(modules, auth, path=path, keys=keys)

    assert not rerun.failed, rerun.msg
    assert not rerun.changed
    assert rerun.result["version"] == 2
    assert writes(rerun.requests) == []
    assert states(bao, path) == {1: (False, False), 2: (True, False)}
    # A soft delete keeps the data: undelete brings the version back.
    status, body = bao.api("POST", f"secret/undelete/{path}", {"versions": [2]})
    assert status == 204, body
    status, body = bao.api("GET", f"secret/data/{path}")
    assert status == 200 and body["data"]["data"]["private_key"] == keys[1], "the undeleted data differs"


def test_delete_makes_a_deletion_scheduled_by_delete_version_after_now(bao, modules, auth):
    path = unique_path("scheduled")
    status, body = bao.api(
        "POST", f"secret/metadata/{path}", {"delete_version_after": "1h", "custom_metadata": MANAGED}
    )
    assert status == 204, body
    keys = certificate_secret(bao, path, 1, managed=False)
    scheduled = metadata(bao, path)["versions"]["1"]["deletion_time"]
    assert scheduled  # in an hour: the data is still readable until then
    assert bao.api("GET", f"secret/data/{path}")[0] == 200

    run = retire(modules, auth, path=path, keys=keys)

    assert not run.failed, run.msg
    assert run.changed
    assert metadata(bao, path)["versions"]["1"]["deletion_time"] < scheduled
    assert bao.api("GET", f"secret/data/{path}")[0] == 404


def test_destroy_destroys_every_version_keeps_the_metadata_and_a_rerun_is_unchanged(bao, modules, auth):
    path = unique_path("destroy")
    keys = certificate_secret(bao, path, 3)
    status, body = bao.api("POST", f"secret/delete/{path}", {"versions": [2]})
    assert status == 204, body

    run = retire(modules, auth, path=path, mode="destroy", diff=True, keys=keys)

    assert not run.failed, run.msg
    assert run.changed
    assert (run.result["mode"], run.result["version"], run.result["destroyed_versions"]) == ("destroy", 3, [1, 2, 3])
    assert {number: destroyed for number, (_deleted, destroyed) in states(bao, path).items()} == {
        1: True,
        2: True,
        3: True,
    }
    kept = metadata(bao, path)
    assert kept["current_version"] == 3 and kept["custom_metadata"] == MANAGED
    assert writes(run.requests) == [("update", f"secret/destroy/{path}")]
    assert run.result["diff"]["before"]["versions"] == {"1": "live", "2": "deleted", "3": "live"}
    assert run.result["diff"]["after"]["versions"] == dict.fromkeys(("1", "2", "3"), "destroyed")

    rerun = retire(modules, auth, path=path, mode="destroy", keys=keys)

    assert not rerun.failed, rerun.msg
    assert not rerun.changed
    assert rerun.result["destroyed_versions"] == []
    assert writes(rerun.requests) == []


def test_purge_removes_metadata_and_versions_and_a_rerun_is_unchanged(bao, modules, auth):
    path = unique_path("purge")
    keys = certificate_secret(bao, path, 2)

    run = retire(modules, auth, path=path, mode="purge", current_version=2, keys=keys)

    assert not run.failed, run.msg
    assert run.changed
    assert (run.result["version"], run.result["destroyed_versions"]) == (2, [1, 2])
    assert metadata(bao, path) is None
    assert bao.api("GET", f"secret/data/{path}?version=1")[0] == 404
    # cas_required first (guarded by metadata check-and-set), then the DELETE.
    assert writes(run.requests) == [("update", f"secret/metadata/{path}"), ("delete", f"secret/metadata/{path}")]

    # The same task again, guard and all: the secret is gone, which is what it asked for.
    rerun = retire(modules, auth, path=path, mode="purge", current_version=2, keys=keys)

    assert not rerun.failed, rerun.msg
    assert not rerun.changed
    assert (rerun.result["version"], rerun.result["destroyed_versions"]) == (None, [])
    assert writes(rerun.requests) == []


@pytest.mark.parametrize("mode", ["delete", "destroy", "purge"])
def test_a_secret_that_never_existed_is_ok_unchanged_and_nothing_is_written(bao, modules, auth, mode):
    path = unique_path(f"absent-{mode}")

    run = retire(modules, auth, path=path, mode=mode)

    assert not run.failed, run.msg
    assert not run.changed
    assert run.result["version"] is None
    assert writes(run.requests) == []
    assert metadata(bao, path) is None


def test_a_playbook_retires_in_each_mode_with_task_level_check_and_diff(bao, ansible, auth):
    paths = {mode: unique_path(f"playbook-{mode}") for mode in ("delete", "destroy", "purge", "check")}
    keys = [key for path in paths.values() for key in certificate_secret(bao, path, 2)]
    checked_before = metadata(bao, paths["check"])
    module = f"certautopilot.vault.{MODULE}"
    tasks = [
        {"name": "Soft-delete", module: {**auth, "path": paths["delete"]}, "diff": True},
        {"name": "Destroy", module: {**auth, "path": paths["destroy"], "mode": "destroy"}},
        {"name": "Purge", module: {**auth, "path": paths["purge"], "mode": "purge", "current_version": 2}},
        {
            "name": "Purge in check mode",
            module: {**auth, "path": paths["check"], "mode": "purge"},
            "check_mode": True,
            "diff": True,
        },
    ]
    playbook = ansible.workdir / f"retire-{uuid.uuid4().hex}.yml"
    playbook.write_text(json.dumps([{"hosts": "localhost", "gather_facts": False, "tasks": tasks}]))
    playbook.chmod(0o600)

    run = ansible.run_playbook(playbook, secrets=keys)

    assert not run.failed, run.output
    results = {task["name"]: run.task(task["name"]).result for task in tasks}
    assert all(result["changed"] for result in results.values()), results
    assert results["Soft-delete"]["diff"]["after"] == {"current_version": 2, "versions": {"1": "live", "2": "deleted"}}
    assert "diff" not in results["Destroy"]
    assert results["Destroy"]["destroyed_versions"] == results["Purge"]["destroyed_versions"] == [1, 2]
    assert results["Purge in check mode"]["diff"]["after"] == {}
    assert states(bao, paths["delete"]) == {1: (False, False), 2: (True, False)}
    assert states(bao, paths["destroy"]) == {1: (False, True), 2: (False, True)}
    assert metadata(bao, paths["purge"]) is None
    assert metadata(bao, paths["check"]) == checked_before


# -- refusals: nothing written ----------------------------------------------------


@pytest.mark.parametrize("mode", ["delete", "destroy", "purge"])
@pytest.mark.parametrize("custom", [None, {"managed_by": "someone-else"}], ids=["untagged", "other-tag"])
def test_an_unmanaged_secret_is_refused_and_nothing_is_written(bao, modules, auth, mode, custom):
    path = unique_path(f"unmanaged-{mode}")
    keys = certificate_secret(bao, path, 2, managed=False)
    if custom:
        tag(bao, path, custom)
    before = metadata(bao, path)

    run = retire(modules, auth, path=path, mode=mode, keys=keys)

    assert run.failed
    assert f"secret/data/{path} is not managed by this collection" in run.msg
    assert "managed_by=certautopilot.vault" in run.msg and "require_managed: false" in run.msg
    assert writes(run.requests) == []
    assert metadata(bao, path) == before


@pytest.mark.parametrize(
    "custom",
    [MANAGED, {**MANAGED, "certautopilot_owner": "team-b"}, {"certautopilot_owner": "team-a"}],
    ids=["mark-without-owner", "other-owner", "owner-without-managed-by"],
)
def test_with_an_owner_a_secret_not_marked_with_it_is_refused_and_nothing_is_written(bao, modules, auth, custom):
    path = unique_path("other-owner")
    keys = certificate_secret(bao, path, 2, managed=False)
    tag(bao, path, custom)
    before = metadata(bao, path)

    run = retire(modules, auth, path=path, mode="purge", owner="team-a", keys=keys)

    assert run.failed
    assert f"secret/data/{path} is not marked with owner team-a" in run.msg, run.msg
    assert "nothing written" in run.msg
    assert writes(run.requests) == []
    assert metadata(bao, path) == before


def test_with_an_owner_its_own_secret_is_retired_and_without_one_a_secret_naming_an_owner_is_refused(
    bao, modules, auth
):
    ours, theirs = unique_path("own-owner"), unique_path("any-owner")
    keys = certificate_secret(bao, ours, 1, managed=False) + certificate_secret(bao, theirs, 1, managed=False)
    tag(bao, ours, {**MANAGED, "certautopilot_owner": "team-a", "team": "web"})
    tag(bao, theirs, {**MANAGED, "certautopilot_owner": "team-b"})

    own = retire(modules, auth, path=ours, owner="team-a", keys=keys)
    without_owner = retire(modules, auth, path=theirs, keys=keys)

    assert own.changed and not own.failed, own.msg
    assert without_owner.failed
    assert f"secret/data/{theirs} is owned by team-b: give owner team-b or another path; nothing written" in (
        without_owner.msg
    ), without_owner.msg
    assert states(bao, ours) == {1: (True, False)}
    assert states(bao, theirs) == {1: (False, False)}


def test_without_an_owner_and_require_managed_false_a_secret_naming_an_owner_is_retired(bao, modules, auth):
    path = unique_path("opted-out")
    keys = certificate_secret(bao, path, 1, managed=False)
    tag(bao, path, {**MANAGED, "certautopilot_owner": "team-b"})

    run = retire(modules, auth, path=path, require_managed=False, keys=keys)

    assert run.changed and not run.failed, run.msg
    assert states(bao, path) == {1: (True, False)}


@pytest.mark.parametrize("owner", ["", "team a", "x" * 65, "team/web"])
def test_a_bad_owner_is_refused_by_name_before_any_request(bao, modules, auth, owner):
    path = unique_path("bad-owner")
    keys = certificate_secret(bao, path, 1)

    run = retire(modules, auth, path=path, owner=owner, keys=keys)

    assert run.failed and run.msg.startswith("owner must be 1 to 64 characters"), run.msg
    assert [entry for entry in run.requests if entry["request"]["path"].startswith("secret/")] == []
    assert states(bao, path) == {1: (False, False)}


def test_require_managed_false_retires_a_secret_pushed_before_the_tag(bao, modules, auth):
    path = unique_path("unmanaged-allowed")
    keys = certificate_secret(bao, path, 1, managed=False)

    run = retire(modules, auth, path=path, mode="destroy", require_managed=False, keys=keys)

    assert not run.failed, run.msg
    assert run.changed and run.result["destroyed_versions"] == [1]
    assert states(bao, path) == {1: (False, True)}


@pytest.mark.parametrize("mode", ["delete", "destroy", "purge"])
def test_a_current_version_guard_that_no_longer_holds_is_refused_and_nothing_is_written(bao, modules, auth, mode):
    path = unique_path(f"guard-{mode}")
    keys = certificate_secret(bao, path, 3)
    before = metadata(bao, path)

    run = retire(modules, auth, path=path, mode=mode, current_version=2, keys=keys)

    assert run.failed
    assert f"current version of secret/data/{path} is 3, not 2 (current_version guard)" in run.msg
    assert "nothing written" in run.msg
    assert writes(run.requests) == []
    assert metadata(bao, path) == before


def test_a_guard_that_holds_lets_the_delete_go_ahead(bao, modules, auth):
    path = unique_path("guard-holds")
    keys = certificate_secret(bao, path, 3)

    run = retire(modules, auth, path=path, current_version=3, keys=keys)

    assert not run.failed, run.msg
    assert states(bao, path) == {1: (False, False), 2: (False, False), 3: (True, False)}


def test_a_policy_without_the_mode_s_grant_is_refused_naming_path_and_capability(bao, modules, vault_conn):
    """Role meta may read and write metadata, not soft-delete: the refusal names what to grant."""
    path = unique_path("denied")
    keys = certificate_secret(bao, path, 2)
    before = metadata(bao, path)
    meta = {"auth_method": "approle", "role_id": bao.role_ids["meta"], "secret_id": bao.new_approle_secret_id("meta")}

    run = retire(modules, {**vault_conn, **meta}, path=path, keys=keys)

    assert run.failed
    assert f"permission denied on secret/delete/{path}" in run.msg and "'update'" in run.msg, run.msg
    assert metadata(bao, path) == before


def test_check_capabilities_refuses_the_run_before_any_write(bao, modules, vault_conn):
    path = unique_path("checked")
    keys = certificate_secret(bao, path, 1)
    meta = {"auth_method": "approle", "role_id": bao.role_ids["meta"], "secret_id": bao.new_approle_secret_id("meta")}

    run = retire(modules, {**vault_conn, **meta}, path=path, mode="destroy", check_capabilities=True, keys=keys)

    assert run.failed
    assert f"permission denied on secret/destroy/{path}: the token needs update and lacks update" in run.msg, run.msg
    assert writes(run.requests) == []
    assert states(bao, path) == {1: (False, False)}


# -- check mode and diff ------------------------------------------------------------


@pytest.mark.parametrize("mode", ["delete", "destroy", "purge"])
def test_check_mode_reports_the_change_and_writes_nothing(bao, modules, auth, mode):
    path = unique_path(f"check-{mode}")
    keys = certificate_secret(bao, path, 2)
    before = metadata(bao, path)

    run = retire(modules, auth, path=path, mode=mode, check=True, diff=True, keys=keys)

    assert not run.failed, run.msg
    assert run.changed
    assert run.result["destroyed_versions"] == ([] if mode == "delete" else [1, 2])
    assert writes(run.requests) == []
    assert metadata(bao, path) == before
    diff = run.result["diff"]
    assert diff["before"] == {"current_version": 2, "versions": {"1": "live", "2": "live"}}
    assert (
        diff["after"]
        == {
            "delete": {"current_version": 2, "versions": {"1": "live", "2": "deleted"}},
            "destroy": {"current_version": 2, "versions": {"1": "destroyed", "2": "destroyed"}},
            "purge": {},
        }[mode]
    )
    # Version states only: no certificate, no key, no value of the secret, no custom metadata.
    shown = json.dumps(diff)
    assert "-----BEGIN" not in shown and "certificate" not in shown and "managed_by" not in shown


# -- batches ------------------------------------------------------------------------


def test_a_batch_logs_in_once_keeps_input_order_and_retires_each(bao, modules, auth):
    paths = [unique_path(f"batch-{index:02d}") for index in range(12)]
    keys = [key for path in paths for key in certificate_secret(bao, path, 1)]
    # One already retired: unchanged, no write for it.
    status, body = bao.api("POST", f"secret/delete/{paths[5]}", {"versions": [1]})
    assert status == 204, body

    run = retire(modules, auth, secrets=[{"path": path, "current_version": 1} for path in paths], keys=keys)

    assert not run.failed, run.msg
    assert [result["path"] for result in run.result["results"]] == paths
    assert [result["changed"] for result in run.result["results"]] == [index != 5 for index in range(12)]
    audited = [entry["request"]["path"] for entry in run.requests]
    assert [location for location in audited if location.endswith("/login")] == ["auth/approle/login"]
    assert len([location for location in audited if location.startswith("sys/internal/ui/mounts/")]) == 1
    assert sorted(writes(run.requests)) == sorted(
        ("update", f"secret/delete/{path}") for index, path in enumerate(paths) if index != 5
    )
    assert all(states(bao, path) == {1: (True, False)} for path in paths)


def test_a_batch_stops_at_a_refused_secret_and_reports_what_was_not_written(bao, modules, auth):
    paths = [unique_path(f"stopped-{index}") for index in range(3)]
    keys = []
    for index, path in enumerate(paths):
        keys += certificate_secret(bao, path, 1, managed=index != 1)

    run = retire(modules, auth, secrets=[{"path": path} for path in paths], mode="destroy", concurrency=1, keys=keys)

    assert run.failed
    assert "batch stopped at secret 2 of 3" in run.msg and "not managed by this collection" in run.msg, run.msg
    assert run.result["failed_path"] == paths[1]
    assert run.result["not_written"] == paths[1:]
    assert run.result["outcome_unknown"] == []
    assert [result["path"] for result in run.result["results"]] == paths[:1]
    assert [states(bao, path) for path in paths] == [{1: (False, True)}, {1: (False, False)}, {1: (False, False)}]
    assert writes(run.requests) == [("update", f"secret/destroy/{paths[0]}")]


def test_a_batch_with_one_path_twice_is_refused_before_any_request(bao, modules, auth):
    path = unique_path("twice")

    run = retire(modules, auth, secrets=[{"path": path}, {"path": path}])

    assert run.failed and f"invalid path {path!r}: it appears twice in secrets" in run.msg, run.msg
    assert run.requests == []


# -- a lost answer -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "method", "written"),
    [("delete", "POST", "delete"), ("destroy", "PUT", "destroy"), ("purge", "DELETE", "metadata")],
)
def test_a_retirement_whose_answer_is_lost_is_read_back_not_sent_again(
    bao, modules, approle_auth, mode, method, written
):
    path = unique_path(f"lost-{mode}")
    keys = certificate_secret(bao, path, 2)
    watched = "^" + re.escape(f"secret/{written}/{path}") + "$"

    with FaultProxy(bao.addr, bao.ca_cert) as proxy:
        # Applied, but the answer is lost behind a failing gateway.
        proxy.add_rule(method, watched, status=502, after_forward=True, times=None)
        run = retire(modules, {"url": proxy.url, **approle_auth}, path=path, mode=mode, keys=keys)
        sent = proxy.hits(method, watched)

    assert not run.failed, run.msg
    assert run.changed
    assert len(sent) == 1
    after = metadata(bao, path)
    if mode == "delete":
        assert states(bao, path) == {1: (False, False), 2: (True, False)}
    elif mode == "destroy":
        assert states(bao, path) == {1: (False, True), 2: (False, True)}
    else:
        assert after is None


def test_a_delete_refused_by_a_gateway_before_the_server_saw_it_is_read_back_then_sent_again(
    bao, modules, approle_auth
):
    path = unique_path("lost-before")
    keys = certificate_secret(bao, path, 2)
    watched = "^" + re.escape(f"secret/delete/{path}") + "$"

    with FaultProxy(bao.addr, bao.ca_cert) as proxy:
        # Not forwarded: the metadata read back shows version 2 still live, so the delete is sent once more.
        proxy.add_rule("POST", watched, status=502, times=1)
        run = retire(modules, {"url": proxy.url, **approle_auth}, path=path, keys=keys)
        sent = proxy.hits("POST", watched)

    assert not run.failed, run.msg
    assert run.changed
    assert len(sent) == 2
    assert states(bao, path) == {1: (False, False), 2: (True, False)}


def test_a_lost_answer_that_cannot_be_read_back_stops_the_batch_as_an_unknown_outcome(bao, modules, approle_auth):
    paths = [unique_path(f"unknown-{index}") for index in range(2)]
    keys = [key for path in paths for key in certificate_secret(bao, path, 1)]
    written = "^" + re.escape(f"secret/destroy/{paths[0]}") + "$"
    read_back = "^" + re.escape(f"secret/metadata/{paths[0]}") + "$"

    with FaultProxy(bao.addr, bao.ca_cert) as proxy:
        # The destroy is applied and its answer lost; every metadata read after the first is refused.
        proxy.add_rule("PUT", written, status=502, after_forward=True, times=None)
        proxy.add_rule("GET", read_back, status=403, skip=1, times=None)
        run = retire(
            modules,
            {"url": proxy.url, **approle_auth},
            secrets=[{"path": path} for path in paths],
            mode="destroy",
            concurrency=1,
            keys=keys,
        )
        sent = proxy.hits("PUT", written)

    assert run.failed
    assert "may or may not have been applied" in run.msg, run.msg
    assert len(sent) == 1  # never sent again blindly
    assert run.result["failed_path"] == paths[0]
    assert run.result["outcome_unknown"] == [paths[0]]
    assert run.result["not_written"] == [paths[1]]
    assert run.result["results"] == []
    assert states(bao, paths[0]) == {1: (False, True)}  # it had landed
    assert states(bao, paths[1]) == {1: (False, False)}


# -- purge and concurrent writers -------------------------------------------------


def test_a_version_written_after_the_purge_read_the_secret_is_kept_and_named(bao, modules, approle_auth):
    """The race of the audit: a push (check-and-set against the version read) lands between the purge's read and
    its DELETE. The purge sees it on its second read, destroys nothing and names it."""
    path = unique_path("purge-race")
    keys = certificate_secret(bao, path, 2)
    racing = cert_data(f"v3.{path[6:]}")
    raced: list[int] = []

    def push_version_3() -> None:
        raced.append(bao.api("POST", f"secret/data/{path}", {"data": racing, "options": {"cas": 2}})[0])

    with FaultProxy(bao.addr, bao.ca_cert) as proxy:
        # Runs once the server has answered the purge's first metadata read, before the purge gets the answer.
        proxy.add_rule("GET", "^" + re.escape(f"secret/metadata/{path}") + "$", then=push_version_3)
        run = retire(
            modules,
            {"url": proxy.url, **approle_auth},
            path=path,
            mode="purge",
            keys=[*keys, racing["private_key"]],
        )

    assert raced == [200]
    assert run.failed
    assert f"version 3 of secret/data/{path} was written during the purge" in run.msg, run.msg
    assert "nothing destroyed" in run.msg
    assert states(bao, path) == {1: (False, False), 2: (False, False), 3: (False, False)}
    status, body = bao.api("GET", f"secret/data/{path}")
    assert status == 200 and body["data"]["data"] == racing
    # The cas_required the purge set is put back as it was.
    assert metadata(bao, path)["cas_required"] is False
    assert ("delete", f"secret/metadata/{path}") not in writes(run.requests)


def test_a_metadata_write_after_the_purge_read_the_secret_refuses_the_purge(bao, modules, approle_auth):
    """Another team sets ``hold: true`` on the secret right after the purge read it: the purge's metadata
    check-and-set fails, nothing is destroyed, and their key is kept."""
    path = unique_path("purge-hold")
    keys = certificate_secret(bao, path, 2)
    held = {**MANAGED, "hold": "true"}

    with FaultProxy(bao.addr, bao.ca_cert) as proxy:
        proxy.add_rule("GET", "^" + re.escape(f"secret/metadata/{path}") + "$", then=lambda: tag(bao, path, held))
        run = retire(modules, {"url": proxy.url, **approle_auth}, path=path, mode="purge", keys=keys)

    assert run.failed
    assert f"the metadata of secret/metadata/{path} was changed by another writer" in run.msg, run.msg
    assert "nothing destroyed" in run.msg
    after = metadata(bao, path)
    assert after["custom_metadata"] == held and after["cas_required"] is False
    assert states(bao, path) == {1: (False, False), 2: (False, False)}


def test_a_write_without_check_and_set_during_a_purge_is_refused_by_the_server(bao, modules, approle_auth):
    """Between the purge's guard and its DELETE, a writer without check-and-set (bao kv put) cannot add a version
    for the DELETE to destroy unreported."""
    path = unique_path("purge-casless")
    keys = certificate_secret(bao, path, 2)
    racing = cert_data(f"v3.{path[6:]}")
    raced: list[int] = []

    def put_version_3() -> None:
        raced.append(bao.api("POST", f"secret/data/{path}", {"data": racing})[0])

    with FaultProxy(bao.addr, bao.ca_cert) as proxy:
        proxy.add_rule("DELETE", "^" + re.escape(f"secret/metadata/{path}") + "$", action=put_version_3)
        run = retire(
            modules,
            {"url": proxy.url, **approle_auth},
            path=path,
            mode="purge",
            keys=[*keys, racing["private_key"]],
        )

    assert raced == [400]
    assert not run.failed, run.msg
    assert run.result["destroyed_versions"] == [1, 2]
    assert metadata(bao, path) is None


@pytest.mark.parametrize(
    ("mode", "method", "operation", "written"),
    [
        ("delete", "POST", "update", "delete"),
        ("destroy", "PUT", "update", "destroy"),
        ("purge", "DELETE", "delete", "metadata"),
    ],
)
def test_a_destructive_request_answered_503_is_read_back_never_resent_blindly(
    bao, modules, approle_auth, mode, method, operation, written
):
    """A 503 in the server's own words ("Vault is sealed") after the request was forwarded: the client may not
    take it as "not processed" and resend it; the metadata is read and shows it was applied."""
    path = unique_path(f"sealed-{mode}")
    keys = certificate_secret(bao, path, 2)
    location = f"secret/{written}/{path}"

    with FaultProxy(bao.addr, bao.ca_cert) as proxy:
        proxy.add_rule(
            method, "^" + re.escape(location) + "$", status=503, after_forward=True, errors=("Vault is sealed",)
        )
        run = retire(modules, {"url": proxy.url, **approle_auth}, path=path, mode=mode, keys=keys)

    assert not run.failed, run.msg
    assert run.changed
    audited = [(entry["request"]["operation"], entry["request"]["path"]) for entry in run.requests]
    assert audited.count((operation, location)) == 1, audited
    after = audited[audited.index((operation, location)) + 1 :]
    assert after and after[0] == ("read", f"secret/metadata/{path}"), audited
    if mode == "delete":
        assert states(bao, path) == {1: (False, False), 2: (True, False)}
    elif mode == "destroy":
        assert states(bao, path) == {1: (False, True), 2: (False, True)}
    else:
        assert metadata(bao, path) is None


# -- a secret re-created at the path (ABA) -------------------------------------------


def recreate(bao, path: str, datas: list[dict], *, metadata_version: int) -> None:
    """Another team purges the path and creates its own secret there, whose version numbers and metadata version
    repeat those of the secret it replaces: only its created_time tells it apart."""
    status, body = bao.api("DELETE", f"secret/metadata/{path}")
    assert status in (200, 204), body
    while (metadata(bao, path) or {}).get("current_metadata_version", 0) < metadata_version:
        tag(bao, path, {"team": "b"})
    for data in datas:
        write(bao, path, data)


def test_a_purge_whose_answer_is_lost_never_resends_it_onto_a_secret_re_created_at_the_path(bao, modules, approle_auth):
    """The DELETE lands, its answer is lost, and before the read-back another team creates a new secret at the
    path with the guarded version and metadata version. The numbers match the guard, the created_time does not:
    the outcome is unknown, and the DELETE is not sent again onto their secret."""
    path = unique_path("purge-aba")
    keys = certificate_secret(bao, path, 1)
    guarded = metadata(bao, path)["current_metadata_version"] + 1
    theirs = cert_data(f"theirs.{path[6:]}")
    watched = "^" + re.escape(f"secret/metadata/{path}") + "$"

    with FaultProxy(bao.addr, bao.ca_cert) as proxy:
        proxy.add_rule(
            "DELETE",
            watched,
            drop=True,
            after_forward=True,
            times=1,
            then=lambda: recreate(bao, path, [theirs], metadata_version=guarded),
        )
        run = retire(
            modules,
            {"url": proxy.url, **approle_auth},
            path=path,
            mode="purge",
            keys=[*keys, theirs["private_key"]],
        )
        sent = proxy.hits("DELETE", watched)

    assert run.failed
    assert "may or may not have been applied" in run.msg, run.msg
    assert len(sent) == 1
    after = metadata(bao, path)
    assert after is not None and after["custom_metadata"] == {"team": "b"}
    status, body = bao.api("GET", f"secret/data/{path}")
    assert status == 200 and body["data"]["data"] == theirs


@pytest.mark.parametrize(("mode", "method", "written"), [("delete", "POST", "delete"), ("destroy", "PUT", "destroy")])
def test_a_lost_answer_is_never_resent_onto_a_secret_re_created_at_the_path(
    bao, modules, approle_auth, mode, method, written
):
    """The write lands, its answer is lost, and before the read-back the path is purged and another team's secret
    created there with versions 1 and 2 live: the read-back tells it from the one retired by its created_time."""
    path = unique_path(f"{mode}-aba")
    keys = certificate_secret(bao, path, 2)
    theirs = [cert_data(f"theirs-v{number}.{path[6:]}") for number in (1, 2)]
    watched = "^" + re.escape(f"secret/{written}/{path}") + "$"

    with FaultProxy(bao.addr, bao.ca_cert) as proxy:
        proxy.add_rule(
            method,
            watched,
            drop=True,
            after_forward=True,
            times=1,
            then=lambda: recreate(bao, path, theirs, metadata_version=1),
        )
        run = retire(
            modules,
            {"url": proxy.url, **approle_auth},
            path=path,
            mode=mode,
            keys=[*keys, *(data["private_key"] for data in theirs)],
        )
        sent = proxy.hits(method, watched)

    assert run.failed
    assert "purged and created anew" in run.msg and "cannot be told" in run.msg, run.msg
    assert len(sent) == 1
    assert states(bao, path) == {1: (False, False), 2: (False, False)}
    assert metadata(bao, path)["custom_metadata"] == {"team": "b"}


def test_a_purge_guard_whose_answer_is_lost_is_not_resent_onto_a_secret_re_created_at_the_path(
    bao, modules, approle_auth
):
    """The guard write (cas_required) lands, its answer is lost, and before the read-back the path is purged and
    another team's secret created there at the metadata version the guard was checked against: the guard is
    not sent again onto it, and nothing is destroyed."""
    path = unique_path("guard-aba")
    keys = certificate_secret(bao, path, 1)
    checked_against = metadata(bao, path)["current_metadata_version"]
    theirs = cert_data(f"theirs.{path[6:]}")
    watched = "^" + re.escape(f"secret/metadata/{path}") + "$"

    with FaultProxy(bao.addr, bao.ca_cert) as proxy:
        proxy.add_rule(
            "POST",
            watched,
            drop=True,
            after_forward=True,
            times=1,
            then=lambda: recreate(bao, path, [theirs], metadata_version=checked_against),
        )
        run = retire(
            modules,
            {"url": proxy.url, **approle_auth},
            path=path,
            mode="purge",
            keys=[*keys, theirs["private_key"]],
        )
        guards = proxy.hits("POST", watched)

    assert run.failed
    assert "purged and created anew by someone else" in run.msg and "nothing destroyed" in run.msg, run.msg
    assert len(guards) == 1
    after = metadata(bao, path)
    assert after is not None and after["custom_metadata"] == {"team": "b"} and after["cas_required"] is False
    status, body = bao.api("GET", f"secret/data/{path}")
    assert status == 200 and body["data"]["data"] == theirs


def test_a_secret_re_created_between_the_purge_guard_and_its_second_read_is_neither_purged_nor_released(
    bao, modules, approle_auth
):
    """Right after the guard write, the path is purged and another team's secret created there with the guarded
    version and metadata version: the purge's second read tells it apart by its created_time, and neither
    deletes it nor writes its cas_required."""
    path = unique_path("second-read-aba")
    keys = certificate_secret(bao, path, 1)
    guarded = metadata(bao, path)["current_metadata_version"] + 1
    theirs = cert_data(f"theirs.{path[6:]}")
    watched = "^" + re.escape(f"secret/metadata/{path}") + "$"

    with FaultProxy(bao.addr, bao.ca_cert) as proxy:
        proxy.add_rule("POST", watched, times=1, then=lambda: recreate(bao, path, [theirs], metadata_version=guarded))
        run = retire(
            modules,
            {"url": proxy.url, **approle_auth},
            path=path,
            mode="purge",
            keys=[*keys, theirs["private_key"]],
        )
        posts = proxy.hits("POST", watched)

    assert run.failed
    assert "purged and created anew by someone else during the purge" in run.msg, run.msg
    assert len(posts) == 1  # the guard; no write putting cas_required back
    after = metadata(bao, path)
    assert after is not None and after["custom_metadata"] == {"team": "b"}
    assert after["current_metadata_version"] == guarded
    status, body = bao.api("GET", f"secret/data/{path}")
    assert status == 200 and body["data"]["data"] == theirs


def test_a_purge_guard_that_may_have_landed_before_another_writer_names_the_cas_required_it_may_leave(
    bao, modules, approle_auth
):
    """The guard write lands, its answer is lost, and another team tags the secret before the read-back: the
    purge stops ("changed by another writer", nothing destroyed) and says that cas_required may still be set,
    and how to clear it. It is not put back: nothing tells whose it is now."""
    path = unique_path("guard-lost")
    keys = certificate_secret(bao, path, 1)
    held = {**MANAGED, "hold": "true"}
    watched = "^" + re.escape(f"secret/metadata/{path}") + "$"

    with FaultProxy(bao.addr, bao.ca_cert) as proxy:
        proxy.add_rule("POST", watched, drop=True, after_forward=True, times=1, then=lambda: tag(bao, path, held))
        run = retire(modules, {"url": proxy.url, **approle_auth}, path=path, mode="purge", keys=keys)

    assert run.failed
    assert "changed by another writer" in run.msg and "nothing destroyed" in run.msg, run.msg
    assert "cas_required" in run.msg and "may still be set" in run.msg, run.msg
    assert f"bao kv metadata put -mount=secret -cas-required=false {path}" in run.msg, run.msg
    after = metadata(bao, path)
    assert after["custom_metadata"] == held and after["cas_required"] is True
    assert states(bao, path) == {1: (False, False)}

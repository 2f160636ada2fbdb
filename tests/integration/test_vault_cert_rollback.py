"""vault_cert_rollback against a real OpenBao server (SPEC.md, section vault_cert_rollback).

Histories are written directly as root (fast); vault_cert_push is used where
the test is about push and rollback together. Every test checks the server
afterwards (version numbers and data through bao.kv_version_numbers and bao.kv_data).
The module runs in-process (``modules``); the harness scans every run for the
credentials it was given and the tokens it used, and the tests hand it the
histories' keys, which reach a run from the server. One playbook run proves the
path a user takes: a push's registered result templated into a guarded rollback.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
import uuid

import pki
import pytest
import requests
from fault_proxy import FaultProxy
from kv_histories import cert_data, pem_values, write, write_history
from leaks import assert_no_leak

MODULE = "vault_cert_rollback"
FURTHER = "running this again rolls back further"


# -- helpers -------------------------------------------------------------------


def unique_path(name: str) -> str:
    return f"certs/rollback-{name}-{uuid.uuid4().hex[:8]}.example.com"


def location(path: str, mount: str = "secret") -> str:
    return f"{mount}/data/{path}"


def delete_versions(bao, path: str, *versions: int, mount: str = "secret") -> None:
    status, body = bao.api("POST", f"{mount}/delete/{path}", {"versions": list(versions)})
    assert status == 204, body


def destroy_versions(bao, path: str, *versions: int, mount: str = "secret") -> None:
    status, body = bao.api("PUT", f"{mount}/destroy/{path}", {"versions": list(versions)})
    assert status == 204, body


def current_version(bao, path: str, mount: str = "secret") -> int:
    return max(bao.kv_version_numbers(path, mount=mount), default=0)


def history(bao, path: str, mount: str = "secret") -> dict[int, dict | None]:
    """Every kept version's data, by number."""
    return {
        number: bao.kv_data(path, version=number, mount=mount) for number in bao.kv_version_numbers(path, mount=mount)
    }


def rollback(runner, vault_conn, auth, path, *, mount="secret", check=False, diff=False, secrets=(), **options):
    """One rollback of ``path``; ``secrets`` (the histories' keys, which reach the run from the server) never shown."""
    args = {**vault_conn, **auth, "mount": mount, "path": path}
    args.update({key: value for key, value in options.items() if value is not None})
    return runner.run_module(MODULE, args, check=check, diff=diff, secrets=secrets)


def warned_further(run) -> bool:
    text = " ".join(run.output.split()) + json.dumps(run.result.get("warnings", []))
    return FURTHER in text


def token_with_policy(bao, name: str, rules: dict[str, list[str]]) -> str:
    """A policy `name` with `rules` (path -> capabilities) and a 5-minute token holding it (plus default)."""
    hcl = "".join(
        f'path "{rule_path}" {{\n  capabilities = {json.dumps(caps)}\n}}\n' for rule_path, caps in rules.items() if caps
    )
    status, body = bao.api("PUT", f"sys/policies/acl/{name}", {"policy": hcl})
    assert status == 204, body
    status, body = bao.api("POST", "auth/token/create", {"policies": [name], "ttl": "5m"})
    assert status == 200, body
    return body["auth"]["client_token"]


# -- restoring ----------------------------------------------------------------


def test_rollback_without_version_restores_previous_version_and_warns(bao, vault_conn, approle_auth, modules):
    path = unique_path("previous")
    one, two = cert_data(f"one.{path[6:]}"), cert_data(f"two.{path[6:]}")
    write_history(bao, path, one, two)

    run = rollback(modules, vault_conn, approle_auth, path, diff=True, secrets=pem_values(one, two))

    requests_made = [
        (entry["request"]["operation"], entry["request"]["path"].split("/")[1])
        for entry in run.requests
        if entry["request"]["path"] in (f"secret/data/{path}", f"secret/metadata/{path}")
    ]
    assert not run.failed, run.msg
    # The metadata is read once; the target and the current version once each; one write.
    assert sorted(requests_made) == [("read", "data"), ("read", "data"), ("read", "metadata"), ("update", "data")]
    assert run.changed
    assert run.result["mount"] == "secret"
    assert run.result["path"] == path
    assert (run.result["previous_version"], run.result["restored_version"], run.result["version"]) == (2, 1, 3)
    assert warned_further(run)
    assert history(bao, path) == {1: one, 2: two, 3: one}
    # Diff mode: certificate summaries of before (version 2) and after (version 1's data), no PEM.
    diff = run.result["diff"]
    assert "version 2" in diff["before_header"]
    assert "version 1" in diff["after_header"]
    assert set(diff["before"]) == set(diff["after"]) == {"certificate", "private_key"}
    assert f"CN=two.{path[6:]}" in diff["before"]["certificate"]
    assert f"CN=one.{path[6:]}" in diff["after"]["certificate"]
    assert diff["before"]["private_key"].startswith("<private key")
    assert "-----BEGIN" not in json.dumps(diff)


def test_rollback_to_explicit_version_twice_reports_second_run_unchanged(bao, vault_conn, approle_auth, modules):
    path = unique_path("twice")
    one, two, three = (cert_data(f"{n}.example.com") for n in ("one", "two", "three"))
    write_history(bao, path, one, two, three)

    first = rollback(modules, vault_conn, approle_auth, path, version=1, secrets=pem_values(one, two, three))
    second = rollback(modules, vault_conn, approle_auth, path, version=1, secrets=pem_values(one, two, three))

    assert not first.failed, first.msg
    assert first.changed
    assert (first.result["previous_version"], first.result["restored_version"], first.result["version"]) == (3, 1, 4)
    assert not second.failed, second.msg
    assert not second.changed
    assert (second.result["previous_version"], second.result["restored_version"], second.result["version"]) == (4, 1, 4)
    assert not warned_further(first)
    assert not warned_further(second)
    assert history(bao, path) == {1: one, 2: two, 3: three, 4: one}


def test_rollback_without_version_skips_deleted_version(bao, vault_conn, approle_auth, modules):
    path = unique_path("skip-deleted")
    one, two, three = (cert_data(f"{n}.example.com") for n in ("one", "two", "three"))
    write_history(bao, path, one, two, three)
    delete_versions(bao, path, 2)

    run = rollback(modules, vault_conn, approle_auth, path, secrets=pem_values(one, two, three))

    assert not run.failed, run.msg
    assert (run.result["previous_version"], run.result["restored_version"], run.result["version"]) == (3, 1, 4)
    assert history(bao, path) == {1: one, 2: None, 3: three, 4: one}
    assert bao.kv_versions("secret", path)["2"]["deletion_time"]  # still deleted, not undeleted


def test_rollback_is_not_blocked_by_soft_deleted_current_version(bao, vault_conn, approle_auth, modules):
    path = unique_path("deleted-current")
    one, two = cert_data("one.example.com"), cert_data("two.example.com")
    write_history(bao, path, one, two)
    delete_versions(bao, path, 2)

    run = rollback(modules, vault_conn, approle_auth, path, secrets=pem_values(one, two))

    assert not run.failed, run.msg
    assert run.changed
    assert (run.result["previous_version"], run.result["restored_version"], run.result["version"]) == (2, 1, 3)
    assert history(bao, path) == {1: one, 2: None, 3: one}


def test_rollback_in_check_mode_reports_change_and_writes_nothing(bao, vault_conn, approle_auth, modules):
    path = unique_path("check")
    one, two = cert_data("one.example.com"), cert_data("two.example.com")
    write_history(bao, path, one, two)
    before = bao.kv_versions("secret", path)

    run = rollback(
        modules, vault_conn, approle_auth, path, version=1, check=True, diff=True, secrets=pem_values(one, two)
    )

    assert not run.failed, run.msg
    assert run.changed
    assert (run.result["previous_version"], run.result["restored_version"], run.result["version"]) == (2, 1, 2)
    assert "CN=one.example.com" in run.result["diff"]["after"]["certificate"]
    assert bao.kv_versions("secret", path) == before
    assert history(bao, path) == {1: one, 2: two}


# -- refusing -------------------------------------------------------------------


def _deleted(bao, path):
    write_history(bao, path, *(cert_data(f"v{n}.example.com") for n in (1, 2, 3)))
    delete_versions(bao, path, 1)


def _scheduled_for_deletion(bao, path):
    write(bao, path, cert_data("v1.example.com"))
    status, body = bao.api("POST", f"secret/metadata/{path}", {"delete_version_after": "1h"})
    assert status == 204, body
    write_history(bao, path, cert_data("v2.example.com"), cert_data("v3.example.com"))
    assert bao.kv_versions("secret", path)["2"]["deletion_time"]  # in the future: scheduled


def _destroyed(bao, path):
    write_history(bao, path, *(cert_data(f"v{n}.example.com") for n in (1, 2, 3)))
    destroy_versions(bao, path, 1)


def _pruned(bao, path):
    write_history(bao, path, *(cert_data(f"v{n}.example.com") for n in (1, 2, 3)), mount="small")
    assert sorted(bao.kv_versions("small", path)) == ["2", "3"]


def _two_versions(bao, path):
    write_history(bao, path, cert_data("v1.example.com"), cert_data("v2.example.com"))


def _single_version(bao, path):
    write(bao, path, cert_data("v1.example.com"))


def _only_deleted_earlier(bao, path):
    _two_versions(bao, path)
    delete_versions(bao, path, 1)


def _no_secret(bao, path):
    pass


REFUSALS = {
    # case: (setup, mount, version, words in msg after the location; {loc} is the secret's data path)
    "deleted": (_deleted, "secret", 1, "version 1 of {loc} is deleted"),
    "scheduled-deletion": (_scheduled_for_deletion, "secret", 2, "version 2 of {loc} is scheduled for deletion"),
    "destroyed": (_destroyed, "secret", 1, "version 1 of {loc} is destroyed"),
    "pruned": (_pruned, "small", 1, "version 1 of {loc} was pruned"),
    "nonexistent-version": (_two_versions, "secret", 9, "version 9 of {loc} does not exist"),
    "single-version": (
        _single_version,
        "secret",
        None,
        "{loc} has no earlier live version to roll back to (current version 1)",
    ),
    "only-earlier-deleted": (
        _only_deleted_earlier,
        "secret",
        None,
        "{loc} has no earlier live version to roll back to (current version 2)",
    ),
    "target-is-current": (_two_versions, "secret", 2, "version 2 of {loc} is the current version"),
    "no-secret": (_no_secret, "secret", 1, "{loc} does not exist; nothing to roll back"),
}


@pytest.mark.parametrize("case", REFUSALS)
def test_rollback_refuses_unrestorable_target_writing_nothing(bao, vault_conn, approle_auth, modules, case):
    setup, mount, version, words = REFUSALS[case]
    path = unique_path(case)
    setup(bao, path)
    before = bao.kv_versions(mount, path)
    datas = [data for data in history(bao, path, mount).values() if data]

    run = rollback(modules, vault_conn, approle_auth, path, mount=mount, version=version, secrets=pem_values(*datas))

    assert run.failed
    assert words.format(loc=location(path, mount)) in run.msg
    assert bao.kv_versions(mount, path) == before  # no new version, no flag changed


def test_rollback_refuses_stale_current_version_guard(bao, vault_conn, approle_auth, modules):
    path = unique_path("guard")
    datas = [cert_data(f"v{n}.example.com") for n in (1, 2, 3)]
    write_history(bao, path, *datas)

    run = rollback(modules, vault_conn, approle_auth, path, version=1, current_version=2, secrets=pem_values(*datas))

    assert run.failed
    assert f"current version of {location(path)} is 3, not 2" in run.msg
    assert "nothing written" in run.msg
    assert current_version(bao, path) == 3
    assert history(bao, path) == dict(enumerate(datas, start=1))


# -- push and rollback together ----------------------------------------------------


def test_push_result_drives_guarded_rollback_and_a_rerun_reports_unchanged(bao, vault_conn, approle_auth, ansible):
    """The playbook a user writes: the push's registered result is templated into the guarded rollback."""
    path = unique_path("push")
    original = cert_data("old.example.com")
    write(bao, path, original)
    renewed = pki.make_leaf(None, "new.example.com", sans=("new.example.com",))
    connection = {**vault_conn, **approle_auth}
    guarded = {**connection, "path": path, "version": "{{ pushed.previous_version }}"}
    guarded["current_version"] = "{{ pushed.version }}"
    tasks = [
        {
            "name": "Push the renewed certificate",
            "certautopilot.vault.vault_cert_push": {
                **connection,
                "path": path,
                "certificate": renewed.cert_pem,
                "private_key": renewed.key_pem,
            },
            "register": "pushed",
        },
        {"name": "Roll back what the push replaced", f"certautopilot.vault.{MODULE}": guarded},
        {"name": "Roll back again", f"certautopilot.vault.{MODULE}": guarded},
    ]
    playbook = ansible.workdir / f"rollback-after-push-{uuid.uuid4().hex}.yml"
    playbook.write_text(json.dumps([{"hosts": "localhost", "gather_facts": False, "tasks": tasks}]))
    playbook.chmod(0o600)

    # Only the key: the push echoes its certificate, whose lines may equal the original's (same issuer, same shape).
    run = ansible.run_playbook(playbook, secrets=[original["private_key"]])

    pushed, undone, rerun = (run.task(task["name"]).result for task in tasks)
    assert not run.failed, run.output
    assert (pushed["previous_version"], pushed["version"]) == (1, 2)
    assert (undone["previous_version"], undone["restored_version"], undone["version"]) == (2, 1, 3)
    assert undone["changed"]
    # The guard no longer matches, but the data already is version 1's: the rollback happened, nothing to do.
    assert not rerun["changed"]
    assert (rerun["previous_version"], rerun["version"]) == (3, 3)
    assert current_version(bao, path) == 3
    assert bao.kv_data(path, version=3) == original
    assert bao.kv_data(path, version=2)["certificate"].strip() == renewed.cert_pem.strip()
    # The push echoes its (public) certificate in its invocation; the rollbacks show no PEM at all.
    assert_no_leak([undone, rerun], renewed.cert_pem, *pem_values(original))


# -- the same as bao kv rollback --------------------------------------------------------


def _history_with_fewer_keys_in_target():
    datas = [
        cert_data("one.example.com"),
        cert_data("two.example.com", chain="chain-two", note="added later"),
        cert_data("three.example.com", chain="chain-three", note="kept"),
    ]
    return datas, [], 1


def _history_with_deleted_middle_and_deleted_current():
    return [cert_data(f"v{n}.example.com") for n in (1, 2, 3)], [2, 3], 1


TWINS = {
    # case: () -> (data of each version, versions then deleted, target)
    "target-lacks-keys": _history_with_fewer_keys_in_target,
    "deleted-middle-and-current": _history_with_deleted_middle_and_deleted_current,
}


@pytest.mark.parametrize("case", TWINS)
def test_rollback_matches_bao_kv_rollback_on_twin_secrets(bao, vault_conn, approle_auth, modules, case):
    ours, theirs = unique_path(f"twin-module-{case}"), unique_path(f"twin-cli-{case}")
    datas, deleted, target = TWINS[case]()
    for twin in (ours, theirs):
        write_history(bao, twin, *datas)
        if deleted:
            delete_versions(bao, twin, *deleted)

    run = rollback(modules, vault_conn, approle_auth, ours, version=target, secrets=pem_values(*datas))
    cli = bao.cli("kv", "rollback", "-format=json", "-mount=secret", f"-version={target}", theirs)

    def shape(path):
        return {n: (bool(v["deletion_time"]), v["destroyed"]) for n, v in bao.kv_versions("secret", path).items()}

    assert not run.failed, run.msg
    assert cli.returncode == 0, cli.stderr
    assert run.result["version"] == json.loads(cli.stdout)["data"]["version"] == len(datas) + 1
    assert shape(ours) == shape(theirs)
    assert history(bao, ours) == history(bao, theirs)  # same numbers, same data, version by version
    assert bao.kv_data(ours, version=len(datas) + 1) == datas[target - 1]  # keys the target lacked are gone


# -- vault_health's check_rollback agrees with what rollback needs -----------------------


HEALTH_POLICIES = {
    # case: (data capabilities, metadata capabilities, health rollback checks that pass, rollback succeeds)
    "lacks-update": (
        ["read", "create"],
        ["read", "list"],
        {"rollback_capabilities": False, "rollback_metadata": True},
        False,
    ),
    "lacks-metadata-read": (
        ["read", "create", "update"],
        [],
        {"rollback_capabilities": True, "rollback_metadata": False},
        False,
    ),
    "rollback-only": (["read", "update"], ["read"], {"rollback_capabilities": True, "rollback_metadata": True}, True),
}


@pytest.mark.parametrize("case", HEALTH_POLICIES)
def test_health_check_rollback_agrees_with_rollback(bao, vault_conn, modules, case):
    data_caps, metadata_caps, expected_checks, rollback_works = HEALTH_POLICIES[case]
    path = unique_path(f"health-{case}")
    one, two = cert_data("one.example.com"), cert_data("two.example.com")
    write_history(bao, path, one, two)
    token = token_with_policy(
        bao,
        f"rollback-{case}-{uuid.uuid4().hex[:8]}",
        {f"secret/data/{path}": data_caps, f"secret/metadata/{path}": metadata_caps},
    )
    auth = {"auth_method": "token", "token": token}

    health = modules.run_module(
        "vault_health", {**vault_conn, **auth, "mount": "secret", "path": path, "check_rollback": True}
    )
    run = rollback(modules, vault_conn, auth, path, secrets=pem_values(one, two))

    checks = {check["name"]: check for check in health.result["checks"]}
    assert {name: checks[name]["ok"] for name in expected_checks} == expected_checks, checks
    if not expected_checks["rollback_capabilities"]:
        assert "lacks update" in checks["rollback_capabilities"]["msg"]
    assert (not run.failed) == rollback_works, run.msg
    if rollback_works:
        assert (run.result["previous_version"], run.result["restored_version"], run.result["version"]) == (2, 1, 3)
        assert history(bao, path) == {1: one, 2: two, 3: one}
    else:
        assert "permission denied" in run.msg
        assert history(bao, path) == {1: one, 2: two}


# -- ownership: the push's rule ----------------------------------------------------------


def marked(owner: str) -> dict[str, str]:
    return {"managed_by": "certautopilot.vault", "certautopilot_owner": owner}


@pytest.mark.parametrize(
    ("owner", "refusal"),
    [
        (None, "is owned by team-b: give owner team-b or another path; nothing written"),
        ("team-a", "is owned by team-b, not by owner team-a: another owner's secret is never taken over"),
    ],
)
def test_rollback_refuses_a_secret_marked_with_another_owner_writing_nothing(
    bao, vault_conn, approle_auth, modules, owner, refusal
):
    path = unique_path("owned")
    one, two = cert_data("one.example.com"), cert_data("two.example.com")
    write_history(bao, path, one, two)
    assert bao.api("POST", f"secret/metadata/{path}", {"custom_metadata": marked("team-b")})[0] == 204
    before = bao.api("GET", f"secret/metadata/{path}")[1]["data"]

    run = rollback(modules, vault_conn, approle_auth, path, version=1, owner=owner)

    assert run.failed
    assert f"{location(path)} {refusal}" in run.msg, run.msg
    assert bao.api("GET", f"secret/metadata/{path}")[1]["data"] == before
    assert history(bao, path) == {1: one, 2: two}


def test_rollback_with_the_owner_of_the_mark_restores_and_keeps_the_mark(bao, vault_conn, approle_auth, modules):
    path = unique_path("own")
    one, two = cert_data("one.example.com"), cert_data("two.example.com")
    write_history(bao, path, one, two)
    assert bao.api("POST", f"secret/metadata/{path}", {"custom_metadata": marked("team-b")})[0] == 204

    run = rollback(modules, vault_conn, approle_auth, path, version=1, owner="team-b")

    assert not run.failed, run.msg
    assert history(bao, path) == {1: one, 2: two, 3: one}
    assert bao.api("GET", f"secret/metadata/{path}")[1]["data"]["custom_metadata"] == marked("team-b")


def test_rollback_refuses_an_owner_that_is_not_a_name_before_any_request(bao, vault_conn, approle_auth, modules):
    path = unique_path("bad-owner")
    write_history(bao, path, cert_data("one.example.com"), cert_data("two.example.com"))

    run = rollback(modules, vault_conn, approle_auth, path, version=1, owner="team a/web")

    assert run.failed
    assert run.msg.startswith("owner must be 1 to 64 characters") and "team a" not in run.msg, run.msg
    assert current_version(bao, path) == 2


# -- another writer between the rollback's read and its write ---------------------------


def test_rollback_fails_when_another_writer_lands_between_read_and_write(bao, approle_auth, modules):
    path = unique_path("cas-conflict")
    one, two, theirs = (cert_data(f"{n}.example.com") for n in ("one", "two", "theirs"))
    write_history(bao, path, one, two)

    watched = re.escape(location(path)) + "$"
    with FaultProxy(bao.addr, bao.ca_cert) as proxy:
        proxy.add_rule("POST", watched, action=lambda: write(bao, path, theirs), times=None)
        run = rollback(modules, {"url": proxy.url}, approle_auth, path, version=1, secrets=pem_values(one, two, theirs))

    assert run.failed
    assert f"{location(path)} changed while rolling back (it is no longer version 2); nothing written" in run.msg
    assert len(proxy.hits("POST", watched)) == 1  # not re-decided and re-sent
    assert history(bao, path) == {1: one, 2: two, 3: theirs}  # the other writer's version stays current


RECORDED = {"cn": "two.example.com", "serial": "02", "not_after": "2030-01-01T00:00:00Z", "fingerprint_sha256": "ab"}


@pytest.mark.parametrize("their_write", ["data and metadata", "data only"])
def test_rollback_losing_to_another_writer_leaves_the_custom_metadata_as_they_left_it(
    bao, approle_auth, modules, their_write
):
    path = unique_path("meta-conflict")
    one, two, theirs = (cert_data(f"{n}.example.com") for n in ("one", "two", "theirs"))
    write_history(bao, path, one, two)
    assert bao.api("POST", f"secret/metadata/{path}", {"custom_metadata": {**RECORDED, "team": "web"}})[0] == 204

    def other_writer() -> None:
        write(bao, path, theirs)
        if their_write == "data and metadata":
            custom = bao.api("GET", f"secret/metadata/{path}")[1]["data"]["custom_metadata"]
            status = bao.api("POST", f"secret/metadata/{path}", {"custom_metadata": {**custom, "hold": "true"}})[0]
            assert status == 204

    # Just before the rollback's first write (its custom_metadata, which describes the restored certificate).
    watched = f"^secret/metadata/{re.escape(path)}$"
    with FaultProxy(bao.addr, bao.ca_cert) as proxy:
        proxy.add_rule("POST", watched, action=other_writer)
        expected = bao.api("GET", f"secret/metadata/{path}")[1]["data"]["custom_metadata"]
        run = rollback(modules, {"url": proxy.url}, approle_auth, path, version=1)

    assert run.failed
    assert f"{location(path)} changed while rolling back (it is no longer version 2); nothing written" in run.msg
    if their_write == "data and metadata":
        expected = {**expected, "hold": "true"}
    assert bao.api("GET", f"secret/metadata/{path}")[1]["data"]["custom_metadata"] == expected
    assert history(bao, path) == {1: one, 2: two, 3: theirs}


def test_rollback_whose_data_write_outcome_is_unknown_says_its_custom_metadata_was_written(bao, approle_auth, modules):
    path = unique_path("unknown-outcome")
    one, two = cert_data("one.example.com"), cert_data("two.example.com")
    write_history(bao, path, one, two)
    assert bao.api("POST", f"secret/metadata/{path}", {"custom_metadata": RECORDED})[0] == 204

    with FaultProxy(bao.addr, bao.ca_cert) as proxy:
        # The data write is sent and its answer lost, and every read that could settle it fails.
        proxy.add_rule("POST", re.escape(location(path)) + "$", drop=True, after_forward=True, times=None)
        proxy.add_rule("GET", f"^secret/data/{re.escape(path)}$", status=503, skip=2, times=None)
        proxy.add_rule("GET", f"^secret/metadata/{re.escape(path)}$", status=503, skip=1, times=None)
        run = rollback(modules, {"url": proxy.url, "retries": 0}, approle_auth, path, version=1)

    assert run.failed
    assert bao.api("GET", f"secret/metadata/{path}")[1]["data"]["custom_metadata"] != RECORDED
    assert "the secret's metadata (custom_metadata), written before it, is left as written" in run.msg, run.msg


def test_rollback_write_whose_answer_is_lost_is_recognised_not_repeated(bao, approle_auth, modules):
    path = unique_path("lost-answer")
    one, two = cert_data("one.example.com"), cert_data("two.example.com")
    write_history(bao, path, one, two)

    watched = re.escape(location(path)) + "$"
    with FaultProxy(bao.addr, bao.ca_cert) as proxy:
        # The write is applied, but its answer is lost behind a failing gateway.
        proxy.add_rule("POST", watched, status=502, after_forward=True, times=None)
        run = rollback(modules, {"url": proxy.url}, approle_auth, path, version=1, secrets=pem_values(one, two))

    assert not run.failed, run.msg
    assert (run.result["previous_version"], run.result["restored_version"], run.result["version"]) == (2, 1, 3)
    assert len(proxy.hits("POST", watched)) == 1
    assert history(bao, path) == {1: one, 2: two, 3: one}


ROUNDS = 20


def test_rollback_racing_concurrent_writers_never_loses_their_versions(bao, vault_conn, approle_auth, modules):
    """ROUNDS rollbacks, one after another, while two root writers keep writing the same secret."""
    path = unique_path("race")
    status, body = bao.api("POST", f"secret/metadata/{path}", {"max_versions": 10000})
    assert status == 204, body
    original = cert_data("original.example.com")
    write(bao, path, original)
    stop = threading.Event()
    written: list[tuple[int, dict]] = []
    errors: list[str] = []

    def writer(name: str) -> None:
        # Bursts of writes with quiet gaps, so some rollbacks race a write and some do not.
        # Its own connection: bao.api's session is not shared across threads. It never reads the environment,
        # which an in-process module run replaces while it runs.
        with requests.Session() as session:
            session.trust_env = False
            number = 0
            while not stop.is_set():
                burst_end = time.monotonic() + random.uniform(0.1, 0.3)
                while time.monotonic() < burst_end and not stop.is_set():
                    number += 1
                    data = {"certificate": f"{name}-{number}"}
                    answer = session.post(
                        f"{bao.addr}/v1/secret/data/{path}",
                        json={"data": data},
                        headers={"X-Vault-Token": bao.root_token},
                        verify=bao.ca_cert,
                        timeout=30,
                    )
                    if answer.status_code == 200:
                        written.append((answer.json()["data"]["version"], data))
                    else:
                        errors.append(f"{answer.status_code} {answer.text}")
                    stop.wait(random.uniform(0.005, 0.02))
                stop.wait(random.uniform(0.4, 1.2))

    threads = [threading.Thread(target=writer, args=(name,)) for name in ("writer-a", "writer-b")]
    for thread in threads:
        thread.start()
    runs = []
    try:
        for _round in range(ROUNDS):
            runs.append(rollback(modules, vault_conn, approle_auth, path, version=1, secrets=pem_values(original)))
            # Paced about as a playbook loop paces its items, so the rounds meet bursts and quiet gaps alike.
            stop.wait(random.uniform(0.05, 0.3))
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)

    assert not errors
    items = [run.result for run in runs]
    assert len(items) == ROUNDS
    final = history(bao, path)
    conflicts = restored = unchanged = 0
    for item in items:
        if item.get("failed"):
            conflicts += 1
            assert f"{location(path)} changed while rolling back" in item["msg"], item["msg"]
        elif item["changed"]:
            restored += 1
            assert item["version"] == item["previous_version"] + 1  # written with cas on what it read
            assert final[item["version"]] == original
        else:
            unchanged += 1
            assert item["version"] == item["previous_version"]
            assert final[item["version"]] == original
    # Every version the other writers got still holds their data: nothing overwritten or lost.
    for version, data in written:
        assert final[version] == data
    writer_versions = {version for version, _data in written}
    rollback_versions = {item["version"] for item in items if not item.get("failed") and item["changed"]}
    assert not writer_versions & rollback_versions
    assert set(final) == {1} | writer_versions | rollback_versions
    print(
        f"\nrace: {len(written)} concurrent writes; rollbacks: {conflicts} cas conflicts, "
        f"{restored} restored, {unchanged} unchanged"
    )


# -- batches (secrets) ----------------------------------------------------------


def renewed_batch(bao, name: str, size: int) -> list[str]:
    """`size` secrets, each at version 2 (a renewal over version 1)."""
    paths = [unique_path(f"{name}-{index:02d}") for index in range(size)]
    for path in paths:
        write_history(bao, path, cert_data(f"v1.{path[6:]}"), cert_data(f"v2.{path[6:]}"))
    return paths


def test_rollback_batch_of_twenty_is_one_login_and_restores_each_in_input_order(bao, vault_conn, approle_auth, modules):
    paths = renewed_batch(bao, "batch", 20)
    secrets = [{"path": path, "version": 1, "current_version": 2} for path in paths]

    run = modules.run_module(MODULE, {**vault_conn, **approle_auth, "secrets": secrets, "concurrency": 1})

    assert not run.failed, run.msg
    assert [result["path"] for result in run.result["results"]] == paths
    assert all(
        (result["changed"], result["version"], result["previous_version"], result["restored_version"])
        == (True, 3, 2, 1)
        for result in run.result["results"]
    )
    requests_seen = [entry["request"]["path"] for entry in run.requests]
    assert [path for path in requests_seen if path.endswith("/login")] == ["auth/approle/login"]
    assert len([path for path in requests_seen if path.startswith("sys/internal/ui/mounts/")]) == 1
    for path in paths:
        assert history(bao, path)[3] == history(bao, path)[1]


def test_rollback_batch_stops_at_a_refused_secret_and_names_what_was_not_written(
    bao, vault_conn, approle_auth, modules
):
    paths = renewed_batch(bao, "stopped", 3)
    # The middle secret moved on since the recorded push: its guard refuses it, and the batch stops there.
    write(bao, paths[1], cert_data("v3.stopped.example.com"))
    secrets = [{"path": path, "version": 1, "current_version": 2} for path in paths]

    run = modules.run_module(MODULE, {**vault_conn, **approle_auth, "secrets": secrets, "concurrency": 1})

    assert run.failed
    assert "batch stopped at secret 2 of 3" in run.msg and "current_version guard" in run.msg, run.msg
    assert run.result["failed_path"] == paths[1]
    assert run.result["not_written"] == paths[1:]
    assert run.result["outcome_unknown"] == []
    assert [result["path"] for result in run.result["results"]] == paths[:1]
    assert [current_version(bao, path) for path in paths] == [3, 3, 2]


def test_rollback_batch_in_check_and_diff_mode_writes_nothing_and_diffs_each(bao, vault_conn, approle_auth, modules):
    paths = renewed_batch(bao, "check", 2)

    run = modules.run_module(
        MODULE, {**vault_conn, **approle_auth, "secrets": [{"path": path} for path in paths]}, check=True, diff=True
    )

    assert not run.failed, run.msg
    assert [result["changed"] for result in run.result["results"]] == [True, True]
    assert len(run.result["diff"]) == 2
    warnings = " ".join(run.result["warnings"])
    assert FURTHER in warnings and all(path in warnings for path in paths), warnings
    assert [current_version(bao, path) for path in paths] == [2, 2]
    assert "PRIVATE KEY" not in json.dumps(run.result["diff"])


def test_rollback_batch_with_one_path_twice_is_refused_before_any_request(bao, vault_conn, approle_auth, modules):
    path = unique_path("twice")

    run = modules.run_module(
        MODULE, {**vault_conn, **approle_auth, "secrets": [{"path": path, "version": 1}, {"path": path}]}
    )

    assert run.failed and f"invalid path {path!r}: it appears twice in secrets" in run.msg, run.msg
    assert run.requests == []


def test_rollback_batch_and_single_options_are_mutually_exclusive(vault_conn, approle_auth, modules):
    run = modules.run_module(
        MODULE, {**vault_conn, **approle_auth, "path": "certs/a", "secrets": [{"path": "certs/b"}]}
    )

    assert run.failed and "mutually exclusive" in run.msg, run.msg


def test_rollback_check_capabilities_refuses_the_batch_before_any_write(bao, vault_conn, modules):
    paths = renewed_batch(bao, "checked", 2)
    hcl = "".join(
        f'path "secret/data/{path}" {{ capabilities = ["read", "update"] }}\n'
        f'path "secret/metadata/{path}" {{ capabilities = {json.dumps(["read"] if index == 0 else [])} }}\n'
        for index, path in enumerate(paths)
    )
    status, body = bao.api("PUT", "sys/policies/acl/rollback-check-capabilities", {"policy": hcl})
    assert status in (200, 204), body
    status, body = bao.api("POST", "auth/token/create", {"policies": ["rollback-check-capabilities"], "ttl": "5m"})
    assert status == 200, body
    auth = {"auth_method": "token", "token": body["auth"]["client_token"]}

    run = modules.run_module(
        MODULE, {**vault_conn, **auth, "secrets": [{"path": path} for path in paths], "check_capabilities": True}
    )

    assert run.failed
    assert f"permission denied on secret/metadata/{paths[1]}: the token needs read and lacks read" in run.msg, run.msg
    assert [current_version(bao, path) for path in paths] == [2, 2]


# -- the custom metadata a push recorded ------------------------------------------------------


def test_rollback_makes_recorded_custom_metadata_describe_the_restored_certificate(bao, vault_conn, modules):
    path = unique_path("metadata")
    meta = {"auth_method": "approle", "role_id": bao.role_ids["meta"], "secret_id": bao.new_approle_secret_id("meta")}
    first, renewed = pki.make_chain(f"first.{path[6:]}").leaf, pki.make_chain(f"renewed.{path[6:]}").leaf
    for leaf in (first, renewed):
        pushed = modules.run_module(
            "vault_cert_push",
            {
                **vault_conn,
                **meta,
                "path": path,
                "certificate": leaf.cert_pem,
                "private_key": leaf.key_pem,
                "custom_metadata": True,
                "secret_id": bao.new_approle_secret_id("meta"),
            },
        )
        assert not pushed.failed, pushed.msg
    status, body = bao.api(
        "POST",
        f"secret/metadata/{path}",
        {
            "custom_metadata": {
                **bao.api("GET", f"secret/metadata/{path}")[1]["data"]["custom_metadata"],
                "owner": "team-a",
            }
        },
    )
    assert status in (200, 204), body

    run = modules.run_module(
        MODULE, {**vault_conn, **meta, "secret_id": bao.new_approle_secret_id("meta"), "path": path, "version": 1}
    )

    assert not run.failed, run.msg
    custom = bao.api("GET", f"secret/metadata/{path}")[1]["data"]["custom_metadata"]
    assert custom["cn"] == f"first.{path[6:]}" and custom["owner"] == "team-a"
    assert current_version(bao, path) == 3


def test_rollback_that_may_not_update_recorded_metadata_writes_nothing(bao, vault_conn, modules):
    path = unique_path("metadata-denied")
    write_history(bao, path, cert_data(f"first.{path[6:]}"), cert_data(f"renewed.{path[6:]}"))
    recorded = {"cn": f"renewed.{path[6:]}", "serial": "01", "not_after": "x", "fingerprint_sha256": "f"}
    status, body = bao.api("POST", f"secret/metadata/{path}", {"custom_metadata": recorded})
    assert status in (200, 204), body

    sample = {
        "auth_method": "approle",
        "role_id": bao.role_ids["sample"],
        "secret_id": bao.new_approle_secret_id("sample"),
    }
    run = modules.run_module(MODULE, {**vault_conn, **sample, "path": path, "version": 1})

    assert run.failed and "permission denied" in run.msg and f"secret/metadata/{path}" in run.msg, run.msg
    assert current_version(bao, path) == 2
    assert bao.api("GET", f"secret/metadata/{path}")[1]["data"]["custom_metadata"] == recorded

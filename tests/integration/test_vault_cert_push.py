"""vault_cert_push against a real OpenBao server.

The module's decisions, refusals and outcomes run in-process (the ``modules`` fixture: its main() against the real
server); what only the controller does - the action plugin reading private_key_file (found in files/, confined by
files_root), a survey's variables reaching a path, module_defaults, what ansible-playbook shows at -vvv and with
--diff - runs with ansible-playbook, many cases to a run. Each test uses its own secret paths and checks the server
afterwards (versions through the metadata endpoint, data through the API, the CLI or hvac, requests through the
audit log), not only what the module claims. The harness scans every run for the secrets it was given and the
tokens it used.
"""

from __future__ import annotations

import dataclasses
import json
import re
import threading
import typing as t
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import hvac
import pytest
from ansible_runner import PlaybookRun, TaskResult
from cryptography.hazmat.primitives import hashes
from fault_proxy import FaultProxy
from leaks import find_leaks
from pki import Issued, bundle, make_ca, make_chain, make_intermediate, make_leaf
from push_runs import MODULE, approle, expected_data, push, push_tasks, single
from vault_args import approle_args

MANAGED = {"managed_by": "certautopilot.vault"}
FIELDS = ("certificate", "private_key", "chain", "fullchain")


# -- helpers ------------------------------------------------------------------------------------


@pytest.fixture
def cert_path(request: pytest.FixtureRequest) -> str:
    """A secret path below certs/ that no other test uses."""
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower().removeprefix("test_")).strip("-")
    return f"certs/{slug}"


@pytest.fixture
def connect(vault_conn: dict[str, str], approle_auth: dict[str, str]) -> dict[str, str]:
    """Connection plus AppRole login as role certs."""
    return {**vault_conn, **approle_auth}


def writes(entries: list[dict], path: str, *, mount: str = "secret") -> list[dict]:
    """The write requests (create or update) among audit `entries` on one secret's data path."""
    return [
        entry
        for entry in entries
        if entry["request"]["path"] == f"{mount}/data/{path}" and entry["request"]["operation"] in ("create", "update")
    ]


def request_counts(entries: list[dict]) -> Counter:
    """A run's requests, by kind, as the request budget names them."""
    counts: Counter = Counter()
    for entry in entries:
        path, operation = entry["request"]["path"], entry["request"]["operation"]
        if path.endswith("/login"):
            counts[f"login {path}"] += 1
        elif path.startswith("sys/internal/ui/mounts/"):
            counts[f"mount check {path}"] += 1
        elif path == "auth/token/revoke-self":
            counts["revoke-self"] += 1
        elif "/data/" in path and operation == "read":
            counts["read"] += 1
        elif "/data/" in path and operation in ("create", "update"):
            counts["write"] += 1
        elif "/metadata/" in path and operation in ("create", "update"):
            counts["metadata write"] += 1
        else:
            counts[f"{operation} {path}"] += 1
    return counts


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def colon_hex(serial: int) -> str:
    digits = f"{serial:x}"
    digits = digits if len(digits) % 2 == 0 else f"0{digits}"
    return ":".join(digits[i : i + 2] for i in range(0, len(digits), 2))


def fingerprint(leaf: Issued) -> str:
    return leaf.cert.fingerprint(hashes.SHA256()).hex()


def crlf(text: str) -> str:
    return text.replace("\n", "\r\n")


# -- create, unchanged, renew -------------------------------------------------------------------


def test_push_creates_version_1_then_same_input_is_unchanged_then_renewal_writes_version_2(
    modules, bao, connect, cert_path
):
    issued = make_chain("renewal.example.com")

    created = push(modules, {**connect, **single(cert_path, issued.leaf, issued.intermediate)}, verbosity=3)
    assert not created.failed, created.msg
    assert created.changed
    assert (created.result["version"], created.result["previous_version"], created.result["created"]) == (1, None, True)
    assert sorted(created.result["changed_fields"]) == sorted(FIELDS)
    assert created.result["certificate"]["cn"] == "renewal.example.com"
    assert created.result["certificate"]["fingerprint_sha256"] == fingerprint(issued.leaf)
    assert bao.kv_version_numbers(cert_path) == [1]
    assert bao.kv_data(cert_path) == expected_data(issued.leaf, issued.intermediate)

    again = push(modules, {**connect, **single(cert_path, issued.leaf, issued.intermediate)})
    assert not again.failed, again.msg
    assert not again.changed
    assert (again.result["version"], again.result["previous_version"], again.result["created"]) == (1, 1, False)
    assert again.result["changed_fields"] == []
    assert bao.kv_version_numbers(cert_path) == [1]
    assert writes(again.requests, cert_path) == []

    renewed = make_leaf(issued.intermediate, "renewal.example.com", sans=("renewal.example.com",))
    new_key = push(modules, {**connect, **single(cert_path, renewed, issued.intermediate)})
    assert not new_key.failed, new_key.msg
    assert new_key.changed
    assert (new_key.result["version"], new_key.result["previous_version"], new_key.result["created"]) == (2, 1, False)
    assert sorted(new_key.result["changed_fields"]) == ["certificate", "fullchain", "private_key"]
    assert new_key.result["certificate"]["serial"] == colon_hex(renewed.cert.serial_number)
    assert bao.kv_version_numbers(cert_path) == [1, 2]
    assert bao.kv_data(cert_path) == expected_data(renewed, issued.intermediate)

    same_key = make_leaf(issued.intermediate, "renewal.example.com", key=renewed.key)
    kept_key = push(modules, {**connect, **single(cert_path, same_key, issued.intermediate)})
    assert not kept_key.failed, kept_key.msg
    assert (kept_key.result["version"], kept_key.result["previous_version"]) == (3, 2)
    assert sorted(kept_key.result["changed_fields"]) == ["certificate", "fullchain"]
    assert bao.kv_version_numbers(cert_path) == [1, 2, 3]
    assert bao.kv_data(cert_path) == expected_data(same_key, issued.intermediate)


# -- check mode and diff mode -------------------------------------------------------------------


def assert_diff_shows_summaries_only(diff: dict, *issued: Issued) -> None:
    text = json.dumps(diff)
    assert "BEGIN" not in text and "-----" not in text, text
    # Not one base64 line of any certificate or key given.
    assert find_leaks([diff], *[pem for item in issued for pem in (item.cert_pem, item.key_pem)]) == []


def test_check_mode_writes_nothing_and_reports_the_same_change_and_diff(modules, bao, connect, cert_path):
    issued = make_chain("check.example.com")
    args = {**connect, **single(cert_path, issued.leaf, issued.intermediate)}

    checked = push(modules, args, check=True, diff=True)
    assert not checked.failed, checked.msg
    assert checked.changed
    assert checked.result["created"] is True
    assert checked.result["previous_version"] is None
    assert bao.kv_version_numbers(cert_path) == []
    assert writes(checked.requests, cert_path) == []

    diff = checked.result["diff"]
    assert diff["before"] == {}
    assert set(diff["after"]) == set(FIELDS)
    leaf = issued.leaf
    summary = diff["after"]["certificate"]
    assert "CN=check.example.com" in summary
    assert colon_hex(leaf.cert.serial_number) in summary
    assert fingerprint(leaf) in summary
    assert diff["after"]["private_key"].startswith("<private key: sha256 ")
    assert "CN=CertAutoPilot Test Intermediate CA" in diff["after"]["chain"]
    assert_diff_shows_summaries_only(diff, leaf, issued.intermediate)
    # No certificate in the answer but in its echo of the arguments; what --diff prints is checked with the controller.
    answer = {key: value for key, value in checked.result.items() if key != "invocation"}
    assert find_leaks([answer], leaf.cert_pem, issued.intermediate.cert_pem) == []

    applied = push(modules, args, diff=True)
    assert not applied.failed, applied.msg
    assert applied.changed
    assert applied.result["diff"] == diff
    assert applied.result["changed_fields"] == checked.result["changed_fields"]
    assert bao.kv_version_numbers(cert_path) == [1]

    renewed = make_leaf(issued.intermediate, "check.example.com", sans=("check.example.com",))
    renewal = push(modules, {**connect, **single(cert_path, renewed, issued.intermediate)}, check=True, diff=True)
    assert not renewal.failed, renewal.msg
    assert renewal.changed
    assert (renewal.result["version"], renewal.result["previous_version"]) == (1, 1)
    assert bao.kv_version_numbers(cert_path) == [1]
    assert bao.kv_data(cert_path) == expected_data(leaf, issued.intermediate)
    before, after = renewal.result["diff"]["before"], renewal.result["diff"]["after"]
    assert colon_hex(leaf.cert.serial_number) in before["certificate"]
    assert colon_hex(renewed.cert.serial_number) in after["certificate"]
    assert before["private_key"] != after["private_key"]
    assert before["chain"] == after["chain"]
    assert_diff_shows_summaries_only(renewal.result["diff"], leaf, renewed, issued.intermediate)


# -- cert-only delivery, field names, unmanaged keys --------------------------------------------


def test_cert_only_push_removes_the_private_key_from_the_secret(modules, bao, connect, cert_path):
    issued = make_chain("cert-only.example.com")

    with_key = push(modules, {**connect, **single(cert_path, issued.leaf, issued.intermediate)})
    assert not with_key.failed, with_key.msg
    assert "private_key" in bao.kv_data(cert_path)

    args = {**connect, "path": cert_path, "certificate": issued.leaf.cert_pem, "chain": issued.intermediate.cert_pem}
    cert_only = push(modules, {**args, "include_private_key": False}, secrets=[issued.leaf.key_pem])
    assert not cert_only.failed, cert_only.msg
    assert cert_only.changed
    assert (cert_only.result["version"], cert_only.result["previous_version"]) == (2, 1)
    assert cert_only.result["changed_fields"] == ["private_key"]
    assert bao.kv_version_numbers(cert_path) == [1, 2]
    assert bao.kv_data(cert_path) == expected_data(issued.leaf, issued.intermediate, with_key=False)


def test_custom_field_names_are_used_a_null_field_is_not_written_and_unmanaged_keys_survive(
    modules, bao, connect, cert_path
):
    issued = make_chain("fields.example.com")
    fields = {"certificate": "tls.crt", "private_key": "tls.key", "chain": None, "fullchain": "tls-fullchain.crt"}

    first = push(modules, {**connect, **single(cert_path, issued.leaf, issued.intermediate), "fields": fields})
    assert not first.failed, first.msg
    assert bao.kv_data(cert_path) == {
        "tls.crt": issued.leaf.cert_pem,
        "tls.key": issued.leaf.key_pem,
        "tls-fullchain.crt": issued.leaf.cert_pem + issued.intermediate.cert_pem,
    }

    # Someone else adds a key of their own, as a new version.
    status, body = bao.api("POST", f"secret/data/{cert_path}", {"data": {**bao.kv_data(cert_path), "owner": "team-x"}})
    assert status == 200, body
    assert bao.kv_version_numbers(cert_path) == [1, 2]

    renewed = make_leaf(issued.intermediate, "fields.example.com", key=issued.leaf.key)
    kept = push(modules, {**connect, **single(cert_path, renewed, issued.intermediate), "fields": fields})
    assert not kept.failed, kept.msg
    assert (kept.result["version"], kept.result["previous_version"]) == (3, 2)
    assert sorted(kept.result["changed_fields"]) == ["certificate", "fullchain"]
    assert bao.kv_data(cert_path) == {
        "tls.crt": renewed.cert_pem,
        "tls.key": renewed.key_pem,
        "tls-fullchain.crt": renewed.cert_pem + issued.intermediate.cert_pem,
        "owner": "team-x",
    }

    dropped = push(
        modules,
        {**connect, **single(cert_path, renewed, issued.intermediate), "fields": fields, "keep_other_fields": False},
    )
    assert not dropped.failed, dropped.msg
    assert dropped.changed
    assert (dropped.result["version"], dropped.result["previous_version"]) == (4, 3)
    assert dropped.result["changed_fields"] == ["other_fields"]
    assert bao.kv_version_numbers(cert_path) == [1, 2, 3, 4]
    assert "owner" not in bao.kv_data(cert_path)
    assert set(bao.kv_data(cert_path)) == {"tls.crt", "tls.key", "tls-fullchain.crt"}


# -- chain forms and line endings ---------------------------------------------------------------


def test_chain_as_list_or_bundle_and_crlf_input_store_identical_data(modules, bao, connect, cert_path):
    root = make_ca("CertAutoPilot Test Root CA")
    upper = make_intermediate(root, "CertAutoPilot Chain Upper CA", path_length=1)
    lower = make_intermediate(upper, "CertAutoPilot Chain Lower CA")
    leaf = make_leaf(lower, "chain-forms.example.com")
    as_bundle, as_list = f"{cert_path}/bundle", f"{cert_path}/list"

    from_bundle = push(modules, {**connect, **single(as_bundle, leaf), "chain": bundle(lower, upper)})
    from_list = push(modules, {**connect, **single(as_list, leaf), "chain": [lower.cert_pem, upper.cert_pem]})
    assert not from_bundle.failed, from_bundle.msg
    assert not from_list.failed, from_list.msg

    stored = bao.kv_data(as_bundle)
    assert stored == bao.kv_data(as_list) == expected_data(leaf, lower, upper)
    assert stored["fullchain"] == stored["certificate"] + stored["chain"]

    windows = {
        **connect,
        "path": as_bundle,
        "certificate": crlf(leaf.cert_pem),
        "private_key": crlf(leaf.key_pem),
        "chain": crlf(bundle(lower, upper)),
    }
    from_crlf = push(modules, windows)
    assert not from_crlf.failed, from_crlf.msg
    assert not from_crlf.changed
    assert from_crlf.result["version"] == 1
    assert bao.kv_version_numbers(as_bundle) == [1]
    assert all("\r" not in value for value in bao.kv_data(as_bundle).values())


# -- custom metadata ----------------------------------------------------------------------------


def test_custom_metadata_is_written_with_a_role_that_may_update_metadata(modules, bao, vault_conn, cert_path):
    issued = make_chain("meta.example.com")

    run = push(
        modules, {**vault_conn, **approle(bao, "meta"), **single(cert_path, issued.leaf), "custom_metadata": True}
    )
    assert not run.failed, run.msg
    assert "custom_metadata" in run.result["changed_fields"]
    assert bao.kv_version_numbers(cert_path) == [1]

    status, body = bao.api("GET", f"secret/metadata/{cert_path}")
    assert status == 200, body
    assert body["data"]["custom_metadata"] == {
        "cn": "meta.example.com",
        "serial": colon_hex(issued.leaf.cert.serial_number),
        "not_after": iso(issued.leaf.cert.not_valid_after_utc),
        "fingerprint_sha256": fingerprint(issued.leaf),
    }


def test_custom_metadata_without_metadata_update_capability_is_permission_denied_on_the_metadata_path(
    modules, bao, vault_conn, cert_path
):
    issued = make_chain("meta-denied.example.com")
    # The data is already what the push wants: only the metadata write remains, and role sample may not.
    status, body = bao.api("POST", f"secret/data/{cert_path}", {"data": expected_data(issued.leaf)})
    assert status == 200, body

    run = push(
        modules,
        {**vault_conn, **approle(bao, "sample"), **single(cert_path, issued.leaf), "custom_metadata": True},
    )

    assert run.failed
    assert "permission denied" in run.msg
    assert f"secret/metadata/{cert_path}" in run.msg
    assert "update" in run.msg
    assert bao.kv_version_numbers(cert_path) == [1]
    status, body = bao.api("GET", f"secret/metadata/{cert_path}")
    assert not body["data"]["custom_metadata"]


# -- auth methods -------------------------------------------------------------------------------


def assert_pushed_once(bao, run, path: str, leaf: Issued, *, login: str, namespace: str | None = None) -> None:
    assert not run.failed, run.msg
    assert run.changed
    assert run.result["version"] == 1
    assert bao.kv_version_numbers(path, namespace=namespace) == [1]
    assert bao.kv_data(path, namespace=namespace) == expected_data(leaf)
    assert [entry["request"]["path"] for entry in run.requests if entry["request"]["path"].endswith("/login")] == [
        login
    ]


def test_push_with_jwt_auth(modules, bao, vault_conn, cert_path):
    leaf = make_chain("jwt.example.com").leaf
    args = {**vault_conn, "auth_method": "jwt", "role": "certs", "jwt": bao.sign_jwt(), **single(cert_path, leaf)}

    run = push(modules, args, verbosity=3)

    assert_pushed_once(bao, run, cert_path, leaf, login="auth/jwt/login")


def test_push_with_cert_auth(modules, bao, vault_conn, cert_path):
    leaf = make_chain("tls-auth.example.com").leaf
    args = {
        **vault_conn,
        "auth_method": "cert",
        "role": "certs",
        "client_cert": bao.client_cert,
        "client_key": bao.client_key,
        **single(cert_path, leaf),
    }

    run = push(modules, args)

    assert_pushed_once(bao, run, cert_path, leaf, login="auth/cert/login")


def test_push_with_token_auth_uses_the_token_and_does_not_revoke_it(modules, bao, vault_conn, cert_path):
    leaf = make_chain("token.example.com").leaf
    status, body = bao.api("POST", "auth/token/create", {"policies": ["certs"], "ttl": "5m", "no_parent": True})
    assert status == 200, body
    token = body["auth"]["client_token"]

    run = push(modules, {**vault_conn, "auth_method": "token", "token": token, **single(cert_path, leaf)})

    assert not run.failed, run.msg
    assert bao.kv_version_numbers(cert_path) == [1]
    assert bao.kv_data(cert_path) == expected_data(leaf)
    assert {entry["request"]["client_token"] for entry in run.requests} == {token}
    # No login and no revocation: the one auth/ request is the token's own check.
    assert [entry["request"]["path"] for entry in run.requests if entry["request"]["path"].startswith("auth/")] == [
        "auth/token/lookup-self"
    ]
    still_valid, _body = bao.api("GET", "auth/token/lookup-self", token=token)
    assert still_valid == 200


def test_push_in_namespace_lands_in_the_namespace_secret_mount_only(modules, bao, vault_conn, cert_path):
    leaf = make_chain("namespace.example.com").leaf
    args = {
        **vault_conn,
        "namespace": bao.namespace,
        "auth_method": "approle",
        "role_id": bao.ns_role_id,
        "secret_id": bao.new_approle_secret_id("certs", namespace=bao.namespace),
        **single(cert_path, leaf),
    }

    run = push(modules, args)

    assert_pushed_once(bao, run, cert_path, leaf, login="auth/approle/login", namespace=bao.namespace)
    assert bao.kv_version_numbers(cert_path) == []
    [write] = writes(run.requests, cert_path)
    assert write["request"]["namespace"]["path"].strip("/") == bao.namespace


# -- refusals -----------------------------------------------------------------------------------


def test_invalid_certificate_inputs_are_refused_with_the_reason_and_nothing_is_written(
    modules, bao, connect, cert_path
):
    issued = make_chain("refused.example.com")
    other = make_chain("other.example.com").leaf
    now = datetime.now(UTC)
    expired = make_leaf(
        issued.intermediate,
        "expired.example.com",
        not_before=now - timedelta(days=30),
        not_after=now - timedelta(days=1),
    )
    future = make_leaf(
        issued.intermediate,
        "future.example.com",
        not_before=now + timedelta(days=10),
        not_after=now + timedelta(days=100),
    )
    root = make_ca("CertAutoPilot Test Root CA")
    upper = make_intermediate(root, "CertAutoPilot Order Upper CA", path_length=1)
    lower = make_intermediate(upper, "CertAutoPilot Order Lower CA")
    two_levels = make_leaf(lower, "order.example.com")
    junk_cert = "-----BEGIN CERTIFICATE-----\nTm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"
    junk_key = "-----BEGIN PRIVATE KEY-----\nTm90IGEga2V5\n-----END PRIVATE KEY-----\n"

    cases = {
        "key mismatch": (
            {"certificate": issued.leaf.cert_pem, "private_key": other.key_pem},
            ["private key does not match the certificate"],
        ),
        "bad certificate": (
            {"certificate": junk_cert, "private_key": issued.leaf.key_pem},
            ["certificate", "PEM"],
        ),
        "certificate not PEM": (
            {"certificate": "just some text", "private_key": issued.leaf.key_pem},
            ["certificate", "PEM"],
        ),
        "bad key": (
            {"certificate": issued.leaf.cert_pem, "private_key": junk_key},
            ["private key", "PEM"],
        ),
        "bad chain": (
            {"certificate": issued.leaf.cert_pem, "private_key": issued.leaf.key_pem, "chain": junk_cert},
            ["chain", "PEM"],
        ),
        "chain in the wrong order": (
            {"certificate": two_levels.cert_pem, "private_key": two_levels.key_pem, "chain": bundle(upper, lower)},
            ["chain is broken", "leaf-first"],
        ),
        "expired": (
            {"certificate": expired.cert_pem, "private_key": expired.key_pem},
            ["expired", iso(expired.cert.not_valid_after_utc)],
        ),
        "not yet valid": (
            {"certificate": future.cert_pem, "private_key": future.key_pem},
            ["not yet valid", iso(future.cert.not_valid_before_utc)],
        ),
    }
    paths = {name: f"{cert_path}/{re.sub(r'[^a-z]+', '-', name)}" for name in cases}

    for name, (inputs, texts) in cases.items():
        run = push(modules, {**connect, "path": paths[name], **inputs})

        assert run.failed, f"{name}: {run.result}"
        for text in texts:
            assert text in run.msg, f"{name}: {text!r} not in {run.msg!r}"
        assert bao.kv_version_numbers(paths[name]) == [], name
        assert [entry for entry in run.requests if entry["request"]["operation"] in ("create", "update")] == [], name


INVALID_PATHS = ["../x", "/x", "certs/a//b", "certs/x/", "certs/a/./b", "certs/a b", "certs/bell\x07x"]


def test_invalid_paths_are_refused_before_any_request(modules, bao, connect):
    leaf = make_chain("bad-path.example.com").leaf

    for path in INVALID_PATHS:
        run = push(modules, {**connect, **single(path, leaf)})

        assert run.failed, (path, run.result)
        # The option is named, never the value that failed the check.
        assert run.msg.startswith("invalid path: it "), (path, run.msg)
        assert path.strip("/") not in run.msg, (path, run.msg)
        assert run.requests == [], (path, [entry["request"]["path"] for entry in run.requests])


def test_kv_v1_mount_is_refused_and_nothing_is_written(modules, bao, connect, cert_path):
    leaf = make_chain("kv1.example.com").leaf

    run = push(modules, {**connect, "mount": "kv1", **single(cert_path, leaf)})

    assert run.failed
    assert "KV v1" in run.msg
    assert "only KV v2" in run.msg
    status, _body = bao.api("GET", f"kv1/{cert_path}")
    assert status == 404
    assert not [
        entry
        for entry in run.requests
        if entry["request"]["path"].startswith("kv1/") and entry["request"]["operation"] in ("create", "update")
    ]


def test_token_without_write_capability_is_permission_denied_naming_path_and_capabilities(
    modules, bao, vault_conn, cert_path
):
    leaf = make_chain("readonly.example.com").leaf

    run = push(modules, {**vault_conn, **approle(bao, "readonly"), **single(cert_path, leaf)})

    assert run.failed
    assert "permission denied" in run.msg
    assert f"secret/data/{cert_path}" in run.msg
    assert "'create'" in run.msg and "'update'" in run.msg
    assert bao.kv_version_numbers(cert_path) == []


# -- batches ------------------------------------------------------------------------------------


def batch_of(prefix: str, count: int) -> tuple[list[str], list[Issued], Issued]:
    """`count` certificates under `prefix`, in an order that is not the sorted one."""
    issued = make_chain("batch.example.com")
    order = [(n * 7) % count for n in range(count)] if count % 7 else list(reversed(range(count)))
    paths = [f"{prefix}/item-{n:02d}" for n in order]
    leaves = [make_leaf(issued.intermediate, f"item-{n:02d}.example.com") for n in order]
    return paths, leaves, issued.intermediate


def batch_args(paths: list[str], leaves: list[Issued], intermediate: Issued) -> list[dict[str, str]]:
    return [
        {"path": path, "certificate": leaf.cert_pem, "private_key": leaf.key_pem, "chain": intermediate.cert_pem}
        for path, leaf in zip(paths, leaves)
    ]


def test_batch_of_12_logs_in_once_writes_each_and_rewrites_only_what_changed(modules, bao, connect, cert_path):
    paths, leaves, intermediate = batch_of(cert_path, 12)
    budget = {"login auth/approle/login": 1, "mount check sys/internal/ui/mounts/secret": 1, "read": 12}

    first = push(modules, {**connect, "certificates": batch_args(paths, leaves, intermediate), "concurrency": 1})
    assert not first.failed, first.msg
    assert first.changed
    assert [item["path"] for item in first.result["results"]] == paths
    assert [item["certificate"]["cn"] for item in first.result["results"]] == [
        f"{path.rsplit('/', 1)[-1]}.example.com" for path in paths
    ]
    assert all(item["changed"] and item["version"] == 1 and item["created"] for item in first.result["results"])
    for path, leaf in zip(paths, leaves):
        assert bao.kv_version_numbers(path) == [1]
        assert bao.kv_data(path) == expected_data(leaf, intermediate)
    print(f"12-batch first run: {dict(request_counts(first.requests))}")
    # Without an owner no mark is written: a first run costs what it did before the mark existed (2N+4).
    assert request_counts(first.requests) == Counter({**budget, "write": 12, "revoke-self": 1})
    # One item after another over one HTTP connection: every request came from the same client port.
    assert len({entry["request"]["remote_port"] for entry in first.requests}) == 1

    unchanged = push(modules, {**connect, "certificates": batch_args(paths, leaves, intermediate)})
    assert not unchanged.failed, unchanged.msg
    assert not unchanged.changed
    assert [item["changed"] for item in unchanged.result["results"]] == [False] * 12
    print(f"12-batch unchanged rerun: {dict(request_counts(unchanged.requests))}")
    assert request_counts(unchanged.requests) == Counter({**budget, "revoke-self": 1})

    renewed = list(leaves)
    renewed[4] = make_leaf(intermediate, "item-renewed.example.com")
    one_renewed = push(modules, {**connect, "certificates": batch_args(paths, renewed, intermediate)})
    assert not one_renewed.failed, one_renewed.msg
    assert one_renewed.changed
    assert [item["changed"] for item in one_renewed.result["results"]] == [index == 4 for index in range(12)]
    assert one_renewed.result["results"][4]["version"] == 2
    print(f"12-batch one renewed: {dict(request_counts(one_renewed.requests))}")
    assert request_counts(one_renewed.requests) == Counter({**budget, "write": 1, "revoke-self": 1})
    for index, path in enumerate(paths):
        assert bao.kv_version_numbers(path) == ([1, 2] if index == 4 else [1]), path
    assert bao.kv_data(paths[4]) == expected_data(renewed[4], intermediate)


def test_request_budget_guard_batch_of_20_unchanged_stays_within_24_requests(modules, bao, connect, cert_path):
    paths, leaves, intermediate = batch_of(cert_path, 20)
    items = batch_args(paths, leaves, intermediate)
    seeded = push(modules, {**connect, "certificates": items})
    assert not seeded.failed, seeded.msg

    rerun = push(modules, {**connect, "certificates": items})

    assert not rerun.failed, rerun.msg
    assert not rerun.changed
    total = len(rerun.requests)
    print(f"batch of 20 unchanged: {total} requests {dict(request_counts(rerun.requests))}")
    assert total <= 20 + 4, f"{total} requests: {dict(request_counts(rerun.requests))}"
    assert request_counts(rerun.requests)["write"] == 0
    assert all(bao.kv_version_numbers(path) == [1] for path in paths)


def test_batch_with_one_bad_key_fails_naming_that_item_and_writes_nothing(modules, bao, connect, cert_path):
    paths, leaves, intermediate = batch_of(cert_path, 10)
    items = batch_args(paths, leaves, intermediate)
    items[6] = {**items[6], "private_key": "-----BEGIN PRIVATE KEY-----\nTm90IGEga2V5\n-----END PRIVATE KEY-----\n"}

    run = push(modules, {**connect, "certificates": items})

    assert run.failed
    assert paths[6] in run.msg
    assert "private key" in run.msg and "PEM" in run.msg
    assert not any(other in run.msg for index, other in enumerate(paths) if index != 6)
    assert all(bao.kv_version_numbers(path) == [] for path in paths)
    assert [entry for entry in run.requests if entry["request"]["operation"] in ("create", "update")] == []


# -- what is stored -----------------------------------------------------------------------------


def test_stored_secret_reads_back_identically_through_the_cli_and_hvac(modules, bao, connect, cert_path):
    issued = make_chain("readback.example.com")
    untidy_key = "\n  \n" + crlf(issued.leaf.key_pem) + "\n\n"
    untidy_cert = "\n" + issued.leaf.cert_pem + "   \n"

    run = push(
        modules,
        {
            **connect,
            "path": cert_path,
            "certificate": untidy_cert,
            "private_key": untidy_key,
            "chain": [issued.intermediate.cert_pem],
        },
    )
    assert not run.failed, run.msg
    expected = expected_data(issued.leaf, issued.intermediate)

    completed = bao.cli("kv", "get", "-format=json", f"secret/{cert_path}")
    assert completed.returncode == 0, completed.stderr
    from_cli = json.loads(completed.stdout)["data"]
    assert from_cli["data"] == expected
    assert from_cli["metadata"]["version"] == 1

    client = hvac.Client(url=bao.addr, verify=bao.ca_cert, token=bao.root_token)
    from_hvac = client.secrets.kv.v2.read_secret_version(
        path=cert_path, mount_point="secret", raise_on_deleted_version=True
    )
    assert from_hvac["data"]["data"] == expected
    assert from_hvac["data"]["metadata"]["version"] == 1


def test_push_over_a_deleted_current_version_writes_a_new_version(modules, bao, connect, cert_path):
    issued = make_chain("deleted.example.com")
    args = {**connect, **single(cert_path, issued.leaf, issued.intermediate)}
    first = push(modules, args)
    assert not first.failed, first.msg
    status, body = bao.api("DELETE", f"secret/data/{cert_path}")
    assert status == 204, body
    assert bao.kv_data(cert_path) is None

    run = push(modules, args)

    assert not run.failed, run.msg
    assert run.changed
    assert (run.result["version"], run.result["previous_version"]) == (2, 1)
    assert run.result["changed_fields"]
    [write] = writes(run.requests, cert_path)
    assert write["request"]["data"]["options"]["cas"] == 1
    state = bao.kv_versions("secret", cert_path)
    assert sorted(state) == ["1", "2"]
    assert state["1"]["deletion_time"] and not state["2"]["deletion_time"]
    assert bao.kv_data(cert_path) == expected_data(issued.leaf, issued.intermediate)


def test_two_identical_pushes_racing_write_once(module_process, bao, connect, cert_path):
    leaf = make_chain("race.example.com").leaf
    args = {**connect, **single(cert_path, leaf)}
    runs: list = [None, None]

    # Two module processes at once: in-process runs are one at a time.
    def run_push(slot: int) -> None:
        runs[slot] = module_process.run(MODULE, args)

    mark = bao.audit_mark()
    threads = [threading.Thread(target=run_push, args=(slot,)) for slot in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seen = bao.audit_requests(mark)

    for run in runs:
        assert not run.failed, run.msg
    assert sorted(run.changed for run in runs) == [False, True]
    assert [run.result["version"] for run in runs] == [1, 1]
    assert bao.kv_version_numbers(cert_path) == [1]
    assert bao.kv_data(cert_path) == expected_data(leaf)
    print(f"race: {len(writes(seen, cert_path))} write request(s) reached the server")


# -- interference between read and write, and lost answers (through tests/support/fault_proxy) --


def data_write_rule(cert_path: str) -> tuple[str, str]:
    return "POST", rf"^secret/data/{re.escape(cert_path)}$"


def module_writes(entries: list[dict], path: str, bao) -> list[dict]:
    """Writes on the path that the module made (not the root token's interference)."""
    return [entry for entry in writes(entries, path) if entry["request"]["client_token"] != bao.root_token]


def test_cas_conflict_rereads_and_keeps_what_the_other_writer_wrote(modules, bao, approle_auth, cert_path):
    leaf = make_chain("cas-conflict.example.com").leaf

    def someone_else_writes() -> None:
        status, body = bao.api("POST", f"secret/data/{cert_path}", {"data": {"owner": "team-x"}})
        assert status == 200, body

    with FaultProxy(bao.addr, bao.ca_cert) as proxy:
        proxy.add_rule(*data_write_rule(cert_path), action=someone_else_writes)
        run = push(modules, {"url": proxy.url, **approle_auth, **single(cert_path, leaf)})

    assert not run.failed, run.msg
    assert run.changed
    assert (run.result["version"], run.result["previous_version"], run.result["created"]) == (2, 1, False)
    assert bao.kv_version_numbers(cert_path) == [1, 2]
    assert bao.kv_data(cert_path) == {**expected_data(leaf), "owner": "team-x"}
    first, second = module_writes(run.requests, cert_path, bao)
    assert first["request"]["data"]["options"]["cas"] == 0
    assert second["request"]["data"]["options"]["cas"] == 1


def test_cas_conflict_with_a_racer_that_wrote_the_same_data_reports_unchanged(modules, bao, approle_auth, cert_path):
    leaf = make_chain("cas-same.example.com").leaf

    def racer_writes_the_same() -> None:
        # Another run of this collection: the same data, and its (owner-less, an earlier release's) mark.
        status, body = bao.api("POST", f"secret/data/{cert_path}", {"data": expected_data(leaf)})
        assert status == 200, body
        status, body = bao.api("POST", f"secret/metadata/{cert_path}", {"custom_metadata": MANAGED})
        assert status == 204, body

    with FaultProxy(bao.addr, bao.ca_cert) as proxy:
        proxy.add_rule(*data_write_rule(cert_path), action=racer_writes_the_same)
        run = push(modules, {"url": proxy.url, **approle_auth, **single(cert_path, leaf)})

    assert not run.failed, run.msg
    assert not run.changed
    assert (run.result["version"], run.result["previous_version"], run.result["created"]) == (1, 1, False)
    assert bao.kv_version_numbers(cert_path) == [1]
    assert len(module_writes(run.requests, cert_path, bao)) == 1


def test_write_whose_answer_was_lost_is_not_applied_twice(modules, bao, approle_auth, cert_path):
    leaf = make_chain("lost-answer.example.com").leaf

    with FaultProxy(bao.addr, bao.ca_cert) as proxy:
        # The server applies the write; its answer is replaced by a 502 (outcome unknown to the module).
        proxy.add_rule(*data_write_rule(cert_path), status=502, after_forward=True)
        run = push(modules, {"url": proxy.url, **approle_auth, **single(cert_path, leaf)})

    assert not run.failed, run.msg
    assert run.changed
    assert bao.kv_version_numbers(cert_path) == [1]
    assert bao.kv_data(cert_path) == expected_data(leaf)
    assert len(module_writes(run.requests, cert_path, bao)) == 1
    assert (run.result["version"], run.result["previous_version"], run.result["created"]) == (1, None, True)
    assert sorted(run.result["changed_fields"]) == ["certificate", "fullchain", "private_key"]


def test_custom_metadata_is_written_even_when_the_data_write_answer_was_lost(modules, bao, vault_conn, cert_path):
    leaf = make_chain("lost-meta.example.com").leaf

    with FaultProxy(bao.addr, bao.ca_cert) as proxy:
        # The server applies the write; its answer is replaced by a 502 (outcome unknown to the module).
        proxy.add_rule(*data_write_rule(cert_path), status=502, after_forward=True)
        run = push(
            modules, {"url": proxy.url, **approle(bao, "meta"), **single(cert_path, leaf), "custom_metadata": True}
        )

    assert not run.failed, run.msg
    assert bao.kv_version_numbers(cert_path) == [1]
    status, body = bao.api("GET", f"secret/metadata/{cert_path}")
    assert status == 200, body
    assert body["data"]["custom_metadata"] == {
        "cn": "lost-meta.example.com",
        "serial": colon_hex(leaf.cert.serial_number),
        "not_after": iso(leaf.cert.not_valid_after_utc),
        "fingerprint_sha256": fingerprint(leaf),
    }


# -- check_capabilities: the health check in the push's own login ---------------------------------


def token_for(bao, name: str, rules: dict[str, list[str]]) -> dict[str, str]:
    """Token auth with a policy `name` of `rules` (path -> capabilities)."""
    hcl = "".join(f'path "{path}" {{ capabilities = {json.dumps(caps)} }}\n' for path, caps in rules.items())
    status, body = bao.api("PUT", f"sys/policies/acl/{name}", {"policy": hcl})
    assert status in (200, 204), body
    status, body = bao.api("POST", "auth/token/create", {"policies": [name], "ttl": "5m"})
    assert status == 200, body
    return {"auth_method": "token", "token": body["auth"]["client_token"]}


def test_check_capabilities_refuses_the_whole_batch_before_any_write(modules, bao, vault_conn, cert_path):
    allowed, denied = f"{cert_path}/allowed", f"{cert_path}/denied"
    auth = token_for(
        bao,
        "push-check-capabilities",
        {f"secret/data/{allowed}": ["read", "create", "update"], f"secret/data/{denied}": ["read"]},
    )
    leaf_a, leaf_b = make_chain("allowed.example.com").leaf, make_chain("denied.example.com").leaf
    batch = [single(allowed, leaf_a), single(denied, leaf_b)]

    run = push(modules, {**vault_conn, **auth, "certificates": batch, "check_capabilities": True})

    assert run.failed
    assert (
        f"permission denied on secret/data/{denied}: the token needs read, create, update and lacks create, update"
        in run.msg
    ), run.msg
    assert "nothing written" in run.msg
    assert bao.kv_version_numbers(allowed) == [] and bao.kv_version_numbers(denied) == []
    counts = request_counts(run.requests)
    assert counts["update sys/capabilities-self"] == 1 and counts["write"] == 0


def test_check_capabilities_costs_one_request_and_no_second_login(modules, bao, connect, cert_path):
    leaf = make_chain("checked.example.com").leaf

    run = push(modules, {**connect, **single(cert_path, leaf), "check_capabilities": True})

    assert not run.failed, run.msg
    counts = request_counts(run.requests)
    assert counts["update sys/capabilities-self"] == 1
    assert sum(count for kind, count in counts.items() if kind.startswith("login")) == 1
    assert bao.kv_version_numbers(cert_path) == [1]


def test_check_capabilities_of_a_batch_past_the_servers_json_limit_is_asked_500_paths_at_a_time(
    modules, bao, connect, cert_path
):
    """OpenBao refuses a request body of over 1000 JSON strings: 1001 paths take three requests."""
    leaf = make_chain("many.example.com").leaf
    items = [{"path": f"{cert_path}/{index}", "certificate": leaf.cert_pem} for index in range(1001)]
    args = {**connect, "certificates": items, "include_private_key": False, "check_capabilities": True}

    run = push(modules, args, check=True)

    assert not run.failed, run.msg
    assert request_counts(run.requests)["update sys/capabilities-self"] == 3
    assert len(run.result["results"]) == 1001


# -- what only the controller does: three ansible-playbook runs, each carrying the cases of several tests ----------
#
# The action plugin reads private_key_file (found in the play's files/, or confined below files_root) and refuses
# before the module runs; a survey's variables reach the task through the controller's templating; module_defaults
# and what ansible-playbook prints (at -vvv, with --diff) are the controller's. Each run is a module-scoped fixture;
# a test reads its own tasks' results by name.


@dataclasses.dataclass
class ControllerRun:
    """One ansible-playbook run of many tests' tasks; ``given`` is what the fixture built for each test."""

    run: PlaybookRun
    results: dict[str, TaskResult]
    given: dict[str, t.Any]


def file_with(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def certs_token(bao) -> dict[str, str]:
    """Token auth (no login request) with the certs policy: a task whose requests are not another task's login."""
    status, body = bao.api("POST", "auth/token/create", {"policies": ["certs"], "ttl": "5m", "no_parent": True})
    assert status == 200, body
    return {"auth_method": "token", "token": body["auth"]["client_token"]}


def logins(requests: list[dict]) -> list[str]:
    return [entry["request"]["path"] for entry in requests if entry["request"]["path"].endswith("/login")]


KEY_INPUT_REFUSALS = [
    pytest.param(
        {"private_key_file": "/nonexistent/key.pem"},
        "private_key_file not found on the controller",
        id="missing file",
    ),
    pytest.param(
        {"private_key_file": "KEYFILE", "private_key": "KEY"},
        "private_key and private_key_file are mutually exclusive",
        id="both key and key file",
    ),
    pytest.param(
        {"key_bundle": "[]"}, "key_bundle is filled by the module's action plugin", id="key_bundle from a task"
    ),
    pytest.param(
        {"private_key_file": "KEY"},
        "private_key_file not found on the controller",
        id="the key itself as the file",
    ),
]
SURVEY_TASKS = ("single", "statement", "comment", "batch")
FILES_ROOT_REFUSALS = {
    "symlink": "private_key_file",
    "dotdot": "private_key_file",
    "absolute": "private_key_file",
    "batch": "certificates[1].private_key_file",
}


@pytest.fixture(scope="module")
def refused_by_the_controller(ansible, bao, tmp_path_factory) -> ControllerRun:
    """Tasks the action plugin or the module's path check refuses before any request: one run at -vvv, no request.

    Key inputs, survey paths with template syntax, private_key_file of the wrong kind or over 1 MiB, and files
    outside files_root. A survey answer reaches a task as a variable tagged !unsafe: Ansible passes it on as data.
    """
    workdir = tmp_path_factory.mktemp("refused-by-the-controller")
    prefix = "certs/controller-refusals"
    tasks: dict[str, dict[str, t.Any]] = {}
    given: dict[str, t.Any] = {}
    secrets: list[str] = []

    refused = make_leaf(make_ca(), "refused.example.com")
    key_file = file_with(workdir / "key.pem", refused.key_pem)
    for case in KEY_INPUT_REFUSALS:
        (options, _message), name = case.values, case.id
        options = {
            option: {"KEYFILE": str(key_file), "KEY": refused.key_pem}.get(value, value)
            for option, value in options.items()
        }
        given[f"key input: {name}"] = path = f"{prefix}/key-input-{re.sub(r'[^a-z]+', '-', name)}"
        tasks[f"key input: {name}"] = {**approle_args(bao), "path": path, "certificate": refused.cert_pem, **options}
    secrets.append(refused.key_pem)

    marker = workdir / "ran"
    survey_leaf = make_leaf(make_ca(), "template-path.example.com")
    survey_path = f"{prefix}/survey"
    hostile = {
        "single": f"{survey_path}/{{{{lookup('pipe','id>{marker}')}}}}",
        "statement": f"{survey_path}/{{%set x=1%}}",
        "comment": f"{survey_path}/{{#x#}}",
    }
    survey = file_with(
        workdir / "survey.yml", "".join(f"{name}: !unsafe {json.dumps(path)}\n" for name, path in hostile.items())
    )
    key = {"certificate": survey_leaf.cert_pem, "private_key": survey_leaf.key_pem}
    for name in hostile:
        tasks[f"survey: {name}"] = {**approle_args(bao), **key, "path": f"{{{{ {name} }}}}"}
    tasks["survey: batch"] = {
        **approle_args(bao),
        "certificates": [{**key, "path": f"{survey_path}/ok"}, {**key, "path": "{{ single }}"}],
    }
    given["survey"] = {"marker": marker, "path": survey_path}

    kind = make_leaf(make_ca(), "key-file-kind.example.com")
    app_conf = file_with(workdir / "app.conf", "db_password=hunter2-in-app-conf\n")
    cert_file = file_with(workdir / "cert.pem", kind.cert_pem)
    kind_refused = {
        **approle_args(bao),
        "path": f"{prefix}/kind-refused",
        "certificate": kind.cert_pem,
        "validate": False,
    }
    tasks["key file kind: config file"] = {**kind_refused, "private_key_file": str(app_conf)}
    tasks["key file kind: certificate file"] = {**kind_refused, "private_key_file": str(cert_file)}
    given["key file kind"] = f"{prefix}/kind-refused"
    secrets.append("hunter2-in-app-conf")

    huge_leaf = make_leaf(make_ca(), "key-file-size.example.com")
    huge = workdir / "huge-root" / "key.pem"
    huge.parent.mkdir()
    with open(huge, "wb") as handle:
        handle.write(huge_leaf.key_pem.encode())
        handle.truncate(96 * 2**20)  # a real key, then sparse zeros: costs no disk
    tasks["key file size"] = {
        **approle_args(bao),
        "path": f"{prefix}/huge",
        "certificate": huge_leaf.cert_pem,
        "files_root": str(huge.parent),
        "private_key_file": "key.pem",
    }
    given["key file size"] = f"{prefix}/huge"
    secrets.append(huge_leaf.key_pem)

    confined = workdir / "confined"
    root, elsewhere = confined / "root", confined / "elsewhere"
    ca = make_ca()
    mine, theirs = make_leaf(ca, "mine.example.com"), make_leaf(ca, "theirs.example.com")
    file_with(root / "mine.pem", mine.key_pem)
    file_with(elsewhere / "theirs.pem", theirs.key_pem)
    (root / "link.pem").symlink_to(elsewhere / "theirs.pem")
    # validate: false would store a key that is not the certificate's: only files_root keeps it out.
    base = {**approle_args(bao), "certificate": mine.cert_pem, "validate": False, "files_root": str(root)}
    files_root_path = f"{prefix}/files-root"
    tasks["files_root: symlink"] = {**base, "path": f"{files_root_path}/symlink", "private_key_file": "link.pem"}
    tasks["files_root: dotdot"] = {
        **base,
        "path": f"{files_root_path}/dotdot",
        "private_key_file": "../elsewhere/theirs.pem",
    }
    tasks["files_root: absolute"] = {
        **base,
        "path": f"{files_root_path}/absolute",
        "private_key_file": str(elsewhere / "theirs.pem"),
    }
    tasks["files_root: batch"] = {
        **{name: value for name, value in base.items() if name != "certificate"},
        "certificates": [
            {"path": f"{files_root_path}/batch-0", "certificate": mine.cert_pem, "private_key_file": "mine.pem"},
            {"path": f"{files_root_path}/batch-1", "certificate": mine.cert_pem, "private_key_file": "link.pem"},
        ],
    }
    given["files_root"] = {"path": files_root_path, "workdir": workdir}
    secrets += [mine.key_pem, theirs.key_pem]

    run, results = push_tasks(
        ansible, tasks, playbook_dir=workdir, verbosity=3, extra_vars_args=[f"@{survey}"], secrets=secrets
    )
    return ControllerRun(run=run, results=results, given=given)


@pytest.fixture(scope="module")
def delivered_by_the_controller(ansible, bao, tmp_path_factory) -> ControllerRun:
    """Keys the action plugin reads from files and hands over, and a JWT login: one run at -vvv with --diff."""
    workdir = tmp_path_factory.mktemp("delivered-by-the-controller")
    prefix = "certs/controller-deliveries"
    tasks: dict[str, dict[str, t.Any]] = {}
    given: dict[str, t.Any] = {}
    secrets: list[str] = []

    ca = make_ca()
    leaves = [make_leaf(ca, f"key-file-{index}.example.com") for index in range(3)]
    for index, leaf in enumerate(leaves):
        file_with(workdir / "files" / f"key{index}.pem", leaf.key_pem)
    tasks["key file: single"] = {
        **approle_args(bao),
        "path": f"{prefix}/key-file/0",
        "certificate": leaves[0].cert_pem,
        "private_key_file": "key0.pem",
        "validate": False,
    }
    tasks["key file: batch"] = {
        **approle_args(bao),
        "validate": False,
        "certificates": [
            {"path": f"{prefix}/key-file/1", "certificate": leaves[1].cert_pem, "private_key_file": "key1.pem"},
            {"path": f"{prefix}/key-file/2", "certificate": leaves[2].cert_pem, "private_key": leaves[2].key_pem},
        ],
    }
    given["key file"] = {"path": f"{prefix}/key-file", "leaves": leaves}
    secrets += [leaf.key_pem for leaf in leaves]

    combined_leaf = make_leaf(make_ca(), "key-file-combined.example.com")
    combined = file_with(workdir / "combined.pem", f"# note\n{combined_leaf.cert_pem}{combined_leaf.key_pem}")
    tasks["key file kind: combined file"] = {
        **approle_args(bao),
        "path": f"{prefix}/combined",
        "certificate": combined_leaf.cert_pem,
        "private_key_file": str(combined),
    }
    given["key file kind"] = {"path": f"{prefix}/combined", "leaf": combined_leaf}
    secrets.append(combined_leaf.key_pem)

    mine = make_leaf(make_ca(), "mine.example.com")
    root = workdir / "root"
    file_with(root / "mine.pem", mine.key_pem)
    tasks["files_root: inside"] = {
        **approle_args(bao),
        "path": f"{prefix}/files-root-inside",
        "certificate": mine.cert_pem,
        "validate": False,
        "files_root": str(root),
        "private_key_file": "mine.pem",
    }
    given["files_root"] = {"path": f"{prefix}/files-root-inside", "leaf": mine}
    secrets.append(mine.key_pem)

    jwt_leaf = make_chain("jwt-vvv.example.com").leaf
    tasks["jwt"] = {
        "url": bao.addr,
        "ca_cert": bao.ca_cert,
        "auth_method": "jwt",
        "role": "certs",
        "jwt": bao.sign_jwt(),
        **single(f"{prefix}/jwt", jwt_leaf),
    }
    given["jwt"] = {"path": f"{prefix}/jwt", "leaf": jwt_leaf}

    run, results = push_tasks(ansible, tasks, playbook_dir=workdir, verbosity=3, diff=True, secrets=secrets)
    return ControllerRun(run=run, results=results, given=given)


@pytest.fixture(scope="module")
def shown_by_the_controller(ansible, bao) -> ControllerRun:
    """module_defaults, and what --diff prints at the default verbosity: one run, its only login module_defaults'."""
    prefix = "certs/controller-display"
    issued = make_chain("check-display.example.com")
    defaults_leaf = make_chain("defaults.example.com").leaf
    tasks = {
        "check mode diff": {
            "url": bao.addr,
            "ca_cert": bao.ca_cert,
            **certs_token(bao),
            **single(f"{prefix}/check", issued.leaf, issued.intermediate),
        },
        "module defaults": single(f"{prefix}/defaults", defaults_leaf),
    }
    keywords = {
        "check mode diff": {"check_mode": True},
        "module defaults": {"module_defaults": {"group/certautopilot.vault.vault": approle_args(bao)}},
    }
    run, results = push_tasks(ansible, tasks, keywords=keywords, diff=True)
    given = {
        "check": {"path": f"{prefix}/check", "issued": issued},
        "defaults": {"path": f"{prefix}/defaults", "leaf": defaults_leaf},
    }
    return ControllerRun(run=run, results=results, given=given)


def test_private_key_file_single_and_batch_with_a_relative_path_found_in_files(bao, delivered_by_the_controller):
    controller = delivered_by_the_controller
    path, leaves = controller.given["key file"]["path"], controller.given["key file"]["leaves"]

    for name in ("key file: single", "key file: batch"):
        assert controller.results[name].status == "ok", controller.results[name].result
    for index, leaf in enumerate(leaves):
        assert bao.kv_data(f"{path}/{index}")["private_key"] == leaf.key_pem
    invocation = controller.results["key file: batch"].result["invocation"]["module_args"]
    assert invocation["key_bundle"] == "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"
    assert [(item["private_key"], item["private_key_file"]) for item in invocation["certificates"]] == [
        (None, None)
    ] * 2


@pytest.mark.parametrize(("options", "message"), KEY_INPUT_REFUSALS)
def test_key_inputs_the_action_refuses_write_nothing(bao, refused_by_the_controller, request, options, message):
    controller = refused_by_the_controller
    name = f"key input: {request.node.callspec.id}"

    task = controller.results[name]
    assert task.status == "failed" and message in task.result["msg"], task.result
    assert controller.run.requests == []
    assert bao.kv_version_numbers(controller.given[name]) == []


def test_a_path_with_template_syntax_from_a_survey_is_refused_naming_it_and_nothing_runs(
    bao, refused_by_the_controller
):
    controller = refused_by_the_controller
    survey = controller.given["survey"]

    assert not survey["marker"].exists()
    for name in SURVEY_TASKS:
        record = controller.results[f"survey: {name}"]
        option = "certificates[1].path" if name == "batch" else "path"
        assert record.status == "failed" and record.result["msg"] == (
            f"invalid {option}: it holds template syntax ({{{{, {{% or {{#), which a path never may"
        ), (name, record.result)
    assert [entry for entry in controller.run.requests if entry["request"]["path"].startswith("secret/")] == []
    assert bao.kv_version_numbers(f"{survey['path']}/ok") == []


def test_private_key_file_takes_only_a_private_key_and_never_shows_the_file(
    bao, refused_by_the_controller, delivered_by_the_controller
):
    refused, delivered = refused_by_the_controller, delivered_by_the_controller

    for name in ("key file kind: config file", "key file kind: certificate file"):
        result = refused.results[name].result
        assert refused.results[name].status == "failed", result
        assert result["msg"] == (
            "private_key_file: the file does not hold exactly one PEM private key; nothing written, and nothing of "
            "the file is shown"
        ), result
    assert "hunter2" not in refused.run.output + json.dumps([task.result for task in refused.run.tasks], default=str)
    assert bao.kv_version_numbers(refused.given["key file kind"]) == []
    combined = delivered.given["key file kind"]
    assert delivered.results["key file kind: combined file"].status == "ok"
    assert bao.kv_data(combined["path"])["private_key"] == combined["leaf"].key_pem


def test_a_private_key_file_over_1_mib_is_refused_before_it_is_read(bao, refused_by_the_controller):
    controller = refused_by_the_controller
    task = controller.results["key file size"]

    assert task.status == "failed"
    assert task.result["msg"] == (
        "cannot read private_key_file: it is larger than 1 MiB, which no certificate chain or private key is; "
        "nothing written"
    )
    assert [entry for entry in controller.run.requests if entry["request"]["path"].startswith("secret/")] == []
    assert bao.kv_version_numbers(controller.given["key file size"]) == []


def test_files_root_confines_private_key_file_after_resolving_links_and_dotdot(
    bao, refused_by_the_controller, delivered_by_the_controller
):
    refused, delivered = refused_by_the_controller, delivered_by_the_controller
    path = refused.given["files_root"]["path"]

    for name, option in FILES_ROOT_REFUSALS.items():
        result = refused.results[f"files_root: {name}"].result
        assert refused.results[f"files_root: {name}"].status == "failed", (name, result)
        assert result["msg"] == (
            f"{option}: the file lies outside files_root (symlinks and '..' resolved); nothing written"
        ), (name, result)
        assert bao.kv_version_numbers(f"{path}/{name}") == []
    assert bao.kv_version_numbers(f"{path}/batch-0") == []
    assert "elsewhere" not in refused.run.output.replace(str(refused.given["files_root"]["workdir"]), "")
    inside = delivered.given["files_root"]
    assert delivered.results["files_root: inside"].status == "ok"
    assert bao.kv_data(inside["path"])["private_key"] == inside["leaf"].key_pem


def test_push_with_jwt_auth_through_ansible_playbook_at_vvv(bao, delivered_by_the_controller):
    controller = delivered_by_the_controller
    jwt = controller.given["jwt"]
    task = controller.results["jwt"]

    assert task.status == "ok" and task.result["changed"], task.result
    assert bao.kv_version_numbers(jwt["path"]) == [1]
    assert bao.kv_data(jwt["path"]) == expected_data(jwt["leaf"])
    assert logins(controller.run.requests).count("auth/jwt/login") == 1


def test_module_defaults_group_supplies_connection_and_auth(bao, shown_by_the_controller):
    controller = shown_by_the_controller
    defaults = controller.given["defaults"]
    task = controller.results["module defaults"]

    assert task.status == "ok" and task.result["changed"], task.result
    assert task.result["version"] == 1
    assert bao.kv_version_numbers(defaults["path"]) == [1]
    assert bao.kv_data(defaults["path"]) == expected_data(defaults["leaf"])
    # The run's other task logs in with a token: this login is module_defaults'.
    assert logins(controller.run.requests) == ["auth/approle/login"]


def test_check_mode_diff_shown_by_ansible_playbook_holds_summaries_and_no_certificate(bao, shown_by_the_controller):
    controller = shown_by_the_controller
    check = controller.given["check"]
    issued = check["issued"]
    task = controller.results["check mode diff"]

    assert task.status == "ok" and task.result["changed"], task.result
    assert bao.kv_version_numbers(check["path"]) == []
    assert "CN=check-display.example.com" in controller.run.output
    assert find_leaks([controller.run.output], issued.leaf.cert_pem, issued.intermediate.cert_pem) == []


# -- the first hour: habits from the API, the CLI and the role, met with the fix -------------------------


@pytest.mark.parametrize(
    ("module", "options"),
    [
        ("vault_cert_push", {}),
        ("vault_cert_rollback", {"version": 1}),
        ("vault_cert_retire", {}),
        ("vault_health", {}),
    ],
)
@pytest.mark.parametrize("segment", ["data", "metadata"])
def test_a_path_that_repeats_the_mount_and_the_api_segment_is_refused_with_the_path_meant(
    modules, bao, connect, module, options, segment
):
    leaf = make_chain("api-habit.example.com").leaf
    args = {**connect, "path": f"secret/{segment}/certs/api-habit", **options}
    if module == "vault_cert_push":
        args.update(certificate=leaf.cert_pem, private_key=leaf.key_pem)

    run = modules.run_module(module, args)

    assert run.failed
    assert f"invalid path: it starts with the mount and the API's {segment}/ segment (secret/{segment}/)" in run.msg
    assert run.msg.endswith("give the path below the mount: certs/api-habit"), run.msg
    assert not [entry for entry in run.requests if entry["request"]["path"].startswith("secret/")]
    assert bao.kv_versions("secret", f"secret/{segment}/certs/api-habit") == {}


def test_a_batch_item_that_repeats_the_mount_is_refused_naming_the_item(modules, bao, connect, cert_path):
    leaves = [make_chain(f"api-{n}.example.com").leaf for n in range(2)]
    items = [
        {"path": f"{cert_path}/ok", **_pem_of(leaves[0])},
        {"path": f"secret/data/{cert_path}", **_pem_of(leaves[1])},
    ]

    run = modules.run_module(MODULE, {**connect, "certificates": items})

    assert run.failed
    assert "invalid certificates[1].path: it starts with the mount" in run.msg, run.msg
    assert bao.kv_version_numbers(f"{cert_path}/ok") == []


def test_certificate_file_and_chain_file_are_read_on_the_controller_single_and_in_a_batch(
    ansible, bao, connect, cert_path, tmp_path
):
    issued = make_chain("cert-file.example.com")
    other = make_chain("cert-file-b.example.com")
    for name, text in {
        "leaf.pem": issued.leaf.cert_pem,
        "chain.pem": bundle(issued.intermediate),
        "leaf-b.pem": other.leaf.cert_pem,
        "chain-b.pem": bundle(other.intermediate),
    }.items():
        (tmp_path / name).write_text(text)
    single_task = {
        **connect,
        "path": f"{cert_path}/single",
        "certificate_file": str(tmp_path / "leaf.pem"),
        "chain_file": str(tmp_path / "chain.pem"),
        "private_key": issued.leaf.key_pem,
    }
    batch_task = {
        **connect,
        "files_root": str(tmp_path),
        "certificates": [
            {"path": f"{cert_path}/batch", "certificate_file": "leaf-b.pem", "chain_file": ["chain-b.pem"]},
        ],
        "include_private_key": False,
    }
    outside = {**batch_task, "certificates": [{"path": f"{cert_path}/outside", "certificate_file": "/etc/hostname"}]}

    run, results = push_tasks(ansible, {"single": single_task, "batch": batch_task, "outside": outside})

    assert results["single"].status == "ok", results["single"].result
    assert results["batch"].status == "ok", results["batch"].result
    assert bao.kv_data(f"{cert_path}/single") == expected_data(issued.leaf, issued.intermediate)
    assert bao.kv_data(f"{cert_path}/batch") == expected_data(other.leaf, other.intermediate, with_key=False)
    assert results["outside"].status == "failed"
    assert "certificates[0].certificate_file" in results["outside"].result["msg"]
    assert "/etc/hostname" not in run.output
    assert bao.kv_version_numbers(f"{cert_path}/outside") == []


def test_a_misspelt_option_is_named_as_unknown_before_what_it_left_missing(modules, connect, cert_path):
    leaf = make_chain("typo.example.com").leaf

    run = modules.run_module(MODULE, {**connect, "path": cert_path, "certficate": leaf.cert_pem})

    assert run.failed
    assert run.msg.startswith("Unsupported parameters: certficate."), run.msg


@pytest.mark.parametrize("form", ["single", "batch item"])
def test_a_misspelt_secret_option_is_named_but_its_value_never_shown(modules, bao, connect, cert_path, form):
    # Only its right name makes an option no_log: under a typo its value is an unknown option's, which Ansible
    # echoes in the failed task's invocation (-vvv, registered results, AWX job events).
    leaf = make_chain("secret-typo.example.com").leaf
    secret_id = bao.new_approle_secret_id("certs")
    password = f"p12-{uuid.uuid4().hex}"
    typos = {"secret_idd": secret_id, "pkcs12_pasword": password, "tokn": {"nested": password}}
    if form == "single":
        args = {**connect, **single(cert_path, leaf), **typos}
    else:
        args = {**connect, "certificates": [{**single(cert_path, leaf), **typos}]}

    run = modules.run_module(MODULE, args, verbosity=3, secrets=[secret_id, password])

    assert run.failed
    assert all(name in run.msg for name in typos), run.msg
    shown = run.result["invocation"]["module_args"]
    shown = shown if form == "single" else shown["certificates"][0]
    assert shown["secret_idd"] == "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"
    assert run.requests == []
    assert bao.kv_version_numbers(cert_path) == []


@pytest.mark.parametrize(
    ("option", "value", "hint"),
    [
        ("certificate", "/etc/pki/issued/www.example.com/cert.pem", "give a file as certificate_file"),
        ("chain", "chain.pem", "give a file as chain_file"),
        ("private_key", "./www.example.com.key", "give a file as private_key_file"),
    ],
)
def test_a_file_name_given_as_pem_text_points_at_the_file_option(modules, bao, connect, cert_path, option, value, hint):
    leaf = make_chain("file-habit.example.com").leaf

    run = modules.run_module(MODULE, {**connect, **single(cert_path, leaf), option: value})

    assert run.failed
    assert f"it reads like a file path: {hint}" in run.msg, run.msg
    assert value not in run.msg
    assert bao.kv_version_numbers(cert_path) == []


def test_an_expired_certificate_is_refused_naming_validate_false(modules, bao, connect, cert_path):
    ca = make_ca("expired-ca")
    leaf = make_leaf(ca, "expired.example.com", not_before=datetime.now(UTC) - timedelta(days=30), days=10)

    run = modules.run_module(MODULE, {**connect, **single(cert_path, leaf, ca)})

    assert run.failed
    assert "certificate expired on" in run.msg and "validate: false stores it all the same" in run.msg, run.msg
    assert bao.kv_version_numbers(cert_path) == []


def _pem_of(leaf: Issued) -> dict[str, str]:
    return {"certificate": leaf.cert_pem, "private_key": leaf.key_pem}

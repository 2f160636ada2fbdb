"""vault_cert_push against a real OpenBao server, run the way a user runs it: with ansible-playbook.

Each test uses its own secret path (derived from the test's name) and checks the server
afterwards (versions through the metadata endpoint, data through the API, the CLI or hvac,
requests through the audit log), not only what the module claims. Every run's console output
and result are scanned for private keys, secret_ids, JWTs and Vault tokens.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import hvac
import pytest
from cryptography.hazmat.primitives import hashes
from fault_proxy import FaultProxy
from leaks import assert_no_leak, find_leaks
from pki import Issued, bundle, make_ca, make_chain, make_intermediate, make_leaf
from push_runs import FQCN, MODULE, approle, expected_data, push, push_tasks, single

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


def current_data(bao, path: str, *, mount: str = "secret", namespace: str | None = None) -> dict | None:
    status, body = bao.api("GET", f"{mount}/data/{path}", namespace=namespace)
    assert status in (200, 404), body
    return body["data"]["data"] if status == 200 else None


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
    ansible, bao, connect, cert_path
):
    issued = make_chain("renewal.example.com")

    created = push(ansible, {**connect, **single(cert_path, issued.leaf, issued.intermediate)}, verbosity=3)
    assert not created.failed, created.msg
    assert created.changed
    assert (created.result["version"], created.result["previous_version"], created.result["created"]) == (1, None, True)
    assert sorted(created.result["changed_fields"]) == sorted(FIELDS)
    assert created.result["certificate"]["cn"] == "renewal.example.com"
    assert created.result["certificate"]["fingerprint_sha256"] == fingerprint(issued.leaf)
    assert bao.kv_version_numbers(cert_path) == [1]
    assert current_data(bao, cert_path) == expected_data(issued.leaf, issued.intermediate)

    again = push(ansible, {**connect, **single(cert_path, issued.leaf, issued.intermediate)})
    assert not again.failed, again.msg
    assert not again.changed
    assert (again.result["version"], again.result["previous_version"], again.result["created"]) == (1, 1, False)
    assert again.result["changed_fields"] == []
    assert bao.kv_version_numbers(cert_path) == [1]
    assert writes(again.requests, cert_path) == []

    renewed = make_leaf(issued.intermediate, "renewal.example.com", sans=("renewal.example.com",))
    new_key = push(ansible, {**connect, **single(cert_path, renewed, issued.intermediate)})
    assert not new_key.failed, new_key.msg
    assert new_key.changed
    assert (new_key.result["version"], new_key.result["previous_version"], new_key.result["created"]) == (2, 1, False)
    assert sorted(new_key.result["changed_fields"]) == ["certificate", "fullchain", "private_key"]
    assert new_key.result["certificate"]["serial"] == colon_hex(renewed.cert.serial_number)
    assert bao.kv_version_numbers(cert_path) == [1, 2]
    assert current_data(bao, cert_path) == expected_data(renewed, issued.intermediate)

    same_key = make_leaf(issued.intermediate, "renewal.example.com", key=renewed.key)
    kept_key = push(ansible, {**connect, **single(cert_path, same_key, issued.intermediate)})
    assert not kept_key.failed, kept_key.msg
    assert (kept_key.result["version"], kept_key.result["previous_version"]) == (3, 2)
    assert sorted(kept_key.result["changed_fields"]) == ["certificate", "fullchain"]
    assert bao.kv_version_numbers(cert_path) == [1, 2, 3]
    assert current_data(bao, cert_path) == expected_data(same_key, issued.intermediate)


# -- check mode and diff mode -------------------------------------------------------------------


def assert_diff_shows_summaries_only(diff: dict, *issued: Issued) -> None:
    text = json.dumps(diff)
    assert "BEGIN" not in text and "-----" not in text, text
    # Not one base64 line of any certificate or key given.
    assert find_leaks([diff], *[pem for item in issued for pem in (item.cert_pem, item.key_pem)]) == []


def test_check_mode_writes_nothing_and_reports_the_same_change_and_diff(ansible, bao, connect, cert_path):
    issued = make_chain("check.example.com")
    args = {**connect, **single(cert_path, issued.leaf, issued.intermediate)}

    checked = push(ansible, args, check=True, diff=True)
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
    assert find_leaks([checked.output], leaf.cert_pem, issued.intermediate.cert_pem) == []

    applied = push(ansible, args, diff=True)
    assert not applied.failed, applied.msg
    assert applied.changed
    assert applied.result["diff"] == diff
    assert applied.result["changed_fields"] == checked.result["changed_fields"]
    assert bao.kv_version_numbers(cert_path) == [1]

    renewed = make_leaf(issued.intermediate, "check.example.com", sans=("check.example.com",))
    renewal = push(ansible, {**connect, **single(cert_path, renewed, issued.intermediate)}, check=True, diff=True)
    assert not renewal.failed, renewal.msg
    assert renewal.changed
    assert (renewal.result["version"], renewal.result["previous_version"]) == (1, 1)
    assert bao.kv_version_numbers(cert_path) == [1]
    assert current_data(bao, cert_path) == expected_data(leaf, issued.intermediate)
    before, after = renewal.result["diff"]["before"], renewal.result["diff"]["after"]
    assert colon_hex(leaf.cert.serial_number) in before["certificate"]
    assert colon_hex(renewed.cert.serial_number) in after["certificate"]
    assert before["private_key"] != after["private_key"]
    assert before["chain"] == after["chain"]
    assert_diff_shows_summaries_only(renewal.result["diff"], leaf, renewed, issued.intermediate)


# -- cert-only delivery, field names, unmanaged keys --------------------------------------------


def test_cert_only_push_removes_the_private_key_from_the_secret(ansible, bao, connect, cert_path):
    issued = make_chain("cert-only.example.com")

    with_key = push(ansible, {**connect, **single(cert_path, issued.leaf, issued.intermediate)})
    assert not with_key.failed, with_key.msg
    assert "private_key" in current_data(bao, cert_path)

    args = {**connect, "path": cert_path, "certificate": issued.leaf.cert_pem, "chain": issued.intermediate.cert_pem}
    cert_only = push(ansible, {**args, "include_private_key": False}, secrets=[issued.leaf.key_pem])
    assert not cert_only.failed, cert_only.msg
    assert cert_only.changed
    assert (cert_only.result["version"], cert_only.result["previous_version"]) == (2, 1)
    assert cert_only.result["changed_fields"] == ["private_key"]
    assert bao.kv_version_numbers(cert_path) == [1, 2]
    assert current_data(bao, cert_path) == expected_data(issued.leaf, issued.intermediate, with_key=False)


def test_custom_field_names_are_used_a_null_field_is_not_written_and_unmanaged_keys_survive(
    ansible, bao, connect, cert_path
):
    issued = make_chain("fields.example.com")
    fields = {"certificate": "tls.crt", "private_key": "tls.key", "chain": None, "fullchain": "tls-fullchain.crt"}

    first = push(ansible, {**connect, **single(cert_path, issued.leaf, issued.intermediate), "fields": fields})
    assert not first.failed, first.msg
    assert current_data(bao, cert_path) == {
        "tls.crt": issued.leaf.cert_pem,
        "tls.key": issued.leaf.key_pem,
        "tls-fullchain.crt": issued.leaf.cert_pem + issued.intermediate.cert_pem,
    }

    # Someone else adds a key of their own, as a new version.
    status, body = bao.api(
        "POST", f"secret/data/{cert_path}", {"data": {**current_data(bao, cert_path), "owner": "team-x"}}
    )
    assert status == 200, body
    assert bao.kv_version_numbers(cert_path) == [1, 2]

    renewed = make_leaf(issued.intermediate, "fields.example.com", key=issued.leaf.key)
    kept = push(ansible, {**connect, **single(cert_path, renewed, issued.intermediate), "fields": fields})
    assert not kept.failed, kept.msg
    assert (kept.result["version"], kept.result["previous_version"]) == (3, 2)
    assert sorted(kept.result["changed_fields"]) == ["certificate", "fullchain"]
    assert current_data(bao, cert_path) == {
        "tls.crt": renewed.cert_pem,
        "tls.key": renewed.key_pem,
        "tls-fullchain.crt": renewed.cert_pem + issued.intermediate.cert_pem,
        "owner": "team-x",
    }

    dropped = push(
        ansible,
        {**connect, **single(cert_path, renewed, issued.intermediate), "fields": fields, "keep_other_fields": False},
    )
    assert not dropped.failed, dropped.msg
    assert dropped.changed
    assert (dropped.result["version"], dropped.result["previous_version"]) == (4, 3)
    assert dropped.result["changed_fields"] == ["other_fields"]
    assert bao.kv_version_numbers(cert_path) == [1, 2, 3, 4]
    assert "owner" not in current_data(bao, cert_path)
    assert set(current_data(bao, cert_path)) == {"tls.crt", "tls.key", "tls-fullchain.crt"}


# -- chain forms and line endings ---------------------------------------------------------------


def test_chain_as_list_or_bundle_and_crlf_input_store_identical_data(ansible, bao, connect, cert_path):
    root = make_ca("CertAutoPilot Test Root CA")
    upper = make_intermediate(root, "CertAutoPilot Chain Upper CA", path_length=1)
    lower = make_intermediate(upper, "CertAutoPilot Chain Lower CA")
    leaf = make_leaf(lower, "chain-forms.example.com")
    as_bundle, as_list = f"{cert_path}/bundle", f"{cert_path}/list"

    from_bundle = push(ansible, {**connect, **single(as_bundle, leaf), "chain": bundle(lower, upper)})
    from_list = push(ansible, {**connect, **single(as_list, leaf), "chain": [lower.cert_pem, upper.cert_pem]})
    assert not from_bundle.failed, from_bundle.msg
    assert not from_list.failed, from_list.msg

    stored = current_data(bao, as_bundle)
    assert stored == current_data(bao, as_list) == expected_data(leaf, lower, upper)
    assert stored["fullchain"] == stored["certificate"] + stored["chain"]

    windows = {
        **connect,
        "path": as_bundle,
        "certificate": crlf(leaf.cert_pem),
        "private_key": crlf(leaf.key_pem),
        "chain": crlf(bundle(lower, upper)),
    }
    from_crlf = push(ansible, windows)
    assert not from_crlf.failed, from_crlf.msg
    assert not from_crlf.changed
    assert from_crlf.result["version"] == 1
    assert bao.kv_version_numbers(as_bundle) == [1]
    assert all("\r" not in value for value in current_data(bao, as_bundle).values())


# -- custom metadata ----------------------------------------------------------------------------


def test_custom_metadata_is_written_with_a_role_that_may_update_metadata(ansible, bao, vault_conn, cert_path):
    issued = make_chain("meta.example.com")

    run = push(
        ansible, {**vault_conn, **approle(bao, "meta"), **single(cert_path, issued.leaf), "custom_metadata": True}
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
    ansible, bao, vault_conn, cert_path
):
    issued = make_chain("meta-denied.example.com")
    # The data is already what the push wants: only the metadata write remains, and role sample may not.
    status, body = bao.api("POST", f"secret/data/{cert_path}", {"data": expected_data(issued.leaf)})
    assert status == 200, body

    run = push(
        ansible,
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
    assert current_data(bao, path, namespace=namespace) == expected_data(leaf)
    assert [entry["request"]["path"] for entry in run.requests if entry["request"]["path"].endswith("/login")] == [
        login
    ]


def test_push_with_jwt_auth(ansible, bao, vault_conn, cert_path):
    leaf = make_chain("jwt.example.com").leaf
    args = {**vault_conn, "auth_method": "jwt", "role": "certs", "jwt": bao.sign_jwt(), **single(cert_path, leaf)}

    run = push(ansible, args, verbosity=3)

    assert_pushed_once(bao, run, cert_path, leaf, login="auth/jwt/login")


def test_push_with_cert_auth(ansible, bao, vault_conn, cert_path):
    leaf = make_chain("tls-auth.example.com").leaf
    args = {
        **vault_conn,
        "auth_method": "cert",
        "role": "certs",
        "client_cert": bao.client_cert,
        "client_key": bao.client_key,
        **single(cert_path, leaf),
    }

    run = push(ansible, args)

    assert_pushed_once(bao, run, cert_path, leaf, login="auth/cert/login")


def test_push_with_token_auth_uses_the_token_and_does_not_revoke_it(ansible, bao, vault_conn, cert_path):
    leaf = make_chain("token.example.com").leaf
    status, body = bao.api("POST", "auth/token/create", {"policies": ["certs"], "ttl": "5m", "no_parent": True})
    assert status == 200, body
    token = body["auth"]["client_token"]

    run = push(ansible, {**vault_conn, "auth_method": "token", "token": token, **single(cert_path, leaf)})

    assert not run.failed, run.msg
    assert bao.kv_version_numbers(cert_path) == [1]
    assert current_data(bao, cert_path) == expected_data(leaf)
    assert {entry["request"]["client_token"] for entry in run.requests} == {token}
    # No login and no revocation: the one auth/ request is the check that the server knows the token.
    auth_requests = [entry["request"]["path"] for entry in run.requests if entry["request"]["path"].startswith("auth/")]
    assert auth_requests == ["auth/token/lookup-self"]
    still_valid, _body = bao.api("GET", "auth/token/lookup-self", token=token)
    assert still_valid == 200


def test_push_in_namespace_lands_in_the_namespace_secret_mount_only(ansible, bao, vault_conn, cert_path):
    leaf = make_chain("namespace.example.com").leaf
    args = {
        **vault_conn,
        "namespace": bao.namespace,
        "auth_method": "approle",
        "role_id": bao.ns_role_id,
        "secret_id": bao.new_approle_secret_id("certs", namespace=bao.namespace),
        **single(cert_path, leaf),
    }

    run = push(ansible, args)

    assert_pushed_once(bao, run, cert_path, leaf, login="auth/approle/login", namespace=bao.namespace)
    assert bao.kv_version_numbers(cert_path) == []
    [write] = writes(run.requests, cert_path)
    assert write["request"]["namespace"]["path"].strip("/") == bao.namespace


def test_module_defaults_group_supplies_connection_and_auth(ansible, bao, vault_conn, cert_path):
    leaf = make_chain("defaults.example.com").leaf
    defaults = {"group/certautopilot.vault.vault": {**vault_conn, **approle(bao, "certs")}}

    run = push(ansible, single(cert_path, leaf), module_defaults=defaults)

    assert_pushed_once(bao, run, cert_path, leaf, login="auth/approle/login")


# -- refusals -----------------------------------------------------------------------------------


def test_invalid_certificate_inputs_are_refused_with_the_reason_and_nothing_is_written(
    ansible, bao, connect, cert_path
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

    run, results = push_tasks(
        ansible, {name: {**connect, "path": paths[name], **inputs} for name, (inputs, _texts) in cases.items()}
    )

    for name, (_inputs, texts) in cases.items():
        task = results[name]
        assert task.status == "failed", f"{name}: {task.result}"
        for text in texts:
            assert text in task.result["msg"], f"{name}: {text!r} not in {task.result['msg']!r}"
        assert bao.kv_version_numbers(paths[name]) == [], name
    assert [entry for entry in run.requests if entry["request"]["operation"] in ("create", "update")] == []


INVALID_PATHS = ["../x", "/x", "certs/a//b", "certs/x/", "certs/a/./b", "certs/a b", "certs/bell\x07x"]


def test_invalid_paths_are_refused_before_any_request(ansible, bao, connect):
    leaf = make_chain("bad-path.example.com").leaf

    run, results = push_tasks(ansible, {f"path {path!r}": {**connect, **single(path, leaf)} for path in INVALID_PATHS})

    for path in INVALID_PATHS:
        task = results[f"path {path!r}"]
        assert task.status == "failed", task.result
        # The option is named, never the value that failed the check.
        assert task.result["msg"].startswith("invalid path: it "), task.result["msg"]
        assert path.strip("/") not in task.result["msg"], task.result["msg"]
    assert run.requests == [], [entry["request"]["path"] for entry in run.requests]


def test_kv_v1_mount_is_refused_and_nothing_is_written(ansible, bao, connect, cert_path):
    leaf = make_chain("kv1.example.com").leaf

    run = push(ansible, {**connect, "mount": "kv1", **single(cert_path, leaf)})

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
    ansible, bao, vault_conn, cert_path
):
    leaf = make_chain("readonly.example.com").leaf

    run = push(ansible, {**vault_conn, **approle(bao, "readonly"), **single(cert_path, leaf)})

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


def test_batch_of_12_logs_in_once_writes_each_and_rewrites_only_what_changed(ansible, bao, connect, cert_path):
    paths, leaves, intermediate = batch_of(cert_path, 12)
    budget = {"login auth/approle/login": 1, "mount check sys/internal/ui/mounts/secret": 1, "read": 12}

    first = push(ansible, {**connect, "certificates": batch_args(paths, leaves, intermediate), "concurrency": 1})
    assert not first.failed, first.msg
    assert first.changed
    assert [item["path"] for item in first.result["results"]] == paths
    assert [item["certificate"]["cn"] for item in first.result["results"]] == [
        f"{path.rsplit('/', 1)[-1]}.example.com" for path in paths
    ]
    assert all(item["changed"] and item["version"] == 1 and item["created"] for item in first.result["results"])
    for path, leaf in zip(paths, leaves):
        assert bao.kv_version_numbers(path) == [1]
        assert current_data(bao, path) == expected_data(leaf, intermediate)
    print(f"12-batch first run: {dict(request_counts(first.requests))}")
    # Without an owner no mark is written: a first run costs what it did before the mark existed (2N+4).
    assert request_counts(first.requests) == Counter({**budget, "write": 12, "revoke-self": 1})
    # One item after another over one HTTP connection: every request came from the same client port.
    assert len({entry["request"]["remote_port"] for entry in first.requests}) == 1

    unchanged = push(ansible, {**connect, "certificates": batch_args(paths, leaves, intermediate)})
    assert not unchanged.failed, unchanged.msg
    assert not unchanged.changed
    assert [item["changed"] for item in unchanged.result["results"]] == [False] * 12
    print(f"12-batch unchanged rerun: {dict(request_counts(unchanged.requests))}")
    assert request_counts(unchanged.requests) == Counter({**budget, "revoke-self": 1})

    renewed = list(leaves)
    renewed[4] = make_leaf(intermediate, "item-renewed.example.com")
    one_renewed = push(ansible, {**connect, "certificates": batch_args(paths, renewed, intermediate)})
    assert not one_renewed.failed, one_renewed.msg
    assert one_renewed.changed
    assert [item["changed"] for item in one_renewed.result["results"]] == [index == 4 for index in range(12)]
    assert one_renewed.result["results"][4]["version"] == 2
    print(f"12-batch one renewed: {dict(request_counts(one_renewed.requests))}")
    assert request_counts(one_renewed.requests) == Counter({**budget, "write": 1, "revoke-self": 1})
    for index, path in enumerate(paths):
        assert bao.kv_version_numbers(path) == ([1, 2] if index == 4 else [1]), path
    assert current_data(bao, paths[4]) == expected_data(renewed[4], intermediate)


def test_request_budget_guard_batch_of_20_unchanged_stays_within_24_requests(ansible, bao, connect, cert_path):
    paths, leaves, intermediate = batch_of(cert_path, 20)
    items = batch_args(paths, leaves, intermediate)
    seeded = push(ansible, {**connect, "certificates": items})
    assert not seeded.failed, seeded.msg

    rerun = push(ansible, {**connect, "certificates": items})

    assert not rerun.failed, rerun.msg
    assert not rerun.changed
    total = len(rerun.requests)
    print(f"batch of 20 unchanged: {total} requests {dict(request_counts(rerun.requests))}")
    assert total <= 20 + 4, f"{total} requests: {dict(request_counts(rerun.requests))}"
    assert request_counts(rerun.requests)["write"] == 0
    assert all(bao.kv_version_numbers(path) == [1] for path in paths)


def test_batch_with_one_bad_key_fails_naming_that_item_and_writes_nothing(ansible, bao, connect, cert_path):
    paths, leaves, intermediate = batch_of(cert_path, 10)
    items = batch_args(paths, leaves, intermediate)
    items[6] = {**items[6], "private_key": "-----BEGIN PRIVATE KEY-----\nTm90IGEga2V5\n-----END PRIVATE KEY-----\n"}

    run = push(ansible, {**connect, "certificates": items})

    assert run.failed
    assert paths[6] in run.msg
    assert "private key" in run.msg and "PEM" in run.msg
    assert not any(other in run.msg for index, other in enumerate(paths) if index != 6)
    assert all(bao.kv_version_numbers(path) == [] for path in paths)
    assert [entry for entry in run.requests if entry["request"]["operation"] in ("create", "update")] == []


# -- what is stored -----------------------------------------------------------------------------


def test_stored_secret_reads_back_identically_through_the_cli_and_hvac(ansible, bao, connect, cert_path):
    issued = make_chain("readback.example.com")
    untidy_key = "\n  \n" + crlf(issued.leaf.key_pem) + "\n\n"
    untidy_cert = "\n" + issued.leaf.cert_pem + "   \n"

    run = push(
        ansible,
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


def test_push_over_a_deleted_current_version_writes_a_new_version(ansible, bao, connect, cert_path):
    issued = make_chain("deleted.example.com")
    args = {**connect, **single(cert_path, issued.leaf, issued.intermediate)}
    first = push(ansible, args)
    assert not first.failed, first.msg
    status, body = bao.api("DELETE", f"secret/data/{cert_path}")
    assert status == 204, body
    assert current_data(bao, cert_path) is None

    run = push(ansible, args)

    assert not run.failed, run.msg
    assert run.changed
    assert (run.result["version"], run.result["previous_version"]) == (2, 1)
    assert run.result["changed_fields"]
    [write] = writes(run.requests, cert_path)
    assert write["request"]["data"]["options"]["cas"] == 1
    state = bao.kv_versions("secret", cert_path)
    assert sorted(state) == ["1", "2"]
    assert state["1"]["deletion_time"] and not state["2"]["deletion_time"]
    assert current_data(bao, cert_path) == expected_data(issued.leaf, issued.intermediate)


def test_two_identical_pushes_racing_write_once(ansible, bao, connect, cert_path):
    leaf = make_chain("race.example.com").leaf
    args = {**connect, **single(cert_path, leaf)}
    runs: list = [None, None]

    def run_push(slot: int) -> None:
        runs[slot] = ansible.run_module(MODULE, args)

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
    assert current_data(bao, cert_path) == expected_data(leaf)
    print(f"race: {len(writes(seen, cert_path))} write request(s) reached the server")


# -- interference between read and write, and lost answers (through tests/support/fault_proxy) --


def data_write_rule(cert_path: str) -> tuple[str, str]:
    return "POST", rf"^secret/data/{re.escape(cert_path)}$"


def module_writes(entries: list[dict], path: str, bao) -> list[dict]:
    """Writes on the path that the module made (not the root token's interference)."""
    return [entry for entry in writes(entries, path) if entry["request"]["client_token"] != bao.root_token]


def test_cas_conflict_rereads_and_keeps_what_the_other_writer_wrote(ansible, bao, approle_auth, cert_path):
    leaf = make_chain("cas-conflict.example.com").leaf

    def someone_else_writes() -> None:
        status, body = bao.api("POST", f"secret/data/{cert_path}", {"data": {"owner": "team-x"}})
        assert status == 200, body

    with FaultProxy(bao.addr, bao.ca_cert) as proxy:
        proxy.add_rule(*data_write_rule(cert_path), action=someone_else_writes)
        run = push(ansible, {"url": proxy.url, **approle_auth, **single(cert_path, leaf)})

    assert not run.failed, run.msg
    assert run.changed
    assert (run.result["version"], run.result["previous_version"], run.result["created"]) == (2, 1, False)
    assert bao.kv_version_numbers(cert_path) == [1, 2]
    assert current_data(bao, cert_path) == {**expected_data(leaf), "owner": "team-x"}
    first, second = module_writes(run.requests, cert_path, bao)
    assert first["request"]["data"]["options"]["cas"] == 0
    assert second["request"]["data"]["options"]["cas"] == 1


def test_cas_conflict_with_a_racer_that_wrote_the_same_data_reports_unchanged(ansible, bao, approle_auth, cert_path):
    leaf = make_chain("cas-same.example.com").leaf

    def racer_writes_the_same() -> None:
        # Another run of this collection: the same data, and its (owner-less, an earlier release's) mark.
        status, body = bao.api("POST", f"secret/data/{cert_path}", {"data": expected_data(leaf)})
        assert status == 200, body
        status, body = bao.api("POST", f"secret/metadata/{cert_path}", {"custom_metadata": MANAGED})
        assert status == 204, body

    with FaultProxy(bao.addr, bao.ca_cert) as proxy:
        proxy.add_rule(*data_write_rule(cert_path), action=racer_writes_the_same)
        run = push(ansible, {"url": proxy.url, **approle_auth, **single(cert_path, leaf)})

    assert not run.failed, run.msg
    assert not run.changed
    assert (run.result["version"], run.result["previous_version"], run.result["created"]) == (1, 1, False)
    assert bao.kv_version_numbers(cert_path) == [1]
    assert len(module_writes(run.requests, cert_path, bao)) == 1


def test_write_whose_answer_was_lost_is_not_applied_twice(ansible, bao, approle_auth, cert_path):
    leaf = make_chain("lost-answer.example.com").leaf

    with FaultProxy(bao.addr, bao.ca_cert) as proxy:
        # The server applies the write; its answer is replaced by a 502 (outcome unknown to the module).
        proxy.add_rule(*data_write_rule(cert_path), status=502, after_forward=True)
        run = push(ansible, {"url": proxy.url, **approle_auth, **single(cert_path, leaf)})

    assert not run.failed, run.msg
    assert run.changed
    assert bao.kv_version_numbers(cert_path) == [1]
    assert current_data(bao, cert_path) == expected_data(leaf)
    assert len(module_writes(run.requests, cert_path, bao)) == 1
    assert (run.result["version"], run.result["previous_version"], run.result["created"]) == (1, None, True)
    assert sorted(run.result["changed_fields"]) == ["certificate", "fullchain", "private_key"]


def test_custom_metadata_is_written_even_when_the_data_write_answer_was_lost(ansible, bao, vault_conn, cert_path):
    leaf = make_chain("lost-meta.example.com").leaf

    with FaultProxy(bao.addr, bao.ca_cert) as proxy:
        # The server applies the write; its answer is replaced by a 502 (outcome unknown to the module).
        proxy.add_rule(*data_write_rule(cert_path), status=502, after_forward=True)
        run = push(
            ansible, {"url": proxy.url, **approle(bao, "meta"), **single(cert_path, leaf), "custom_metadata": True}
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


def test_check_capabilities_refuses_the_whole_batch_before_any_write(ansible, bao, vault_conn, cert_path):
    allowed, denied = f"{cert_path}/allowed", f"{cert_path}/denied"
    auth = token_for(
        bao,
        "push-check-capabilities",
        {f"secret/data/{allowed}": ["read", "create", "update"], f"secret/data/{denied}": ["read"]},
    )
    leaf_a, leaf_b = make_chain("allowed.example.com").leaf, make_chain("denied.example.com").leaf
    batch = [single(allowed, leaf_a), single(denied, leaf_b)]

    run = push(ansible, {**vault_conn, **auth, "certificates": batch, "check_capabilities": True})

    assert run.failed
    assert (
        f"permission denied on secret/data/{denied}: the token needs read, create, update and lacks create, update"
        in run.msg
    ), run.msg
    assert "nothing written" in run.msg
    assert bao.kv_version_numbers(allowed) == [] and bao.kv_version_numbers(denied) == []
    counts = request_counts(run.requests)
    assert counts["update sys/capabilities-self"] == 1 and counts["write"] == 0


def test_check_capabilities_costs_one_request_and_no_second_login(ansible, bao, connect, cert_path):
    leaf = make_chain("checked.example.com").leaf

    run = push(ansible, {**connect, **single(cert_path, leaf), "check_capabilities": True})

    assert not run.failed, run.msg
    counts = request_counts(run.requests)
    assert counts["update sys/capabilities-self"] == 1
    assert sum(count for kind, count in counts.items() if kind.startswith("login")) == 1
    assert bao.kv_version_numbers(cert_path) == [1]


def test_check_capabilities_of_a_batch_past_the_servers_json_limit_is_asked_500_paths_at_a_time(
    ansible, bao, connect, cert_path
):
    """OpenBao refuses a request body of over 1000 JSON strings: 1001 paths take three requests."""
    leaf = make_chain("many.example.com").leaf
    items = [{"path": f"{cert_path}/{index}", "certificate": leaf.cert_pem} for index in range(1001)]
    args = {**connect, "certificates": items, "include_private_key": False, "check_capabilities": True}

    run = push(ansible, args, check=True)

    assert not run.failed, run.msg
    assert request_counts(run.requests)["update sys/capabilities-self"] == 3
    assert len(run.result["results"]) == 1001


# -- private keys from files on the controller (the action plugin) --------------------------------


def test_private_key_file_single_and_batch_with_a_relative_path_found_in_files(
    ansible, bao, connect, cert_path, tmp_path
):
    ca = make_ca()
    leaves = [make_leaf(ca, f"key-file-{index}.example.com") for index in range(3)]
    files = tmp_path / "files"
    files.mkdir()
    for index, leaf in enumerate(leaves):
        (files / f"key{index}.pem").write_text(leaf.key_pem)
    play = {
        "name": "Keys from files",
        "hosts": "localhost",
        "gather_facts": False,
        "tasks": [
            {
                "name": "Single",
                FQCN: {
                    **connect,
                    "path": f"{cert_path}/0",
                    "certificate": leaves[0].cert_pem,
                    "private_key_file": "key0.pem",
                    "validate": False,
                },
            },
            {
                "name": "Batch",
                FQCN: {
                    **connect,
                    "validate": False,
                    "certificates": [
                        {"path": f"{cert_path}/1", "certificate": leaves[1].cert_pem, "private_key_file": "key1.pem"},
                        {"path": f"{cert_path}/2", "certificate": leaves[2].cert_pem, "private_key": leaves[2].key_pem},
                    ],
                },
            },
        ],
    }
    playbook = tmp_path / "keys.yml"
    playbook.write_text(json.dumps([play]))

    run = ansible.run_playbook(playbook, verbosity=3, diff=True)

    assert run.rc == 0, run.output
    for index, leaf in enumerate(leaves):
        assert data_of(bao, f"{cert_path}/{index}")["private_key"] == leaf.key_pem
    assert_no_leak([run.output, *(task.result for task in run.tasks)], *(leaf.key_pem for leaf in leaves))
    invocation = run.task("Batch").result["invocation"]["module_args"]
    assert invocation["key_bundle"] == "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"
    assert [(item["private_key"], item["private_key_file"]) for item in invocation["certificates"]] == [
        (None, None)
    ] * 2


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"private_key_file": "/nonexistent/key.pem"}, "private_key_file /nonexistent/key.pem not found"),
        (
            {"private_key_file": "KEYFILE", "private_key": "KEY"},
            "private_key and private_key_file are mutually exclusive",
        ),
        ({"key_bundle": "[]"}, "key_bundle is filled by the module's action plugin"),
        ({"private_key_file": "KEY"}, "private_key_file (value not shown: it may hold a secret) not found"),
    ],
    ids=["missing file", "both key and key file", "key_bundle from a task", "the key itself as the file"],
)
def test_key_inputs_the_action_refuses_write_nothing(ansible, bao, connect, cert_path, tmp_path, options, message):
    leaf = make_leaf(make_ca(), "refused.example.com")
    key_file = tmp_path / "key.pem"
    key_file.write_text(leaf.key_pem)
    options = {
        name: {"KEYFILE": str(key_file), "KEY": leaf.key_pem}.get(value, value) for name, value in options.items()
    }
    args = {**connect, "path": cert_path, "certificate": leaf.cert_pem, **options}

    run = push(ansible, args, secrets=[leaf.key_pem])

    assert run.failed and message in run.msg, run.msg
    assert run.requests == []
    assert bao.kv_version_numbers(cert_path) == []


def data_of(bao, path: str) -> dict | None:
    status, body = bao.api("GET", f"secret/data/{path}")
    assert status in (200, 404), body
    return ((body or {}).get("data") or {}).get("data")


# -- the controller's trust boundary: paths that would act as templates, file options, files_root ------------


def test_a_path_with_template_syntax_from_a_survey_is_refused_naming_it_and_nothing_runs(
    ansible, bao, connect, cert_path, tmp_path
):
    marker = tmp_path / "ran"
    leaf = make_leaf(make_ca(), "template-path.example.com")
    hostile = {
        "single": f"{cert_path}/{{{{lookup('pipe','id>{marker}')}}}}",
        "statement": f"{cert_path}/{{%set x=1%}}",
        "comment": f"{cert_path}/{{#x#}}",
    }
    # A survey answer reaches a task as a variable tagged !unsafe: Ansible passes it on as data.
    survey = tmp_path / "survey.yml"
    survey.write_text("".join(f"{name}: !unsafe {json.dumps(path)}\n" for name, path in hostile.items()))
    key = {"certificate": leaf.cert_pem, "private_key": leaf.key_pem}
    tasks = [
        {"name": name, FQCN: {**connect, **key, "path": f"{{{{ {name} }}}}"}, "ignore_errors": True} for name in hostile
    ]
    tasks.append(
        {
            "name": "batch",
            FQCN: {
                **connect,
                "certificates": [{**key, "path": f"{cert_path}/ok"}, {**key, "path": "{{ single }}"}],
            },
            "ignore_errors": True,
        }
    )
    playbook = tmp_path / "survey-push.yml"
    playbook.write_text(json.dumps([{"name": "Survey", "hosts": "localhost", "gather_facts": False, "tasks": tasks}]))
    mark = bao.audit_mark()

    run = ansible.run_playbook(playbook, extra_vars_args=[f"@{survey}"], verbosity=3)

    assert not marker.exists()
    for name in [*hostile, "batch"]:
        record = run.task(name)
        result = record.result
        option = "certificates[1].path" if name == "batch" else "path"
        assert record.status == "failed" and result["msg"] == (
            f"invalid {option}: it holds template syntax ({{{{, {{% or {{#), which a path never may"
        ), (name, result)
    assert [entry for entry in bao.audit_requests(mark) if entry["request"]["path"].startswith("secret/")] == []
    assert bao.kv_version_numbers(f"{cert_path}/ok") == []
    assert_no_leak([run.output, *(task.result for task in run.tasks)], leaf.key_pem, connect["secret_id"])


def test_private_key_file_takes_only_a_private_key_and_never_shows_the_file(ansible, bao, connect, cert_path, tmp_path):
    leaf = make_leaf(make_ca(), "key-file-kind.example.com")
    app_conf = tmp_path / "app.conf"
    app_conf.write_text("db_password=hunter2-in-app-conf\n")
    combined = tmp_path / "combined.pem"
    combined.write_text(f"# note\n{leaf.cert_pem}{leaf.key_pem}")
    (tmp_path / "cert.pem").write_text(leaf.cert_pem)
    refused = {**connect, "path": f"{cert_path}/refused", "certificate": leaf.cert_pem, "validate": False}
    combined_args = {**connect, "path": f"{cert_path}/combined", "certificate": leaf.cert_pem}
    run, results = push_tasks(
        ansible,
        {
            "config file": {**refused, "private_key_file": str(app_conf)},
            "certificate file": {**refused, "private_key_file": str(tmp_path / "cert.pem")},
            "combined file": {**combined_args, "private_key_file": str(combined)},
        },
    )

    for name in ("config file", "certificate file"):
        result = results[name].result
        assert results[name].status == "failed", result
        assert result["msg"] == (
            "private_key_file: the file does not hold exactly one PEM private key; nothing written, and nothing of "
            "the file is shown"
        ), result
    assert "hunter2" not in run.output + json.dumps([task.result for task in run.tasks], default=str)
    assert bao.kv_version_numbers(f"{cert_path}/refused") == []
    assert data_of(bao, f"{cert_path}/combined")["private_key"] == leaf.key_pem


def test_a_private_key_file_over_1_mib_is_refused_before_it_is_read(ansible, bao, connect, cert_path, tmp_path):
    leaf = make_leaf(make_ca(), "key-file-size.example.com")
    huge = tmp_path / "root" / "key.pem"
    huge.parent.mkdir()
    with open(huge, "wb") as handle:
        handle.write(leaf.key_pem.encode())
        handle.truncate(96 * 2**20)  # a real key, then sparse zeros: costs no disk
    args = {**connect, "path": f"{cert_path}/huge", "certificate": leaf.cert_pem, "files_root": str(huge.parent)}

    run = push(ansible, {**args, "private_key_file": "key.pem"}, secrets=[leaf.key_pem])

    assert run.failed
    assert run.msg == (
        "cannot read private_key_file: it is larger than 1 MiB, which no certificate chain or private key is; "
        "nothing written"
    )
    assert [entry for entry in run.requests if entry["request"]["path"].startswith("secret/")] == []
    assert bao.kv_version_numbers(f"{cert_path}/huge") == []


def test_files_root_confines_private_key_file_after_resolving_links_and_dotdot(
    ansible, bao, connect, cert_path, tmp_path
):
    root, elsewhere = tmp_path / "root", tmp_path / "elsewhere"
    root.mkdir()
    elsewhere.mkdir()
    ca = make_ca()
    mine, theirs = make_leaf(ca, "mine.example.com"), make_leaf(ca, "theirs.example.com")
    (root / "mine.pem").write_text(mine.key_pem)
    (elsewhere / "theirs.pem").write_text(theirs.key_pem)
    (root / "link.pem").symlink_to(elsewhere / "theirs.pem")
    # validate: false would store a key that is not the certificate's: only files_root keeps it out.
    base = {**connect, "certificate": mine.cert_pem, "validate": False, "files_root": str(root)}
    run, results = push_tasks(
        ansible,
        {
            "symlink": {**base, "path": f"{cert_path}/symlink", "private_key_file": "link.pem"},
            "dotdot": {**base, "path": f"{cert_path}/dotdot", "private_key_file": "../elsewhere/theirs.pem"},
            "absolute": {**base, "path": f"{cert_path}/absolute", "private_key_file": str(elsewhere / "theirs.pem")},
            "batch": {
                **{name: value for name, value in base.items() if name != "certificate"},
                "certificates": [
                    {"path": f"{cert_path}/batch-0", "certificate": mine.cert_pem, "private_key_file": "mine.pem"},
                    {"path": f"{cert_path}/batch-1", "certificate": mine.cert_pem, "private_key_file": "link.pem"},
                ],
            },
            "inside": {**base, "path": f"{cert_path}/inside", "private_key_file": "mine.pem"},
        },
    )

    for name, option in (
        ("symlink", "private_key_file"),
        ("dotdot", "private_key_file"),
        ("absolute", "private_key_file"),
        ("batch", "certificates[1].private_key_file"),
    ):
        result = results[name].result
        assert results[name].status == "failed", (name, result)
        assert result["msg"] == (
            f"{option}: the file lies outside files_root (symlinks and '..' resolved); nothing written"
        ), (name, result)
        assert bao.kv_version_numbers(f"{cert_path}/{name}") == []
    assert bao.kv_version_numbers(f"{cert_path}/batch-0") == []
    assert "elsewhere" not in run.output.replace(str(tmp_path), "")
    assert data_of(bao, f"{cert_path}/inside")["private_key"] == mine.key_pem
    assert_no_leak([run.output, *(task.result for task in run.tasks)], theirs.key_pem, mine.key_pem)


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

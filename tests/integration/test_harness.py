"""The test harness itself works: the OpenBao server is set up as the other tests assume.

These tests speak to the server with plain HTTP and the bao CLI, never through
the collection, so a failure here points at the harness, not the modules.
"""

from __future__ import annotations

import os

import pki
import pytest
from leaks import secret_needles, secrets_in, tokens_in


def _approle_token(bao, role="certs", namespace=None):
    role_id = bao.ns_role_id if namespace else bao.role_ids[role]
    secret_id = bao.new_approle_secret_id(role, namespace=namespace)
    return bao.login("approle", {"role_id": role_id, "secret_id": secret_id}, namespace=namespace)


def _token_policies(bao, token, namespace=None):
    status, body = bao.api("GET", "auth/token/lookup-self", token=token, namespace=namespace)
    assert status == 200, body
    return set(body["data"]["policies"])


def test_dev_server_is_initialised_unsealed_and_active(bao):
    status, body = bao.api("GET", "sys/health", token="")

    assert status == 200
    assert body["initialized"] is True
    assert body["sealed"] is False
    assert bao.addr.startswith("https://127.0.0.1:")


def test_approle_login_returns_token_with_certs_policy(bao):
    token = _approle_token(bao)

    assert _token_policies(bao, token) == {"default", "certs"}


def test_jwt_login_with_signed_token_returns_certs_token(bao):
    token = bao.login("jwt", {"role": "certs", "jwt": bao.sign_jwt()})

    assert _token_policies(bao, token) == {"default", "certs"}


def test_jwt_login_refuses_token_for_another_audience(bao):
    status, body = bao.api(
        "POST", "auth/jwt/login", {"role": "certs", "jwt": bao.sign_jwt(aud="someone-else")}, token=""
    )

    assert status == 400, body


def test_cert_login_with_client_certificate_returns_certs_token(bao):
    token = bao.login("cert", {"name": "certs"}, cert=(bao.client_cert, bao.client_key))

    assert _token_policies(bao, token) == {"default", "certs"}


def test_namespace_approle_login_writes_only_inside_the_namespace(bao):
    token = _approle_token(bao, namespace=bao.namespace)

    status, body = bao.api(
        "POST",
        "secret/data/certs/harness-ns.example.com",
        {"data": {"certificate": "x"}},
        token=token,
        namespace=bao.namespace,
    )

    assert status == 200, body
    assert set(bao.kv_versions("secret", "certs/harness-ns.example.com", namespace=bao.namespace)) == {"1"}
    assert bao.kv_versions("secret", "certs/harness-ns.example.com") == {}


def test_unknown_namespace_answers_namespace_not_found(bao):
    status, body = bao.api("GET", "secret/data/certs/x", namespace="no-such-team")

    assert status == 404
    assert "namespace not found" in " ".join(body["errors"])


def test_audit_log_records_each_request_with_raw_token(bao):
    token = _approle_token(bao)
    mark = bao.audit_mark()

    bao.api("GET", "secret/data/certs/harness-audit.example.com", token=token)

    entries = bao.audit_requests(mark, path_prefix="secret/data/certs/harness-audit")
    assert len(entries) == 1
    assert entries[0]["request"]["operation"] == "read"
    assert entries[0]["request"]["client_token"] == token


def test_readonly_role_cannot_write(bao):
    token = _approle_token(bao, role="readonly")

    status, body = bao.api(
        "POST", "secret/data/certs/harness-ro.example.com", {"data": {"certificate": "x"}}, token=token
    )

    assert status == 403
    assert "permission denied" in " ".join(body["errors"])
    assert bao.kv_versions("secret", "certs/harness-ro.example.com") == {}


def test_meta_and_certs_roles_may_write_custom_metadata_and_sample_role_may_not(bao):
    path = "secret/metadata/certs/harness-meta.example.com"
    meta_token = _approle_token(bao, role="meta")
    certs_token = _approle_token(bao, role="certs")
    sample_token = _approle_token(bao, role="sample")

    allowed, _body = bao.api("POST", path, {"custom_metadata": {"cn": "x"}}, token=meta_token)
    also_allowed, _body = bao.api("POST", path, {"custom_metadata": {"cn": "z"}}, token=certs_token)
    refused, _body = bao.api("POST", path, {"custom_metadata": {"cn": "y"}}, token=sample_token)

    assert allowed == 204
    assert also_allowed == 204
    assert refused == 403


@pytest.mark.parametrize(("mount", "version"), [("secret", "2"), ("small", "2"), ("kv1", "1")])
def test_certs_token_can_read_its_mounts_kv_version(bao, mount, version):
    # The collection checks the mount with sys/internal/ui/mounts/<mount>; the
    # default policy allows it for any mount the token has a grant on.
    token = _approle_token(bao)

    status, body = bao.api("GET", f"sys/internal/ui/mounts/{mount}", token=token)

    assert status == 200, body
    assert body["data"]["type"] == "kv"
    assert body["data"]["options"]["version"] == version


def test_small_mount_keeps_only_two_versions(bao):
    for n in range(3):
        bao.api("POST", "small/data/certs/harness-small.example.com", {"data": {"n": n}})

    versions = bao.kv_versions("small", "certs/harness-small.example.com")

    assert sorted(versions) == ["2", "3"]


def test_limited_secret_id_works_once(bao):
    secret_id = bao.new_approle_secret_id("limited")
    payload = {"role_id": bao.role_ids["limited"], "secret_id": secret_id}

    bao.login("approle", payload)
    status, _body = bao.api("POST", "auth/approle/login", payload, token="")

    assert status == 400


def test_cli_reaches_the_server_as_root(bao):
    bao.api("POST", "secret/data/certs/harness-cli.example.com", {"data": {"certificate": "cli"}})

    completed = bao.cli("kv", "get", "-format=json", "secret/certs/harness-cli.example.com")

    assert completed.returncode == 0, completed.stderr
    assert '"certificate": "cli"' in completed.stdout


def test_seal_then_unseal_restores_service_and_data(bao):
    bao.api("POST", "secret/data/certs/harness-seal.example.com", {"data": {"certificate": "kept"}})

    bao.seal()
    sealed_status, _body = bao.api("GET", "sys/health", token="")
    bao.unseal()

    assert sealed_status == 503
    status, body = bao.api("GET", "secret/data/certs/harness-seal.example.com")
    assert status == 200
    assert body["data"]["data"] == {"certificate": "kept"}


def test_ansible_runner_captures_failure_message(ansible):
    run = ansible.run_module("ansible.builtin.fail", {"msg": "expected failure"})

    assert run.failed
    assert run.rc == 2
    assert run.msg == "expected failure"


def test_ansible_runner_hides_inherited_vault_variables(ansible, monkeypatch):
    monkeypatch.setenv("VAULT_ADDR", "https://inherited.invalid:8200")
    lookup = {"msg": "[{{ lookup('ansible.builtin.env', 'VAULT_ADDR') }}]"}

    inherited = ansible.run_module("ansible.builtin.debug", lookup)
    passed = ansible.run_module("ansible.builtin.debug", lookup, env={"VAULT_ADDR": "https://passed.invalid"})

    assert inherited.result["msg"] == "[]"
    assert passed.result["msg"] == "[https://passed.invalid]"


def test_ansible_runner_captures_result_and_output_and_applies_module_defaults_and_check_mode(ansible):
    run = ansible.run_module(
        "ansible.builtin.debug",
        {},
        check=True,
        module_defaults={"ansible.builtin.debug": {"msg": "hello from the harness defaults"}},
    )

    assert run.rc == 0
    assert not run.failed
    assert run.result["msg"] == "hello from the harness defaults"
    assert "hello from the harness defaults" in run.output
    assert not run.changed


def test_ansible_runner_reports_unknown_module_as_failure(ansible):
    run = ansible.run_module("no_such_module", {})

    assert run.failed
    assert "certautopilot.vault.no_such_module" in run.output


def test_a_module_called_in_process_answers_as_its_process_does(modules, module_process, bao):
    args = {"url": bao.addr, "ca_cert": bao.ca_cert, "auth_method": "token", "token": bao.root_token}

    in_process = modules.run_module("vault_health", args)
    as_process = module_process.run("vault_health", args)

    assert in_process.rc == as_process.rc == 0
    assert in_process.result["checks"] == as_process.result["checks"]
    assert [entry["request"]["path"] for entry in in_process.requests] == [
        entry["request"]["path"] for entry in as_process.requests
    ]


def test_in_process_runs_start_clean_of_the_last_runs_warnings_and_environment(modules, bao):
    over_http = {"url": bao.addr.replace("https://", "http://"), "auth_method": "token", "token": bao.root_token}
    over_https = {"url": bao.addr, "ca_cert": bao.ca_cert, "auth_method": "token", "token": bao.root_token}

    warned = modules.run_module("vault_health", over_http, env={"VAULT_NAMESPACE": "no-such-namespace"})
    quiet = modules.run_module("vault_health", over_https)

    assert warned.result.get("warnings"), warned.result
    assert not quiet.result.get("warnings"), quiet.result
    assert all(check["ok"] for check in quiet.result["checks"]), "VAULT_NAMESPACE of the run before is gone"
    assert "VAULT_NAMESPACE" not in os.environ


def test_in_process_check_and_diff_reach_the_module(modules, bao, approle_auth):
    leaf = pki.make_leaf(None, "harness.example.com")
    args = {"url": bao.addr, "ca_cert": bao.ca_cert, **approle_auth, "path": "certs/harness-check-diff"}
    args.update(certificate=leaf.cert_pem, private_key=leaf.key_pem)

    run = modules.run_module("vault_cert_push", args, check=True, diff=True)

    assert run.changed and run.result["diff"], run.result
    assert bao.kv_versions("secret", "certs/harness-check-diff") == {}


def test_every_run_is_scanned_for_the_secrets_it_was_given(modules, bao, approle_auth):
    args = {"url": bao.addr, "ca_cert": bao.ca_cert, **approle_auth}
    # The role_id is no secret, and the invocation shows it: declared one, the scan must find it.
    role_id = approle_auth["role_id"]

    assert secrets_in({**args, "certificates": [{"private_key": "-----BEGIN PRIVATE KEY-----x"}]}) == [
        approle_auth["secret_id"],
        "-----BEGIN PRIVATE KEY-----x",
    ]
    with pytest.raises(AssertionError, match="secret material found in output"):
        modules.run_module("vault_health", args, secrets=[role_id])


def test_the_scan_takes_the_tokens_the_run_logged_in_for(modules, bao, approle_auth):
    run = modules.run_module("vault_health", {"url": bao.addr, "ca_cert": bao.ca_cert, **approle_auth})

    tokens = tokens_in(run.requests)
    assert len(tokens) == 1, "the module's own login token, which it was never given"
    assert tokens[0] not in approle_auth.values()


def test_the_scan_looks_for_the_secrets_not_for_what_is_public_beside_them(bao):
    chain = pki.make_chain("harness-needles.example.com")
    secret_id = bao.new_approle_secret_id("certs")

    # A field called private_key is a name, shown wherever the option is.
    assert secrets_in({"fields": {"private_key": "private_key"}, "private_key": chain.leaf.key_pem}) == [
        chain.leaf.key_pem
    ]
    # A certificate pasted before a secret is public: the secret is looked for, the certificate is not.
    assert secret_needles(chain.leaf.cert_pem + secret_id) == [secret_id]
    assert secret_needles(chain.leaf.cert_pem + chain.leaf.key_pem) == secret_needles(chain.leaf.key_pem)
    assert secret_needles(chain.leaf.key_pem)
    # A certificate declared a secret on its own is looked for.
    assert secret_needles(chain.leaf.cert_pem)

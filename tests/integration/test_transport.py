# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How the modules reach and log in to Vault: inline client certificate and key, credentials in the url,
redirects, header values with line breaks, a jwt_file that holds no JWT.

Against a real OpenBao; modules in-process (``modules``), except where only a process of its own shows the
point (the temporary file of an inline client key, in that process's TMPDIR). Every run is scanned by the
harness for the secrets it was given and the tokens it used.
"""

from __future__ import annotations

import secrets
import typing as t
import uuid
from pathlib import Path

import pytest
from failures import assert_failed_cleanly
from fault_proxy import FaultProxy
from identities import CertificateAuthority
from kv_requests import kv_writes
from leaks import find_leaks
from pki import key_pem, make_chain, new_key
from push_runs import approle, single
from tokens import token_with_policy

PUSH = "vault_cert_push"
HEALTH = "vault_health"


def unique_path(topic: str) -> str:
    return f"certs/transport-{topic}-{uuid.uuid4().hex[:8]}.example.com"


# -- inline client_cert / client_key -----------------------------------------------------------


def test_inline_client_certificate_and_key_log_in_with_cert_auth_and_leave_no_key_file(
    bao, module_process, vault_conn, tmp_path
):
    """A process of its own: the key goes to a temporary file for requests, in the process's TMPDIR."""
    path = unique_path("inline-client-tls")
    chain = make_chain(path.removeprefix("certs/"))
    client_key = Path(bao.client_key).read_text()
    module_tmp = tmp_path / "module-tmp"
    module_tmp.mkdir()

    run = module_process.run(
        PUSH,
        {
            **vault_conn,
            "auth_method": "cert",
            "role": "certs",
            "client_cert": Path(bao.client_cert).read_text(),
            "client_key": client_key,
            **single(path, chain.leaf, chain.intermediate),
        },
        env={"TMPDIR": str(module_tmp)},
    )

    assert not run.failed, run.msg
    assert run.result["version"] == 1
    assert [entry["request"]["path"] for entry in run.requests].count("auth/cert/login") == 1
    assert bao.kv_version_numbers(path) == [1]
    assert bao.kv_data(path) == {
        "certificate": chain.leaf.cert_pem,
        "private_key": chain.leaf.key_pem,
        "chain": chain.chain_pem,
        "fullchain": chain.fullchain_pem,
    }
    # The key's temporary file must be gone once the module has finished.
    left_behind = [
        str(file)
        for file in module_tmp.rglob("*")
        if file.is_file() and find_leaks([file.read_text(errors="replace")], client_key)
    ]
    assert left_behind == []


def test_missing_client_cert_file_fails_naming_client_cert_and_writes_nothing(bao, modules, vault_conn, tmp_path):
    path = unique_path("missing-client-cert")
    chain = make_chain(path.removeprefix("certs/"))

    run = modules.run_module(
        PUSH,
        {
            **vault_conn,
            "auth_method": "cert",
            "role": "certs",
            "client_cert": str(tmp_path / "no-such-client.pem"),
            "client_key": bao.client_key,
            **single(path, chain.leaf, chain.intermediate),
        },
        secrets=[Path(bao.client_key).read_text()],
    )

    assert_failed_cleanly(run)
    assert "client_cert" in run.msg
    assert kv_writes(run.requests) == []
    assert bao.kv_version_numbers(path) == []


def _truncated_key() -> str:
    """A PEM key cut short: its BEGIN line and first body lines, no END line."""
    lines = key_pem(new_key("rsa")).splitlines()
    return "\n".join(lines[:6]) + "\n"


def _headerless_key() -> str:
    """A PEM key's base64 body without its BEGIN and END lines."""
    return "\n".join(key_pem(new_key("rsa")).splitlines()[1:-1]) + "\n"


@pytest.mark.parametrize("make_value", [_truncated_key, _headerless_key], ids=["truncated-pem", "headerless-body"])
def test_client_key_neither_file_nor_pem_key_fails_without_echoing_it(bao, modules, vault_conn, make_value):
    path = unique_path("bad-client-key")
    chain = make_chain(path.removeprefix("certs/"))
    bad_key = make_value()
    # Every long body line on its own: the value is no loadable key, so the harness would look for it whole.
    body = [line.strip() for line in bad_key.splitlines() if len(line.strip()) >= 24 and "-----" not in line]
    assert body, "the test value must have body lines to look for"

    run = modules.run_module(
        PUSH,
        {
            **vault_conn,
            "auth_method": "cert",
            "role": "certs",
            "client_cert": bao.client_cert,
            "client_key": bad_key,
            **single(path, chain.leaf, chain.intermediate),
        },
        secrets=body,
    )

    assert_failed_cleanly(run)
    assert "client_key" in run.msg
    assert kv_writes(run.requests) == []
    assert bao.kv_version_numbers(path) == []


# -- credentials in the url --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("module", "source"),
    [(PUSH, "option"), (PUSH, "VAULT_ADDR"), (HEALTH, "option")],
    ids=["push-option", "push-env", "health-option"],
)
def test_url_with_credentials_is_refused_before_any_request_without_echoing_them(
    bao, modules, vault_conn, module, source
):
    path = unique_path("url-credentials")
    chain = make_chain(path.removeprefix("certs/"))
    password = secrets.token_hex(16)
    url = f"https://ci-user:{password}@{bao.addr.removeprefix('https://')}"
    args: dict[str, t.Any] = {"ca_cert": vault_conn["ca_cert"], **approle(bao)}
    args.update(single(path, chain.leaf, chain.intermediate) if module == PUSH else {"mount": "secret", "path": path})
    env = None
    if source == "option":
        args["url"] = url
    else:
        env = {"VAULT_ADDR": url}

    # The harness scans for the url's password, from the option or the environment.
    run = modules.run_module(module, args, env=env, verbosity=3, secrets=[password])

    assert_failed_cleanly(run)
    assert "credentials" in run.msg
    assert run.requests == []
    assert bao.kv_version_numbers(path) == []


# -- redirects ---------------------------------------------------------------------------------


@pytest.fixture
def redirecting_proxy(bao, tmp_path):
    """An https endpoint the module trusts that redirects every request to a plain-http listener elsewhere."""
    authority = CertificateAuthority("certautopilot redirect test CA")
    identity = authority.issue_server("127.0.0.1")
    cert_file, key_file, ca_file = tmp_path / "proxy.pem", tmp_path / "proxy-key.pem", tmp_path / "ca.pem"
    cert_file.write_text(identity.cert_pem)
    key_file.write_text(identity.key_pem)
    ca_file.write_text(authority.cert_pem)
    listener = FaultProxy(bao.addr, bao.ca_cert)
    proxy = FaultProxy(bao.addr, bao.ca_cert, tls_cert=str(cert_file), tls_key=str(key_file))
    try:
        for method in ("GET", "POST", "PUT", "LIST"):
            proxy.add_rule(method, r".", redirect=listener.url, times=None)
        yield proxy, listener, str(ca_file)
    finally:
        proxy.close()
        listener.close()


def test_redirect_to_plain_http_elsewhere_is_not_followed(bao, modules, redirecting_proxy):
    proxy, listener, ca_file = redirecting_proxy
    path = unique_path("redirect")
    chain = make_chain(path.removeprefix("certs/"))

    run = modules.run_module(
        PUSH, {"url": proxy.url, "ca_cert": ca_file, **approle(bao), **single(path, chain.leaf, chain.intermediate)}
    )

    assert run.failed
    assert "login failed" in run.msg and "not followed" in run.msg, run.msg
    assert listener.hits() == []
    assert len(proxy.hits()) == 1  # the login, answered by the redirect and never sent again
    assert bao.kv_version_numbers(path) == []


# -- header values -----------------------------------------------------------------------------


@pytest.mark.parametrize("option", ["token", "namespace"])
def test_header_value_with_a_line_break_is_refused_before_any_request(bao, modules, vault_conn, option):
    path = unique_path("header")
    token = token_with_policy(bao, "transport-header", {"secret/*": ["read"]})
    args = {**vault_conn, "auth_method": "token", "token": token, "mount": "secret", "path": path}
    args[option] = args.get(option, "team-a") + "\nX-Injected: 1"

    run = modules.run_module(HEALTH, args, secrets=[token])

    assert run.failed
    assert f"invalid {option}" in run.msg and "line break" in run.msg, run.msg
    assert "gave up" not in run.msg
    assert run.requests == []


# -- jwt_file ----------------------------------------------------------------------------------


def test_jwt_file_without_a_jwt_is_neither_sent_nor_shown(bao, modules, vault_conn, tmp_path):
    chain = make_chain("jwt-file.example.com")
    key_file = tmp_path / "not-a-jwt.pem"
    key_file.write_text(chain.leaf.key_pem)
    args = {**vault_conn, "auth_method": "jwt", "role": "certs", "jwt_file": str(key_file), "path": "certs/x"}

    run = modules.run_module("vault_cert_rollback", args, secrets=[chain.leaf.key_pem])

    assert run.failed and "does not hold a JWT" in run.msg, run.msg
    assert run.requests == []

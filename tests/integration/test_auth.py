"""Connection and auth options against a real OpenBao server, exercised through vault_health.

A health run with mount=secret path=certs/example.com logs in, checks the
mount and the token's capabilities, so it proves a login end to end. The
audit log (raw) shows which requests the module sent, with which token and in
which namespace. SPEC sections: "Connection options", "Auth options",
"Error texts".

The module runs in-process (``modules``); the refusals whose -vvv display is under
test are the tasks of one ansible-playbook run, and what depends on a process of
its own (TMPDIR, a SIGKILL) runs as one. The harness scans every run for the
credentials it was given and the tokens it used; a secret that reaches a run
through a file is handed to it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import sys
import threading
import time
import typing as t
import uuid
from pathlib import Path

import pki
import pytest
from ansible_runner import PlaybookRun
from fault_proxy import BlackHole, FaultProxy
from leaks import find_leaks
from module_process import ModuleProcess

MODULE = "vault_health"
TARGET = {"mount": "secret", "path": "certs/example.com"}
TARGET_DATA_PATH = "secret/data/certs/example.com"
# What REQUESTS_CA_BUNDLE / SSL_CERT_FILE point at on a typical host: a bundle without the test CA.
SYSTEM_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
SYSTEM_BUNDLE_ENV = {"REQUESTS_CA_BUNDLE": SYSTEM_BUNDLE, "SSL_CERT_FILE": SYSTEM_BUNDLE}
ALT_APPROLE_MOUNT = "ci-approle"


# -- helpers -------------------------------------------------------------------


def _health(runner, args: dict[str, t.Any], **run_options: t.Any):
    return runner.run_module(MODULE, {**TARGET, **args}, **run_options)


def _in_namespace(entry: dict[str, t.Any], namespace: str | None) -> bool:
    return namespace is None or entry["request"].get("namespace", {}).get("path", "").strip("/") == namespace.strip("/")


def _requests(run, path_prefix: str, namespace: str | None = None) -> list[dict[str, t.Any]]:
    """The run's audited requests whose path starts with ``path_prefix`` (made in ``namespace``, when given)."""
    return [
        entry
        for entry in run.requests
        if entry["request"].get("path", "").startswith(path_prefix) and _in_namespace(entry, namespace)
    ]


def _capability_check_token(run, namespace: str | None = None) -> str:
    """The token the module's one capability check carried."""
    checks = _requests(run, "sys/capabilities-self", namespace=namespace)
    assert len(checks) == 1, f"expected one capability check, saw {len(checks)}"
    token = checks[0]["request"]["client_token"]
    assert token, "the capability check carried no token"
    return token


def _token_status(bao, token: str, namespace: str | None = None) -> int:
    status, _body = bao.api("GET", "auth/token/lookup-self", token=token, namespace=namespace)
    return status


def _create_token(bao, *policies: str) -> str:
    status, body = bao.api("POST", "auth/token/create", {"policies": list(policies), "ttl": "5m"})
    assert status == 200, body
    return body["auth"]["client_token"]


def _assert_passed_with_push_capabilities(run) -> None:
    assert not run.failed, run.msg
    assert run.changed is False
    assert run.result["kv_version"] == 2
    assert {"read", "create", "update"} <= set(run.result["capabilities"])
    assert all(check["ok"] for check in run.result["checks"])


def _assert_one_login_then_revoked(bao, run, login_path: str, namespace: str | None = None) -> str:
    """One login at `login_path`, one capability check with the token it gave, and that token revoked."""
    assert len(_requests(run, login_path, namespace=namespace)) == 1
    token = _capability_check_token(run, namespace=namespace)
    revokes = _requests(run, "auth/token/revoke-self", namespace=namespace)
    assert [entry["request"]["client_token"] for entry in revokes] == [token]
    assert _token_status(bao, token, namespace=namespace) == 403
    return token


def _ensure_alt_approle_mount(bao) -> str:
    """A second AppRole mount, so a message can be seen to name the mount point, not just the method."""
    status, mounts = bao.api("GET", "sys/auth")
    assert status == 200, mounts
    if f"{ALT_APPROLE_MOUNT}/" not in mounts["data"]:
        status, body = bao.api("POST", f"sys/auth/{ALT_APPROLE_MOUNT}", {"type": "approle"})
        assert status in (200, 204), body
        status, body = bao.api("POST", f"auth/{ALT_APPROLE_MOUNT}/role/certs", {"token_policies": ["certs"]})
        assert status in (200, 204), body
    status, body = bao.api("GET", f"auth/{ALT_APPROLE_MOUNT}/role/certs/role-id")
    assert status == 200, body
    return body["data"]["role_id"]


def _closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"https://127.0.0.1:{port}"


# -- refusals shown at -vvv: one ansible-playbook run ---------------------------------

URL_CARRIERS = ("?token=", "/?x=1#", "#", "?password=")


@dataclasses.dataclass
class RefusedAtVvv:
    run: PlaybookRun
    jwt_files: dict[str, Path]

    def refusal(self, name: str) -> str:
        """The message of the task called ``name``, which must have failed."""
        task = self.run.task(name)
        assert task.status == "failed", task
        return task.result["msg"]


def _key_file_as_jwt(path: Path, form: str) -> str:
    """A private key written where a JWT belongs: DER behind a byte no UTF-8 text starts with, or a PEM 400 times."""
    from cryptography.hazmat.primitives import serialization

    key_pem = pki.make_leaf(None, "jwt-file.example.com").key_pem
    key = serialization.load_pem_private_key(key_pem.encode(), None)
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    path.write_bytes(b"\x82" + der if form == "binary" else (key_pem * 400).encode())
    return key_pem


@pytest.fixture(scope="module")
def refused_at_vvv(bao, ansible, tmp_path_factory) -> RefusedAtVvv:
    """Every refusal whose display at -vvv is under test, as the tasks of one playbook run (ignore_errors).

    Nothing of what they were given may show: the keys in the jwt files, the urls and the credentials they carry.
    """
    workdir = tmp_path_factory.mktemp("refused-at-vvv")
    approle = {"auth_method": "approle", "role_id": bao.role_ids["certs"], "secret_id": bao.new_approle_secret_id()}
    tasks: dict[str, dict[str, t.Any]] = {}
    secrets: list[str] = []
    jwt_files = {form: workdir / f"token-{form}" for form in ("binary", "oversized")}
    for form, jwt_file in jwt_files.items():
        secrets.append(_key_file_as_jwt(jwt_file, form))
        tasks[f"jwt_file {form}"] = {
            "url": bao.addr,
            "ca_cert": bao.ca_cert,
            "auth_method": "jwt",
            "role": "certs",
            "jwt_file": str(jwt_file),
        }
    for carried in URL_CARRIERS:
        credential = f"Correct-Horse-{uuid.uuid4().hex}"  # no token's shape: only the url's refusal hides it
        url = f"{bao.addr}{carried}{credential}"
        secrets += [credential, url]
        tasks[f"url {carried}"] = {"url": url, "ca_cert": bao.ca_cert, **approle}
    password = f"s3cr/{uuid.uuid4().hex}"
    url = f"https://admin:{password}@{bao.addr.split('://', 1)[1]}"
    secrets += [password, url]
    tasks["url password with a slash"] = {"url": url, "ca_cert": bao.ca_cert, **approle}
    play = {
        "hosts": "localhost",
        "gather_facts": False,
        "tasks": [
            {"name": name, f"certautopilot.vault.{MODULE}": {**TARGET, **args}, "ignore_errors": True}
            for name, args in tasks.items()
        ],
    }
    playbook = workdir / "refusals.yml"
    playbook.write_text(json.dumps([play]))
    playbook.chmod(0o600)
    run = ansible.run_playbook(playbook, verbosity=3, secrets=secrets)
    assert {task.task for task in run.tasks} == set(tasks), run.output
    return RefusedAtVvv(run=run, jwt_files=jwt_files)


# -- login methods -------------------------------------------------------------


def test_approle_run_logs_in_once_and_revokes_the_token_it_obtained(bao, modules, vault_conn, approle_auth):

    run = _health(modules, {**vault_conn, **approle_auth, "check_rollback": True})

    _assert_passed_with_push_capabilities(run)
    _assert_one_login_then_revoked(bao, run, "auth/approle/login")


def test_revoke_token_false_leaves_the_obtained_token_valid(bao, modules, vault_conn, approle_auth):
    run = _health(modules, {**vault_conn, **approle_auth, "revoke_token": False})

    _assert_passed_with_push_capabilities(run)
    token = _capability_check_token(run)
    assert _requests(run, "auth/token/revoke-self") == []
    assert _token_status(bao, token) == 200


@pytest.mark.parametrize("source", ["jwt", "jwt_file"])
def test_jwt_login_with_inline_or_file_token(bao, modules, vault_conn, tmp_path, source):
    jwt = bao.sign_jwt(sub=f"ci-{source}")
    if source == "jwt":
        credentials = {"jwt": jwt}
    else:
        jwt_file = tmp_path / "jwt"
        jwt_file.write_text(jwt + "\n")
        jwt_file.chmod(0o600)
        credentials = {"jwt_file": str(jwt_file)}

    # From a file the JWT reaches the run another way than its arguments: the scan is told.
    run = _health(modules, {**vault_conn, "auth_method": "jwt", "role": "certs", **credentials}, secrets=[jwt])

    _assert_passed_with_push_capabilities(run)
    _assert_one_login_then_revoked(bao, run, "auth/jwt/login")


@pytest.mark.parametrize(
    ("form", "reason"),
    [("binary", "it is not UTF-8 text"), ("oversized", "it is larger than 64 KiB")],
    ids=["binary", "oversized"],
)
def test_a_jwt_file_that_is_binary_or_oversized_is_refused_by_name_without_showing_it(refused_at_vvv, form, reason):
    """A key file named as jwt_file by mistake: DER (0x82 is no UTF-8 start byte), or a PEM far larger than a JWT."""
    jwt_file = refused_at_vvv.jwt_files[form]
    msg = refused_at_vvv.refusal(f"jwt_file {form}")

    assert f"auth_method jwt: jwt_file does not hold a JWT: {reason}" in msg, msg
    assert str(jwt_file) not in msg
    output = refused_at_vvv.run.output
    assert "Traceback" not in output and "0x82" not in output and "\\x82" not in output
    # No task of the run sent anything: no login either.
    assert refused_at_vvv.run.requests == []


@pytest.mark.parametrize("source", ["options", "environment"])
def test_cert_login_with_client_certificate(bao, modules, vault_conn, source):
    if source == "options":
        client_tls, env = {"client_cert": bao.client_cert, "client_key": bao.client_key}, None
    else:
        client_tls, env = {}, {"VAULT_CLIENT_CERT": bao.client_cert, "VAULT_CLIENT_KEY": bao.client_key}

    # The key is read from its file: its content is what must never be shown.
    client_key_pem = Path(bao.client_key).read_text()
    run = _health(
        modules, {**vault_conn, "auth_method": "cert", "role": "certs", **client_tls}, env=env, secrets=[client_key_pem]
    )

    _assert_passed_with_push_capabilities(run)
    _assert_one_login_then_revoked(bao, run, "auth/cert/login")


def test_token_auth_uses_the_given_token_and_never_revokes_it(bao, modules, vault_conn):
    token = _create_token(bao, "certs")

    run = _health(modules, {**vault_conn, "auth_method": "token", "token": token})

    _assert_passed_with_push_capabilities(run)
    assert _capability_check_token(run) == token
    # No login and no revocation: the one auth/ request is the token's own check.
    assert [entry["request"]["path"] for entry in _requests(run, "auth/")] == ["auth/token/lookup-self"]
    assert _token_status(bao, token) == 200


def test_namespace_login_and_capability_check_happen_in_the_namespace(bao, modules, vault_conn):
    secret_id = bao.new_approle_secret_id("certs", namespace=bao.namespace)

    run = _health(
        modules,
        {
            **vault_conn,
            "auth_method": "approle",
            "role_id": bao.ns_role_id,
            "secret_id": secret_id,
            "namespace": bao.namespace,
        },
    )

    _assert_passed_with_push_capabilities(run)
    _assert_one_login_then_revoked(bao, run, "auth/approle/login", namespace=bao.namespace)
    # Every audited request was made in team-a (sys/health, root namespace only, is never audited).
    in_namespace = _requests(run, "", namespace=bao.namespace)
    assert run.requests == in_namespace
    assert {"auth/approle/login", "sys/internal/ui/mounts/secret", "sys/capabilities-self"} <= {
        entry["request"]["path"] for entry in in_namespace
    }
    checked = _requests(run, "sys/capabilities-self", namespace=bao.namespace)[0]["request"]
    assert checked["data"]["paths"] == [TARGET_DATA_PATH, "secret/metadata/certs/example.com"]


# -- refused and limited logins ----------------------------------------------------


def test_refused_login_names_method_and_mount_point_and_never_the_secret_id(bao, modules, vault_conn):
    role_id = _ensure_alt_approle_mount(bao)
    wrong_secret_id = str(uuid.uuid4())

    run = _health(
        modules,
        {
            **vault_conn,
            "auth_method": "approle",
            "auth_mount_point": ALT_APPROLE_MOUNT,
            "role_id": role_id,
            "secret_id": wrong_secret_id,
        },
    )

    assert run.failed
    assert "login failed" in run.msg
    assert "approle" in run.msg
    assert ALT_APPROLE_MOUNT in run.msg
    # A login the server answered is never sent again.
    assert len(_requests(run, f"auth/{ALT_APPROLE_MOUNT}/login")) == 1
    assert _requests(run, "sys/capabilities-self") == []


def test_limited_secret_id_is_spent_once_even_when_a_later_check_fails(bao, modules, vault_conn):
    secret_id = bao.new_approle_secret_id("limited")

    run = _health(
        modules,
        {
            **vault_conn,
            "auth_method": "approle",
            "role_id": bao.role_ids["limited"],
            "secret_id": secret_id,
            "mount": "kv1",
        },
    )

    assert run.failed
    assert "KV v1" in run.msg
    assert len(_requests(run, "auth/approle/login")) == 1
    second_use, _body = bao.api(
        "POST", "auth/approle/login", {"role_id": bao.role_ids["limited"], "secret_id": secret_id}, token=""
    )
    assert second_use == 400


# -- environment fallbacks and precedence ---------------------------------------------


def test_connection_and_approle_settings_come_from_environment_variables(bao, modules):
    secret_id = bao.new_approle_secret_id("certs", namespace=bao.namespace)
    env = {
        "VAULT_ADDR": bao.addr,
        "VAULT_CACERT": bao.ca_cert,
        "VAULT_NAMESPACE": bao.namespace,
        "VAULT_ROLE_ID": bao.ns_role_id,
        "VAULT_SECRET_ID": secret_id,
    }

    run = _health(modules, {"auth_method": "approle"}, env=env)

    _assert_passed_with_push_capabilities(run)
    _assert_one_login_then_revoked(bao, run, "auth/approle/login", namespace=bao.namespace)


def test_vault_token_comes_from_environment_variable(bao, modules, vault_conn):
    token = _create_token(bao, "certs")

    run = _health(modules, {**vault_conn, "auth_method": "token"}, env={"VAULT_TOKEN": token})

    _assert_passed_with_push_capabilities(run)
    assert _capability_check_token(run) == token
    assert _token_status(bao, token) == 200


def test_task_options_beat_environment_variables(bao, modules, vault_conn, approle_auth):
    stale_secret_id = str(uuid.uuid4())
    env = {
        "VAULT_ADDR": _closed_port_url(),
        "VAULT_CACERT": SYSTEM_BUNDLE,
        "VAULT_ROLE_ID": bao.role_ids["readonly"],
        "VAULT_SECRET_ID": stale_secret_id,
    }

    run = _health(modules, {**vault_conn, **approle_auth}, env=env)

    _assert_passed_with_push_capabilities(run)
    logins = _requests(run, "auth/approle/login")
    assert [entry["request"]["data"]["role_id"] for entry in logins] == [approle_auth["role_id"]]
    _capability_check_token(run)


# -- TLS ------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["path", "inline_pem"])
def test_explicit_ca_cert_wins_over_system_bundle_environment(bao, module_process, approle_auth, tmp_path, form):
    ca_cert = bao.ca_cert if form == "path" else Path(bao.ca_cert).read_text()
    module_tmp = tmp_path / "module-tmp"
    module_tmp.mkdir()

    # A process of its own: Python reads TMPDIR once per process, and the module's temporary file must land here.
    run = module_process.run(
        MODULE,
        {**TARGET, "url": bao.addr, "ca_cert": ca_cert, **approle_auth},
        env={**SYSTEM_BUNDLE_ENV, "TMPDIR": str(module_tmp)},
    )

    _assert_passed_with_push_capabilities(run)
    _assert_one_login_then_revoked(bao, run, "auth/approle/login")
    # An inline CA is written to a temporary file for requests; it is removed afterwards.
    assert [entry.name for entry in module_tmp.iterdir() if entry.name.startswith("certautopilot-ca-")] == []


def test_without_ca_cert_tls_verification_fails_with_ca_cert_hint(bao, modules):
    run = modules.run_module(MODULE, {"url": bao.addr, "retries": 0, "auth_method": "none"}, env=SYSTEM_BUNDLE_ENV)

    assert run.failed
    assert "certificate verify failed" in run.msg or "TLS" in run.msg
    assert "ca_cert" in run.msg


def test_without_ca_cert_the_requests_ca_bundle_of_the_environment_is_trusted(bao, modules):
    """The documented meaning of an unset ca_cert, read once per run (the session does not re-read the environment)."""
    run = modules.run_module(
        MODULE, {"url": bao.addr, "retries": 0, "auth_method": "none"}, env={"REQUESTS_CA_BUNDLE": bao.ca_cert}
    )

    assert not run.failed, run.msg


@pytest.mark.parametrize("source", ["option", "VAULT_SKIP_VERIFY"])
def test_validate_certs_false_connects_without_ca_and_warns(bao, modules, source):
    args: dict[str, t.Any] = {"url": bao.addr, "auth_method": "none"}
    env = dict(SYSTEM_BUNDLE_ENV)
    if source == "option":
        args["validate_certs"] = False
    else:
        env["VAULT_SKIP_VERIFY"] = "true"

    run = modules.run_module(MODULE, args, env=env)

    assert not run.failed, run.msg
    assert run.result["initialized"] is True
    assert any("validate_certs" in warning for warning in run.result.get("warnings", []))


# -- plain http, a url that may carry a credential, the inline client key on disk -----------------


def test_plain_http_url_works_and_warns_that_credentials_travel_in_clear(bao, modules, approle_auth):
    with FaultProxy(bao.addr, bao.ca_cert) as plain_http:
        run = _health(modules, {"url": plain_http.url, **approle_auth})
    over_tls = _health(modules, {"url": bao.addr, "ca_cert": bao.ca_cert, **approle_auth})

    _assert_passed_with_push_capabilities(run)
    assert any("plain http://" in warning and "in clear" in warning for warning in run.result.get("warnings", []))
    _assert_passed_with_push_capabilities(over_tls)
    assert not any("plain http://" in warning for warning in over_tls.result.get("warnings", []))


@pytest.mark.parametrize("carried", URL_CARRIERS)
def test_url_with_query_or_fragment_is_refused_before_any_request_without_showing_it(bao, refused_at_vvv, carried):
    # At -vvv Ansible prints invocation.module_args, url included: a refused url is masked there too (the run's
    # scan holds each url and the credential it carries).
    msg = refused_at_vvv.refusal(f"url {carried}")

    assert "url must not hold a query string" in msg
    assert bao.addr not in msg
    assert refused_at_vvv.run.requests == []


def test_url_with_a_password_holding_a_slash_is_refused_as_credentials_without_showing_it(bao, refused_at_vvv):
    msg = refused_at_vvv.refusal("url password with a slash")

    assert msg.startswith("url must not hold credentials"), msg
    assert bao.addr.split("://", 1)[1] not in msg
    assert refused_at_vvv.run.requests == []


def _pid_recording_python(workdir: Path) -> tuple[Path, Path]:
    """A python for ModuleProcess that records the pid the module runs under (exec keeps it)."""
    pid_file = workdir / "module.pid"
    wrapper = workdir / "python-recording-pid"
    wrapper.write_text(f'#!/bin/sh\necho $$ > "{pid_file}"\nexec "{sys.executable}" "$@"\n')
    wrapper.chmod(0o700)
    return wrapper, pid_file


def _files_holding(roots: t.Iterable[Path], key_pem: str) -> list[str]:
    return [
        str(file)
        for root in roots
        for file in root.rglob("*")
        if file.is_file() and find_leaks([file.read_text(errors="replace")], key_pem)
    ]


def test_inline_client_key_never_reaches_disk_even_when_the_module_is_killed(bao, tmp_path):
    """Python's ssl loads keys from paths: on Linux the key is an anonymous memory file, which a SIGKILL frees."""
    key_pem = Path(bao.client_key).read_text()
    python, pid_file = _pid_recording_python(tmp_path)
    runner = ModuleProcess(tmp_path / "modules", python=str(python))
    module_tmp = tmp_path / "module-tmp"
    module_tmp.mkdir()
    args = {
        "auth_method": "cert",
        "role": "certs",
        "client_cert": Path(bao.client_cert).read_text(),
        "client_key": key_pem,
        "timeout": 60,
        "retries": 0,
    }
    runs = []
    with BlackHole() as stalled_server:
        thread = threading.Thread(
            target=lambda: runs.append(
                runner.run(MODULE, {**TARGET, "url": stalled_server.url, **args}, env={"TMPDIR": str(module_tmp)})
            )
        )
        thread.start()
        try:
            deadline = time.monotonic() + 30
            # The module has loaded the key and waits for the TLS handshake that never comes. (Its arguments
            # file in tmp_path/modules holds the key as Ansible's module payload does: not ours to remove.)
            while stalled_server.accepted == 0 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert stalled_server.accepted, "the module never connected"
            pid = int(pid_file.read_text())
            while_running = _files_holding([module_tmp], key_pem)
            descriptors = [os.readlink(link) for link in Path(f"/proc/{pid}/fd").iterdir()]
        finally:
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
            thread.join(timeout=30)

    assert runs, "the module did not end after SIGKILL"
    assert runs[0].rc == -signal.SIGKILL
    assert while_running == []
    assert any(target.startswith("/memfd:certautopilot-client-key") for target in descriptors), descriptors
    assert _files_holding([module_tmp], key_pem) == []


# -- what a token auth user trips over first -------------------------------------------------------


def test_a_token_the_server_does_not_know_is_refused_by_name_before_any_other_request(modules, bao, vault_conn):
    leaf = pki.make_chain("unknown-token.example.com").leaf
    args = {**vault_conn, "auth_method": "token", "token": f"s.{uuid.uuid4().hex}"}
    push = {**args, "path": "certs/unknown-token", "certificate": leaf.cert_pem, "private_key": leaf.key_pem}

    pushed = modules.run_module("vault_cert_push", push)
    health = modules.run_module(MODULE, {**args, **TARGET})

    for run in (pushed, health):
        assert run.failed
        assert "token not accepted: the server does not know it" in run.msg, run.msg
        assert [entry["request"]["path"] for entry in run.requests] == ["auth/token/lookup-self"]
    assert "mount" not in pushed.msg
    assert [check["name"] for check in health.result["checks"] if not check["ok"]] == ["login"]
    assert bao.kv_versions("secret", "certs/unknown-token") == {}


def test_a_known_token_that_may_not_look_itself_up_is_used_all_the_same(modules, bao, vault_conn):
    everything_but_lookup_self = 'path "*" { capabilities = ["create", "read", "update"] }'
    rules = f'path "auth/token/lookup-self" {{ capabilities = ["deny"] }}\n{everything_but_lookup_self}'
    status, body = bao.api("PUT", "sys/policies/acl/no-lookup-self", {"policy": rules})
    assert status == 204, body
    status, body = bao.api("POST", "auth/token/create", {"policies": ["no-lookup-self"], "no_default_policy": True})
    assert status == 200, body
    token = body["auth"]["client_token"]

    run = modules.run_module(MODULE, {**vault_conn, "auth_method": "token", "token": token, **TARGET})

    assert not run.failed, run.msg
    assert [check["name"] for check in run.result["checks"]][:2] == ["server", "login"]
    # The check ran, was denied, and the run went on with the token.
    assert "auth/token/lookup-self" in [entry["request"]["path"] for entry in run.requests]


def test_vault_addr_and_vault_token_alone_log_in_with_the_token(modules, bao):
    token = bao.login("approle", {"role_id": bao.role_ids["certs"], "secret_id": bao.new_approle_secret_id("certs")})
    leaf = pki.make_chain("env-token.example.com").leaf
    env = {"VAULT_ADDR": bao.addr, "VAULT_CACERT": bao.ca_cert, "VAULT_TOKEN": token}

    run = modules.run_module(
        "vault_cert_push",
        {"path": "certs/env-token", "certificate": leaf.cert_pem, "private_key": leaf.key_pem},
        env=env,
    )

    assert not run.failed, run.msg
    assert {entry["request"]["client_token"] for entry in run.requests if entry["request"]["path"] != "sys/health"} == {
        token
    }
    assert not [entry for entry in run.requests if entry["request"]["path"].startswith("auth/approle")]
    assert bao.kv_version_numbers("certs/env-token") == [1]


def test_a_login_that_lacks_its_credentials_names_auth_method_as_the_way_to_another(modules, bao, vault_conn):
    run = modules.run_module(MODULE, {**vault_conn, "role_id": bao.role_ids["certs"], **TARGET})

    assert run.failed
    assert "auth_method approle needs secret_id" in run.msg, run.msg
    assert "auth_method (or VAULT_AUTH_METHOD) chooses another login: jwt, cert, token" in run.msg
    assert run.requests == []


@pytest.mark.parametrize("source", ["jwt", "jwt_file", "empty approle"])
def test_another_logins_credentials_without_auth_method_never_let_the_environments_token_log_in(
    modules, bao, vault_conn, tmp_path, source
):
    # A task that asks for a JWT login and forgot auth_method, or whose AppRole variables rendered empty (an unset
    # survey field), must not run as whatever token the module's host has in VAULT_TOKEN (an operator's, a CI
    # job's): another identity than the one the task names.
    status, body = bao.api("POST", "auth/token/create", {"policies": ["certs"]})
    assert status == 200, body
    environment_token = body["auth"]["client_token"]
    jwt = bao.sign_jwt(sub="implied")
    (tmp_path / "jwt").write_text(jwt)
    credentials = {
        "jwt": {"jwt": jwt, "role": "certs"},
        "jwt_file": {"jwt_file": str(tmp_path / "jwt"), "role": "certs"},
        "empty approle": {"role_id": "", "secret_id": ""},
    }[source]
    leaf = pki.make_chain("implied-login.example.com").leaf
    path = f"certs/implied-{uuid.uuid4().hex[:8]}"

    run = modules.run_module(
        "vault_cert_push",
        {**vault_conn, **credentials, "path": path, "certificate": leaf.cert_pem, "private_key": leaf.key_pem},
        env={"VAULT_TOKEN": environment_token},
        secrets=[jwt],
    )

    assert run.failed
    assert "auth_method approle needs role_id, secret_id" in run.msg, run.msg
    assert run.requests == []
    assert bao.kv_versions("secret", path) == {}


def test_a_token_is_checked_in_the_namespace_it_is_used_in_never_in_auth_namespace(modules, bao, vault_conn):
    # auth_namespace is where a login goes; a token has none. VAULT_AUTH_NAMESPACE set on the host for the AppRole
    # logins of other tasks must neither fail a token run that writes elsewhere nor receive the token.
    token = bao.login(
        "approle",
        {"role_id": bao.ns_role_id, "secret_id": bao.new_approle_secret_id("certs", namespace=bao.namespace)},
        namespace=bao.namespace,
    )
    leaf = pki.make_chain("token-namespace.example.com").leaf
    path = f"certs/token-namespace-{uuid.uuid4().hex[:8]}"
    push = {**vault_conn, "token": token, "namespace": bao.namespace, "path": path}

    run = modules.run_module(
        "vault_cert_push",
        {**push, "certificate": leaf.cert_pem, "private_key": leaf.key_pem},
        env={"VAULT_AUTH_NAMESPACE": "approle-logins"},
    )

    assert not run.failed, run.msg
    assert run.requests[0]["request"]["path"] == "auth/token/lookup-self"
    assert {entry["request"]["namespace"]["path"] for entry in run.requests} == {f"{bao.namespace}/"}
    assert bao.kv_version_numbers(path, namespace=bao.namespace) == [1]

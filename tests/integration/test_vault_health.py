"""vault_health against a real OpenBao server: what it reports, what it refuses, and that it changes nothing.

SPEC sections: "vault_health", "Error texts", "Reliability". The module runs in-process (``modules``);
one run goes through ansible-playbook at -vvv with --diff (what the controller displays), and the tests
of the memory a refused answer may take run it as its own process. The harness scans every run for the
credentials it was given and the tokens it used.
"""

from __future__ import annotations

import contextlib
import http.server
import socket
import sys
import threading
import time
import typing as t
import uuid
from pathlib import Path

import pki
import pytest
from bao import BaoServer
from fault_proxy import FaultProxy
from module_process import ModuleProcess
from push_runs import approle

MODULE = "vault_health"
NO_SUCH_NAMESPACE = "no-such-ns"
MIB = 2**20
# What a module process holds before any answer (Ansible's module code, hvac, requests, cryptography) is
# about 60 MiB; a refused answer may add the 64 MiB the client reads before it stops.
REFUSED_ANSWER_MAX_RSS_MIB = 200


# -- helpers -------------------------------------------------------------------


def _secret_path(label: str) -> str:
    return f"certs/health-{label}-{uuid.uuid4().hex[:8]}.example.com"


def _tokens_used(bao, run) -> set[str]:
    """Client tokens that the run's requests carried (the audit log is raw)."""
    return {
        entry["request"]["client_token"]
        for entry in run.requests
        if entry["request"].get("client_token") and entry["request"]["client_token"] != bao.root_token
    }


def _check(run, name: str) -> dict[str, t.Any]:
    found = [check for check in run.result.get("checks", []) if check["name"] == name]
    assert len(found) == 1, f"no single check {name!r} in {run.result.get('checks')}"
    return found[0]


def _create_token(bao, *policies: str) -> str:
    status, body = bao.api("POST", "auth/token/create", {"policies": list(policies), "ttl": "5m"})
    assert status == 200, body
    return body["auth"]["client_token"]


def _capabilities_of_role(bao, role: str, location: str) -> list[str]:
    token = bao.login("approle", {"role_id": bao.role_ids[role], "secret_id": bao.new_approle_secret_id(role)})
    status, body = bao.api("POST", "sys/capabilities-self", {"paths": [location]}, token=token)
    assert status == 200, body
    return sorted(body["data"][location])


@contextlib.contextmanager
def _silent_listener() -> t.Iterator[str]:
    """A TCP listener that accepts connections and never sends a byte; yields its https URL."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept_and_hold() -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError):
                connection, _peer = server.accept()
                held.append(connection)

    thread = threading.Thread(target=accept_and_hold, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=5)
        for connection in held:
            connection.close()
        server.close()


def _rss_measuring_python(workdir: Path) -> tuple[Path, Path]:
    """A python for ModuleProcess that runs the module as its one child, then writes the child's peak RSS (KiB)."""
    rss_file = workdir / "peak-rss-kib"
    wrapper = workdir / "python-measuring-rss"
    wrapper.write_text(
        f"#!{sys.executable}\n"
        "import resource, subprocess, sys\n"
        f"code = subprocess.call([{sys.executable!r}, *sys.argv[1:]])\n"
        f"open({str(rss_file)!r}, 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))\n"
        "sys.exit(code)\n"
    )
    wrapper.chmod(0o700)
    return wrapper, rss_file


def _closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"https://127.0.0.1:{port}"


# -- server status -------------------------------------------------------------


def test_health_with_auth_method_none_reports_server_status_as_sys_health_does(bao, modules, vault_conn):
    run = modules.run_module(MODULE, {**vault_conn, "auth_method": "none"})

    status, health = bao.api("GET", "sys/health", token="")
    assert status == 200
    assert not run.failed, run.msg
    assert run.changed is False
    assert run.result["initialized"] is True
    assert run.result["sealed"] is False
    assert run.result["standby"] is False
    assert run.result["server_version"] == health["version"]
    assert run.result["cluster_name"] == health["cluster_name"]
    assert [(check["name"], check["ok"]) for check in run.result["checks"]] == [("server", True)]
    # Without a login nothing beyond sys/health is looked at.
    assert "kv_version" not in run.result
    assert "capabilities" not in run.result
    # sys/health answers without a token and is not audited: no login, nor anything else, was sent.
    assert run.requests == []


def test_health_logs_in_as_the_writers_do_by_default(modules, vault_conn, approle_auth):
    credentials = {key: value for key, value in approle_auth.items() if key != "auth_method"}

    run = modules.run_module(MODULE, {**vault_conn, **credentials, "mount": "secret"})
    without_credentials = modules.run_module(MODULE, {**vault_conn})

    assert not run.failed, run.msg
    assert [check["name"] for check in run.result["checks"]] == ["server", "login", "mount"]
    assert "auth/approle/login" in [entry["request"]["path"] for entry in run.requests]
    assert without_credentials.failed
    assert "auth_method approle needs role_id, secret_id" in without_credentials.msg


def test_health_of_sealed_server_fails_and_passes_again_once_unsealed(modules, tmp_path):
    root_token = f"throwaway-{uuid.uuid4().hex}"
    server = BaoServer.start_dev(tmp_path / "sealable", root_token=root_token, audit=False)
    try:
        conn = {"url": server.addr, "ca_cert": server.ca_cert, "auth_method": "none"}
        server.seal()

        # The server's root token and unseal key are never given to the module: it must not show them either way.
        throwaway_secrets = [root_token, server.unseal_key]
        sealed = modules.run_module(MODULE, conn, secrets=throwaway_secrets)

        server.unseal()
        unsealed = modules.run_module(MODULE, conn, secrets=throwaway_secrets)
    finally:
        server.stop()

    assert sealed.failed
    assert "sealed" in sealed.msg
    assert server.addr in sealed.msg
    assert sealed.result["sealed"] is True
    assert _check(sealed, "server")["ok"] is False
    assert not unsealed.failed, unsealed.msg
    assert unsealed.result["sealed"] is False
    assert _check(unsealed, "server")["ok"] is True


# -- authenticated checks --------------------------------------------------------


def test_health_with_certs_role_passes_push_and_rollback_checks_and_changes_nothing(
    bao, ansible, vault_conn, approle_auth
):
    path = _secret_path("certs-role")
    bao.api("POST", f"secret/data/{path}", {"data": {"certificate": "existing"}})
    bao.api("POST", f"secret/metadata/{path}", {"max_versions": 7})
    versions_before = bao.kv_versions("secret", path)

    # Through ansible-playbook at -vvv with --diff: what the controller displays of a health run.
    run = ansible.run_module(
        MODULE,
        {**vault_conn, **approle_auth, "mount": "secret", "path": path, "check_rollback": True, "min_versions": 5},
        verbosity=3,
        diff=True,
    )

    tokens = _tokens_used(bao, run)
    assert not run.failed, run.msg
    assert run.changed is False
    assert run.result["kv_version"] == 2
    assert sorted(run.result["capabilities"]) == _capabilities_of_role(bao, "certs", f"secret/data/{path}")
    assert {"read", "create", "update"} <= set(run.result["capabilities"])
    assert run.result["max_versions"] == 7
    assert [(check["name"], check["ok"]) for check in run.result["checks"]] == [
        ("server", True),
        ("login", True),
        ("mount", True),
        ("push_capabilities", True),
        ("rollback_capabilities", True),
        ("rollback_metadata", True),
        ("max_versions", True),
    ]
    assert bao.kv_versions("secret", path) == versions_before
    writes = [
        entry
        for entry in run.requests
        if entry["request"]["path"].startswith("secret/") and entry["request"]["operation"] not in ("read", "list")
    ]
    assert writes == []
    assert len(tokens) == 1


def test_health_with_readonly_role_names_path_and_missing_capabilities(bao, modules, vault_conn):
    secret_id = bao.new_approle_secret_id("readonly")

    run = modules.run_module(
        MODULE,
        {
            **vault_conn,
            "auth_method": "approle",
            "role_id": bao.role_ids["readonly"],
            "secret_id": secret_id,
            "mount": "secret",
            "path": "certs/example.com",
            "check_rollback": True,
        },
    )

    assert run.failed
    assert "permission denied" in run.msg
    assert "secret/data/certs/example.com" in run.msg
    assert "update" in run.msg
    assert "create" in run.msg
    assert run.result["capabilities"] == ["read"]
    assert _check(run, "push_capabilities")["ok"] is False
    assert _check(run, "rollback_capabilities")["ok"] is False
    assert "update" in _check(run, "rollback_capabilities")["msg"]
    assert _check(run, "rollback_metadata")["ok"] is True
    assert bao.kv_versions("secret", "certs/example.com") == {}


def test_min_versions_above_mount_max_versions_fails_naming_the_mount_setting(bao, modules, vault_conn):
    # The approle roles may not read small/config; this token may, so the mount's setting is known.
    bao.api(
        "PUT", "sys/policies/acl/health-small-config", {"policy": 'path "small/config" { capabilities = ["read"] }'}
    )
    token = _create_token(bao, "certs", "health-small-config")
    status, config = bao.api("GET", "small/config")
    assert status == 200
    assert config["data"]["max_versions"] == 2

    run = modules.run_module(
        MODULE,
        {
            **vault_conn,
            "auth_method": "token",
            "token": token,
            "mount": "small",
            "path": _secret_path("small"),
            "min_versions": 5,
        },
    )

    assert run.failed
    assert "max_versions is 2" in run.msg
    assert "min_versions 5" in run.msg
    assert run.result["max_versions"] == 2
    assert _check(run, "max_versions")["ok"] is False


def test_secret_max_versions_overrides_the_mount_setting_for_min_versions(bao, modules, vault_conn):
    # KV v2 prunes by the secret's own max_versions when it has one, whatever the
    # mount's: small/ keeps 2, this secret keeps 7, as the server shows below.
    bao.api(
        "PUT", "sys/policies/acl/health-small-config", {"policy": 'path "small/config" { capabilities = ["read"] }'}
    )
    token = _create_token(bao, "certs", "health-small-config")
    path = _secret_path("small-own-setting")
    bao.api("POST", f"small/metadata/{path}", {"max_versions": 7})
    for number in range(4):
        bao.api("POST", f"small/data/{path}", {"data": {"n": number}})
    assert len(bao.kv_versions("small", path)) == 4

    run = modules.run_module(
        MODULE,
        {**vault_conn, "auth_method": "token", "token": token, "mount": "small", "path": path, "min_versions": 5},
    )

    assert not run.failed, run.msg
    assert run.result["max_versions"] == 7
    assert _check(run, "max_versions")["ok"] is True


def test_min_versions_with_unreadable_mount_config_fails_as_unknown(bao, modules, vault_conn, approle_auth):
    # Role certs may read the secret's metadata (no own max_versions) but not small/config.
    certs_token = bao.login(
        "approle", {"role_id": bao.role_ids["certs"], "secret_id": bao.new_approle_secret_id("certs")}
    )
    status, _body = bao.api("GET", "small/config", token=certs_token)
    assert status == 403

    run = modules.run_module(
        MODULE,
        {**vault_conn, **approle_auth, "mount": "small", "path": _secret_path("small-unknown"), "min_versions": 5},
    )

    assert run.failed
    assert "unknown" in run.msg
    assert "min_versions 5" in run.msg
    assert "max_versions" not in run.result
    assert _check(run, "max_versions")["ok"] is False


def test_kv1_mount_fails_saying_only_kv2_is_supported(bao, modules, vault_conn, approle_auth):
    run = modules.run_module(MODULE, {**vault_conn, **approle_auth, "mount": "kv1", "path": "certs/example.com"})

    assert run.failed
    assert "KV v1" in run.msg
    assert "only KV v2" in run.msg
    assert _check(run, "mount")["ok"] is False
    assert "kv_version" not in run.result


@pytest.mark.parametrize("auth_method", ["approle", "token"])
def test_unknown_namespace_fails_with_namespace_hint(bao, modules, vault_conn, auth_method):
    if auth_method == "approle":
        credentials = {"role_id": bao.role_ids["certs"], "secret_id": bao.new_approle_secret_id("certs")}
    else:
        credentials = {"token": _create_token(bao, "certs")}

    run = modules.run_module(
        MODULE,
        {
            **vault_conn,
            **credentials,
            "auth_method": auth_method,
            "namespace": NO_SUCH_NAMESPACE,
            "mount": "secret",
            "path": "certs/example.com",
        },
    )

    assert run.failed
    assert "namespace not found" in run.msg
    assert NO_SUCH_NAMESPACE in run.msg
    assert "OpenBao 2.3" in run.msg


# -- transport failures ------------------------------------------------------------


def test_closed_port_fails_as_connection_refused_naming_the_url(modules):
    url = _closed_port_url()

    run = modules.run_module(MODULE, {"url": url, "retries": 1, "validate_certs": True, "auth_method": "none"})

    assert run.failed
    assert url in run.msg
    assert "connection refused" in run.msg
    # A connection refused before any answer is transient: retried once.
    assert "2 attempts" in run.msg


def test_listener_that_never_answers_fails_as_timed_out_naming_the_url(modules, bao):
    with _silent_listener() as url:
        run = modules.run_module(
            MODULE, {"url": url, "ca_cert": bao.ca_cert, "timeout": 2, "retries": 0, "auth_method": "none"}
        )

    assert run.failed
    assert url in run.msg
    assert "timed out" in run.msg


def test_timeout_bounds_the_whole_request_against_an_answer_of_one_byte_a_second(bao, modules):
    """`timeout` bounds connect, send and every byte of the answer, not each wait for a byte (SPEC Round 3)."""
    timeout = 2
    with FaultProxy(bao.addr, bao.ca_cert) as proxy:
        # Thirty bytes, then the proxy drops the connection: a per-read timeout takes 30 s, never hangs.
        proxy.add_rule("GET", r"^sys/health$", trickle=1.0, trickle_bytes=30, times=None)
        started = time.monotonic()
        run = modules.run_module(MODULE, {"url": proxy.url, "timeout": timeout, "retries": 0, "auth_method": "none"})
        elapsed = time.monotonic() - started

    assert run.failed
    assert proxy.url in run.msg
    assert "timed out" in run.msg
    assert "GET sys/health" in run.msg
    # The module runs in this process: the time is the request's.
    assert elapsed < timeout + 5, f"took {elapsed:.1f}s with timeout={timeout}"


@pytest.mark.parametrize("length", ["declared", "chunked"])
def test_an_oversized_answer_is_refused_naming_the_request_with_bounded_memory(bao, tmp_path, length):
    python, rss_file = _rss_measuring_python(tmp_path)
    runner = ModuleProcess(tmp_path / "modules", python=str(python))
    with FaultProxy(bao.addr, bao.ca_cert) as proxy:
        # A valid answer, padded with spaces to 256 MiB: still the same JSON, four times the cap.
        proxy.add_rule("GET", r"^sys/health$", pad_to=256 * MIB, pad_declared=length == "declared", times=None)
        run = runner.run(MODULE, {"url": proxy.url, "retries": 0, "auth_method": "none"})

    assert run.failed
    assert "GET sys/health answered more than 64 MiB" in run.msg
    assert len(run.stdout) < 10_000
    peak_mib = int(rss_file.read_text()) / 1024
    assert peak_mib < REFUSED_ANSWER_MAX_RSS_MIB, f"the module process peaked at {peak_mib:.0f} MiB"


def test_an_oversized_redirect_is_refused_before_it_is_followed(bao, tmp_path):
    python, rss_file = _rss_measuring_python(tmp_path)
    runner = ModuleProcess(tmp_path / "modules", python=str(python))
    with FaultProxy(bao.addr, bao.ca_cert) as proxy:
        # A redirect to the same origin (followed), whose body runs to 256 MiB with no declared length.
        proxy.add_rule("GET", r"^sys/health$", redirect=proxy.url, pad_to=256 * MIB, pad_declared=False)
        run = runner.run(MODULE, {"url": proxy.url, "retries": 0, "auth_method": "none"})

    assert run.failed
    assert "GET sys/health answered more than 64 MiB" in run.msg
    peak_mib = int(rss_file.read_text()) / 1024
    assert peak_mib < REFUSED_ANSWER_MAX_RSS_MIB, f"the module process peaked at {peak_mib:.0f} MiB"


# -- the first hour: connection mistakes named with their fix ----------------------------------------


def test_plain_http_to_the_tls_port_says_to_use_https(modules, bao):
    url = bao.addr.replace("https://", "http://")

    run = modules.run_module(MODULE, {"url": url, "auth_method": "none"})

    assert run.failed
    assert f"{url} is a TLS listener" in run.msg, run.msg
    assert "use https:// in url" in run.msg
    assert "HTTP 400: HTTP 400" not in run.msg


def test_https_to_a_plain_http_listener_says_to_use_http_not_ca_cert(modules, bao):
    with _plain_http_listener() as port:
        run = modules.run_module(
            MODULE, {"url": f"https://127.0.0.1:{port}", "ca_cert": bao.ca_cert, "retries": 0, "auth_method": "none"}
        )

    assert run.failed
    assert "use http:// in url" in run.msg, run.msg
    assert "Set ca_cert" not in run.msg


def test_a_closed_port_is_connection_refused_naming_the_address_and_given_up_in_about_ten_seconds(modules):
    url = _closed_port_url()

    run = modules.run_module(MODULE, {"url": url, "auth_method": "none"})

    assert run.failed
    assert f"connection refused by {url}" in run.msg, run.msg
    # Retries wait 0.5 s doubling (+/-20 %): the fifth wait would pass 10 s, so the first request stops there,
    # well before the default 8 retries (about 40 s) a server that once answered gets.
    assert "gave up after 5 attempts" in run.msg


def test_a_path_alone_checks_the_mount_secret_as_every_other_module_does(modules, vault_conn, approle_auth):
    run = modules.run_module(MODULE, {**vault_conn, **approle_auth, "path": "certs/example.com"})

    assert not run.failed, run.msg
    assert [check["name"] for check in run.result["checks"]] == ["server", "login", "mount", "push_capabilities"]
    assert run.result["checks"][2]["msg"] == "secret is a KV v2 mount"


def test_a_denied_capability_names_the_policy_path_and_capability_without_the_multierror_framing(
    modules, bao, vault_conn
):
    leaf = pki.make_chain("denied-hint.example.com").leaf
    args = {**vault_conn, **approle(bao, "readonly"), "path": "certs/denied-hint"}

    run = modules.run_module("vault_cert_push", {**args, "certificate": leaf.cert_pem, "private_key": leaf.key_pem})

    assert run.failed
    assert (
        "the token's policies need the 'create' and 'update' capability on path \"secret/data/certs/denied-hint\""
        in run.msg
    ), run.msg
    assert "bao token capabilities" not in run.msg
    assert "error occurred" not in run.msg and "\t*" not in run.msg


@contextlib.contextmanager
def _plain_http_listener() -> t.Iterator[int]:
    """A plain HTTP server on loopback (no TLS): what a Vault dev server without -dev-tls is."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()

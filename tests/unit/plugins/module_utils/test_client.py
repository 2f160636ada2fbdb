# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Connection settings, retry waits and error translation: the pure parts of _client."""

from __future__ import annotations

import os
import socket
import stat
import tempfile
import time

import pytest
import requests

from ansible_collections.certautopilot.vault.plugins.module_utils import _client
from ansible_collections.certautopilot.vault.plugins.module_utils._errors import VaultCertError


def _params(**overrides):
    params = {"url": "https://vault.example.com:8200/", "timeout": 30, "retries": 5}
    params.update(overrides)
    return params


def test_backoff_doubles_from_half_a_second_to_at_most_eight():
    waits = _client.backoff_waits(7, jitter=lambda: 0.5)
    assert waits == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_default_retry_window_outlasts_a_raft_election_under_default_timing():
    # A 3-node OpenBao cluster with default raft timing took 11 to 21 s to elect a leader here.
    low = sum(_client.backoff_waits(_client.DEFAULT_RETRIES, jitter=lambda: 0.0))
    high = sum(_client.backoff_waits(_client.DEFAULT_RETRIES, jitter=lambda: 1.0))
    assert 30 <= low < 39.5 < high <= 48


def test_settings_strip_trailing_slash_of_url():
    assert _client.ConnectionSettings.from_params(_params()).url == "https://vault.example.com:8200"


def test_settings_refuse_missing_url():
    with pytest.raises(VaultCertError, match="VAULT_ADDR"):
        _client.ConnectionSettings.from_params(_params(url=None))


@pytest.mark.parametrize(
    ("env_value", "expected"), [(None, True), ("true", False), ("1", False), ("false", True), ("0", True)]
)
def test_validate_certs_unset_follows_inverted_vault_skip_verify(monkeypatch, env_value, expected):
    monkeypatch.delenv("VAULT_SKIP_VERIFY", raising=False)
    if env_value is not None:
        monkeypatch.setenv("VAULT_SKIP_VERIFY", env_value)
    assert _client.ConnectionSettings.from_params(_params(validate_certs=None)).validate_certs is expected


def test_explicit_validate_certs_wins_over_environment(monkeypatch):
    monkeypatch.setenv("VAULT_SKIP_VERIFY", "true")
    assert _client.ConnectionSettings.from_params(_params(validate_certs=True)).validate_certs is True


def _temp_pem_files():
    return {name for name in os.listdir(tempfile.gettempdir()) if name.startswith("certautopilot-")}


@pytest.fixture(params=["memfd", "private_directory"])
def inline_pem_store(request, monkeypatch, tmp_path):
    """Where inline PEM text goes: Linux's anonymous memory files, or the private directory used elsewhere.

    The temporary directory is this test's own: other suites running beside it (the matrix runs two cores at
    once, integration pushes files) create certautopilot- entries in the shared one.
    """
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    if request.param == "memfd" and not hasattr(os, "memfd_create"):
        pytest.skip("no memfd_create on this system")
    if request.param == "private_directory":
        monkeypatch.delattr(os, "memfd_create", raising=False)
    return request.param


def _assert_stored(path, text, store):
    if store == "memfd":
        # An anonymous memory file: a /proc/self/fd path, no name on any file system.
        assert path.startswith("/proc/self/fd/")
        assert os.readlink(path).startswith("/memfd:certautopilot-")
    else:
        assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with open(path) as handle:
        assert handle.read() == text


def test_inline_ca_pem_is_kept_private_and_close_removes_it(ec_chain, inline_pem_store):
    before = _temp_pem_files()
    client = _client.VaultClient(_client.ConnectionSettings.from_params(_params(ca_cert=ec_chain.root.cert_pem)))
    path = client._adapter.session.verify
    _assert_stored(path, ec_chain.root.cert_pem, inline_pem_store)
    created = _temp_pem_files() - before
    assert len(created) == (0 if inline_pem_store == "memfd" else 1)
    client.close()
    assert not os.path.exists(path)
    assert _temp_pem_files() - before == set()


def test_inline_client_cert_and_key_are_accepted_and_removed_by_close(ec_chain, inline_pem_store):
    before = _temp_pem_files()
    params = _params(client_cert=ec_chain.leaf.cert_pem, client_key=ec_chain.leaf.key_pem)
    client = _client.VaultClient(_client.ConnectionSettings.from_params(params))
    cert_path, key_path = client._adapter.session.cert
    _assert_stored(cert_path, ec_chain.leaf.cert_pem, inline_pem_store)
    _assert_stored(key_path, ec_chain.leaf.key_pem, inline_pem_store)
    client.close()
    assert not os.path.exists(key_path)
    assert _temp_pem_files() - before == set()


def test_private_directory_is_removed_at_exit_when_close_is_never_reached(ec_chain, monkeypatch):
    registered = []
    monkeypatch.delattr(os, "memfd_create", raising=False)
    monkeypatch.setattr(_client.atexit, "register", registered.append)
    params = _params(client_cert=ec_chain.leaf.cert_pem, client_key=ec_chain.leaf.key_pem)
    client = _client.VaultClient(_client.ConnectionSettings.from_params(params))
    _cert_path, key_path = client._adapter.session.cert
    (exit_hook,) = registered
    exit_hook()
    assert not os.path.exists(os.path.dirname(key_path))


def test_client_key_that_is_no_file_is_refused_without_echoing_it(ec_chain):
    value = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQ secret-looking"
    params = _params(client_cert=ec_chain.leaf.cert_pem, client_key=value)
    with pytest.raises(VaultCertError, match="client_key is neither a readable file nor inline PEM text") as error:
        _client.VaultClient(_client.ConnectionSettings.from_params(params))
    assert value not in str(error.value)


def test_client_key_that_does_not_match_is_refused_and_leaves_no_file(ec_chain, rsa_chain, inline_pem_store):
    before = _temp_pem_files()
    params = _params(client_cert=ec_chain.leaf.cert_pem, client_key=rsa_chain.leaf.key_pem)
    with pytest.raises(VaultCertError, match="could not be loaded") as error:
        _client.VaultClient(_client.ConnectionSettings.from_params(params))
    assert "PRIVATE KEY" not in str(error.value)
    assert _temp_pem_files() - before == set()


def test_missing_client_cert_file_is_refused_naming_the_option(tmp_path):
    with pytest.raises(VaultCertError, match="^client_cert is neither a readable file") as error:
        _client.VaultClient(_client.ConnectionSettings.from_params(_params(client_cert=str(tmp_path / "missing.pem"))))
    assert "missing.pem" not in str(error.value)


def test_client_key_without_client_cert_is_refused():
    with pytest.raises(VaultCertError, match="client_key is set without client_cert"):
        _client.ConnectionSettings.from_params(_params(client_key="/etc/ssl/client.key"))


@pytest.mark.parametrize(
    "url",
    [
        "https://user:hunter2-pw@vault.example.com:8200",
        "https://hunter2-pw@vault.example.com",
        "ftp://u:hunter2-pw@h",
        "https://admin:hunter2/pw@vault.example.com:8200",  # the "/" ends the host part before the "@"
    ],
)
def test_url_with_credentials_is_refused_without_showing_them(url):
    with pytest.raises(VaultCertError, match="must not hold credentials") as error:
        _client.ConnectionSettings.from_params(_params(url=url))
    assert "hunter2" not in str(error.value)
    assert "vault.example.com" not in str(error.value)


def test_ca_cert_path_that_does_not_exist_is_refused(tmp_path):
    with pytest.raises(VaultCertError, match="ca_cert"):
        _client.VaultClient(_client.ConnectionSettings.from_params(_params(ca_cert=str(tmp_path / "missing.pem"))))


def test_api_path_quotes_segments_but_keeps_slashes():
    assert _client.api_path("secret", "data", "certs/a b") == "secret/data/certs/a%20b"


def test_connection_refused_counts_as_never_sent():
    try:
        requests.get("http://127.0.0.1:9/", timeout=2)
    except requests.exceptions.ConnectionError as exc:
        assert _client._never_sent(exc)
    else:  # pragma: no cover - port 9 (discard) is closed on test machines
        pytest.fail("expected a refused connection")


def test_read_timeout_is_not_never_sent():
    assert not _client._never_sent(requests.exceptions.ReadTimeout("read timed out"))


def test_redact_removes_remembered_secrets():
    client = _client.VaultClient(_client.ConnectionSettings.from_params(_params()))
    client.remember_secret("s.supersecret")
    assert client.redact("token s.supersecret rejected") == "token <redacted> rejected"


@pytest.mark.parametrize(
    "url", ["vault.example.com:8200", "ftp://vault.example.com", "https://", "https://host:99999", "hvs.CAESIJhunter2"]
)
def test_url_without_scheme_host_or_valid_port_is_refused_before_any_request_without_showing_it(url):
    with pytest.raises(VaultCertError) as error:
        _client.ConnectionSettings.from_params(_params(url=url))
    assert str(error.value) == (
        "url is not a Vault address: it needs http:// or https://, a host and optionally a port, "
        "e.g. https://vault.example.com:8200 (the url is not shown: it may carry a credential)"
    )


@pytest.mark.parametrize(
    ("url", "refused"),
    [
        ("https://vault.example.com:8200/", False),
        ("http://127.0.0.1:8200", False),
        ("https://vault.example.com:8200/?token=x", True),
        ("https://admin:pw/x@vault.example.com", True),
        ("vault.example.com", True),
        ("", False),  # "url is required": nothing to hide
        (None, False),
    ],
)
def test_url_is_refused_answers_as_the_connection_settings_do(url, refused):
    assert _client.url_is_refused(url) is refused


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (
            "HTTPSConnectionPool(host='127.0.0.1', port=8200): Max retries exceeded (Caused by SSLError("
            "SSLCertVerificationError(1, '[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: "
            "unable to get local issuer certificate (_ssl.c:1006)')))",
            "certificate verify failed: unable to get local issuer certificate",
        ),
        (
            "certificate verify failed: IP address mismatch, certificate is not valid for '127.0.0.1'. (_ssl.c:1006)",
            "certificate verify failed: IP address mismatch, certificate is not valid for '127.0.0.1'",
        ),
        ("something else entirely", "TLS handshake failed"),
    ],
)
def test_tls_reason_is_cut_to_the_readable_part(text, reason):
    assert _client._short_tls_reason(Exception(text)) == reason


def test_token_counts_as_expired_only_after_its_ttl():
    client = _client.VaultClient(_client.ConnectionSettings.from_params(_params()))
    assert not client._token_expired()
    client._token_expires = 0.0
    assert client._token_expired()


def test_one_attempt_is_singular():
    assert _client._attempts(1) == "1 attempt"
    assert _client._attempts(3) == "3 attempts"


@pytest.mark.parametrize(
    ("origin", "target", "allowed"),
    [
        ("https://standby:8200/v1/x", "https://active:8200/v1/x", True),
        ("http://relay:8080/v1/x", "https://active:8200/v1/x", True),
        ("http://vault:8200/v1/x", "http://vault:8200/v1/y", True),
        ("https://vault:8200/v1/x", "http://vault:8200/v1/x", False),
        ("https://vault:8200/v1/x", "http://elsewhere:80/v1/x", False),
        ("http://vault:8200/v1/x", "http://elsewhere:8200/v1/x", False),
    ],
)
def test_redirects_are_followed_only_to_https_or_the_same_origin(origin, target, allowed):
    assert _client.redirect_allowed(origin, target) is allowed


@pytest.mark.parametrize("value", ["team a", "team\na", "team\ta", "team\x00a"])
def test_namespace_that_cannot_be_a_header_value_is_refused(value):
    with pytest.raises(VaultCertError, match="^invalid namespace: .*line break"):
        _client.ConnectionSettings.from_params(_params(namespace=value))


def test_the_session_reads_the_environment_once_per_host_and_honours_no_proxy_per_host(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://corp-proxy:3128")
    monkeypatch.setenv("NO_PROXY", "active.example")
    session = _client._RedirectSafeSession()

    standby = session.merge_environment_settings("https://standby.example:8200/v1/x", {}, None, True, None)
    active = session.merge_environment_settings("https://active.example:8200/v1/x", {}, None, True, None)
    monkeypatch.setenv("HTTPS_PROXY", "http://another-proxy:3128")
    again = session.merge_environment_settings("https://standby.example:8200/v1/y", {}, None, True, None)

    assert standby["proxies"]["https"] == "http://corp-proxy:3128"
    assert "https" not in active["proxies"], "NO_PROXY is honoured for the host a standby redirects to"
    assert again == standby, "read once per host for the run"


@pytest.mark.parametrize(
    "url",
    [
        "https://vault.example.com:8200/?token=hunter2-tk",
        "https://vault.example.com:8200#hunter2-tk",
        "https://vault.example.com?",
        "vault.example.com/?hunter2-tk",
    ],
)
def test_url_with_query_or_fragment_is_refused_naming_the_option_without_showing_it(url):
    with pytest.raises(VaultCertError, match="url must not hold a query string") as error:
        _client.ConnectionSettings.from_params(_params(url=url))
    assert "hunter2-tk" not in str(error.value)
    assert "vault.example.com" not in str(error.value).split("e.g.", maxsplit=1)[0]


@pytest.mark.parametrize(
    ("url", "validate_certs", "warned"),
    [
        ("https://vault.example.com:8200", True, []),
        ("http://vault.example.com:8200", True, ["plain http://"]),
        ("https://vault.example.com:8200", False, ["validate_certs is false"]),
        ("HTTP://vault.example.com", False, ["validate_certs is false", "plain http://"]),
    ],
)
def test_settings_warn_about_plain_http_and_unchecked_certificates(url, validate_certs, warned):
    warnings = _client.ConnectionSettings.from_params(_params(url=url, validate_certs=validate_certs)).warnings()
    assert len(warnings) == len(warned)
    for warning, words in zip(warnings, warned):
        assert words in warning


def test_a_deadline_wakes_a_read_that_waits_on_its_socket_when_the_time_is_up():
    reader, writer = socket.socketpair()
    with reader, writer:
        deadline = _client._Deadline(0.3)
        deadline.watch(reader)
        started = time.monotonic()
        # Nothing is ever written: only the deadline's shutdown ends this read.
        assert reader.recv(1) == b""
        elapsed = time.monotonic() - started
        deadline.finish()
    assert deadline.cut
    assert 0.2 < elapsed < 5


def test_finished_deadlines_neither_cut_nor_pile_up():
    reader, writer = socket.socketpair()
    with reader, writer:
        for _round in range(1000):
            deadline = _client._Deadline(0.05)
            deadline.watch(reader)
            deadline.finish()
        deadline.expire()
        writer.sendall(b"x")
        assert reader.recv(1) == b"x"
    assert not deadline.cut
    assert len(_client._WATCHDOG._pending) <= 1


def test_an_error_answer_loses_every_value_of_the_request_it_answers_in_any_of_its_forms():
    line = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg"
    key = f"-----BEGIN PRIVATE KEY-----\n{line}\nAbCd\n-----END PRIVATE KEY-----\n"
    sent = {"options": {"cas": 3}, "data": {"private_key": key, "owner": "team-a"}}
    decoded = {"errors": [f"echo: {key}", f"escaped: {_client.json.dumps(key)}", f"line: {line};"]}

    errors = _client._without_sent_values(decoded, sent)["errors"]

    assert errors == ["echo: ********", 'escaped: "********"', "line: ********;"]
    # A short value (an owner) may be a word of the server's own text: left alone.
    assert _client._without_sent_values({"errors": ["team-a denied"]}, sent) == {"errors": ["team-a denied"]}

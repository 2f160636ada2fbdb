# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The auth registry: selection and offline validation."""

from __future__ import annotations

import pytest

from ansible_collections.certautopilot.vault.plugins.module_utils import _auth
from ansible_collections.certautopilot.vault.plugins.module_utils._errors import VaultCertError


def test_every_method_is_registered_under_its_name():
    assert set(_auth.AUTH_METHODS) == {"approle", "jwt", "cert", "token", "none"}


def test_approle_needs_role_id_and_secret_id():
    with pytest.raises(VaultCertError, match="approle needs secret_id"):
        _auth.select_auth_method({"auth_method": "approle", "role_id": "r"})


def test_mount_point_defaults_to_method_name_and_namespace_to_data_namespace():
    method = _auth.select_auth_method({"auth_method": "approle", "role_id": "r", "secret_id": "s", "namespace": "ns"})
    assert (method.mount, method.namespace) == ("approle", "ns")


def test_auth_namespace_wins_over_namespace():
    method = _auth.select_auth_method(
        {"auth_method": "jwt", "jwt": "x", "namespace": "ns", "auth_namespace": "", "auth_mount_point": "k8s"}
    )
    assert (method.mount, method.namespace) == ("k8s", "ns")
    method = _auth.select_auth_method({"auth_method": "jwt", "jwt": "x", "namespace": "ns", "auth_namespace": "root"})
    assert method.namespace == "root"


def test_jwt_refuses_both_inline_and_file():
    with pytest.raises(VaultCertError, match="not both"):
        _auth.select_auth_method({"auth_method": "jwt", "jwt": "x", "jwt_file": "/tmp/jwt"})


def test_jwt_file_defaults_to_kubernetes_service_account_token():
    method = _auth.select_auth_method({"auth_method": "jwt"})
    with pytest.raises(VaultCertError, match="/var/run/secrets/kubernetes.io/serviceaccount/token"):
        method._read_jwt()


def test_jwt_file_is_read_and_stripped(tmp_path):
    jwt_file = tmp_path / "jwt"
    jwt_file.write_text("header.payload.signature\n")
    method = _auth.select_auth_method({"auth_method": "jwt", "jwt_file": str(jwt_file)})
    assert method._read_jwt() == "header.payload.signature"


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"\x82\x01\x02header.payload.signature", "it is not UTF-8 text"),
        (b"a" * (_auth.JWT_FILE_MAX_BYTES + 1), "it is larger than 64 KiB"),
    ],
    ids=["binary", "oversized"],
)
def test_a_jwt_file_that_cannot_hold_a_jwt_is_refused_by_name_never_quoted(tmp_path, content, reason):
    jwt_file = tmp_path / "jwt"
    jwt_file.write_bytes(content)
    method = _auth.select_auth_method({"auth_method": "jwt", "jwt_file": str(jwt_file)})
    with pytest.raises(VaultCertError) as refused:
        method._read_jwt()
    assert f"jwt_file does not hold a JWT: {reason}" in str(refused.value)
    assert str(jwt_file) not in str(refused.value)
    assert "x82" not in str(refused.value) and "aaaa" not in str(refused.value)


def test_a_jwt_file_of_exactly_the_size_limit_is_read(tmp_path):
    jwt_file = tmp_path / "jwt"
    jwt_file.write_bytes(b"a" * _auth.JWT_FILE_MAX_BYTES)
    method = _auth.select_auth_method({"auth_method": "jwt", "jwt_file": str(jwt_file)})
    assert method._read_jwt() == "a" * _auth.JWT_FILE_MAX_BYTES


def test_cert_needs_client_certificate_and_key():
    with pytest.raises(VaultCertError, match="client_cert and client_key"):
        _auth.select_auth_method({"auth_method": "cert", "client_cert": "/c.pem"})


def test_given_token_is_never_revoked_but_obtained_ones_are():
    assert not _auth.TokenAuth.OBTAINS_TOKEN
    assert _auth.AppRoleAuth.OBTAINS_TOKEN and _auth.JwtAuth.OBTAINS_TOKEN and _auth.CertAuth.OBTAINS_TOKEN


def test_unknown_method_is_refused_listing_the_known_ones():
    with pytest.raises(VaultCertError, match="approle, jwt, cert, token, none"):
        _auth.select_auth_method({"auth_method": "ldap"})


def test_token_that_cannot_be_a_header_value_is_refused_without_showing_it():
    with pytest.raises(VaultCertError, match="invalid token: it holds whitespace") as error:
        _auth.select_auth_method({"auth_method": "token", "token": "s.abc\nX-Injected: 1"})
    assert "s.abc" not in str(error.value)


@pytest.mark.parametrize(
    ("text", "looks_like_jwt"),
    [("eyJh.eyJz.c2ln", True), ("eyJh.eyJz.", True), ("-----BEGIN PRIVATE KEY-----\nMIIB", False), ("a.b", False)],
)
def test_only_text_shaped_like_a_jwt_is_sent_as_one(text, looks_like_jwt):
    assert _auth._looks_like_jwt(text) is looks_like_jwt

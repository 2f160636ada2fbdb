# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""shown: a user's value as an error message may quote it, or a placeholder when it could be a secret."""

from __future__ import annotations

import base64

import pki
import pytest

from ansible_collections.certautopilot.vault.plugins.module_utils._pem import NOT_SHOWN, SHOWN_LENGTH, shown


@pytest.fixture(scope="module")
def ec_der() -> bytes:
    return pki.key_der(pki.new_key("ec"))


def test_the_placeholder_says_why_the_value_is_not_shown():
    assert NOT_SHOWN == "(value not shown: it may hold a secret)"
    assert SHOWN_LENGTH == 256


@pytest.mark.parametrize(
    "value",
    [
        "certs/www.example.com",
        "/etc/pki/issued/www.example.com/key.pem",
        "key.vault",
        "path_template",
        "s." + "A" * 25,  # one character longer than a legacy token: not one
        "hvs.short",
        "AB:CD:EF:" * 10,  # a fingerprint
    ],
)
def test_an_ordinary_value_is_shown_as_it_is(value):
    assert shown(value) == value


def test_a_value_that_is_not_text_is_shown_as_its_text():
    assert shown(42) == "42"
    assert shown(None) == "None"
    assert shown(["a.pem"]) == "['a.pem']"


def test_a_value_up_to_the_length_limit_is_shown_and_a_longer_one_is_not():
    assert shown("p/" * (SHOWN_LENGTH // 2)) == "p/" * (SHOWN_LENGTH // 2)
    assert shown("p/" * (SHOWN_LENGTH // 2) + "p") == NOT_SHOWN


@pytest.mark.parametrize("value", ["a\nb", "certs/www\n", "\n"])
def test_a_value_with_a_line_break_is_not_shown(value):
    assert shown(value) == NOT_SHOWN


def test_a_pem_key_is_not_shown(ec_chain, rsa_chain):
    assert shown(ec_chain.leaf.key_pem) == NOT_SHOWN
    assert shown(rsa_chain.leaf.key_pem) == NOT_SHOWN


@pytest.mark.parametrize(
    "value", ["-----BEGIN EC PRIVATE KEY-----", "x PRIVATE KEY y", ["-----BEGIN PRIVATE KEY-----"]]
)
def test_a_value_naming_a_private_key_on_one_line_is_not_shown(value):
    assert shown(value) == NOT_SHOWN


def test_a_given_secret_anywhere_in_the_value_is_not_shown():
    assert shown("certs/s3cr3t-value/x", secrets=("s3cr3t-value",)) == NOT_SHOWN
    assert shown("certs/www", secrets=("s3cr3t-value",)) == "certs/www"


def test_an_empty_secret_hides_nothing():
    assert shown("certs/www", secrets=("", None)) == "certs/www"


@pytest.mark.parametrize(
    "value",
    [
        "hvs.CAESIJ" + "a" * 30,
        "hvb.AAAAAQ" + "b" * 30,
        "s." + "A1" * 12,
        "b." + "A1" * 12,
        "token=hvs.CAESIJ" + "a" * 30,
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhcHAifQ.c2lnbmF0dXJl",
    ],
    ids=["hvs", "hvb", "legacy-s", "legacy-b", "embedded", "jwt"],
)
def test_a_vault_token_or_a_jwt_is_not_shown(value):
    assert shown(value) == NOT_SHOWN


def test_a_headerless_der_key_on_one_line_is_not_shown(ec_der):
    plain = base64.b64encode(ec_der).decode()
    url_safe = base64.urlsafe_b64encode(ec_der).decode().rstrip("=")
    assert len(plain) <= SHOWN_LENGTH  # so that only the key check can hide it
    assert shown(plain) == NOT_SHOWN
    assert shown(url_safe) == NOT_SHOWN
    assert shown(f"key={plain}") == NOT_SHOWN


def test_a_long_base64_run_is_not_shown_even_when_it_is_no_key(ec_chain):
    """Key material cut short or misaligned cannot be recognised by decoding: its shape is enough."""
    body = "".join(line for line in ec_chain.leaf.cert_pem.splitlines() if "-----" not in line)[:SHOWN_LENGTH]
    assert shown(body) == NOT_SHOWN


def test_an_ordinary_path_with_long_readable_names_is_shown():
    path = "/etc/pki/issued/www.example.com-2026-12-01/fullchain.pem"
    assert shown(path) == path


def test_a_headerless_der_key_after_a_path_prefix_is_not_shown(ec_der):
    value = "keys/" + base64.b64encode(ec_der).decode()
    assert len(value) <= SHOWN_LENGTH
    assert shown(value) == NOT_SHOWN


@pytest.mark.parametrize("encoding", ["base64", "hex"])
def test_a_headerless_ed25519_key_is_not_shown(encoding):
    der = pki.key_der(pki.new_key("ed25519"))
    value = base64.b64encode(der).decode() if encoding == "base64" else der.hex()
    assert shown(value) == NOT_SHOWN


def test_a_uuid_is_not_shown_since_an_approle_secret_id_is_one():
    assert shown("files/305c0920-2a48-4f7e-9d43-1c2b3a4d5e6f") == NOT_SHOWN

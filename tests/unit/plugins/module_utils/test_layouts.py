# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Secret layouts: each layout's shape, pkcs12 compared by content, the refusals. Pure logic of _layouts."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import textwrap

import pki
import pytest
from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from cryptography.hazmat.primitives.serialization import pkcs12
from refusals import expect_error

from ansible_collections.certautopilot.vault.plugins.module_utils import _certs, _layouts, _pkcs12, _push
from ansible_collections.certautopilot.vault.plugins.module_utils._errors import VaultCertError
from ansible_collections.certautopilot.vault.plugins.module_utils._kv2 import SecretVersion

PASSWORD = "correct horse battery staple"
PATH = "certs/www.example.com"

TAG = {"managed_by": "certautopilot.vault"}


def _bundle(chain: pki.Chain, *, with_chain: bool = True, with_key: bool = True) -> _certs.CertificateBundle:
    return _certs.load_bundle(
        certificate=chain.leaf.cert_pem,
        private_key=chain.leaf.key_pem if with_key else None,
        chain=chain.chain_pem if with_chain else None,
    )


def _options(layout: str, **overrides) -> _push.PushOptions:
    settings = {
        "include_private_key": True,
        "pkcs12_password": PASSWORD if layout == _layouts.PKCS12 else None,
    }
    settings.update(overrides)
    fields = _layouts.of(layout).fields(
        settings.pop("fields", None),
        include_private_key=settings["include_private_key"],
        pkcs12_password=settings["pkcs12_password"],
    )
    return _push.PushOptions(mount="secret", fields=fields, layout=layout, **settings)


def _items(chain: pki.Chain, layout: str, **overrides) -> list[_push.PushItem]:
    raw = {"path": PATH, "certificate": chain.leaf.cert_pem, "private_key": chain.leaf.key_pem}
    raw["chain"] = chain.chain_pem
    return _push.prepare_items([raw], _options(layout, **overrides))


def _secrets(chain: pki.Chain, layout: str, **overrides) -> dict[str, dict[str, str]]:
    return {item.path: item.payload for item in _items(chain, layout, **overrides)}


# --- shapes -------------------------------------------------------------------------------------


def test_default_layout_is_todays_payload_renamed_by_fields(ec_chain):
    secrets = _secrets(ec_chain, "default", fields={"certificate": "tls.crt"})
    assert secrets == {
        PATH: {
            "tls.crt": ec_chain.leaf.cert_pem,
            "private_key": ec_chain.leaf.key_pem,
            "chain": ec_chain.chain_pem,
            "fullchain": ec_chain.fullchain_pem,
        }
    }


def test_acme_sh_writes_four_secrets_below_the_path_each_with_value(ec_chain):
    secrets = _secrets(ec_chain, "acme_sh")
    assert list(secrets) == [f"{PATH}/cert.pem", f"{PATH}/cert.key", f"{PATH}/ca.pem", f"{PATH}/fullchain.pem"]
    assert secrets[f"{PATH}/cert.pem"] == {"value": ec_chain.leaf.cert_pem}
    assert secrets[f"{PATH}/cert.key"] == {"value": ec_chain.leaf.key_pem}
    assert secrets[f"{PATH}/ca.pem"] == {"value": ec_chain.chain_pem}
    assert secrets[f"{PATH}/fullchain.pem"] == {"value": ec_chain.fullchain_pem}


def test_acme_sh_without_chain_writes_an_empty_ca_file(ec_chain):
    raw = {"path": PATH, "certificate": ec_chain.leaf.cert_pem, "private_key": ec_chain.leaf.key_pem}
    items = _push.prepare_items([raw], _options("acme_sh", validate=False))
    assert {item.path: item.payload for item in items}[f"{PATH}/ca.pem"] == {"value": ""}


def test_acme_sh_cert_only_leaves_the_key_secret_out(ec_chain):
    raw = {"path": PATH, "certificate": ec_chain.leaf.cert_pem, "chain": ec_chain.chain_pem}
    items = _push.prepare_items([raw], _options("acme_sh", include_private_key=False))
    assert [item.path for item in items] == [f"{PATH}/cert.pem", f"{PATH}/ca.pem", f"{PATH}/fullchain.pem"]


def test_acme_sh_changed_fields_name_the_one_field_of_each_secret(ec_chain):
    options = _options("acme_sh")
    named = {}
    for item in _items(ec_chain, "acme_sh"):
        decision = _push.decide(
            item, _push.SecretState(SecretVersion(version=1, data={"value": "old"}, custom_metadata=TAG)), options
        )
        named[item.path.rpartition("/")[2]] = decision.changed_fields
        assert decision.desired == item.payload
    assert named == {
        "cert.pem": ["certificate"],
        "cert.key": ["private_key"],
        "ca.pem": ["chain"],
        "fullchain.pem": ["fullchain"],
    }


def test_acme_sh_keeps_other_keys_of_each_secret(ec_chain):
    item = _items(ec_chain, "acme_sh")[0]
    decision = _push.decide(
        item,
        _push.SecretState(SecretVersion(version=1, data={**item.payload, "owner": "ops"}, custom_metadata=TAG)),
        _options("acme_sh"),
    )
    assert not decision.data_changed and decision.changed_fields == []


def test_fabio_writes_the_fullchain_as_cert_and_the_key(ec_chain):
    assert _secrets(ec_chain, "fabio") == {PATH: {"cert": ec_chain.fullchain_pem, "key": ec_chain.leaf.key_pem}}


def test_fabio_cert_only_removes_the_key_from_the_secret(ec_chain):
    options = _options("fabio", include_private_key=False)
    raw = {"path": PATH, "certificate": ec_chain.leaf.cert_pem, "chain": ec_chain.chain_pem}
    (item,) = _push.prepare_items([raw], options)
    assert item.payload == {"cert": ec_chain.fullchain_pem}
    current = SecretVersion(version=1, data={"cert": ec_chain.fullchain_pem, "key": "old key"}, custom_metadata=TAG)
    decision = _push.decide(item, _push.SecretState(current), options)
    assert decision.desired == {"cert": ec_chain.fullchain_pem} and decision.changed_fields == ["private_key"]


def test_traefik_writes_base64_of_the_fullchain_and_the_key_on_one_line(ec_chain):
    secrets = _secrets(ec_chain, "traefik")
    assert set(secrets[PATH]) == {"cert", "key"}
    assert base64.b64decode(secrets[PATH]["cert"], validate=True).decode() == ec_chain.fullchain_pem
    assert base64.b64decode(secrets[PATH]["key"], validate=True).decode() == ec_chain.leaf.key_pem
    assert "\n" not in secrets[PATH]["cert"] + secrets[PATH]["key"]


def test_traefik_diff_summarises_the_base64_pem_and_shows_no_key(ec_chain):
    (item,) = _items(ec_chain, "traefik")
    summary = _layouts.summarise_secret(item.payload, fields=_options("traefik").fields)
    assert summary["cert"].startswith("<certificate CN=www.example.com") and summary["cert"].count("\n") == 1
    assert summary["key"].startswith("<private key: sha256 ")
    assert ec_chain.leaf.key_pem not in repr(summary) and item.payload["key"] not in repr(summary)


def test_traefik_warns_about_a_path_below_the_root():
    traefik = _layouts.of("traefik")
    assert traefik.path_warnings(["www.example.com"]) == []
    (warning,) = traefik.path_warnings(["certs/a", "certs/b"])
    assert "certs/a (and 1 more)" in warning and "root" in warning
    assert _layouts.of("fabio").path_warnings(["certs/a"]) == []


def test_haproxy_pem_is_the_leaf_then_the_chain_then_the_key(ec_chain):
    pem = _secrets(ec_chain, "haproxy")[PATH]["pem"]
    assert pem == ec_chain.leaf.cert_pem + ec_chain.chain_pem + ec_chain.leaf.key_pem


def _open_pkcs12(value: str, password: str = PASSWORD):
    return pkcs12.load_key_and_certificates(base64.b64decode(value, validate=True), password.encode())


def test_pkcs12_holds_key_certificate_and_chain_under_the_password(ec_chain):
    value = _secrets(ec_chain, "pkcs12")[PATH]["pkcs12"]
    key, certificate, chain = _open_pkcs12(value)
    assert certificate == ec_chain.leaf.cert
    assert chain == [ec_chain.intermediate.cert]
    der = serialization.Encoding.DER
    assert key.public_key().public_bytes(der, serialization.PublicFormat.SubjectPublicKeyInfo) == (
        ec_chain.leaf.key.public_key().public_bytes(der, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(ValueError):
        _open_pkcs12(value, "wrong password")


def test_pkcs12_is_encrypted_with_pbes2_aes_256(ec_chain):
    data = base64.b64decode(_secrets(ec_chain, "pkcs12")[PATH]["pkcs12"])
    aes_256_cbc = bytes.fromhex("060960864801650304012a")  # OID 2.16.840.1.101.3.4.1.42
    pbes2 = bytes.fromhex("06092a864886f70d01050d")  # OID 1.2.840.113549.1.5.13
    assert aes_256_cbc in data and pbes2 in data


def _decide_pkcs12(item: _push.PushItem, current_value: str, **overrides) -> _push.Decision:
    return _push.decide(
        item,
        _push.SecretState(SecretVersion(version=3, data={"pkcs12": current_value}, custom_metadata=TAG)),
        _options("pkcs12", **overrides),
    )


def test_pkcs12_resalted_bundle_of_the_same_content_is_no_change(ec_chain):
    (first,) = _items(ec_chain, "pkcs12")
    (again,) = _items(ec_chain, "pkcs12")
    assert first.payload != again.payload  # salted: other bytes each run
    decision = _decide_pkcs12(again, first.payload["pkcs12"])
    assert not decision.data_changed and decision.changed_fields == []
    assert decision.desired == first.payload


def test_pkcs12_other_certificate_is_a_change(ec_chain):
    (current,) = _items(ec_chain, "pkcs12")
    renewed = pki.make_chain("www.example.com", sans=("www.example.com", "example.com"))
    (item,) = _items(renewed, "pkcs12")
    decision = _decide_pkcs12(item, current.payload["pkcs12"])
    assert decision.data_changed and decision.changed_fields == ["pkcs12"]
    assert decision.desired == item.payload


def test_pkcs12_refuses_a_key_of_another_certificate_even_unvalidated(ec_chain):
    raw = {"path": PATH, "certificate": ec_chain.leaf.cert_pem, "private_key": pki.key_pem(pki.new_key())}
    expect_error(
        (PATH, "private key does not match the certificate"),
        _push.prepare_items,
        [raw],
        _options("pkcs12", validate=False),
    )


def test_pkcs12_other_chain_is_a_change(ec_chain):
    raw = {"path": PATH, "certificate": ec_chain.leaf.cert_pem, "private_key": ec_chain.leaf.key_pem}
    (without_chain,) = _push.prepare_items([raw], _options("pkcs12", validate=False))
    (item,) = _items(ec_chain, "pkcs12")
    assert _decide_pkcs12(item, without_chain.payload["pkcs12"]).data_changed


def test_pkcs12_bundle_under_another_password_is_a_change(ec_chain):
    (current,) = _items(ec_chain, "pkcs12", pkcs12_password="an older password")
    (item,) = _items(ec_chain, "pkcs12")
    decision = _decide_pkcs12(item, current.payload["pkcs12"])
    assert decision.data_changed and decision.desired == item.payload


@pytest.mark.parametrize("current", ["not base64!", base64.b64encode(b"not pkcs12").decode(), ""])
def test_pkcs12_current_value_that_does_not_open_is_a_change(ec_chain, current):
    (item,) = _items(ec_chain, "pkcs12")
    assert _decide_pkcs12(item, current).data_changed


def test_other_layouts_leave_the_comparison_to_bytes(ec_chain):
    (item,) = _items(ec_chain, "haproxy")
    options = _options("haproxy")
    seen_item, seen_options = _layouts.of("haproxy").for_decision(item, {"pem": "y"}, options)
    assert seen_item is item and seen_options is options


def test_pkcs12_password_is_kept_out_of_the_options_repr():
    assert PASSWORD not in repr(_options("pkcs12"))


# --- refusals -----------------------------------------------------------------------------------


def _layout_fields(layout, fields=None, *, include_private_key=True, pkcs12_password=None):
    return _layouts.of(layout).fields(fields, include_private_key=include_private_key, pkcs12_password=pkcs12_password)


def test_pkcs12_without_password_is_refused():
    expect_error(("layout pkcs12", "pkcs12_password"), _layout_fields, "pkcs12")


def test_password_with_another_layout_is_refused_without_showing_it():
    message = expect_error(
        ("pkcs12_password", "layout is haproxy"), _layout_fields, "haproxy", pkcs12_password=PASSWORD
    )
    assert PASSWORD not in message


@pytest.mark.parametrize("layout", ["acme_sh", "fabio", "traefik", "haproxy", "pkcs12"])
def test_fields_renaming_a_key_with_another_layout_is_refused(layout):
    password = PASSWORD if layout == "pkcs12" else None
    expect_error(
        ("fields", "layout default", f"layout {layout}"),
        _layout_fields,
        layout,
        {"certificate": "tls.crt"},
        pkcs12_password=password,
    )
    # fields that rename nothing are the default: accepted.
    assert _layout_fields(layout, dict(_layouts.DEFAULT_FIELDS), pkcs12_password=password)


@pytest.mark.parametrize("layout", ["haproxy", "pkcs12"])
def test_cert_only_delivery_is_refused_where_the_key_is_part_of_the_value(layout):
    password = PASSWORD if layout == "pkcs12" else None
    expect_error(
        ("include_private_key=false", f"layout {layout}"),
        _layout_fields,
        layout,
        include_private_key=False,
        pkcs12_password=password,
    )


def test_unknown_layout_is_refused_naming_the_choices():
    message = expect_error(("layout must be one of", "acme_sh"), _layout_fields, "nginx")
    assert "nginx" not in message


def test_acme_sh_path_too_long_for_the_secrets_below_it_is_refused_up_front(ec_chain):
    long_path = "certs/" + "a" * (_push._kv2.MAX_PATH_LENGTH - len("certs/") - 3)
    raw = {"path": long_path, "certificate": ec_chain.leaf.cert_pem, "private_key": ec_chain.leaf.key_pem}
    expect_error(("invalid path", "longer than"), _push.prepare_items, [raw], _options("acme_sh", validate=False))


def test_acme_sh_two_certificates_at_one_path_are_refused(ec_chain):
    raw = {"path": PATH, "certificate": ec_chain.leaf.cert_pem, "private_key": ec_chain.leaf.key_pem}
    expect_error(("invalid path", "twice"), _push.prepare_items, [raw, dict(raw)], _options("acme_sh", validate=False))


def test_managed_keys_are_the_layouts_own():
    assert _layouts.of("fabio").managed_keys(_layout_fields("fabio")) == {"cert", "key"}
    assert _layouts.of("pkcs12").managed_keys(_layout_fields("pkcs12", pkcs12_password=PASSWORD)) == {"pkcs12"}
    assert _layouts.of("acme_sh").managed_keys(_layout_fields("acme_sh")) == {"value"}
    assert _layouts.of("default").managed_keys(None) == set(_layouts.FIELD_NAMES)


# --- fields ----------------------------------------------------------------------------------


def test_field_names_and_defaults():
    assert _layouts.FIELD_NAMES == ("certificate", "private_key", "chain", "fullchain")
    assert _layouts.DEFAULT_FIELDS == {
        "certificate": "certificate",
        "private_key": "private_key",
        "chain": "chain",
        "fullchain": "fullchain",
    }


def test_resolve_fields_without_mapping_gives_a_copy_of_the_defaults():
    resolved = _layouts.resolve_fields(None)
    assert resolved == _layouts.DEFAULT_FIELDS
    resolved["chain"] = "changed"
    assert _layouts.DEFAULT_FIELDS["chain"] == "chain"


def test_resolve_fields_merges_over_the_defaults():
    assert _layouts.resolve_fields({"certificate": "tls.crt", "private_key": "tls.key"}) == {
        "certificate": "tls.crt",
        "private_key": "tls.key",
        "chain": "chain",
        "fullchain": "fullchain",
    }


@pytest.mark.parametrize("unset", [None, ""])
def test_resolve_fields_maps_null_or_empty_to_not_written(unset):
    assert _layouts.resolve_fields({"fullchain": unset})["fullchain"] is None


def test_resolve_fields_refuses_unknown_names_by_place_never_quoted():
    with pytest.raises(VaultCertError) as refused:
        _layouts.resolve_fields({"certificate": "a", "hvs.pasted-token": "b", "key": "c"})

    assert "unknown field name(s) at place 2, 3 of 3; known: certificate, private_key, chain, fullchain" in str(
        refused.value
    )
    assert (
        "hvs.pasted-token" not in str(refused.value) and "key" not in str(refused.value).split("; known", maxsplit=1)[0]
    )


def test_resolve_fields_refuses_two_fields_on_one_json_key():
    expect_error(
        ("certificate", "fullchain", "'pem'"), _layouts.resolve_fields, {"certificate": "pem", "fullchain": "pem"}
    )


def test_resolve_fields_refuses_a_field_moved_onto_a_default_key():
    expect_error(("certificate", "chain", "'chain'"), _layouts.resolve_fields, {"certificate": "chain"})


def test_resolve_fields_refuses_non_string_keys():
    expect_error(("fields", "chain"), _layouts.resolve_fields, {"chain": 3})


def test_resolve_fields_refuses_a_mapping_that_writes_nothing():
    expect_error(("nothing would be written",), _layouts.resolve_fields, dict.fromkeys(_layouts.FIELD_NAMES))


def test_resolve_fields_refuses_a_non_dict():
    expect_error(("fields",), _layouts.resolve_fields, ["certificate"])


# --- _default_payload and managed_keys ----------------------------------------------------------


@pytest.fixture
def full_bundle(ec_chain) -> _certs.CertificateBundle:
    return _certs.load_bundle(
        certificate=ec_chain.leaf.cert_pem, private_key=ec_chain.leaf.key_pem, chain=ec_chain.intermediate.cert_pem
    )


def _default_payload(bundle: _certs.CertificateBundle, *, fields, include_private_key: bool) -> dict[str, str]:
    options = _push.PushOptions(mount="secret", fields=fields, include_private_key=include_private_key)
    return _layouts.of("default").payload(bundle, options)


def test_payload_holds_all_four_fields_by_default(ec_chain, full_bundle):
    payload = _default_payload(full_bundle, fields=_layouts.resolve_fields(None), include_private_key=True)
    assert payload == {
        "certificate": ec_chain.leaf.cert_pem,
        "private_key": ec_chain.leaf.key_pem,
        "chain": ec_chain.intermediate.cert_pem,
        "fullchain": ec_chain.leaf.cert_pem + ec_chain.intermediate.cert_pem,
    }


def test_payload_leaves_out_private_key_when_not_included(full_bundle):
    payload = _default_payload(full_bundle, fields=_layouts.resolve_fields(None), include_private_key=False)
    assert set(payload) == {"certificate", "chain", "fullchain"}


def test_payload_leaves_out_chain_when_empty(ec_chain):
    bundle = _certs.load_bundle(certificate=ec_chain.leaf.cert_pem, private_key=ec_chain.leaf.key_pem)
    payload = _default_payload(bundle, fields=_layouts.resolve_fields(None), include_private_key=True)
    assert set(payload) == {"certificate", "private_key", "fullchain"}
    assert payload["fullchain"] == payload["certificate"]


def test_payload_uses_mapped_keys_and_leaves_out_unmapped_fields(full_bundle):
    fields = _layouts.resolve_fields({"certificate": "tls.crt", "private_key": "tls.key", "fullchain": None})
    payload = _default_payload(full_bundle, fields=fields, include_private_key=True)
    assert set(payload) == {"tls.crt", "tls.key", "chain"}


def test_payload_can_leave_out_the_certificate_field(full_bundle):
    payload = _default_payload(full_bundle, fields={"certificate": None}, include_private_key=False)
    assert set(payload) == {"chain", "fullchain"}


def test_payload_requires_a_key_when_it_is_included(ec_chain):
    bundle = _certs.load_bundle(certificate=ec_chain.leaf.cert_pem)
    expect_error(
        ("private key", "include_private_key"),
        _default_payload,
        bundle,
        fields=_layouts.DEFAULT_FIELDS,
        include_private_key=True,
    )
    assert "private_key" not in _default_payload(bundle, fields=_layouts.DEFAULT_FIELDS, include_private_key=False)


def test_payload_without_key_field_needs_no_key(ec_chain):
    bundle = _certs.load_bundle(certificate=ec_chain.leaf.cert_pem)
    assert _default_payload(bundle, fields={"private_key": None}, include_private_key=True) == {
        "certificate": ec_chain.leaf.cert_pem,
        "fullchain": ec_chain.leaf.cert_pem,
    }


def test_managed_keys_are_the_mapped_json_keys_even_when_absent_from_the_payload():
    assert _layouts.of("default").managed_keys(None) == frozenset(_layouts.FIELD_NAMES)
    assert _layouts.of("default").managed_keys({"certificate": "tls.crt", "chain": ""}) == frozenset(
        {"tls.crt", "private_key", "fullchain"}
    )


# -- diffs of a whole secret -------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "db_password=hunter2-unmanaged",
        "-----BEGIN-----\nhunter2-unmanaged\n-----END-----",
        "-----BEGIN FOO-----\nhunter2-unmanaged\n-----END FOO-----",
        "hunter2-unmanaged\n-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----",
    ],
    ids=["plain", "empty-label", "unknown-label", "text-around-pem"],
)
def test_secret_summary_never_shows_an_unmanaged_value(value):
    summary = _layouts.summarise_secret({"notes": value})
    assert "hunter2" not in summary["notes"]
    assert summary["notes"].startswith(f"<value: {len(value)} characters, keyed hash ")


def test_secret_summary_hides_text_around_pem_in_a_managed_field(ec_chain):
    summary = _layouts.summarise_secret({"certificate": "hunter2-text\n" + ec_chain.leaf.cert_pem})
    assert "hunter2" not in summary["certificate"]
    assert summary["certificate"].startswith("<value: ")


def test_secret_summary_shows_managed_pem_fields_by_their_summaries(ec_chain):
    summary = _layouts.summarise_secret(
        {"certificate": ec_chain.leaf.cert_pem, "private_key": ec_chain.leaf.key_pem, "chain": ec_chain.chain_pem}
    )
    assert summary["certificate"].startswith("<certificate CN=www.example.com, serial=")
    assert summary["private_key"].startswith("<private key: sha256 ")
    assert summary["chain"].startswith("<certificate CN=")
    assert "PRIVATE KEY" not in str(summary)


def test_secret_summary_of_a_key_field_that_is_not_a_key():
    assert _layouts.summarise_secret({"private_key": "hunter2"}) == {"private_key": "<private key: not PEM>"}


@pytest.mark.parametrize("key", ["tls crt", "-----BEGIN PRIVATE KEY-----\nMIIB", "a" * 129, "cert\n"])
def test_resolve_fields_refuses_what_is_no_plain_json_key_without_showing_it(key):
    with pytest.raises(VaultCertError, match="fields: certificate must map to a JSON key") as error:
        _layouts.resolve_fields({"certificate": key})
    assert key not in str(error.value)


def test_an_unmanaged_value_is_hashed_with_a_key_of_the_run_so_a_short_one_cannot_be_tried_out():
    import hashlib

    first = _layouts.summarise_secret({"pin": "123456"})["pin"]
    again = _layouts.summarise_secret({"pin": "123456"})["pin"]
    assert first == again, "equal values look equal within one run's diff"
    assert hashlib.sha256(b"123456").hexdigest()[:16] not in first
    assert _layouts.summarise_secret({"pin": "123457"})["pin"] != first


# --- pkcs12: what opening a current bundle may cost --------------------------------------------

# Made with 65536 (DER 02 03 01 00 00) PBKDF2 iterations per bag, then raised in place to 8388607 (the most a
# 3-byte count holds): the bundle keeps its shape, and opening it would run the raised counts.
_BUILT_ROUNDS = bytes.fromhex("0203010000")
_RAISED_ROUNDS = bytes.fromhex("02037fffff")


def _der(tag: int, content: bytes) -> bytes:
    size = len(content)
    if size < 0x80:
        return bytes([tag, size]) + content
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(length)]) + length + content


def _data(inner: bytes) -> bytes:
    """ContentInfo { id-data, [0] EXPLICIT OCTET STRING }."""
    return _der(0x30, bytes.fromhex("06092a864886f70d010701") + _der(0xA0, _der(0x04, inner)))


def _pbes2_algorithm(iterations: int, salt: bytes, iv: bytes) -> bytes:
    """AlgorithmIdentifier PBES2 { PBKDF2 (salt, iterations, hmacWithSHA256), aes256-CBC (iv) }."""
    prf = _der(0x30, bytes.fromhex("06082a864886f70d0209") + b"\x05\x00")
    count = iterations.to_bytes((iterations.bit_length() + 8) // 8, "big")
    kdf = _der(0x30, bytes.fromhex("06092a864886f70d01050c") + _der(0x30, _der(0x04, salt) + _der(0x02, count) + prf))
    scheme = _der(0x30, bytes.fromhex("060960864801650304012a") + _der(0x04, iv))
    return _der(0x30, bytes.fromhex("06092a864886f70d01050d") + _der(0x30, kdf + scheme))


def _bundle_hiding_a_key_bag(key_bag_iterations: int) -> bytes:
    """A PFX whose only content is encrypted (2048 iterations) and holds a shrouded key bag asking
    ``key_bag_iterations``: that count is visible only once the content is decrypted."""
    key_info = _der(0x30, _pbes2_algorithm(key_bag_iterations, b"k" * 16, b"i" * 16) + _der(0x04, b"\0" * 48))
    bag = _der(0x30, bytes.fromhex("060b2a864886f70d010c0a0102") + _der(0xA0, key_info))
    salt, iv = b"s" * 16, b"v" * 16
    key = PBKDF2HMAC(algorithm=hashes.SHA256(), length=32, salt=salt, iterations=2048).derive(PASSWORD.encode())
    padder = padding.PKCS7(128).padder()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(padder.update(_der(0x30, bag)) + padder.finalize()) + encryptor.finalize()
    content = _der(
        0x30, bytes.fromhex("06092a864886f70d010701") + _pbes2_algorithm(2048, salt, iv) + _der(0x80, ciphertext)
    )
    encrypted_data = _der(0x30, _der(0x02, b"\0") + content)
    authenticated_safe = _der(0x30, _der(0x30, bytes.fromhex("06092a864886f70d010706") + _der(0xA0, encrypted_data)))
    auth_safe = _data(authenticated_safe)
    sha256 = _der(0x30, bytes.fromhex("0609608648016503040201") + b"\x05\x00")
    mac_data = _der(0x30, _der(0x30, sha256 + _der(0x04, b"\0" * 32)) + _der(0x04, b"m" * 8) + _der(0x02, b"\x08\x00"))
    return _der(0x30, _der(0x02, b"\x03") + auth_safe + mac_data)


def _opened(monkeypatch) -> list[str]:
    """What ran of a key derivation or the library's PKCS#12 loader from now on (each refused at once)."""
    ran: list[str] = []

    def refused(what: str):
        def call(*_args, **_kwargs):
            ran.append(what)
            raise ValueError(what)

        return call

    monkeypatch.setattr(_pkcs12, "PBKDF2HMAC", refused("PBKDF2"), raising=False)
    monkeypatch.setattr(_pkcs12.pkcs12, "load_key_and_certificates", refused("load_key_and_certificates"))
    return ran


def test_pkcs12_bundle_with_costly_bag_encryption_is_a_change_without_running_its_kdf(ec_chain, monkeypatch):
    """A cheap MAC (2048 iterations) but 8 million PBKDF2 iterations per bag: the counts are read from the DER
    and the bundle is replaced before any key derivation or the library's loader runs."""
    encryption = (
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(65536)
        .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
        .build(PASSWORD.encode())
    )
    built = pkcs12.serialize_key_and_certificates(
        None, ec_chain.leaf.key, ec_chain.leaf.cert, [ec_chain.intermediate.cert], encryption
    )
    assert built.count(_BUILT_ROUNDS) == 2  # the certificate bags' and the key bag's
    planted = base64.b64encode(built.replace(_BUILT_ROUNDS, _RAISED_ROUNDS)).decode()
    (item,) = _items(ec_chain, "pkcs12")
    ran = _opened(monkeypatch)

    assert _layouts.of("pkcs12").equivalent_payload(item.payload, {"pkcs12": planted}, PASSWORD) == item.payload
    assert ran == []


def test_pkcs12_key_bag_hidden_in_encrypted_content_counts_towards_the_cost(monkeypatch):
    derived = []
    real = _pkcs12.PBKDF2HMAC

    def counted(**settings):
        derived.append(settings["iterations"])
        return real(**settings)

    monkeypatch.setattr(_pkcs12, "PBKDF2HMAC", counted)
    assert _pkcs12.protected(_bundle_hiding_a_key_bag(1000), PASSWORD)
    assert not _pkcs12.protected(_bundle_hiding_a_key_bag(_pkcs12.MAX_KDF_ITERATIONS), PASSWORD)
    # Only the encrypted content's own 2048 iterations ran, once per bundle; never the key bag's.
    assert derived == [2048, 2048]


def test_a_bundle_within_the_cost_bound_is_still_compared_by_content(ec_chain):
    (first,) = _items(ec_chain, "pkcs12")
    data = base64.b64decode(first.payload["pkcs12"])
    assert _pkcs12.protected(data, PASSWORD)


# --- pkcs12: what a bundle planted in the secret can make the comparison do ----------------------

# The MAC iteration count OpenSSL reads as an int: the most a bundle can ask for.
MAX_MAC_ITERATIONS = 2**31 - 1
# A comparison that takes longer than this is a hang a planted value can cause on every run.
COMPARISON_DEADLINE = 15


def _with_mac_iterations(value: str, iterations: int) -> str:
    """The bundle with its MacData iteration count replaced (the MAC itself is left, so it no longer verifies).

    Written by the collection, the bundle ends with MacData ``30 41 ... 02 02 08 00`` (2048 iterations) inside
    the PFX ``30 82 <len>``: the INTEGER is swapped and both lengths adjusted.
    """
    data = base64.b64decode(value)
    tail = bytes.fromhex("02020800")
    assert data.endswith(tail) and data[:2] == b"\x30\x82"
    number = iterations.to_bytes((iterations.bit_length() + 8) // 8, "big")
    integer = bytes([0x02, len(number)]) + number
    grown = len(integer) - len(tail)
    start = data.rfind(b"\x30\x41\x30\x31")
    assert start > 0
    body = data[:start] + bytes([0x30, 0x41 + grown]) + data[start + 2 : -len(tail)] + integer
    length = int.from_bytes(body[2:4], "big") + grown
    return base64.b64encode(body[:2] + length.to_bytes(2, "big") + body[4:]).decode("ascii")


def _plain_pkcs12(chain: pki.Chain) -> str:
    """A PKCS#12 without MAC and without encryption (openssl -nomac -keypbe NONE -certpbe NONE)."""
    pkcs8 = pki.key_der(chain.leaf.key)
    bags = [_der(0x30, bytes.fromhex("060b2a864886f70d010c0a0101") + _der(0xA0, pkcs8))]
    for cert in (chain.leaf.cert, chain.intermediate.cert):
        value = _der(
            0x30,
            bytes.fromhex("060a2a864886f70d01091601")
            + _der(0xA0, _der(0x04, cert.public_bytes(serialization.Encoding.DER))),
        )
        bags.append(_der(0x30, bytes.fromhex("060b2a864886f70d010c0a0103") + _der(0xA0, value)))
    pfx = _der(0x30, _der(0x02, b"\x03") + _data(_der(0x30, _data(_der(0x30, b"".join(bags))))))
    return base64.b64encode(pfx).decode("ascii")


def test_a_bundle_with_a_huge_mac_iteration_count_is_compared_in_bounded_time(ec_chain):
    """Whoever can write the secret plants a bundle whose MacData asks for 2**31-1 iterations; no password is
    needed, the MAC is derived (and fails) before anything is decrypted.

    Expected: the comparison refuses a bundle asking for far more work than any writer uses (keytool 10000,
    OpenSSL 2048) and treats it as different - the push replaces it at once. Otherwise OpenSSL runs the two
    billion rounds of the PKCS#12 KDF first (minutes of CPU per secret, per run, with no timeout): one planted
    value stalls every push of that path, and a batch of them stalls the run for hours.
    """
    (item,) = _items(ec_chain, "pkcs12")
    desired = item.payload["pkcs12"]
    planted = _with_mac_iterations(desired, MAX_MAC_ITERATIONS)
    # The crafted bundle is well formed: a small count only fails the MAC check, at once.
    with pytest.raises(ValueError):
        _open_pkcs12(_with_mac_iterations(desired, 4096))
    script = textwrap.dedent(
        """
        import json, sys
        from ansible_collections.certautopilot.vault.plugins.module_utils import _layouts
        args = json.load(sys.stdin)
        desired, current = {"pkcs12": args["desired"]}, {"pkcs12": args["planted"]}
        kept = _layouts.of("pkcs12").equivalent_payload(desired, current, args["pw"])
        print(kept["pkcs12"] == args["planted"])
        """
    )
    # A child process: a comparison that hangs is killed at the deadline instead of hanging the test run.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path for path in sys.path if path)}
    try:
        completed = subprocess.run(  # noqa: S603 - our own interpreter and script
            [sys.executable, "-c", script],
            input=json.dumps({"desired": desired, "planted": planted, "pw": PASSWORD}),
            capture_output=True,
            text=True,
            env=env,
            timeout=COMPARISON_DEADLINE,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"comparing one planted PKCS#12 value took more than {COMPARISON_DEADLINE}s (2**31-1 MAC rounds)")
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "False"


def test_a_bundle_without_mac_or_encryption_is_not_equivalent_to_the_encrypted_one(ec_chain):
    """A plain PKCS#12 of the same key and certificates opens with any password: not equivalent, the encrypted
    bundle is written."""
    (item,) = _items(ec_chain, "pkcs12")
    desired = item.payload["pkcs12"]
    plain = pkcs12.serialize_key_and_certificates(
        None, ec_chain.leaf.key, ec_chain.leaf.cert, [ec_chain.intermediate.cert], serialization.NoEncryption()
    )
    # cryptography's NoEncryption still adds a MAC under the empty password: that one does not open with ours.
    assert _layouts.of("pkcs12").equivalent_payload(
        {"pkcs12": desired}, {"pkcs12": base64.b64encode(plain).decode()}, PASSWORD
    ) == {"pkcs12": desired}
    planted = _plain_pkcs12(ec_chain)
    kept = _layouts.of("pkcs12").equivalent_payload({"pkcs12": desired}, {"pkcs12": planted}, PASSWORD)
    assert kept == {"pkcs12": desired}, "a bundle that opens without the password was taken for the encrypted one"

# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The certificate layer: parsing, validation, summaries."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import time
from datetime import UTC, datetime, timedelta

import pki
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtensionOID, NameOID
from refusals import assert_holds_no_pem, expect_error

from ansible_collections.certautopilot.vault.plugins.module_utils import _certs as _certs_module
from ansible_collections.certautopilot.vault.plugins.module_utils._certs import (
    HAS_CRYPTOGRAPHY,
    SUMMARY_KEYS,
    CertificateBundle,
    certificate_info,
    load_bundle,
    parse_certificate,
    parse_chain,
    parse_private_key,
    summarise_certificate,
    summarise_value,
    validate_bundle,
)
from ansible_collections.certautopilot.vault.plugins.module_utils._errors import VaultCertError


def test_cryptography_is_found():
    assert HAS_CRYPTOGRAPHY


def test_module_imports_without_cryptography_and_says_so(monkeypatch):
    # Modules must load to report missing_required_lib, so the import itself must not fail.
    for name in [name for name in sys.modules if name == "cryptography" or name.startswith("cryptography.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "cryptography", None)
    spec = importlib.util.spec_from_file_location("_certs_without_cryptography", _certs_module.__file__)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    assert module.HAS_CRYPTOGRAPHY is False
    assert "cryptography" in module.CRYPTOGRAPHY_IMPORT_ERROR
    assert module.CRYPTOGRAPHY_REQUIREMENT == "cryptography >= 40.0"


def test_crlf_and_missing_trailing_newline_store_the_same_bytes(ec_chain):
    leaf, intermediate = ec_chain.leaf, ec_chain.intermediate
    plain = load_bundle(certificate=leaf.cert_pem, private_key=leaf.key_pem, chain=intermediate.cert_pem)
    mangled = load_bundle(
        certificate=leaf.cert_pem.replace("\n", "\r\n").rstrip(),
        private_key="\n  " + leaf.key_pem.replace("\n", "\r\n").rstrip() + "  \n\n",
        chain=[intermediate.cert_pem.rstrip("\n")],
    )
    assert (mangled.certificate_pem, mangled.chain_pem) == (plain.certificate_pem, plain.chain_pem)
    assert mangled.private_key_pem == plain.private_key_pem == leaf.key_pem


# --- parse_certificate -----------------------------------------------------------------------


@pytest.mark.parametrize("key_type", ["ec", "rsa", "ed25519"])
def test_parse_certificate_reads_each_key_type(key_type):
    ca = pki.make_ca(key_type=key_type)
    leaf = pki.make_leaf(ca, "kt.example.com", key_type="ec")
    assert parse_certificate(ca.cert_pem) == ca.cert
    assert parse_certificate(leaf.cert_pem) == leaf.cert


def test_parse_certificate_ignores_explanatory_text_around_the_block(ec_chain):
    text = f"subject=CN = www.example.com\nissuer=CN = CA\n{ec_chain.leaf.cert_pem}\ntrailing words\n"
    assert parse_certificate(text) == ec_chain.leaf.cert


def test_parse_certificate_accepts_utf8_bytes(ec_chain):
    assert parse_certificate(ec_chain.leaf.cert_pem.encode()) == ec_chain.leaf.cert


def test_parse_certificate_refuses_two_certificates_and_points_to_chain(ec_chain):
    message = expect_error(
        ("certificate must hold exactly one PEM certificate", "put intermediates in chain"),
        parse_certificate,
        ec_chain.fullchain_pem,
    )
    assert_holds_no_pem(message, ec_chain.fullchain_pem)


def test_parse_certificate_refuses_a_certificate_with_its_key_in_the_same_text(ec_chain):
    text = ec_chain.leaf.cert_pem + ec_chain.leaf.key_pem
    message = expect_error(("certificate", "PEM"), parse_certificate, text)
    assert_holds_no_pem(message, text)


def test_parse_certificate_refuses_a_private_key_without_echoing_it(ec_chain):
    message = expect_error(("certificate", "PEM", "PRIVATE KEY"), parse_certificate, ec_chain.leaf.key_pem)
    assert_holds_no_pem(message, ec_chain.leaf.key_pem)


@pytest.mark.parametrize("cut", [40, 300, -30])
def test_parse_certificate_refuses_truncated_pem(ec_chain, cut):
    truncated = ec_chain.leaf.cert_pem[:cut]
    message = expect_error(("certificate is not a valid PEM certificate",), parse_certificate, truncated)
    assert_holds_no_pem(message, truncated)


def test_parse_certificate_refuses_a_corrupted_body(ec_chain):
    lines = ec_chain.leaf.cert_pem.splitlines()
    lines[3] = lines[3][::-1]
    expect_error(("certificate is not a valid PEM certificate",), parse_certificate, "\n".join(lines))


@pytest.mark.parametrize(
    "garbage",
    [
        b"\xff\xfe\x00\x81garbage",
        b"-----BEGIN CERTIFICATE-----\n\xff\xff\n-----END CERTIFICATE-----\n",
        "-----BEGIN CERTIFICATE-----\nMIIB\u00e9\u00e8\n-----END CERTIFICATE-----\n",
        "not a certificate at all",
        "",
        42,
        None,
    ],
    ids=["non-utf8-bytes", "non-utf8-body", "non-ascii-body", "plain-text", "empty", "int", "none"],
)
def test_parse_certificate_refuses_garbage(garbage):
    expect_error(("certificate", "PEM"), parse_certificate, garbage)


def test_parse_certificate_names_the_input_in_errors():
    expect_error(("ca_cert is not a valid PEM certificate",), parse_certificate, "junk", what="ca_cert")


# --- parse_chain -----------------------------------------------------------------------------


@pytest.mark.parametrize("empty", [None, "", " \n\r\n", [], ()])
def test_parse_chain_of_nothing_is_empty(empty):
    assert parse_chain(empty) == []


def test_parse_chain_reads_bundle_text_in_order(ec_chain):
    text = ec_chain.intermediate.cert_pem + ec_chain.root.cert_pem
    assert parse_chain(text) == [ec_chain.intermediate.cert, ec_chain.root.cert]


def test_parse_chain_reads_a_list_whose_items_may_hold_several_certificates(ec_chain):
    other = pki.make_ca("Other Root")
    chain = [ec_chain.intermediate.cert_pem + ec_chain.root.cert_pem, other.cert_pem]
    assert parse_chain(chain) == [ec_chain.intermediate.cert, ec_chain.root.cert, other.cert]


def test_parse_chain_names_the_bad_list_item(ec_chain):
    expect_error(
        ("chain item 2 is not a valid PEM certificate",),
        parse_chain,
        [ec_chain.intermediate.cert_pem, "garbage"],
    )


def test_parse_chain_names_the_bad_certificate_in_bundle_text(ec_chain):
    text = ec_chain.intermediate.cert_pem + ec_chain.root.cert_pem[:200]
    expect_error(("chain item 2 is not a valid PEM certificate",), parse_chain, text)


def test_parse_chain_names_the_bad_certificate_inside_a_list_item(ec_chain):
    item = ec_chain.intermediate.cert_pem + ec_chain.root.cert_pem[:200]
    expect_error(
        ("chain item 2 (certificate 2 in it) is not a valid PEM certificate",),
        parse_chain,
        [ec_chain.root.cert_pem, item],
    )


def test_parse_chain_refuses_a_private_key_without_echoing_it(ec_chain):
    text = ec_chain.intermediate.cert_pem + ec_chain.leaf.key_pem
    message = expect_error(("chain item 2", "PEM", "PRIVATE KEY"), parse_chain, text)
    assert_holds_no_pem(message, text)


@pytest.mark.parametrize("item", [b"\xff\xfe", 7, {"pem": "x"}, ""], ids=["non-utf8", "int", "dict", "empty"])
def test_parse_chain_refuses_list_items_that_are_not_pem(ec_chain, item):
    expect_error(("chain item 2", "PEM"), parse_chain, [ec_chain.intermediate.cert_pem, item])


def test_parse_chain_refuses_a_value_that_is_neither_text_nor_list():
    expect_error(("chain",), parse_chain, {"a": "b"})


@pytest.mark.parametrize(
    "junk",
    [
        "A" * 1_000_000,
        "-----BEGIN CERTIFICATE-----\n" * 40_000,
        "-----BEGIN " + "A" * 1_000_000,
        "-----END CERTIFICATE-----" * 40_000,
    ],
    ids=["base64ish", "many-begins", "endless-label", "many-ends"],
)
def test_parse_chain_refuses_a_megabyte_of_junk_quickly(junk):
    # CPU time, not wall time: what a quadratic scan would cost, whatever else the machine is doing.
    started = time.process_time()
    message = expect_error(("chain item 1", "PEM"), parse_chain, junk)
    assert time.process_time() - started < 2
    assert len(message) < 200


# --- parse_private_key -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key_type", "traditional"),
    [("ec", False), ("ec", True), ("rsa", False), ("rsa", True), ("ed25519", False)],
    ids=["ec-pkcs8", "ec-traditional", "rsa-pkcs8", "rsa-traditional", "ed25519-pkcs8"],
)
def test_parse_private_key_reads_pkcs8_and_traditional_forms(key_type, traditional):
    key = pki.new_key(key_type) if key_type != "rsa" else pki.make_ca("RSA Key CA", key_type="rsa").key
    parsed = parse_private_key(pki.key_pem(key, traditional=traditional))
    assert parsed.public_key() == key.public_key()


def test_parse_private_key_skips_ec_parameters_block():
    key = pki.new_key("ec")
    text = "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n" + pki.key_pem(
        key, traditional=True
    )
    assert parse_private_key(text).public_key() == key.public_key()
    bundle_key_pem = _bundle_with_key(text).private_key_pem
    assert bundle_key_pem == pki.key_pem(key, traditional=True)


def _bundle_with_key(key_text: str) -> CertificateBundle:
    ca = pki.make_ca()
    key = parse_private_key(key_text)
    leaf = pki.make_leaf(ca, "ecparam.example.com", key=key)
    return load_bundle(certificate=leaf.cert_pem, private_key=key_text)


@pytest.mark.parametrize("traditional", [False, True], ids=["pkcs8", "traditional-proc-type"])
def test_parse_private_key_refuses_encrypted_key_and_says_no_passphrase(traditional):
    key = pki.new_key("ec")
    encryption = serialization.BestAvailableEncryption(b"changeit")
    form = serialization.PrivateFormat.TraditionalOpenSSL if traditional else serialization.PrivateFormat.PKCS8
    pem = key.private_bytes(serialization.Encoding.PEM, form, encryption).decode()
    message = expect_error(("private key", "encrypted", "PEM", "passphrase"), parse_private_key, pem)
    assert_holds_no_pem(message, pem)


def test_encrypted_key_helper_is_refused_too():
    pem = pki.encrypted_key_pem(pki.new_key("ec"), "s3cret")
    assert "ENCRYPTED PRIVATE KEY" in pem
    expect_error(("private key", "encrypted"), parse_private_key, pem)


@pytest.mark.parametrize("cut", [50, 150, -40])
def test_parse_private_key_refuses_truncated_key_without_echoing_it(cut):
    pem = pki.key_pem(pki.new_key("ec"))
    message = expect_error(("private key is not a valid PEM private key",), parse_private_key, pem[:cut])
    assert_holds_no_pem(message, pem)


@pytest.mark.parametrize(
    "garbage",
    [
        "junk",
        "",
        b"\xff\xfe\x00",
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        None,
    ],
    ids=["text", "empty", "non-utf8", "bad-der", "none"],
)
def test_parse_private_key_refuses_garbage(garbage):
    expect_error(("private key is not a valid PEM private key",), parse_private_key, garbage)


def test_parse_private_key_refuses_non_ascii_in_the_body():
    lines = pki.key_pem(pki.new_key("ec")).splitlines()
    lines[1] = "\u00e9" + lines[1][1:]
    expect_error(("private key is not a valid PEM private key",), parse_private_key, "\n".join(lines))


def test_parse_private_key_refuses_a_certificate(ec_chain):
    expect_error(("private key", "PEM CERTIFICATE block"), parse_private_key, ec_chain.leaf.cert_pem)


def test_parse_private_key_refuses_two_keys_without_echoing_them():
    text = pki.key_pem(pki.new_key("ec")) + pki.key_pem(pki.new_key("ec"))
    message = expect_error(("private key must hold exactly one PEM private key",), parse_private_key, text)
    assert_holds_no_pem(message, text)


# --- load_bundle and validate_bundle ---------------------------------------------------------


@pytest.mark.parametrize("chain_fixture", ["ec_chain", "rsa_chain"])
def test_validate_accepts_matching_key_linked_chain_and_current_validity(request, chain_fixture):
    chain = request.getfixturevalue(chain_fixture)
    bundle = load_bundle(
        certificate=chain.leaf.cert_pem, private_key=chain.leaf.key_pem, chain=[chain.intermediate.cert_pem]
    )
    validate_bundle(bundle)
    assert bundle.certificate == chain.leaf.cert
    assert bundle.chain == (chain.intermediate.cert,)


def test_validate_accepts_a_chain_that_ends_with_the_root(ec_chain):
    bundle = load_bundle(
        certificate=ec_chain.leaf.cert_pem,
        private_key=ec_chain.leaf.key_pem,
        chain=ec_chain.intermediate.cert_pem + ec_chain.root.cert_pem,
    )
    validate_bundle(bundle)


def test_validate_accepts_a_bundle_without_private_key_or_chain(ec_chain):
    bundle = load_bundle(certificate=ec_chain.leaf.cert_pem)
    assert bundle.private_key is None and bundle.private_key_pem is None and bundle.chain == ()
    validate_bundle(bundle)


def test_empty_private_key_text_counts_as_no_key(ec_chain):
    assert load_bundle(certificate=ec_chain.leaf.cert_pem, private_key=" \n").private_key is None


def test_validate_refuses_key_of_another_certificate(ec_chain):
    other = pki.make_leaf(ec_chain.intermediate, "other.example.com")
    bundle = load_bundle(certificate=ec_chain.leaf.cert_pem, private_key=other.key_pem)
    message = expect_error(("private key does not match the certificate",), validate_bundle, bundle)
    assert_holds_no_pem(message, other.key_pem)


def test_validate_refuses_rsa_key_for_ec_certificate(ec_chain, rsa_chain):
    bundle = load_bundle(certificate=ec_chain.leaf.cert_pem, private_key=rsa_chain.leaf.key_pem)
    expect_error(("private key does not match the certificate",), validate_bundle, bundle)


def test_validate_refuses_chain_in_root_first_order(ec_chain):
    bundle = load_bundle(
        certificate=ec_chain.leaf.cert_pem, chain=[ec_chain.root.cert_pem, ec_chain.intermediate.cert_pem]
    )
    message = expect_error(
        (
            (
                "chain is broken: certificate 'CN=www.example.com,O=CertAutoPilot Tests' is not issued by "
                "chain item 1 'CN=CertAutoPilot Test Root CA,O=CertAutoPilot Tests'"
            ),
            "chain item 2",
            "leaf-first",
        ),
        validate_bundle,
        bundle,
    )
    assert "BEGIN" not in message


def test_validate_refuses_an_unrelated_certificate_in_chain(ec_chain):
    other = pki.make_ca("Other")
    bundle = load_bundle(certificate=ec_chain.leaf.cert_pem, chain=other.cert_pem)
    expect_error(
        ("chain is broken: certificate 'CN=www.example.com", "is not issued by chain item 1 'CN=Other"),
        validate_bundle,
        bundle,
    )


def test_validate_refuses_a_broken_link_further_up_the_chain(ec_chain):
    other = pki.make_ca("Other")
    bundle = load_bundle(certificate=ec_chain.leaf.cert_pem, chain=[ec_chain.intermediate.cert_pem, other.cert_pem])
    expect_error(
        ("chain is broken: chain item 1 'CN=CertAutoPilot Test Intermediate CA", "is not issued by chain item 2"),
        validate_bundle,
        bundle,
    )


def test_validate_refuses_an_impostor_issuer_with_the_same_name(ec_chain):
    impostor = pki.make_intermediate(ec_chain.root, key=pki.new_key("ec"))
    assert impostor.cert.subject == ec_chain.intermediate.cert.subject
    bundle = load_bundle(certificate=ec_chain.leaf.cert_pem, chain=impostor.cert_pem)
    expect_error(
        ("chain is broken", "is not issued by chain item 1", "signature does not verify"), validate_bundle, bundle
    )


def test_validate_refuses_a_duplicate_intermediate(ec_chain):
    bundle = load_bundle(
        certificate=ec_chain.leaf.cert_pem,
        chain=[ec_chain.intermediate.cert_pem, ec_chain.intermediate.cert_pem],
    )
    expect_error(("chain item 2", "duplicate of chain item 1"), validate_bundle, bundle)


def test_validate_refuses_the_certificate_itself_in_chain(ec_chain):
    bundle = load_bundle(certificate=ec_chain.leaf.cert_pem, chain=ec_chain.fullchain_pem)
    expect_error(("chain item 1", "duplicate of the certificate itself"), validate_bundle, bundle)


def test_validate_refuses_expired_certificate_with_the_date(ec_chain):
    leaf = pki.make_leaf(
        ec_chain.intermediate,
        "expired.example.com",
        not_before=datetime(2024, 10, 1, tzinfo=UTC),
        not_after=datetime(2025, 1, 1, tzinfo=UTC),
    )
    bundle = load_bundle(certificate=leaf.cert_pem, private_key=leaf.key_pem, chain=ec_chain.chain_pem)
    expect_error(("certificate expired on 2025-01-01T00:00:00Z",), validate_bundle, bundle)


def test_validate_refuses_not_yet_valid_certificate_with_the_date(ec_chain):
    leaf = pki.make_leaf(ec_chain.intermediate, "future.example.com", not_before=datetime(2030, 6, 1, 12, tzinfo=UTC))
    bundle = load_bundle(certificate=leaf.cert_pem, chain=ec_chain.chain_pem)
    expect_error(("certificate is not yet valid (not before 2030-06-01T12:00:00Z)",), validate_bundle, bundle)


def test_validate_uses_the_given_time_and_takes_naive_times_as_utc():
    ca = pki.make_ca()
    start = datetime(2026, 1, 1, tzinfo=UTC)
    leaf = pki.make_leaf(ca, "window.example.com", not_before=start, not_after=start + timedelta(days=10))
    bundle = load_bundle(certificate=leaf.cert_pem)
    validate_bundle(bundle, now=start)
    validate_bundle(bundle, now=start + timedelta(days=10))
    validate_bundle(bundle, now=datetime(2026, 1, 5))
    expect_error(("expired on 2026-01-11T00:00:00Z",), validate_bundle, bundle, now=datetime(2026, 1, 11, 0, 0, 1))
    expect_error(("not yet valid",), validate_bundle, bundle, now=start - timedelta(seconds=1))


def test_bundle_repr_holds_no_private_key(ec_chain):
    bundle = load_bundle(certificate=ec_chain.leaf.cert_pem, private_key=ec_chain.leaf.key_pem)
    assert_holds_no_pem(repr(bundle), ec_chain.leaf.key_pem)
    assert "private_key" not in repr(bundle)


def test_bundle_pem_properties_are_canonical(ec_chain):
    bundle = load_bundle(
        certificate=ec_chain.leaf.cert_pem,
        chain=[ec_chain.intermediate.cert_pem, ec_chain.root.cert_pem],
    )
    assert bundle.certificate_pem == ec_chain.leaf.cert_pem
    assert bundle.chain_pem == ec_chain.intermediate.cert_pem + ec_chain.root.cert_pem
    assert bundle.fullchain_pem == bundle.certificate_pem + bundle.chain_pem
    assert bundle.certificate_pem.endswith("-----END CERTIFICATE-----\n")
    assert load_bundle(certificate=ec_chain.leaf.cert_pem).chain_pem == ""


# --- summarise_certificate -------------------------------------------------------------------


def test_summary_keys_name_exactly_what_a_summary_holds_in_its_order(ec_chain):
    assert tuple(summarise_certificate(ec_chain.leaf.cert)) == SUMMARY_KEYS


def test_summary_reads_cn_sans_serial_dates_issuer_and_fingerprint(ec_chain):
    leaf = pki.make_leaf(
        ec_chain.intermediate,
        "www.example.com",
        sans=("www.example.com", "IP:192.0.2.10", "2001:db8::1", "email:ops@example.com", "URI:https://example.com/"),
        not_before=datetime(2026, 8, 30, tzinfo=UTC),
        not_after=datetime(2026, 11, 28, tzinfo=UTC),
        serial=0x3A0F5C,
    )
    summary = summarise_certificate(leaf.cert)
    assert summary == {
        "cn": "www.example.com",
        "sans": ["www.example.com", "192.0.2.10", "2001:db8::1", "ops@example.com", "https://example.com/"],
        "serial": "3a:0f:5c",
        "not_before": "2026-08-30T00:00:00Z",
        "not_after": "2026-11-28T00:00:00Z",
        "issuer": "CN=CertAutoPilot Test Intermediate CA,O=CertAutoPilot Tests",
        "subject": "CN=www.example.com,O=CertAutoPilot Tests",
        "fingerprint_sha256": hashlib.sha256(leaf.cert.public_bytes(serialization.Encoding.DER)).hexdigest(),
    }


@pytest.mark.parametrize(("serial", "expected"), [(0xABC, "0a:bc"), (1, "01"), (0xFF00, "ff:00")])
def test_summary_serial_is_zero_padded_byte_pairs(serial, expected):
    assert summarise_certificate(pki.make_leaf(None, "s.example.com", serial=serial).cert)["serial"] == expected


def test_summary_of_certificate_without_cn_or_sans():
    summary = summarise_certificate(pki.make_leaf(None, None).cert)
    assert summary["cn"] is None
    assert summary["sans"] == []
    assert summary["subject"] == "O=CertAutoPilot Tests"


def test_summary_lists_only_name_types_that_read_as_text():
    ca = pki.make_ca()
    key = pki.new_key("ec")
    now = datetime.now(UTC)
    names = [
        x509.DirectoryName(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dir")])),
        x509.DNSName("dns.example.com"),
        x509.RegisteredID(x509.ObjectIdentifier("1.2.3.4")),
    ]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "names.example.com")]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    assert summarise_certificate(cert)["sans"] == ["dns.example.com"]


def _certificate_with_malformed_san() -> x509.Certificate:
    ca = pki.make_ca()
    now = datetime.now(UTC)
    garbage = x509.UnrecognizedExtension(ExtensionOID.SUBJECT_ALTERNATIVE_NAME, b"\x30\x03\x01")
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "malformed.example.com")]))
        .issuer_name(ca.cert.subject)
        .public_key(pki.new_key("ec").public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .add_extension(garbage, critical=False)
        .sign(ca.key, hashes.SHA256())
    )


def test_summary_refuses_a_malformed_san_extension():
    expect_error(("certificate", "malformed subjectAltName"), summarise_certificate, _certificate_with_malformed_san())


def test_summarise_value_marks_a_certificate_with_malformed_extension_unreadable():
    pem = _certificate_with_malformed_san().public_bytes(serialization.Encoding.PEM).decode()
    assert summarise_value(pem) == "<certificate: unreadable>\n"


def test_certificate_info_summarises_pem_text(ec_chain):
    assert certificate_info(ec_chain.leaf.cert_pem) == summarise_certificate(ec_chain.leaf.cert)
    expect_error(("certificate", "PEM"), certificate_info, "junk")


@pytest.fixture
def full_bundle(ec_chain) -> CertificateBundle:
    return load_bundle(
        certificate=ec_chain.leaf.cert_pem, private_key=ec_chain.leaf.key_pem, chain=ec_chain.intermediate.cert_pem
    )


# --- summarise_value -------------------------------------------------------------------------


def _public_key_sha256(key) -> str:
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def test_summarise_value_replaces_a_certificate_by_its_summary(ec_chain):
    summary = summarise_certificate(ec_chain.leaf.cert)
    assert summarise_value(ec_chain.leaf.cert_pem) == (
        f"<certificate CN=www.example.com, serial={summary['serial']}, not_after={summary['not_after']}, "
        f"sha256={summary['fingerprint_sha256']}>\n"
    )


@pytest.mark.parametrize("key_type", ["ec", "rsa"])
@pytest.mark.parametrize("traditional", [False, True], ids=["pkcs8", "traditional"])
def test_summarise_value_replaces_a_private_key_by_its_public_key_hash(key_type, traditional, ec_chain, rsa_chain):
    key = (ec_chain if key_type == "ec" else rsa_chain).leaf.key
    pem = pki.key_pem(key, traditional=traditional)
    assert summarise_value(pem) == f"<private key: sha256 {_public_key_sha256(key)}>\n"


def test_summarise_value_hides_encrypted_keys():
    pem = pki.encrypted_key_pem(pki.new_key("ec"))
    summary = summarise_value(pem)
    assert summary == "<private key: unreadable>\n"
    assert_holds_no_pem(summary, pem)


@pytest.mark.parametrize("cut", [60, 150, -30])
def test_summarise_value_hides_a_truncated_key_to_the_end_of_the_text(cut):
    pem = pki.key_pem(pki.new_key("rsa"))
    summary = summarise_value("before\n" + pem[:cut])
    assert summary == "before\n<private key: unreadable>"
    assert_holds_no_pem(summary, pem)


def test_summarise_value_hides_a_key_whose_begin_line_is_missing():
    pem = pki.key_pem(pki.new_key("ec"))
    headless = pem.split("\n", 1)[1]
    summary = summarise_value(headless)
    assert summary == "<private key: unreadable>\n"
    assert_holds_no_pem(summary, pem)


def test_summarise_value_hides_an_unparseable_private_key_block():
    pem = pki.key_pem(pki.new_key("ec"))
    lines = pem.splitlines()
    lines[1] = lines[1][::-1]
    damaged = "\n".join(lines)
    assert summarise_value(damaged) == "<private key: unreadable>"
    assert_holds_no_pem(summarise_value(damaged), pem)


def test_summarise_value_hides_a_key_block_whose_end_line_names_another_label():
    pem = pki.key_pem(pki.new_key("ec"))
    mismatched = pem.replace("-----END PRIVATE KEY-----", "-----END CERTIFICATE-----")
    summary = summarise_value(mismatched)
    assert summary == "<private key: unreadable>\n"
    assert_holds_no_pem(summary, pem)


def test_summarise_value_hides_a_lowercase_private_key_label():
    pem = pki.key_pem(pki.new_key("ec")).replace("PRIVATE KEY", "private key")
    assert summarise_value(pem) == "<private key: unreadable>\n"


def test_summarise_value_labels_other_pem_blocks(ec_chain):
    public = ec_chain.leaf.key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert summarise_value(public.decode()) == "<PEM PUBLIC KEY>\n"


def test_summarise_value_names_a_certificate_without_cn_by_its_subject():
    assert summarise_value(pki.make_leaf(None, None).cert_pem).startswith(
        "<certificate subject=O=CertAutoPilot Tests, "
    )


def test_summarise_value_marks_a_broken_certificate_unreadable(ec_chain):
    assert summarise_value(ec_chain.leaf.cert_pem[:200]) == "<certificate: unreadable>"


def test_summarise_value_keeps_text_around_blocks_and_every_block_of_a_fullchain(ec_chain, full_bundle):
    text = f"# deployed\n{ec_chain.fullchain_pem}{ec_chain.leaf.key_pem}end"
    summary = summarise_value(text)
    lines = summary.splitlines()
    assert lines[0] == "# deployed"
    assert lines[1].startswith("<certificate CN=www.example.com, ")
    assert lines[2].startswith("<certificate CN=CertAutoPilot Test Intermediate CA, ")
    assert lines[3].startswith("<private key: sha256 ")
    assert lines[4] == "end"
    assert_holds_no_pem(summary, text)


def test_summarise_value_never_leaks_any_payload_value(full_bundle):
    bundle = full_bundle
    for value in (bundle.certificate_pem, bundle.private_key_pem, bundle.chain_pem, bundle.fullchain_pem):
        assert_holds_no_pem(summarise_value(value), value)


@pytest.mark.parametrize("value", ["", "plain text", "a-----b", "-----BEGIN lowercase?"])
def test_summarise_value_returns_non_pem_text_unchanged(value):
    assert summarise_value(value) == value


@pytest.mark.parametrize("value", [None, 3, ["x"]])
def test_summarise_value_returns_non_strings_unchanged(value):
    assert summarise_value(value) == value


def test_a_chain_repeated_across_a_batch_is_parsed_and_written_out_once(ec_chain):
    """Thousands of certificates with one chain share one parsed chain and one chain text."""
    bundles = [
        load_bundle(certificate=ec_chain.leaf.cert_pem, chain=ec_chain.intermediate.cert_pem + ec_chain.root.cert_pem)
        for _attempt in range(3)
    ]
    assert all(bundle.chain is bundles[0].chain for bundle in bundles)
    assert all(bundle.chain_pem is bundles[0].chain_pem for bundle in bundles)
    assert bundles[0].chain_pem == ec_chain.intermediate.cert_pem + ec_chain.root.cert_pem


def test_a_bad_chain_is_refused_every_time_it_is_given(ec_chain):
    """Errors are not cached away: the second batch item with the same bad chain is refused too."""
    for _attempt in range(2):
        expect_error(("chain item 1",), load_bundle, certificate=ec_chain.leaf.cert_pem, chain="not a certificate")


@pytest.fixture(scope="module")
def other_ca_chain() -> pki.Chain:
    # Other CA names, so that its keys differ from ec_chain's (same names give the same keys).
    return pki.make_chain("two.example.com", root_cn="Other Root CA", intermediate_cn="Other Intermediate CA")


def test_a_cached_chain_never_lets_another_leaf_pass_validation(ec_chain, other_ca_chain):
    good = load_bundle(certificate=ec_chain.leaf.cert_pem, private_key=ec_chain.leaf.key_pem, chain=ec_chain.chain_pem)
    validate_bundle(good)

    # Same chain text (cached), leaf from another CA: the chain check is per item.
    other = load_bundle(
        certificate=other_ca_chain.leaf.cert_pem, private_key=other_ca_chain.leaf.key_pem, chain=ec_chain.chain_pem
    )
    with pytest.raises(VaultCertError, match="chain is broken"):
        validate_bundle(other)


def test_each_item_gets_its_own_chain_whatever_was_parsed_before(ec_chain, other_ca_chain):
    first = load_bundle(certificate=ec_chain.leaf.cert_pem, chain=[ec_chain.chain_pem])
    second = load_bundle(certificate=other_ca_chain.leaf.cert_pem, chain=other_ca_chain.chain_pem)
    third = load_bundle(certificate=ec_chain.leaf.cert_pem, chain=ec_chain.chain_pem)

    assert first.chain_pem == third.chain_pem == ec_chain.chain_pem
    assert second.chain_pem == other_ca_chain.chain_pem
    assert first.fullchain_pem.startswith(ec_chain.leaf.cert_pem)
    assert second.fullchain_pem.startswith(other_ca_chain.leaf.cert_pem)


def test_a_damaged_chain_is_refused_every_time_as_text_and_as_a_list(ec_chain):
    bad = ec_chain.chain_pem.replace("A", "B", 5)
    for _attempt in range(3):
        with pytest.raises(VaultCertError):
            load_bundle(certificate=ec_chain.leaf.cert_pem, chain=bad)
        with pytest.raises(VaultCertError):
            load_bundle(certificate=ec_chain.leaf.cert_pem, chain=[bad])


@pytest.mark.parametrize(
    "chain, says",
    [
        ({"pem": "x"}, "chain must be PEM text or a list of PEM texts, not dict"),
        ([{"pem": "x"}], "chain item 1 is not a valid PEM certificate (expected text, got dict)"),
        ([["x"]], "chain item 1 is not a valid PEM certificate (expected text, got list)"),
        (12, "chain must be PEM text or a list of PEM texts, not int"),
        (True, "chain must be PEM text or a list of PEM texts, not bool"),
    ],
)
def test_an_odd_chain_value_is_refused_with_a_clear_message(ec_chain, chain, says):
    expect_error((says,), load_bundle, certificate=ec_chain.leaf.cert_pem, chain=chain)


def test_a_chain_holding_a_private_key_is_refused_without_showing_it(ec_chain):
    for chain in (ec_chain.chain_pem + ec_chain.leaf.key_pem, [ec_chain.chain_pem, ec_chain.leaf.key_pem]):
        message = expect_error(("chain",), load_bundle, certificate=ec_chain.leaf.cert_pem, chain=chain)
        assert_holds_no_pem(message, ec_chain.leaf.key_pem)

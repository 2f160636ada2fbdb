# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Attacks on the push layouts (acme_sh, fabio, traefik, haproxy, pkcs12), pkcs12_password and the role's layout.

Against a real OpenBao dev server. A test named for a defect fails on the code it was written against and
states the safe behaviour in its docstring; the others are attacks that held, kept as regressions.
"""

from __future__ import annotations

import base64
import json
import re
import uuid

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from fault_proxy import FaultProxy
from leaks import assert_no_leak, find_leaks
from pki import make_chain, make_leaf
from push_runs import approle, push, push_tasks
from role_runs import run_role

PASSWORD = "attack5-pkcs12-password-2718"
ACME_SH_FILES = ("cert.pem", "cert.key", "ca.pem", "fullchain.pem")

# A PKCS#12 bundle as `openssl pkcs12 -export -nomac -keypbe NONE -certpbe NONE` writes it: no MAC, key and
# certificate in clear, so it opens with any password. Its key is on SM2, a curve cryptography does not load.
SM2_PLAIN_PKCS12 = (
    "MIIC3QIBAzCCAtYGCSqGSIb3DQEHAaCCAscEggLDMIICvzCCAeAGCSqGSIb3DQEHAaCCAdEEggHNMIIByTCCAcUGCyqGSIb3DQEMCgEDoIIBjTCC"
    "AYkGCiqGSIb3DQEJFgGgggF5BIIBdTCCAXEwggEXoAMCAQICFAznVK7StCuToI73CfbgyCSm+DVpMAoGCCqBHM9VAYN1MA4xDDAKBgNVBAMMA3Nt"
    "MjAeFw0yNjEyMDIwNjMzMjdaFw0yNzAxMDEwNjMzMjdaMA4xDDAKBgNVBAMMA3NtMjBZMBMGByqGSM49AgEGCCqBHM9VAYItA0IABEvkBQrPSGaE"
    "ESGoV4aBOlGMe+G4wlhDgMRtJkN883nnrESjd9PHEMH/UzvUhkquU9hEpN0bAR7YB0UkKVL7LCyjUzBRMB0GA1UdDgQWBBTh/gireR9//AtxFCLX"
    "49qb53xxtTAfBgNVHSMEGDAWgBTh/gireR9//AtxFCLX49qb53xxtTAPBgNVHRMBAf8EBTADAQH/MAoGCCqBHM9VAYN1A0gAMEUCIHsXqBUtwcjG"
    "xk1lfPU0kz0TJekpFYFXp0PO6fJfKtFWAiEAv/oplmZ39OnPrKPVu2/Y9JbaLgo4n0SmCuXUSf9B9vcxJTAjBgkqhkiG9w0BCRUxFgQUmHkUukUc"
    "952ql1HiczvTC5wIXfUwgdgGCSqGSIb3DQEHAaCBygSBxzCBxDCBwQYLKoZIhvcNAQwKAQGggYowgYcCAQAwEwYHKoZIzj0CAQYIKoEcz1UBgi0E"
    "bTBrAgEBBCDwVIK6RDCjOY70WDWSWemgw84GgBgKG80zr/JT2U1W1aFEA0IABEvkBQrPSGaEESGoV4aBOlGMe+G4wlhDgMRtJkN883nnrESjd9PH"
    "EMH/UzvUhkquU9hEpN0bAR7YB0UkKVL7LCwxJTAjBgkqhkiG9w0BCRUxFgQUmHkUukUc952ql1HiczvTC5wIXfU="
)


@pytest.fixture
def path() -> str:
    return f"certs/attack5-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def connect(vault_conn: dict[str, str], bao) -> dict[str, str]:
    """Connection plus a fresh AppRole login as role certs."""
    return {**vault_conn, **approle(bao, "certs")}


# -- helpers ------------------------------------------------------------------------------------------------------


def _der(tag: int, content: bytes) -> bytes:
    size = len(content)
    if size < 0x80:
        return bytes([tag, size]) + content
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(length)]) + length + content


def _seq(*parts: bytes) -> bytes:
    return _der(0x30, b"".join(parts))


def _explicit(content: bytes) -> bytes:
    return _der(0xA0, content)


_OID_DATA = bytes.fromhex("06092a864886f70d010701")
_OID_KEY_BAG = bytes.fromhex("060b2a864886f70d010c0a0101")
_OID_CERT_BAG = bytes.fromhex("060b2a864886f70d010c0a0103")
_OID_X509_CERT = bytes.fromhex("060a2a864886f70d01091601")


def _data_content(inner: bytes) -> bytes:
    return _seq(_OID_DATA, _explicit(_der(0x04, inner)))


def plain_pkcs12(key, certificate, chain=()) -> str:
    """Base64 of a PKCS#12 bundle without MAC and without encryption: it opens with any password.

    What `openssl pkcs12 -export -nomac -keypbe NONE -certpbe NONE` and JDK keytool's password-less
    PKCS#12 (certProtectionAlgorithm and macAlgorithm NONE) write.
    """
    pkcs8 = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    bags = [_seq(_OID_KEY_BAG, _explicit(pkcs8))]
    for cert in (certificate, *chain):
        der = cert.public_bytes(serialization.Encoding.DER)
        bags.append(_seq(_OID_CERT_BAG, _explicit(_seq(_OID_X509_CERT, _explicit(_der(0x04, der))))))
    auth_safe = _seq(_data_content(_seq(*bags)))
    return base64.b64encode(_seq(_der(0x02, b"\x03"), _data_content(auth_safe))).decode("ascii")


def legacy_pkcs12(chain, password: str) -> str:
    """Base64 of the same key and certificates in the legacy form: 3DES, SHA-1 MAC, one KDF round, an alias."""
    encryption = (
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(1)
        .key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
        .hmac_hash(hashes.SHA1())
        .build(password.encode())
    )
    data = pkcs12.serialize_key_and_certificates(
        b"planted-alias", chain.leaf.key, chain.leaf.cert, [chain.intermediate.cert], encryption
    )
    return base64.b64encode(data).decode("ascii")


def root_write(bao, path: str, data: dict) -> None:
    status, body = bao.api("POST", f"secret/data/{path}", {"data": data})
    assert status == 200, body


def data_of(bao, path: str) -> dict | None:
    status, body = bao.api("GET", f"secret/data/{path}")
    assert status in (200, 404), body
    return body["data"]["data"] if status == 200 else None


def versions(bao, path: str) -> list[int]:
    return sorted(int(number) for number in bao.kv_versions("secret", path))


def pkcs12_args(path: str, chain, **options) -> dict:
    return {
        "path": path,
        "certificate": chain.leaf.cert_pem,
        "private_key": chain.leaf.key_pem,
        "chain": chain.chain_pem,
        "layout": "pkcs12",
        "pkcs12_password": PASSWORD,
        **options,
    }


def data_writes(entries: list[dict]) -> list[str]:
    return [
        entry["request"]["path"]
        for entry in entries
        if "/data/" in entry["request"]["path"] and entry["request"]["operation"] in ("create", "update")
    ]


def bundle_is_protected(value: str) -> bool:
    """Whether a base64 PKCS#12 bundle refuses a wrong password (it is MAC-protected or encrypted)."""
    try:
        pkcs12.load_key_and_certificates(base64.b64decode(value), b"not-the-password")
    except ValueError:
        return True
    return False


# -- 1. PKCS#12 equivalence: what the current bundle may be -------------------------------------------------------


def test_a_plain_pkcs12_bundle_with_the_same_content_is_replaced_by_one_encrypted_with_the_password(
    ansible, bao, connect, path
):
    """The secret holds the same key, certificate and chain as a PKCS#12 bundle without MAC and without
    encryption (openssl -nomac -keypbe NONE -certpbe NONE, keytool's password-less form): the private key is
    in clear in Vault and the bundle opens with any password.

    Expected: the push writes a new version, a bundle encrypted (and MAC-protected) with pkcs12_password, as the
    layout promises. Before: the plain bundle "opens" with the password, its content matches, so it is kept -
    changed false, no write - and the key stays unprotected in the secret indefinitely.
    """
    chain = make_chain("plain-p12.example.com")
    planted = plain_pkcs12(chain.leaf.key, chain.leaf.cert, [chain.intermediate.cert])
    assert not bundle_is_protected(planted)
    root_write(bao, path, {"pkcs12": planted})

    run = push(ansible, {**connect, **pkcs12_args(path, chain)})

    assert not run.failed, run.msg
    stored = data_of(bao, path)["pkcs12"]
    assert bundle_is_protected(stored), "the private key is still stored in a bundle that opens without the password"
    assert run.changed and run.result["changed_fields"][:1] == ["pkcs12"]
    assert versions(bao, path) == [1, 2]


def test_a_legacy_pkcs12_bundle_with_one_kdf_round_is_replaced_by_the_documented_pbes2_form(
    ansible, bao, connect, path
):
    """The secret holds the same content under the same password, but as a legacy bundle: 3DES, a SHA-1 MAC,
    one KDF round, and a friendly name (alias) the push never writes.

    Expected: the push writes the form it documents (PBES2, PBKDF2-HMAC-SHA256, AES-256-CBC, 10000 rounds, no
    friendly name): a bundle that only needs one KDF round to brute-force is not "the same" as the one asked
    for. Before: it is kept as unchanged, so the weak bundle - and the planted alias that a Java consumer uses
    as its key entry's name - stays.
    """
    chain = make_chain("legacy-p12.example.com")
    planted = legacy_pkcs12(chain, PASSWORD)
    root_write(bao, path, {"pkcs12": planted})

    run = push(ansible, {**connect, **pkcs12_args(path, chain)})

    assert not run.failed, run.msg
    assert data_of(bao, path)["pkcs12"] != planted, "the legacy 3DES / 1-round bundle was kept as unchanged"
    assert run.changed and versions(bao, path) == [1, 2]


def test_a_pkcs12_bundle_whose_key_cryptography_cannot_load_is_replaced_not_a_crash(ansible, bao, connect, path):
    """Whoever can write the secret plants a password-less PKCS#12 bundle whose key is on SM2 (a curve
    cryptography does not load). It needs no knowledge of pkcs12_password: a bundle without MAC opens with any.

    Expected: it does not hold the wanted key and certificate, so it is replaced (changed, version 2) - a
    current value is data to compare, not something that can stop a delivery. Before: comparing it raises
    UnsupportedAlgorithm, which _pkcs12_content does not catch; the push fails with "unexpected error
    (UnsupportedAlgorithm)" on every run and the certificate can never be delivered to that path again.
    """
    chain = make_chain("sm2-p12.example.com")
    root_write(bao, path, {"pkcs12": SM2_PLAIN_PKCS12})

    run = push(ansible, {**connect, **pkcs12_args(path, chain)})

    assert not run.failed, run.msg
    assert run.changed and versions(bao, path) == [1, 2]
    stored = base64.b64decode(data_of(bao, path)["pkcs12"])
    assert pkcs12.load_key_and_certificates(stored, PASSWORD.encode())[1] == chain.leaf.cert


def _differing_bundle(chain, planted: str):
    """The current value of a differs case: a bundle (base64) of something else than the wanted, or no bundle."""
    if planted == "not base64":
        return "!!! not base64 !!!"
    if planted == "a list":
        return [PASSWORD]
    encryption = serialization.BestAvailableEncryption(PASSWORD.encode())
    chain_certs = [chain.intermediate.cert]
    if planted == "other key":
        # cryptography refuses to pair a key with a certificate that is not its own: written by hand.
        other = make_leaf(chain.intermediate, "differs.example.com")
        return plain_pkcs12(other.key, chain.leaf.cert, chain_certs)
    if planted == "extra certificate":
        chain_certs = [chain.intermediate.cert, chain.root.cert]
    elif planted == "no chain":
        chain_certs = None
    elif planted == "other pw":
        encryption = serialization.BestAvailableEncryption(b"another password")
    data = pkcs12.serialize_key_and_certificates(None, chain.leaf.key, chain.leaf.cert, chain_certs, encryption)
    return base64.b64encode(data).decode("ascii")


@pytest.mark.parametrize("planted", ["other key", "extra certificate", "no chain", "not base64", "a list", "other pw"])
def test_a_pkcs12_bundle_that_differs_in_key_chain_encoding_or_password_is_replaced(
    ansible, bao, connect, path, planted
):
    """Held: a current bundle with the same certificate but another key, an extra or missing chain certificate,
    a value that is not base64 or not a string, or a bundle under another password, is replaced."""
    chain = make_chain(f"differs-{planted.replace(' ', '-')}.example.com")
    root_write(bao, path, {"pkcs12": _differing_bundle(chain, planted)})

    run = push(ansible, {**connect, **pkcs12_args(path, chain)}, diff=True)

    assert not run.failed, run.msg
    assert run.changed and versions(bao, path) == [1, 2]
    key, certificate, intermediates = pkcs12.load_key_and_certificates(
        base64.b64decode(data_of(bao, path)["pkcs12"]), PASSWORD.encode()
    )
    assert certificate == chain.leaf.cert and intermediates == [chain.intermediate.cert]
    assert key.private_numbers() == chain.leaf.key.private_numbers()


# -- 2. pkcs12_password: never shown ------------------------------------------------------------------------------


def run_raw(ansible, bao, args: dict, *secrets: str, **options):
    """A vault_cert_push run whose arguments may hold a password of the wrong type: leak-checked for ``secrets``."""
    mark = bao.audit_mark()
    run = ansible.run_module("vault_cert_push", args, **options)
    run.requests = bao.audit_requests(mark)
    assert_no_leak([run.output, run.result], *secrets, args.get("secret_id"), args.get("private_key"))
    return run


TYPED_SECRET = "typed-pkcs12-secret-0451"


@pytest.mark.parametrize(
    "password",
    [
        pytest.param([TYPED_SECRET], id="list"),
        pytest.param({"password": TYPED_SECRET}, id="dict"),
        pytest.param(271828182845, id="int"),
    ],
)
def test_a_pkcs12_password_of_another_type_is_never_shown(ansible, bao, connect, path, password):
    """Held: pkcs12_password given as a list, a dict or a number (an unquoted PIN) - whatever Ansible makes of it,
    the password is not printed, not even at -vvv and in diff mode, and a refusal writes nothing."""
    chain = make_chain("typed-password.example.com")
    shown = [str(password)] if isinstance(password, int) else [TYPED_SECRET]

    run = run_raw(
        ansible, bao, {**connect, **pkcs12_args(path, chain, pkcs12_password=password)}, *shown, verbosity=3, diff=True
    )

    if run.failed:
        assert data_writes(run.requests) == [] and versions(bao, path) == []


@pytest.mark.parametrize(
    ("password", "meant"),
    [
        pytest.param(["list-pkcs12-secret-1"], "list-pkcs12-secret-1", id="list"),
        pytest.param({"password": "dict-pkcs12-secret-2"}, "dict-pkcs12-secret-2", id="dict"),
        pytest.param(True, None, id="bool"),
    ],
)
def test_a_pkcs12_password_that_is_not_a_string_is_refused_not_turned_into_its_repr(
    ansible, bao, connect, path, password, meant
):
    """pkcs12_password given as a list, a dict or a boolean (a templating slip, a YAML `yes`).

    Expected: refused before any request, naming pkcs12_password and that it must be a string; nothing written.
    Before: Ansible's str conversion turns it into its Python repr ("['list-pkcs12-secret-1']", "True") without a
    word, and the bundle is encrypted with that text: the push reports success, and the consumer configured with
    the password meant cannot open its keystore (an outage found only at the consumer's next reload).
    """
    chain = make_chain("not-a-string-password.example.com")

    run = run_raw(
        ansible, bao, {**connect, **pkcs12_args(path, chain, pkcs12_password=password)}, *filter(None, [meant])
    )

    if not run.failed:
        stored = base64.b64decode(data_of(bao, path)["pkcs12"])
        # What the bundle was encrypted with: the option's Python text, not the password meant.
        assert pkcs12.load_key_and_certificates(stored, str(password).encode())[1] == chain.leaf.cert
    assert run.failed, f"a {type(password).__name__} pkcs12_password was accepted: {versions(bao, path)} written"
    assert "pkcs12_password" in run.msg
    assert data_writes(run.requests) == [] and versions(bao, path) == []


def test_a_pkcs12_password_given_with_another_layout_or_with_a_bad_certificate_is_not_shown(
    ansible, bao, vault_conn, path
):
    """Held: refusals that involve the password - given to layout fabio, with a certificate whose key does not
    match, with an unparsable certificate, in a batch whose second item is bad, a password that is also the
    path's last segment - name the problem, never the password, and write nothing."""
    chain = make_chain("refused-password.example.com")
    stranger = make_chain("stranger.example.com")
    tasks = {
        "with fabio": {**pkcs12_args(path, chain, layout="fabio")},
        "key mismatch": {**pkcs12_args(path, chain, private_key=stranger.leaf.key_pem, validate=False)},
        "bad certificate": {
            **pkcs12_args(path, chain, certificate="-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
        },
        "bad batch item": {
            "layout": "pkcs12",
            "pkcs12_password": PASSWORD,
            "certificates": [
                {"path": f"{path}-1", "certificate": chain.leaf.cert_pem, "private_key": chain.leaf.key_pem},
                {"path": f"{path}-2", "certificate": chain.leaf.cert_pem, "private_key": stranger.leaf.key_pem},
            ],
        },
    }
    tasks = {name: {**vault_conn, **approle(bao, "certs"), **args} for name, args in tasks.items()}

    run, results = push_tasks(ansible, tasks)

    for name, task in results.items():
        assert task.status == "failed", (name, task.result)
        assert PASSWORD not in json.dumps(task.result), name
    assert results["with fabio"].result["msg"].startswith("pkcs12_password is only used by layout pkcs12")
    assert (
        "private key does not match" in results["key mismatch"].result["msg"].lower()
        or "match" in (results["key mismatch"].result["msg"])
    )
    assert data_writes(run.requests) == []
    assert [versions(bao, item) for item in (path, f"{path}-1", f"{path}-2")] == [[], [], []]


def test_a_pkcs12_push_with_diff_check_and_vvv_shows_no_password_key_or_bundle(ansible, bao, connect, path):
    """Held: over an existing bundle under another password, check mode with diff at -vvv shows the bundle only
    as an opaque size and keyed hash; neither password, the key nor the bundle's base64 appears."""
    chain = make_chain("vvv-p12.example.com")
    old_password = "the-old-pkcs12-password-1618"
    old = pkcs12.serialize_key_and_certificates(
        None, chain.leaf.key, chain.leaf.cert, None, serialization.BestAvailableEncryption(old_password.encode())
    )
    old_value = base64.b64encode(old).decode("ascii")
    root_write(bao, path, {"pkcs12": old_value})

    run = push(
        ansible,
        {**connect, **pkcs12_args(path, chain)},
        check=True,
        diff=True,
        verbosity=3,
        secrets=[old_password, old_value[40:120]],
    )

    assert not run.failed, run.msg
    assert run.changed and versions(bao, path) == [1]
    assert re.fullmatch(r"<value: \d+ characters, keyed hash [0-9a-f]{16}>", run.result["diff"]["after"]["pkcs12"])
    assert data_writes(run.requests) == []


def test_role_validation_masks_a_pkcs12_password_put_in_the_wrong_option(ansible, bao, vault_conn, tmp_path):
    """The role masks what validate_argument_spec quotes ("got: ...", "The value '...' is not a valid boolean")
    for the Vault credentials and keys, so that a secret given in the wrong option is not printed.

    Expected: cert_distribution_pkcs12_password is masked the same way - a password that ends up in
    cert_distribution_layout or cert_distribution_include_private_key (swapped variables) is refused without being
    printed; nothing written. Before: tasks/main.yml masks only secret_id, token and jwt; the password is printed
    in the refusal ("got: <password>").
    """
    items = [{"path": f"certs/attack5-role-{uuid.uuid4().hex[:8]}", **_role_cert("masked.example.com")}]
    leaked = {}
    for option in ("cert_distribution_layout", "cert_distribution_include_private_key"):
        role_vars = {
            "cert_distribution_certs": items,
            "cert_distribution_layout": "pkcs12",
            "cert_distribution_pkcs12_password": PASSWORD,
            option: PASSWORD,
        }
        mark = bao.audit_mark()
        _facts, run = run_role(ansible, bao, vault_conn, tmp_path, role_vars)
        assert run.rc != 0 and "Validation of arguments failed" in run.output, run.output[-2000:]
        assert data_writes(bao.audit_requests(mark)) == []
        if find_leaks([run.output], PASSWORD):
            leaked[option] = [line for line in run.output.splitlines() if PASSWORD in line][:1]
    assert not leaked, f"the role's validation printed the pkcs12 password: {leaked}"


def test_module_validation_masks_a_pkcs12_password_put_in_the_wrong_option(ansible, bao, connect, path):
    """Held: the module's own argument checks mask the no_log pkcs12_password wherever it is quoted."""
    chain = make_chain("module-masked.example.com")
    for option in ("layout", "keep_other_fields"):
        run = push(ansible, {**connect, **pkcs12_args(path, chain), option: PASSWORD}, verbosity=3)
        assert run.failed and option in run.msg, run.msg
    assert versions(bao, path) == []


def _role_cert(name: str) -> dict:
    leaf = make_chain(name).leaf
    return {"certificate": leaf.cert_pem, "private_key": leaf.key_pem}


# -- 3. acme_sh: four secrets per certificate ---------------------------------------------------------------------


def acme_args(path: str, chain, **options) -> dict:
    return {
        "path": path,
        "certificate": chain.leaf.cert_pem,
        "private_key": chain.leaf.key_pem,
        "chain": chain.chain_pem,
        "layout": "acme_sh",
        **options,
    }


@pytest.mark.parametrize("concurrency", [1, 4])
def test_acme_sh_a_failed_third_secret_reports_the_written_ones_as_written_and_only_the_rest_as_not(
    ansible, bao, connect, path, concurrency
):
    """Held: the write of <path>/ca.pem fails (HTTP 500, no retry). Every secret with a version is in results
    with that version and not in not_written; every one in not_written has no version on the server."""
    chain = make_chain("acme-fault.example.com")
    paths = [f"{path}/{name}" for name in ACME_SH_FILES]
    with FaultProxy(bao.addr, bao.ca_cert) as proxy:
        proxy.add_rule("POST", rf"^secret/data/{re.escape(paths[2])}$", status=500, times=None)
        run = push(
            ansible,
            {**connect, "url": proxy.url, "retries": 0, "concurrency": concurrency, **acme_args(path, chain)},
        )

    assert run.failed
    written = {item: versions(bao, item) for item in paths}
    reported = {result["path"]: result["version"] for result in run.result.get("results", [])}
    not_written = run.result.get("not_written", [])
    assert paths[2] in not_written and written[paths[2]] == []
    for item, stored in written.items():
        if stored:
            assert item not in not_written and reported.get(item) == stored[-1], (item, run.result)
        else:
            assert item in not_written, (item, run.result)
    if concurrency == 1:
        assert not_written == paths[2:] and list(reported) == paths[:2]


def test_acme_sh_a_certificate_at_x_and_another_at_x_slash_cert_pem_do_not_overwrite_each_other(
    ansible, bao, connect, path
):
    """Held: in one batch, certificate A at <x> (whose secrets include <x>/cert.pem) and certificate B at
    <x>/cert.pem (whose secrets are below it) are distinct secrets: each ends up with its own certificate."""
    first, second = make_chain("acme-a.example.com"), make_chain("acme-b.example.com")
    items = [
        {"path": path, "certificate": first.leaf.cert_pem, "private_key": first.leaf.key_pem},
        {"path": f"{path}/cert.pem", "certificate": second.leaf.cert_pem, "private_key": second.leaf.key_pem},
    ]

    run = push(ansible, {**connect, "layout": "acme_sh", "certificates": items})

    assert not run.failed, run.msg
    assert data_of(bao, f"{path}/cert.pem")["value"] == first.leaf.cert_pem
    assert data_of(bao, f"{path}/cert.pem/cert.pem")["value"] == second.leaf.cert_pem
    assert data_of(bao, f"{path}/cert.key")["value"] == first.leaf.key_pem
    assert data_of(bao, f"{path}/cert.pem/cert.key")["value"] == second.leaf.key_pem
    assert len(run.result["results"]) == 8


@pytest.mark.parametrize("bad", ["trailing/", "a//b", "a/../b", "a/./b"])
def test_acme_sh_a_path_that_would_normalise_is_refused_before_any_request(ansible, bao, connect, path, bad):
    """Held: a certificate path ending in '/' or with an empty, '.' or '..' segment is refused by name; the
    secrets below it (<path>/cert.pem ...) are never computed from it."""
    chain = make_chain("acme-badpath.example.com")
    target = f"{path}/{bad}"

    run = push(ansible, {**connect, **acme_args(target, chain)})

    assert run.failed and "invalid path" in run.msg, run.msg
    assert run.requests == []


def test_acme_sh_keep_other_fields_keeps_each_secrets_own_extras_and_a_rerun_writes_nothing(
    ansible, bao, connect, path
):
    """Held: each acme_sh secret keeps the keys it had besides value (keep_other_fields), and only its value
    changes; the rerun writes no new version of any of the four."""
    chain = make_chain("acme-keep.example.com")
    for name in ACME_SH_FILES:
        root_write(bao, f"{path}/{name}", {"value": "old", "owner": f"team-{name}"})

    first = push(ansible, {**connect, **acme_args(path, chain)})
    again = push(ansible, {**connect, **acme_args(path, chain)})

    assert not first.failed and not again.failed, (first.msg, again.msg)
    for name in ACME_SH_FILES:
        data = data_of(bao, f"{path}/{name}")
        assert data["owner"] == f"team-{name}" and set(data) == {"value", "owner"}
        assert versions(bao, f"{path}/{name}") == [1, 2]
    assert not again.changed and data_writes(again.requests) == []


# -- 4. every layout: check mode writes nothing, diff shows no key ------------------------------------------------


@pytest.mark.parametrize("layout", ["default", "acme_sh", "fabio", "traefik", "haproxy", "pkcs12"])
def test_check_mode_writes_nothing_for_any_layout_over_an_existing_secret_and_its_diff_shows_no_key(
    ansible, bao, connect, path, layout
):
    """Held: over a secret holding another certificate and key, check mode with diff writes nothing (data and
    metadata) for every layout, and neither key (old, new) nor a base64 of them appears in the diff."""
    old, new = make_chain(f"check-old-{layout}.example.com"), make_chain(f"check-new-{layout}.example.com")
    extra = {"pkcs12_password": PASSWORD} if layout == "pkcs12" else {}
    base = {**connect, **acme_args(path, old), "layout": layout, **extra}
    assert not push(ansible, base).failed
    before = {entry: versions(bao, entry) for entry in (path, *[f"{path}/{name}" for name in ACME_SH_FILES])}
    encoded_key = base64.b64encode(new.leaf.key_pem.encode()).decode("ascii")

    run = push(
        ansible,
        {**connect, **acme_args(path, new), "layout": layout, **extra},
        check=True,
        diff=True,
        verbosity=3,
        secrets=[old.leaf.key_pem, encoded_key[20:100]],
    )

    assert not run.failed, run.msg
    assert run.changed
    kv_writes = [
        entry["request"]["path"]
        for entry in run.requests
        if entry["request"]["path"].startswith("secret/") and entry["request"]["operation"] != "read"
    ]
    assert kv_writes == []
    assert {entry: versions(bao, entry) for entry in before} == before
    assert "-----BEGIN" not in json.dumps(run.result.get("diff"))


# -- 5. the role: acme_sh with prune and absent -------------------------------------------------------------------


def test_role_prune_after_an_acme_sh_push_keeps_the_four_secrets_just_delivered(ansible, bao, vault_conn, tmp_path):
    """Held: prune after an acme_sh push compares the inventory with the four secret paths of each delivered
    certificate: none of them is retired, a managed secret no longer delivered is, and absent then retires only
    the four secrets of the listed certificate."""
    prefix = f"certs/attack5-prune-{uuid.uuid4().hex[:8]}"
    kept = {"path": f"{prefix}/kept", **_role_cert("kept.example.com")}
    gone = {"path": f"{prefix}/gone", **_role_cert("gone.example.com")}
    layout = {
        "cert_distribution_layout": "acme_sh",
        "cert_distribution_prune_prefix": prefix,
        "cert_distribution_owner": f"attack5-{uuid.uuid4().hex[:8]}",
    }
    _facts, first = run_role(ansible, bao, vault_conn, tmp_path, {**layout, "cert_distribution_certs": [kept, gone]})
    assert first.rc == 0, first.output[-3000:]

    facts, pruned = run_role(
        ansible,
        bao,
        vault_conn,
        tmp_path,
        {**layout, "cert_distribution_certs": [kept], "cert_distribution_prune": True},
    )

    assert pruned.rc == 0, pruned.output[-3000:]
    kept_paths = [f"{prefix}/kept/{name}" for name in ACME_SH_FILES]
    assert [result["path"] for result in facts["results"]] == kept_paths
    assert sorted(facts["pruned"] or []) == sorted(f"{prefix}/gone/{name}" for name in ACME_SH_FILES)
    assert all(data_of(bao, item) is not None for item in kept_paths)
    assert all(data_of(bao, f"{prefix}/gone/{name}") is None for name in ACME_SH_FILES)

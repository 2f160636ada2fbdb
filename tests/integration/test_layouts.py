"""vault_cert_push's layouts against a real OpenBao server, each read back the way its consumer reads it.

Every layout is pushed, read back through the server's API and checked for its exact shape, parsed
as its consumer parses it (PKCS#12 opened with the password, HAProxy's pem split into certificates
and key, Traefik's base64 decoded, acme.sh's four secrets, fabio's PEMs), then pushed again: no
write, no new version - a re-salted PKCS#12 bundle included. Refusals leave the server untouched.
What a current PKCS#12 bundle may be to count as the same (opened with the password, PBES2, no weaker form),
acme_sh's four secrets under faults, batches and odd paths, and check mode over every layout.

The module runs in-process (``modules``); ansible-playbook only for the role. Every run is scanned by the harness
for private keys, credentials and the PKCS#12 password.
"""

from __future__ import annotations

import base64
import json
import re
import typing as t
import uuid

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from fault_proxy import FaultProxy
from kv_requests import data_writes
from pki import Chain, Issued, make_chain, make_leaf
from push_runs import push

MODULE = "vault_cert_push"
PASSWORD = "layouts-test-pkcs12-password-3141"
ACME_SH_FILES = ("cert.pem", "cert.key", "ca.pem", "fullchain.pem")


@pytest.fixture
def cert_path(request: pytest.FixtureRequest) -> str:
    """A secret path below certs/ that no other test uses."""
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower().removeprefix("test_")).strip("-")
    return f"certs/layouts/{slug}"


@pytest.fixture
def connect(vault_conn: dict[str, str], approle_auth: dict[str, str]) -> dict[str, str]:
    return {**vault_conn, **approle_auth}


def single(path: str, chain: Chain, *, leaf: Issued | None = None, **options: t.Any) -> dict[str, t.Any]:
    leaf = leaf or chain.leaf
    return {
        "path": path,
        "certificate": leaf.cert_pem,
        "private_key": leaf.key_pem,
        "chain": chain.chain_pem,
        **options,
    }


def public_der(key) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def pem_blocks(text: str) -> list[str]:
    return re.findall(r"-----BEGIN ([A-Z ]+)-----", text)


def push_twice(runner, bao, connect, args: dict[str, t.Any], paths: list[str]):
    """Push, then push the same again: the second run writes nothing and every secret stays at version 1."""
    first = push(runner, {**connect, **args})
    assert not first.failed, first.msg
    assert first.changed
    assert [bao.kv_version_numbers(path) for path in paths] == [[1]] * len(paths)
    again = push(runner, {**connect, **args})
    assert not again.failed, again.msg
    assert not again.changed
    assert data_writes(again.requests) == []
    assert [bao.kv_version_numbers(path) for path in paths] == [[1]] * len(paths)
    return first, again


# -- each layout end to end ---------------------------------------------------------------------


def test_default_layout_is_todays_secret(modules, bao, connect, cert_path):
    chain = make_chain("default.layouts.example.com")
    first, _again = push_twice(modules, bao, connect, single(cert_path, chain, layout="default"), [cert_path])
    assert bao.kv_data(cert_path) == {
        "certificate": chain.leaf.cert_pem,
        "private_key": chain.leaf.key_pem,
        "chain": chain.chain_pem,
        "fullchain": chain.fullchain_pem,
    }
    assert first.result["path"] == cert_path


def test_acme_sh_writes_four_value_secrets_below_the_path_one_result_each(modules, bao, connect, cert_path):
    chain = make_chain("acme.layouts.example.com")
    paths = [f"{cert_path}/{name}" for name in ACME_SH_FILES]

    first, again = push_twice(modules, bao, connect, single(cert_path, chain, layout="acme_sh"), paths)

    # What acme.sh's deploy hook writes, and what `vault kv get -field=value <path>/cert.pem` gives a reader.
    assert bao.kv_data(f"{cert_path}/cert.pem") == {"value": chain.leaf.cert_pem}
    assert bao.kv_data(f"{cert_path}/cert.key") == {"value": chain.leaf.key_pem}
    assert bao.kv_data(f"{cert_path}/ca.pem") == {"value": chain.chain_pem}
    assert bao.kv_data(f"{cert_path}/fullchain.pem") == {"value": chain.fullchain_pem}
    assert bao.kv_data(cert_path) is None  # nothing at the path itself
    key = serialization.load_pem_private_key(bao.kv_data(f"{cert_path}/cert.key")["value"].encode(), None)
    assert public_der(key) == public_der(chain.leaf.key)

    # A single certificate of several secrets returns a list, one result per secret, in that order.
    results = first.result["results"]
    assert [result["path"] for result in results] == paths
    assert [result["changed_fields"] for result in results] == [
        ["certificate"],
        ["private_key"],
        ["chain"],
        ["fullchain"],
    ]
    # No owner given: no mark written.
    assert not any(result["managed"] or result["owner"] for result in results)
    assert [(result["version"], result["created"]) for result in results] == [(1, True)] * 4
    assert {result["certificate"]["cn"] for result in results} == {"acme.layouts.example.com"}
    assert [result["changed"] for result in again.result["results"]] == [False] * 4

    renewed = make_leaf(chain.intermediate, "acme.layouts.example.com", key=chain.leaf.key)
    renewal = push(modules, {**connect, **single(cert_path, chain, leaf=renewed, layout="acme_sh")})
    assert not renewal.failed, renewal.msg
    # The key and the chain did not change: their secrets are not written.
    assert [result["changed"] for result in renewal.result["results"]] == [True, False, False, True]
    assert [bao.kv_version_numbers(path) for path in paths] == [[1, 2], [1], [1], [1, 2]]


def test_fabio_reads_cert_and_key_pems_with_the_chain_in_cert(modules, bao, connect, cert_path):
    chain = make_chain("fabio.layouts.example.com")

    first, _again = push_twice(modules, bao, connect, single(cert_path, chain, layout="fabio"), [cert_path])

    data = bao.kv_data(cert_path)
    assert data == {"cert": chain.fullchain_pem, "key": chain.leaf.key_pem}
    # What fabio's tls.X509KeyPair gets: the leaf first, its intermediate after it, and the leaf's key.
    served = x509.load_pem_x509_certificates(data["cert"].encode())
    assert served == [chain.leaf.cert, chain.intermediate.cert]
    assert public_der(serialization.load_pem_private_key(data["key"].encode(), None)) == public_der(chain.leaf.key)
    assert sorted(first.result["changed_fields"]) == ["fullchain", "private_key"]


def test_traefik_stores_base64_of_the_fullchain_and_key_and_warns_below_the_root(modules, bao, connect, cert_path):
    chain = make_chain("traefik.layouts.example.com")

    first, _again = push_twice(modules, bao, connect, single(cert_path, chain, layout="traefik"), [cert_path])

    data = bao.kv_data(cert_path)
    assert set(data) == {"cert", "key"}
    # As `base64 -w0` writes it: one line, standard alphabet, padded.
    assert all(re.fullmatch(r"[A-Za-z0-9+/]+=*", value) for value in data.values())
    cert = base64.b64decode(data["cert"], validate=True)
    assert x509.load_pem_x509_certificates(cert) == [chain.leaf.cert, chain.intermediate.cert]
    key = serialization.load_pem_private_key(base64.b64decode(data["key"], validate=True), None)
    assert public_der(key) == public_der(chain.leaf.key)
    assert any("root of its KV mount" in warning for warning in first.result.get("warnings", [])), first.result


def test_haproxy_pem_is_certificate_chain_then_key(modules, bao, connect, cert_path):
    chain = make_chain("haproxy.layouts.example.com")

    first, _again = push_twice(modules, bao, connect, single(cert_path, chain, layout="haproxy"), [cert_path])

    data = bao.kv_data(cert_path)
    assert list(data) == ["pem"]
    pem = data["pem"]
    assert pem_blocks(pem) == ["CERTIFICATE", "CERTIFICATE", "PRIVATE KEY"]
    # HAProxy's crt - the first certificate is the leaf, the next ones its chain, and the key pairs with the leaf.
    assert x509.load_pem_x509_certificates(pem.encode()) == [chain.leaf.cert, chain.intermediate.cert]
    key_block = pem[pem.index("-----BEGIN PRIVATE KEY-----") :]
    assert public_der(serialization.load_pem_private_key(key_block.encode(), None)) == public_der(chain.leaf.key)
    assert first.result["changed_fields"] == ["pem"]


def test_pkcs12_opens_with_the_password_and_an_unchanged_certificate_keeps_its_bundle(modules, bao, connect, cert_path):
    chain = make_chain("pkcs12.layouts.example.com")
    args = single(cert_path, chain, layout="pkcs12", pkcs12_password=PASSWORD)

    _first, again = push_twice(modules, bao, connect, args, [cert_path])

    data = bao.kv_data(cert_path)
    assert list(data) == ["pkcs12"]
    key, certificate, intermediates = pkcs12.load_key_and_certificates(
        base64.b64decode(data["pkcs12"], validate=True), PASSWORD.encode()
    )
    assert certificate == chain.leaf.cert
    assert intermediates == [chain.intermediate.cert]
    assert public_der(key) == public_der(chain.leaf.key)
    assert again.result["changed_fields"] == [] and again.result["version"] == 1

    # Another password: the bundle does not open with it, so it is replaced.
    other = push(modules, {**connect, **args, "pkcs12_password": PASSWORD + "-rotated"})
    assert not other.failed, other.msg
    assert other.changed and other.result["changed_fields"] == ["pkcs12"]
    assert bao.kv_version_numbers(cert_path) == [1, 2]
    rotated = base64.b64decode(bao.kv_data(cert_path)["pkcs12"])
    assert pkcs12.load_key_and_certificates(rotated, (PASSWORD + "-rotated").encode())[1] == chain.leaf.cert

    # A renewed certificate: a new bundle.
    renewed = make_leaf(chain.intermediate, "pkcs12.layouts.example.com")
    renewal = push(
        modules,
        {**connect, **single(cert_path, chain, leaf=renewed, layout="pkcs12"), "pkcs12_password": PASSWORD},
    )
    assert not renewal.failed, renewal.msg
    assert renewal.changed and bao.kv_version_numbers(cert_path) == [1, 2, 3]
    bundle = base64.b64decode(bao.kv_data(cert_path)["pkcs12"])
    assert pkcs12.load_key_and_certificates(bundle, PASSWORD.encode())[1] == renewed.cert


def test_pkcs12_bundle_that_costs_too_many_key_derivations_to_open_is_replaced(modules, bao, connect, cert_path):
    """A bundle of the same key and certificates whose MAC is cheap (2048 iterations) but whose PBES2 bags ask
    300000 PBKDF2 iterations each: opening it to compare would cost more than any writer's bundle, on every
    push. It is replaced, not opened; the replacement is the collection's own cheap bundle."""
    chain = make_chain("pkcs12-costly.layouts.example.com")
    costly = (
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(300_000)
        .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
        .hmac_hash(hashes.SHA256())
        .build(PASSWORD.encode())
    )
    planted = pkcs12.serialize_key_and_certificates(
        None, chain.leaf.key, chain.leaf.cert, [chain.intermediate.cert], costly
    )
    status, body = bao.api("POST", f"secret/data/{cert_path}", {"data": {"pkcs12": base64.b64encode(planted).decode()}})
    assert status == 200, body
    status, body = bao.api(
        "POST", f"secret/metadata/{cert_path}", {"custom_metadata": {"managed_by": "certautopilot.vault"}}
    )
    assert status in (200, 204), body

    run = push(modules, {**connect, **single(cert_path, chain, layout="pkcs12", pkcs12_password=PASSWORD)})

    assert not run.failed, run.msg
    assert run.changed and run.result["changed_fields"] == ["pkcs12"]
    assert bao.kv_version_numbers(cert_path) == [1, 2]
    written = base64.b64decode(bao.kv_data(cert_path)["pkcs12"])
    assert written != planted
    assert pkcs12.load_key_and_certificates(written, PASSWORD.encode())[1] == chain.leaf.cert


# -- check mode, diff, batches ------------------------------------------------------------------


def test_check_mode_with_a_layout_writes_nothing_and_its_diff_shows_summaries(modules, bao, connect, cert_path):
    chain = make_chain("check.layouts.example.com")

    checked = push(modules, {**connect, **single(cert_path, chain, layout="acme_sh")}, check=True, diff=True)

    assert not checked.failed, checked.msg
    assert checked.changed
    assert [result["changed"] for result in checked.result["results"]] == [True] * 4
    assert data_writes(checked.requests) == []
    assert all(bao.kv_version_numbers(f"{cert_path}/{name}") == [] for name in ACME_SH_FILES)
    diffs = checked.result["diff"]
    assert [diff["after_header"] for diff in diffs] == [f"secret/data/{cert_path}/{name}" for name in ACME_SH_FILES]
    assert diffs[0]["after"]["value"].startswith("<certificate CN=check.layouts.example.com")
    assert diffs[1]["after"]["value"].startswith("<private key: sha256 ")
    assert "-----" not in json.dumps(diffs)

    traefik = push(
        modules, {**connect, **single(f"{cert_path}-traefik", chain, layout="traefik")}, check=True, diff=True
    )
    assert not traefik.failed, traefik.msg
    assert bao.kv_version_numbers(f"{cert_path}-traefik") == []
    after = traefik.result["diff"]["after"]
    # The base64 values are shown by what they hold, never as they are.
    assert after["cert"].startswith("<certificate CN=check.layouts.example.com") and after["key"].startswith(
        "<private key: sha256 "
    )
    assert bao.kv_data(f"{cert_path}-traefik") is None


def test_batch_with_a_layout_writes_each_certificate(modules, bao, connect, cert_path):
    chains = [make_chain(f"batch{number}.layouts.example.com") for number in (1, 2)]
    items = [
        {
            "path": f"{cert_path}/{number}",
            "certificate": c.leaf.cert_pem,
            "private_key": c.leaf.key_pem,
            "chain": c.chain_pem,
        }
        for number, c in enumerate(chains, 1)
    ]
    args = {**connect, "certificates": items, "layout": "pkcs12", "pkcs12_password": PASSWORD}

    first = push(modules, args)
    assert not first.failed, first.msg
    assert [result["path"] for result in first.result["results"]] == [f"{cert_path}/1", f"{cert_path}/2"]
    again = push(modules, {**args, "secret_id": bao.new_approle_secret_id("certs")})
    assert not again.failed, again.msg
    assert not again.changed and data_writes(again.requests) == []
    for number, c in enumerate(chains, 1):
        bundle = base64.b64decode(bao.kv_data(f"{cert_path}/{number}")["pkcs12"])
        assert pkcs12.load_key_and_certificates(bundle, PASSWORD.encode())[1] == c.leaf.cert


# -- refusals -----------------------------------------------------------------------------------


def test_refusals_name_the_options_and_leave_the_server_untouched(modules, bao, vault_conn, cert_path):
    chain = make_chain("refused.layouts.example.com")
    cases = {
        "pkcs12 without password": ({"layout": "pkcs12"}, ("layout pkcs12", "pkcs12_password")),
        "password with another layout": (
            {"layout": "fabio", "pkcs12_password": PASSWORD},
            ("pkcs12_password", "only used by layout pkcs12"),
        ),
        "fields with another layout": (
            {"layout": "fabio", "fields": {"certificate": "tls.crt"}},
            ("fields", "layout default", "layout fabio"),
        ),
        "haproxy without the key": (
            {"layout": "haproxy", "include_private_key": False},
            ("include_private_key", "haproxy"),
        ),
    }
    for name, (options, expected) in cases.items():
        auth = {
            "auth_method": "approle",
            "role_id": bao.role_ids["certs"],
            "secret_id": bao.new_approle_secret_id("certs"),
        }
        run = push(modules, {**vault_conn, **auth, **single(cert_path, chain, **options)})
        assert run.failed, (name, run.result)
        for fragment in expected:
            assert fragment in run.msg, (name, run.msg)
        # Refused before any request: no login, no read, nothing written.
        assert run.requests == [], name
    assert bao.kv_data(cert_path) is None and bao.kv_version_numbers(cert_path) == []


# -- the role -----------------------------------------------------------------------------------


def test_role_passes_the_layout_and_the_pkcs12_password_through(ansible, bao, vault_conn, cert_path):
    chain = make_chain("role.layouts.example.com")
    auth = {"auth_method": "approle", "role_id": bao.role_ids["certs"], "secret_id": bao.new_approle_secret_id("certs")}
    role = {
        "role": "certautopilot.vault.cert_distribution",
        "cert_distribution_vault": {**vault_conn, **auth},
        "cert_distribution_certs": [
            {"certificate": chain.leaf.cert_pem, "private_key": chain.leaf.key_pem, "chain": chain.chain_pem}
        ],
        "cert_distribution_path_template": f"{cert_path}/{{{{ cn }}}}",
        "cert_distribution_layout": "pkcs12",
        "cert_distribution_pkcs12_password": PASSWORD,
    }
    playbook = ansible.workdir / f"layout-role-{uuid.uuid4().hex}.yml"
    playbook.write_text(json.dumps([{"name": "Deliver", "hosts": "localhost", "gather_facts": False, "roles": [role]}]))
    playbook.chmod(0o600)
    try:
        # The role's option for the password is no option name the harness knows as a secret: named here.
        run = ansible.run_playbook(playbook, secrets=[PASSWORD])
    finally:
        playbook.unlink()
    assert run.rc == 0, run.output
    bundle = base64.b64decode(bao.kv_data(f"{cert_path}/role.layouts.example.com")["pkcs12"])
    assert pkcs12.load_key_and_certificates(bundle, PASSWORD.encode())[1] == chain.leaf.cert


# -- PKCS#12: what the current bundle may be to count as the same ------------------------------

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
_OID_DATA = bytes.fromhex("06092a864886f70d010701")
_OID_KEY_BAG = bytes.fromhex("060b2a864886f70d010c0a0101")
_OID_CERT_BAG = bytes.fromhex("060b2a864886f70d010c0a0103")
_OID_X509_CERT = bytes.fromhex("060a2a864886f70d01091601")


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


def legacy_pkcs12(chain: Chain, password: str) -> str:
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


def pkcs12_args(path: str, chain: Chain, **options: t.Any) -> dict[str, t.Any]:
    return single(path, chain, **{"layout": "pkcs12", "pkcs12_password": PASSWORD, **options})


def bundle_is_protected(value: str) -> bool:
    """Whether a base64 PKCS#12 bundle refuses a wrong password (it is MAC-protected or encrypted)."""
    try:
        pkcs12.load_key_and_certificates(base64.b64decode(value), b"not-the-password")
    except ValueError:
        return True
    return False


def test_a_plain_pkcs12_bundle_with_the_same_content_is_replaced_by_one_encrypted_with_the_password(
    modules, bao, connect, cert_path
):
    """The secret holds the same key, certificate and chain as a PKCS#12 bundle without MAC and without
    encryption (openssl -nomac -keypbe NONE -certpbe NONE, keytool's password-less form): the private key is
    in clear in Vault and the bundle opens with any password. The push writes a new version, a bundle encrypted
    (and MAC-protected) with pkcs12_password, as the layout promises."""
    chain = make_chain("plain-p12.example.com")
    planted = plain_pkcs12(chain.leaf.key, chain.leaf.cert, [chain.intermediate.cert])
    assert not bundle_is_protected(planted)
    root_write(bao, cert_path, {"pkcs12": planted})

    run = push(modules, {**connect, **pkcs12_args(cert_path, chain)})

    assert not run.failed, run.msg
    stored = bao.kv_data(cert_path)["pkcs12"]
    assert bundle_is_protected(stored), "the private key is still stored in a bundle that opens without the password"
    assert run.changed and run.result["changed_fields"][:1] == ["pkcs12"]
    assert bao.kv_version_numbers(cert_path) == [1, 2]


def test_a_legacy_pkcs12_bundle_with_one_kdf_round_is_replaced_by_the_documented_pbes2_form(
    modules, bao, connect, cert_path
):
    """The same content under the same password, as a legacy bundle (3DES, a SHA-1 MAC, one KDF round, a friendly
    name the push never writes): the push writes the form it documents (PBES2, PBKDF2-HMAC-SHA256, AES-256-CBC,
    10000 rounds, no friendly name) - the weak bundle and its planted alias do not stay."""
    chain = make_chain("legacy-p12.example.com")
    planted = legacy_pkcs12(chain, PASSWORD)
    root_write(bao, cert_path, {"pkcs12": planted})

    run = push(modules, {**connect, **pkcs12_args(cert_path, chain)})

    assert not run.failed, run.msg
    assert bao.kv_data(cert_path)["pkcs12"] != planted, "the legacy 3DES / 1-round bundle was kept as unchanged"
    assert run.changed and bao.kv_version_numbers(cert_path) == [1, 2]


def test_a_pkcs12_bundle_whose_key_cryptography_cannot_load_is_replaced_not_a_crash(modules, bao, connect, cert_path):
    """A password-less bundle whose key is on SM2 (a curve cryptography does not load), planted by whoever can write
    the secret: it does not hold the wanted key and certificate, so it is replaced - a current value is data to
    compare, never something that can stop a delivery (it used to fail every run with UnsupportedAlgorithm)."""
    chain = make_chain("sm2-p12.example.com")
    root_write(bao, cert_path, {"pkcs12": SM2_PLAIN_PKCS12})

    run = push(modules, {**connect, **pkcs12_args(cert_path, chain)})

    assert not run.failed, run.msg
    assert run.changed and bao.kv_version_numbers(cert_path) == [1, 2]
    stored = base64.b64decode(bao.kv_data(cert_path)["pkcs12"])
    assert pkcs12.load_key_and_certificates(stored, PASSWORD.encode())[1] == chain.leaf.cert


def _differing_bundle(chain: Chain, planted: str) -> t.Any:
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
    modules, bao, connect, cert_path, planted
):
    """A current bundle with the same certificate but another key, an extra or missing chain certificate, a value
    that is not base64 or not a string, or a bundle under another password, is replaced."""
    chain = make_chain(f"differs-{planted.replace(' ', '-')}.example.com")
    root_write(bao, cert_path, {"pkcs12": _differing_bundle(chain, planted)})

    run = push(modules, {**connect, **pkcs12_args(cert_path, chain)}, diff=True)

    assert not run.failed, run.msg
    assert run.changed and bao.kv_version_numbers(cert_path) == [1, 2]
    key, certificate, intermediates = pkcs12.load_key_and_certificates(
        base64.b64decode(bao.kv_data(cert_path)["pkcs12"]), PASSWORD.encode()
    )
    assert certificate == chain.leaf.cert and intermediates == [chain.intermediate.cert]
    assert key.private_numbers() == chain.leaf.key.private_numbers()


@pytest.mark.parametrize(
    ("password", "meant"),
    [
        pytest.param(["list-pkcs12-secret-1"], "list-pkcs12-secret-1", id="list"),
        pytest.param({"password": "dict-pkcs12-secret-2"}, "dict-pkcs12-secret-2", id="dict"),
        pytest.param(True, None, id="bool"),
    ],
)
def test_a_pkcs12_password_that_is_not_a_string_is_refused_not_turned_into_its_repr(
    modules, bao, connect, cert_path, password, meant
):
    """pkcs12_password given as a list, a dict or a boolean (a templating slip, a YAML `yes`) is refused before any
    request, naming pkcs12_password; nothing written. Ansible's str conversion would encrypt the bundle with the
    value's Python repr, and the consumer configured with the password meant could not open its keystore."""
    chain = make_chain("not-a-string-password.example.com")

    run = push(modules, {**connect, **pkcs12_args(cert_path, chain, pkcs12_password=password)}, secrets=[meant or ""])

    if not run.failed:
        stored = base64.b64decode(bao.kv_data(cert_path)["pkcs12"])
        # What the bundle was encrypted with: the option's Python text, not the password meant.
        assert pkcs12.load_key_and_certificates(stored, str(password).encode())[1] == chain.leaf.cert
    written = bao.kv_version_numbers(cert_path)
    assert run.failed, f"a {type(password).__name__} pkcs12_password was accepted: {written} written"
    assert "pkcs12_password" in run.msg
    assert data_writes(run.requests) == [] and written == []


# -- acme_sh: four secrets per certificate -----------------------------------------------------


@pytest.mark.parametrize("concurrency", [1, 4])
def test_acme_sh_a_failed_third_secret_reports_the_written_ones_as_written_and_only_the_rest_as_not(
    modules, bao, connect, cert_path, concurrency
):
    """The write of <path>/ca.pem fails (HTTP 500, no retry). Every secret with a version is in results with that
    version and not in not_written; every one in not_written has no version on the server."""
    chain = make_chain("acme-fault.example.com")
    paths = [f"{cert_path}/{name}" for name in ACME_SH_FILES]
    with FaultProxy(bao.addr, bao.ca_cert) as proxy:
        proxy.add_rule("POST", rf"^secret/data/{re.escape(paths[2])}$", status=500, times=None)
        args = {**connect, "url": proxy.url, "retries": 0, "concurrency": concurrency}
        run = push(modules, {**args, **single(cert_path, chain, layout="acme_sh")})

    assert run.failed
    written = {item: bao.kv_version_numbers(item) for item in paths}
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
    modules, bao, connect, cert_path
):
    """In one batch, certificate A at <x> (whose secrets include <x>/cert.pem) and certificate B at <x>/cert.pem
    (whose secrets are below it) are distinct secrets: each ends up with its own certificate."""
    first, second = make_chain("acme-a.example.com"), make_chain("acme-b.example.com")
    items = [
        {"path": cert_path, "certificate": first.leaf.cert_pem, "private_key": first.leaf.key_pem},
        {"path": f"{cert_path}/cert.pem", "certificate": second.leaf.cert_pem, "private_key": second.leaf.key_pem},
    ]

    run = push(modules, {**connect, "layout": "acme_sh", "certificates": items})

    assert not run.failed, run.msg
    assert bao.kv_data(f"{cert_path}/cert.pem")["value"] == first.leaf.cert_pem
    assert bao.kv_data(f"{cert_path}/cert.pem/cert.pem")["value"] == second.leaf.cert_pem
    assert bao.kv_data(f"{cert_path}/cert.key")["value"] == first.leaf.key_pem
    assert bao.kv_data(f"{cert_path}/cert.pem/cert.key")["value"] == second.leaf.key_pem
    assert len(run.result["results"]) == 8


@pytest.mark.parametrize("bad", ["trailing/", "a//b", "a/../b", "a/./b"])
def test_acme_sh_a_path_that_would_normalise_is_refused_before_any_request(modules, connect, cert_path, bad):
    """A certificate path ending in '/' or with an empty, '.' or '..' segment is refused by name; the secrets below
    it (<path>/cert.pem ...) are never computed from it."""
    chain = make_chain("acme-badpath.example.com")

    run = push(modules, {**connect, **single(f"{cert_path}/{bad}", chain, layout="acme_sh")})

    assert run.failed and "invalid path" in run.msg, run.msg
    assert run.requests == []


def test_acme_sh_keep_other_fields_keeps_each_secrets_own_extras_and_a_rerun_writes_nothing(
    modules, bao, connect, cert_path
):
    """Each acme_sh secret keeps the keys it had besides value (keep_other_fields), and only its value changes;
    the rerun writes no new version of any of the four."""
    chain = make_chain("acme-keep.example.com")
    for name in ACME_SH_FILES:
        root_write(bao, f"{cert_path}/{name}", {"value": "old", "owner": f"team-{name}"})

    first = push(modules, {**connect, **single(cert_path, chain, layout="acme_sh")})
    again = push(modules, {**connect, **single(cert_path, chain, layout="acme_sh")})

    assert not first.failed and not again.failed, (first.msg, again.msg)
    for name in ACME_SH_FILES:
        data = bao.kv_data(f"{cert_path}/{name}")
        assert data["owner"] == f"team-{name}" and set(data) == {"value", "owner"}
        assert bao.kv_version_numbers(f"{cert_path}/{name}") == [1, 2]
    assert not again.changed and data_writes(again.requests) == []


@pytest.mark.parametrize("layout", ["default", "acme_sh", "fabio", "traefik", "haproxy", "pkcs12"])
def test_check_mode_writes_nothing_for_any_layout_over_an_existing_secret_and_its_diff_shows_no_key(
    modules, bao, connect, cert_path, layout
):
    """Over a secret holding another certificate and key, check mode with diff writes nothing (data and metadata)
    for every layout, and neither key (old, new) nor a base64 of them appears in the diff."""
    old, new = make_chain(f"check-old-{layout}.example.com"), make_chain(f"check-new-{layout}.example.com")
    extra = {"pkcs12_password": PASSWORD} if layout == "pkcs12" else {}
    assert not push(modules, {**connect, **single(cert_path, old, layout=layout, **extra)}).failed
    entries = (cert_path, *[f"{cert_path}/{name}" for name in ACME_SH_FILES])
    before = {entry: bao.kv_version_numbers(entry) for entry in entries}
    encoded_key = base64.b64encode(new.leaf.key_pem.encode()).decode("ascii")

    run = push(
        modules,
        {**connect, **single(cert_path, new, layout=layout, **extra)},
        check=True,
        diff=True,
        verbosity=3,
        secrets=[old.leaf.key_pem, encoded_key[20:100]],
    )

    assert not run.failed, run.msg
    assert run.changed
    kv_changes = [
        entry["request"]["path"]
        for entry in run.requests
        if entry["request"]["path"].startswith("secret/") and entry["request"]["operation"] != "read"
    ]
    assert kv_changes == []
    assert {entry: bao.kv_version_numbers(entry) for entry in before} == before
    assert "-----BEGIN" not in json.dumps(run.result.get("diff"))

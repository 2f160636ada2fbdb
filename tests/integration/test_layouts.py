"""vault_cert_push's layouts against a real OpenBao server, each read back the way its consumer reads it.

Every layout is pushed, read back through the server's API and checked for its exact shape, parsed
as its consumer parses it (PKCS#12 opened with the password, HAProxy's pem split into certificates
and key, Traefik's base64 decoded, acme.sh's four secrets, fabio's PEMs), then pushed again: no
write, no new version - a re-salted PKCS#12 bundle included. Refusals leave the server untouched.
Every run's output and result are scanned for private keys, credentials and the PKCS#12 password.
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
from leaks import assert_no_leak
from pki import Chain, Issued, make_chain, make_leaf
from push_runs import push, push_tasks

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


def data_of(bao, path: str) -> dict | None:
    status, body = bao.api("GET", f"secret/data/{path}")
    assert status in (200, 404), body
    return body["data"]["data"] if status == 200 else None


def versions(bao, path: str) -> list[int]:
    return sorted(int(number) for number in bao.kv_versions("secret", path))


def writes(entries: list[dict]) -> list[str]:
    """The paths of the data writes among a run's audit entries."""
    return [
        entry["request"]["path"]
        for entry in entries
        if "/data/" in entry["request"]["path"] and entry["request"]["operation"] in ("create", "update")
    ]


def public_der(key) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def pem_blocks(text: str) -> list[str]:
    return re.findall(r"-----BEGIN ([A-Z ]+)-----", text)


def push_twice(ansible, bao, connect, args: dict[str, t.Any], paths: list[str]):
    """Push, then push the same again: the second run writes nothing and every secret stays at version 1."""
    first = push(ansible, {**connect, **args})
    assert not first.failed, first.msg
    assert first.changed
    assert [versions(bao, path) for path in paths] == [[1]] * len(paths)
    again = push(ansible, {**connect, **args})
    assert not again.failed, again.msg
    assert not again.changed
    assert writes(again.requests) == []
    assert [versions(bao, path) for path in paths] == [[1]] * len(paths)
    return first, again


# -- each layout end to end ---------------------------------------------------------------------


def test_default_layout_is_todays_secret(ansible, bao, connect, cert_path):
    chain = make_chain("default.layouts.example.com")
    first, _again = push_twice(ansible, bao, connect, single(cert_path, chain, layout="default"), [cert_path])
    assert data_of(bao, cert_path) == {
        "certificate": chain.leaf.cert_pem,
        "private_key": chain.leaf.key_pem,
        "chain": chain.chain_pem,
        "fullchain": chain.fullchain_pem,
    }
    assert first.result["path"] == cert_path


def test_acme_sh_writes_four_value_secrets_below_the_path_one_result_each(ansible, bao, connect, cert_path):
    chain = make_chain("acme.layouts.example.com")
    paths = [f"{cert_path}/{name}" for name in ACME_SH_FILES]

    first, again = push_twice(ansible, bao, connect, single(cert_path, chain, layout="acme_sh"), paths)

    # What acme.sh's deploy hook writes, and what `vault kv get -field=value <path>/cert.pem` gives a reader.
    assert data_of(bao, f"{cert_path}/cert.pem") == {"value": chain.leaf.cert_pem}
    assert data_of(bao, f"{cert_path}/cert.key") == {"value": chain.leaf.key_pem}
    assert data_of(bao, f"{cert_path}/ca.pem") == {"value": chain.chain_pem}
    assert data_of(bao, f"{cert_path}/fullchain.pem") == {"value": chain.fullchain_pem}
    assert data_of(bao, cert_path) is None  # nothing at the path itself
    key = serialization.load_pem_private_key(data_of(bao, f"{cert_path}/cert.key")["value"].encode(), None)
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
    renewal = push(ansible, {**connect, **single(cert_path, chain, leaf=renewed, layout="acme_sh")})
    assert not renewal.failed, renewal.msg
    # The key and the chain did not change: their secrets are not written.
    assert [result["changed"] for result in renewal.result["results"]] == [True, False, False, True]
    assert [versions(bao, path) for path in paths] == [[1, 2], [1], [1], [1, 2]]


def test_fabio_reads_cert_and_key_pems_with_the_chain_in_cert(ansible, bao, connect, cert_path):
    chain = make_chain("fabio.layouts.example.com")

    first, _again = push_twice(ansible, bao, connect, single(cert_path, chain, layout="fabio"), [cert_path])

    data = data_of(bao, cert_path)
    assert data == {"cert": chain.fullchain_pem, "key": chain.leaf.key_pem}
    # What fabio's tls.X509KeyPair gets: the leaf first, its intermediate after it, and the leaf's key.
    served = x509.load_pem_x509_certificates(data["cert"].encode())
    assert served == [chain.leaf.cert, chain.intermediate.cert]
    assert public_der(serialization.load_pem_private_key(data["key"].encode(), None)) == public_der(chain.leaf.key)
    assert sorted(first.result["changed_fields"]) == ["fullchain", "private_key"]


def test_traefik_stores_base64_of_the_fullchain_and_key_and_warns_below_the_root(ansible, bao, connect, cert_path):
    chain = make_chain("traefik.layouts.example.com")

    first, _again = push_twice(ansible, bao, connect, single(cert_path, chain, layout="traefik"), [cert_path])

    data = data_of(bao, cert_path)
    assert set(data) == {"cert", "key"}
    # As `base64 -w0` writes it: one line, standard alphabet, padded.
    assert all(re.fullmatch(r"[A-Za-z0-9+/]+=*", value) for value in data.values())
    cert = base64.b64decode(data["cert"], validate=True)
    assert x509.load_pem_x509_certificates(cert) == [chain.leaf.cert, chain.intermediate.cert]
    key = serialization.load_pem_private_key(base64.b64decode(data["key"], validate=True), None)
    assert public_der(key) == public_der(chain.leaf.key)
    assert any("root of its KV mount" in warning for warning in first.result.get("warnings", [])), first.result


def test_haproxy_pem_is_certificate_chain_then_key(ansible, bao, connect, cert_path):
    chain = make_chain("haproxy.layouts.example.com")

    first, _again = push_twice(ansible, bao, connect, single(cert_path, chain, layout="haproxy"), [cert_path])

    data = data_of(bao, cert_path)
    assert list(data) == ["pem"]
    pem = data["pem"]
    assert pem_blocks(pem) == ["CERTIFICATE", "CERTIFICATE", "PRIVATE KEY"]
    # HAProxy's crt - the first certificate is the leaf, the next ones its chain, and the key pairs with the leaf.
    assert x509.load_pem_x509_certificates(pem.encode()) == [chain.leaf.cert, chain.intermediate.cert]
    key_block = pem[pem.index("-----BEGIN PRIVATE KEY-----") :]
    assert public_der(serialization.load_pem_private_key(key_block.encode(), None)) == public_der(chain.leaf.key)
    assert first.result["changed_fields"] == ["pem"]


def test_pkcs12_opens_with_the_password_and_an_unchanged_certificate_keeps_its_bundle(ansible, bao, connect, cert_path):
    chain = make_chain("pkcs12.layouts.example.com")
    args = single(cert_path, chain, layout="pkcs12", pkcs12_password=PASSWORD)

    _first, again = push_twice(ansible, bao, connect, args, [cert_path])

    data = data_of(bao, cert_path)
    assert list(data) == ["pkcs12"]
    key, certificate, intermediates = pkcs12.load_key_and_certificates(
        base64.b64decode(data["pkcs12"], validate=True), PASSWORD.encode()
    )
    assert certificate == chain.leaf.cert
    assert intermediates == [chain.intermediate.cert]
    assert public_der(key) == public_der(chain.leaf.key)
    assert again.result["changed_fields"] == [] and again.result["version"] == 1

    # Another password: the bundle does not open with it, so it is replaced.
    other = push(ansible, {**connect, **args, "pkcs12_password": PASSWORD + "-rotated"})
    assert not other.failed, other.msg
    assert other.changed and other.result["changed_fields"] == ["pkcs12"]
    assert versions(bao, cert_path) == [1, 2]
    rotated = base64.b64decode(data_of(bao, cert_path)["pkcs12"])
    assert pkcs12.load_key_and_certificates(rotated, (PASSWORD + "-rotated").encode())[1] == chain.leaf.cert

    # A renewed certificate: a new bundle.
    renewed = make_leaf(chain.intermediate, "pkcs12.layouts.example.com")
    renewal = push(
        ansible,
        {**connect, **single(cert_path, chain, leaf=renewed, layout="pkcs12"), "pkcs12_password": PASSWORD},
    )
    assert not renewal.failed, renewal.msg
    assert renewal.changed and versions(bao, cert_path) == [1, 2, 3]
    bundle = base64.b64decode(data_of(bao, cert_path)["pkcs12"])
    assert pkcs12.load_key_and_certificates(bundle, PASSWORD.encode())[1] == renewed.cert


def test_pkcs12_bundle_that_costs_too_many_key_derivations_to_open_is_replaced(ansible, bao, connect, cert_path):
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

    run = push(ansible, {**connect, **single(cert_path, chain, layout="pkcs12", pkcs12_password=PASSWORD)})

    assert not run.failed, run.msg
    assert run.changed and run.result["changed_fields"] == ["pkcs12"]
    assert versions(bao, cert_path) == [1, 2]
    written = base64.b64decode(data_of(bao, cert_path)["pkcs12"])
    assert written != planted
    assert pkcs12.load_key_and_certificates(written, PASSWORD.encode())[1] == chain.leaf.cert


# -- check mode, diff, batches ------------------------------------------------------------------


def test_check_mode_with_a_layout_writes_nothing_and_its_diff_shows_summaries(ansible, bao, connect, cert_path):
    chain = make_chain("check.layouts.example.com")

    checked = push(ansible, {**connect, **single(cert_path, chain, layout="acme_sh")}, check=True, diff=True)

    assert not checked.failed, checked.msg
    assert checked.changed
    assert [result["changed"] for result in checked.result["results"]] == [True] * 4
    assert writes(checked.requests) == []
    assert all(versions(bao, f"{cert_path}/{name}") == [] for name in ACME_SH_FILES)
    diffs = checked.result["diff"]
    assert [diff["after_header"] for diff in diffs] == [f"secret/data/{cert_path}/{name}" for name in ACME_SH_FILES]
    assert diffs[0]["after"]["value"].startswith("<certificate CN=check.layouts.example.com")
    assert diffs[1]["after"]["value"].startswith("<private key: sha256 ")
    assert "-----" not in json.dumps(diffs)

    traefik = push(
        ansible, {**connect, **single(f"{cert_path}-traefik", chain, layout="traefik")}, check=True, diff=True
    )
    assert not traefik.failed, traefik.msg
    assert versions(bao, f"{cert_path}-traefik") == []
    after = traefik.result["diff"]["after"]
    # The base64 values are shown by what they hold, never as they are.
    assert after["cert"].startswith("<certificate CN=check.layouts.example.com") and after["key"].startswith(
        "<private key: sha256 "
    )
    assert data_of(bao, f"{cert_path}-traefik") is None


def test_batch_with_a_layout_writes_each_certificate(ansible, bao, connect, cert_path):
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

    first = push(ansible, args)
    assert not first.failed, first.msg
    assert [result["path"] for result in first.result["results"]] == [f"{cert_path}/1", f"{cert_path}/2"]
    again = push(ansible, {**args, "secret_id": bao.new_approle_secret_id("certs")})
    assert not again.failed, again.msg
    assert not again.changed and writes(again.requests) == []
    for number, c in enumerate(chains, 1):
        bundle = base64.b64decode(data_of(bao, f"{cert_path}/{number}")["pkcs12"])
        assert pkcs12.load_key_and_certificates(bundle, PASSWORD.encode())[1] == c.leaf.cert


# -- refusals -----------------------------------------------------------------------------------


def test_refusals_name_the_options_and_leave_the_server_untouched(ansible, bao, vault_conn, cert_path):
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
    tasks = {}
    for name, (options, _expected) in cases.items():
        auth = {
            "auth_method": "approle",
            "role_id": bao.role_ids["certs"],
            "secret_id": bao.new_approle_secret_id("certs"),
        }
        tasks[name] = {**vault_conn, **auth, **single(cert_path, chain, **options)}
    run, results = push_tasks(ansible, tasks)
    for name, (_options, expected) in cases.items():
        assert results[name].status == "failed", (name, results[name].result)
        for fragment in expected:
            assert fragment in results[name].result["msg"], (name, results[name].result["msg"])
    # Refused before any request: no login, no read, nothing written.
    assert run.requests == []
    assert data_of(bao, cert_path) is None and versions(bao, cert_path) == []


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
        run = ansible.run_playbook(playbook)
    finally:
        playbook.unlink()
    assert run.rc == 0, run.output
    assert_no_leak([run.output, *(task.result for task in run.tasks)], chain.leaf.key_pem, auth["secret_id"], PASSWORD)
    bundle = base64.b64decode(data_of(bao, f"{cert_path}/role.layouts.example.com")["pkcs12"])
    assert pkcs12.load_key_and_certificates(bundle, PASSWORD.encode())[1] == chain.leaf.cert

"""Attack round 3 on `next` against a real OpenBao: the role's own argument validation, the batch log line,
and vault_cert_info. A test that fails shows the attack worked; the rest pin what held.
"""

from __future__ import annotations

import base64
import json
import uuid

import pytest
from cryptography.hazmat.primitives import serialization
from leaks import assert_no_leak
from pki import make_chain

ROLE = "certautopilot.vault.cert_distribution"
PUSH = "vault_cert_push"
INFO = "vault_cert_info"
KV_WRITE_OPERATIONS = frozenset({"create", "update", "patch", "delete"})


def approle(bao) -> dict[str, str]:
    return {"auth_method": "approle", "role_id": bao.role_ids["certs"], "secret_id": bao.new_approle_secret_id("certs")}


def root(vault_conn, bao) -> dict[str, str]:
    return {**vault_conn, "auth_method": "token", "token": bao.root_token}


def kv_writes(bao, mark) -> list[dict]:
    return [r for r in bao.audit_requests(mark) if r.get("request", {}).get("operation") in KV_WRITE_OPERATIONS]


def write(bao, path: str, data: dict, custom_metadata: dict | None = None) -> None:
    status, body = bao.api("POST", f"secret/data/{path}", {"data": data})
    assert status == 200, body
    if custom_metadata:
        status, body = bao.api("POST", f"secret/metadata/{path}", {"custom_metadata": custom_metadata})
        assert status in (200, 204), body


def role_playbook(tmp_path, role_params: dict) -> str:
    playbook = tmp_path / "site.yml"
    play = {"name": "Deliver", "hosts": "localhost", "connection": "local", "gather_facts": False}
    playbook.write_text(json.dumps([{**play, "roles": [{"role": ROLE, **role_params}]}]))
    return str(playbook)


# -- 1. the role's own validation task ----------------------------------------------------------


def test_role_validation_never_echoes_a_token_or_key_put_in_the_wrong_option(bao, ansible, vault_conn, tmp_path):
    """validate_argument_spec quotes a refused value ("got: ...", "The value '...' is not a valid boolean"),
    unmasked: a token given as auth_method, or a key given as cert_distribution_state, is printed."""
    chain = make_chain(f"r3-{uuid.uuid4().hex[:8]}.example.com")
    login = {**vault_conn, **approle(bao)}
    token = login["secret_id"]  # any secret; the role's spec declares secret_id no_log
    jwt_like = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJyb3VuZDMifQ.c2lnbmF0dXJlc2lnbmF0dXJl"
    cases = {
        "auth_method": {"cert_distribution_vault": {**login, "auth_method": jwt_like}},
        "validate_certs": {"cert_distribution_vault": {**login, "validate_certs": jwt_like}},
        "state": {"cert_distribution_vault": login, "cert_distribution_state": chain.leaf.key_pem},
    }
    mark = bao.audit_mark()
    leaked = {}
    for name, params in cases.items():
        certs = [{"certificate": chain.leaf.cert_pem, "private_key": chain.leaf.key_pem}]
        run = ansible.run_playbook(
            role_playbook(tmp_path, {}), extra_vars={**params, "cert_distribution_certs": certs}, verbosity=3
        )
        assert run.rc != 0, f"{name}: the bad value was accepted:\n{run.output[-2000:]}"
        assert "Validation of arguments failed" in run.output, run.output[-2000:]
        found = [needle for needle in (jwt_like, token, *chain.leaf.key_pem.splitlines()[1:3]) if needle in run.output]
        if found:
            leaked[name] = [needle[:10] + "..." for needle in found]
    assert kv_writes(bao, mark) == []
    assert not leaked, f"the role's validation printed secrets: {leaked}"


def test_role_validation_failure_writes_nothing_and_shows_no_credential_at_vvv(bao, ansible, vault_conn, tmp_path):
    """A plain bad value (unknown item key, wrong type): refused before the server, secrets unseen."""
    chain = make_chain(f"r3-{uuid.uuid4().hex[:8]}.example.com")
    login = {**vault_conn, **approle(bao)}
    mark = bao.audit_mark()
    for certs in (
        [{"certificate": chain.leaf.cert_pem, "private_key": chain.leaf.key_pem, "privat_key": chain.leaf.key_pem}],
        [{"certificate": chain.leaf.cert_pem, "private_key": chain.leaf.key_pem, "vars": "not a dict"}],
        chain.leaf.key_pem,
    ):
        run = ansible.run_playbook(
            role_playbook(tmp_path, {}),
            extra_vars={"cert_distribution_vault": login, "cert_distribution_certs": certs},
            verbosity=3,
        )
        assert run.rc != 0
        assert_no_leak([run.output], login["secret_id"], chain.leaf.key_pem)
    assert kv_writes(bao, mark) == []


def test_skipping_the_always_tag_still_gets_a_bad_item_refused_by_the_module(bao, ansible, vault_conn, tmp_path):
    """--skip-tags always skips the validation task (as it skipped Ansible's own on main): the module refuses."""
    chain = make_chain(f"r3-{uuid.uuid4().hex[:8]}.example.com")
    login = {**vault_conn, **approle(bao)}
    certs = [{"certificate": chain.leaf.cert_pem, "private_key": chain.leaf.key_pem, "privat_key": "x"}]
    mark = bao.audit_mark()

    run = ansible.run_playbook(
        role_playbook(tmp_path, {}),
        extra_vars={"cert_distribution_vault": login, "cert_distribution_certs": certs},
        extra_vars_args=(),
        verbosity=3,
        env={"ANSIBLE_SKIP_TAGS": "always"},
    )

    assert run.rc != 0, run.output[-2000:]
    assert kv_writes(bao, mark) == []
    assert_no_leak([run.output], login["secret_id"], chain.leaf.key_pem)


# -- 2. the log line of a batch -----------------------------------------------------------------


def test_a_crlf_wrapped_bare_base64_key_in_a_batch_is_not_in_the_syslog_line(bao, module_process, vault_conn):
    """The log line holds repr(certificates): "\\r\\n" is escaped and the key's lines are never seen as one key."""
    chain = make_chain(f"r3-{uuid.uuid4().hex[:8]}.example.com")
    key = serialization.load_pem_private_key(chain.leaf.key_pem.encode(), password=None)
    der = base64.b64encode(
        key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    ).decode()
    bare = "\r\n".join(der[i : i + 64] for i in range(0, len(der), 64)) + "\r\n"
    item = {"path": f"certs/r3-{uuid.uuid4().hex[:8]}", "certificate": bare, "private_key": chain.leaf.key_pem}
    login = approle(bao)  # issuing the secret_id is a write of its own: before the mark
    mark = bao.audit_mark()

    run = module_process.run(PUSH, {**vault_conn, **login, "certificates": [item]})

    assert run.failed
    assert any(line.startswith("Invoked with") for line in run.syslog), run.syslog
    lines = [*der[:128].splitlines(), der[64:128]]
    assert not [x for x in lines if x in "\n".join(run.syslog)], "the key's base64 lines are in the syslog line"
    assert not [x for x in lines if x in json.dumps(run.result)], "the key's base64 lines are in the answer"
    assert kv_writes(bao, mark) == []


# -- 4. vault_cert_info ---------------------------------------------------------------------------


def test_info_never_returns_key_material_whatever_the_secret_holds(bao, ansible, vault_conn):
    base = f"certs/r3-info-{uuid.uuid4().hex[:8]}"
    chain = make_chain(f"r3-{uuid.uuid4().hex[:8]}.example.com")
    key = chain.leaf.key_pem
    token_like = "hvs.CAESI" + uuid.uuid4().hex * 3
    der = "".join(line for line in key.splitlines() if "-----" not in line)
    secrets_written = {
        "key-first": {"certificate": key + chain.leaf.cert_pem},
        "cert-then-key": {"certificate": chain.leaf.cert_pem + key},
        "only-key": {"certificate": key},
        "bare-key": {"certificate": der},
        "cert-then-bare-key": {"certificate": chain.leaf.cert_pem + der + "\n"},
        "truncated-key": {"certificate": key[:150]},
        "key-as-certificate-label": {"certificate": key.replace("PRIVATE KEY", "CERTIFICATE")},
        "list": {"certificate": [key]},
        "dict": {"certificate": {"pem": key}},
        "fallback-field": {"private_key": key, "cert": chain.leaf.cert_pem},
    }
    for name, data in secrets_written.items():
        write(bao, f"{base}/{name}", data, custom_metadata={"note": token_like, "managed_by": "certautopilot.vault"})
    mark = bao.audit_mark()

    runs = [
        ansible.run_module(INFO, {**root(vault_conn, bao), "prefix": base}, verbosity=3),
        ansible.run_module(
            INFO,
            {**root(vault_conn, bao), "prefix": base, "fields": ["private_key", "certificate", "cert"]},
            verbosity=3,
        ),
    ]

    for run in runs:
        assert not run.failed, run.result
        assert run.result["total"] == len(secrets_written)
        assert_no_leak([run.output, run.result], key, token_like)
        assert der[64:128] not in run.output and der[64:128] not in json.dumps(run.result)
    statuses = {item["path"].rsplit("/", 1)[1]: item["status"] for item in runs[0].result["certificates"]}
    assert statuses["cert-then-key"] == "ok" and statuses["key-first"] == "ok"
    assert statuses["only-key"] == statuses["bare-key"] == statuses["list"] == "invalid"
    assert kv_writes(bao, mark) == []


@pytest.mark.parametrize(
    "option, value",
    [
        ("prefix", "certs/../sys"),
        ("prefix", "../secret2"),
        ("prefix", "certs/%2E%2E/x"),
        ("prefix", "certs%2Fx"),
        ("prefix", "certs?list=true"),
        ("prefix", "certs#x"),
        ("prefix", "certs/./x"),
        ("prefix", "certs//x"),
        ("paths", ["certs/../../sys/mounts"]),
        ("paths", ["certs/x?version=1"]),
        ("paths", ["/certs/x"]),
        ("paths", ["certs\\..\\x"]),
    ],
)
def test_info_paths_cannot_leave_the_mount(bao, ansible, vault_conn, option, value):
    mark = bao.audit_mark()

    run = ansible.run_module(INFO, {**root(vault_conn, bao), option: value})

    assert run.failed, run.result
    assert "invalid" in run.msg, run.msg
    assert bao.audit_requests(mark) == [], "nothing may reach the server"


def test_info_with_a_bad_token_fails_instead_of_reporting_everything_unreadable(bao, ansible, vault_conn):
    run = ansible.run_module(
        INFO, {**vault_conn, "auth_method": "token", "token": "hvs.not-a-real-token-000000000000", "prefix": "certs"}
    )

    assert run.failed, run.result
    assert "hvs.not-a-real-token" not in run.output

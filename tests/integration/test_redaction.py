# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Secrets where they do not belong are never shown: keys and tokens pasted into other options, argument errors,
the syslog invocation line, diffs of keys the collection does not manage, the PKCS#12 password in refusals and
at -vvv, and vault_cert_info over secrets that hold key material.

Against a real OpenBao. Modules run in-process (``modules``): the harness scans every run (answer, streams,
syslog lines) for the secrets in its arguments and the tokens it used; a secret that reaches the run another
way (a key pasted into a non-secret option, a value planted in the server) is passed as ``secrets=``.
ansible-playbook only where the controller's -vvv display is the point.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import re
import secrets
import typing as t
import uuid

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from kv_requests import data_writes, kv_writes
from leaks import find_leaks
from pki import Chain, make_chain
from push_runs import FQCN, approle, expected_data, push, single
from tokens import token_with_policy

PUSH = "vault_cert_push"
ROLLBACK = "vault_cert_rollback"
INFO = "vault_cert_info"
PASSWORD = "redaction-pkcs12-password-2718"


def unique_path(topic: str) -> str:
    return f"certs/redaction-{topic}-{uuid.uuid4().hex[:8]}.example.com"


def write_version(bao, path: str, data: dict[str, t.Any], custom_metadata: dict | None = None) -> None:
    status, body = bao.api("POST", f"secret/data/{path}", {"data": data})
    assert status == 200, body
    if custom_metadata:
        status, body = bao.api("POST", f"secret/metadata/{path}", {"custom_metadata": custom_metadata})
        assert status in (200, 204), body


def root(bao, vault_conn) -> dict[str, str]:
    return {**vault_conn, "auth_method": "token", "token": bao.root_token}


# -- a key pasted into a non-secret option ------------------------------------------------------


def _certificate_with_pasted_key(bao, vault_conn, path: str, chain: Chain, **extra: t.Any) -> dict[str, t.Any]:
    """Cert-only delivery whose `certificate` option also holds the private key (a careless paste)."""
    return {
        **vault_conn,
        **approle(bao),
        "path": path,
        "certificate": chain.leaf.cert_pem + chain.leaf.key_pem,
        "chain": chain.chain_pem,
        "include_private_key": False,
        **extra,
    }


def test_key_pasted_into_certificate_is_masked_in_an_argument_error(modules, bao, vault_conn):
    path = unique_path("pasted-key-argument-error")
    chain = make_chain(path.removeprefix("certs/"))
    args = _certificate_with_pasted_key(bao, vault_conn, path, chain, timeout="abc")

    # The scan covers the answer (its invocation module_args and msg), the streams and the syslog lines.
    run = modules.run_module(PUSH, args, secrets=[chain.leaf.key_pem])

    assert run.failed, run.stdout
    assert "timeout" in run.msg
    assert "module_args" in run.result.get("invocation", {}), run.result
    assert run.requests == []
    assert bao.kv_version_numbers(path) == []


def test_key_pasted_into_certificate_is_masked_in_the_syslog_invocation_line(modules, bao, vault_conn):
    path = unique_path("pasted-key-syslog")
    chain = make_chain(path.removeprefix("certs/"))

    run = modules.run_module(
        PUSH, _certificate_with_pasted_key(bao, vault_conn, path, chain), secrets=[chain.leaf.key_pem]
    )

    assert any("Invoked with" in line for line in run.syslog), f"no 'Invoked with' line captured: {run.syslog!r}"
    # Whatever the run decided, the server holds no key for a cert-only delivery.
    assert find_leaks([bao.kv_data(path) or {}], chain.leaf.key_pem) == []


def test_key_pasted_as_the_mount_is_refused_unquoted(modules, bao, vault_conn):
    """No message quotes a value that failed validation, and the key block is a no_log value wherever it goes."""
    chain = make_chain("mount-key.example.com")
    args = {**vault_conn, **approle(bao), **single(unique_path("mount-key"), chain.leaf, chain.intermediate)}

    run = modules.run_module(PUSH, {**args, "mount": chain.leaf.key_pem}, secrets=[chain.leaf.key_pem])

    assert run.failed and "mount" in run.msg, run.msg
    assert kv_writes(run.requests) == []


@pytest.mark.parametrize("line_break", ["\n", "\r\n"], ids=["lf", "crlf"])
def test_a_combined_cert_and_key_file_in_a_batch_is_not_in_the_syslog_line(modules, bao, vault_conn, line_break):
    """The log line holds repr(certificates), where line breaks are escaped: the key block's lines, each a no_log
    value of its own, are masked there (a combined file saved on Windows ends its lines with CRLF)."""
    chain = make_chain(f"r3-{uuid.uuid4().hex[:8]}.example.com")
    combined = (chain.leaf.cert_pem + chain.leaf.key_pem).replace("\n", line_break)
    path = unique_path("combined")
    item = {"path": path, "certificate": combined, "private_key": chain.leaf.key_pem}

    run = modules.run_module(PUSH, {**vault_conn, **approle(bao), "certificates": [item]}, secrets=[chain.leaf.key_pem])

    assert any(line.startswith("Invoked with") for line in run.syslog), run.syslog
    # The certificate text is taken from its first CERTIFICATE block: the key beside it is never stored there.
    assert find_leaks([(bao.kv_data(path) or {}).get("certificate", "")], chain.leaf.key_pem) == []


def test_fields_that_map_to_a_pasted_key_are_refused_unseen(modules, bao, vault_conn):
    path = unique_path("fields-key")
    chain = make_chain(path.removeprefix("certs/"))
    other = make_chain("pasted.example.com")
    args = {**vault_conn, **approle(bao), **single(path, chain.leaf, chain.intermediate)}

    as_value = modules.run_module(
        PUSH, {**args, "fields": {"certificate": other.leaf.key_pem}}, secrets=[other.leaf.key_pem]
    )
    as_name = modules.run_module(
        PUSH, {**args, "fields": {other.leaf.key_pem: "certificate"}}, secrets=[other.leaf.key_pem]
    )

    assert as_value.failed and "fields: certificate must map to a JSON key" in as_value.msg, as_value.msg
    assert as_name.failed and "unknown field name" in as_name.msg, as_name.msg
    assert kv_writes(as_value.requests + as_name.requests) == []


def test_key_wrapped_as_bare_base64_lines_in_a_field_name_is_never_shown(modules, bao, vault_conn):
    chain = make_chain("wrapped-der.example.com")
    wrapped = "\n".join(line for line in chain.leaf.key_pem.splitlines() if "-----" not in line)
    args = {
        **vault_conn,
        **approle(bao),
        **single(unique_path("wrapped-der"), chain.leaf, chain.intermediate),
        "fields": {wrapped: "x"},
    }

    run = modules.run_module(PUSH, args)

    assert run.failed and "unknown field name(s) at place 1 of 1" in run.msg, run.msg


@pytest.mark.parametrize("option", ["auth_method", "layout", "timeout", "revoke_token"])
def test_a_secret_pasted_into_a_typed_or_choice_option_is_not_quoted_by_the_argument_error(
    modules, bao, vault_conn, option
):
    """Ansible's validator quotes the value it refuses ("got: ...", "is not a valid boolean", "cannot be converted
    to an int"): another credential pasted there (a survey answer in the wrong field) is masked in the answer."""
    pasted = bao.new_approle_secret_id("certs")
    chain = make_chain("pasted-typed.example.com")
    args = {**vault_conn, **approle(bao), **single(unique_path("pasted-typed"), chain.leaf, chain.intermediate)}

    run = modules.run_module(PUSH, {**args, option: pasted}, secrets=[pasted])

    assert run.failed and option in run.msg, run.msg
    assert run.requests == []


def test_a_token_pasted_as_a_field_name_is_named_by_place_not_quoted(modules, bao, vault_conn):
    """Not a secret the module knows (its echo in invocation is the user's own option): the message names the
    place of the name, never the name."""
    pasted = token_with_policy(bao, "redaction-field-name", {"secret/*": ["read"]})
    chain = make_chain("pasted-field-name.example.com")
    args = {**vault_conn, **approle(bao), **single(unique_path("pasted-field"), chain.leaf, chain.intermediate)}

    run = modules.run_module(PUSH, {**args, "fields": {"certificate": "tls.crt", pasted: "x"}})

    assert run.failed and "fields: unknown field name(s) at place 2 of 2" in run.msg, run.msg
    assert pasted not in run.msg and pasted not in "".join(run.result.get("warnings", [])), run.msg
    assert kv_writes(run.requests) == []


@pytest.mark.parametrize("item", ["not-a-dictionary", 5, None], ids=["string", "number", "null"])
def test_batch_item_that_is_no_dictionary_never_shows_the_token(modules, bao, vault_conn, item):
    token = token_with_policy(bao, "redaction-batch-item", {"secret/*": ["read"]})

    run = modules.run_module(PUSH, {**vault_conn, "auth_method": "token", "token": token, "certificates": [item]})

    assert run.failed


@pytest.mark.parametrize("option", ["namespace", "path", "role_id"])
def test_the_runs_own_token_pasted_into_another_option_is_masked_as_a_no_log_value(modules, bao, vault_conn, option):
    """A templating slip puts the run's token where a name goes: it is no_log, so Ansible masks it everywhere.
    (A token the run was never given is not known to be one: no message quotes it, but a name it became stays.)"""
    token = token_with_policy(bao, "redaction-pasted-token", {"secret/*": ["create", "read", "update"]})
    path = unique_path("pasted-token")
    chain = make_chain(path.removeprefix("certs/"))
    args = {**vault_conn, "auth_method": "token", "token": token, **single(path, chain.leaf, chain.intermediate)}
    args[option] = token if option != "path" else f"certs/{token}"

    run = modules.run_module(PUSH, args)

    # Whatever the module decided, the harness's scan found the token nowhere (it is a secret of the run).
    assert run.failed or bao.kv_version_numbers(args["path"]) == [1]


# -- diffs of keys the collection does not manage ----------------------------------------------


def _unmanaged_fields() -> tuple[dict[str, str], dict[str, str]]:
    """Keys the collection does not manage, each hiding a random value; and those values by key."""
    hidden = {key: secrets.token_hex(16) for key in ("notes", "other", "legacy", "annotated")}
    cert = make_chain("unmanaged.example.com").leaf.cert_pem
    fields = {
        "notes": f"db_password={hidden['notes']}",
        "other": f"-----BEGIN-----\n{hidden['other']}\n-----END-----",
        "legacy": f"-----BEGIN FOO-----\n{hidden['legacy']}\n-----END FOO-----",
        "annotated": f"db_password={hidden['annotated']}\n{cert}",
    }
    return fields, hidden


def _assert_unmanaged_summarised(run, fields: dict[str, str]) -> None:
    diff = run.result.get("diff")
    assert isinstance(diff, dict), run.result
    for key in fields:
        assert key in diff["before"], diff["before"]
        assert key in diff["after"], diff["after"]


def test_push_diff_never_shows_values_of_unmanaged_keys(modules, bao, vault_conn):
    path = unique_path("diff-unmanaged-push")
    old, renewed = make_chain(path.removeprefix("certs/")), make_chain(path.removeprefix("certs/"))
    fields, hidden = _unmanaged_fields()
    write_version(bao, path, {**expected_data(old.leaf, old.intermediate), **fields})

    run = modules.run_module(
        PUSH,
        {**vault_conn, **approle(bao), **single(path, renewed.leaf, renewed.intermediate)},
        diff=True,
        secrets=[*hidden.values(), old.leaf.key_pem],
    )

    assert not run.failed, run.msg
    assert (run.result["version"], run.result["previous_version"]) == (2, 1)
    _assert_unmanaged_summarised(run, fields)
    assert bao.kv_version_numbers(path) == [1, 2]
    assert bao.kv_data(path) == {**expected_data(renewed.leaf, renewed.intermediate), **fields}


def test_rollback_diff_never_shows_values_of_unmanaged_keys(modules, bao, vault_conn):
    path = unique_path("diff-unmanaged-rollback")
    old, renewed = make_chain(path.removeprefix("certs/")), make_chain(path.removeprefix("certs/"))
    fields, hidden = _unmanaged_fields()
    write_version(bao, path, {**expected_data(old.leaf, old.intermediate), **fields})
    write_version(bao, path, {**expected_data(renewed.leaf, renewed.intermediate), **fields})

    run = modules.run_module(
        ROLLBACK,
        {**vault_conn, **approle(bao), "path": path, "version": 1},
        diff=True,
        secrets=[*hidden.values(), old.leaf.key_pem, renewed.leaf.key_pem],
    )

    assert not run.failed, run.msg
    assert run.result["version"] == 3
    _assert_unmanaged_summarised(run, fields)
    assert bao.kv_version_numbers(path) == [1, 2, 3]
    assert bao.kv_data(path) == {**expected_data(old.leaf, old.intermediate), **fields}


# -- the PKCS#12 password ------------------------------------------------------------------------


def pkcs12_args(path: str, chain: Chain, **options: t.Any) -> dict[str, t.Any]:
    return single(path, chain.leaf, chain.intermediate, **{"layout": "pkcs12", "pkcs12_password": PASSWORD, **options})


TYPED_SECRET = "typed-pkcs12-secret-0451"
TYPED_PASSWORDS = {"list": [TYPED_SECRET], "dict": {"password": TYPED_SECRET}, "int": 271828182845}


@dataclasses.dataclass
class DisplayRun:
    run: t.Any
    results: dict[str, t.Any]
    paths: dict[str, str]


@pytest.fixture(scope="module")
def controller_display(ansible, bao, vault_conn) -> DisplayRun:
    """The cases whose point is the controller's display: one playbook at -vvv in diff mode, a task each."""
    pasted_path = unique_path("pasted-key-argument-error-vvv")
    pasted = make_chain(pasted_path.removeprefix("certs/"))
    typed = make_chain("typed-password.example.com")
    base = f"certs/redaction-typed-{uuid.uuid4().hex[:8]}"
    paths = {"pasted key": pasted_path, **{name: f"{base}-{name}" for name in TYPED_PASSWORDS}}
    tasks = {"pasted key": _certificate_with_pasted_key(bao, vault_conn, pasted_path, pasted, timeout="abc")}
    for name, password in TYPED_PASSWORDS.items():
        tasks[name] = {**vault_conn, **approle(bao), **pkcs12_args(paths[name], typed, pkcs12_password=password)}
    play = {"name": "Shown at -vvv", "hosts": "localhost", "gather_facts": False}
    play["tasks"] = [{"name": name, FQCN: args, "ignore_errors": True} for name, args in tasks.items()]
    playbook = ansible.workdir / f"display-{uuid.uuid4().hex}.yml"
    playbook.write_text(json.dumps([play]))
    playbook.chmod(0o600)
    # The pasted key is in `certificate` and the typed passwords are no strings: none is a secret the harness finds.
    shown = [pasted.leaf.key_pem, TYPED_SECRET, str(TYPED_PASSWORDS["int"])]
    try:
        run = ansible.run_playbook(playbook, verbosity=3, diff=True, secrets=shown)
    finally:
        playbook.unlink()
    results = {task.task: task for task in run.tasks}
    assert set(results) == set(tasks), run.output
    return DisplayRun(run=run, results=results, paths=paths)


def test_key_pasted_into_certificate_is_masked_in_an_argument_error_under_ansible_playbook(bao, controller_display):
    task = controller_display.results["pasted key"]

    assert task.status == "failed", task.result
    assert "timeout" in task.result["msg"]
    assert bao.kv_version_numbers(controller_display.paths["pasted key"]) == []


@pytest.mark.parametrize("name", list(TYPED_PASSWORDS))
def test_a_pkcs12_password_of_another_type_is_never_shown(bao, controller_display, name):
    """pkcs12_password given as a list, a dict or a number (an unquoted PIN) - whatever Ansible makes of it, the
    password is not printed (the fixture's run is scanned), not even in the controller's display at -vvv and in
    diff mode, and a refusal writes nothing."""
    task, path = controller_display.results[name], controller_display.paths[name]

    if task.status == "failed":
        assert [write for write in data_writes(controller_display.run.requests) if write.endswith(path)] == []
        assert bao.kv_version_numbers(path) == []
    else:
        assert bao.kv_version_numbers(path) == [1], task.result


def test_a_pkcs12_password_given_with_another_layout_or_with_a_bad_certificate_is_not_shown(modules, bao, vault_conn):
    """Refusals that involve the password - given to layout fabio, with a certificate whose key does not match,
    with an unparsable certificate, in a batch whose second item is bad - name the problem, never the password,
    and write nothing."""
    path = unique_path("refused-password")
    chain = make_chain("refused-password.example.com")
    stranger = make_chain("stranger.example.com")
    cases = {
        "with fabio": pkcs12_args(path, chain, layout="fabio"),
        "key mismatch": pkcs12_args(path, chain, private_key=stranger.leaf.key_pem, validate=False),
        "bad certificate": pkcs12_args(
            path, chain, certificate="-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
        ),
        "bad batch item": {
            "layout": "pkcs12",
            "pkcs12_password": PASSWORD,
            "certificates": [
                {"path": f"{path}-1", "certificate": chain.leaf.cert_pem, "private_key": chain.leaf.key_pem},
                {"path": f"{path}-2", "certificate": chain.leaf.cert_pem, "private_key": stranger.leaf.key_pem},
            ],
        },
    }

    runs = {name: push(modules, {**vault_conn, **approle(bao), **args}) for name, args in cases.items()}

    for name, run in runs.items():
        assert run.failed, (name, run.result)
        assert data_writes(run.requests) == [], name
    assert runs["with fabio"].msg.startswith("pkcs12_password is only used by layout pkcs12")
    assert "match" in runs["key mismatch"].msg
    assert [bao.kv_version_numbers(item) for item in (path, f"{path}-1", f"{path}-2")] == [[], [], []]


def test_a_pkcs12_push_with_diff_check_and_vvv_shows_no_password_key_or_bundle(modules, bao, vault_conn):
    """Over an existing bundle under another password, check mode with diff at -vvv shows the bundle only as an
    opaque size and keyed hash; neither password, the key nor the bundle's base64 appears."""
    path = unique_path("vvv-p12")
    chain = make_chain("vvv-p12.example.com")
    old_password = "the-old-pkcs12-password-1618"
    old = pkcs12.serialize_key_and_certificates(
        None, chain.leaf.key, chain.leaf.cert, None, serialization.BestAvailableEncryption(old_password.encode())
    )
    old_value = base64.b64encode(old).decode("ascii")
    write_version(bao, path, {"pkcs12": old_value})

    run = push(
        modules,
        {**vault_conn, **approle(bao), **pkcs12_args(path, chain)},
        check=True,
        diff=True,
        verbosity=3,
        secrets=[old_password, old_value[40:120]],
    )

    assert not run.failed, run.msg
    assert run.changed and bao.kv_version_numbers(path) == [1]
    assert re.fullmatch(r"<value: \d+ characters, keyed hash [0-9a-f]{16}>", run.result["diff"]["after"]["pkcs12"])
    assert data_writes(run.requests) == []


def test_module_validation_masks_a_pkcs12_password_put_in_the_wrong_option(modules, bao, vault_conn):
    """The module's own argument checks mask the no_log pkcs12_password wherever it is quoted."""
    path = unique_path("module-masked")
    chain = make_chain("module-masked.example.com")
    for option in ("layout", "keep_other_fields"):
        run = push(modules, {**vault_conn, **approle(bao), **pkcs12_args(path, chain), option: PASSWORD}, verbosity=3)
        assert run.failed and option in run.msg, run.msg
    assert bao.kv_version_numbers(path) == []


# -- vault_cert_info over secrets that hold key material -----------------------------------------


def test_info_never_returns_key_material_whatever_the_secret_holds(modules, bao, vault_conn):
    base = f"certs/redaction-info-{uuid.uuid4().hex[:8]}"
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
        custom_metadata = {"note": token_like, "managed_by": "certautopilot.vault"}
        write_version(bao, f"{base}/{name}", data, custom_metadata=custom_metadata)
    planted = [key, token_like, der[64:128]]

    runs = [
        modules.run_module(INFO, {**root(bao, vault_conn), "prefix": base}, verbosity=3, secrets=planted),
        modules.run_module(
            INFO,
            {**root(bao, vault_conn), "prefix": base, "fields": ["private_key", "certificate", "cert"]},
            verbosity=3,
            secrets=planted,
        ),
    ]

    for run in runs:
        assert not run.failed, run.result
        assert run.result["total"] == len(secrets_written)
        assert kv_writes(run.requests) == []
    statuses = {item["path"].rsplit("/", 1)[1]: item["status"] for item in runs[0].result["certificates"]}
    assert statuses["cert-then-key"] == "ok" and statuses["key-first"] == "ok"
    assert statuses["only-key"] == statuses["bare-key"] == statuses["list"] == "invalid"

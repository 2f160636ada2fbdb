"""Hostile input to vault_cert_push: each case is refused with a message naming the input, before
a single request leaves (the audit log shows none), so nothing is written.

All cases run as the tasks of one ansible-playbook run (failures ignored) to keep the suite fast;
each parametrized test then checks one case. A refusal must not depend on the server, so the
run as a whole must not have sent any request at all.
"""

from __future__ import annotations

import dataclasses
import json
import typing as t
import uuid
from pathlib import Path

import pytest
from leaks import assert_no_leak
from pki import bundle, encrypted_key_pem, key_pem, make_chain, new_key
from vault_args import approle_args

PUSH = "certautopilot.vault.vault_cert_push"
RUN = uuid.uuid4().hex[:8]
ONE_MEGABYTE = 1024 * 1024

GOOD = make_chain("hostile.example.com")
UNRELATED = make_chain(
    "unrelated.example.com", root_cn="Unrelated Root CA", intermediate_cn="Unrelated Intermediate CA"
)
LEAF_PEM = GOOD.leaf.cert_pem
KEY_PEM = GOOD.leaf.key_pem


def _truncated(pem: str) -> str:
    lines = pem.splitlines(keepends=True)
    return "".join(lines[: len(lines) // 2])


def _garbage_block(label: str) -> str:
    return f"-----BEGIN {label}-----\nthis is not base64 at all!\n-----END {label}-----\n"


def _latin1_pem() -> str:
    # What a Latin-1 file decoded leniently looks like: non-ASCII characters in the base64 body.
    lines = LEAF_PEM.splitlines(keepends=True)
    lines[2] = "é" + lines[2][1:-2] + "ÿ\n"
    return "".join(lines)


def _der_as_text() -> str:
    from cryptography.hazmat.primitives import serialization

    return GOOD.leaf.cert.public_bytes(serialization.Encoding.DER).decode("latin-1").replace("\x00", "\x01")


def _one_megabyte_chain() -> str:
    copies = ONE_MEGABYTE // len(GOOD.chain_pem) + 1
    return GOOD.chain_pem * copies


@dataclasses.dataclass(frozen=True)
class Case:
    """One hostile input: the push arguments it changes and the substrings its message must hold."""

    id: str
    args: dict[str, t.Any]
    expect: tuple[str, ...]
    # Secret paths that must not exist afterwards besides the case's own.
    also_unwritten: tuple[str, ...] = ()

    @property
    def path(self) -> str:
        return f"certs/hostile-{RUN}-{self.id}"


def _path(case_id: str) -> str:
    return f"certs/hostile-{RUN}-{case_id}"


LONG_PATH = "certs/" + "a" * 2000

CASES = [
    # -- PEM and keys ------------------------------------------------------------------------------
    Case("cert-garbage", {"certificate": _garbage_block("CERTIFICATE")}, ("certificate", "PEM")),
    Case("cert-truncated", {"certificate": _truncated(LEAF_PEM)}, ("certificate", "PEM", "truncated")),
    Case("cert-is-a-key", {"certificate": KEY_PEM}, ("certificate", "PRIVATE KEY", "not a PEM certificate")),
    Case("key-truncated", {"private_key": _truncated(KEY_PEM)}, ("private key", "PEM", "truncated")),
    Case("key-is-a-cert", {"private_key": LEAF_PEM}, ("private key", "CERTIFICATE", "not a PEM private key")),
    Case(
        "key-of-another-type",
        {"private_key": key_pem(new_key("rsa"))},
        ("private key does not match the certificate",),
    ),
    Case(
        "key-encrypted",
        {"private_key": encrypted_key_pem(GOOD.leaf.key)},
        ("private key is encrypted", "passphrase"),
    ),
    # -- chains --------------------------------------------------------------------------------------
    Case(
        "chain-wrong-order",
        {"chain": bundle(GOOD.root, GOOD.intermediate)},
        ("chain is broken", "chain item 1", "leaf-first"),
    ),
    Case("chain-unrelated", {"chain": UNRELATED.chain_pem}, ("chain is broken", "chain item 1", "Unrelated")),
    Case(
        "chain-duplicate",
        {"chain": [GOOD.chain_pem, GOOD.chain_pem]},
        ("chain item 2", "duplicate of chain item 1"),
    ),
    Case("chain-holds-the-leaf", {"chain": LEAF_PEM + GOOD.chain_pem}, ("chain item 1", "the certificate itself")),
    Case("chain-one-megabyte", {"chain": _one_megabyte_chain()}, ("chain item 2", "duplicate")),
    # -- text that is not UTF-8 ----------------------------------------------------------------------
    Case("cert-latin1", {"certificate": _latin1_pem()}, ("certificate", "PEM")),
    Case("cert-der-as-text", {"certificate": _der_as_text()}, ("certificate", "PEM")),
    # -- paths ---------------------------------------------------------------------------------------
    Case("path-dotdot", {"path": "certs/../sys/x"}, ("invalid path:", "'..'")),
    Case("path-dot", {"path": "certs/./x"}, ("invalid path:", "'.'")),
    Case("path-empty-segment", {"path": "certs//x"}, ("invalid path:", "empty")),
    Case("path-leading-slash", {"path": "/certs/x"}, ("invalid path:", "start or end with '/'")),
    Case("path-empty", {"path": ""}, ("invalid path:", "empty")),
    Case("path-control-char", {"path": "certs/a\x07b"}, ("invalid path:", "control")),
    Case("path-very-long", {"path": LONG_PATH}, ("invalid path:", "longer than")),
    Case("path-query", {"path": "certs/x?version=1"}, ("invalid path:", "? # % \\")),
    Case(
        "batch-one-bad-path",
        {
            "path": None,
            "certificate": None,
            "private_key": None,
            "chain": None,
            "certificates": [
                {"path": _path("batch-good"), "certificate": LEAF_PEM, "private_key": KEY_PEM},
                {"path": "certs/../x", "certificate": LEAF_PEM, "private_key": KEY_PEM},
            ],
        },
        ("invalid certificates[1].path:", "'..'"),
        also_unwritten=(_path("batch-good"),),
    ),
    # -- mounts --------------------------------------------------------------------------------------
    Case("mount-double-slash", {"mount": "a//b"}, ("invalid mount:", "empty")),
    Case("mount-leading-slash", {"mount": "/secret"}, ("invalid mount:", "start or end with '/'")),
    # -- option values -------------------------------------------------------------------------------
    Case("auth-method-unknown", {"auth_method": "bogus"}, ("auth_method", "bogus")),
    Case(
        "fields-two-to-one-key",
        {"fields": {"certificate": "x", "chain": "x"}},
        ("fields", "certificate", "chain", "'x'"),
    ),
    Case("fields-unknown-name", {"fields": {"cert": "tls.crt"}}, ("fields", "unknown", "'cert'")),
    # The url is named, never quoted: it may carry a credential.
    Case("url-without-scheme", {"url": "vault.example.com:8200"}, ("url is not a Vault address", "https://")),
]


class HostileRun:
    def __init__(self, bao, ansible, workdir: Path) -> None:
        self.bao = bao
        base = {
            **approle_args(bao),
            # No retry could change a refusal; none should make one slow either.
            "retries": 1,
        }
        self.secret_id = base["secret_id"]
        tasks = []
        for case in CASES:
            args = {**base, "path": case.path, "certificate": LEAF_PEM, "private_key": KEY_PEM}
            args["chain"] = GOOD.chain_pem
            args.update(case.args)
            args = {key: value for key, value in args.items() if value is not None}
            tasks.append({"name": case.id, PUSH: args, "ignore_errors": True})
        # A file that is not UTF-8, read the way a playbook reads a certificate file.
        latin1 = workdir / "latin1-cert.pem"
        latin1.write_bytes(LEAF_PEM.encode("ascii").replace(b"MII", b"MII\xe9\xff", 1))
        tasks.append(
            {
                "name": "file-not-utf8",
                PUSH: {
                    **base,
                    "path": _path("file-not-utf8"),
                    "private_key": KEY_PEM,
                    "certificate": f"{{{{ lookup('ansible.builtin.file', '{latin1}') }}}}",
                },
                "ignore_errors": True,
            }
        )
        playbook = workdir / "hostile.yml"
        playbook.write_text(
            json.dumps([{"name": "Hostile", "hosts": "localhost", "gather_facts": False, "tasks": tasks}])
        )
        playbook.chmod(0o600)
        self.mark = bao.audit_mark()
        self.run = ansible.run_playbook(playbook)
        self.requests = bao.audit_requests(self.mark)
        self.results = {task.task: {**task.result, "failed": task.status == "failed"} for task in self.run.tasks}


@pytest.fixture(scope="module")
def hostile(bao, ansible, tmp_path_factory) -> HostileRun:
    return HostileRun(bao, ansible, tmp_path_factory.mktemp("hostile"))


def test_no_hostile_input_reached_the_server(hostile: HostileRun) -> None:
    seen = [(entry["request"].get("operation"), entry["request"].get("path")) for entry in hostile.requests]

    assert seen == []


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_hostile_input_is_refused_naming_the_input_and_nothing_is_written(hostile: HostileRun, case: Case) -> None:
    result = hostile.results[case.id]

    assert result["failed"] is True, result
    for expected in case.expect:
        assert expected in result["msg"], f"{expected!r} not in {result['msg']!r}"
    # The audit log proves no request at all (test above); the server agrees for the valid paths.
    for path in (case.path, *case.also_unwritten):
        assert hostile.bao.kv_versions("secret", path) == {}


def test_key_pasted_into_certificate_is_not_shown(hostile: HostileRun) -> None:
    assert_no_leak([hostile.results["cert-is-a-key"]["msg"], hostile.results["cert-is-a-key"]], KEY_PEM)


def test_file_that_is_not_utf8_is_refused_before_the_module_runs(hostile: HostileRun) -> None:
    # Ansible itself cannot hand such text to a module; its message names the encoding.
    result = hostile.results["file-not-utf8"]

    assert result["failed"] is True
    assert "utf-8" in result["msg"].lower()
    assert hostile.bao.kv_versions("secret", _path("file-not-utf8")) == {}


def test_mount_with_slashes_that_does_not_exist_is_refused_by_the_mount_check(bao, ansible, tmp_path) -> None:
    """A nested mount name is valid: it reaches the server, fails the mount check, writes nothing."""
    token = _certs_token(bao)
    playbook = tmp_path / "nested.yml"
    args = {
        "url": bao.addr,
        "ca_cert": bao.ca_cert,
        "auth_method": "token",
        "token": token,
        "mount": "team/kv",
        "path": _path("nested-mount"),
        "certificate": LEAF_PEM,
        "private_key": KEY_PEM,
    }
    playbook.write_text(
        json.dumps([{"hosts": "localhost", "gather_facts": False, "tasks": [{"name": "nested", PUSH: args}]}])
    )
    mark = bao.audit_mark()
    run = ansible.run_playbook(playbook)
    requests = bao.audit_requests(mark)
    result = run.task("nested").result

    assert run.rc != 0
    assert "mount 'team/kv' not found" in result["msg"]
    assert [entry["request"]["path"] for entry in requests] == ["sys/internal/ui/mounts/team/kv"]
    assert all(entry["request"]["operation"] == "read" for entry in requests)


def _certs_token(bao) -> str:
    status, body = bao.api("POST", "auth/token/create", {"policies": ["certs"], "ttl": "10m"})
    assert status == 200, body
    return body["auth"]["client_token"]

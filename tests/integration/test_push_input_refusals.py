# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Input vault_cert_push must refuse: broken PEM and keys, broken chains, text that is not UTF-8, paths and mounts
that are no plain KV names, unknown option values. Each case is refused with a message naming the input, before a
single request leaves (the audit log shows none), so nothing is written.

Every case is the module's main() in-process (``modules``), run once for the file; a file that is not UTF-8, read
by a playbook's lookup, is the controller's case and has a playbook run of its own.
"""

from __future__ import annotations

import dataclasses
import json
import typing as t
import uuid

import pytest
from pki import bundle, encrypted_key_pem, key_pem, make_chain, new_key
from vault_args import approle_args

PUSH = "vault_cert_push"
FQCN = "certautopilot.vault.vault_cert_push"
RUN = uuid.uuid4().hex[:8]
ONE_MEGABYTE = 1024 * 1024

GOOD = make_chain("refused-input.example.com")
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
    """One input to refuse: the push arguments it changes and the substrings its message must hold."""

    id: str
    args: dict[str, t.Any]
    expect: tuple[str, ...]
    # Secret paths that must not exist afterwards besides the case's own.
    also_unwritten: tuple[str, ...] = ()

    @property
    def path(self) -> str:
        return f"certs/refused-input-{RUN}-{self.id}"


def _path(case_id: str) -> str:
    return f"certs/refused-input-{RUN}-{case_id}"


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
    Case("auth-method-unknown", {"auth_method": "bogus"}, ("auth_method", "must be one of")),
    Case(
        "fields-two-to-one-key",
        {"fields": {"certificate": "x", "chain": "x"}},
        ("fields", "certificate", "chain", "'x'"),
    ),
    Case("fields-unknown-name", {"fields": {"cert": "tls.crt"}}, ("fields", "unknown field name(s) at place 1 of 1")),
    # The url is named, never quoted: it may carry a credential.
    Case("url-without-scheme", {"url": "vault.example.com:8200"}, ("url is not a Vault address", "https://")),
]


@dataclasses.dataclass
class Refusals:
    results: dict[str, t.Any]
    requests: dict[str, list[dict[str, t.Any]]]


@pytest.fixture(scope="module")
def refusals(bao, modules) -> Refusals:
    """Every case, run once; no retry could change a refusal, and none should make one slow either."""
    base = {**approle_args(bao), "retries": 1}
    results, requests = {}, {}
    for case in CASES:
        args = {**base, "path": case.path, "certificate": LEAF_PEM, "private_key": KEY_PEM, "chain": GOOD.chain_pem}
        args.update(case.args)
        run = modules.run_module(PUSH, {key: value for key, value in args.items() if value is not None})
        results[case.id], requests[case.id] = run, run.requests
    return Refusals(results=results, requests=requests)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_refused_input_reaches_no_server(refusals: Refusals, case: Case) -> None:
    seen = [(entry["request"].get("operation"), entry["request"].get("path")) for entry in refusals.requests[case.id]]

    assert seen == []


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_input_is_refused_naming_the_input_and_nothing_is_written(bao, refusals: Refusals, case: Case) -> None:
    run = refusals.results[case.id]

    assert run.failed is True, run.result
    for expected in case.expect:
        assert expected in run.msg, f"{expected!r} not in {run.msg!r}"
    for path in (case.path, *case.also_unwritten):
        assert bao.kv_versions("secret", path) == {}


def test_key_pasted_into_certificate_is_refused_unseen(bao, modules) -> None:
    """The key given as the certificate: the harness scans the run for it (it is the run's private_key too)."""
    args = {**approle_args(bao), "path": _path("key-as-cert"), "certificate": KEY_PEM, "private_key": KEY_PEM}

    run = modules.run_module(PUSH, args, secrets=[KEY_PEM])

    assert run.failed and "not a PEM certificate" in run.msg, run.msg
    assert run.requests == []


def test_file_that_is_not_utf8_is_refused_before_the_module_runs(bao, ansible, tmp_path) -> None:
    """Ansible itself cannot hand such text to a module: the file lookup's message names the encoding."""
    latin1 = tmp_path / "latin1-cert.pem"
    latin1.write_bytes(LEAF_PEM.encode("ascii").replace(b"MII", b"MII\xe9\xff", 1))
    args = {
        **approle_args(bao),
        "path": _path("file-not-utf8"),
        "private_key": KEY_PEM,
        "certificate": f"{{{{ lookup('ansible.builtin.file', '{latin1}') }}}}",
    }
    playbook = tmp_path / "not-utf8.yml"
    task = {"name": "file-not-utf8", FQCN: args, "ignore_errors": True}
    playbook.write_text(
        json.dumps([{"name": "Not UTF-8", "hosts": "localhost", "gather_facts": False, "tasks": [task]}])
    )
    playbook.chmod(0o600)

    run = ansible.run_playbook(playbook)

    result = run.task("file-not-utf8")
    assert result.status == "failed"
    assert "utf-8" in result.result["msg"].lower()
    assert run.requests == []
    assert bao.kv_versions("secret", _path("file-not-utf8")) == {}

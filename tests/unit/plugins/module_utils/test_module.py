# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The module base: the secrets it learns of masked by Ansible in every answer and log line, and the last-resort
handler."""

from __future__ import annotations

import json
import syslog

import pytest
from ansible.module_utils._internal import _traceback
from ansible.module_utils.common.parameters import PASS_VARS
from ansible.module_utils.testing import patch_module_args
from refusals import body_lines

from ansible_collections.certautopilot.vault.plugins.module_utils._errors import VaultCertError
from ansible_collections.certautopilot.vault.plugins.module_utils._module import VaultModule, target_argument_spec
from ansible_collections.certautopilot.vault.plugins.module_utils._redaction import MASK

PUSH_LIKE_SPEC = {**target_argument_spec(), "certificate": {"type": "str"}}


def _answer(capsys, run) -> dict:
    with pytest.raises(SystemExit):
        run()
    return json.loads(capsys.readouterr().out)


@pytest.fixture
def syslog_lines(monkeypatch) -> list[str]:
    lines: list[str] = []
    monkeypatch.setattr(syslog, "syslog", lambda *args: lines.append(args[-1]))
    monkeypatch.setattr(syslog, "openlog", lambda *args, **kwargs: None)
    return lines


def test_key_pasted_into_a_plain_option_is_masked_in_an_argument_error(capsys, syslog_lines, ec_chain):
    certificate = ec_chain.leaf.cert_pem + ec_chain.leaf.key_pem
    args = {"url": "https://vault.example.com", "certificate": certificate, "timeout": "abc"}
    if "inject_invocation" in PASS_VARS:
        # ansible-core 2.21+ answers `invocation` only when asked (its INJECT_INVOCATION setting).
        args["_ansible_inject_invocation"] = True
    with patch_module_args(args):
        answer = _answer(capsys, lambda: VaultModule(argument_spec=PUSH_LIKE_SPEC))
    assert answer["failed"] and "timeout" in answer["msg"]
    assert answer["invocation"]["module_args"]["certificate"].startswith(ec_chain.leaf.cert_pem.strip())
    for line in body_lines(ec_chain.leaf.key_pem):
        assert line not in json.dumps(answer)


def test_key_pasted_into_a_plain_option_is_masked_in_the_syslog_line(capsys, syslog_lines, ec_chain):
    certificate = ec_chain.leaf.cert_pem + ec_chain.leaf.key_pem
    with patch_module_args({"url": "https://vault.example.com", "certificate": certificate}):
        vault = VaultModule(argument_spec=PUSH_LIKE_SPEC)
        answer = _answer(capsys, lambda: vault.run(lambda: {"changed": False, "echo": vault.params["certificate"]}))
    (invoked,) = [line for line in syslog_lines if line.startswith("Invoked with")]
    assert "certificate=" in invoked and MASK in invoked
    for line in body_lines(ec_chain.leaf.key_pem):
        assert line not in invoked
        assert line not in json.dumps(answer)


def test_unexpected_exception_fails_clearly_with_every_secret_scrubbed(capsys, syslog_lines, monkeypatch, ec_chain):
    """The exception quotes the no_log token and a key pasted into certificate: both are secrets the module knows
    of, so Ansible masks them in msg and exception alike."""
    args = {
        "url": "https://vault.example.com",
        "token": "s.the-token-value",
        "auth_method": "token",
        "certificate": ec_chain.leaf.cert_pem + ec_chain.leaf.key_pem,
    }
    # As with ANSIBLE_DISPLAY_TRACEBACK=error: the answer then carries the traceback too.
    monkeypatch.setattr(_traceback, "_is_traceback_enabled", lambda event: event == _traceback.TracebackEvent.ERROR)

    def explode() -> dict:
        raise RuntimeError(f"library surprise with {ec_chain.leaf.key_pem} and s.the-token-value")

    with patch_module_args(args):
        vault = VaultModule(argument_spec=PUSH_LIKE_SPEC)
        answer = _answer(capsys, lambda: vault.run(explode))
    assert answer["failed"]
    assert answer["msg"].startswith("unexpected error (RuntimeError): library surprise with ")
    assert "Traceback" in answer["exception"] and "explode" in answer["exception"]
    text = json.dumps(answer)
    assert "s.the-token-value" not in text
    for line in body_lines(ec_chain.leaf.key_pem):
        assert line not in text


def test_library_error_carries_its_result_fields_into_the_failure(capsys, syslog_lines):
    def refuse() -> dict:
        raise VaultCertError("batch stopped", result={"failed_path": "certs/a", "not_written": ["certs/a"]})

    with patch_module_args({"url": "https://vault.example.com"}):
        vault = VaultModule(argument_spec=PUSH_LIKE_SPEC)
        answer = _answer(capsys, lambda: vault.run(refuse))
    assert answer["msg"] == "batch stopped"
    assert answer["failed_path"] == "certs/a" and answer["not_written"] == ["certs/a"]

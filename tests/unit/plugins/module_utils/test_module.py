# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The module base: private keys masked in every answer and log line, and the last-resort handler."""

from __future__ import annotations

import json
import syslog

import pytest
from ansible.module_utils._internal import _traceback
from ansible.module_utils.common.parameters import PASS_VARS
from ansible.module_utils.testing import patch_module_args

from ansible_collections.certautopilot.vault.plugins.module_utils._errors import VaultCertError
from ansible_collections.certautopilot.vault.plugins.module_utils._module import (
    MASK,
    NO_LOG_PLACEHOLDER,
    VaultModule,
    mask_private_keys,
    target_argument_spec,
)

PUSH_LIKE_SPEC = {**target_argument_spec(), "certificate": {"type": "str"}}


def _key_lines(key_pem: str) -> list[str]:
    return [line for line in key_pem.splitlines() if "-----" not in line and len(line) > 20]


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


def test_mask_replaces_a_whole_key_value_by_the_no_log_placeholder(ec_chain):
    key = ec_chain.leaf.key_pem
    assert mask_private_keys({"a": [key]}, {key}) == {"a": [NO_LOG_PLACEHOLDER]}


def test_mask_finds_keys_by_their_markers_inside_text_even_unlisted_or_truncated(ec_chain, rsa_chain):
    truncated = rsa_chain.leaf.key_pem[:200]
    text = f"before {ec_chain.leaf.key_pem} between {truncated}"
    masked = mask_private_keys(text)
    assert masked == f"before {MASK}\n between {MASK}"
    for line in _key_lines(ec_chain.leaf.key_pem) + _key_lines(truncated):
        assert line not in masked


def test_mask_leaves_certificates_and_other_values_alone(ec_chain):
    value = {"certificate": ec_chain.leaf.cert_pem, "n": 3, "flag": True}
    assert mask_private_keys(value) == value


def test_mask_gives_back_a_clean_batch_itself_and_copies_only_what_it_masks(ec_chain):
    """A batch's echo is megabytes: a clean one is not copied, and the caller's value is never changed."""
    clean = {"certificates": [{"certificate": ec_chain.leaf.cert_pem, "chain": ec_chain.intermediate.cert_pem}] * 3}
    assert mask_private_keys(clean) is clean

    dirty = {"certificates": [{"certificate": ec_chain.leaf.cert_pem}, {"chain": ec_chain.leaf.key_pem}]}
    masked = mask_private_keys(dirty)
    assert masked["certificates"][1] == {"chain": f"{MASK}\n"}
    assert masked["certificates"][0] is dirty["certificates"][0]
    assert dirty["certificates"][1] == {"chain": ec_chain.leaf.key_pem}


def test_mask_masks_a_key_in_every_place_an_equal_text_appears(ec_chain):
    """Each distinct text is scanned once; every copy of it is still masked."""
    pasted = f"cert {ec_chain.leaf.key_pem}"
    masked = mask_private_keys({"a": pasted, "b": [pasted, "".join(list(pasted))]})
    assert masked == {"a": f"cert {MASK}\n", "b": [f"cert {MASK}\n", f"cert {MASK}\n"]}


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
    for line in _key_lines(ec_chain.leaf.key_pem):
        assert line not in json.dumps(answer)


def test_key_pasted_into_a_plain_option_is_masked_in_the_syslog_line(capsys, syslog_lines, ec_chain):
    certificate = ec_chain.leaf.cert_pem + ec_chain.leaf.key_pem
    with patch_module_args({"url": "https://vault.example.com", "certificate": certificate}):
        vault = VaultModule(argument_spec=PUSH_LIKE_SPEC)
        answer = _answer(capsys, lambda: vault.run(lambda: {"changed": False, "echo": vault.params["certificate"]}))
    (invoked,) = [line for line in syslog_lines if line.startswith("Invoked with")]
    assert "certificate=" in invoked and MASK in invoked
    for line in _key_lines(ec_chain.leaf.key_pem):
        assert line not in invoked
        assert line not in json.dumps(answer)


def test_unexpected_exception_fails_clearly_with_every_secret_scrubbed(capsys, syslog_lines, monkeypatch, ec_chain):
    args = {"url": "https://vault.example.com", "token": "s.the-token-value", "auth_method": "token"}
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
    for line in _key_lines(ec_chain.leaf.key_pem):
        assert line not in text


def test_library_error_carries_its_result_fields_into_the_failure(capsys, syslog_lines):
    def refuse() -> dict:
        raise VaultCertError("batch stopped", result={"failed_path": "certs/a", "not_written": ["certs/a"]})

    with patch_module_args({"url": "https://vault.example.com"}):
        vault = VaultModule(argument_spec=PUSH_LIKE_SPEC)
        answer = _answer(capsys, lambda: vault.run(refuse))
    assert answer["msg"] == "batch stopped"
    assert answer["failed_path"] == "certs/a" and answer["not_written"] == ["certs/a"]


def test_mask_finds_a_key_pasted_as_bare_base64_der_in_log_arguments(rsa_chain):
    der = "".join(line for line in rsa_chain.leaf.key_pem.splitlines() if "-----" not in line)
    line = f"Invoked with mount={der} path=certs/a certificate={rsa_chain.leaf.cert_pem}"
    masked = mask_private_keys(line)
    assert der not in masked and f"mount={MASK} path=certs/a" in masked
    assert rsa_chain.leaf.cert_pem in masked


def test_mask_covers_dictionary_keys(ec_chain):
    masked = mask_private_keys({"fields": {ec_chain.leaf.key_pem: "certificate"}})
    assert masked == {"fields": {MASK + "\n": "certificate"}}


def test_mask_clears_other_secrets_from_dictionary_keys_too():
    masked = mask_private_keys({"diff": {"before": {"s.token-value": "<value>"}}}, secrets={"s.token-value"})
    assert masked == {"diff": {"before": {MASK: "<value>"}}}

# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Redaction by construction: the secrets a module learns of (PEM key blocks in certificate and chain text, a url's
password, a refused url) join Ansible's no_log_values, and Ansible's masking hides them in every answer and in the
log line, whatever way a multi-line key is written there. Nothing is guessed: text that only looks like a key or a
token is left as it is."""

from __future__ import annotations

import json
import syslog

import pytest
from ansible.module_utils.common.parameters import PASS_VARS
from ansible.module_utils.testing import patch_module_args
from refusals import body_lines

from ansible_collections.certautopilot.vault.plugins.module_utils._module import VaultModule, target_argument_spec
from ansible_collections.certautopilot.vault.plugins.module_utils._redaction import (
    MASK,
    SHORTEST_MASKED_LINE,
    _refused_values,
    key_block_secrets,
    mask_secrets,
    pasted_key_secrets,
    url_secrets,
)

BATCH_LIKE_SPEC = {
    **target_argument_spec(),
    "certificate": {"type": "str"},
    "fields": {"type": "dict"},
    "certificates": {
        "type": "list",
        "elements": "dict",
        "options": {
            "path": {"type": "str"},
            "certificate": {"type": "str"},
            "chain": {"type": "raw"},
            "private_key": {"type": "str", "no_log": True},
        },
    },
}
URL = "https://vault.example.com"


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


def _run(capsys, args: dict, action=lambda vault: {"changed": False}) -> dict:
    if "inject_invocation" in PASS_VARS:
        # ansible-core 2.21+ answers `invocation` only when asked (its INJECT_INVOCATION setting).
        args = {**args, "_ansible_inject_invocation": True}
    with patch_module_args(args):
        vault = VaultModule(argument_spec=BATCH_LIKE_SPEC)
        return _answer(capsys, lambda: vault.run(lambda: action(vault)))


# --- what is learnt --------------------------------------------------------------------------------


def test_a_key_block_is_learnt_whole_and_by_each_long_line(ec_chain):
    key = ec_chain.leaf.key_pem
    found = key_block_secrets(f"{ec_chain.leaf.cert_pem}{key}")

    assert key.strip() in found
    assert set(body_lines(key)) <= found
    assert all(len(secret) >= SHORTEST_MASKED_LINE for secret in found)
    # The certificate beside it is no secret.
    assert not any(line in found for line in body_lines(ec_chain.leaf.cert_pem))


def test_a_truncated_key_block_is_learnt_too(rsa_chain):
    truncated = rsa_chain.leaf.key_pem[:300]
    assert truncated.strip() in key_block_secrets(f"cert\n{truncated}")


def test_keys_are_learnt_in_nested_values_and_dict_names(ec_chain, rsa_chain):
    params = {"certificates": [{"chain": ["x", rsa_chain.leaf.key_pem]}], "fields": {ec_chain.leaf.key_pem: "y"}}
    found = pasted_key_secrets(params)
    assert rsa_chain.leaf.key_pem.strip() in found and ec_chain.leaf.key_pem.strip() in found


def test_nothing_is_guessed_from_shapes(ec_chain):
    """A key without its PEM lines, a token, a JWT: not known to be secrets, so not learnt (the messages never
    quote a value, and a credential in its own no_log option is Ansible's to mask)."""
    bare = "".join(body_lines(ec_chain.leaf.key_pem))
    token = "hvs.CAESIJ" + "Ab1" * 30
    assert pasted_key_secrets({"mount": bare, "path": f"certs/{token}"}) == set()


def test_a_url_password_is_learnt_and_a_refused_url_whole():
    # A url with a user:password is refused as a whole too: the module never sends a password in a url.
    with_password = "https://user:s3cret-pw@vault.example.com"
    assert url_secrets(with_password) == {"user:s3cret-pw", with_password}
    assert url_secrets("https://vault.example.com/?token=abc") == {"https://vault.example.com/?token=abc"}
    assert url_secrets(URL) == set()
    assert url_secrets(None) == set()


# --- Ansible's masking of what was learnt ----------------------------------------------------------


def test_a_key_in_certificate_text_is_masked_in_the_answer_and_the_log_line(capsys, syslog_lines, ec_chain):
    certificate = ec_chain.leaf.cert_pem + ec_chain.leaf.key_pem
    answer = _run(capsys, {"url": URL, "certificate": certificate}, lambda vault: {"echo": vault.params["certificate"]})

    (invoked,) = [line for line in syslog_lines if line.startswith("Invoked with")]
    assert answer["invocation"]["module_args"]["certificate"].startswith(ec_chain.leaf.cert_pem.strip())
    for line in body_lines(ec_chain.leaf.key_pem):
        assert line not in invoked
        assert line not in json.dumps(answer)


@pytest.mark.parametrize("line_break", ["\n", "\r\n"], ids=["lf", "crlf"])
def test_a_key_in_a_batch_items_chain_is_masked_in_the_log_lines_repr(capsys, syslog_lines, rsa_chain, line_break):
    """The log line shows a list option as its repr, where line breaks are escaped: the whole block no longer
    matches there, its lines (each a no_log value of its own) do."""
    key = rsa_chain.leaf.key_pem.replace("\n", line_break)
    items = [{"path": "certs/a", "certificate": rsa_chain.leaf.cert_pem, "chain": [key]}]

    answer = _run(capsys, {"url": URL, "certificates": items})

    (invoked,) = [line for line in syslog_lines if line.startswith("Invoked with")]
    assert "certificates=" in invoked and MASK in invoked
    for line in body_lines(rsa_chain.leaf.key_pem):
        assert line not in invoked
        assert line not in json.dumps(answer)


def test_a_batch_items_no_log_key_is_masked_in_the_log_lines_repr(capsys, syslog_lines, ec_chain):
    """A no_log suboption is one whole no_log value for Ansible; its escaped form is masked in the log line."""
    items = [{"path": "certs/a", "certificate": ec_chain.leaf.cert_pem, "private_key": ec_chain.leaf.key_pem}]

    _run(capsys, {"url": URL, "certificates": items})

    (invoked,) = [line for line in syslog_lines if line.startswith("Invoked with")]
    for line in body_lines(ec_chain.leaf.key_pem):
        assert line not in invoked


def test_a_key_given_as_a_dict_name_is_masked_in_the_invocation(capsys, syslog_lines, ec_chain):
    """Ansible masks values, not dict names: the module masks the names with the same no_log values."""
    answer = _run(capsys, {"url": URL, "fields": {ec_chain.leaf.key_pem: "certificate"}})

    assert list(answer["invocation"]["module_args"]["fields"]) == [MASK + "\n"]


def test_a_url_password_is_masked_in_the_invocation(capsys, syslog_lines):
    answer = _run(capsys, {"url": "https://user:s3cret-pw@vault.example.com"})

    assert "s3cret-pw" not in json.dumps(answer)
    assert "s3cret-pw" not in "\n".join(syslog_lines)


# --- the mask_secrets filter's engine --------------------------------------------------------------


def test_mask_secrets_masks_key_blocks_and_given_secrets_names_included(ec_chain):
    value = {"a-given-secret": [f"got: {ec_chain.leaf.key_pem}", "a-given-secret", "clean"]}

    masked = mask_secrets(value, ["a-given-secret"])

    assert list(masked) == [MASK]
    (quoted, whole, clean) = masked[MASK]
    assert quoted.startswith("got: ") and not any(line in quoted for line in body_lines(ec_chain.leaf.key_pem))
    assert (whole, clean) == ("VALUE_SPECIFIED_IN_NO_LOG_PARAMETER", "clean")


def test_mask_secrets_gives_clean_input_back_as_it_was():
    clean = ["the arg spec validation passed", {"n": 3}]
    assert mask_secrets(clean) is clean


def test_an_argument_error_masks_the_values_it_refused_and_no_valid_one(capsys):
    pasted = "pasted-credential-0123456789"
    args = {"url": URL, "auth_method": "token", "validate_certs": "yes", "timeout": pasted, "retries": "2"}

    with patch_module_args(args):
        answer = _answer(capsys, lambda: VaultModule(argument_spec=BATCH_LIKE_SPEC))

    assert "timeout" in answer["msg"] and pasted not in json.dumps(answer), answer
    # The valid values as validation left them (2.21 answers an argument error without invocation): none is masked.
    with patch_module_args({name: value for name, value in args.items() if name != "timeout"}):
        module = VaultModule(argument_spec=BATCH_LIKE_SPEC)
    assert _refused_values({**module.module.params, "timeout": pasted}, module.module.argument_spec) == {pasted}

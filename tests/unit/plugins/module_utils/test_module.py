# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The module base: private keys masked in every answer and log line, and the last-resort handler."""

from __future__ import annotations

import base64
import json
import syslog

import pki
import pytest
from ansible.module_utils._internal import _traceback
from ansible.module_utils.common.parameters import PASS_VARS
from ansible.module_utils.testing import patch_module_args
from refusals import body_lines

from ansible_collections.certautopilot.vault.plugins.module_utils._errors import VaultCertError
from ansible_collections.certautopilot.vault.plugins.module_utils._module import VaultModule, target_argument_spec
from ansible_collections.certautopilot.vault.plugins.module_utils._redaction import (
    MASK,
    NO_LOG_PLACEHOLDER,
    mask_private_keys,
)

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


def test_mask_replaces_a_whole_key_value_by_the_no_log_placeholder(ec_chain):
    key = ec_chain.leaf.key_pem
    assert mask_private_keys({"a": [key]}, {key}) == {"a": [NO_LOG_PLACEHOLDER]}


def test_mask_finds_keys_by_their_markers_inside_text_even_unlisted_or_truncated(ec_chain, rsa_chain):
    truncated = rsa_chain.leaf.key_pem[:200]
    text = f"before {ec_chain.leaf.key_pem} between {truncated}"
    masked = mask_private_keys(text)
    assert masked == f"before {MASK}\n between {MASK}"
    for line in body_lines(ec_chain.leaf.key_pem) + body_lines(truncated):
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


# --- a key pasted in any encoding, anywhere in a value -------------------------------------------

KEYS = {key_type: pki.new_key(key_type) for key_type in ("rsa", "ec", "ed25519")}


def _pem_text(name: str) -> str:
    return pki.key_pem(KEYS[name])


def _der(name: str) -> bytes:
    return pki.key_der(KEYS[name])


def _b64(name: str) -> str:
    return base64.b64encode(_der(name)).decode()


def _wrapped(text: str, sep: str = "\n") -> str:
    return sep.join(text[i : i + 64] for i in range(0, len(text), 64))


def _survives(secret: str, masked: object) -> bool:
    """True when any of three pieces of the key material (within one line of it) is still in the output."""
    lines = secret.replace("\\r", "\n").replace("\\n", "\n").replace("\r", "").split("\n")
    core = max(lines, key=len) if len(lines) > 1 else lines[0]
    pieces = [core[i : i + 16] for i in (len(core) // 5, len(core) // 2, len(core) * 3 // 5) if len(core) >= i + 16]
    text = repr(masked)
    return any(piece in text for piece in pieces)


ENCODINGS = {
    "pem": _pem_text,
    "pem crlf": lambda k: _pem_text(k).replace("\n", "\r\n"),
    "pem escaped": lambda k: _pem_text(k).replace("\n", "\\n"),
    "bare base64": _b64,
    "bare base64 wrapped": lambda k: _wrapped(_b64(k)),
    "bare base64 crlf": lambda k: _wrapped(_b64(k), "\r\n"),
    "bare base64 escaped newlines": lambda k: _wrapped(_b64(k), "\\n"),
    "url-safe base64": lambda k: base64.urlsafe_b64encode(_der(k)).decode().rstrip("="),
    "hex": lambda k: _der(k).hex(),
    "HEX": lambda k: _der(k).hex().upper(),
    "hex between words": lambda k: "key " + _der(k).hex() + " end",
}
PLACES = {
    "value": lambda s: {"certificate": s},
    "dict key": lambda s: {s: "x"},
    "same text twice (cache)": lambda s: {"certificate": s, "chain": [s, {"again": s}]},
    "first clean then key (cache)": lambda s: {"a": "same", "b": ["same", (s,)]},
    "tuple": lambda s: (s,),
}
# In a container's repr (the log line of a batch), "\r\n" is escaped as four characters and a literal "\\n" as
# three: these keys' lines stay separate runs there, none of them a key. The batch case is proven on its own below.
REPR_GAPS = ("bare base64 crlf", "bare base64 escaped newlines")


@pytest.mark.parametrize("place", list(PLACES))
@pytest.mark.parametrize("encoding", list(ENCODINGS))
@pytest.mark.parametrize("key", list(KEYS))
def test_a_key_pasted_anywhere_is_masked_in_the_answer_and_the_log_line(key, encoding, place):
    secret = ENCODINGS[encoding](key)
    value = PLACES[place](secret)

    masked = mask_private_keys(value)
    logged = mask_private_keys(str(value))  # _KeySafeModule.log masks str(value): a repr for containers

    assert not _survives(secret, masked), f"{encoding} in {place} survives the answer's masking"
    if encoding not in REPR_GAPS:
        assert not _survives(secret, logged), f"{encoding} in {place} survives the log line's masking"


@pytest.mark.parametrize("key", ["rsa", "ec"])
def test_a_crlf_wrapped_bare_base64_key_in_a_batch_is_masked_in_the_log_line(key):
    """_KeySafeModule.log masks str(value): for the batch option ``certificates`` that is the list's repr."""
    secret = _wrapped(_b64(key), "\r\n")  # a key file saved on Windows, BEGIN/END lines dropped
    certificates = [{"path": "certs/a", "certificate": secret}]

    assert not _survives(secret, mask_private_keys(certificates)), "the answer"
    assert not _survives(secret, mask_private_keys(str(certificates))), "the log line"


def test_a_bare_base64_key_glued_after_a_path_prefix_is_masked():
    """Pasted as a path ("certs/" + the key's base64): "/" is base64 too, so the run starts 6 characters early."""
    secret = "certs/" + _b64("rsa")

    assert not _survives(_b64("rsa"), mask_private_keys({"path": secret}))


def test_a_bare_base64_key_appended_to_a_certificate_is_masked():
    """A combined file whose key lost its BEGIN/END lines: the run starts at "CERTIFICATE-----" and misaligns."""
    # Not ec_chain: its certificate's text holds, by the alignment of its base64, a piece of the EC key algorithm
    # identifier that every P-256 key's first line holds too, which _survives would take for the key.
    chain = pki.make_chain("glued.example.com")
    body = _wrapped("".join(line for line in chain.leaf.key_pem.splitlines() if "-----" not in line))
    value = {"certificate": chain.leaf.cert_pem + body + "\n"}

    assert not _survives(body, mask_private_keys(value))


def test_a_hex_key_after_one_stray_hex_digit_is_masked():
    secret = "0" + _der("ec").hex()

    assert not _survives(_der("ec").hex(), mask_private_keys({"certificate": secret}))


TOKENS = {
    "hvs": "hvs.CAESIJ" + "Ab1" * 30,
    "legacy s.": "s.A1b2C3d4E5f6G7h8I9j0K1l2",
    "legacy b.": "b.A1b2C3d4E5f6G7h8I9j0K1l2",
    "jwt": "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4eHh4eHgifQ.c2lnbmF0dXJlc2lnbmF0dXJl",
}


@pytest.mark.parametrize("token", list(TOKENS))
def test_a_token_in_a_dict_key_and_a_repeated_value_is_masked(token):
    secret = TOKENS[token]
    value = {"path": f"certs/{secret}", secret: [secret, "clean"], "again": (f"Bearer {secret}",)}

    masked = mask_private_keys(value)

    assert secret not in repr(masked)
    assert secret not in mask_private_keys(str(value))


def test_a_no_log_secret_in_a_dict_key_is_masked_even_when_the_key_text_was_seen_clean_before():
    secret = "not-token-shaped-but-no-log-1234"
    value = {"first": secret + "-suffix", f"{secret}-suffix": "v"}

    masked = mask_private_keys(value, secrets=[secret])

    assert secret not in repr(list(masked)), masked


def test_an_untouched_container_is_returned_as_is_and_a_touched_one_is_a_copy():
    clean = {"a": ["x", ("y",)], "b": {"c": "d"}}
    dirty = {"a": ["x", _pem_text("ec")]}

    assert mask_private_keys(clean) is clean
    masked = mask_private_keys(dirty)
    assert masked is not dirty and dirty["a"][1] == _pem_text("ec"), "the caller's value must not be changed"

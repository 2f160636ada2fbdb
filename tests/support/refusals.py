"""What a refusal says, and what it must never show: for unit tests of the library's errors.

Plain Python and pytest.raises: the message of a VaultCertError must hold given fragments, and no message,
summary or repr may hold any line of a PEM body (a private key's above all).
"""

from __future__ import annotations

import typing as t

import pytest

from ansible_collections.certautopilot.vault.plugins.module_utils._errors import VaultCertError

# Shorter lines (a PEM's last one) could match by chance inside other text.
_MIN_LINE = 16


def expect_error(fragments: tuple[str, ...], call: t.Callable[..., t.Any], *args: t.Any, **kwargs: t.Any) -> str:
    """Call and return the VaultCertError message, which must hold every fragment."""
    with pytest.raises(VaultCertError) as caught:
        call(*args, **kwargs)
    message = str(caught.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


def body_lines(pem: str) -> list[str]:
    """The base64 lines of a PEM text: what must never show up in a message or a summary."""
    return [
        line
        for line in pem.splitlines()
        if line.strip() and not line.startswith("-----") and ":" not in line and len(line) >= _MIN_LINE
    ]


def assert_holds_no_pem(text: str, *pems: str) -> None:
    assert "-----BEGIN" not in text
    for pem in pems:
        for line in body_lines(pem):
            assert line not in text

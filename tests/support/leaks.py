"""Scanning what a run printed and returned for secrets that must never appear.

A PEM private key is looked for by its base64 body lines, not only its
BEGIN line, so a key re-wrapped or embedded in JSON is still found. A line
that holds only public key bytes is left out: a PKCS#8 EC key ends with its
public point, which the certificate holds too, so that line may show up
wherever the certificate does without anything secret being shown.
"""

from __future__ import annotations

import base64
import binascii
import json
import typing as t

from cryptography.hazmat.primitives import serialization

# Lines shorter than this could match by chance inside other base64.
_MIN_LINE = 24


def secret_needles(*secrets: str | None) -> list[str]:
    """The strings to search for: each secret whole, and each body line of a PEM key."""
    needles: list[str] = []
    for secret in secrets:
        if not secret:
            continue
        if "-----BEGIN" in secret:
            public = _public_key_der(secret)
            needles += [
                line.strip()
                for line in secret.splitlines()
                if len(line.strip()) >= _MIN_LINE and "-----" not in line and not _holds_only(line.strip(), public)
            ]
        else:
            needles.append(secret)
    return needles


def _public_key_der(pem: str) -> bytes:
    """The DER public key of a PEM private key (empty when it does not load)."""
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError):
        return b""
    return key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _holds_only(line: str, public: bytes) -> bool:
    """True when a body line decodes to bytes found in ``public`` (PEM lines start on whole bytes)."""
    try:
        chunk = base64.b64decode(line, validate=True)
    except (binascii.Error, ValueError):
        return False
    return bool(public) and chunk in public


def find_leaks(texts: t.Iterable[str | t.Any], *secrets: str | None) -> list[str]:
    """Needles found in any of the texts (dicts and lists are scanned as their JSON)."""
    haystack = "\n".join(text if isinstance(text, str) else json.dumps(text) for text in texts)
    # JSON escapes newlines; unescape so multi-line secrets are found in results too.
    haystack += "\n" + haystack.replace("\\n", "\n")
    return [needle[:12] + "..." for needle in secret_needles(*secrets) if needle in haystack]


def assert_no_leak(texts: t.Iterable[str | t.Any], *secrets: str | None) -> None:
    leaks = find_leaks(texts, *secrets)
    assert not leaks, f"secret material found in output: {leaks}"

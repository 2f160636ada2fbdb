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
import urllib.parse

from cryptography.hazmat.primitives import serialization

# Lines shorter than this could match by chance inside other base64.
_MIN_LINE = 24
# Options (at any depth of a task's arguments or a play's variables) whose values are secrets.
SECRET_OPTIONS = frozenset(
    {
        "private_key",
        "secret_id",
        "jwt",
        "token",
        "client_key",
        "pkcs12_password",
        "key_bundle",
        "cert_distribution_secret_id",
        "cert_distribution_jwt",
        "cert_distribution_token",
    }
)
# What the harness scans for is a given secret: a value this short is a test's deliberate stand-in ("bogus"),
# found in ordinary words by chance.
_MIN_GIVEN_SECRET = 8
# The dev server's root token: tests use it, the modules are never given it, and the word is too common to scan for.
DEV_ROOT_TOKEN = "root"


def secrets_in(value: t.Any) -> list[str]:
    """Every secret a task's arguments (or a play, or its variables) hold: secret options' values, url passwords.

    A value holding template syntax is not the secret itself (Ansible renders it); a test names those secrets.
    """
    found: list[str] = []
    if isinstance(value, t.Mapping):
        for key, item in value.items():
            if key in SECRET_OPTIONS and isinstance(item, str):
                found.append(item)
            elif key in ("url", "address", "cert_distribution_url") and isinstance(item, str):
                found.append(urllib.parse.urlsplit(item).password or "")
            else:
                found += secrets_in(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            found += secrets_in(item)
    return [secret for secret in found if len(secret) >= _MIN_GIVEN_SECRET and "{{" not in secret]


def tokens_in(audit_entries: t.Iterable[t.Mapping[str, t.Any]]) -> list[str]:
    """The client tokens of raw audit entries (a run's logins), the dev root token left out."""
    tokens = {entry.get("request", {}).get("client_token") for entry in audit_entries}
    return sorted(token for token in tokens if token and token != DEV_ROOT_TOKEN)


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

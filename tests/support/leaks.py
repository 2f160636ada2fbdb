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
import functools
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
# Options whose values name the secret's fields (fields: {private_key: tls.key}): never secrets, and a field
# called private_key is shown wherever the option is.
FIELD_NAME_OPTIONS = frozenset({"fields", "cert_distribution_fields"})
# What the harness scans for is a given secret: a value this short is a test's deliberate stand-in ("bogus"),
# found in ordinary words by chance.
_MIN_GIVEN_SECRET = 8
# The dev server's root token: tests use it, the modules are never given it, and the word is too common to scan for.
DEV_ROOT_TOKEN = "root"


def secrets_in(value: t.Any) -> list[str]:
    """Every secret a task's arguments (or a play, or its variables) hold: secret options' values, url passwords.

    A value holding template syntax is not the secret itself (Ansible renders it); a test names those secrets,
    as it does one it put where a field name goes.
    """
    found: list[str] = []
    if isinstance(value, t.Mapping):
        for key, item in value.items():
            if key in FIELD_NAME_OPTIONS:
                continue
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
    """The strings to search for: each secret whole, or, when it holds PEM, its lines but the public ones.

    Public lines, beside a secret's own: those of a PEM block that is no private key (a certificate pasted
    before a key or a secret_id), and the lines of a key that hold only its public point. A secret that is
    nothing but a certificate is scanned for whole: a test declared it.
    """
    needles: list[str] = []
    for secret in secrets:
        if not secret:
            continue
        if "-----BEGIN" not in secret:
            needles.append(secret)
            continue
        parts = _pem_parts(secret)
        own = [line for block, lines in parts if _is_secret_part(block) for line in _secret_lines(block, lines)]
        needles += own or [line for _block, lines in parts for line in _body_lines(lines)]
    return needles


def _is_secret_part(block: str | None) -> bool:
    return block is None or "PRIVATE KEY" in block


def _secret_lines(block: str | None, lines: list[str]) -> list[str]:
    if block is None:
        return [line for line in lines if len(line) >= _MIN_LINE]
    public = _public_key_der("\n".join(lines))
    return [line for line in _body_lines(lines) if not _holds_only(line, public)]


def _body_lines(lines: list[str]) -> list[str]:
    return [line for line in lines if len(line) >= _MIN_LINE and "-----" not in line]


def _pem_parts(text: str) -> list[tuple[str | None, list[str]]]:
    """The text's stripped lines by part: (a PEM block's BEGIN line, its lines) or (None, lines outside blocks)."""
    parts: list[tuple[str | None, list[str]]] = [(None, [])]
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("-----BEGIN"):
            parts.append((line, [line]))
        elif line.startswith("-----END") and parts[-1][0] is not None:
            parts[-1][1].append(line)
            parts.append((None, []))
        else:
            parts[-1][1].append(line)
    return parts


# Loading an RSA key takes tens of milliseconds, and a run is scanned for the same keys as the runs before it.
@functools.lru_cache(maxsize=256)
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

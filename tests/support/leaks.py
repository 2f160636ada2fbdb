"""Scanning what a run printed and returned for secrets that must never appear.

A PEM private key is looked for by its base64 body lines, not only its
BEGIN line, so a key re-wrapped or embedded in JSON is still found.
"""

from __future__ import annotations

import json
import typing as t

# Lines shorter than this could match by chance inside other base64.
_MIN_LINE = 24


def secret_needles(*secrets: str | None) -> list[str]:
    """The strings to search for: each secret whole, and each body line of a PEM key."""
    needles: list[str] = []
    for secret in secrets:
        if not secret:
            continue
        if "-----BEGIN" in secret:
            needles += [
                line.strip() for line in secret.splitlines() if len(line.strip()) >= _MIN_LINE and "-----" not in line
            ]
        else:
            needles.append(secret)
    return needles


def find_leaks(texts: t.Iterable[str | t.Any], *secrets: str | None) -> list[str]:
    """Needles found in any of the texts (dicts and lists are scanned as their JSON)."""
    haystack = "\n".join(text if isinstance(text, str) else json.dumps(text) for text in texts)
    # JSON escapes newlines; unescape so multi-line secrets are found in results too.
    haystack += "\n" + haystack.replace("\\n", "\n")
    return [needle[:12] + "..." for needle in secret_needles(*secrets) if needle in haystack]


def assert_no_leak(texts: t.Iterable[str | t.Any], *secrets: str | None) -> None:
    leaks = find_leaks(texts, *secrets)
    assert not leaks, f"secret material found in output: {leaks}"

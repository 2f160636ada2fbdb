# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Finding PEM blocks and private keys in text, in linear time. Private to the collection.

Needs no parsing of what it finds, except to tell a bare base64 DER key from other base64.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

try:
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
except ImportError:  # pragma: no cover - _certs reports the missing library
    serialization = None

# RFC 7468 markers. Labels are bounded so that a megabyte of junk is scanned in linear time.
PEM_MARKER = re.compile(r"-----(BEGIN|END) ([A-Za-z0-9 ]{1,64})-----")
CERTIFICATE_LABEL = "CERTIFICATE"
PRIVATE_KEY_LABEL = "PRIVATE KEY"


@dataclass(frozen=True)
class PemBlock:
    """Where one PEM block sits in a text. Incomplete blocks (truncated, orphan END) are kept."""

    label: str
    start: int
    end: int
    complete: bool
    private: bool


def normalise_pem(text: str) -> str:
    """Return PEM text with LF line endings, no surrounding whitespace and exactly one trailing newline.

    Empty or whitespace-only text becomes the empty string.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n").strip()
    return f"{text}\n" if text else ""


def is_private_key_label(*labels: str) -> bool:
    return any(PRIVATE_KEY_LABEL in label.upper() for label in labels)


def scan(text: str) -> list[PemBlock]:
    """Find every PEM block, pairing BEGIN and END markers in one linear pass.

    A BEGIN without its END runs to the next BEGIN or to the end of the text; an END without a
    BEGIN runs back to the previous block. Both are returned as incomplete so that callers can
    refuse them and summaries can still hide them.
    """
    blocks: list[PemBlock] = []
    open_label: str | None = None
    open_start = 0
    for marker in PEM_MARKER.finditer(text):
        kind, label = marker.group(1), marker.group(2).strip()
        if kind == "BEGIN":
            if open_label is not None:
                private = is_private_key_label(open_label)
                blocks.append(PemBlock(open_label, open_start, marker.start(), complete=False, private=private))
            open_label, open_start = label, marker.start()
        elif open_label is not None:
            complete = open_label == label
            private = is_private_key_label(open_label, label)
            blocks.append(PemBlock(open_label, open_start, marker.end(), complete=complete, private=private))
            open_label = None
        else:
            start = blocks[-1].end if blocks else 0
            private = is_private_key_label(label)
            blocks.append(PemBlock(label, start, marker.end(), complete=False, private=private))
    if open_label is not None:
        private = is_private_key_label(open_label)
        blocks.append(PemBlock(open_label, open_start, len(text), complete=False, private=private))
    return blocks


def private_key_blocks(text: str) -> list[str]:
    """The text of every PEM private key block in ``text``, truncated ones included."""
    if not isinstance(text, str) or "-----" not in text:
        return []
    return [text[block.start : block.end] for block in scan(text) if block.private]


# A DER private key is over a hundred bytes: shorter base64 runs are not one. Line breaks may
# wrap it; spaces and "=" (but for the padding) end a run, as between key=value log arguments.
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/][A-Za-z0-9+/\r\n]{98,}[A-Za-z0-9+/]={0,2}")


def headerless_private_keys(text: str) -> list[str]:
    """Base64 runs in ``text`` that decode to a DER private key: a key pasted without its PEM lines."""
    if not isinstance(text, str) or len(text) < 100:
        return []
    if serialization is None:
        return []
    found = []
    for run in _BASE64_RUN.findall(text):
        try:
            serialization.load_der_private_key(base64.b64decode("".join(run.split())), password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm, binascii.Error):
            continue
        found.append(run)
    return found

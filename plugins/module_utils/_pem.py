# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Finding PEM blocks and private keys in text, in linear time, by their RFC 7468 markers. Private to the collection.

Parses nothing it finds: a key is known by its label, so a key block is found however broken its body is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

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

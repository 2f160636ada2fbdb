# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Finding PEM blocks and private keys in text, in linear time. Private to the collection.

Needs no parsing of what it finds, except to tell a bare base64 DER key from other base64.
"""

from __future__ import annotations

import binascii
import re
import typing as t
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


# A DER private key is at least 48 bytes (Ed25519, 64 base64 characters): shorter runs are not one. Base64 (standard or
# URL-safe) may be wrapped by line breaks, real or escaped as \n or \r\n by a repr(); spaces and "="
# (but for the padding) end a run, as between key=value log arguments. Hex is looked for too.
_SHORTEST_KEY = 48
# Runs of the base64 alphabet and line breaks (escaped ones as one token each: no alternation per character,
# which made the search several times slower); runs shorter than a key's base64 are dropped after.
_BASE64_RUN = re.compile(r"(?:[A-Za-z0-9+/_\r\n-]+|\\[rn])+={0,2}")
_SHORTEST_KEY_BASE64 = 64
# Greedy and found left to right, a match is always a whole run: no look-around needed.
_HEX_RUN = re.compile(r"[0-9A-Fa-f]{96,}")
# Every private key format (PKCS#8, PKCS#1, SEC1, DSA) is a DER SEQUENCE (0x30) that opens with an INTEGER
# (0x02). A key glued to other text (a path prefix, the end of a certificate's PEM lines, a stray digit) starts
# at such an opening inside a longer run, in one of the run's four base64 (or two hex) alignments.
_KEY_OPENING = re.compile(
    rb"(?=\x30(?:[\x00-\x7f]|\x81[\x00-\xff]|\x82[\x00-\xff]{2}|\x83[\x00-\xff]{3})\x02)", re.DOTALL
)
_SEQUENCE, _INTEGER = 0x30, 0x02
# Vault/OpenBao tokens (hvs./hvb./hvr., legacy s./b.) and JWTs: recognisable wherever they are pasted.
_TOKEN = re.compile(
    r"(?<![A-Za-z0-9_.-])(?:hv[sbr]\.[A-Za-z0-9_-]{20,}|[sb]\.[A-Za-z0-9]{24}(?![A-Za-z0-9])"
    r"|eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*)"
)


def _der_private_key(data: bytes) -> bool:
    try:
        # Whether the bytes are a key, not whether it is a sound one: the RSA consistency check costs about 50 ms
        # per key and decides nothing here (cryptography 39+ can skip it).
        serialization.load_der_private_key(data, password=None, unsafe_skip_rsa_key_validation=True)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return True


def _key_length(header: bytes) -> int | None:
    """The whole length of the DER private key these first bytes would open, or None when they open none."""
    if len(header) < 3 or header[0] != _SEQUENCE:
        return None
    if header[1] < 0x80:
        size, length = 2, header[1]
    else:
        count = header[1] & 0x7F
        if not 1 <= count <= 3 or len(header) < 3 + count:
            return None
        size, length = 2 + count, int.from_bytes(header[2 : 2 + count], "big")
    if header[size] != _INTEGER or size + length < _SHORTEST_KEY:
        return None
    return size + length


def _base64_decoded(text: str) -> bytes | None:
    # A last character that completes no byte (one past a multiple of 4) is dropped; padding is added.
    text = text[:-1] if len(text) % 4 == 1 else text + "=" * (-len(text) % 4)
    try:
        return binascii.a2b_base64(text)
    except (binascii.Error, ValueError):
        return None


def _holds_key(data: bytes) -> bool:
    """Whether a DER private key starts anywhere in ``data``."""
    for opening in _KEY_OPENING.finditer(data):
        start = opening.start()
        length = _key_length(data[start : start + 6])
        if length is not None and len(data) - start >= length and _der_private_key(data[start : start + length]):
            return True
    return False


def _base64_holds_key(clean: str) -> bool:
    """Whether a DER private key starts anywhere in this base64 text (one line, standard alphabet)."""
    return any(_holds_key(_base64_decoded(clean[shift:]) or b"") for shift in range(4))


def _hex_holds_key(run: str) -> bool:
    """Whether a DER private key starts anywhere in this hex text."""
    return any(_holds_key(bytes.fromhex(run[shift:][: (len(run) - shift) // 2 * 2])) for shift in range(2))


def _base64_clean(run: str) -> str:
    """The run as one line of standard base64: line breaks (real or escaped) out, URL-safe letters mapped."""
    text = "".join(run.replace("\\n", "").replace("\\r", "").split())
    return text.replace("-", "+").replace("_", "/")


def headerless_private_keys(text: str) -> list[str]:
    """Runs in ``text`` that hold a DER private key: a key pasted without its PEM lines (base64 or hex).

    The whole run is returned, whatever is glued to the key on either side.
    """
    if serialization is None or not isinstance(text, str) or len(text) < 60:
        return []
    runs = (run for run in _BASE64_RUN.findall(text) if len(run) >= _SHORTEST_KEY_BASE64)
    cleaned = ((run, _base64_clean(run)) for run in runs)
    found = [run for run, clean in cleaned if len(clean) >= _SHORTEST_KEY_BASE64 and _base64_holds_key(clean)]
    return found + [run for run in _HEX_RUN.findall(text) if _hex_holds_key(run)]


def token_like_secrets(text: str) -> list[str]:
    """Vault/OpenBao tokens and JWTs in ``text``, found by their shape."""
    if not isinstance(text, str) or len(text) < 26:
        return []
    return _TOKEN.findall(text)


# A value quoted in a message is one line of at most this many characters.
SHOWN_LENGTH = 256
# A run this long in the base64 alphabet that mixes upper case, lower case and digits looks like key or
# token material, even when it does not decode to a key (cut short, or glued to a path); a UUID may be an
# AppRole secret_id.
_ENCODED_RUN = re.compile(r"[A-Za-z0-9+/=_-]{40,}")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def _looks_encoded(text: str) -> bool:
    return bool(_UUID.search(text)) or any(
        re.search("[A-Z]", run) and re.search("[a-z]", run) and re.search("[0-9]", run)
        for run in _ENCODED_RUN.findall(text)
    )


NOT_SHOWN = "(value not shown: it may hold a secret)"


def shown(value: t.Any, *, secrets: t.Collection[str] = ()) -> str:
    """``value`` as a message may quote it (a path, a name), or a placeholder when it could be a secret.

    Used where a user's value is echoed before any masking applies (on the controller): a key or
    token pasted into a file option or a path must not come back in the error that refuses it.
    """
    text = str(value)
    if (
        "\n" in text
        or len(text) > SHOWN_LENGTH
        or PRIVATE_KEY_LABEL in text
        or any(secret and secret in text for secret in secrets)
        or token_like_secrets(text)
        or _looks_encoded(text)
        or headerless_private_keys(text)
    ):
        return NOT_SHOWN
    return text

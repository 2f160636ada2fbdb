# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""X.509 and PEM: parsing, bundle validation, summaries of certificates and PEM blocks. Private to the collection.

What a certificate becomes in a secret (fields, payloads, paths, reading back) is _layouts.py's job.
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache

from ansible_collections.certautopilot.vault.plugins.module_utils import _pem
from ansible_collections.certautopilot.vault.plugins.module_utils._errors import VaultCertError

# verify_directly_issued_by() arrived in cryptography 40; older releases (still shipped by some
# distributions) would fail half-way through a run instead of up front.
_CRYPTOGRAPHY_MIN_MAJOR = 40
CRYPTOGRAPHY_REQUIREMENT = f"cryptography >= {_CRYPTOGRAPHY_MIN_MAJOR}.0"

try:
    import cryptography
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID
except ImportError:
    import traceback

    HAS_CRYPTOGRAPHY = False
    CRYPTOGRAPHY_IMPORT_ERROR: str | None = traceback.format_exc()
else:
    if int(cryptography.__version__.partition(".")[0]) >= _CRYPTOGRAPHY_MIN_MAJOR:
        HAS_CRYPTOGRAPHY = True
        CRYPTOGRAPHY_IMPORT_ERROR = None
    else:
        HAS_CRYPTOGRAPHY = False
        CRYPTOGRAPHY_IMPORT_ERROR = (
            f"cryptography {cryptography.__version__} is installed; {CRYPTOGRAPHY_REQUIREMENT} is needed"
        )

if t.TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes

# `openssl ecparam -genkey` writes this block in front of the key; it carries no secret.
_IGNORED_KEY_FILE_LABELS = frozenset({"EC PARAMETERS"})


def _as_text(value: object, *, what: str, expected: str) -> str:
    """Accept str, or bytes that are UTF-8; anything else is not PEM."""
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise VaultCertError(f"{what} is not a valid PEM {expected} (not UTF-8 text)") from None
    if isinstance(value, str):
        return value
    raise VaultCertError(f"{what} is not a valid PEM {expected} (expected text, got {type(value).__name__})")


def _block_bytes(text: str, block: _pem.PemBlock) -> bytes | None:
    try:
        return text[block.start : block.end].encode("ascii")
    except UnicodeEncodeError:
        return None


def _load_certificate_block(text: str, block: _pem.PemBlock) -> x509.Certificate | None:
    if not block.complete or block.label != _pem.CERTIFICATE_LABEL:
        return None
    data = _block_bytes(text, block)
    if data is None:
        return None
    try:
        return x509.load_pem_x509_certificate(data)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return None


def _file_path_hint(text: str, option: str) -> str:
    """A hint at ``<option>_file`` when text without PEM reads like a file name: one line ending in a PEM suffix
    or holding a slash. The text itself is never shown: it may be anything."""
    candidate = text.strip()
    if "\n" in candidate or not candidate or "-----" in candidate:
        return ""
    if "/" in candidate or candidate.lower().endswith(_FILE_SUFFIXES):
        return f" (it reads like a file path: give a file as {option}_file)"
    return ""


_FILE_SUFFIXES = (".pem", ".crt", ".cer", ".key", ".cert")


def _truncation_hint(block: _pem.PemBlock) -> str:
    return "" if block.complete else " (its BEGIN and END lines do not pair up: truncated?)"


def _parse_certificates(
    text: str, *, describe: t.Callable[[int, int], str], option: str = "certificate"
) -> list[x509.Certificate]:
    """Parse every block of ``text`` as a certificate; ``describe(position, count)`` names a block in errors."""
    blocks = _pem.scan(text)
    if not blocks:
        raise VaultCertError(f"{describe(1, 1)} is not a valid PEM certificate{_file_path_hint(text, option)}")
    certificates = []
    for position, block in enumerate(blocks, 1):
        name = describe(position, len(blocks))
        if block.complete and block.label != _pem.CERTIFICATE_LABEL:
            raise VaultCertError(f"{name} is a PEM {block.label} block, not a PEM certificate")
        certificate = _load_certificate_block(text, block)
        if certificate is None:
            raise VaultCertError(f"{name} is not a valid PEM certificate{_truncation_hint(block)}")
        certificates.append(certificate)
    return certificates


def parse_certificate(pem: str, *, what: str = "certificate") -> x509.Certificate:
    """Parse text that holds exactly one PEM certificate; ``what`` names the input in errors."""
    text = _as_text(pem, what=what, expected="certificate")
    blocks = _pem.scan(text)
    if len(blocks) > 1:
        labels = {block.label for block in blocks}
        if labels == {_pem.CERTIFICATE_LABEL}:
            raise VaultCertError(f"{what} must hold exactly one PEM certificate; put intermediates in chain")
        raise VaultCertError(f"{what} must hold exactly one PEM certificate and nothing else")
    return _parse_certificates(text, describe=lambda position, count: what)[0]


def parse_leaf_certificate(pem: t.Any, *, what: str = "certificate") -> x509.Certificate:
    """The first PEM certificate of text that may hold more: a fullchain (leaf first), or a combined PEM file.

    The blocks after it are not parsed, a private key among them included; ``what`` names the input in errors.
    """
    text = _as_text(pem, what=what, expected="certificate")
    blocks = _pem.scan(text)
    for block in blocks:
        if block.label == _pem.CERTIFICATE_LABEL:
            certificate = _load_certificate_block(text, block)
            if certificate is None:
                raise VaultCertError(f"{what} is not a valid PEM certificate{_truncation_hint(block)}")
            return certificate
    # Labels are at most 64 letters, digits and spaces (_pem.PEM_MARKER): safe to name.
    found = f" (it holds PEM {', '.join(sorted({block.label for block in blocks}))})" if blocks else ""
    raise VaultCertError(f"{what} holds no PEM certificate{found or _file_path_hint(text, 'certificate')}")


def parse_chain(chain: str | list[str] | None) -> list[x509.Certificate]:
    """Parse intermediates given as one bundle text or as a list of PEM texts, keeping their order.

    Each list item may itself hold several certificates. None, empty text and an empty list
    mean no chain.
    """
    if chain is None:
        return []
    if isinstance(chain, (str, bytes)):
        text = _as_text(chain, what="chain", expected="certificate")
        if not text.strip():
            return []
        return _parse_certificates(text, describe=lambda position, count: f"chain item {position}", option="chain")
    if not isinstance(chain, (list, tuple)):
        raise VaultCertError(f"chain must be PEM text or a list of PEM texts, not {type(chain).__name__}")
    certificates: list[x509.Certificate] = []
    for index, item in enumerate(chain, 1):
        text = _as_text(item, what=f"chain item {index}", expected="certificate")

        def describe(position: int, count: int, index: int = index) -> str:
            return f"chain item {index}" if count == 1 else f"chain item {index} (certificate {position} in it)"

        certificates.extend(_parse_certificates(text, describe=describe, option="chain"))
    return certificates


def _load_private_key(pem: str) -> tuple[PrivateKeyTypes, str]:
    """Return the key and its PEM block, normalised, without any text around it."""
    invalid = "private key is not a valid PEM private key"
    text = _as_text(pem, what="private key", expected="private key")
    blocks = [block for block in _pem.scan(text) if block.label not in _IGNORED_KEY_FILE_LABELS]
    if not blocks:
        raise VaultCertError(invalid + _file_path_hint(text, "private_key"))
    if len(blocks) > 1:
        raise VaultCertError("private key must hold exactly one PEM private key and nothing else")
    block = blocks[0]
    if block.complete and not block.private:
        raise VaultCertError(f"private key is a PEM {block.label} block, not a PEM private key")
    if not block.complete:
        raise VaultCertError(f"{invalid}{_truncation_hint(block)}")
    data = _block_bytes(text, block)
    if data is None:
        raise VaultCertError(invalid)
    if block.label.startswith("ENCRYPTED"):
        raise _encrypted_key_error()
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        # cryptography's way of saying "this key needs a password".
        raise _encrypted_key_error() from None
    except (ValueError, UnsupportedAlgorithm):
        raise VaultCertError(invalid) from None
    return key, _pem.normalise_pem(data.decode("ascii"))


def _encrypted_key_error() -> VaultCertError:
    return VaultCertError(
        "private key is encrypted; only unencrypted PEM private keys are supported (there is no passphrase "
        "option): decrypt it first, for example with 'openssl pkey'"
    )


def parse_private_key(pem: str) -> PrivateKeyTypes:
    """Parse an unencrypted PEM private key (PKCS#8 or the traditional RSA/EC forms)."""
    return _load_private_key(pem)[0]


@dataclass(frozen=True)
class CertificateBundle:
    """A parsed leaf certificate with its optional private key and its chain (leaf-first)."""

    certificate: x509.Certificate
    # Kept out of repr() so that a bundle that ends up in a log or traceback shows no key.
    private_key: PrivateKeyTypes | None = field(default=None, repr=False)
    private_key_pem: str | None = field(default=None, repr=False)
    chain: tuple[x509.Certificate, ...] = ()

    @property
    def certificate_pem(self) -> str:
        return _certificate_pem(self.certificate)

    @property
    def chain_pem(self) -> str:
        return _chain_pem(self.chain)

    @property
    def fullchain_pem(self) -> str:
        return self.certificate_pem + self.chain_pem


def _certificate_pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")


# A batch usually gives every certificate the same chain: it is parsed and written out once per run,
# and its items share the one text.
_CHAINS_KEPT = 16


@lru_cache(maxsize=_CHAINS_KEPT)
def _chain_pem(chain: tuple[x509.Certificate, ...]) -> str:
    return "".join(_certificate_pem(certificate) for certificate in chain)


def load_bundle(
    *,
    certificate: str,
    private_key: str | None = None,
    chain: str | list[str] | None = None,
) -> CertificateBundle:
    """Parse certificate, private key and chain once. Empty private key text counts as no key."""
    leaf = parse_certificate(certificate)
    if isinstance(private_key, str) and not private_key.strip():
        private_key = None
    key = key_pem = None
    if private_key is not None:
        key, key_pem = _load_private_key(private_key)
    return CertificateBundle(certificate=leaf, private_key=key, private_key_pem=key_pem, chain=_shared_chain(chain))


def _shared_chain(chain: str | list[str] | None) -> tuple[x509.Certificate, ...]:
    """parse_chain(), once per distinct chain of a run."""
    key = tuple(chain) if isinstance(chain, list) else chain
    try:
        hash(key)
    except TypeError:  # not text: parse_chain names what is wrong with it
        return tuple(parse_chain(chain))
    return _parsed_chain(key)


@lru_cache(maxsize=_CHAINS_KEPT)
def _parsed_chain(chain: str | tuple[str, ...] | None) -> tuple[x509.Certificate, ...]:
    return tuple(parse_chain(chain))


def _public_key_der(key: PublicKeyTypes) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _certificate_public_key_der(certificate: x509.Certificate, *, name: str) -> bytes:
    try:
        return _public_key_der(certificate.public_key())
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise VaultCertError(f"{name} uses a public key algorithm that cannot be read") from None


def _subject(certificate: x509.Certificate) -> str:
    return certificate.subject.rfc4514_string()


def _format_time(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _not_before(certificate: x509.Certificate) -> datetime:
    if hasattr(certificate, "not_valid_before_utc"):
        return certificate.not_valid_before_utc
    return certificate.not_valid_before.replace(tzinfo=timezone.utc)


def _not_after(certificate: x509.Certificate) -> datetime:
    if hasattr(certificate, "not_valid_after_utc"):
        return certificate.not_valid_after_utc
    return certificate.not_valid_after.replace(tzinfo=timezone.utc)


def validity_period(certificate: x509.Certificate) -> tuple[datetime, datetime]:
    """The certificate's not_before and not_after, as timezone-aware UTC datetimes."""
    return _not_before(certificate), _not_after(certificate)


def _sha256_hex(data: bytes) -> str:
    digest = hashes.Hash(hashes.SHA256())
    digest.update(data)
    return digest.finalize().hex()


def _fingerprint(certificate: x509.Certificate) -> str:
    return certificate.fingerprint(hashes.SHA256()).hex()


def check_key_matches(bundle: CertificateBundle) -> None:
    if bundle.private_key is None:
        return
    certificate_key = _certificate_public_key_der(bundle.certificate, name="certificate")
    if _public_key_der(bundle.private_key.public_key()) != certificate_key:
        raise VaultCertError("private key does not match the certificate")


def _check_chain(leaf: x509.Certificate, chain: list[x509.Certificate]) -> None:
    seen = {_fingerprint(leaf): "the certificate itself"}
    for position, certificate in enumerate(chain, 1):
        fingerprint = _fingerprint(certificate)
        if fingerprint in seen:
            raise VaultCertError(
                f"chain item {position} '{_subject(certificate)}' is a duplicate of {seen[fingerprint]}; "
                "the chain holds each intermediate once, and not the certificate itself"
            )
        seen[fingerprint] = f"chain item {position}"

    names = ["certificate"] + [f"chain item {position}" for position in range(1, len(chain) + 1)]
    certificates = [leaf, *chain]
    for index in range(len(chain)):
        child, parent = certificates[index], certificates[index + 1]

        # Only written when it fails: naming both subjects costs more than the check itself.
        def broken(
            why: str, child: x509.Certificate = child, parent: x509.Certificate = parent, index: int = index
        ) -> VaultCertError:
            return VaultCertError(
                f"chain is broken: {names[index]} '{_subject(child)}' is not issued by "
                f"{names[index + 1]} '{_subject(parent)}'{why}"
            )

        if child.issuer != parent.subject:
            later = [names[k] for k in range(index + 2, len(certificates)) if certificates[k].subject == child.issuer]
            raise broken(f" but by {later[0]}: list the chain leaf-first" if later else "")
        try:
            child.verify_directly_issued_by(parent)
        except InvalidSignature:
            raise broken(": the names match but the signature does not verify") from None
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise broken(": its signature algorithm is not supported") from None


def _check_validity(certificate: x509.Certificate, now: datetime | None) -> None:
    if now is None:
        now = datetime.now(timezone.utc)
    elif now.tzinfo is None:
        now = now.replace(tzinfo=timezone.utc)
    not_after = _not_after(certificate)
    if now > not_after:
        raise VaultCertError(
            f"certificate expired on {_format_time(not_after)}; validate: false stores it all the same "
            "(for a deliberate return to an old certificate)"
        )
    not_before = _not_before(certificate)
    if now < not_before:
        raise VaultCertError(
            f"certificate is not yet valid (not before {_format_time(not_before)}); validate: false stores it "
            "all the same"
        )


def validate_bundle(bundle: CertificateBundle, *, now: datetime | None = None) -> None:
    """Check key match, chain links and leaf validity; raise VaultCertError on the first failure.

    ``now`` defaults to the current time; a naive datetime is taken as UTC.
    """
    check_key_matches(bundle)
    _check_chain(bundle.certificate, bundle.chain)
    _check_validity(bundle.certificate, now)


def _format_serial(serial: int) -> str:
    # Vault PKI writes the serial's minimal big-endian bytes as colon-separated hex pairs.
    digits = f"{abs(serial):x}"
    if len(digits) % 2:
        digits = f"0{digits}"
    return ":".join(digits[i : i + 2] for i in range(0, len(digits), 2))


def _common_name(certificate: x509.Certificate) -> str | None:
    attributes = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not attributes:
        return None
    value = attributes[0].value
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _subject_alternative_names(certificate: x509.Certificate) -> list[str]:
    try:
        extension = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    except ValueError:
        raise VaultCertError("certificate has a malformed subjectAltName extension") from None
    names: list[str] = []
    for general_name in extension.value:
        if isinstance(general_name, (x509.DNSName, x509.RFC822Name, x509.UniformResourceIdentifier)):
            names.append(general_name.value)
        elif isinstance(general_name, x509.IPAddress):
            names.append(str(general_name.value))
    return names


# The names of summarise_certificate(), in its order: what push's `certificate` and vault_cert_info's entries hold.
SUMMARY_KEYS = ("cn", "sans", "serial", "not_before", "not_after", "issuer", "subject", "fingerprint_sha256")


def summarise_certificate(certificate: x509.Certificate) -> dict[str, t.Any]:
    """The metadata that returns, paths and KV custom_metadata use."""
    return {
        "cn": _common_name(certificate),
        "sans": _subject_alternative_names(certificate),
        "serial": _format_serial(certificate.serial_number),
        "not_before": _format_time(_not_before(certificate)),
        "not_after": _format_time(_not_after(certificate)),
        "issuer": certificate.issuer.rfc4514_string(),
        "subject": _subject(certificate),
        "fingerprint_sha256": _fingerprint(certificate),
    }


# What custom_metadata: true records of the certificate in the secret's KV metadata.
CUSTOM_METADATA_KEYS = ("cn", "serial", "not_after", "fingerprint_sha256")


def certificate_custom_metadata(summary: t.Mapping[str, t.Any]) -> dict[str, str]:
    return {key: str(summary.get(key) or "") for key in CUSTOM_METADATA_KEYS}


def certificate_info(pem: str) -> dict[str, t.Any]:
    """summarise_certificate() of one PEM certificate; what the cert_info filter returns."""
    return summarise_certificate(parse_certificate(pem))


def _summarise_private_key_block(text: str, block: _pem.PemBlock) -> str:
    data = _block_bytes(text, block) if block.complete else None
    if data is not None:
        try:
            key = serialization.load_pem_private_key(data, password=None)
            return f"<private key: sha256 {_sha256_hex(_public_key_der(key.public_key()))}>"
        except (ValueError, TypeError, UnsupportedAlgorithm):
            pass
    return "<private key: unreadable>"


def _summarise_block(text: str, block: _pem.PemBlock) -> str:
    if block.private:
        return _summarise_private_key_block(text, block)
    if block.label == _pem.CERTIFICATE_LABEL:
        certificate = _load_certificate_block(text, block)
        if certificate is None:
            return "<certificate: unreadable>"
        try:
            summary = summarise_certificate(certificate)
        except VaultCertError:
            return "<certificate: unreadable>"
        name = f"CN={summary['cn']}" if summary["cn"] is not None else f"subject={summary['subject']}"
        return (
            f"<certificate {name}, serial={summary['serial']}, not_after={summary['not_after']}, "
            f"sha256={summary['fingerprint_sha256']}>"
        )
    return f"<PEM {block.label}>"


def summarise_value(text: str) -> str:
    """Replace every PEM block in ``text`` by a one-line summary, for diffs. Never returns key material.

    Truncated blocks are replaced too, to the end of the text. Text without PEM, and values that
    are not strings, are returned unchanged.
    """
    if not isinstance(text, str) or "-----" not in text:
        return text
    blocks = _pem.scan(text)
    if not blocks:
        return text
    parts: list[str] = []
    position = 0
    for block in blocks:
        parts.append(text[position : block.start])
        parts.append(_summarise_block(text, block))
        position = block.end
    parts.append(text[position:])
    return "".join(parts)


def summarise_pem_only(text: str) -> str | None:
    """Summaries of the PEM blocks of ``text``, or None when it holds anything else but whitespace."""
    blocks = _pem.scan(text) if "-----" in text else []
    position = 0
    for block in blocks:
        if text[position : block.start].strip():
            return None
        position = block.end
    if not blocks or text[position:].strip():
        return None
    return "\n".join(_summarise_block(text, block) for block in blocks)

# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PKCS#12 bundles: written as keytool writes them, and a stored one opened at a bounded cost.

Private to the collection. Layout pkcs12 (_layouts.py) writes a bundle with serialize() and compares
the one it finds in the secret by what it holds (contents_of()), since the same bundle encrypts to other
bytes each run.
"""

from __future__ import annotations

import base64
import dataclasses
import typing as t

from ansible_collections.certautopilot.vault.plugins.module_utils import _certs
from ansible_collections.certautopilot.vault.plugins.module_utils._errors import VaultCertError

try:
    from cryptography.hazmat.primitives import hashes, padding, serialization
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
    from cryptography.hazmat.primitives.serialization import pkcs12
except ImportError:  # _certs reports the missing library, before anything here runs
    pass

# PKCS#12 as JDK keytool has written it since 8u301/11.0.12: PBES2 (PBKDF2-SHA256, AES-256-CBC) for key and
# certificates, HMAC-SHA256 integrity, 10000 iterations. OpenSSL 1.1.1/3 and Java 8u301+ read it; the legacy
# 3DES/RC2 form is not written.
KDF_ROUNDS = 10000


def _encryption(password: str) -> serialization.KeySerializationEncryption:
    return (
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(KDF_ROUNDS)
        .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
        .hmac_hash(hashes.SHA256())
        .build(password.encode("utf-8"))
    )


def serialize(bundle: _certs.CertificateBundle, password: str | None) -> bytes:
    """The DER bundle of the key, the certificate and its chain, encrypted with ``password``."""
    if not password:
        raise VaultCertError("layout pkcs12 needs pkcs12_password, the password that encrypts the PKCS#12 bundle")
    if bundle.private_key is None:
        raise VaultCertError("private key is required for layout pkcs12")
    # A PKCS#12 bundle pairs the key with the certificate, even when validate is false.
    _certs.check_key_matches(bundle)
    try:
        return pkcs12.serialize_key_and_certificates(
            None, bundle.private_key, bundle.certificate, list(bundle.chain) or None, _encryption(password)
        )
    except (TypeError, ValueError):
        # cryptography's text is not shown: it never names the password, but it is not the user's language either.
        raise VaultCertError(
            f"private key of type {type(bundle.private_key).__name__.lstrip('_')} cannot be put into a PKCS#12 bundle"
        ) from None


# What opening a bundle found in the secret may cost: the iterations of its MAC and of every key derivation
# (PBKDF2) of its encrypted parts, together. keytool writes 3 x 10000, OpenSSL 3 x 2048; the limit costs well
# under a second. Every count is read from the DER before any of them is run (the library runs them all again).
MAX_KDF_ITERATIONS = 500_000

# Object identifiers (DER contents) of the PKCS#12 shapes that are opened; anything else is not what this
# collection writes, and such a bundle is replaced without being opened.
_OID_DATA = bytes.fromhex("2a864886f70d010701")
_OID_ENCRYPTED_DATA = bytes.fromhex("2a864886f70d010706")
_OID_SHROUDED_KEY_BAG = bytes.fromhex("2a864886f70d010c0a0102")
_OID_CERT_BAG = bytes.fromhex("2a864886f70d010c0a0103")
_OID_PBES2 = bytes.fromhex("2a864886f70d01050d")
_OID_PBKDF2 = bytes.fromhex("2a864886f70d01050c")
# PBKDF2's pseudo-random functions (hmacWithSHA1 is the default when none is named) and PBES2's ciphers.
_PBKDF2_HASHES = {
    bytes.fromhex("2a864886f70d0207"): "SHA1",
    bytes.fromhex("2a864886f70d0208"): "SHA224",
    bytes.fromhex("2a864886f70d0209"): "SHA256",
    bytes.fromhex("2a864886f70d020a"): "SHA384",
    bytes.fromhex("2a864886f70d020b"): "SHA512",
}
_AES_CBC_KEY_SIZES = {
    bytes.fromhex("608648016503040102"): 16,
    bytes.fromhex("608648016503040116"): 24,
    bytes.fromhex("60864801650304012a"): 32,
}
# The MAC's digest: a plain hash, whose key the MacData iteration count derives (not PBMAC1, which hides its
# own PBKDF2 count in its parameters).
_MAC_DIGESTS = frozenset(
    bytes.fromhex(oid)
    for oid in ("2b0e03021a", "608648016503040204", "608648016503040201", "608648016503040202", "608648016503040203")
)


def _der_items(data: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    """(tag, content start, content end) of each DER element between ``start`` and ``end``."""
    items = []
    while start < end:
        if start + 2 > end:
            raise ValueError("truncated DER")
        tag, length, start = data[start], data[start + 1], start + 2
        if length & 0x80:
            count = length & 0x7F
            if not 0 < count <= 4 or start + count > end:
                raise ValueError("bad DER length")
            length, start = int.from_bytes(data[start : start + count], "big"), start + count
        if start + length > end:
            raise ValueError("truncated DER")
        items.append((tag, start, start + length))
        start += length
    return items


def _children(data: bytes, element: tuple[int, int, int], tags: t.Sequence[int], optional: int = 0) -> list:
    """The elements inside ``element``, which must have ``tags`` in that order (the last ``optional`` may lack)."""
    items = _der_items(data, element[1], element[2])
    if not len(tags) - optional <= len(items) <= len(tags) or any(
        item[0] != tag for item, tag in zip(items, tags, strict=False)
    ):
        raise ValueError("not the PKCS#12 shape this collection writes")
    return items


def _only(data: bytes, start: int, end: int, tag: int) -> tuple[int, int, int]:
    return _children(data, (tag, start, end), (tag,))[0]


def _content(data: bytes, element: tuple[int, int, int]) -> bytes:
    return data[element[1] : element[2]]


def _count(data: bytes, element: tuple[int, int, int]) -> int:
    return int.from_bytes(_content(data, element), "big", signed=True)


class _Cost:
    """Iterations spent on a bundle so far; raises before a count would go over MAX_KDF_ITERATIONS."""

    def __init__(self) -> None:
        self.iterations = 0

    def spend(self, iterations: int) -> None:
        if iterations < 1 or self.iterations + iterations > MAX_KDF_ITERATIONS:
            raise ValueError("too costly to open")
        self.iterations += iterations


@dataclasses.dataclass(frozen=True)
class _Pbes2:
    salt: bytes
    iterations: int
    hash_name: str
    key_size: int
    iv: bytes


def _pbes2(data: bytes, algorithm: tuple[int, int, int]) -> _Pbes2:
    """The parameters of a PBES2 AlgorithmIdentifier (PBKDF2 and AES-CBC only); nothing is derived."""
    oid, parameters = _children(data, algorithm, (0x06, 0x30))
    kdf, scheme = _children(data, parameters, (0x30, 0x30))
    kdf_oid, kdf_parameters = _children(data, kdf, (0x06, 0x30))
    items = _der_items(data, kdf_parameters[1], kdf_parameters[2])
    if len(items) < 2 or items[0][0] != 0x04 or items[1][0] != 0x02:
        raise ValueError("not PBKDF2 parameters")
    rest = [item for item in items[2:] if item[0] != 0x02]  # an optional keyLength, then an optional prf
    hash_name = "SHA1"
    if rest:
        prf = _children(data, rest[0], (0x06, 0x05), optional=1)
        hash_name = _PBKDF2_HASHES[_content(data, prf[0])]
    cipher_oid, iv = _children(data, scheme, (0x06, 0x04))
    if _content(data, oid) != _OID_PBES2 or _content(data, kdf_oid) != _OID_PBKDF2:
        raise ValueError("not PBES2 with PBKDF2")
    return _Pbes2(
        salt=_content(data, items[0]),
        iterations=_count(data, items[1]),
        hash_name=hash_name,
        key_size=_AES_CBC_KEY_SIZES[_content(data, cipher_oid)],
        iv=_content(data, iv),
    )


def _pbes2_decrypt(scheme: _Pbes2, password: bytes, ciphertext: bytes) -> bytes:
    kdf = PBKDF2HMAC(
        algorithm=getattr(hashes, scheme.hash_name)(),
        length=scheme.key_size,
        salt=scheme.salt,
        iterations=scheme.iterations,
    )
    decryptor = Cipher(algorithms.AES(kdf.derive(password)), modes.CBC(scheme.iv)).decryptor()
    unpadder = padding.PKCS7(128).unpadder()
    return unpadder.update(decryptor.update(ciphertext) + decryptor.finalize()) + unpadder.finalize()


def _check_safe_contents(data: bytes, cost: _Cost) -> None:
    """Certificate bags and shrouded key bags only; each key bag's KDF iterations counted (not run)."""
    for bag in _der_items(data, *_only(data, 0, len(data), 0x30)[1:]):
        if bag[0] != 0x30:
            raise ValueError("not a SafeBag")
        bag_id, value, *_attributes = _children(data, bag, (0x06, 0xA0, 0x31), optional=1)
        kind = _content(data, bag_id)
        if kind == _OID_SHROUDED_KEY_BAG:
            encrypted_key = _only(data, value[1], value[2], 0x30)
            algorithm, _key = _children(data, encrypted_key, (0x30, 0x04))
            cost.spend(_pbes2(data, algorithm).iterations)
        elif kind != _OID_CERT_BAG:
            # A plain keyBag (readable without the password), a nested SafeContents, a secret bag.
            raise ValueError("not a bag this collection writes")


def _check_authenticated_safe(data: bytes, password: bytes, cost: _Cost) -> None:
    for info in _der_items(data, *_only(data, 0, len(data), 0x30)[1:]):
        if info[0] != 0x30:
            raise ValueError("not a ContentInfo")
        content_type, explicit = _children(data, info, (0x06, 0xA0))
        kind = _content(data, content_type)
        if kind == _OID_DATA:
            _check_safe_contents(_content(data, _only(data, explicit[1], explicit[2], 0x04)), cost)
        elif kind == _OID_ENCRYPTED_DATA:
            encrypted_data = _only(data, explicit[1], explicit[2], 0x30)
            _version, info_of_content = _children(data, encrypted_data, (0x02, 0x30))
            _type, algorithm, ciphertext = _children(data, info_of_content, (0x06, 0x30, 0x80))
            scheme = _pbes2(data, algorithm)
            cost.spend(scheme.iterations)
            # Decrypted here, under the bound, to count the key bags it may hide before the library opens them.
            _check_safe_contents(_pbes2_decrypt(scheme, password, _content(data, ciphertext)), cost)
        else:
            raise ValueError("not a content type this collection writes")


def protected(data: bytes, password: str) -> bool:
    """Whether a PKCS#12 bundle is protected as this collection writes them, at a bounded cost to open:
    a MAC by a plain hash, the key in a shrouded (encrypted) bag, PBES2 (PBKDF2, AES-CBC) encryption only,
    and at most MAX_KDF_ITERATIONS iterations of MAC and key derivations together. Every count is read
    before any key derivation runs; the one run here (to see inside encrypted certificate bags) is counted."""
    try:
        pfx = _only(data, 0, len(data), 0x30)
        _version, auth_safe, mac_data = _children(data, pfx, (0x02, 0x30, 0x30))
        digest_info, _salt, *iterations = _children(data, mac_data, (0x30, 0x04, 0x02), optional=1)
        digest_algorithm, _digest = _children(data, digest_info, (0x30, 0x04))
        if _content(data, _children(data, digest_algorithm, (0x06, 0x05), optional=1)[0]) not in _MAC_DIGESTS:
            return False
        cost = _Cost()
        cost.spend(_count(data, iterations[0]) if iterations else 1)
        content_type, explicit = _children(data, auth_safe, (0x06, 0xA0))
        if _content(data, content_type) != _OID_DATA:
            return False
        authenticated_safe = _content(data, _only(data, explicit[1], explicit[2], 0x04))
        _check_authenticated_safe(authenticated_safe, password.encode("utf-8"), cost)
    except (ValueError, KeyError):
        return False
    return True


def contents_of(value: t.Any, password: str) -> tuple[bytes, bytes, tuple[bytes, ...]] | None:
    """Key (PKCS#8 DER), certificate and chain (DER) of a base64 PKCS#12 value; None when it does not open,
    or is not protected as this collection writes bundles (see protected())."""
    if not isinstance(value, str):
        return None
    try:
        data = base64.b64decode(value, validate=True)
        if not protected(data, password):
            return None
        key, certificate, chain = pkcs12.load_key_and_certificates(data, password.encode("utf-8"))
    except Exception:  # noqa: BLE001 - anyone who may write the secret chose these bytes: whatever fails, it differs
        return None
    if key is None or certificate is None:
        return None
    der = serialization.Encoding.DER
    return (
        key.private_bytes(der, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
        certificate.public_bytes(der),
        tuple(issuer.public_bytes(der) for issuer in chain),
    )

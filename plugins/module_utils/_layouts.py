# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Secret layouts: which secret(s) a certificate becomes, and under which JSON keys, for each consumer.

Private to the collection. A layout names a consumer's way of reading a certificate from KV v2:

- ``default``: one secret, ``certificate``, ``private_key``, ``chain``, ``fullchain`` (renamed by ``fields``).
- ``acme_sh``: four secrets under the path, ``cert.pem``, ``cert.key``, ``ca.pem``, ``fullchain.pem``,
  each ``{value: <PEM>}``, as acme.sh's deploy hook ``vault`` (and ``vault_cli``) writes them to KV v2.
- ``fabio``: ``cert`` (the fullchain) and ``key``, what fabio's ``vault`` certificate store reads.
- ``traefik``: ``cert`` (the fullchain) and ``key``, base64-encoded, what Traefik Enterprise's Vault
  provider reads.
- ``haproxy``: ``pem``, the fullchain followed by the key, one file for HAProxy's ``crt``.
- ``pkcs12``: ``pkcs12``, a base64 PKCS#12 bundle (key, certificate, chain) encrypted with a password.

Each layout also has the "fields" map that decide() and the diff use: the logical name (what
``changed_fields`` reports) of each JSON key it writes.
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

DEFAULT = "default"
ACME_SH = "acme_sh"
FABIO = "fabio"
TRAEFIK = "traefik"
HAPROXY = "haproxy"
PKCS12 = "pkcs12"
LAYOUTS = (DEFAULT, ACME_SH, FABIO, TRAEFIK, HAPROXY, PKCS12)

# acme.sh's deploy/vault.sh (KV v2 mode): one secret per file below the path, each {"value": <file text>}.
# Its CA file (the intermediates) went to chain.pem before acme.sh 3.0.6 (December 2022) and to ca.pem since.
ACME_SH_VALUE_KEY = "value"
ACME_SH_SECRETS = (
    ("cert.pem", "certificate"),
    ("cert.key", "private_key"),
    ("ca.pem", "chain"),
    ("fullchain.pem", "fullchain"),
)
_ACME_SH_FIELD_OF = dict(ACME_SH_SECRETS)

# Logical name -> JSON key of the single-secret layouts other than default.
_LAYOUT_FIELDS: dict[str, dict[str, str]] = {
    # acme_sh's own map is per secret (fields_of_secret); this one serves its diff, where every value is PEM.
    ACME_SH: {ACME_SH_VALUE_KEY: ACME_SH_VALUE_KEY},
    FABIO: {"fullchain": "cert", "private_key": "key"},
    TRAEFIK: {"fullchain": "cert", "private_key": "key"},
    HAPROXY: {"pem": "pem"},
    PKCS12: {"pkcs12": "pkcs12"},
}

# Layouts whose secret holds the key inseparably from the certificate: no cert-only delivery.
_KEY_REQUIRED = {HAPROXY: "pem", PKCS12: "pkcs12"}

# PKCS#12 as JDK keytool has written it since 8u301/11.0.12: PBES2 (PBKDF2-SHA256, AES-256-CBC) for key and
# certificates, HMAC-SHA256 integrity, 10000 iterations. OpenSSL 1.1.1/3 and Java 8u301+ read it; the legacy
# 3DES/RC2 form is not written.
PKCS12_KDF_ROUNDS = 10000


def layout_fields(
    layout: str,
    fields: dict[str, str | None] | None,
    *,
    include_private_key: bool,
    pkcs12_password: t.Any,
) -> dict[str, str | None]:
    """Check the options that go with ``layout``; return the run's fields map (logical name -> JSON key).

    Raised before any request: ``fields`` with a layout other than default, ``pkcs12_password``
    missing for pkcs12 or given to another layout, cert-only delivery where the key is part of the value.
    """
    if layout not in LAYOUTS:
        raise VaultCertError(f"layout must be one of {', '.join(LAYOUTS)}, not {layout!r}")
    if pkcs12_password is not None and not isinstance(pkcs12_password, str):
        # Not echoed: it is the password.
        raise VaultCertError(
            f"pkcs12_password must be a string, got a {type(pkcs12_password).__name__} (quote it in YAML)"
        )
    if layout == PKCS12 and not pkcs12_password:
        raise VaultCertError("layout pkcs12 needs pkcs12_password, the password that encrypts the PKCS#12 bundle")
    if layout != PKCS12 and pkcs12_password:
        raise VaultCertError(f"pkcs12_password is only used by layout pkcs12; layout is {layout}")
    if layout in _KEY_REQUIRED and not include_private_key:
        raise VaultCertError(
            f"include_private_key=false cannot be used with layout {layout}: its {_KEY_REQUIRED[layout]} "
            "value holds the private key with the certificate; for a cert-only delivery use layout default or fabio"
        )
    if layout == DEFAULT:
        return _certs.resolve_fields(fields)
    if fields is not None and _certs.resolve_fields(fields) != _certs.DEFAULT_FIELDS:
        keys = ", ".join(sorted(set(_LAYOUT_FIELDS[layout].values())))
        raise VaultCertError(
            f"fields renames the keys of layout default only; layout {layout} writes its own keys ({keys}): "
            "leave fields out, or use layout default"
        )
    return dict(_LAYOUT_FIELDS[layout])


def managed_keys(layout: str, fields: dict[str, str | None] | None) -> frozenset[str]:
    """The JSON keys a push of ``layout`` owns: each is either written or removed (keep_other_fields)."""
    if layout == DEFAULT:
        return _certs.managed_keys(fields)
    return frozenset(key for key in (fields or {}).values() if key)


def several_secrets(layout: str) -> bool:
    """Whether one certificate becomes several secrets (its results are then always a list)."""
    return layout == ACME_SH


def secret_paths(layout: str, path: str, *, include_private_key: bool = True) -> list[str]:
    """The secret path(s) one certificate at ``path`` is written to."""
    if layout != ACME_SH:
        return [path]
    return [f"{path}/{name}" for name, field in ACME_SH_SECRETS if include_private_key or field != "private_key"]


def fields_of_secret(layout: str, path: str, fields: dict[str, str | None]) -> dict[str, str | None]:
    """The fields map of one secret of a layout: acme_sh's secrets each hold one logical field."""
    if layout != ACME_SH:
        return fields
    return {_ACME_SH_FIELD_OF[path.rpartition("/")[2]]: ACME_SH_VALUE_KEY}


def build_secrets(
    bundle: _certs.CertificateBundle,
    *,
    path: str,
    layout: str,
    fields: dict[str, str | None],
    include_private_key: bool,
    pkcs12_password: str | None = None,
) -> list[tuple[str, dict[str, str]]]:
    """The secret(s) of one certificate: (path, managed keys and values) in write order."""
    if layout == DEFAULT:
        return [(path, _certs.build_payload(bundle, fields=fields, include_private_key=include_private_key))]
    if layout == ACME_SH:
        values = {
            "certificate": bundle.certificate_pem,
            "private_key": _private_key_pem(bundle) if include_private_key else "",
            # acme.sh writes its CA file as it is; without intermediates that is empty text.
            "chain": bundle.chain_pem,
            "fullchain": bundle.fullchain_pem,
        }
        return [
            (secret, {ACME_SH_VALUE_KEY: values[_ACME_SH_FIELD_OF[secret.rpartition("/")[2]]]})
            for secret in secret_paths(layout, path, include_private_key=include_private_key)
        ]
    if layout in (FABIO, TRAEFIK):
        # Both hand cert and key to Go's tls.X509KeyPair, which takes the intermediates after the leaf.
        payload = {"cert": bundle.fullchain_pem}
        if include_private_key:
            payload["key"] = _private_key_pem(bundle)
        if layout == TRAEFIK:
            payload = {key: _base64(value.encode("ascii")) for key, value in payload.items()}
        return [(path, payload)]
    if layout == HAPROXY:
        # crt: the leaf first, its intermediates in order, then the key.
        return [(path, {"pem": bundle.fullchain_pem + _private_key_pem(bundle)})]
    return [(path, {"pkcs12": _base64(_pkcs12_bundle(bundle, pkcs12_password))})]


def _private_key_pem(bundle: _certs.CertificateBundle) -> str:
    if bundle.private_key_pem is None:
        raise VaultCertError("private key is required unless include_private_key is false")
    return bundle.private_key_pem


def _base64(data: bytes) -> str:
    # Standard alphabet, padded, one line: what `base64 -w0` prints.
    return base64.b64encode(data).decode("ascii")


def _pkcs12_encryption(password: str) -> serialization.KeySerializationEncryption:
    return (
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(PKCS12_KDF_ROUNDS)
        .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
        .hmac_hash(hashes.SHA256())
        .build(password.encode("utf-8"))
    )


def _pkcs12_bundle(bundle: _certs.CertificateBundle, password: str | None) -> bytes:
    if not password:
        raise VaultCertError("layout pkcs12 needs pkcs12_password, the password that encrypts the PKCS#12 bundle")
    if bundle.private_key is None:
        raise VaultCertError("private key is required for layout pkcs12")
    # A PKCS#12 bundle pairs the key with the certificate, even when validate is false.
    _certs._check_key_matches(bundle)
    try:
        return pkcs12.serialize_key_and_certificates(
            None, bundle.private_key, bundle.certificate, list(bundle.chain) or None, _pkcs12_encryption(password)
        )
    except (TypeError, ValueError):
        # cryptography's text is not shown: it never names the password, but it is not the user's language either.
        raise VaultCertError(
            f"private key of type {type(bundle.private_key).__name__.lstrip('_')} cannot be put into a PKCS#12 bundle"
        ) from None


# What opening a bundle found in the secret may cost: the iterations of its MAC and of every key derivation
# (PBKDF2) of its encrypted parts, together. keytool writes 3 x 10000, OpenSSL 3 x 2048; the limit costs well
# under a second. Every count is read from the DER before any of them is run (the library runs them all again).
PKCS12_MAX_KDF_ITERATIONS = 500_000

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
    """Iterations spent on a bundle so far; raises before a count would go over PKCS12_MAX_KDF_ITERATIONS."""

    def __init__(self) -> None:
        self.iterations = 0

    def spend(self, iterations: int) -> None:
        if iterations < 1 or self.iterations + iterations > PKCS12_MAX_KDF_ITERATIONS:
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


def _pkcs12_protected(data: bytes, password: str) -> bool:
    """Whether a PKCS#12 bundle is protected as this collection writes them, at a bounded cost to open:
    a MAC by a plain hash, the key in a shrouded (encrypted) bag, PBES2 (PBKDF2, AES-CBC) encryption only,
    and at most PKCS12_MAX_KDF_ITERATIONS iterations of MAC and key derivations together. Every count is read
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


def _pkcs12_content(value: t.Any, password: str) -> tuple[bytes, bytes, tuple[bytes, ...]] | None:
    """Key (PKCS#8 DER), certificate and chain (DER) of a base64 PKCS#12 value; None when it does not open,
    or is not protected as this collection writes bundles (see _pkcs12_protected)."""
    if not isinstance(value, str):
        return None
    try:
        data = base64.b64decode(value, validate=True)
        if not _pkcs12_protected(data, password):
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


def equivalent_payload(
    layout: str, desired: dict[str, str], current_data: t.Mapping[str, t.Any] | None, password: str | None
) -> dict[str, str]:
    """``desired`` with each value that means the same as the current one replaced by the current one.

    A PKCS#12 bundle is salted: the same key, certificate and chain encrypt to other bytes each run.
    When the current bundle opens with ``password`` and holds the same key, certificate and chain
    (in that order), the current value is kept, so an unchanged certificate writes no new version.
    A bundle that does not open (another password, not PKCS#12), or is not protected the way this
    collection writes bundles (no MAC, a plain key bag, a legacy PBE algorithm), or would cost more
    than PKCS12_MAX_KDF_ITERATIONS iterations of MAC and key derivations to open, differs and is
    replaced - the cost is read before any of it is spent. Other layouts compare bytes.
    """
    if layout != PKCS12 or not current_data or not password:
        return desired
    current = current_data.get(PKCS12)
    wanted = desired.get(PKCS12)
    if current is None or wanted is None or current == wanted:
        return desired
    current_content = _pkcs12_content(current, password)
    if current_content is None or current_content != _pkcs12_content(wanted, password):
        return desired
    return {**desired, PKCS12: current}


Item = t.TypeVar("Item")
Options = t.TypeVar("Options")


def for_decision(item: Item, current_data: t.Mapping[str, t.Any] | None, options: Options) -> tuple[Item, Options]:
    """What _push.decide() compares for one secret: the item and the run's options, seen through the layout.

    An acme_sh secret is compared as the one logical field it holds (its ``changed_fields``
    name that field); a pkcs12 bundle that holds what the current one holds is the current one.
    """
    layout = options.layout
    if layout == ACME_SH:
        options = dataclasses.replace(options, fields=fields_of_secret(layout, item.path, options.fields))
    elif layout == PKCS12:
        payload = equivalent_payload(layout, item.payload, current_data, options.pkcs12_password)
        if payload is not item.payload:
            item = dataclasses.replace(item, payload=payload)
    return item, options


def path_warnings(layout: str, paths: t.Sequence[str]) -> list[str]:
    """What a run should say about paths its layout's consumer will not find."""
    if layout != TRAEFIK:
        return []
    nested = [path for path in paths if "/" in path]
    if not nested:
        return []
    more = f" (and {len(nested) - 1} more)" if len(nested) > 1 else ""
    return [
        f"layout traefik: Traefik Enterprise's Vault provider reads only secrets at the root of its KV mount; "
        f"{nested[0]}{more} is not at the root, so Traefik will not find it"
    ]

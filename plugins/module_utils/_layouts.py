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

Each is one ``Layout`` object, found by name with ``of()``: its fields (the logical name - what
``changed_fields`` reports - of each JSON key it writes, and the options that go with it), the secret
paths of a certificate, the payloads it builds from a parsed bundle, and how it reads a stored secret
back (what decide() compares). Callers ask the object and never test a layout's name.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import re
import secrets
import typing as t

from ansible_collections.certautopilot.vault.plugins.module_utils import _certs, _pkcs12
from ansible_collections.certautopilot.vault.plugins.module_utils._errors import VaultCertError

DEFAULT = "default"
ACME_SH = "acme_sh"
FABIO = "fabio"
TRAEFIK = "traefik"
HAPROXY = "haproxy"
PKCS12 = "pkcs12"

# The logical fields of a certificate secret: what changed_fields names, and what layout default renames.
FIELD_NAMES = ("certificate", "private_key", "chain", "fullchain")
# What a JSON key of a certificate secret may look like (tls.crt, ssl_certificate, cert.pem, ...).
_JSON_KEY = re.compile(r"[A-Za-z0-9._-]{1,128}")
DEFAULT_FIELDS = {name: name for name in FIELD_NAMES}


def resolve_fields(fields: dict[str, str | None] | None) -> dict[str, str | None]:
    """Merge a user's field mapping over DEFAULT_FIELDS; a field mapped to None or "" is not written."""
    resolved: dict[str, str | None] = dict(DEFAULT_FIELDS)
    if fields is None:
        return resolved
    if not isinstance(fields, dict):
        raise VaultCertError(f"fields must be a dictionary of field names to JSON keys, not {type(fields).__name__}")
    unknown = [str(place) for place, name in enumerate(fields, start=1) if name not in DEFAULT_FIELDS]
    if unknown:
        # Named by place, never quoted: whatever was pasted there (a token, a key) is the user's value.
        raise VaultCertError(
            f"fields: unknown field name(s) at place {', '.join(unknown)} of {len(fields)}; "
            f"known: {', '.join(FIELD_NAMES)}"
        )
    for name, key in fields.items():
        if key is not None and not isinstance(key, str):
            raise VaultCertError(f"fields: {name} must map to a JSON key (a string) or null")
        if key and not _JSON_KEY.fullmatch(key):
            # Not shown: a value pasted here by mistake may be anything, a key included.
            raise VaultCertError(
                f"fields: {name} must map to a JSON key of at most 128 letters, digits and . _ - characters"
            )
        resolved[name] = key or None
    owners: dict[str, str] = {}
    for name in FIELD_NAMES:
        key = resolved[name]
        if key is None:
            continue
        if key in owners:
            raise VaultCertError(f"fields: {owners[key]} and {name} both map to the JSON key '{key}'")
        owners[key] = name
    if not owners:
        raise VaultCertError("fields: every field is mapped to null; nothing would be written")
    return resolved


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

Fields = t.Dict[str, t.Optional[str]]


class RunOptions(t.Protocol):
    """What a layout reads of a push's options (_push.PushOptions)."""

    fields: Fields
    include_private_key: bool
    pkcs12_password: str | None


Item = t.TypeVar("Item")
Options = t.TypeVar("Options", bound=RunOptions)


class Layout:
    """One consumer's way of reading a certificate from KV v2; each layout below says what differs."""

    name: t.ClassVar[str]
    # Logical name -> JSON key of what the layout writes (default's are the run's fields).
    keys: t.ClassVar[dict[str, str]] = {}
    # The JSON key whose value holds the private key inseparably from the certificate: no cert-only delivery.
    key_inseparable_in: t.ClassVar[str | None] = None
    # Whether one certificate becomes several secrets (its results are then always a list).
    several_secrets: t.ClassVar[bool] = False

    def fields(self, fields: Fields | None, *, include_private_key: bool, pkcs12_password: t.Any) -> Fields:
        """Check the options that go with the layout; return the run's fields map (logical name -> JSON key).

        Raised before any request: ``fields`` with a layout other than default, ``pkcs12_password``
        missing for pkcs12 or given to another layout, cert-only delivery where the key is part of the value.
        """
        if pkcs12_password is not None and not isinstance(pkcs12_password, str):
            # Not echoed: it is the password.
            raise VaultCertError(
                f"pkcs12_password must be a string, got a {type(pkcs12_password).__name__} (quote it in YAML)"
            )
        self._check_password(pkcs12_password)
        if self.key_inseparable_in and not include_private_key:
            raise VaultCertError(
                f"include_private_key=false cannot be used with layout {self.name}: its {self.key_inseparable_in} "
                "value holds the private key with the certificate; for a cert-only delivery use layout default or fabio"
            )
        return self._fields(fields)

    def _check_password(self, password: str | None) -> None:
        if password:
            raise VaultCertError(f"pkcs12_password is only used by layout pkcs12; layout is {self.name}")

    def _fields(self, fields: Fields | None) -> Fields:
        if fields is not None and resolve_fields(fields) != DEFAULT_FIELDS:
            keys = ", ".join(sorted(set(self.keys.values())))
            raise VaultCertError(
                f"fields renames the keys of layout default only; layout {self.name} writes its own keys ({keys}): "
                "leave fields out, or use layout default"
            )
        return dict(self.keys)

    def managed_keys(self, fields: Fields | None) -> frozenset[str]:
        """The JSON keys a push of this layout owns: each is either written or removed (keep_other_fields)."""
        return frozenset(key for key in (fields or {}).values() if key)

    def secret_paths(self, path: str, *, include_private_key: bool = True) -> list[str]:
        """The secret path(s) one certificate at ``path`` is written to."""
        return [path]

    def build_secrets(
        self, bundle: _certs.CertificateBundle, path: str, options: RunOptions
    ) -> list[tuple[str, dict[str, str]]]:
        """The secret(s) of one certificate: (path, managed keys and values) in write order."""
        return [(path, self.payload(bundle, options))]

    def payload(self, bundle: _certs.CertificateBundle, options: RunOptions) -> dict[str, str]:
        """The managed keys and values of a layout of one secret."""
        raise NotImplementedError

    def for_decision(
        self, item: Item, current_data: t.Mapping[str, t.Any] | None, options: Options
    ) -> tuple[Item, Options]:
        """What _push.decide() compares for one secret: the item and the run's options, seen through the layout."""
        return item, options

    def path_warnings(self, paths: t.Sequence[str]) -> list[str]:
        """What a run should say about paths its layout's consumer will not find."""
        return []


class Default(Layout):
    """One secret with the certificate, the key, the chain and the fullchain, under the keys ``fields`` names."""

    name = DEFAULT

    def _fields(self, fields: Fields | None) -> Fields:
        return resolve_fields(fields)

    def managed_keys(self, fields: Fields | None) -> frozenset[str]:
        return frozenset(key for key in resolve_fields(fields).values() if key is not None)

    def payload(self, bundle: _certs.CertificateBundle, options: RunOptions) -> dict[str, str]:
        """The private key is left out unless ``include_private_key``, the chain when it is empty, and
        every field mapped to None."""
        resolved = resolve_fields(options.fields)
        payload: dict[str, str] = {}
        certificate_key = resolved["certificate"]
        if certificate_key is not None:
            payload[certificate_key] = bundle.certificate_pem
        private_key_key = resolved["private_key"]
        if options.include_private_key and private_key_key is not None:
            payload[private_key_key] = _private_key_pem(bundle)
        chain_key = resolved["chain"]
        if chain_key is not None and bundle.chain:
            payload[chain_key] = bundle.chain_pem
        fullchain_key = resolved["fullchain"]
        if fullchain_key is not None:
            payload[fullchain_key] = bundle.fullchain_pem
        return payload


class AcmeSh(Layout):
    """A secret per file below the path, each ``{value: <PEM>}``: what acme.sh's Vault deploy hook writes."""

    name = ACME_SH
    # The run's map serves the diff, where every value is PEM; each secret's own is fields_of_secret().
    keys = {ACME_SH_VALUE_KEY: ACME_SH_VALUE_KEY}
    several_secrets = True

    def secret_paths(self, path: str, *, include_private_key: bool = True) -> list[str]:
        return [f"{path}/{name}" for name, field in ACME_SH_SECRETS if include_private_key or field != "private_key"]

    def build_secrets(
        self, bundle: _certs.CertificateBundle, path: str, options: RunOptions
    ) -> list[tuple[str, dict[str, str]]]:
        values = {
            "certificate": bundle.certificate_pem,
            "private_key": _private_key_pem(bundle) if options.include_private_key else "",
            # acme.sh writes its CA file as it is; without intermediates that is empty text.
            "chain": bundle.chain_pem,
            "fullchain": bundle.fullchain_pem,
        }
        return [
            (secret, {ACME_SH_VALUE_KEY: values[_ACME_SH_FIELD_OF[secret.rpartition("/")[2]]]})
            for secret in self.secret_paths(path, include_private_key=options.include_private_key)
        ]

    @staticmethod
    def fields_of_secret(path: str) -> Fields:
        """The fields map of one of its secrets: each holds one logical field."""
        return {_ACME_SH_FIELD_OF[path.rpartition("/")[2]]: ACME_SH_VALUE_KEY}

    def for_decision(
        self, item: Item, current_data: t.Mapping[str, t.Any] | None, options: Options
    ) -> tuple[Item, Options]:
        # Compared as the one logical field the secret holds: its changed_fields name that field.
        return item, dataclasses.replace(options, fields=self.fields_of_secret(item.path))


class Fabio(Layout):
    """``cert`` (the fullchain) and ``key``: what fabio's ``vault`` certificate store reads."""

    name = FABIO
    keys = {"fullchain": "cert", "private_key": "key"}

    def payload(self, bundle: _certs.CertificateBundle, options: RunOptions) -> dict[str, str]:
        # fabio and Traefik hand cert and key to Go's tls.X509KeyPair, which takes the intermediates after the leaf.
        payload = {"cert": bundle.fullchain_pem}
        if options.include_private_key:
            payload["key"] = _private_key_pem(bundle)
        return payload


class Traefik(Fabio):
    """fabio's ``cert`` and ``key``, base64-encoded: what Traefik Enterprise's Vault provider reads."""

    name = TRAEFIK

    def payload(self, bundle: _certs.CertificateBundle, options: RunOptions) -> dict[str, str]:
        return {key: _base64(value.encode("ascii")) for key, value in super().payload(bundle, options).items()}

    def path_warnings(self, paths: t.Sequence[str]) -> list[str]:
        nested = [path for path in paths if "/" in path]
        if not nested:
            return []
        more = f" (and {len(nested) - 1} more)" if len(nested) > 1 else ""
        return [
            f"layout traefik: Traefik Enterprise's Vault provider reads only secrets at the root of its KV mount; "
            f"{nested[0]}{more} is not at the root, so Traefik will not find it"
        ]


class Haproxy(Layout):
    """``pem``, the fullchain followed by the key: one file for HAProxy's ``crt``."""

    name = HAPROXY
    keys = {"pem": "pem"}
    key_inseparable_in = "pem"

    def payload(self, bundle: _certs.CertificateBundle, options: RunOptions) -> dict[str, str]:
        # crt: the leaf first, its intermediates in order, then the key.
        return {"pem": bundle.fullchain_pem + _private_key_pem(bundle)}


class Pkcs12(Layout):
    """``pkcs12``, a base64 PKCS#12 bundle of key, certificate and chain, encrypted with ``pkcs12_password``."""

    name = PKCS12
    keys = {"pkcs12": "pkcs12"}
    key_inseparable_in = "pkcs12"

    def _check_password(self, password: str | None) -> None:
        if not password:
            raise VaultCertError("layout pkcs12 needs pkcs12_password, the password that encrypts the PKCS#12 bundle")

    def payload(self, bundle: _certs.CertificateBundle, options: RunOptions) -> dict[str, str]:
        return {"pkcs12": _base64(_pkcs12.serialize(bundle, options.pkcs12_password))}

    def for_decision(
        self, item: Item, current_data: t.Mapping[str, t.Any] | None, options: Options
    ) -> tuple[Item, Options]:
        # A bundle that holds what the current one holds is the current one.
        payload = self.equivalent_payload(item.payload, current_data, options.pkcs12_password)
        if payload is not item.payload:
            item = dataclasses.replace(item, payload=payload)
        return item, options

    def equivalent_payload(
        self, desired: dict[str, str], current_data: t.Mapping[str, t.Any] | None, password: str | None
    ) -> dict[str, str]:
        """``desired`` with each value that means the same as the current one replaced by the current one.

        A PKCS#12 bundle is salted: the same key, certificate and chain encrypt to other bytes each run.
        When the current bundle opens with ``password`` and holds the same key, certificate and chain
        (in that order), the current value is kept, so an unchanged certificate writes no new version.
        A bundle that does not open (another password, not PKCS#12), or is not protected the way this
        collection writes bundles (no MAC, a plain key bag, a legacy PBE algorithm), or would cost more
        than _pkcs12.MAX_KDF_ITERATIONS iterations of MAC and key derivations to open, differs and is
        replaced - the cost is read before any of it is spent.
        """
        if not current_data or not password:
            return desired
        current = current_data.get(PKCS12)
        wanted = desired.get(PKCS12)
        if current is None or wanted is None or current == wanted:
            return desired
        current_content = _pkcs12.contents_of(current, password)
        if current_content is None or current_content != _pkcs12.contents_of(wanted, password):
            return desired
        return {**desired, PKCS12: current}


_BY_NAME: dict[str, Layout] = {
    layout.name: layout for layout in (Default(), AcmeSh(), Fabio(), Traefik(), Haproxy(), Pkcs12())
}
LAYOUTS = tuple(_BY_NAME)


def of(name: str) -> Layout:
    """The layout called ``name``."""
    if name not in LAYOUTS:
        raise VaultCertError(f"layout must be one of {', '.join(LAYOUTS)}")
    return _BY_NAME[name]


def _private_key_pem(bundle: _certs.CertificateBundle) -> str:
    if bundle.private_key_pem is None:
        raise VaultCertError("private key is required unless include_private_key is false")
    return bundle.private_key_pem


def _base64(data: bytes) -> str:
    # Standard alphabet, padded, one line: what `base64 -w0` prints.
    return base64.b64encode(data).decode("ascii")


# --- reading a stored secret back for a diff -------------------------------------------------------


# What base64 of "-----BEGIN" starts with: the one value a layout encodes (traefik) is told apart cheaply.
_BASE64_PEM_START = "LS0tLS1CRUdJTi"


def _base64_pem(text: str) -> str:
    """``text``, or the PEM text it is the base64 of (layout traefik stores PEM so), for a summary."""
    if not text.startswith(_BASE64_PEM_START):
        return text
    try:
        return base64.b64decode(text, validate=True).decode("ascii")
    except (ValueError, UnicodeDecodeError):
        return text


# Keys the hashes of one run: a short value (a PIN) hashed alone could be found by trying every value.
_RUN_HASH_KEY = secrets.token_bytes(32)


def _opaque(value: t.Any) -> str:
    """A value shown only by its size and a keyed hash: equal within one run's diff, never reversible.

    It may be anything, a password included.
    """
    text = value if isinstance(value, str) else repr(value)
    digest = hmac.new(_RUN_HASH_KEY, text.encode("utf-8"), hashlib.sha256).hexdigest()[:16]
    return f"<value: {len(text)} characters, keyed hash {digest}>"


def summarise_secret(data: t.Mapping[str, t.Any], *, fields: t.Mapping[str, str | None] = DEFAULT_FIELDS) -> dict:
    """A secret's data as a diff may show it: no PEM body, key or unmanaged value in clear.

    The managed certificate fields are shown as summaries of their PEM blocks when they hold
    nothing else; the private key field only by the SHA-256 of its public key. Every other
    value, and a managed field holding anything but PEM, is shown by its length and a short
    hash, since it may hold a secret.
    """
    key_field = fields.get("private_key")
    certificate_fields = {key for name, key in fields.items() if key and name != "private_key"}
    summary = {}
    for key, value in data.items():
        shown = _certs.summarise_pem_only(_base64_pem(value)) if isinstance(value, str) else None
        if key == key_field:
            summary[key] = shown if shown and shown.startswith("<private key") else "<private key: not PEM>"
        elif key in certificate_fields and shown is not None:
            summary[key] = shown
        else:
            summary[key] = _opaque(value)
    return summary

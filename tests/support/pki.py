# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A small certificate factory for tests and the demo: CAs, intermediates and leaves as PEM.

Plain Python, no pytest. EC P-256 keys by default because they are generated in microseconds;
RSA 2048 is available (``key_type="rsa"``) and CA keys are cached per (key type, CN) so that
each CA costs one key generation per process.

    root = make_ca("Test Root CA")
    intermediate = make_intermediate(root, "Test Intermediate CA")
    leaf = make_leaf(intermediate, "www.example.com", sans=("www.example.com", "IP:192.0.2.10"))
    leaf.cert_pem, leaf.key_pem, intermediate.cert_pem

Run as a script it writes a demo certificate to a directory (see ``main``).
"""

from __future__ import annotations

import argparse
import functools
import ipaddress
import pathlib
import typing as t
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

if t.TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes

KEY_TYPES = ("ec", "rsa", "ed25519")
ORGANISATION = "CertAutoPilot Tests"


@dataclass(frozen=True)
class Issued:
    """A certificate with its private key, as objects and as PEM text (unencrypted PKCS#8)."""

    cert: x509.Certificate
    key: CertificateIssuerPrivateKeyTypes = field(repr=False)

    @property
    def cert_pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode("ascii")

    @property
    def key_pem(self) -> str:
        return key_pem(self.key)

    @property
    def subject(self) -> str:
        return self.cert.subject.rfc4514_string()


@dataclass(frozen=True)
class Chain:
    """A root, one intermediate and a leaf issued by the intermediate."""

    root: Issued
    intermediate: Issued
    leaf: Issued

    @property
    def chain_pem(self) -> str:
        """The intermediates, leaf-first: what a push takes as ``chain``."""
        return self.intermediate.cert_pem

    @property
    def fullchain_pem(self) -> str:
        return self.leaf.cert_pem + self.intermediate.cert_pem


def new_key(key_type: str = "ec") -> CertificateIssuerPrivateKeyTypes:
    """A fresh private key: ``ec`` (P-256), ``rsa`` (2048 bits) or ``ed25519``."""
    if key_type == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if key_type == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(f"unknown key type {key_type!r}; use one of {', '.join(KEY_TYPES)}")


@functools.cache
def _cached_key(key_type: str, slot: str) -> CertificateIssuerPrivateKeyTypes:
    return new_key(key_type)


def key_pem(key: CertificateIssuerPrivateKeyTypes, *, traditional: bool = False) -> str:
    """Unencrypted PEM: PKCS#8 (``BEGIN PRIVATE KEY``) or the traditional ``BEGIN RSA/EC PRIVATE KEY``."""
    private_format = (
        serialization.PrivateFormat.TraditionalOpenSSL if traditional else serialization.PrivateFormat.PKCS8
    )
    return key.private_bytes(serialization.Encoding.PEM, private_format, serialization.NoEncryption()).decode("ascii")


def key_der(key: CertificateIssuerPrivateKeyTypes) -> bytes:
    """Unencrypted PKCS#8 DER: the bytes a key pasted without its PEM lines (base64 or hex) encodes."""
    return key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def encrypted_key_pem(key: CertificateIssuerPrivateKeyTypes, password: str | bytes = "changeit") -> str:
    """PKCS#8 PEM encrypted with ``password`` (``BEGIN ENCRYPTED PRIVATE KEY``)."""
    secret = password.encode("utf-8") if isinstance(password, str) else password
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(secret),
    ).decode("ascii")


def _name(cn: str | None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANISATION)]
    if cn is not None:
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attributes)


def _general_name(san: str) -> x509.GeneralName:
    kind, value = san.split(":", 1) if ":" in san else ("", san)
    if value and kind in ("DNS", "IP", "email", "URI"):
        if kind == "IP":
            return x509.IPAddress(ipaddress.ip_address(value))
        if kind == "email":
            return x509.RFC822Name(value)
        if kind == "URI":
            return x509.UniformResourceIdentifier(value)
        return x509.DNSName(value)
    try:
        return x509.IPAddress(ipaddress.ip_address(san))
    except ValueError:
        return x509.DNSName(san)


def _validity(not_before: datetime | None, not_after: datetime | None, days: float) -> tuple[datetime, datetime]:
    if not_before is None:
        # An hour back so that a certificate made now is valid on a host whose clock lags a little.
        not_before = datetime.now(UTC) - timedelta(hours=1)
    if not_after is None:
        not_after = not_before + timedelta(days=days)
    return not_before, not_after


def _signature_hash(key: CertificateIssuerPrivateKeyTypes) -> hashes.HashAlgorithm | None:
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


def _issue(
    *,
    subject: x509.Name,
    key: CertificateIssuerPrivateKeyTypes,
    issuer: Issued | None,
    not_before: datetime,
    not_after: datetime,
    serial: int | None,
    extensions: list[tuple[x509.ExtensionType, bool]],
) -> Issued:
    issuer_name = issuer.cert.subject if issuer else subject
    signing_key = issuer.key if issuer else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(serial if serial is not None else x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signing_key.public_key()), critical=False)
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return Issued(cert=builder.sign(signing_key, _signature_hash(signing_key)), key=key)


def _ca_extensions(path_length: int | None) -> list[tuple[x509.ExtensionType, bool]]:
    usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )
    return [(x509.BasicConstraints(ca=True, path_length=path_length), True), (usage, True)]


def make_ca(
    cn: str = "CertAutoPilot Test Root CA",
    *,
    issuer: Issued | None = None,
    path_length: int | None = None,
    key_type: str = "ec",
    key: CertificateIssuerPrivateKeyTypes | None = None,
    days: float = 3650,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> Issued:
    """A CA: a self-signed root, or signed by ``issuer`` when given (see ``make_intermediate``).

    Its key is cached per (key_type, cn) unless ``key`` is given.
    """
    start, end = _validity(not_before, not_after, days)
    return _issue(
        subject=_name(cn),
        key=key or _cached_key(key_type, f"ca:{cn}"),
        issuer=issuer,
        not_before=start,
        not_after=end,
        serial=None,
        extensions=_ca_extensions(path_length),
    )


def make_intermediate(
    issuer: Issued,
    cn: str = "CertAutoPilot Test Intermediate CA",
    *,
    days: float = 1825,
    path_length: int | None = 0,
    **options: t.Any,
) -> Issued:
    """An intermediate CA signed by ``issuer``: ``make_ca`` with an issuer, a shorter life and path length 0.

    ``options`` are ``make_ca``'s (``key_type``, ``key``, ``not_before``, ``not_after``); its key is
    cached per (key_type, cn) unless ``key`` is given.
    """
    return make_ca(cn, issuer=issuer, days=days, path_length=path_length, **options)


_EXTENDED_USAGE = {"server": ExtendedKeyUsageOID.SERVER_AUTH, "client": ExtendedKeyUsageOID.CLIENT_AUTH}


def make_leaf(
    issuer: Issued | None,
    cn: str | None = "www.example.com",
    *,
    sans: t.Iterable[str] = (),
    days: float = 90,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    key_type: str = "ec",
    key: CertificateIssuerPrivateKeyTypes | None = None,
    serial: int | None = None,
    purpose: str = "server",
) -> Issued:
    """A TLS server (or, with ``purpose="client"``, client) certificate signed by ``issuer``
    (self-signed when None), with a fresh key.

    ``sans`` items are ``DNS:name``, ``IP:address``, ``email:address``, ``URI:uri`` or a bare
    name or address. ``cn=None`` leaves the CN out of the subject. For an expired certificate
    pass a ``not_after`` in the past; for a not-yet-valid one a ``not_before`` in the future.
    """
    start, end = _validity(not_before, not_after, days)
    leaf_key = key or new_key(key_type)
    usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=isinstance(leaf_key, rsa.RSAPrivateKey),
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    extensions: list[tuple[x509.ExtensionType, bool]] = [
        (x509.BasicConstraints(ca=False, path_length=None), True),
        (usage, True),
        (x509.ExtendedKeyUsage([_EXTENDED_USAGE[purpose]]), False),
    ]
    names = [_general_name(san) for san in sans]
    if names:
        extensions.append((x509.SubjectAlternativeName(names), False))
    return _issue(
        subject=_name(cn),
        key=leaf_key,
        issuer=issuer,
        not_before=start,
        not_after=end,
        serial=serial,
        extensions=extensions,
    )


def make_chain(
    cn: str = "www.example.com",
    *,
    sans: t.Iterable[str] | None = None,
    days: float = 90,
    key_type: str = "ec",
    root_cn: str = "CertAutoPilot Test Root CA",
    intermediate_cn: str = "CertAutoPilot Test Intermediate CA",
) -> Chain:
    """Root -> intermediate -> leaf. ``sans`` defaults to the CN. Same CNs give the same CA keys."""
    root = make_ca(root_cn, key_type=key_type)
    intermediate = make_intermediate(root, intermediate_cn, key_type=key_type)
    leaf = make_leaf(intermediate, cn, sans=(cn,) if sans is None else sans, days=days, key_type=key_type)
    return Chain(root=root, intermediate=intermediate, leaf=leaf)


def bundle(*issued: Issued) -> str:
    """The certificates' PEM, concatenated in the order given."""
    return "".join(item.cert_pem for item in issued)


def load_issued(cert_pem: str, key_pem_text: str) -> Issued:
    """An ``Issued`` from PEM text, e.g. a CA written by an earlier run."""
    key = serialization.load_pem_private_key(key_pem_text.encode("ascii"), password=None)
    return Issued(cert=x509.load_pem_x509_certificate(cert_pem.encode("ascii")), key=key)


def _load_or_make_ca(directory: pathlib.Path, name: str, make: t.Callable[[], Issued]) -> Issued:
    cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
    if cert_path.exists() and key_path.exists():
        return load_issued(cert_path.read_text(), key_path.read_text())
    issued = make()
    cert_path.write_text(issued.cert_pem)
    _write_private(key_path, issued.key_pem)
    return issued


def _write_private(path: pathlib.Path, text: str) -> None:
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(text)


def write_leaf(
    directory: str | pathlib.Path,
    cn: str,
    *,
    sans: t.Iterable[str] | None = None,
    days: float = 90,
    key_type: str = "ec",
) -> Issued:
    """Write ``cert.pem``, ``key.pem``, ``chain.pem`` and ``fullchain.pem`` for a new leaf to ``directory``.

    The root and intermediate CA are kept in the same directory (``root.pem``/``root.key``,
    ``intermediate.pem``/``intermediate.key``) and reused on the next call, so a second call is
    a renewal by the same CA.
    """
    out = pathlib.Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    root = _load_or_make_ca(out, "root", lambda: make_ca(key_type=key_type, key=new_key(key_type)))
    intermediate = _load_or_make_ca(
        out, "intermediate", lambda: make_intermediate(root, key_type=key_type, key=new_key(key_type))
    )
    leaf = make_leaf(intermediate, cn, sans=(cn,) if sans is None else sans, days=days, key_type=key_type)
    (out / "cert.pem").write_text(leaf.cert_pem)
    _write_private(out / "key.pem", leaf.key_pem)
    (out / "chain.pem").write_text(intermediate.cert_pem)
    (out / "fullchain.pem").write_text(leaf.cert_pem + intermediate.cert_pem)
    return leaf


def main(argv: t.Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write a test certificate, its key and chain to a directory.")
    parser.add_argument("directory")
    parser.add_argument("--cn", default="demo.example.com")
    parser.add_argument("--san", action="append", dest="sans", help="repeatable; default: the CN")
    parser.add_argument("--days", type=float, default=90)
    parser.add_argument("--key-type", choices=KEY_TYPES, default="ec")
    args = parser.parse_args(argv)
    leaf = write_leaf(args.directory, args.cn, sans=args.sans, days=args.days, key_type=args.key_type)
    print(f"{args.directory}/cert.pem: {leaf.subject}, serial {leaf.cert.serial_number:x}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

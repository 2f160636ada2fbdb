"""Credentials the integration tests log in with: a JWT signing key and small X.509 CAs.

These are identities for OpenBao's auth methods and listeners (JWT auth, TLS
cert auth, a server certificate for a config-file server). The certificates
that the collection distributes come from tests/support/pki.py instead.
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import time
import typing as t
import uuid

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _private_key_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


class JwtSigner:
    """An RSA key pair whose public half is OpenBao's `jwt_validation_pubkeys`."""

    def __init__(self) -> None:
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    @property
    def public_key_pem(self) -> str:
        return (
            self._key.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode()
        )

    def sign(self, *, sub: str, aud: str | list[str], ttl: int, **claims: t.Any) -> str:
        """An RS256 JWT valid from now for `ttl` seconds; `claims` add or override claims."""
        now = int(time.time())
        payload: dict[str, t.Any] = {
            "sub": sub,
            "aud": aud,
            "iat": now,
            "nbf": now - 5,
            "exp": now + ttl,
            "jti": str(uuid.uuid4()),
        }
        payload.update(claims)
        return jwt.encode(payload, self._key, algorithm="RS256")


@dataclasses.dataclass(frozen=True)
class IssuedCertificate:
    cert_pem: str
    key_pem: str


class CertificateAuthority:
    """A self-signed EC P-256 CA that issues TLS client and server certificates."""

    def __init__(self, common_name: str, *, days: int = 2) -> None:
        self._days = days
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = datetime.datetime.now(datetime.timezone.utc)
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(self._name)
            .issuer_name(self._name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), critical=False)
            .sign(self._key, hashes.SHA256())
        )

    @property
    def cert_pem(self) -> str:
        return self._cert.public_bytes(serialization.Encoding.PEM).decode()

    def issue_client(self, common_name: str) -> IssuedCertificate:
        return self._issue(common_name, usage=ExtendedKeyUsageOID.CLIENT_AUTH, sans=[])

    def issue_server(self, *hosts: str) -> IssuedCertificate:
        """A server certificate whose SANs are `hosts` (IP addresses or DNS names)."""
        sans: list[x509.GeneralName] = []
        for host in hosts:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                sans.append(x509.DNSName(host))
        return self._issue(hosts[0], usage=ExtendedKeyUsageOID.SERVER_AUTH, sans=sans)

    def _issue(
        self, common_name: str, *, usage: x509.ObjectIdentifier, sans: list[x509.GeneralName]
    ) -> IssuedCertificate:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self._name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=self._days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), critical=False)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        return IssuedCertificate(
            cert_pem=cert.public_bytes(serialization.Encoding.PEM).decode(),
            key_pem=_private_key_pem(key),
        )

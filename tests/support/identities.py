"""Credentials the integration tests log in with: a JWT signing key and small X.509 CAs.

These are identities for OpenBao's auth methods and listeners (JWT auth, TLS
cert auth, a server certificate for a config-file server). The certificates
that the collection distributes come from tests/support/pki.py instead.
"""

from __future__ import annotations

import dataclasses
import time
import typing as t
import uuid

import jwt
import pki
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


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
    """A self-signed EC P-256 CA with a key of its own that issues TLS client and server certificates."""

    def __init__(self, common_name: str, *, days: int = 2) -> None:
        self._days = days
        self._ca = pki.make_ca(common_name, key=pki.new_key(), days=days)

    @property
    def cert_pem(self) -> str:
        return self._ca.cert_pem

    def issue_client(self, common_name: str) -> IssuedCertificate:
        return self._issue(common_name, purpose="client")

    def issue_server(self, *hosts: str) -> IssuedCertificate:
        """A server certificate whose SANs are `hosts` (IP addresses or DNS names)."""
        return self._issue(hosts[0], sans=hosts, purpose="server")

    def _issue(self, common_name: str, *, purpose: str, sans: t.Sequence[str] = ()) -> IssuedCertificate:
        leaf = pki.make_leaf(self._ca, common_name, sans=sans, days=self._days, purpose=purpose)
        return IssuedCertificate(cert_pem=leaf.cert_pem, key_pem=leaf.key_pem)

# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cert_info filter: PEM certificate text to its metadata."""

from __future__ import annotations

DOCUMENTATION = r"""
name: cert_info
short_description: Read the metadata of a PEM certificate
version_added: 0.1.0
author:
  - CertAutoPilot team
description:
  - Parses one PEM-encoded X.509 certificate and returns its common name, subject alternative
    names, serial number, validity period, issuer, subject and SHA-256 fingerprint.
  - The same metadata that M(certautopilot.vault.vault_cert_push) returns in
    RV(certautopilot.vault.vault_cert_push#module:certificate), so a secret path or a report can be
    built from a certificate before it is pushed.
  - The input must hold exactly one certificate. A fullchain or a bundle is refused; pass the leaf
    certificate alone. Text around the PEM block, such as the C(subject=) lines that
    C(openssl x509) prints, is ignored.
  - Runs on the controller and needs nothing but the certificate text; it makes no request to Vault.
requirements:
  - cryptography >= 40.0 (Python library, on the controller)
options:
  _input:
    description:
      - PEM text of one X.509 certificate (C(-----BEGIN CERTIFICATE-----)).
      - To read a file, use P(ansible.builtin.file#lookup) or the RV(ansible.builtin.slurp#module:content)
        of M(ansible.builtin.slurp) after P(ansible.builtin.b64decode#filter).
    type: str
    required: true
seealso:
  - module: certautopilot.vault.vault_cert_push
"""

EXAMPLES = r"""
- name: Read the metadata of a certificate file on the controller
  ansible.builtin.set_fact:
    cert_meta: "{{ lookup('ansible.builtin.file', 'files/www.example.com.crt') | certautopilot.vault.cert_info }}"

- name: Show when it expires
  ansible.builtin.debug:
    msg: "{{ cert_meta.cn }} (serial {{ cert_meta.serial }}) expires on {{ cert_meta.not_after }}"

- name: Build a Vault secret path from the certificate's common name
  ansible.builtin.set_fact:
    cert_path: "certs/{{ (certificate_pem | certautopilot.vault.cert_info).cn }}"

- name: Fail when the certificate does not cover the host name
  ansible.builtin.assert:
    that:
      - inventory_hostname in (certificate_pem | certautopilot.vault.cert_info).sans
    fail_msg: "The certificate does not name {{ inventory_hostname }}"
"""

RETURN = r"""
_value:
  description: The certificate's metadata.
  type: dict
  contains:
    cn:
      description: The first common name (CN) of the subject; null when the subject has none.
      type: str
      returned: always
      sample: www.example.com
    sans:
      description:
        - Subject alternative names in certificate order, as text. DNS names, IP addresses,
          e-mail addresses and URIs; other name types are left out.
        - Empty when the certificate has no subject alternative name extension.
      type: list
      elements: str
      returned: always
      sample: ["www.example.com", "example.com", "192.0.2.10"]
    serial:
      description: Serial number as lowercase hex byte pairs separated by colons, as Vault PKI shows it.
      type: str
      returned: always
      sample: "3a:0f:5c:91:7e:22:04:d8"
    not_before:
      description: Start of the validity period, ISO 8601 in UTC.
      type: str
      returned: always
      sample: "2026-08-30T00:00:00Z"
    not_after:
      description: End of the validity period, ISO 8601 in UTC.
      type: str
      returned: always
      sample: "2026-11-28T00:00:00Z"
    issuer:
      description: Issuer distinguished name as an RFC 4514 string.
      type: str
      returned: always
      sample: "CN=Example Intermediate CA,O=Example"
    subject:
      description: Subject distinguished name as an RFC 4514 string.
      type: str
      returned: always
      sample: "CN=www.example.com,O=Example"
    fingerprint_sha256:
      description: SHA-256 of the certificate's DER encoding, lowercase hex without separators.
      type: str
      returned: always
      sample: "5f0c3e8a2b1d4e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7"
"""

import typing as t

from ansible.errors import AnsibleFilterError

from ansible_collections.certautopilot.vault.plugins.module_utils._certs import (
    CRYPTOGRAPHY_REQUIREMENT,
    HAS_CRYPTOGRAPHY,
    certificate_info,
)
from ansible_collections.certautopilot.vault.plugins.module_utils._errors import VaultCertError


def cert_info(pem: str) -> dict[str, t.Any]:
    """PEM certificate text -> metadata dict (see RETURN)."""
    if not HAS_CRYPTOGRAPHY:
        raise AnsibleFilterError(f"cert_info needs the Python library {CRYPTOGRAPHY_REQUIREMENT} on the controller")
    if not isinstance(pem, str):
        raise AnsibleFilterError(f"cert_info expects PEM text, got {type(pem).__name__}")
    try:
        return certificate_info(pem)
    except VaultCertError as exc:
        raise AnsibleFilterError(str(exc)) from exc


class FilterModule:
    """The collection's certificate filters."""

    def filters(self) -> dict[str, t.Callable[..., t.Any]]:
        return {"cert_info": cert_info}

# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The with_remote_files filter: a certificate list with its files' text, read on a managed host, inline."""

from __future__ import annotations

DOCUMENTATION = r"""
name: with_remote_files
short_description: Put the text of files read on a managed host into a certificate list as the inline options
version_added: 0.3.0
author:
  - CertAutoPilot team
description:
  - Returns the certificate list with each C(certificate_file), C(chain_file) and C(private_key_file) read on the
    host replaced by C(certificate), C(chain) and C(private_key) - only what the option names (the PEM
    certificates of a certificate or chain file, the one private key of a key file), as the controller's reader
    gives it.
  - A file option that was not read (O(include_chain=false), O(include_private_key=false)) is left out, and with
    O(include_private_key=false) so is an inline C(private_key).
  - B(The result holds private keys) - set it in a task with C(no_log). Judge the files with
    P(certautopilot.vault.remote_file_refusals#filter) first; a file refused here fails the template, naming
    the option and item.
  - Used by the P(certautopilot.vault.cert_distribution#role) role's C(cert_distribution_remote_files). Runs on
    the controller.
options:
  _input:
    description: The certificate list.
    type: list
    elements: dict
    required: true
  reads:
    description: The entries of P(certautopilot.vault.remote_file_reads#filter).
    type: list
    elements: dict
    required: true
  slurps:
    description: The registered loop of M(ansible.builtin.slurp) over the paths looked at.
    type: raw
    required: true
  real_paths:
    description: The registered loop of C(realpath), when a root confines the files.
    type: raw
  include_chain:
    description: Whether the chain files were read.
    type: bool
    default: true
  include_private_key:
    description: Whether the key files were read.
    type: bool
    default: true
seealso:
  - plugin: certautopilot.vault.remote_file_reads
    plugin_type: filter
  - plugin: certautopilot.vault.remote_file_refusals
    plugin_type: filter
"""

EXAMPLES = r"""
- name: The list with the host's files inline
  ansible.builtin.set_fact:
    certs_read: "{{ certs | certautopilot.vault.with_remote_files(reads=reads, slurps=slurped) }}"
  no_log: true
"""

RETURN = r"""
_value:
  description: The certificate list, each item a copy with its files' text inline.
  type: list
  elements: dict
"""

import typing as t

from ansible.errors import AnsibleFilterError

from ansible_collections.certautopilot.vault.plugins.module_utils._errors import VaultCertError
from ansible_collections.certautopilot.vault.plugins.plugin_utils._remote_files import with_texts


def with_remote_files(
    certs: t.Any,
    reads: list[dict[str, t.Any]],
    slurps: t.Any,
    real_paths: t.Any = None,
    include_chain: bool = True,
    include_private_key: bool = True,
) -> list[dict[str, t.Any]]:
    """A certificate list and the host's files -> the list with the files' text inline (see RETURN)."""
    if not isinstance(certs, (list, tuple)):
        raise AnsibleFilterError("with_remote_files expects the certificate list")
    try:
        return with_texts(
            certs,
            reads,
            slurps=slurps,
            real_paths=real_paths,
            include_chain=bool(include_chain),
            include_private_key=bool(include_private_key),
        )
    except VaultCertError as exc:
        raise AnsibleFilterError(str(exc)) from None


class FilterModule:
    def filters(self) -> dict[str, t.Callable[..., t.Any]]:
        return {"with_remote_files": with_remote_files}

# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The remote_file_reads filter: the files a certificate list names, to be read on a managed host."""

from __future__ import annotations

DOCUMENTATION = r"""
name: remote_file_reads
short_description: The files a certificate list names, as the managed host is to read them
version_added: 0.3.0
author:
  - CertAutoPilot team
description:
  - Takes a certificate list (the items of P(certautopilot.vault.cert_batch#lookup)) and returns one entry per
    file it names in C(certificate_file), C(chain_file) (a path or a list of paths) and C(private_key_file).
  - Each entry has C(name) (the option and item, for messages - C(cert_distribution_certs[2].private_key_file)),
    C(index), C(option), C(listed), C(kind) and C(path), the path on the host - taken from O(files_root) when it is
    relative. Without O(files_root) a relative path is refused, naming the option and item.
  - A path holding a line break or a PEM marker (C(-----)) - a key pasted into the wrong option - is refused,
    naming the option and item, never the value. Nothing guesses from a value's shape; a one-line secret pasted
    there is taken as a path, never shown, and refused when no such file exists.
  - The P(certautopilot.vault.cert_distribution#role) role's C(cert_distribution_remote_files) uses it with
    P(certautopilot.vault.remote_file_refusals#filter) and P(certautopilot.vault.with_remote_files#filter).
    Runs on the controller.
options:
  _input:
    description: The certificate list.
    type: list
    elements: dict
    required: true
  files_root:
    description: The directory on the host that every file must lie in (judged later, on what the host resolves).
    type: str
  include_chain:
    description: Whether to read the chain files.
    type: bool
    default: true
  include_private_key:
    description: Whether to read the key files.
    type: bool
    default: true
  items_name:
    description: How messages name the list.
    type: str
    default: cert_distribution_certs
seealso:
  - plugin: certautopilot.vault.remote_file_refusals
    plugin_type: filter
  - plugin: certautopilot.vault.with_remote_files
    plugin_type: filter
"""

EXAMPLES = r"""
- name: The files to read on this host
  ansible.builtin.set_fact:
    reads: "{{ certs | certautopilot.vault.remote_file_reads(files_root='/etc/letsencrypt') }}"
"""

RETURN = r"""
_value:
  description: One entry per file, in list order.
  type: list
  elements: dict
"""

import typing as t

from ansible.errors import AnsibleFilterError

from ansible_collections.certautopilot.vault.plugins.module_utils._errors import VaultCertError
from ansible_collections.certautopilot.vault.plugins.plugin_utils._remote_files import planned_reads


def remote_file_reads(
    certs: t.Any,
    files_root: str | None = None,
    include_chain: bool = True,
    include_private_key: bool = True,
    items_name: str = "cert_distribution_certs",
) -> list[dict[str, t.Any]]:
    """A certificate list -> the files a host reads for it (see RETURN)."""
    try:
        return planned_reads(
            certs,
            files_root=files_root or None,
            include_chain=bool(include_chain),
            include_private_key=bool(include_private_key),
            items_name=items_name,
        )
    except VaultCertError as exc:
        raise AnsibleFilterError(str(exc)) from None


class FilterModule:
    def filters(self) -> dict[str, t.Callable[..., t.Any]]:
        return {"remote_file_reads": remote_file_reads}

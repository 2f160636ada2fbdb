# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The remote_file_refusals filter: why files a managed host showed may not be, or were not rightly, read."""

from __future__ import annotations

DOCUMENTATION = r"""
name: remote_file_refusals
short_description: Judge the files a managed host found by the controller's rules for file options
version_added: 0.3.0
author:
  - CertAutoPilot team
description:
  - Takes the entries of P(certautopilot.vault.remote_file_reads#filter) and what the host showed of them, and
    returns one message per file that is refused, naming the option and item, never the path or the file's text.
    An empty list means every file may be (or was rightly) read.
  - With O(stats) (the registered loop of M(ansible.builtin.stat) over the paths looked at), before the files are
    read - missing, not a regular file, larger than 1 MiB, unreadable.
  - With O(real_root) (the registered run of C(realpath -e -- <root>/.)) and O(real_paths) (the registered loop
    of C(realpath -e --) over the entries' paths), every file must resolve (symlinks and C(..)) inside the root,
    as the controller's C(files_root) rule has it.
  - With O(slurps) (the registered loop of M(ansible.builtin.slurp)), after - a certificate or chain file must
    hold PEM certificates and nothing else of PEM, a key file exactly one private key, as on the controller.
  - Used by the P(certautopilot.vault.cert_distribution#role) role's C(cert_distribution_remote_files). Runs on
    the controller.
options:
  _input:
    description: The entries of P(certautopilot.vault.remote_file_reads#filter).
    type: list
    elements: dict
    required: true
  stats:
    description: The registered loop of M(ansible.builtin.stat).
    type: raw
  real_paths:
    description: The registered loop of C(realpath), when a root confines the files.
    type: raw
  real_root:
    description: The registered C(realpath) run for the root; its presence means a root confines the files.
    type: raw
  slurps:
    description: The registered loop of M(ansible.builtin.slurp).
    type: raw
seealso:
  - plugin: certautopilot.vault.remote_file_reads
    plugin_type: filter
  - plugin: certautopilot.vault.with_remote_files
    plugin_type: filter
"""

EXAMPLES = r"""
- name: Refuse files that are missing or not regular files
  ansible.builtin.fail:
    msg: "{{ refused | join('; ') }}"
  vars:
    refused: "{{ reads | certautopilot.vault.remote_file_refusals(stats=found) }}"
  when: refused | length > 0
"""

RETURN = r"""
_value:
  description: One message per refused file, in list order.
  type: list
  elements: str
"""

import typing as t

from ansible_collections.certautopilot.vault.plugins.plugin_utils._remote_files import refusals


def remote_file_refusals(
    reads: list[dict[str, t.Any]],
    stats: t.Any = None,
    real_paths: t.Any = None,
    real_root: t.Any = None,
    slurps: t.Any = None,
) -> list[str]:
    """The entries and what the host showed -> the refusals (see RETURN)."""
    return refusals(reads, stats=stats, real_paths=real_paths, real_root=real_root, slurps=slurps)


class FilterModule:
    def filters(self) -> dict[str, t.Callable[..., t.Any]]:
        return {"remote_file_refusals": remote_file_refusals}

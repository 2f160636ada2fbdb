# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The prune_targets filter: an owner's inventory to the secrets list of vault_cert_retire."""

from __future__ import annotations

DOCUMENTATION = r"""
name: prune_targets
short_description: Choose, from an inventory, the secrets of one owner that a push no longer delivers
version_added: 0.2.0
author:
  - CertAutoPilot team
description:
  - Takes the RV(certautopilot.vault.vault_cert_info#module:certificates) of an inventory run with
    O(certautopilot.vault.vault_cert_info#module:owner) and returns the
    O(certautopilot.vault.vault_cert_retire#module:secrets) list that retires every secret marked with O(owner)
    whose path is not one of O(delivered), each guarded by the version the inventory read.
  - A secret is chosen only when its entry says both C(managed) and C(owner) equal to O(owner); a secret without
    the mark, marked with another owner, or one the token may not read is never chosen.
  - A marked secret whose name is not a valid secret path (whitespace, a control character, an empty or C(..)
    segment, ...) is left out and named in a warning, so that one odd name does not stop the rest.
  - The P(certautopilot.vault.cert_distribution#role) role's prune uses it. Runs on the controller; it makes no
    request to Vault.
options:
  _input:
    description: The inventory's C(certificates) (each with C(path), C(version), C(managed) and C(owner)).
    type: list
    elements: dict
    required: true
  owner:
    description: The owner whose secrets are chosen.
    type: str
    required: true
  delivered:
    description: The secret paths that stay - every path the push meant to deliver.
    type: list
    elements: str
    required: true
seealso:
  - module: certautopilot.vault.vault_cert_info
  - module: certautopilot.vault.vault_cert_retire
"""

EXAMPLES = r"""
- name: Retire team-a's secrets under certs/team-a that this run did not deliver
  certautopilot.vault.vault_cert_retire:
    owner: team-a
    secrets: "{{ inventory.certificates | certautopilot.vault.prune_targets(owner='team-a', delivered=paths) }}"
"""

RETURN = r"""
_value:
  description: The secrets to retire, in inventory order.
  type: list
  elements: dict
  contains:
    path:
      description: The secret path.
      type: str
      returned: always
    current_version:
      description: The version the inventory read; the retirement refuses a secret written since.
      type: int
      returned: always
"""

import typing as t

from ansible.errors import AnsibleFilterError
from ansible.utils.display import Display

from ansible_collections.certautopilot.vault.plugins.module_utils import _kv2
from ansible_collections.certautopilot.vault.plugins.module_utils._errors import VaultCertError

display = Display()


def prune_targets(certificates: t.Any, owner: t.Any, delivered: t.Any) -> list[dict[str, t.Any]]:
    """Inventory entries -> vault_cert_retire secrets (see RETURN); odd names are warned about, not returned."""
    if not isinstance(certificates, (list, tuple)) or not all(
        isinstance(entry, dict) and "path" in entry for entry in certificates
    ):
        raise AnsibleFilterError(
            "prune_targets expects the certificates of an inventory, each a dictionary with a path"
        )
    if not isinstance(owner, str) or not owner:
        raise AnsibleFilterError("prune_targets needs owner, the owner whose secrets are pruned")
    if not isinstance(delivered, (list, tuple)):
        raise AnsibleFilterError("prune_targets needs delivered, the list of secret paths that stay")
    stay = set(delivered)
    ours = [
        entry
        for entry in certificates
        if entry.get("managed") and entry.get("owner") == owner and entry["path"] not in stay
    ]
    skipped = [entry["path"] for entry in ours if not is_valid_path(entry["path"])]
    if skipped:
        display.warning(skipped_warning(skipped))
    return [
        {"path": entry["path"], "current_version": entry.get("version")}
        for entry in ours
        if entry["path"] not in skipped
    ]


def is_valid_path(path: t.Any) -> bool:
    """Whether vault_cert_retire would take ``path``; the rules are the library's, not repeated here."""
    try:
        _kv2.validate_path(path)
    except VaultCertError:
        return False
    return True


def skipped_warning(paths: t.Sequence[str]) -> str:
    # Names from the server's listing, not a value of the task: what `bao kv list` shows anyone who may list them,
    # and the only way to find them. repr shows whitespace and control characters as escapes.
    named = ", ".join(repr(path) for path in paths)
    return (
        f"prune left out {len(paths)} secret(s) marked with this owner whose name is not a valid secret path "
        f"(whitespace, a control character, or an empty, '.' or '..' segment): {named}. Retire them by hand."
    )


class FilterModule:
    """Choosing what a prune retires."""

    def filters(self) -> dict[str, t.Callable[..., t.Any]]:
        return {"prune_targets": prune_targets}

# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rollback_targets filter: recorded push results to the secrets list of vault_cert_rollback."""

from __future__ import annotations

DOCUMENTATION = r"""
name: rollback_targets
short_description: Turn recorded push results into the secrets that undo that push
version_added: 0.2.0
author:
  - CertAutoPilot team
description:
  - Takes the RV(certautopilot.vault.vault_cert_push#module:results) of a batch push (or a list of single push
    results, or the C(cert_distribution_results) fact of the P(certautopilot.vault.cert_distribution#role) role)
    and returns the O(certautopilot.vault.vault_cert_rollback#module:secrets) list that undoes exactly that push.
  - Each result that wrote a new version goes back to its C(previous_version), guarded by the C(version) it left
    (O(guard)), so a secret someone wrote to since is refused instead of overwritten.
  - Results that have nothing to undo are left out - the push created the secret (C(previous_version) null),
    changed nothing, or wrote only its metadata (C(version) equal to C(previous_version)).
  - An item without C(previous_version) (a certificate batch item, say) becomes a plain C({path}) - roll back to
    the newest earlier live version.
  - Runs on the controller; it makes no request to Vault.
options:
  _input:
    description: Recorded push results (each with C(path), C(version), C(previous_version), C(changed)).
    type: list
    elements: dict
    required: true
  guard:
    description: Add C(current_version) (the version the push left) to each target.
    type: bool
    default: true
seealso:
  - module: certautopilot.vault.vault_cert_rollback
"""

EXAMPLES = r"""
- name: Undo a batch push, secret by secret, in one run
  certautopilot.vault.vault_cert_rollback:
    secrets: "{{ pushed.results | certautopilot.vault.rollback_targets }}"

- name: The same without the guard (a secret written since is rolled back too)
  ansible.builtin.debug:
    msg: "{{ pushed.results | certautopilot.vault.rollback_targets(guard=false) }}"
"""

RETURN = r"""
_value:
  description: The secrets to roll back, in input order.
  type: list
  elements: dict
  contains:
    path:
      description: The secret path.
      type: str
      returned: always
    version:
      description: The version to restore (the push's C(previous_version)).
      type: int
      returned: for a recorded push result
    current_version:
      description: The version the push left; the rollback refuses to act when the secret moved on.
      type: int
      returned: for a recorded push result with O(guard)
"""

import typing as t

from ansible.errors import AnsibleFilterError

from ansible_collections.certautopilot.vault.plugins.module_utils._rollback import targets_from_results


def rollback_targets(recorded: t.Any, guard: bool = True) -> list[dict[str, t.Any]]:
    """Recorded push results -> vault_cert_rollback secrets (see RETURN)."""
    if not isinstance(recorded, (list, tuple)) or not all(
        isinstance(entry, dict) and "path" in entry for entry in recorded
    ):
        raise AnsibleFilterError("rollback_targets expects a list of push results, each a dictionary with a path")
    return targets_from_results(recorded, guard=guard)


class FilterModule:
    """Choosing what a rollback restores."""

    def filters(self) -> dict[str, t.Callable[..., t.Any]]:
        return {"rollback_targets": rollback_targets}

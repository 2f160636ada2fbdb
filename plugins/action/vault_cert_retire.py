# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The controller half of vault_cert_retire (documented with the module)."""

from __future__ import annotations

from ansible_collections.certautopilot.vault.plugins.plugin_utils._action import ModuleAction


class ActionModule(ModuleAction):
    pass

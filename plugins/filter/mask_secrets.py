# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The mask_secrets filter: text (or data) with PEM private keys and given secrets masked."""

from __future__ import annotations

DOCUMENTATION = r"""
name: mask_secrets
short_description: Mask PEM private keys and given secrets in text before it is shown
version_added: 0.2.0
author:
  - CertAutoPilot team
description:
  - Returns the input with every PEM private key block (truncated ones included, found by its BEGIN and END lines;
    each of its base64 lines too, however the lines are joined) and every one of O(secrets) replaced by
    C(********), with Ansible's own masking of C(no_log) values.
  - It guesses nothing - a token, a JWT or a key without its PEM lines is masked only when given in O(secrets).
  - Strings inside lists and dictionaries are masked too; a string that is a secret as a whole becomes
    C(VALUE_SPECIFIED_IN_NO_LOG_PARAMETER).
  - For text that no C(no_log) covers before it is printed - an error message that quotes a refused value, say.
    The P(certautopilot.vault.cert_distribution#role) role shows its argument validation errors through it.
  - Runs on the controller; it makes no request to Vault.
options:
  _input:
    description: The text, or a list or dictionary holding text.
    type: raw
    required: true
  secrets:
    description: Further values to mask wherever they appear (empty ones and non-strings are ignored).
    type: list
    elements: str
    default: []
"""

EXAMPLES = r"""
- name: Show why a task failed without echoing a credential it quoted
  ansible.builtin.debug:
    msg: "{{ result.msg | certautopilot.vault.mask_secrets(secrets=[vault_secret_id]) }}"
"""

RETURN = r"""
_value:
  description: The input with every secret found replaced by C(********); the same type as the input.
  type: raw
"""

import typing as t

from ansible_collections.certautopilot.vault.plugins.module_utils._redaction import mask_secrets as _masked


def mask_secrets(value: t.Any, secrets: t.Any = ()) -> t.Any:
    """Data -> the same data with secrets masked (see DOCUMENTATION)."""
    if isinstance(secrets, str) or not isinstance(secrets, (list, tuple)):
        secrets = [secrets]
    return _masked(value, [secret for secret in secrets if isinstance(secret, str) and secret])


class FilterModule:
    """Keeping secrets out of what a play prints."""

    def filters(self) -> dict[str, t.Callable[..., t.Any]]:
        return {"mask_secrets": mask_secrets}

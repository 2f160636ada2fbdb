# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The secret_paths filter: the secret(s) each certificate path becomes in a layout."""

from __future__ import annotations

DOCUMENTATION = r"""
name: secret_paths
short_description: The secrets a list of certificate paths becomes in a layout
version_added: 0.2.0
author:
  - CertAutoPilot team
description:
  - Takes the paths of certificates, as given to M(certautopilot.vault.vault_cert_push), and returns every secret
    path the push writes for them in O(layout) - the path itself, or for V(acme_sh) the secrets below it
    (C(cert.pem), C(cert.key), C(ca.pem), C(fullchain.pem); no C(cert.key) without the private key).
  - The collection's one list of what each layout writes, which the P(certautopilot.vault.cert_distribution#role)
    role asks instead of naming the files itself.
  - Runs on the controller; it makes no request to Vault.
options:
  _input:
    description: The certificate paths.
    type: list
    elements: str
    required: true
  layout:
    description: The layout of the push (O(certautopilot.vault.vault_cert_push#module:layout)).
    type: str
    default: default
  include_private_key:
    description:
      - Whether the push writes the private key (O(certautopilot.vault.vault_cert_push#module:include_private_key)).
    type: bool
    default: true
seealso:
  - module: certautopilot.vault.vault_cert_push
"""

EXAMPLES = r"""
- name: The four secrets acme.sh's Vault deploy hook reads, for each certificate
  ansible.builtin.debug:
    msg: "{{ ['certs/www.example.com'] | certautopilot.vault.secret_paths(layout='acme_sh') }}"
"""

RETURN = r"""
_value:
  description: The secret paths, in input order (a certificate's secrets together, in the layout's order).
  type: list
  elements: str
"""

import typing as t

from ansible.errors import AnsibleFilterError

from ansible_collections.certautopilot.vault.plugins.module_utils import _layouts


def secret_paths(paths: t.Any, layout: str = _layouts.DEFAULT, include_private_key: bool = True) -> list[str]:
    """Certificate paths -> the secret paths the push writes (see RETURN)."""
    if not isinstance(paths, (list, tuple)) or not all(isinstance(path, str) for path in paths):
        raise AnsibleFilterError("secret_paths expects a list of certificate paths (strings)")
    if layout not in _layouts.LAYOUTS:
        raise AnsibleFilterError(f"secret_paths: layout must be one of {', '.join(_layouts.LAYOUTS)}")
    return [
        secret
        for path in paths
        for secret in _layouts.of(layout).secret_paths(path, include_private_key=bool(include_private_key))
    ]


class FilterModule:
    def filters(self) -> dict[str, t.Callable[..., t.Any]]:
        return {"secret_paths": secret_paths}

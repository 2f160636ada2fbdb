#!/usr/bin/python
# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: vault_health
short_description: Check a Vault / OpenBao server and what certificate delivery needs from it
version_added: 0.1.0
extends_documentation_fragment:
  - certautopilot.vault.connection
  - certautopilot.vault.connection.reader
description:
  - Never changes anything.
  - Calls C(sys/health); standby and sealed answers are read, not raised.
  - It logs in as the other modules of the collection do (the same O(auth_method) default and
    E(VAULT_AUTH_METHOD) fallback), so one setting serves them all;
    O(auth_method=none) checks the server alone. With O(mount) it checks that the mount exists
    and is KV v2; with O(path) too it checks the token's capabilities on C(<mount>/data/<path>)
    (C(sys/capabilities-self)) - C(read), C(create) and C(update), what a push needs - and reads C(max_versions)
    where it can (the secret's metadata, then C(<mount>/config)).
  - Fails when the server is sealed or uninitialized, or when any check fails; C(msg) says which.
options:
  auth_method:
    description:
      - How to log in, as for the writers; V(none) only reads C(sys/health), with no login.
      - Falls back to E(VAULT_AUTH_METHOD). Without either, V(token) when a token is given (O(token) or
        E(VAULT_TOKEN)) and no credential of another login (O(role_id), O(secret_id), O(jwt), O(jwt_file)) is given,
        even empty, else V(approle) - a E(VAULT_TOKEN) in the environment never stands in for the login a task asked
        for.
      - Until 0.2.0 the default was V(none).
    type: str
    choices: [none, approle, jwt, cert, token]
  mount:
    description:
      - The KV v2 mount to check.
      - Defaults to V(secret) when O(path) is given, as in every other module of the collection; without O(path)
        and O(mount) the mount is not checked.
    type: str
    aliases: [engine_mount_point]
  path:
    description:
      - A secret path below O(mount) to check capabilities on; any example path under the pattern the policy grants.
    type: str
  check_rollback:
    description:
      - Also check what rollback needs - C(read) and C(update) on C(<mount>/data/<path>), C(read) on
        C(<mount>/metadata/<path>).
    type: bool
    default: false
  min_versions:
    description:
      - Fail when the secret's or the mount's C(max_versions) keeps fewer versions than this (C(0) means 10),
        or when neither can be read.
    type: int
  standby_ok:
    description:
      - Whether a standby node counts as healthy.
    type: bool
    default: true
"""

EXAMPLES = r"""
# Environment-specific values are variables here: vault_url (https://vault.example.com:8200), vault_ca_cert (the CA
# of Vault's TLS certificate, a path or PEM text), vault_role_id, and vault_secret_id from Ansible Vault or an AWX
# credential. Left out, they fall back to VAULT_ADDR, VAULT_CACERT, VAULT_ROLE_ID and VAULT_SECRET_ID.

- name: Is the server up, unsealed and initialized? (no login)
  certautopilot.vault.vault_health:
    url: "{{ vault_url }}"
    ca_cert: "{{ vault_ca_cert }}"
    auth_method: none

- name: Can this AppRole push and roll back certs/example.com?
  certautopilot.vault.vault_health:
    url: "{{ vault_url }}"
    ca_cert: "{{ vault_ca_cert }}"
    auth_method: approle
    role_id: "{{ vault_role_id }}"
    secret_id: "{{ vault_secret_id }}"
    mount: secret
    path: certs/example.com
    check_rollback: true
  register: health

- name: Show what the token may do on that path
  ansible.builtin.debug:
    msg: "{{ health.capabilities }} on secret/data/certs/example.com (server {{ health.server_version }})"

# min_versions reads max_versions from the secret's metadata (read on secret/metadata/certs/*, in the product's
# sample policy). A secret without its own setting (0) keeps the mount's: that needs read on secret/config too,
# which the sample policy does not grant.
- name: Does the existing secret keep at least 10 versions, enough for the rollback window?
  certautopilot.vault.vault_health:
    url: "{{ vault_url }}"
    ca_cert: "{{ vault_ca_cert }}"
    auth_method: approle
    role_id: "{{ vault_role_id }}"
    secret_id: "{{ vault_secret_id }}"
    mount: secret
    path: certs/example.com
    min_versions: 10
"""

RETURN = r"""
initialized:
  description: Whether the server is initialized.
  returned: when sys/health answered
  type: bool
sealed:
  description: Whether the server is sealed.
  returned: when sys/health answered
  type: bool
standby:
  description: Whether the node answering is a standby.
  returned: when sys/health answered
  type: bool
server_version:
  description: The server's version.
  returned: when sys/health answered
  type: str
  sample: 2.7.2
cluster_name:
  description: The cluster's name.
  returned: when sys/health answered
  type: str
kv_version:
  description: The KV version of O(mount).
  returned: when O(mount) was checked
  type: int
  sample: 2
capabilities:
  description: The token's capabilities on C(<mount>/data/<path>).
  returned: when O(path) was checked
  type: list
  elements: str
  sample: [create, patch, read, update]
max_versions:
  description: How many versions the secret keeps (the secret's setting, else the mount's; 0 read as 10).
  returned: when known
  type: int
  sample: 10
checks:
  description: Each check made, in order.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The check's name (C(server), C(login), C(mount), C(push_capabilities), C(rollback_capabilities),
        C(rollback_metadata), C(max_versions); a step that failed with an error is named
        C(login), C(mount), C(capabilities) or C(max_versions)).
      type: str
    ok:
      description: Whether it passed.
      type: bool
    msg:
      description: What was found.
      type: str
"""

from ansible_collections.certautopilot.vault.plugins.module_utils import _health
from ansible_collections.certautopilot.vault.plugins.module_utils._errors import VaultCertError
from ansible_collections.certautopilot.vault.plugins.module_utils._kv2 import validate_path, validate_secret_path
from ansible_collections.certautopilot.vault.plugins.module_utils._module import (
    DEFAULT_MOUNT,
    PUSH_AUTH_METHODS,
    VaultModule,
)


def argument_spec() -> dict:
    return {
        "mount": {"type": "str", "aliases": ["engine_mount_point"]},
        "path": {"type": "str"},
        "check_rollback": {"type": "bool", "default": False},
        "min_versions": {"type": "int"},
        "standby_ok": {"type": "bool", "default": True},
    }


def check(vault: VaultModule) -> dict:
    params = vault.params
    # As in every other module, a path is below the mount secret unless told otherwise.
    mount = params["mount"] or (DEFAULT_MOUNT if params["path"] else None)
    if mount:
        validate_path(mount, what="mount")
    if params["path"]:
        validate_secret_path(mount, params["path"])
    elif params["check_rollback"]:
        raise VaultCertError("check_rollback needs path")
    request = _health.HealthRequest(
        mount=mount,
        path=params["path"],
        check_rollback=params["check_rollback"],
        min_versions=params["min_versions"],
        standby_ok=params["standby_ok"],
        authenticated=params["auth_method"] != "none",
    )
    with vault.session(login=False) as client:
        return _health.run_checks(client, request, vault.log_in)


def main() -> None:
    vault = VaultModule(
        argument_spec=argument_spec(),
        auth_methods=("none",) + PUSH_AUTH_METHODS,
    )
    vault.run(lambda: check(vault))


if __name__ == "__main__":
    main()

#!/usr/bin/python
# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: vault_cert_rollback
short_description: Roll a KV v2 certificate secret back to an earlier version
version_added: 0.1.0
extends_documentation_fragment:
  - certautopilot.vault.connection
  - certautopilot.vault.connection.writer
description:
  - Restores the data of an earlier version of a KV v2 secret as a new current version, as
    C(vault kv rollback -version=N) (or C(bao kv rollback)) does - same new version number, same data - so the
    history records the round trip.
  - The write is a normal KV v2 write (POST to C(<mount>/data/<path>), the C(update) capability that a push
    already needs) with check-and-set against the current version. It also removes keys the target version did
    not have.
  - Refuses, writing nothing and naming the version, a target that does not exist or was pruned (below the
    secret's oldest kept version), is deleted (including a deletion scheduled by C(delete_version_after)),
    is destroyed, or is the current version; and a secret with no earlier live version.
    A soft-deleted current version does not block a rollback.
  - When the current data already equals the target's data, nothing is written and C(changed) is V(false),
    so a rollback with an explicit O(version) is idempotent. Without O(version), the module warns that running
    it again rolls back further.
  - When the secret's custom metadata holds the certificate record a push with
    O(certautopilot.vault.vault_cert_push#module:custom_metadata=true) writes (C(cn), C(serial), C(not_after),
    C(fingerprint_sha256)), it is updated to describe the restored certificate, keeping every other key. It is
    written before the data, so a token without C(update) on C(<mount>/metadata/<path>) is refused with nothing
    written; a refused data write sets it back.
  - On servers that report C(current_metadata_version) (OpenBao 2.x) that metadata write carries C(metadata_cas)
    from the metadata read the rollback decided on, so custom metadata another writer changed since is never
    overwritten (the rollback fails, nothing written).
  - Ownership, as P(certautopilot.vault.vault_cert_push#module) has it - a secret whose custom metadata names an
    owner (C(certautopilot_owner), the mark a push with O(owner) writes) is refused, writing nothing, unless
    O(owner) names that same owner; without O(owner), a secret whose mark names any owner is refused
    (C(owned by X - give owner X or another path)). The mark is read from the metadata read the rollback decides
    on - no request more. The rollback never writes or changes a mark.
  - A check-and-set conflict (someone wrote in between) fails, writing nothing; it is never re-decided, since a
    new decision could undo the other writer's version. Custom metadata the rollback had already written is set
    back under the same guard; when another writer changed it since, or the server offers no metadata
    check-and-set (HashiCorp Vault), it is left as written and the error says so instead of "nothing written".
  - O(secrets) rolls back a batch in one run - one login, one mount check - with the failure report of a
    P(certautopilot.vault.vault_cert_push#module) batch - RV(results), RV(failed_path), RV(not_written),
    RV(outcome_unknown).
  - Request budget - one login and one mount check per run; per secret one metadata read, two version reads
    and, when changed, one write; plus the token revocation.
options:
  secrets:
    description:
      - A batch - each item a secret to roll back, with its own O(secrets[].version) and
        O(secrets[].current_version); mutually exclusive with O(path), O(version) and O(current_version).
      - The items are rolled back in order; the first that fails stops the run (see RV(failed_path)).
      - Two items for one path are refused before any request. An empty list does nothing and sends no request
        but the login.
      - The filter P(certautopilot.vault.rollback_targets#filter) turns recorded push results into this list.
    type: list
    elements: dict
    suboptions:
      path:
        description: The secret to roll back, checked as O(path) is.
        required: true
        type: str
      version:
        description: As O(version), for this secret.
        type: int
      current_version:
        description: As O(current_version), for this secret.
        type: int
  version:
    description:
      - The version whose data to restore.
      - Default - the newest version below the current one that is neither deleted nor destroyed.
    type: int
  current_version:
    description:
      - Guard - roll back only while the current version is still this one
        (the RV(certautopilot.vault.vault_cert_push#module:version) a push returned); otherwise fail, writing nothing.
      - With an explicit O(version) whose data is already the current data, a mismatching guard is not an error -
        that rollback already happened, and the module reports ok. Re-running a recorded rollback is safe.
    type: int
  owner:
    description:
      - The owner whose secrets these are, as given to P(certautopilot.vault.vault_cert_push#module) - 1 to 64
        characters of C(A-Za-z0-9._-), refused otherwise before any request.
      - A secret marked with another owner is refused, writing nothing; without O(owner), a secret marked with
        any owner is.
    type: str
seealso:
  - module: certautopilot.vault.vault_cert_push
  - plugin: certautopilot.vault.rollback_targets
    plugin_type: filter
"""

EXAMPLES = r"""
# Environment-specific values are variables here: vault_url (https://vault.example.com:8200), vault_ca_cert (the CA
# of Vault's TLS certificate, a path or PEM text), vault_role_id, and vault_secret_id, vault_token from Ansible
# Vault or an AWX credential. Left out, they fall back to VAULT_ADDR, VAULT_CACERT, VAULT_ROLE_ID, VAULT_SECRET_ID
# and VAULT_TOKEN.

- name: Push a renewed certificate
  certautopilot.vault.vault_cert_push:
    url: "{{ vault_url }}"
    ca_cert: "{{ vault_ca_cert }}"
    role_id: "{{ vault_role_id }}"
    secret_id: "{{ vault_secret_id }}"
    path: certs/example.com
    certificate: "{{ lookup('ansible.builtin.file', 'example.com.crt') }}"
    private_key: "{{ lookup('ansible.builtin.file', 'example.com.key') }}"
  register: pushed

# Nothing to go back to when the push created the secret (previous_version is null) or wrote only its
# metadata (custom_metadata: version equals previous_version).
- name: Undo exactly that push, unless someone wrote after it
  certautopilot.vault.vault_cert_rollback:
    url: "{{ vault_url }}"
    ca_cert: "{{ vault_ca_cert }}"
    role_id: "{{ vault_role_id }}"
    secret_id: "{{ vault_secret_id }}"
    path: certs/example.com
    version: "{{ pushed.previous_version }}"
    current_version: "{{ pushed.version }}"
  when: pushed.changed and pushed.previous_version is not none and pushed.version != pushed.previous_version
  register: undone

- name: Show the round trip in the version history
  ansible.builtin.debug:
    msg: "version {{ undone.version }} holds the data of version {{ undone.restored_version }}"
  when: undone.restored_version is defined

- name: Push a batch of certificates
  certautopilot.vault.vault_cert_push:
    url: "{{ vault_url }}"
    ca_cert: "{{ vault_ca_cert }}"
    role_id: "{{ vault_role_id }}"
    secret_id: "{{ vault_secret_id }}"
    certificates:
      - path: certs/a.example.com
        certificate: "{{ lookup('ansible.builtin.file', 'a.example.com.crt') }}"
        private_key: "{{ lookup('ansible.builtin.file', 'a.example.com.key') }}"
      - path: certs/b.example.com
        certificate: "{{ lookup('ansible.builtin.file', 'b.example.com.crt') }}"
        private_key: "{{ lookup('ansible.builtin.file', 'b.example.com.key') }}"
  register: pushed_batch

# A secret the push created, left unchanged or changed only the metadata of has nothing to undo: left out.
- name: Undo that whole batch in one run (one login)
  certautopilot.vault.vault_cert_rollback:
    url: "{{ vault_url }}"
    ca_cert: "{{ vault_ca_cert }}"
    role_id: "{{ vault_role_id }}"
    secret_id: "{{ vault_secret_id }}"
    secrets: "{{ pushed_batch.results | certautopilot.vault.rollback_targets }}"

- name: Roll back to the previous live version, with a token
  certautopilot.vault.vault_cert_rollback:
    url: "{{ vault_url }}"
    ca_cert: "{{ vault_ca_cert }}"
    auth_method: token
    token: "{{ vault_token }}"
    path: certs/example.com
"""

RETURN = r"""
mount:
  description: The KV v2 mount of the secret.
  returned: single secret
  type: str
  sample: secret
path:
  description: The path of the secret below the mount.
  returned: single secret
  type: str
  sample: certs/example.com
version:
  description:
    - The current version after the run - the new version that holds the restored data, or, when nothing was
      written (as in check mode), the current one.
  returned: single secret
  type: int
  sample: 3
previous_version:
  description: The current version before the run.
  returned: single secret
  type: int
  sample: 2
restored_version:
  description: The version whose data was restored (or already matched).
  returned: single secret
  type: int
  sample: 1
results:
  description:
    - Per item of O(secrets), in input order, what a single rollback returns for it.
    - After a failure part-way, only the items before the failed one.
  returned: batch
  type: list
  elements: dict
failed_path:
  description: The secret whose rollback stopped the batch.
  returned: when a batch failed part-way
  type: str
  sample: certs/host-041.example.com
not_written:
  description: The secrets left as they were - the failed one and all after it.
  returned: when a batch failed part-way
  type: list
  elements: str
outcome_unknown:
  description:
    - Secrets whose rollback write was sent but could not be confirmed or ruled out (the connection was lost and
      reading the secret back failed). A rerun with the same explicit versions reports ok where it landed.
  returned: when a batch failed part-way
  type: list
  elements: str
"""

from ansible_collections.certautopilot.vault.plugins.module_utils import _rollback
from ansible_collections.certautopilot.vault.plugins.module_utils._client import VaultClient
from ansible_collections.certautopilot.vault.plugins.module_utils._module import WriterModule, run_writer

SINGLE_OPTIONS = ("path", "version", "current_version")
FURTHER_WARNING = (
    "no version was given, so the newest earlier live version was restored; running this again rolls back further"
)


def module_options() -> dict:
    """The options of this module besides those of every writer (_module.writer_argument_spec)."""
    return {
        "version": {"type": "int"},
        "current_version": {"type": "int"},
        "owner": {"type": "str"},
        # Paths and version numbers: nothing secret, whatever validate-modules guesses from the name.
        "secrets": {
            "type": "list",
            "elements": "dict",
            "no_log": False,
            "options": {
                "path": {"type": "str", "required": True},
                "version": {"type": "int"},
                "current_version": {"type": "int"},
            },
        },
    }


def rollback(vault: WriterModule) -> dict:
    params = vault.params
    requests = _rollback.prepare_requests(
        params["mount"], vault.items, check_mode=vault.module.check_mode, owner=params["owner"]
    )

    def write(client: VaultClient) -> list[dict]:
        results = _rollback.rollback_all(
            client,
            requests,
            batch=vault.batch,
            check_capabilities=params["check_capabilities"],
            concurrency=params["concurrency"],
        )
        further = [
            result["path"]
            for request, result in zip(requests, results)
            if request.version is None and result["changed"]
        ]
        if further:
            vault.module.warn(f"{FURTHER_WARNING} ({', '.join(further)})" if vault.batch else FURTHER_WARNING)
        return results

    return vault.write_all(write)


def main() -> None:
    run_writer(rollback, module_options(), batch_option="secrets", single_options=SINGLE_OPTIONS, required="path")


if __name__ == "__main__":
    main()

#!/usr/bin/python
# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: vault_cert_retire
short_description: Take certificate secrets out of KV v2 - soft-delete, destroy or purge
version_added: 0.2.0
extends_documentation_fragment:
  - certautopilot.vault.connection
  - certautopilot.vault.connection.writer
description:
  - Retires a KV v2 secret that holds a certificate, or a batch of them in one run (one login, one mount check),
    as O(mode) says - V(delete) soft-deletes the current version, V(destroy) destroys every version's data and
    keeps the metadata, V(purge) deletes the metadata and every version with it.
  - Every decision is taken from one read of the secret's metadata (C(<mount>/metadata/<path>)); a secret that
    needs a change costs one write more (a purge three requests more, see O(mode)). Nothing else is read - no
    value of the secret is ever fetched.
  - Idempotent - a secret that does not exist (purged before, or never written) is ok and unchanged, whatever the
    mode; a current version already deleted (or destroyed) is unchanged in V(delete) mode; a secret whose kept
    versions are all destroyed is unchanged in V(destroy) mode.
  - By default only a secret this collection manages is retired - with O(owner), its custom metadata holds
    C(managed_by=certautopilot.vault) and C(certautopilot_owner=<owner>) (the mark
    P(certautopilot.vault.vault_cert_push#module) writes with the same O(owner)); without O(owner), it holds
    C(managed_by=certautopilot.vault) and names no owner - a secret whose mark names an owner is refused as a
    push without O(owner) refuses it (C(owned by X - give owner X or another path)). Any other secret is refused,
    writing nothing, unless O(require_managed=false), which opts out of both checks. Give O(owner) whenever the
    pushes do.
  - A push without an owner writes no mark (the mark is opt-in). A secret pushed that way, or written by
    anything else, needs O(require_managed=false), or a push with O(owner) (which adds the mark) first.
  - The mark is a convention, not access control - anyone who may write a secret's custom_metadata can forge it
    or take it off. Policies decide who may delete; the mark keeps a retirement from taking secrets that are not
    its own by mistake.
  - O(current_version) retires a secret only while its current version is still that one (the
    RV(certautopilot.vault.vault_cert_push#module:version) a push returned); otherwise it fails, writing nothing.
    A secret that no longer exists is ok whatever the guard, so a guarded purge can be run again.
  - A destructive request whose answer does not prove its outcome (a connection dropped, a gateway timeout, any
    5xx - even a 503 saying the server is sealed or not active, which a proxy may send after forwarding it) is
    never sent again blindly - the metadata is read back to see whether it took effect, and it is sent again only
    when that read shows it was not; only when that read fails too is the secret reported in RV(outcome_unknown).
  - Check mode reads and decides, and sends no write. Diff mode shows, per secret, the current version and the
    state of each kept version (V(live), V(deleted), V(deletion scheduled), V(destroyed)) before and after - never
    a value of the secret.
  - O(secrets) retires a batch with the failure report of a P(certautopilot.vault.vault_cert_push#module) batch -
    RV(results), RV(failed_path), RV(not_written), RV(outcome_unknown).
  - 'Capabilities, on top of C(read) on C(<mount>/metadata/<path>) in every mode - V(delete) needs C(update) on
    C(<mount>/delete/<path>), V(destroy) C(update) on C(<mount>/destroy/<path>), V(purge) C(update) and C(delete) on
    C(<mount>/metadata/<path>). O(check_capabilities) checks them before any write.'
  - Request budget - one login and one mount check per run; per secret one metadata read and, when changed, one
    write (a purge - the cas_required write, a second metadata read, the DELETE); plus the token revocation.
options:
  mode:
    description:
      - V(delete) - soft-delete the current version (C(POST <mount>/delete/<path>) naming that version, so a
        version written after the metadata was read is never deleted by mistake). Its data is kept and the
        deletion can be undone (C(bao kv undelete -versions=N)), or the secret rolled back to an earlier version
        with P(certautopilot.vault.vault_cert_rollback#module). A deletion that C(delete_version_after) scheduled
        for later is made now.
      - V(destroy) - destroy the data of every kept version that is not destroyed yet, deleted ones included
        (C(PUT <mount>/destroy/<path>)). The metadata, the version numbers and the custom metadata stay. Cannot
        be undone.
      - V(purge) - delete the metadata and every version (C(DELETE <mount>/metadata/<path>), as
        C(bao kv metadata delete)). Cannot be undone; a later push starts again at version 1.
      - 'Purge and concurrent writers - that DELETE takes no version and no check-and-set (OpenBao 2.7 ignores
        any parameter): it removes whatever versions exist when it arrives. So the purge first sets
        C(cas_required=true) on the secret with a metadata check-and-set against the metadata it read (refused,
        nothing destroyed, if anyone wrote the metadata since), then reads the metadata again and sends the
        DELETE only while it still shows the version it planned on. A version written in between is named in
        the failure, kept, and nothing is destroyed; C(cas_required) is put back as it was.'
      - 'The remaining window - from that second read to the DELETE (one round trip), a writer that writes with
        check-and-set against the version read (as P(certautopilot.vault.vault_cert_push#module) does) can still
        add a version, which the DELETE destroys without RV(destroyed_versions) naming it. Writers without
        check-and-set are refused by the server from the C(cas_required) write on. On a server without metadata
        check-and-set (Vault; no C(current_metadata_version) in the metadata) the C(cas_required) write is not
        guarded, and metadata changes in between go unnoticed.'
      - After a failed purge whose outcome is unknown (RV(outcome_unknown)), the secret may be left with
        C(cas_required=true).
      - 'A secret re-created at the path - after a lost answer, the metadata read back must show the very secret that
        was read before (its C(created_time)): one that someone else purged and created anew at the path, even with
        the same version numbers, is never written to; the outcome is reported unknown, or, before a purge destroys
        anything, the run fails with nothing destroyed.'
      - When the purge's C(cas_required) write may have landed before another writer changed the metadata, the run
        fails with nothing destroyed and says that C(cas_required) may still be set, and how to clear it
        (C(bao kv metadata put -cas-required=false)); it is not put back, as nothing tells whose it is by then.
    type: str
    choices: [delete, destroy, purge]
    default: delete
  current_version:
    description:
      - Guard - retire only while the current version is still this one; otherwise fail, writing nothing.
      - A secret that does not exist any more is ok whatever the guard.
    type: int
  require_managed:
    description:
      - Refuse, writing nothing, a secret whose custom metadata does not hold C(managed_by=certautopilot.vault),
        and (without O(owner)) one whose mark names an owner (C(certautopilot_owner)).
      - With O(owner) - refuse one whose mark does not name that owner (C(certautopilot_owner=<owner>)).
      - V(false) retires any secret under the path, for example one pushed without an owner, or one another
        owner's mark names.
    type: bool
    default: true
  owner:
    description:
      - The owner whose secrets these are, as given to P(certautopilot.vault.vault_cert_push#module) - 1 to 64
        characters of C(A-Za-z0-9._-), refused otherwise before any request.
      - With it, O(require_managed) requires the mark naming this owner.
    type: str
  secrets:
    description:
      - A batch - each item a secret to retire, with its own O(secrets[].current_version); mutually exclusive with
        O(path) and O(current_version). O(mode) and O(require_managed) apply to every item.
      - The first item that fails stops the run (see RV(failed_path)).
      - Two items for one path are refused before any request. An empty list does nothing and sends no request
        but the login.
    type: list
    elements: dict
    suboptions:
      path:
        description: The secret to retire, checked as O(path) is.
        required: true
        type: str
      current_version:
        description: As O(current_version), for this secret.
        type: int
notes:
  - A soft-deleted version still counts for C(max_versions); destroyed ones too, until newer versions push them out.
seealso:
  - module: certautopilot.vault.vault_cert_push
  - module: certautopilot.vault.vault_cert_rollback
  - module: certautopilot.vault.vault_cert_info
"""

EXAMPLES = r"""
# Environment-specific values are variables here: vault_url (https://vault.example.com:8200), vault_ca_cert (the CA
# of Vault's TLS certificate, a path or PEM text), vault_role_id and vault_secret_id from Ansible Vault or an AWX
# credential. Left out, they fall back to VAULT_ADDR, VAULT_CACERT, VAULT_ROLE_ID and VAULT_SECRET_ID.

- name: Push a certificate as team-web's
  certautopilot.vault.vault_cert_push:
    url: "{{ vault_url }}"
    ca_cert: "{{ vault_ca_cert }}"
    role_id: "{{ vault_role_id }}"
    secret_id: "{{ vault_secret_id }}"
    path: certs/example.com
    owner: team-web
    certificate: "{{ lookup('ansible.builtin.file', 'example.com.crt') }}"
    private_key: "{{ lookup('ansible.builtin.file', 'example.com.key') }}"
  register: pushed

# The push marked the secret as team-web's; a secret not marked with that owner is refused (see require_managed).
- name: Soft-delete the version that push left, unless someone wrote after it (undo with bao kv undelete)
  certautopilot.vault.vault_cert_retire:
    url: "{{ vault_url }}"
    ca_cert: "{{ vault_ca_cert }}"
    role_id: "{{ vault_role_id }}"
    secret_id: "{{ vault_secret_id }}"
    path: certs/example.com
    owner: team-web
    current_version: "{{ pushed.version }}"
  register: retired

- name: Show what was retired
  ansible.builtin.debug:
    msg: "version {{ retired.version }} of {{ retired.path }} is deleted"

- name: Preview destroying the data of every version of two decommissioned hosts
  certautopilot.vault.vault_cert_retire:
    url: "{{ vault_url }}"
    ca_cert: "{{ vault_ca_cert }}"
    role_id: "{{ vault_role_id }}"
    secret_id: "{{ vault_secret_id }}"
    mode: destroy
    owner: team-web
    secrets:
      - path: certs/example.com
      - path: certs/www.example.com
  check_mode: true
  diff: true

- name: Remove the secret altogether - metadata and every version, one login for the batch
  certautopilot.vault.vault_cert_retire:
    url: "{{ vault_url }}"
    ca_cert: "{{ vault_ca_cert }}"
    role_id: "{{ vault_role_id }}"
    secret_id: "{{ vault_secret_id }}"
    mode: purge
    owner: team-web
    secrets:
      - path: certs/example.com
      - path: certs/www.example.com
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
mode:
  description: The O(mode) the secret was retired in.
  returned: single secret
  type: str
  sample: delete
version:
  description:
    - The secret's current version when its metadata was read, before the run changed anything (in V(delete)
      mode, the version deleted). Null when the secret does not exist.
  returned: single secret
  type: int
  sample: 3
destroyed_versions:
  description:
    - The versions whose data this run removed for good (in check mode, would remove) - in V(destroy) mode those
      it destroyed, in V(purge) mode those not destroyed before, gone with the metadata, as the purge's second
      read showed them (see O(mode) for the one window it cannot see); empty in V(delete) mode, which can be
      undone, and when someone else purged the secret first.
  returned: single secret
  type: list
  elements: int
  sample: [1, 2, 3]
results:
  description:
    - Per item of O(secrets), in input order, what a single retirement returns for it.
    - After a failure part-way, only the items done.
  returned: batch
  type: list
  elements: dict
failed_path:
  description: The secret whose retirement stopped the batch.
  returned: when a batch failed part-way
  type: str
  sample: certs/host-041.example.com
not_written:
  description: The secrets left as they were - the failed one and those not handed out.
  returned: when a batch failed part-way
  type: list
  elements: str
outcome_unknown:
  description:
    - Secrets whose retirement write was sent but could not be confirmed or ruled out (the answer was lost and
      reading the metadata back failed). A rerun reports ok, unchanged, where it landed.
  returned: when a batch failed part-way
  type: list
  elements: str
"""

from ansible_collections.certautopilot.vault.plugins.module_utils import _retire
from ansible_collections.certautopilot.vault.plugins.module_utils._module import WriterModule, run_writer

SINGLE_OPTIONS = ("path", "current_version")


def module_options() -> dict:
    """The options of this module besides those of every writer (_module.writer_argument_spec)."""
    return {
        "mode": {"type": "str", "default": _retire.DELETE, "choices": list(_retire.MODES)},
        "current_version": {"type": "int"},
        "require_managed": {"type": "bool", "default": True},
        "owner": {"type": "str"},
        # Paths and version numbers: nothing secret, whatever validate-modules guesses from the name.
        "secrets": {
            "type": "list",
            "elements": "dict",
            "no_log": False,
            "options": {
                "path": {"type": "str", "required": True},
                "current_version": {"type": "int"},
            },
        },
    }


def retire(vault: WriterModule) -> dict:
    params = vault.params
    requests = _retire.prepare_requests(
        params["mount"],
        vault.items,
        mode=params["mode"],
        require_managed=params["require_managed"],
        check_mode=vault.module.check_mode,
        owner=params["owner"],
    )
    return vault.write_all(
        lambda client: _retire.retire_all(
            client,
            requests,
            batch=vault.batch,
            check_capabilities=params["check_capabilities"],
            concurrency=params["concurrency"],
        )
    )


def main() -> None:
    run_writer(retire, module_options(), batch_option="secrets", single_options=SINGLE_OPTIONS, required="path")


if __name__ == "__main__":
    main()

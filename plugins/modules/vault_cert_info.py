#!/usr/bin/python
# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: vault_cert_info
short_description: Report the certificates held in KV v2 secrets and when they expire
version_added: 0.2.0
extends_documentation_fragment:
  - certautopilot.vault.connection
  - certautopilot.vault.connection.reader
description:
  - Never changes anything. Lists every secret under O(prefix), recursively, or reads the secrets named in
    O(paths), and reports for each its current version, when that version was written, whether this collection
    manages it, a summary of its certificate and a RV(certificates[].status).
  - Never returns key material, nor any value of a secret - only the certificate's summary, with the names
    of RV(certautopilot.vault.vault_cert_push#module:certificate) that P(certautopilot.vault.vault_cert_push#module)
    returns. Reasons name the field, never its value.
  - A read-only policy is enough - C(list) on C(<mount>/metadata/<prefix>/*) (with O(prefix)) and C(read) on
    C(<mount>/data/<path>). The KV v2 mount check (C(sys/internal/ui/mounts/<mount>)) needs no grant of its own -
    the server answers it for any token with a capability under the mount.
  - A secret the token may not read is reported with RV(certificates[].status=unreadable) and the server's
    reason, and so is a folder it may not list (its path ends in C(/)); neither fails the run. Any other error
    (the server unreachable, a login refused, a mount that is not KV v2) fails it.
  - A folder that holds nothing, or does not exist, is an empty report, not an error.
  - The certificate is the first PEM certificate of the field - a fullchain field (leaf first) or a combined
    PEM file with the key works; what follows the certificate, a private key included, is not read.
  - 'Status rules, checked in this order - no version of the secret at all, or a current version that is
    deleted or destroyed: V(no_certificate) with the reason (for example C(current version 3 is deleted));
    none of O(fields) in the data, or an empty field: V(no_certificate); a field that holds no parseable PEM
    certificate: V(invalid); C(not_after) in the past: V(expired); C(not_before) in the future: V(not_yet_valid);
    RV(certificates[].days_left) at most O(expiring_within): V(expiring); else V(ok).'
  - Request budget - one login, one mount check, one C(LIST) per folder (with O(prefix)), one read per
    secret (its current version, whose answer holds the custom metadata too), and the token revocation.
options:
  auth_method:
    description:
      - How to log in, as for the writers.
      - Falls back to E(VAULT_AUTH_METHOD). Without either, V(token) when a token is given (O(token) or
        E(VAULT_TOKEN)) and no credential of another login (O(role_id), O(secret_id), O(jwt), O(jwt_file)) is given,
        even empty, else V(approle) - a E(VAULT_TOKEN) in the environment never stands in for the login a task asked
        for.
    type: str
    choices: [approle, jwt, cert, token]
  mount:
    description:
      - Path of the KV v2 secrets engine. A KV v1 mount fails the run before any listing.
    type: str
    default: secret
    aliases: [engine_mount_point]
  prefix:
    description:
      - The folder below O(mount) whose secrets to report, listed recursively (keys ending in C(/) are folders).
      - A trailing C(/) is ignored; an empty string reports the whole mount (C(list) on C(<mount>/metadata/)).
      - Mutually exclusive with O(paths); one of them is required.
    type: str
  paths:
    description:
      - The secrets to report, as paths below O(mount), checked as P(certautopilot.vault.vault_cert_push#module)
        checks a path. A path given twice is reported once.
      - A path that does not exist is reported as V(no_certificate).
    type: list
    elements: str
  fields:
    description:
      - The JSON key of the secret that holds the certificate, or a list of keys - the first one the secret
        holds is used (for example V([certificate, tls.crt]) for secrets of two layouts); when that one holds no
        certificate, the next is not tried.
      - A single key may be given as a string.
    type: list
    elements: str
    default: [certificate]
  expiring_within:
    description:
      - A certificate with at most this many days left (RV(certificates[].days_left)) is V(expiring).
    type: int
    default: 30
  fail_on:
    description:
      - V(never) - report only.
      - V(expired) - fail when any certificate has expired.
      - V(expiring) - fail when any certificate has expired or is expiring.
      - The failure's message names how many and the first paths; the failed result still holds the whole report
        (RV(certificates), RV(expired), RV(expiring), RV(counts)).
      - Other statuses (V(invalid), V(unreadable), ...) never fail the run; act on RV(counts) for those.
    type: str
    default: never
    choices: [never, expired, expiring]
  concurrency:
    description:
      - How many requests are in flight at once, over one login and one kept-alive connection each.
        V(1) sends one after another.
      - The folders of one depth are listed together, then the secrets are read.
    type: int
    default: 8
  owner:
    description:
      - The owner to judge RV(certificates[].managed) by, as given to P(certautopilot.vault.vault_cert_push#module) -
        1 to 64 characters of C(A-Za-z0-9._-), refused otherwise before any request.
      - With it, C(managed) is true only for a secret whose mark names this owner (C(certautopilot_owner=<owner>));
        without it, for any secret that carries C(managed_by=certautopilot.vault).
      - The mark is custom metadata - anyone who may write a secret's metadata can forge it or take it off.
    type: str
seealso:
  - module: certautopilot.vault.vault_cert_push
  - module: certautopilot.vault.vault_health
  - plugin: certautopilot.vault.cert_info
    plugin_type: filter
"""

EXAMPLES = r"""
# Environment-specific values are variables here: vault_url (https://vault.example.com:8200), vault_ca_cert (the CA
# of Vault's TLS certificate, a path or PEM text), vault_role_id, and vault_secret_id from Ansible Vault or an AWX
# credential. Left out, they fall back to VAULT_ADDR, VAULT_CACERT, VAULT_ROLE_ID and VAULT_SECRET_ID.

- name: Report every certificate under certs/ (a read-only policy is enough)
  certautopilot.vault.vault_cert_info:
    url: "{{ vault_url }}"
    ca_cert: "{{ vault_ca_cert }}"
    role_id: "{{ vault_role_id }}"
    secret_id: "{{ vault_secret_id }}"
    prefix: certs
  register: inventory

- name: Show what expires within 30 days
  ansible.builtin.debug:
    msg: "{{ inventory.counts.expiring }} expiring: {{ inventory.expiring }}; {{ inventory.counts.expired }} expired"

- name: Fail the pipeline when a certificate expires within 14 days, or has expired
  certautopilot.vault.vault_cert_info:
    url: "{{ vault_url }}"
    ca_cert: "{{ vault_ca_cert }}"
    role_id: "{{ vault_role_id }}"
    secret_id: "{{ vault_secret_id }}"
    paths:
      - certs/example.com
      - certs/www.example.com
    fields: [certificate, tls.crt]
    expiring_within: 14
    fail_on: expiring
"""

RETURN = r"""
certificates:
  description:
    - One entry per secret (and per folder that could not be listed), sorted by path.
    - Every entry has every key; a value not known is null.
  returned: always
  type: list
  elements: dict
  contains:
    path:
      description: The secret's path below the mount; a folder the token may not list ends in C(/).
      type: str
      sample: certs/example.com
    version:
      description: The secret's current version.
      type: int
      sample: 3
    updated_time:
      description: When the current version was written, as the server prints it.
      type: str
      sample: "2025-06-01T08:15:00.123456789Z"
    managed:
      description:
        - Whether this collection manages the secret - its custom metadata holds C(managed_by=certautopilot.vault),
          the mark P(certautopilot.vault.vault_cert_push#module) writes when given an owner; with O(owner), only
          when the mark names that owner.
        - V(false) when the secret could not be read.
      type: bool
    owner:
      description: The owner the secret's mark names (C(certautopilot_owner)), null when it names none.
      type: str
    field:
      description: The JSON key the certificate was read from (one of O(fields)).
      type: str
      sample: certificate
    status:
      description:
        - V(ok), V(expiring), V(expired), V(not_yet_valid), V(invalid), V(no_certificate) or V(unreadable)
          (see the status rules in the description).
      type: str
      sample: ok
    reason:
      description:
        - Why the status is not V(ok) - for example C(expired on 2025-01-31T23:59:59Z), C(current version 4 is
          deleted), C(field 'certificate' is not a valid PEM certificate), or the server's permission denial.
          Null for V(ok).
      type: str
    days_left:
      description: Whole days until C(not_after), rounded down; negative once it has passed.
      type: int
      sample: 57
    cn:
      description: The certificate's subject common name.
      type: str
      sample: www.example.com
    sans:
      description: The certificate's subject alternative names (DNS, IP, email, URI).
      type: list
      elements: str
      sample: [www.example.com, example.com]
    serial:
      description: The serial number, colon-separated hex pairs.
      type: str
      sample: "3a:5f:01"
    not_before:
      description: Start of validity, UTC.
      type: str
      sample: "2025-06-01T00:00:00Z"
    not_after:
      description: End of validity, UTC.
      type: str
      sample: "2025-08-30T00:00:00Z"
    issuer:
      description: The issuer's distinguished name (RFC 4514).
      type: str
      sample: CN=Example Intermediate CA,O=Example
    subject:
      description: The subject's distinguished name (RFC 4514).
      type: str
      sample: CN=www.example.com
    fingerprint_sha256:
      description: SHA-256 fingerprint of the certificate (DER), hex.
      type: str
expiring:
  description: The paths whose status is V(expiring), sorted.
  returned: always
  type: list
  elements: str
  sample: [certs/api.example.com]
expired:
  description: The paths whose status is V(expired), sorted.
  returned: always
  type: list
  elements: str
  sample: [certs/old.example.com]
counts:
  description: How many entries have each status; every status is present, 0 when none has it.
  returned: always
  type: dict
  sample: {ok: 180, expiring: 6, expired: 2, not_yet_valid: 0, invalid: 1, no_certificate: 3, unreadable: 8}
total:
  description: The number of entries in RV(certificates).
  returned: always
  type: int
  sample: 200
"""

from ansible_collections.certautopilot.vault.plugins.module_utils import _info
from ansible_collections.certautopilot.vault.plugins.module_utils._module import VaultModule


def report(vault: VaultModule) -> dict:
    request = _info.request_from(vault.params)
    with vault.session() as client:
        return _info.inventory(client, request)


def main() -> None:
    vault = VaultModule(
        argument_spec=_info.argument_spec(),
        mutually_exclusive=[("prefix", "paths")],
        required_one_of=[("prefix", "paths")],
    )
    vault.run(lambda: report(vault))


if __name__ == "__main__":
    main()

#!/usr/bin/python
# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: vault_cert_push
short_description: Deliver TLS certificates into HashiCorp Vault / OpenBao KV v2 secrets
version_added: 0.1.0
extends_documentation_fragment:
  - certautopilot.vault.connection
  - certautopilot.vault.connection.writer
  - certautopilot.vault.files_root
description:
  - Writes a certificate, its private key, its chain and the fullchain (certificate followed by the chain)
    into a KV v2 secret at C(<mount>/data/<path>), or a batch of them in one run.
  - The desired data is compared with the B(current version's data); when equal nothing is written and
    C(changed) is V(false). Otherwise one write is made with check-and-set (C(cas) = the version read,
    V(0) for a new secret), so nothing written by anyone else in between is lost.
  - A check-and-set conflict re-reads the secret and decides again, up to O(retries) times.
  - Check mode reads and decides but writes nothing. Diff mode shows each field before and after with every
    PEM replaced by a summary (subject CN, serial, not_after, SHA-256 fingerprint; a private key by the
    SHA-256 of its public key). No key material is ever shown.
  - Request budget of a run, whatever the number of certificates and O(concurrency), over kept-alive HTTP
    connections (one per certificate in flight) -
    one login, one mount check, then per certificate one read and, when it changed, one write; plus the token
    revocation at the end. Without O(owner), O(custom_metadata) or a version policy option no metadata is read or
    written - N+4 requests for an unchanged run of N certificates, 2N+4 for a first run.
  - Metadata (the O(owner) mark, O(custom_metadata), a version policy) costs one metadata read and one metadata
    write per secret, only when it changes (a version policy option reads the metadata on every run, to compare) -
    a first run with O(owner) costs 4N+4 requests, an unchanged one still N+4.
options:
  certificate:
    description:
      - The PEM leaf certificate. Required unless O(certificate_file) or O(certificates) is used.
      - PEM text is normalised (the certificate is re-encoded, line endings become LF, one trailing newline),
        so the same certificate always yields the same stored text.
    type: str
  certificate_file:
    description:
      - A file on the B(controller) holding the PEM leaf certificate; mutually exclusive with O(certificate). The action
        plugin reads it (found as O(private_key_file) is, confined below O(files_root) when given) and takes only
        its PEM certificates - a file that holds none is refused without showing it, as is one over 1 MiB.
      - A fullchain file works here when O(chain) or O(chain_file) gives the intermediates; otherwise give the leaf.
    type: str
  chain_file:
    description:
      - A file on the B(controller) holding the PEM intermediates, leaf-first, or a list of such files;
        mutually exclusive with O(chain). Read as O(certificate_file) is.
    type: raw
  private_key:
    description:
      - The PEM private key of O(certificate). Never logged.
      - Required unless O(include_private_key=false) or O(private_key_file) is given. Encrypted keys are refused.
    type: str
  private_key_file:
    description:
      - A file on the B(controller) holding the PEM private key of O(certificate); mutually exclusive with
        O(private_key). The action plugin reads it, decrypting it first when it is encrypted with Ansible Vault.
      - A relative path is searched like the C(src) of M(ansible.builtin.copy) - the role's or playbook's C(files/)
        directory, then the directory itself.
      - Not read when O(include_private_key=false).
      - Only the file's one PEM private key is taken (a combined certificate and key file works); a file that holds
        no private key, or more than one, is refused without showing it.
      - A file larger than 1 MiB (no key is; an Ansible Vault-encrypted one is about twice its size) is refused
        before it is read, as is anything that is not a regular file (a FIFO, a device).
      - Read with the rights of the user running Ansible, as the C(src) of M(ansible.builtin.copy) is. When the path
        comes from input you do not trust (a survey answer), set O(files_root) - without it any key that user can
        read can be sent to Vault, and with O(validate=false) even one that is not the certificate's.
    type: str
  key_bundle:
    description:
      - Filled by the action plugin, which takes every private key (O(private_key), O(private_key_file), and those
        of O(certificates)) out of the module's arguments and hands them over in this one no_log value, so that
        the keys of a batch are masked in one pass. A task does not set it; one that does is refused.
    type: str
  chain:
    description:
      - PEM intermediates, leaf-first (the issuer of the certificate first), as one bundle text or a list of PEM texts.
    type: raw
  certificates:
    description:
      - A batch of certificates, each with its own O(certificates[].path). Mutually exclusive with O(path),
        O(certificate), O(certificate_file), O(private_key), O(private_key_file), O(chain) and O(chain_file). Every
        other option applies to every item.
      - All items are checked before the first request; one login and one mount check serve the whole batch.
    type: list
    elements: dict
    suboptions:
      path:
        description: Secret path below O(mount).
        type: str
        required: true
      certificate:
        description: The PEM leaf certificate; this or O(certificates[].certificate_file) is required.
        type: str
      certificate_file:
        description: A controller file holding the PEM leaf certificate, read as O(certificate_file) is.
        type: str
      private_key:
        description: The PEM private key. Never logged.
        type: str
      private_key_file:
        description:
          - A controller file holding the PEM private key, read as O(private_key_file) is; mutually exclusive with
            O(certificates[].private_key).
        type: str
      chain:
        description: PEM intermediates, leaf-first, as a bundle text or a list.
        type: raw
      chain_file:
        description: A controller file (or a list of them) holding the PEM intermediates, read as O(chain_file) is.
        type: raw
  include_private_key:
    description:
      - When V(false), cert-only delivery - the private key field is not written, and it is removed from the secret
        if an earlier version had it.
    type: bool
    default: true
  fields:
    description:
      - The JSON key of each logical field - C(certificate), C(private_key), C(chain), C(fullchain).
      - Keys not given keep their default (the logical name). A field mapped to V(null) or an empty string is
        neither written nor managed - an existing key of that name is treated as an unmanaged field.
      - Two logical fields mapped to one key are refused.
      - When no chain is given, the chain field is not written (and removed if present); fullchain then holds
        the certificate alone.
    type: dict
  layout:
    description:
      - Which secret(s) a certificate becomes, and under which keys - the shape its consumer reads. Every PEM value is
        normalised text (leaf first, then the chain in the order given); RV(changed_fields) names what differs.
      - V(default) - one secret with C(certificate), C(private_key), C(chain), C(fullchain), renamed by O(fields).
      - "V(acme_sh) - the shape acme.sh's C(vault) and C(vault_cli) deploy hooks write to KV v2, for whatever reads
        them - B(four secrets below) O(path) (C(<path>/cert.pem), C(<path>/cert.key), C(<path>/ca.pem),
        C(<path>/fullchain.pem)), each C({value: <PEM>}), the CA file holding the chain (empty text without one).
        acme.sh wrote the chain to C(chain.pem) before version 3.0.6 and to C(ca.pem) since; C(ca.pem) is written,
        a C(chain.pem) secret is left as it is. acme.sh's Fabio mode (one secret) is V(fabio)."
      - "acme_sh results - one result per secret, in that order, so a single certificate returns RV(results) like a
        batch (four entries per certificate, each with its own C(version) for a later rollback); the
        C(changed_fields) of a secret is the one field it holds (C(certificate), C(private_key),
        C(chain) or C(fullchain)); in diff mode one diff per secret. The four secrets are written one after another
        (KV v2 has no transaction across secrets) - a reader polling during a renewal can see the new C(cert.pem)
        with the old C(cert.key) for a moment; read all four in one pass, as an agent template does."
      - V(fabio) - for fabio's C(vault) certificate store (C(proxy.cs = cs=NAME;type=vault;cert=secret/fabio/certs)),
        which lists the secrets one level below its path and reads C(cert) and C(key) of each - C(cert) holds the
        fullchain (fabio serves the chain after the leaf), C(key) the key. Changed fields are named C(fullchain),
        C(private_key).
      - V(traefik) - for Traefik Enterprise's Vault provider, which reads KV v2 secrets at the B(root) of its mount
        (C(enginePath)), C(cert) and C(key) each B(base64-encoded) PEM (standard alphabet, padded, one line, as
        C(base64 -w0) writes); C(cert) holds the fullchain. A path with C(/) gets a warning (Traefik does not find
        it) - use a dedicated mount. (Traefik Proxy, the open-source edition, reads certificates of its own only
        from its file provider and Kubernetes secrets, not from Vault.) Changed fields are named C(fullchain),
        C(private_key).
      - V(haproxy) - one key C(pem), the file HAProxy's C(crt) loads - the certificate, its chain, then the key.
        Changed field C(pem).
      - V(pkcs12) - one key C(pkcs12), a base64 PKCS#12 bundle of the key, the certificate and the chain (no
        friendly name), encrypted with O(pkcs12_password) - PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC), HMAC-SHA256
        integrity, 10000 iterations, as JDK keytool writes it. Java 8u301+/11.0.12+, OpenSSL 1.1.1 and 3, and
        .NET read it; the legacy RC2/3DES form is not written. A bundle is salted, so it is compared by content -
        when the current one opens with O(pkcs12_password) and holds the same key, certificate and chain, it is
        kept (no new version). A current bundle not protected that way - without a MAC, with its key in a plain
        bag, with a legacy PBE algorithm, or asking more than 500000 iterations of MAC and PBKDF2 together (read
        from the bundle before any of them runs) - is replaced.
        Changed field C(pkcs12).
      - O(fields) applies to V(default) only; another layout with O(fields) renaming a key is refused.
      - O(include_private_key=false) - V(acme_sh) neither writes nor reads C(cert.key) (an existing one is left as
        it is; M(certautopilot.vault.vault_cert_retire) removes it); V(fabio) and V(traefik) leave C(key) out and
        remove it from the secret (fabio and Traefik then skip the certificate); V(haproxy) and V(pkcs12) refuse
        it, their one value holds the key.
      - O(keep_other_fields) keeps the keys the layout does not write, as with V(default) - so a secret that moves
        from V(default) to another layout keeps its old C(private_key) key unless O(keep_other_fields=false).
    type: str
    choices: [default, acme_sh, fabio, traefik, haproxy, pkcs12]
    default: default
  pkcs12_password:
    description:
      - The password that encrypts the PKCS#12 bundle of O(layout=pkcs12); required with it, refused with any other
        layout. Never logged, never shown.
      - A bundle written with another password does not open with this one - it is replaced (a new version).
      - A string; anything else (a number, a list, a boolean - an unquoted V(0123) in YAML is the number 83) is
        refused rather than turned into text the consumer would not know.
    type: raw
  keep_other_fields:
    description:
      - Keys of the current secret that are none of the managed fields are carried into the new version.
        A KV v2 write replaces the whole map, so without this they would be lost.
      - When V(false), such keys are dropped, and RV(changed_fields) lists C(other_fields).
    type: bool
    default: true
  validate:
    description:
      - Check that the certificate and chain parse, the private key matches the certificate, each chain link is
        issued by the next (issuer name and signature), and the certificate is within its validity period.
      - Parsing itself is never skipped.
    type: bool
    default: true
  custom_metadata:
    description:
      - Also write C(cn), C(serial), C(not_after) and C(fingerprint_sha256) into the secret's KV metadata
        C(custom_metadata), keeping other custom metadata keys.
      - Needs the C(update) capability on C(<mount>/metadata/<path>). Costs one more request when it changed.
      - The metadata is written before the data, so a token that may not write it is refused with nothing written.
    type: bool
    default: false
  max_versions:
    description:
      - The number of versions KV v2 keeps of each secret (its metadata's C(max_versions)); V(0) means the mount's
        setting (10 unless changed). How far back M(certautopilot.vault.vault_cert_rollback) can reach.
      - Set when the secret is created and whenever it differs (then named in RV(changed_fields)); left as it is
        when not given. Comparing costs one metadata read per certificate, and a change one metadata write,
        made before the data write, so a token that may not write metadata is refused with nothing written.
      - M(certautopilot.vault.vault_health) warns when the versions kept are fewer than its
        O(certautopilot.vault.vault_health#module:min_versions).
    type: int
  delete_version_after:
    description:
      - How long each version is kept before KV v2 deletes it (soft-deletes; a rollback still restores it until
        O(max_versions) pushes it out). Seconds, or a duration such as V(30d), V(720h) or V(1h30m); V(0) keeps them.
      - Set like O(max_versions).
    type: raw
  cas_required:
    description:
      - Whether the secret's metadata requires check-and-set on every write (C(cas_required)). This module always
        writes with check-and-set; V(true) makes every other writer do the same.
      - Set like O(max_versions).
    type: bool
  owner:
    description:
      - Whose secrets these are - 1 to 64 characters of C(A-Za-z0-9._-) (a team, an application), refused by name
        otherwise before any request.
      - With it, each secret is marked C(managed_by=certautopilot.vault) and C(certautopilot_owner=<owner>) in its
        C(custom_metadata) (every other key kept, a key of your own named C(owner) included), B(before) the data
        is written - a token that may not write metadata is refused with nothing written. A secret whose mark
        names another owner is refused, nothing written, whatever O(adopt) says.
      - Without it, no mark is written and nothing extra is requested, and a secret whose mark names any owner
        is refused, nothing written (C(owned by X - give owner X or another path)).
      - See the notes on what the mark is and is not.
    type: str
  adopt:
    description:
      - With O(owner) - whether a secret that exists without a mark naming an owner (unmarked, or marked
        C(managed_by) only) may be marked as this owner's. The first push then adds the mark
        (RV(changed_fields) holds C(certautopilot_owner); with the data unchanged, no new version is written).
      - V(false) refuses such a secret, nothing written - soft-deleted, destroyed and metadata-only secrets too;
        only a new path or a secret already marked with O(owner) is pushed.
    type: bool
    default: true
notes:
  - B(Ownership) is opt-in and named (O(owner)). The mark is C(managed_by=certautopilot.vault) and
    C(certautopilot_owner=<owner>) in the secret's C(custom_metadata). M(certautopilot.vault.vault_cert_retire)
    and M(certautopilot.vault.vault_cert_info) with the same O(owner), and the role's prune, act only on secrets
    whose mark names that owner. The mark needs C(create) and C(update) on C(<mount>/metadata/<path>); it is
    written before the data, so a token without them is refused with nothing written.
  - B(What the mark is not.) It is a convention between the collection's runs, not access control - anyone who
    may write a secret's custom_metadata can forge a mark, change its owner or take it off, and then push,
    retire or prune as if it were theirs. Keep other teams out of your paths with Vault policies; the mark keeps
    your own runs (a prune with a wide prefix, a second team sharing a mount) from taking secrets that are not
    theirs by mistake.
  - B(Concurrent metadata writers.) Writing the mark (or O(custom_metadata)) rewrites the whole custom_metadata
    map from a metadata read made just before. On servers that report C(current_metadata_version) in that read
    (OpenBao 2.x), every metadata write of this module carries C(metadata_cas) - a key another writer added in
    between (a C(hold=true), say) makes the write fail with a conflict, and the push reads again and decides
    again (up to O(retries) times); nothing of theirs is lost. A server without it (HashiCorp Vault) cannot guard
    the write - the window between the metadata read and the write, a few milliseconds, remains, and a key
    written in it by another writer is lost.
  - When the data write after a metadata write is refused, the metadata is set back guarded the same way. When
    another writer's version beats the data write of a push that has just marked the secret as O(owner)'s (a new
    path another writer created in between, say - a data write is no metadata version, so the mark's
    check-and-set holds), the mark is set back too before the push decides again, so the new decision sees the
    secret as the other writer left it - with O(adopt=false) it is refused, their version never overwritten.
    When another writer changed the metadata since (or the server offers no metadata check-and-set), it is left
    as written and the error says so.
  - B(Known gap - a metadata-only secret.) A push without O(owner) reads only the data, and a secret that holds
    metadata but no version yet answers that read with a bare 404 that shows no mark - so a metadata-only secret
    marked with an owner is not recognised as owned by such a push, and version 1 is written into it.
    Recognising it would cost a metadata read per new secret (a first run would no longer cost 2N+4 requests).
    The write's answer shows the mark - RV(owner) names its owner, RV(managed) is V(false), and a warning names
    the path and the owner and says the data was written. The same holds for a secret another writer marks
    between the push's read and its write. Give O(owner) (or O(adopt=false)) to have such a secret refused.
seealso:
  - module: certautopilot.vault.vault_cert_rollback
  - module: certautopilot.vault.vault_health
  - plugin: certautopilot.vault.cert_info
    plugin_type: filter
"""

EXAMPLES = r"""
# Environment-specific values are variables here: vault_url (https://vault.example.com:8200), vault_ca_cert (the CA
# of Vault's TLS certificate, a path or PEM text), vault_role_id, and vault_secret_id, vault_token, vault_jwt_file
# from Ansible Vault or an AWX credential. Left out, url, ca_cert, role_id, secret_id and token fall back to
# VAULT_ADDR, VAULT_CACERT, VAULT_ROLE_ID, VAULT_SECRET_ID and VAULT_TOKEN.
# Certificate files are read on the controller (lookup 'file': the playbook's files/ directory, then its own).

- name: Deliver a certificate with AppRole
  certautopilot.vault.vault_cert_push:
    url: "{{ vault_url }}"
    ca_cert: "{{ vault_ca_cert }}"
    role_id: "{{ vault_role_id }}"
    secret_id: "{{ vault_secret_id }}"
    path: certs/example.com
    certificate: "{{ lookup('ansible.builtin.file', 'example.com.crt') }}"
    private_key: "{{ lookup('ansible.builtin.file', 'example.com.key') }}"
    chain: "{{ lookup('ansible.builtin.file', 'intermediate.crt') }}"
  register: pushed

- name: Record the version for a later rollback
  ansible.builtin.debug:
    msg: "{{ pushed.mount }}/{{ pushed.path }} is at version {{ pushed.version }}, was {{ pushed.previous_version }}"

- name: Deliver as team-web's - marked with the owner before the data; another owner's secret is refused
  certautopilot.vault.vault_cert_push:
    url: "{{ vault_url }}"
    ca_cert: "{{ vault_ca_cert }}"
    role_id: "{{ vault_role_id }}"
    secret_id: "{{ vault_secret_id }}"
    path: certs/team-web/example.com
    owner: team-web
    adopt: false
    certificate: "{{ lookup('ansible.builtin.file', 'example.com.crt') }}"
    private_key: "{{ lookup('ansible.builtin.file', 'example.com.key') }}"

- name: Preview the same push - check mode reads and compares, writes nothing; the diff shows summaries, no keys
  certautopilot.vault.vault_cert_push:
    url: "{{ vault_url }}"
    ca_cert: "{{ vault_ca_cert }}"
    role_id: "{{ vault_role_id }}"
    secret_id: "{{ vault_secret_id }}"
    path: certs/example.com
    certificate: "{{ lookup('ansible.builtin.file', 'example.com.crt') }}"
    private_key: "{{ lookup('ansible.builtin.file', 'example.com.key') }}"
    chain: "{{ lookup('ansible.builtin.file', 'intermediate.crt') }}"
  check_mode: true
  diff: true

- name: Cert-only delivery under custom JSON keys, with a token
  certautopilot.vault.vault_cert_push:
    url: "{{ vault_url }}"
    ca_cert: "{{ vault_ca_cert }}"
    auth_method: token
    token: "{{ vault_token }}"
    path: certs/www.example.com
    certificate: "{{ lookup('ansible.builtin.file', 'www.example.com.crt') }}"
    include_private_key: false
    fields:
      certificate: tls.crt
      fullchain: tls-fullchain.crt
      chain:

# In a Kubernetes pod, leave jwt_file out: the service account token
# /var/run/secrets/kubernetes.io/serviceaccount/token is read.
- name: Deliver a batch with one login, JWT auth set once with module_defaults
  module_defaults:
    group/certautopilot.vault.vault:
      url: "{{ vault_url }}"
      ca_cert: "{{ vault_ca_cert }}"
      auth_method: jwt
      role: certs
      jwt_file: "{{ vault_jwt_file }}"
  certautopilot.vault.vault_cert_push:
    certificates:
      # Key files are read on the controller by the action plugin (files/ first), decrypted if vaulted.
      - path: certs/a.example.com
        certificate: "{{ lookup('ansible.builtin.file', 'a.example.com.crt') }}"
        private_key_file: a.example.com.key
      - path: certs/b.example.com
        certificate: "{{ lookup('ansible.builtin.file', 'b.example.com.crt') }}"
        private_key_file: b.example.com.key
  register: batch

- name: Show which certificates changed
  ansible.builtin.debug:
    msg: "{{ batch.results | selectattr('changed') | map(attribute='path') | list }}"

# HAProxy loads one PEM file per certificate (bind ... ssl crt); a template or agent writes the pem value to it.
- name: Deliver for HAProxy - one pem value, the certificate, its chain, then the key
  certautopilot.vault.vault_cert_push:
    url: "{{ vault_url }}"
    ca_cert: "{{ vault_ca_cert }}"
    role_id: "{{ vault_role_id }}"
    secret_id: "{{ vault_secret_id }}"
    path: certs/haproxy/example.com
    layout: haproxy
    certificate: "{{ lookup('ansible.builtin.file', 'example.com.crt') }}"
    private_key: "{{ lookup('ansible.builtin.file', 'example.com.key') }}"
    chain: "{{ lookup('ansible.builtin.file', 'intermediate.crt') }}"

# Rollback can reach only as far back as KV v2 keeps versions (10 by default). Set on create and when different;
# here the data is unchanged, so only the metadata is written (changed_fields - [max_versions, delete_version_after]).
- name: Keep 30 versions of the certificate for rollback, each for at most a year
  certautopilot.vault.vault_cert_push:
    url: "{{ vault_url }}"
    ca_cert: "{{ vault_ca_cert }}"
    role_id: "{{ vault_role_id }}"
    secret_id: "{{ vault_secret_id }}"
    path: certs/example.com
    certificate: "{{ lookup('ansible.builtin.file', 'example.com.crt') }}"
    private_key: "{{ lookup('ansible.builtin.file', 'example.com.key') }}"
    chain: "{{ lookup('ansible.builtin.file', 'intermediate.crt') }}"
    max_versions: 30
    delete_version_after: 365d
"""

RETURN = r"""
mount:
  description: The KV v2 mount.
  returned: single certificate
  type: str
  sample: secret
path:
  description: The secret path below the mount.
  returned: single certificate
  type: str
  sample: certs/example.com
version:
  description: The current version after the run (in check mode, the current one).
  returned: single certificate
  type: int
  sample: 2
previous_version:
  description: The current version before the run; V(null) when the secret was new.
  returned: single certificate
  type: int
  sample: 1
created:
  description: Whether the secret did not exist before the run.
  returned: single certificate
  type: bool
  sample: false
changed_fields:
  description:
    - Logical names of the fields that differ (C(certificate), C(private_key), C(chain), C(fullchain)),
      plus C(other_fields) when unmanaged keys were dropped and C(custom_metadata) when it changed.
    - Metadata names too - C(certautopilot_owner) when the ownership mark was added (O(owner)), and
      C(max_versions), C(delete_version_after) or C(cas_required) when the secret's setting was changed.
    - Empty when nothing was written (C(changed=false)).
  returned: single certificate
  type: list
  elements: str
  sample: [certificate, fullchain]
managed:
  description:
    - Whether the secret carries this collection's mark naming O(owner) after the run (in check mode - would
      carry). Without O(owner) - whether it carries C(managed_by=certautopilot.vault) without an owner (a mark an
      earlier release wrote).
  returned: single certificate
  type: bool
  sample: true
owner:
  description:
    - The owner the secret's mark names after the run (in check mode - would name); null when none.
    - After a data write, as the write's answer shows it - a mark the push's read could not show included (see the
      notes), with a warning when the push had no O(owner).
  returned: single certificate
  type: str
  sample: team-web
certificate:
  description: Metadata of the delivered certificate.
  returned: single certificate
  type: dict
  contains:
    cn:
      description: First common name of the subject.
      type: str
      sample: example.com
    sans:
      description: Subject alternative names.
      type: list
      elements: str
      sample: [example.com, www.example.com]
    serial:
      description: Serial number, colon-separated lowercase hex.
      type: str
      sample: "3a:0f:12"
    not_before:
      description: Start of validity, ISO 8601 UTC.
      type: str
      sample: "2026-01-01T00:00:00Z"
    not_after:
      description: End of validity, ISO 8601 UTC.
      type: str
      sample: "2027-01-01T00:00:00Z"
    issuer:
      description: Issuer distinguished name (RFC 4514).
      type: str
      sample: CN=Example Intermediate
    fingerprint_sha256:
      description: SHA-256 fingerprint of the DER certificate, lowercase hex.
      type: str
results:
  description:
    - One entry per item of O(certificates), in input order, each with the keys of a single run.
    - When a batch fails part-way, the results of the items delivered before the failure.
  returned: batch
  type: list
  elements: dict
failed_path:
  description: The path of the item a failed batch stopped at.
  returned: when a batch failed part-way
  type: str
  sample: certs/host-041.example.com
not_written:
  description: Paths of a failed batch that were certainly not written (the failed item and every item after it).
  returned: when a batch failed part-way
  type: list
  elements: str
outcome_unknown:
  description:
    - Paths whose write was sent but whose answer was lost (for example the server died); they may or may not
      have been applied. Run again to find out - the next run compares with the current version.
  returned: when a batch failed part-way
  type: list
  elements: str
"""

from ansible_collections.certautopilot.vault.plugins.module_utils import _keys, _layouts, _push, _version_policy
from ansible_collections.certautopilot.vault.plugins.module_utils._client import VaultClient
from ansible_collections.certautopilot.vault.plugins.module_utils._module import WriterModule, run_writer


def module_options() -> dict:
    """The options of this module besides those of every writer (_module.writer_argument_spec)."""
    return {
        "certificate": {"type": "str"},
        # The *_file options are read by the action plugin only (plugin_utils/_action.py); the module takes no file.
        "certificate_file": {"type": "str"},
        "private_key": {"type": "str", "no_log": True},
        "private_key_file": {"type": "str"},
        "chain": {"type": "raw"},
        "chain_file": {"type": "raw"},
        "certificates": {
            "type": "list",
            "elements": "dict",
            "options": {
                "path": {"type": "str", "required": True},
                "certificate": {"type": "str"},
                "certificate_file": {"type": "str"},
                "private_key": {"type": "str", "no_log": True},
                "private_key_file": {"type": "str"},
                "chain": {"type": "raw"},
                "chain_file": {"type": "raw"},
            },
            "mutually_exclusive": [
                ("private_key", "private_key_file"),
                ("certificate", "certificate_file"),
                ("chain", "chain_file"),
            ],
            "required_one_of": [("certificate", "certificate_file")],
        },
        "key_bundle": {"type": "str", "no_log": True},
        # Read by the action plugin only (plugin_utils/_files.py); the module takes no file.
        "files_root": {"type": "path"},
        "include_private_key": {"type": "bool", "default": True},
        "fields": {"type": "dict"},
        "layout": {"type": "str", "default": "default", "choices": list(_layouts.LAYOUTS)},
        "pkcs12_password": {"type": "raw", "no_log": True},
        "keep_other_fields": {"type": "bool", "default": True},
        "validate": {"type": "bool", "default": True},
        "custom_metadata": {"type": "bool", "default": False},
        "max_versions": {"type": "int"},
        "delete_version_after": {"type": "raw"},
        "cas_required": {"type": "bool"},
        "owner": {"type": "str"},
        "adopt": {"type": "bool", "default": True},
    }


def push(vault: WriterModule) -> dict:
    params = vault.params
    options = _push.PushOptions(
        mount=params["mount"],
        fields=_layouts.of(params["layout"]).fields(
            params["fields"],
            include_private_key=params["include_private_key"],
            pkcs12_password=params["pkcs12_password"],
        ),
        layout=params["layout"],
        pkcs12_password=params["pkcs12_password"],
        include_private_key=params["include_private_key"],
        keep_other_fields=params["keep_other_fields"],
        validate=params["validate"],
        custom_metadata=params["custom_metadata"],
        check_capabilities=params["check_capabilities"],
        check_mode=vault.module.check_mode,
        diff=vault.diff_mode,
        concurrency=params["concurrency"],
        version_policy=_version_policy.VersionPolicy.from_options(
            max_versions=params["max_versions"],
            delete_version_after=params["delete_version_after"],
            cas_required=params["cas_required"],
        ),
        owner=params["owner"],
        adopt=params["adopt"],
    )
    items = _push.prepare_items(_keys.attach_keys(vault.items, params["key_bundle"]), options)
    # A certificate of several secrets (acme_sh) returns one result per secret: a list, as a batch does.
    vault.batch = vault.batch or options.secret_layout.several_secrets
    for warning in options.secret_layout.path_warnings([item.path for item in items]):
        vault.module.warn(warning)

    def write(client: VaultClient) -> list[dict]:
        results = _push.push_all(client, items, options, batch=vault.batch)
        for result in results:
            warning = _push.landed_on_another_owner(result, options)
            if warning:
                vault.module.warn(warning)
        return results

    return vault.write_all(write)


def main() -> None:
    run_writer(
        push,
        module_options(),
        batch_option="certificates",
        single_options=_push.ITEM_OPTIONS,
        required="certificate",
        mutually_exclusive=[("private_key", "private_key_file")],
        required_together=[("path", "certificate")],
    )


if __name__ == "__main__":
    main()

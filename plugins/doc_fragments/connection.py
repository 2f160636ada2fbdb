# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # What every module of the collection documents: its author, what it needs, and the connection and login
    # options (all but auth_method, whose default and choices are the module's or WRITER's).
    DOCUMENTATION = r"""
author:
  - CertAutoPilot team (@certautopilot)
notes:
  - One login per module run, whatever the number of certificates.
  - Private keys, secret IDs, JWTs and tokens never appear in messages, return values or diffs.
requirements:
  - hvac >= 2.0.0
  - cryptography >= 40.0.0
options:
  url:
    description:
      - Address of the Vault or OpenBao server, for example C(https://vault.example.com:8200).
      - Falls back to the E(VAULT_ADDR) environment variable. Required one way or the other.
      - An address with credentials in it (C(https://user:password@host), a password holding C(/) included) is
        refused; give credentials as auth options.
      - An address with a query string (C(?...)) or a fragment (C(#...)) is refused before any request.
      - A refused address is never shown, since it may carry a credential - not in the message, and not in the
        module's C(invocation) (the module arguments Ansible prints at C(-v) and sends in every AWX job event).
      - A plain C(http://) address works, with a warning, since the token, secret ID, JWT and every private key
        the module writes or reads cross the network in clear. Use C(https://) outside a test on loopback.
      - A redirect (a standby sending the client to the active node) is followed only to an C(https) address,
        or to the same scheme, host and port; a redirect to plain C(http) elsewhere would carry the token and
        the request body in clear, so it is treated like a standby that cannot reach the active node.
      - A redirect to another C(https) address receives the token and the request body, as with Vault's own
        client. The server at O(url) (or whoever holds a certificate O(ca_cert) trusts for it) decides where they
        go; only a server you trust with the token belongs in O(url).
    type: str
    aliases: [address]
  namespace:
    description:
      - Namespace of the secret, sent as C(X-Vault-Namespace) on every data request.
      - Namespaces need Vault Enterprise or OpenBao 2.3 or newer.
      - Falls back to E(VAULT_NAMESPACE).
    type: str
  ca_cert:
    description:
      - The CA certificate that signed the server's TLS certificate, as a file path or as inline PEM text.
      - Inline PEM text is handed to TLS as O(client_key) describes.
      - Wins over E(REQUESTS_CA_BUNDLE) and E(SSL_CERT_FILE). Falls back to E(VAULT_CACERT).
      - When not set, the CA bundle of the Python C(requests) library is used - the C(certifi) package's
        bundle, or the file named by E(REQUESTS_CA_BUNDLE) or E(CURL_CA_BUNDLE) when set - not
        necessarily the system trust store.
    type: str
  validate_certs:
    description:
      - Whether to verify the server's TLS certificate. V(false) is for bring-up only and is warned about.
      - When not set, V(false) if E(VAULT_SKIP_VERIFY) is true, otherwise V(true).
    type: bool
  client_cert:
    description:
      - TLS client certificate presented on every connection, for mTLS listeners and O(auth_method=cert).
      - A file path or inline PEM text (for example C(lookup('ansible.builtin.file', 'client.crt'))); inline text is
        handed to TLS as O(client_key) describes.
      - The file may hold the private key too; then O(client_key) is not needed.
      - Falls back to E(VAULT_CLIENT_CERT).
    type: str
  client_key:
    description:
      - Private key of O(client_cert), unencrypted, as a file path or inline PEM text (handled as O(client_cert)).
      - Never logged or shown, neither as a path nor as text.
      - The certificate and key are checked to load together before any connection.
      - Python's C(ssl) loads certificates and keys only from paths, so inline PEM text (here, in O(client_cert)
        and in O(ca_cert)) needs one. On Linux it is an anonymous in-memory file (C(memfd_create)) opened through
        C(/proc/self/fd). It never reaches a disk, and the kernel frees it when the module process ends, however
        it ends - a task timeout or a C(SIGKILL) included. Elsewhere (or without C(/proc)) it is a 0600 file in a
        private 0700 directory under the temporary directory, removed when the module ends - on success, failure
        or exception (a C(finally) block), and by an exit hook (C(atexit)) otherwise; only a C(SIGKILL) or a
        crash of the interpreter leaves it behind there. Give a file path instead to avoid both.
      - Falls back to E(VAULT_CLIENT_KEY).
    type: str
  timeout:
    description:
      - Seconds one HTTP request may take in all - connecting, the TLS handshake, sending, and every byte of
        the answer - not each wait for a byte. A server (or proxy) that answers slowly is cut off when the
        time is up, and the request fails as C(<url> timed out). A retry (see O(retries)) gets the time again.
      - Name resolution is bounded by the system's resolver, not by this.
      - An answer may hold at most 64 MiB, twice the largest request OpenBao and Vault accept by default
        (C(max_request_size)), so any secret or list they stored fits. A larger one is refused as soon as it
        passes the limit, naming the request's method and API path, and is never held in memory whole.
    type: int
    default: 30
  retries:
    description:
      - How many times a transient failure is retried, with waits of 0.5 s doubling to at most 8 s (with jitter).
        The default waits about 40 s in all, which rides through a raft leader election under OpenBao's default
        timing (11 to 21 s measured on a 3-node cluster; 5 retries, about 15 s, did not).
      - A refused connection on a run's first request (nothing listens at the address yet) is retried for about
        10 s at most, within this budget - a node restarting in a failover listens again within that, while a
        wrong port in O(url) fails in seconds as C(connection refused by <url>). Once the server has answered,
        a refused connection gets every retry.
      - Transient means a connection error before an answer, or HTTP 412, 429, 500, 502, 503 or 504.
        A login is never sent again once the server answered it.
      - A write is never sent again blindly. When its answer does not prove it was refused (anything but Vault's
        own sealed or not-active-node answer, or a C(4xx) refusal), the secret is read back; a write that landed
        is reported as written, one that did not is sent again with the same check-and-set version. Only when
        even the read fails is the outcome reported as unknown.
      - Check-and-set conflicts are re-read and re-decided up to this many times too.
    type: int
    default: 8
  consistency_index:
    description:
      - The index state a previous module run returned as its C(consistency_index), so that this run reads
        at least everything that run wrote or read, whichever node of a read-scaled cluster answers.
      - Every module returns C(consistency_index), the highest C(X-Vault-Index) state its run saw (an empty string
        when the server sends none); pass it to the next task, as the P(certautopilot.vault.cert_distribution#role)
        role does between its own tasks.
      - On a server that sends C(X-Vault-Index) (OpenBao 2.7 and newer, Vault Enterprise), every request after the
        first answer carries the highest index state seen so far, with C(X-Vault-Inconsistent) set to
        C(forward-active-node). A node that has not caught up forwards the request to the active node, or answers
        "not caught up", which is retried within O(retries). A server that sends no index is talked to exactly as
        without this option.
      - A run that logs in sees everything committed before its login. A run given a O(token) has no login write
        and, without this option, may read a standby's older state. See "Clusters and consistency" in the guide.
      - Not a secret (cluster ids and raft indexes). An unreadable value is ignored.
    type: str
  auth_mount_point:
    description:
      - Mount point of the auth method. Defaults to the method's own name (V(approle), V(jwt), V(cert)).
      - Falls back to E(VAULT_AUTH_MOUNT_POINT).
    type: str
  auth_namespace:
    description:
      - Namespace to log in to. Defaults to O(namespace). Falls back to E(VAULT_AUTH_NAMESPACE).
      - Not used by O(auth_method=token), which has no login - its token is checked and used in O(namespace).
    type: str
  role_id:
    description:
      - AppRole role ID. Falls back to E(VAULT_ROLE_ID).
    type: str
  secret_id:
    description:
      - AppRole secret ID. Never logged. Falls back to E(VAULT_SECRET_ID).
      - A login is never retried after the server answered it, so a secret ID with limited uses is spent once.
    type: str
  role:
    description:
      - The JWT role, or the cert auth role name. When not set, the method's default role is used.
      - Falls back to E(VAULT_AUTH_ROLE).
    type: str
  jwt:
    description:
      - The JWT for O(auth_method=jwt). Never logged. Mutually exclusive with O(jwt_file).
    type: str
  jwt_file:
    description:
      - File holding the JWT for O(auth_method=jwt).
      - When neither O(jwt) nor O(jwt_file) is given, the Kubernetes service account token
        C(/var/run/secrets/kubernetes.io/serviceaccount/token) is read.
      - Falls back to E(VAULT_JWT_FILE).
    type: path
  token:
    description:
      - A Vault token for O(auth_method=token). Never logged, never revoked by the module.
      - Falls back to E(VAULT_TOKEN). Given without O(role_id), O(secret_id), O(jwt) and O(jwt_file), it makes token
        auth the default.
      - Checked first (C(auth/token/lookup-self), one request, with the run's consistency index). A token the server
        does not know - wrong, expired, revoked - fails the run as C(token not accepted) before anything else.
    type: str
  revoke_token:
    description:
      - Revoke the token the module obtained by logging in (C(auth/token/revoke-self), best effort) before it exits.
      - A token given with O(auth_method=token) is never revoked.
    type: bool
    default: true
"""

    # What the modules that write (push, rollback, retire) add to DOCUMENTATION: the options of
    # _module.writer_argument_spec(), auth_method (they need a login), and the
    # attributes they share.
    WRITER = r"""
options:
  auth_method:
    description:
      - How to log in.
      - Falls back to E(VAULT_AUTH_METHOD). Without either, V(token) when a token is given (O(token) or
        E(VAULT_TOKEN)) and no credential of another login (O(role_id), O(secret_id), O(jwt), O(jwt_file)) is given,
        even empty, else V(approle) - a E(VAULT_TOKEN) in the environment never stands in for the login a task asked
        for.
    type: str
    choices: [approle, jwt, cert, token]
  mount:
    description:
      - Path of the KV v2 secrets engine. A KV v1 mount is refused before anything is written.
    type: str
    default: secret
    aliases: [engine_mount_point]
  path:
    description:
      - Secret path below O(mount), already rendered
        (the P(certautopilot.vault.cert_distribution#role) role renders templates).
      - Refused before any request when empty, starting or ending with C(/), holding an empty, C(.) or C(..) segment,
        whitespace, a control character, C(?), C(#), C(%) or C(\), or longer than 1024 characters.
      - Refused too when it starts with the mount and the API's C(data/) or C(metadata/) segment
        (C(secret/data/certs/www), the API's and hvac's spelling) - the module adds those itself; the message names
        the path meant (C(certs/www)).
      - "Refused, without being quoted, when it holds template syntax (C({{), C({%), C({#)) - a path is recorded in
        results files and C(set_stats) that Ansible reads back as variables, where it would run as a template."
      - Required for a single secret; each item of a batch has its own path instead.
    type: str
  check_capabilities:
    description:
      - Before any write, ask the server (C(sys/capabilities-self), one request per 500 paths, in the run's own
        login) whether the token has every capability the run needs on each of its paths, and refuse the run,
        writing nothing, when it lacks any - instead of failing part-way through a batch.
      - A push needs C(read), C(create) and C(update) on C(<mount>/data/<path>), what
        P(certautopilot.vault.vault_health#module) checks on one path.
      - A rollback needs C(read) and C(update) on C(<mount>/data/<path>) and C(read) on C(<mount>/metadata/<path>),
        what P(certautopilot.vault.vault_health#module) checks with
        O(certautopilot.vault.vault_health#module:check_rollback).
      - A retirement needs C(read) on C(<mount>/metadata/<path>), and the write of its
        O(certautopilot.vault.vault_cert_retire#module:mode) - C(update) on C(<mount>/delete/<path>) or
        C(<mount>/destroy/<path>), or C(delete) on C(<mount>/metadata/<path>).
      - Every path of the run is checked without a second login.
    type: bool
    default: false
  concurrency:
    description:
      - How many items of a batch are in flight at once, over one login and a pool of kept-alive connections
        (one per item in flight). V(1) handles one item after another.
      - Results are returned in input order whatever the order the items finish in.
      - The first failure stops handing out items; those in flight finish, and the failure report names every
        item that failed, what was certainly not written (RV(not_written)) and what may have been
        (RV(outcome_unknown)).
      - A V(429) or V(503) answer (rate limit, standby) holds back the whole pool, not only the request that got it.
      - Two items for one secret are refused before anything is sent, and every write is check-and-set (or, for a
        retirement, names the versions it read), so concurrency never lets one write undo another.
    type: int
    default: 8
attributes:
  action:
    support: full
    description: An action plugin of the same name runs on the controller before the module.
  check_mode:
    support: full
    description: Reads and decides; writes nothing.
  diff_mode:
    support: full
    description:
      - Field summaries only (a retirement - the state of each version), never PEM bodies or keys.
      - A batch returns one diff per item.
"""

    # What the read-only modules (vault_health, vault_cert_info) share.
    READER = r"""
attributes:
  check_mode:
    support: full
    description: The module never changes anything, in check mode or not.
  diff_mode:
    support: none
    description: Nothing changes, so there is nothing to diff.
"""

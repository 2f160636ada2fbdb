# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""cert_expiry: an Event-Driven Ansible source of certificate expiry events from Vault / OpenBao KV v2."""

from __future__ import annotations

DOCUMENTATION = r"""
---
short_description: Watch the certificates in Vault / OpenBao KV v2 and emit an event as they near expiry
description:
  - Polls the secrets under O(prefix) (or the O(paths)) of a KV v2 mount every O(interval) seconds, with the
    same reads as M(certautopilot.vault.vault_cert_info) and one login per poll (the token is revoked after
    the poll unless O(revoke_token=false)).
  - Emits one event when a certificate B(enters) C(expiring) (at most O(expiring_within) days left) or
    C(expired), when a secret becomes C(unreadable), and when a secret has a new version (a renewal: one
    C(version_changed) event, not also an expiry event). A certificate that stays expiring is not reported
    again.
  - The first poll of a process reports every certificate already expiring or expired, once. With
    O(state_file), what was seen survives a restart and a restarted process reports only what changed.
  - When a poll fails (the server unreachable, sealed, a login refused), one C(vault_unavailable) event says
    so; the next polls back off (the interval doubled for each failed poll, at most 300 seconds or the
    interval if longer), and one C(vault_available) event follows the first poll that works again.
  - "Each event is C({cert_expiry: {type, mount, path, version, status, reason, days_left, cn, sans, serial,
    not_after}}) (C(previous_version) too for C(version_changed); C(vault_unavailable) carries C(reason)).
    C(type) is C(expiring), C(expired), C(unreadable), C(version_changed), C(vault_unavailable) or
    C(vault_available). No event ever holds key material or credentials."
  - Options are those of M(certautopilot.vault.vault_cert_info) (connection, auth, O(mount), O(prefix) or
    O(paths), O(fields), O(expiring_within), O(concurrency), C(owner)), with the same environment fallbacks
    (C(VAULT_ADDR), C(VAULT_ROLE_ID), C(VAULT_SECRET_ID), C(VAULT_TOKEN), ...), except C(fail_on); plus
    O(interval) and O(state_file).
  - Through a read-scaled cluster, each poll carries the highest C(X-Vault-Index) state the polls before it saw
    (kept in O(state_file) across restarts, seeded by C(consistency_index)), so a poll never reads older data
    than the one before it.
  - Needs C(hvac) and C(cryptography) where ansible-rulebook runs, and this collection installed there.
  - An AppRole O(secret_id) is used once per poll: give one without a use limit (C(secret_id_num_uses=0)).
options:
  interval:
    description: Seconds between two polls.
    type: float
    default: 3600
  state_file:
    description:
      - A JSON file where the watch keeps what the last poll saw (path, status and version of each secret, and the
        consistency index; no certificate data), replaced atomically after each poll. Without it, a restarted
        process reports every certificate already expiring or expired again.
    type: path
  mount:
    description: The KV v2 mount.
    type: str
    default: secret
  prefix:
    description: The folder to watch, recursively.
    type: str
  expiring_within:
    description: A certificate with at most this many days left is C(expiring).
    type: int
    default: 30
"""

EXAMPLES = r"""
- name: Renew certificates as they near expiry
  hosts: localhost
  sources:
    - name: Certificates in Vault
      certautopilot.vault.cert_expiry:
        url: https://vault.example.com:8200
        auth_method: approle
        prefix: certs
        expiring_within: 21
        interval: 3600
        state_file: /var/lib/eda/cert_expiry.json
  rules:
    - name: Renew an expiring certificate
      condition: event.cert_expiry.type == "expiring"
      action:
        run_playbook:
          name: renew_certificate.yml
"""

import asyncio
import logging
import sys
import typing as t
from pathlib import Path

try:
    from ansible_collections.certautopilot.vault.plugins.module_utils import _watch
except ImportError:
    # ansible-rulebook runs a source by its file path: the collections root is seven folders up
    # (ansible_collections/certautopilot/vault/extensions/eda/plugins/event_source/cert_expiry.py).
    sys.path.insert(0, str(Path(__file__).absolute().parents[7]))
    from ansible_collections.certautopilot.vault.plugins.module_utils import _watch

from ansible_collections.certautopilot.vault.plugins.module_utils._errors import VaultCertError  # noqa: E402


async def main(queue: asyncio.Queue, args: dict[str, t.Any]) -> None:
    """Poll forever; put each event on ``queue`` as ``{"cert_expiry": event}``."""
    watch = _watch.watch_from_args(args, log=logging.getLogger(__name__).warning)
    while True:
        for event in await asyncio.to_thread(watch.poll):
            await queue.put({"cert_expiry": event})
        await asyncio.sleep(watch.wait())


if __name__ == "__main__":
    # A manual run outside ansible-rulebook: python cert_expiry.py, with VAULT_ADDR and credentials in the
    # environment; prints the events of the watch of secret/certs.

    class _PrintQueue:
        async def put(self, event: dict[str, t.Any]) -> None:
            print(event)

    try:
        asyncio.run(main(_PrintQueue(), {"prefix": "certs", "interval": 60}))  # type: ignore[arg-type]
    except VaultCertError as exc:
        sys.exit(str(exc))

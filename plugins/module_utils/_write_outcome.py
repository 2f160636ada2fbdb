# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A write is sent once: an answer that does not prove a refusal is resolved by reading back, never by resending
blindly. Private to the collection."""

from __future__ import annotations

import typing as t

from ansible_collections.certautopilot.vault.plugins.module_utils._client import VaultClient
from ansible_collections.certautopilot.vault.plugins.module_utils._errors import OutcomeUnknown, VaultCertError

Sent = t.TypeVar("Sent")


def sent_once(
    client: VaultClient,
    send: t.Callable[[bool], Sent],
    landed: t.Callable[[], Sent | None],
    *,
    proof: str,
) -> Sent:
    """Send a write that is never sent again blindly; what ``send`` returns once it is applied.

    After an answer that does not prove a refusal (OutcomeUnknown), ``landed`` reads the secret back:
    a result when the write took effect, None when it certainly did not - then, after the retry
    wait, it is sent again (``send`` is told an earlier attempt's outcome was unknown). OutcomeUnknown
    leaves here when the reads cannot tell, or the last attempt may still be in flight; ``proof``
    says why an answered last attempt is known not to have been applied.
    """
    waits = client.retry_waits()
    after_unknown = False
    for attempt in range(len(waits) + 1):
        try:
            return send(after_unknown)
        except OutcomeUnknown as unknown:
            after_unknown = True
            last = attempt == len(waits)
            if not last:
                client.pause(waits[attempt])
            result = landed()
            if result is not None:
                return result
            if last and unknown.answered:
                raise VaultCertError(f"{unknown}; {proof}") from None
            if last:
                raise OutcomeUnknown(
                    f"{unknown}; the write may or may not have been applied (run again to find out)"
                ) from None
    raise AssertionError("unreachable")  # pragma: no cover

# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The collection's exceptions: one base type, whose message is the user-facing text. Private to the collection."""

from __future__ import annotations


class VaultCertError(Exception):
    """A failure whose message is already the user-facing text.

    Messages never hold a PEM body, a private key, a token, a secret_id or a JWT.
    ``result`` holds return values the module reports along with the failure.
    """

    def __init__(self, message: str, *, result: dict | None = None) -> None:
        super().__init__(message)
        self.result = dict(result or {})


class OutcomeUnknown(VaultCertError):
    """A write was sent and no answer proves whether it was applied.

    The KV layer resolves it by reading the secret back; it leaves the KV layer only
    when even that cannot tell, as a write that "may or may not have been applied".
    ``answered`` is true when the server (or a proxy) finished the request with an
    answer, so a read after it sees the write if it landed; false when the request may
    still be in progress (lost connection, timeout, gateway timeout).
    """

    def __init__(self, message: str, *, answered: bool = False, result: dict | None = None) -> None:
        super().__init__(message, result=result)
        self.answered = answered


class CasConflict(VaultCertError):
    """Someone else wrote the secret between our read and our write; ours was not applied."""


class PermissionDenied(VaultCertError):
    """The server answered 403 to a request of a valid token: its policy does not grant the capability.

    Raised for one path; the token itself still works, so a read-only report can note the path and go on.
    """

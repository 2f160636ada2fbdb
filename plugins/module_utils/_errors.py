# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The collection's one exception type. Private to the collection."""

from __future__ import annotations


class VaultCertError(Exception):
    """A failure whose message is already the user-facing text.

    Messages never hold a PEM body, a private key, a token, a secret_id or a JWT.
    """

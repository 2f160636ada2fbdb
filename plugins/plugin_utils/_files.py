# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reading files on the controller, Ansible Vault-encrypted or not. Private to the collection."""

from __future__ import annotations

import os
import typing as t

from ansible_collections.certautopilot.vault.plugins.module_utils._errors import VaultCertError
from ansible_collections.certautopilot.vault.plugins.module_utils._pem import shown


def read_text(loader: t.Any, path: str, *, what: str) -> str:
    """A controller file's text, decrypted first when it is Ansible Vault-encrypted.

    Errors name the file, never its contents (it may be a private key), nor a path that looks like one.
    """
    if not os.path.isfile(path):
        reason = "not a file" if os.path.exists(path) else "no such file"
        raise VaultCertError(f"cannot read {what} {shown(path)}: {reason}")
    try:
        real = loader.get_real_file(path, decrypt=True)
        try:
            with open(real, "rb") as handle:
                data = handle.read()
        finally:
            loader.cleanup_tmp_file(real)
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise VaultCertError(f"cannot read {what} {shown(path)}: it is not UTF-8 text") from None
    except OSError as exc:
        raise VaultCertError(f"cannot read {what} {shown(path)}: {exc.strerror}") from None
    except Exception as exc:  # noqa: BLE001 - the loader's errors may quote the file: none of their text is shown
        raise VaultCertError(f"cannot read {what} {shown(path)}: {_loader_failure(exc)}") from None


def _loader_failure(exc: Exception) -> str:
    if "Vault" in type(exc).__name__ or "vault" in str(exc).lower():
        return "it cannot be decrypted (is the Ansible Vault password given, and the right one?)"
    return f"the loader refused it ({type(exc).__name__})"

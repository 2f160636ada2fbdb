# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reading files on the controller, Ansible Vault-encrypted or not. Private to the collection."""

from __future__ import annotations

import os
import typing as t

from ansible_collections.certautopilot.vault.plugins.module_utils._errors import VaultCertError


def read_text(loader: t.Any, path: str, *, what: str) -> str:
    """A controller file's text, decrypted first when it is Ansible Vault-encrypted.

    Errors name the file, never its contents (it may be a private key).
    """
    if not os.path.isfile(path):
        reason = "not a file" if os.path.exists(path) else "no such file"
        raise VaultCertError(f"cannot read {what} {path}: {reason}")
    try:
        real = loader.get_real_file(path, decrypt=True)
        try:
            with open(real, "rb") as handle:
                data = handle.read()
        finally:
            loader.cleanup_tmp_file(real)
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise VaultCertError(f"cannot read {what} {path}: it is not UTF-8 text") from None
    except OSError as exc:
        raise VaultCertError(f"cannot read {what} {path}: {exc.strerror}") from None
    except Exception as exc:  # bad vault data or password: named by its type, since its text may quote the file
        raise VaultCertError(f"cannot read {what} {path}: {type(exc).__name__}") from None

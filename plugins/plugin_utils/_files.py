# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reading files on the controller, Ansible Vault-encrypted or not. Private to the collection.

The one reader of the file options (certificate_file, chain_file, private_key_file) for the action plugins and
the cert_batch lookup. Whoever fills in a certificate list (an AWX survey) names the files, so a file option
gives only what it names - certificates, or a private key - never the rest of a file, and ``files_root``
confines every file option to one directory, judged after symlinks and ``..`` are resolved.
"""

from __future__ import annotations

import os
import typing as t

from ansible_collections.certautopilot.vault.plugins.module_utils._errors import VaultCertError
from ansible_collections.certautopilot.vault.plugins.module_utils._pem import CERTIFICATE_LABEL, scan, shown

CERTIFICATES = "certificates"
PRIVATE_KEY = "private_key"
KINDS = (CERTIFICATES, PRIVATE_KEY)


def confined(path: str, *, option: str, root: str | None) -> str:
    """``path`` resolved (symlinks, ``..``), and refused unless it lies inside ``root`` when a root is given.

    A relative path is taken from ``root``. Neither the path nor the root is named in the refusal: the path
    came from whoever filled in the list.
    """
    if not root:
        return os.path.realpath(path)
    real_root = os.path.realpath(os.path.expanduser(root))
    if not os.path.isdir(real_root):
        raise VaultCertError(f"{option}: files_root is not a directory on the controller; nothing written")
    real = os.path.realpath(os.path.join(real_root, path))
    if os.path.commonpath([real, real_root]) != real_root:
        raise VaultCertError(
            f"{option}: the file lies outside files_root (symlinks and '..' resolved); nothing written"
        )
    return real


def read_option_file(loader: t.Any, path: str, *, option: str, kind: str, root: str | None = None) -> str:
    """What a file option names in its file: its PEM certificates, or its one private key; nothing else of it.

    ``option`` names the option and its item (``certificates[2].chain_file``) in every refusal, which never
    shows the file's text and shows the path only when no root confines it (the root's own refusals name none).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    real = confined(path, option=option, root=root)
    text = read_text(loader, real, what=option, named=not root)
    if kind == CERTIFICATES:
        return certificate_blocks(text, option=option)
    return private_key_block(text, option=option)


def certificate_blocks(text: str, *, option: str) -> str:
    """The file's certificates, one after the other; text around them is left behind, never passed on."""
    blocks = scan(text)
    if not blocks or any(not block.complete or block.label != CERTIFICATE_LABEL for block in blocks):
        raise VaultCertError(
            f"{option}: the file is not a PEM certificate file (it must hold CERTIFICATE blocks and nothing else "
            "of PEM); nothing written, and nothing of the file is shown"
        )
    return "".join(text[block.start : block.end] + "\n" for block in blocks)


def private_key_block(text: str, *, option: str) -> str:
    """The file's one private key; certificates beside it (a combined PEM) and other text are left behind."""
    blocks = scan(text)
    keys = [block for block in blocks if block.private]
    if len(keys) != 1 or not keys[0].complete or any(not block.complete for block in blocks):
        raise VaultCertError(
            f"{option}: the file does not hold exactly one PEM private key; nothing written, and nothing of the "
            "file is shown"
        )
    return text[keys[0].start : keys[0].end] + "\n"


def read_text(loader: t.Any, path: str, *, what: str, named: bool = True) -> str:
    """A controller file's text, decrypted first when it is Ansible Vault-encrypted.

    Errors name the file (when ``named``), never its contents (it may be a private key), nor a path that looks
    like one.
    """
    where = f"{what} {shown(path)}" if named else what
    if not os.path.isfile(path):
        reason = "not a file" if os.path.exists(path) else "no such file"
        raise VaultCertError(f"cannot read {where}: {reason}")
    try:
        real = loader.get_real_file(path, decrypt=True)
        try:
            with open(real, "rb") as handle:
                data = handle.read()
        finally:
            loader.cleanup_tmp_file(real)
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise VaultCertError(f"cannot read {where}: it is not UTF-8 text") from None
    except OSError as exc:
        raise VaultCertError(f"cannot read {where}: {exc.strerror}") from None
    except Exception as exc:  # noqa: BLE001 - the loader's errors may quote the file: none of their text is shown
        raise VaultCertError(f"cannot read {where}: {_loader_failure(exc)}") from None


def _loader_failure(exc: Exception) -> str:
    if "Vault" in type(exc).__name__ or "vault" in str(exc).lower():
        return "it cannot be decrypted (is the Ansible Vault password given, and the right one?)"
    return f"the loader refused it ({type(exc).__name__})"

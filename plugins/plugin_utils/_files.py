# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reading files on the controller, Ansible Vault-encrypted or not. Private to the collection.

The one reader of the file options (certificate_file, chain_file, private_key_file) for the action plugins and
the cert_batch lookup. Whoever fills in a certificate list (an AWX survey) names the files, so a file option
gives only what it names - certificates, or a private key - never the rest of a file, and ``files_root``
confines every file option to one directory, judged after symlinks and ``..`` are resolved.

A file is opened once, by its resolved path, and judged on the open descriptor (regular file, size, and under
``files_root`` where the kernel says it lies): a name swapped for a symlink or a FIFO between the check and the
read - by someone who may write below the root - is refused, never followed or waited on.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
import typing as t

from ansible.parsing.vault import is_encrypted

from ansible_collections.certautopilot.vault.plugins.module_utils._errors import VaultCertError
from ansible_collections.certautopilot.vault.plugins.module_utils._pem import CERTIFICATE_LABEL, scan

CERTIFICATES = "certificates"
PRIVATE_KEY = "private_key"
KINDS = (CERTIFICATES, PRIVATE_KEY)

# A certificate chain or a private key is a few KiB; an Ansible Vault-encrypted one about twice that. A file
# option naming anything larger (a log, a disk image) is refused before it is read.
MAX_FILE_BYTES = 2**20
TOO_LARGE = "it is larger than 1 MiB, which no certificate chain or private key is; nothing written"
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_NOCTTY | os.O_CLOEXEC
_PROC_FDS = "/proc/self/fd"


def confined(path: str, *, option: str, root: str | None) -> str:
    """``path`` resolved (symlinks, ``..``), and refused unless it lies inside ``root`` when a root is given.

    A relative path is taken from ``root``. Neither the path nor the root is named in the refusal: the path
    came from whoever filled in the list.
    """
    if not root:
        return os.path.realpath(path)
    real_root = _real_root(root, option=option)
    real = os.path.realpath(os.path.join(real_root, path))
    _refuse_outside(real, real_root=real_root, option=option)
    return real


def _real_root(root: str, *, option: str) -> str:
    real_root = os.path.realpath(os.path.expanduser(root))
    if not os.path.isdir(real_root):
        raise VaultCertError(f"{option}: files_root is not a directory on the controller; nothing written")
    return real_root


def _refuse_outside(real: str | None, *, real_root: str, option: str) -> None:
    """Refuse ``real`` (a resolved path; None when it cannot be known) unless it lies inside ``real_root``."""
    if real is None:
        return
    if os.path.commonpath([real, real_root]) != real_root:
        raise VaultCertError(
            f"{option}: the file lies outside files_root (symlinks and '..' resolved); nothing written"
        )


def read_option_file(loader: t.Any, path: str, *, option: str, kind: str, root: str | None = None) -> str:
    """What a file option names in its file: its PEM certificates, or its one private key; nothing else of it.

    ``option`` names the option and its item (``certificates[2].chain_file``) in every refusal, which shows
    neither the file's text nor its path.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    real = confined(path, option=option, root=root)
    text = read_text(loader, real, what=option, root=root)
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


def read_text(loader: t.Any, path: str, *, what: str, root: str | None = None) -> str:
    """A controller file's text, decrypted first when it is Ansible Vault-encrypted.

    The file is opened once and everything is judged and read on that descriptor (see read_bytes). Errors name
    the option (``what``), never the file's path (the user's value) nor its contents (it may be a private key).
    """
    where = what
    data = read_bytes(path, where=where, option=what, root=root)
    if is_encrypted(data):
        data = _decrypted(loader, data, where=where)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise VaultCertError(f"cannot read {where}: it is not UTF-8 text") from None


def read_bytes(path: str, *, where: str, option: str, root: str | None = None) -> bytes:
    """The bytes of the regular file at ``path`` (already resolved), at most MAX_FILE_BYTES of them.

    One open, then no name is looked up again: the path is resolved before this, so a name swapped for a
    symlink afterwards is refused (O_NOFOLLOW), a FIFO or device swapped in neither blocks the run (O_NONBLOCK)
    nor is read (fstat), and with ``root`` the file actually opened must lie inside it (its /proc name).
    """
    try:
        descriptor = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        raise VaultCertError(f"cannot read {where}: {_open_failure(exc)}") from None
    try:
        if root:
            _refuse_outside(_opened_path(descriptor), real_root=_real_root(root, option=option), option=option)
        status = os.fstat(descriptor)
        if not stat.S_ISREG(status.st_mode):
            raise VaultCertError(f"cannot read {where}: not a file")
        # A file may grow after fstat: one byte past the cap is read to tell.
        data = _read_at_most(descriptor, MAX_FILE_BYTES + 1) if status.st_size <= MAX_FILE_BYTES else b""
        if status.st_size > MAX_FILE_BYTES or len(data) > MAX_FILE_BYTES:
            raise VaultCertError(f"cannot read {where}: {TOO_LARGE}")
        return data
    except OSError as exc:
        raise VaultCertError(f"cannot read {where}: {exc.strerror}") from None
    finally:
        os.close(descriptor)


def _open_failure(exc: OSError) -> str:
    if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ENAMETOOLONG):
        return "no such file"
    if exc.errno == errno.ELOOP:
        return "a symbolic link took its place after its path was resolved"
    return exc.strerror or type(exc).__name__


def _opened_path(descriptor: int) -> str | None:
    """Where the open file lies, from the kernel; None without /proc (there the resolved path was judged)."""
    if not os.path.isdir(_PROC_FDS):
        return None
    return os.readlink(os.path.join(_PROC_FDS, str(descriptor)))


def _read_at_most(descriptor: int, size: int) -> bytes:
    chunks: list[bytes] = []
    remaining = size
    while remaining > 0:
        chunk = os.read(descriptor, min(remaining, 65536))
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _decrypted(loader: t.Any, ciphertext: bytes, *, where: str) -> bytes:
    """``ciphertext`` decrypted by the loader.

    The loader decrypts files only: it gets a private copy of the bytes read, never the option's path, which may
    name another file by now.
    """
    handle, copy = tempfile.mkstemp(prefix="certautopilot-vault-")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(ciphertext)
        real = loader.get_real_file(copy, decrypt=True)
        try:
            with open(real, "rb") as decrypted:
                return decrypted.read()
        finally:
            loader.cleanup_tmp_file(real)
    except OSError as exc:
        raise VaultCertError(f"cannot read {where}: {exc.strerror}") from None
    except Exception as exc:  # noqa: BLE001 - the loader's errors may quote the file: none of their text is shown
        raise VaultCertError(f"cannot read {where}: {_loader_failure(exc)}") from None
    finally:
        os.unlink(copy)


def _loader_failure(exc: Exception) -> str:
    if "Vault" in type(exc).__name__ or "vault" in str(exc).lower():
        return "it cannot be decrypted (is the Ansible Vault password given, and the right one?)"
    return f"the loader refused it ({type(exc).__name__})"

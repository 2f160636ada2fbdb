# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The file options of a certificate list, read on the managed hosts. Private to the collection.

The role's tasks/remote_files.yml reads ``certificate_file``, ``chain_file`` and ``private_key_file`` on each host
with ansible.builtin modules (``realpath``, ``stat``, ``slurp``), so nothing of the collection needs to run there.
What they find is judged here by the controller's rules (plugin_utils/_files.py): a path is resolved (symlinks,
``..``) before it is judged against ``files_root``, a relative path is taken from the root, a file must be a
regular file of at most 1 MiB, and a file option gives only what it names - the PEM certificates of a certificate
or chain file, the one private key of a key file - through the very functions the controller's reader uses.

Refusals name the option and item (``cert_distribution_certs[2].private_key_file``), never a path or a file's text.
"""

from __future__ import annotations

import base64
import binascii
import posixpath
import typing as t

from ansible_collections.certautopilot.vault.plugins.module_utils._errors import VaultCertError
from ansible_collections.certautopilot.vault.plugins.plugin_utils._files import (
    CERTIFICATES,
    MAX_FILE_BYTES,
    PRIVATE_KEY,
    TOO_LARGE,
    certificate_blocks,
    private_key_block,
)

# (file option, inline option it becomes, what its file must hold)
FILE_OPTIONS = (
    ("certificate_file", "certificate", CERTIFICATES),
    ("chain_file", "chain", CERTIFICATES),
    ("private_key_file", "private_key", PRIVATE_KEY),
)
ROOT_OPTION = "cert_distribution_files_root"


def planned_reads(
    certs: t.Any,
    *,
    files_root: str | None = None,
    include_chain: bool = True,
    include_private_key: bool = True,
    items_name: str = "cert_distribution_certs",
) -> list[dict[str, t.Any]]:
    """Every file the list names, as ``{name, index, option, listed, path, kind}``, in list order.

    ``path`` is where the host finds it: relative to ``files_root`` when the path is relative. Without a root a
    relative path is refused: on a managed host it would be taken from wherever the module happens to run.
    """
    if not isinstance(certs, (list, tuple)):
        raise VaultCertError(f"{items_name} must be a list of certificates")
    reads = []
    for index, cert in enumerate(certs):
        if not isinstance(cert, t.Mapping):
            raise VaultCertError(f"{items_name}[{index}] must be a dictionary")
        for option, inline, kind in _options_read(include_chain, include_private_key):
            value = cert.get(option)
            if value in (None, "", []):
                continue
            item = f"{items_name}[{index}]"
            if cert.get(inline) not in (None, ""):
                raise VaultCertError(f"{item} gives both {inline} and {option}; give one")
            listed = option == "chain_file" and isinstance(value, (list, tuple))
            for position, path in enumerate(value if listed else [value]):
                name = f"{item}.{option}" + (f"[{position}]" if listed else "")
                reads.append(
                    {
                        "name": name,
                        "index": index,
                        "option": option,
                        "listed": listed,
                        "path": _host_path(path, name=name, files_root=files_root),
                        "kind": kind,
                    }
                )
    return reads


def _options_read(include_chain: bool, include_private_key: bool) -> list[tuple[str, str, str]]:
    skipped = {"chain_file"} if not include_chain else set()
    skipped |= {"private_key_file"} if not include_private_key else set()
    return [entry for entry in FILE_OPTIONS if entry[0] not in skipped]


def _host_path(path: t.Any, *, name: str, files_root: str | None) -> str:
    if not isinstance(path, str) or not path:
        raise VaultCertError(f"{name} must be a file path")
    # The reads are a fact the role shows (-v, and ansible-runner's job events at any verbosity), and their paths go
    # to the host in realpath's argv (its process list): a key or token pasted into a *_file option stops here.
    if _pasted_secret(path):
        raise VaultCertError(
            f"{name} is not a file path (it holds a PEM marker or a line break: not shown); nothing written"
        )
    if files_root:
        # As on the controller: a relative path is taken from the root, an absolute one stays itself.
        return posixpath.join(files_root, path)
    if not posixpath.isabs(path):
        raise VaultCertError(
            f"{name}: a relative path on the managed host needs {ROOT_OPTION} (it is taken from there); give an "
            "absolute path or set the root"
        )
    return path


def _pasted_secret(path: str) -> bool:
    """Whether a file option holds what no path does and a PEM key pasted into the wrong option does.

    Known by what a path cannot hold, not guessed from a value's shape: a one-line secret (a token) pasted here is
    an ordinary path to the role, never shown (every task on the host is no_log) and refused when no such file
    exists.
    """
    return any(mark in path for mark in ("\n", "\r", "\0", "-----"))


def refusals(
    reads: list[dict[str, t.Any]],
    *,
    stats: t.Any = None,
    real_paths: t.Any = None,
    real_root: t.Any = None,
    slurps: t.Any = None,
) -> list[str]:
    """Why each read is refused, by what the host showed: ``stats`` before the files are read, ``slurps`` after.

    Under a root, ``real_paths`` are the host's resolutions of the reads' paths and ``real_root`` its resolution of
    the root (which fails unless it is a directory). Empty when every file may be, or was, read.
    """
    resolved = _by_item(real_paths)
    rooted = real_root is not None
    if rooted:
        real_root = _resolution(real_root)
        if not real_root:
            return [f"{ROOT_OPTION}: not a directory on the managed host; nothing written"]
    found = []
    for read in reads:
        path = _resolved(read, resolved) if rooted else read["path"]
        if rooted and not path:
            reason = "no such file on the managed host (or a directory on its way cannot be searched); nothing written"
        elif rooted and not _inside(path, real_root):
            reason = (
                f"the file lies outside {ROOT_OPTION} on the managed host (symlinks and '..' resolved); nothing written"
            )
        elif stats is not None:
            reason = _stat_refusal(_by_item(stats).get(path))
        else:
            reason = _content_refusal(read, _by_item(slurps).get(path))
        if reason:
            found.append(f"{read['name']}: {reason}")
    return found


def _content_refusal(read: t.Mapping[str, t.Any], result: t.Mapping[str, t.Any] | None) -> str:
    """Why the file's text is refused for its option (the reader's own words, without the option's name)."""
    try:
        _option_text(read, result)
    except VaultCertError as exc:
        return str(exc).split(": ", 1)[-1]
    return ""


def with_texts(
    certs: list[t.Mapping[str, t.Any]],
    reads: list[dict[str, t.Any]],
    *,
    slurps: t.Any,
    real_paths: t.Any = None,
    include_chain: bool = True,
    include_private_key: bool = True,
) -> list[dict[str, t.Any]]:
    """``certs`` with each file option replaced by the inline option holding what its file gave.

    A file option that was not read (the chain and key when only paths are wanted) is left out of the items, so
    that nothing downstream looks for it on the controller.
    """
    resolved = _by_item(real_paths)
    texts = _by_item(slurps)
    items = [dict(cert) for cert in certs]
    if not include_chain:
        _drop(items, "chain_file")
    if not include_private_key:
        _drop(items, "private_key_file")
        _drop(items, "private_key")
    for read in reads:
        path = _resolved(read, resolved) if resolved else read["path"]
        text = _option_text(read, texts.get(path))
        item = items[read["index"]]
        inline = _inline_option(read["option"])
        item.pop(read["option"], None)
        if read["listed"]:
            item.setdefault(inline, []).append(text)
        else:
            item[inline] = text
    return items


def _drop(items: list[dict[str, t.Any]], option: str) -> None:
    for item in items:
        item.pop(option, None)


def _inline_option(option: str) -> str:
    return next(inline for name, inline, _kind in FILE_OPTIONS if name == option)


def _by_item(results: t.Any) -> dict[str, t.Mapping[str, t.Any]]:
    """A loop's registered results (a list, or the register itself), by the item each was run for."""
    if isinstance(results, t.Mapping):
        results = results.get("results", [])
    return {result["item"]: result for result in results or [] if isinstance(result, t.Mapping) and "item" in result}


def _resolved(read: t.Mapping[str, t.Any], resolved: t.Mapping[str, t.Mapping[str, t.Any]]) -> str:
    """Where the host resolved the read's path to; '' when it could not (missing, or a directory not searchable)."""
    return _resolution(resolved.get(read["path"]))


def _resolution(result: t.Any) -> str:
    """The absolute path a realpath run printed; '' when it failed."""
    if not isinstance(result, t.Mapping) or result.get("rc") != 0 or result.get("skipped"):
        return ""
    real = str(result.get("stdout", "")).strip("\n")
    return real if posixpath.isabs(real) else ""


def _inside(real: str, real_root: str) -> bool:
    return posixpath.isabs(real) and posixpath.commonpath([real, real_root]) == real_root


def _stat_refusal(result: t.Mapping[str, t.Any] | None) -> str:
    status = (result or {}).get("stat")
    if not status or (result or {}).get("failed"):
        return "cannot be looked at on the managed host; nothing written"
    if not status.get("exists"):
        return "no such file on the managed host; nothing written"
    if not status.get("isreg"):
        return "not a file on the managed host; nothing written"
    if status.get("size", 0) > MAX_FILE_BYTES:
        return TOO_LARGE
    if not status.get("readable"):
        return "not readable by the remote user on the managed host; nothing written"
    return ""


def _option_text(read: t.Mapping[str, t.Any], result: t.Mapping[str, t.Any] | None) -> str:
    """What the file gives for its option, by the controller reader's rules; VaultCertError names the option."""
    name = read["name"]
    if not result or result.get("failed") or "content" not in result:
        raise VaultCertError(f"{name}: cannot be read on the managed host; nothing written")
    try:
        data = base64.b64decode(result["content"], validate=True)
    except (binascii.Error, TypeError, ValueError):
        raise VaultCertError(f"{name}: cannot be read on the managed host; nothing written") from None
    if len(data) > MAX_FILE_BYTES:
        raise VaultCertError(f"{name}: {TOO_LARGE}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise VaultCertError(f"{name}: it is not UTF-8 text; nothing written") from None
    if read["kind"] == CERTIFICATES:
        return certificate_blocks(text, option=name)
    return private_key_block(text, option=name)

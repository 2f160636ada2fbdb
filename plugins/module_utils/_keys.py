# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How private keys reach vault_cert_push: outside the certificate items, as one sealed option.

The push's action plugin (on the controller) takes every private key out of the
task's arguments - inline ``private_key`` or a ``private_key_file`` it reads,
Ansible Vault-encrypted or not - and hands them to the module as one JSON text in
the no_log option ``key_bundle``: Ansible masks that one value in one pass, where
one no_log value per certificate would be masked in every string of the result.
The module puts each key back on its item. Private to the collection.
"""

from __future__ import annotations

import json
import typing as t
from dataclasses import dataclass

from ansible_collections.certautopilot.vault.plugins.module_utils._errors import VaultCertError

BUNDLE_OPTION = "key_bundle"
KEY = "private_key"
KEY_FILE = "private_key_file"
# Every option that names a controller file, which only the action plugin reads.
CONTROLLER_FILE_OPTIONS = (KEY_FILE, "certificate_file", "chain_file")


@dataclass(frozen=True)
class KeySource:
    """Where one item's key comes from: inline text, a controller file, or nowhere (cert-only)."""

    text: str | None = None
    file: str | None = None
    # How errors name the file option: private_key_file, or certificates[N].private_key_file
    option: str = KEY_FILE


def take_keys(args: t.Mapping[str, t.Any]) -> tuple[dict, list[KeySource]]:
    """The task's arguments without any key, and each item's key source in item order.

    A single push is one item. The arguments are not otherwise checked: the
    module's argument spec does that.
    """
    args = dict(args)
    if BUNDLE_OPTION in args:
        raise VaultCertError(f"{BUNDLE_OPTION} is filled by the module's action plugin; give private_key or {KEY_FILE}")
    items = args.get("certificates")
    if not isinstance(items, list):
        return args, [_take_source(args, "")]
    stripped, sources = [], []
    for index, item in enumerate(items):
        if isinstance(item, t.Mapping):
            item = dict(item)
            sources.append(_take_source(item, f"certificates[{index}]."))
        else:  # the argument spec refuses it, naming the item
            sources.append(KeySource())
        stripped.append(item)
    args["certificates"] = stripped
    return args, sources


def _take_source(options: dict, where: str) -> KeySource:
    text, file = options.pop(KEY, None), options.pop(KEY_FILE, None)
    if text not in (None, "") and file not in (None, ""):
        raise VaultCertError(f"{where}{KEY} and {where}{KEY_FILE} are mutually exclusive; give one")
    if file not in (None, "") and not isinstance(file, str):
        raise VaultCertError(f"{where}{KEY_FILE} must be a file path, got {kind_of(file)}")
    if text not in (None, "") and not isinstance(text, str):
        raise VaultCertError(f"{where}{KEY} must be PEM text, got {kind_of(text)}")
    return KeySource(text=None if text in (None, "") else text, file=file or None, option=f"{where}{KEY_FILE}")


def kind_of(value: t.Any) -> str:
    """A value's kind as a user names it (Ansible's own tagged types have private names)."""
    kinds = ((t.Mapping, "dict"), (str, "str"), ((list, tuple), "list"), (bool, "bool"), (int, "int"), (float, "float"))
    for kind, name in kinds:
        if isinstance(value, kind):
            return name
    return type(value).__name__.lstrip("_")


def seal(keys: t.Sequence[t.Any]) -> str:
    """The bundle text: the keys in item order, null where an item has none."""
    return json.dumps(list(keys))


def attach_keys(raw_items: t.Sequence[t.Mapping[str, t.Any]], bundle: str | None) -> list[dict]:
    """The items with their keys from ``bundle`` (module side); unchanged when there is none."""
    items = [dict(item) for item in raw_items]
    for option in CONTROLLER_FILE_OPTIONS:
        if any(item.get(option) for item in items):
            raise VaultCertError(
                f"{option} is read on the controller by the module's action plugin, which did not run; "
                f"call the module from a playbook or ad hoc ansible, or give {option.removesuffix('_file')}"
            )
    if bundle is None:
        return items
    try:
        keys = json.loads(bundle)
    except ValueError:
        keys = None
    if not isinstance(keys, list) or len(keys) != len(items):
        raise VaultCertError(f"{BUNDLE_OPTION} does not hold one key (or null) per certificate")
    for item, key in zip(items, keys):
        if key is not None:
            item[KEY] = key
    return items

# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The controller half of vault_cert_push: the files it reads and the keys it seals. Private to the collection."""

from __future__ import annotations

import typing as t

from ansible.errors import AnsibleActionFail
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase

from ansible_collections.certautopilot.vault.plugins.module_utils import _keys
from ansible_collections.certautopilot.vault.plugins.module_utils._errors import VaultCertError
from ansible_collections.certautopilot.vault.plugins.plugin_utils._files import (
    CERTIFICATES,
    PRIVATE_KEY,
    read_option_file,
)

# Options given as text or as a controller file (``<option>_file``), which this plugin reads into the text option.
CERTIFICATE_TEXT_OPTIONS = ("certificate", "chain")
FILES_ROOT_OPTION = "files_root"


class KeyBundleAction(ActionBase):
    """Runs the module of the same name, handing the private keys over in one no_log option (module_utils/_keys.py)
    and the certificate and chain files' certificates as text.

    ``private_key_file`` is found like the copy module's ``src`` (the role's or play's
    ``files/``, then relative to it), or below ``files_root`` when the task gives one, and
    decrypted when it is Ansible Vault-encrypted. Only its one private key is taken.
    """

    _supports_check_mode = True
    _supports_async = False

    def run(self, tmp: str | None = None, task_vars: dict | None = None) -> dict:
        result = super().run(tmp, task_vars)
        try:
            module_args = self.module_args(dict(self._task.args))
        except VaultCertError as exc:
            raise AnsibleActionFail(str(exc)) from None
        result.update(self._execute_module(module_args=module_args, task_vars=task_vars))
        return result

    def module_args(self, args: dict) -> dict:
        files_root = args.get(FILES_ROOT_OPTION) or None
        args = self._with_certificate_files(args, files_root)
        args, sources = _keys.take_keys(args)
        if not boolean(args.get("include_private_key", True), strict=False):
            return args
        if any(source.text or source.file for source in sources):
            args[_keys.BUNDLE_OPTION] = _keys.seal([self._key_text(source, files_root) for source in sources])
        return args

    def _key_text(self, source: _keys.KeySource, files_root: str | None) -> str | None:
        if source.file is None:
            return source.text
        found = self._controller_file(source.file, source.option, files_root)
        return read_option_file(self._loader, found, option=source.option, kind=PRIVATE_KEY, root=files_root)

    def _with_certificate_files(self, args: dict, files_root: str | None) -> dict:
        """``args`` with each certificate_file and chain_file (single, or of each item) read into its text option."""
        items = args.get("certificates")
        if not isinstance(items, list):
            return self._item_with_files(dict(args), "", files_root)
        read = [
            self._item_with_files(dict(item), f"certificates[{index}].", files_root)
            if isinstance(item, t.Mapping)
            else item
            for index, item in enumerate(items)
        ]
        return {**args, "certificates": read}

    def _item_with_files(self, options: dict, where: str, files_root: str | None) -> dict:
        for text_option in CERTIFICATE_TEXT_OPTIONS:
            file_option = f"{text_option}_file"
            paths = options.pop(file_option, None)
            if paths in (None, "", []):
                continue
            if options.get(text_option) not in (None, ""):
                raise VaultCertError(f"{where}{text_option} and {where}{file_option} are mutually exclusive; give one")
            many = isinstance(paths, list) and text_option == "chain"
            texts = [
                self._certificate_file(path, f"{where}{file_option}", files_root)
                for path in (paths if many else [paths])
            ]
            options[text_option] = texts if many else texts[0]
        return options

    def _certificate_file(self, path: t.Any, option: str, files_root: str | None) -> str:
        if not isinstance(path, str) or not path:
            raise VaultCertError(f"{option} must be a file path, got {_keys.kind_of(path)}")
        found = self._controller_file(path, option, files_root)
        return read_option_file(self._loader, found, option=option, kind=CERTIFICATES, root=files_root)

    def _controller_file(self, path: str, option: str, files_root: str | None) -> str:
        """Where a file option's file is: below ``files_root`` (confined there when read), else searched like the
        ``src`` of copy (the role's or play's files/, then relative to it)."""
        if files_root:
            return path
        try:
            return self._find_needle("files", path)
        except Exception:  # AnsibleError and its kinds: not found, in no search path
            raise VaultCertError(f"{option} not found on the controller") from None

# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The controller half of vault_cert_push: the private keys it reads and seals. Private to the collection."""

from __future__ import annotations

from ansible.errors import AnsibleActionFail
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase

from ansible_collections.certautopilot.vault.plugins.module_utils import _keys
from ansible_collections.certautopilot.vault.plugins.module_utils._errors import VaultCertError
from ansible_collections.certautopilot.vault.plugins.module_utils._pem import shown
from ansible_collections.certautopilot.vault.plugins.plugin_utils._files import PRIVATE_KEY, read_option_file

SECRET_OPTIONS = ("secret_id", "token", "jwt", "client_key", "pkcs12_password")
FILES_ROOT_OPTION = "files_root"


class KeyBundleAction(ActionBase):
    """Runs the module of the same name, handing the private keys over in one no_log option (module_utils/_keys.py).

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
        # The task's own secrets, which no error here may quote, whatever option they were mistaken for.
        self._secrets = [str(args[name]) for name in SECRET_OPTIONS if args.get(name)]
        args, sources = _keys.take_keys(args)
        if not boolean(args.get("include_private_key", True), strict=False):
            return args
        if any(source.text or source.file for source in sources):
            files_root = args.get(FILES_ROOT_OPTION) or None
            args[_keys.BUNDLE_OPTION] = _keys.seal([self._key_text(source, files_root) for source in sources])
        return args

    def _key_text(self, source: _keys.KeySource, files_root: str | None) -> str | None:
        if source.file is None:
            return source.text
        if files_root:
            # Below the root only: no search path may lead out of it.
            found = source.file
        else:
            try:
                found = self._find_needle("files", source.file)
            except Exception:  # AnsibleError and its kinds: not found, in no search path
                missing = shown(source.file, secrets=self._secrets)
                raise VaultCertError(f"{source.option} {missing} not found on the controller") from None
        return read_option_file(self._loader, found, option=source.option, kind=PRIVATE_KEY, root=files_root)

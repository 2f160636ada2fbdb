# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The shared argument spec and a small module base. Private to the collection."""

from __future__ import annotations

import traceback
import typing as t
from contextlib import contextmanager

from ansible.module_utils.basic import AnsibleModule, env_fallback, missing_required_lib

from ansible_collections.certautopilot.vault.plugins.module_utils import _certs, _client
from ansible_collections.certautopilot.vault.plugins.module_utils._auth import AuthMethod, select_auth_method
from ansible_collections.certautopilot.vault.plugins.module_utils._errors import VaultCertError

PUSH_AUTH_METHODS = ("approle", "jwt", "cert", "token")


def connection_argument_spec() -> dict:
    return {
        "url": {"type": "str", "aliases": ["address"], "fallback": (env_fallback, ["VAULT_ADDR"])},
        "namespace": {"type": "str", "fallback": (env_fallback, ["VAULT_NAMESPACE"])},
        "ca_cert": {"type": "str", "fallback": (env_fallback, ["VAULT_CACERT"])},
        # None means "not set": VAULT_SKIP_VERIFY (inverted) decides, then true.
        "validate_certs": {"type": "bool"},
        "client_cert": {"type": "path", "fallback": (env_fallback, ["VAULT_CLIENT_CERT"])},
        "client_key": {"type": "path", "fallback": (env_fallback, ["VAULT_CLIENT_KEY"])},
        "timeout": {"type": "int", "default": 30},
        "retries": {"type": "int", "default": 5},
    }


def auth_argument_spec(*, default_method: str = "approle", methods: t.Sequence[str] = PUSH_AUTH_METHODS) -> dict:
    return {
        "auth_method": {
            "type": "str",
            "default": default_method,
            "choices": list(methods),
            "fallback": (env_fallback, ["VAULT_AUTH_METHOD"]),
        },
        "auth_mount_point": {"type": "str", "fallback": (env_fallback, ["VAULT_AUTH_MOUNT_POINT"])},
        "auth_namespace": {"type": "str", "fallback": (env_fallback, ["VAULT_AUTH_NAMESPACE"])},
        "role_id": {"type": "str", "fallback": (env_fallback, ["VAULT_ROLE_ID"])},
        "secret_id": {"type": "str", "no_log": True, "fallback": (env_fallback, ["VAULT_SECRET_ID"])},
        "role": {"type": "str", "fallback": (env_fallback, ["VAULT_AUTH_ROLE"])},
        "jwt": {"type": "str", "no_log": True},
        "jwt_file": {"type": "path", "fallback": (env_fallback, ["VAULT_JWT_FILE"])},
        "token": {"type": "str", "no_log": True, "fallback": (env_fallback, ["VAULT_TOKEN"])},
        "revoke_token": {"type": "bool", "default": True},
    }


def target_argument_spec() -> dict:
    """``mount`` and ``path``: the KV v2 secret a module works on."""
    return {
        "mount": {"type": "str", "default": "secret", "aliases": ["engine_mount_point"]},
        "path": {"type": "str"},
    }


class VaultModule:
    """AnsibleModule plus the session every module needs: login once, revoke at the end."""

    def __init__(
        self,
        *,
        argument_spec: dict,
        default_auth: str = "approle",
        auth_methods: t.Sequence[str] = PUSH_AUTH_METHODS,
        **module_kwargs: t.Any,
    ) -> None:
        spec = connection_argument_spec()
        spec.update(auth_argument_spec(default_method=default_auth, methods=auth_methods))
        spec.update(argument_spec)
        self.module = _BatchAwareModule(argument_spec=spec, supports_check_mode=True, **module_kwargs)
        self.params = self.module.params
        self._hide_private_keys_in_any_option()
        self._require_libraries()
        self.auth: AuthMethod | None = None

    def _hide_private_keys_in_any_option(self) -> None:
        """Mask a private key pasted into an option that is not no_log (certificate, chain).

        Ansible echoes the module's arguments (-vvv, ``invocation``); no_log values are
        masked there and in every returned string, so the pasted key joins them.
        """
        for text in _strings(self.params):
            self.module.no_log_values.update(_certs.private_key_blocks(text))

    def _require_libraries(self) -> None:
        if not _client.HAS_HVAC:
            self.module.fail_json(msg=missing_required_lib("hvac"), exception=_format(_client.HVAC_IMPORT_ERROR))
        if not _certs.HAS_CRYPTOGRAPHY:
            self.module.fail_json(
                msg=missing_required_lib(_certs.CRYPTOGRAPHY_REQUIREMENT), exception=_certs.CRYPTOGRAPHY_IMPORT_ERROR
            )

    @contextmanager
    def session(self, *, login: bool = True) -> t.Iterator[_client.VaultClient]:
        """A client over one connection, logged in unless ``login`` is false (then call ``log_in``).

        A token the module obtained is revoked on the way out.
        """
        settings = _client.ConnectionSettings.from_params(self.params)
        self.auth = select_auth_method(self.params)
        if not settings.validate_certs:
            self.module.warn("validate_certs is false: the server's TLS certificate is not checked (bring-up only)")
        client = _client.VaultClient(settings)
        try:
            if login:
                self.log_in(client)
            yield client
        finally:
            if self.auth.OBTAINS_TOKEN and client.token and self.params["revoke_token"]:
                client.revoke_self(namespace=self.auth.namespace)
            client.close()

    def log_in(self, client: _client.VaultClient) -> None:
        self.auth.login(client)

    def run(self, action: t.Callable[[], dict]) -> t.NoReturn:
        """Run the module's action; the one place a VaultCertError becomes fail_json.

        A ``diff`` in the action's result is returned only in diff mode.
        """
        try:
            result = action()
        except VaultCertError as exc:
            self._finish(self.module.fail_json, {"msg": str(exc), **getattr(exc, "result", {})})
        diff = result.pop("diff", None)
        if self.module._diff and diff is not None:
            result["diff"] = diff
        self._finish(self.module.exit_json, result)

    def _finish(self, finish: t.Callable[..., t.NoReturn], result: dict) -> t.NoReturn:
        """Return through exit_json/fail_json with the private keys masked in linear time.

        Ansible replaces every no_log value in every returned string, and a batch brings one
        key per certificate: quadratic. Every PEM private key holds ``PRIVATE KEY-----``, so
        only strings that hold that text can hold a key; the rest of the no_log values
        (secret_id, token, jwt) are still masked by Ansible.
        """
        keys = {value for value in self.module.no_log_values if PEM_KEY_MARK in value}
        if keys:
            result = _mask_keys({"invocation": {"module_args": self.params}, **result}, keys)
            self.module.no_log_values = self.module.no_log_values - keys
        finish(**result)


# Text in the BEGIN and END lines of every PEM private key, whatever its type.
PEM_KEY_MARK = "PRIVATE KEY-----"
NO_LOG_PLACEHOLDER = "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"


def _mask_keys(value: t.Any, keys: set[str]) -> t.Any:
    """What Ansible's remove_values does for these values: a whole value is replaced, a part starred."""
    if isinstance(value, str):
        if value in keys:
            return NO_LOG_PLACEHOLDER
        if PEM_KEY_MARK in value:
            for key in sorted(keys, key=len, reverse=True):
                value = value.replace(key, "********")
        return value
    if isinstance(value, dict):
        return {name: _mask_keys(item, keys) for name, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_mask_keys(item, keys) for item in value]
    return value


class _BatchAwareModule(AnsibleModule):
    """AnsibleModule whose invocation log names a batch by its size.

    Ansible logs every argument at start-up and masks each no_log value in that
    line: with one key per certificate that is quadratic, and the line is megabytes.
    """

    def _log_invocation(self) -> None:
        batch = self.params.get("certificates")
        if not batch:
            super()._log_invocation()
            return
        self.params["certificates"] = f"<{len(batch)} certificates>"
        try:
            super()._log_invocation()
        finally:
            self.params["certificates"] = batch


def _strings(value: t.Any) -> t.Iterator[str]:
    """Every string in a structure of dicts and lists."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings(item)


def _format(exc: BaseException | None) -> str | None:
    if exc is None:
        return None
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))

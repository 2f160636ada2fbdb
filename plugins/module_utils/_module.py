# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The shared argument spec and a small module base. Private to the collection."""

from __future__ import annotations

import traceback
import typing as t
from contextlib import contextmanager

from ansible.module_utils.basic import env_fallback, missing_required_lib

from ansible_collections.certautopilot.vault.plugins.module_utils import _batch, _certs, _client, _redaction
from ansible_collections.certautopilot.vault.plugins.module_utils._auth import (
    AuthMethod,
    implied_auth_method,
    select_auth_method,
)
from ansible_collections.certautopilot.vault.plugins.module_utils._errors import VaultCertError

PUSH_AUTH_METHODS = ("approle", "jwt", "cert", "token")
DEFAULT_MOUNT = "secret"


def connection_argument_spec() -> dict:
    return {
        "url": {"type": "str", "aliases": ["address"], "fallback": (env_fallback, ["VAULT_ADDR"])},
        "namespace": {"type": "str", "fallback": (env_fallback, ["VAULT_NAMESPACE"])},
        "ca_cert": {"type": "str", "fallback": (env_fallback, ["VAULT_CACERT"])},
        # None means "not set": VAULT_SKIP_VERIFY (inverted) decides, then true.
        "validate_certs": {"type": "bool"},
        # A path or inline PEM text, as ca_cert; the key is no_log since it may be the key itself.
        "client_cert": {"type": "str", "fallback": (env_fallback, ["VAULT_CLIENT_CERT"])},
        "client_key": {"type": "str", "no_log": True, "fallback": (env_fallback, ["VAULT_CLIENT_KEY"])},
        "timeout": {"type": "int", "default": _client.DEFAULT_TIMEOUT},
        "retries": {"type": "int", "default": _client.DEFAULT_RETRIES},
        # Not a secret: cluster ids and raft indexes, returned by every module as consistency_index.
        "consistency_index": {"type": "str", "no_log": False},
    }


def auth_argument_spec(*, methods: t.Sequence[str] = PUSH_AUTH_METHODS) -> dict:
    return {
        # No default: _auth.implied_auth_method() decides from the credentials given.
        "auth_method": {
            "type": "str",
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
        "mount": {"type": "str", "default": DEFAULT_MOUNT, "aliases": ["engine_mount_point"]},
        "path": {"type": "str"},
    }


def writer_argument_spec(options: dict) -> dict:
    """The argument spec of a module that writes (push, rollback, retire), documented by the connection.writer fragment.

    The target, the module's own ``options``, and what every writer has: the up-front capability
    check and how many items of a batch are in flight at once.
    """
    return {
        **target_argument_spec(),
        **options,
        "check_capabilities": {"type": "bool", "default": False},
        "concurrency": {"type": "int", "default": _batch.DEFAULT_CONCURRENCY},
    }


class VaultModule:
    """AnsibleModule plus the session every module needs: login once, revoke at the end."""

    def __init__(
        self,
        *,
        argument_spec: dict,
        auth_methods: t.Sequence[str] = PUSH_AUTH_METHODS,
        **module_kwargs: t.Any,
    ) -> None:
        spec = connection_argument_spec()
        spec.update(auth_argument_spec(methods=auth_methods))
        spec.update(argument_spec)
        self.module = _redaction.KeySafeModule(argument_spec=spec, supports_check_mode=True, **module_kwargs)
        self.params = self.module.params
        self.params["auth_method"] = self.params["auth_method"] or implied_auth_method(self.params)
        self._require_libraries()
        self.auth: AuthMethod | None = None
        self._client: _client.VaultClient | None = None

    def _require_libraries(self) -> None:
        if not _client.HAS_HVAC:
            self.module.fail_json(msg=missing_required_lib("hvac"), exception=_format(_client.HVAC_IMPORT_ERROR))
        if not _certs.HAS_CRYPTOGRAPHY:
            self.module.fail_json(
                msg=missing_required_lib(_certs.CRYPTOGRAPHY_REQUIREMENT), exception=_certs.CRYPTOGRAPHY_IMPORT_ERROR
            )

    @property
    def diff_mode(self) -> bool:
        # Diff summaries cost a certificate parse per field: made only when Ansible runs in diff mode.
        return bool(self.module._diff)

    @contextmanager
    def session(self, *, login: bool = True) -> t.Iterator[_client.VaultClient]:
        """A client with one connection per item in flight, logged in unless ``login`` is false (then ``log_in``).

        A token the module obtained is revoked on the way out.
        """
        settings = _client.ConnectionSettings.from_params(self.params)
        self.auth = select_auth_method(self.params)
        for warning in settings.warnings():
            self.module.warn(warning)
        # One connection per item in flight, all on the one login.
        pool_size = _batch.check_concurrency(self.params["concurrency"]) if "concurrency" in self.params else 1
        client = self._client = _client.VaultClient(settings, pool_size=pool_size)
        client.consistency.seed(self.params.get("consistency_index"))
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
        """Run the module's action; the one place where any exception becomes fail_json.

        A VaultCertError's message is the user's text. Anything else is a bug or a
        library surprise: it is reported as unexpected, its text and traceback
        scrubbed of every secret like everything else the module returns.
        A ``diff`` in the action's result is returned only in diff mode.
        """
        try:
            result = action()
        except VaultCertError as exc:
            self._fail({"msg": str(exc), **exc.result})
        except Exception as exc:  # noqa: BLE001 - the last resort: no raw exception text may leave unscrubbed
            self._fail(
                {
                    "msg": f"unexpected error ({type(exc).__name__}): {exc}",
                    "exception": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
                }
            )
        diff = result.pop("diff", None)
        if self.diff_mode and diff is not None:
            result["diff"] = diff
        self.module.exit_json(**result, consistency_index=self._consistency_index())

    def _consistency_index(self) -> str:
        """The highest index state the run saw (its seed when it sent nothing), for the next run's option."""
        if self._client is None:
            return self.params.get("consistency_index") or ""
        return self._client.consistency.state

    def _fail(self, result: dict) -> t.NoReturn:
        # Secrets the client learned (an issued token, a JWT read from a file) join Ansible's masking.
        if self._client is not None:
            self.module.no_log_values.update(self._client.secrets)
        self.module.fail_json(**result, consistency_index=self._consistency_index())


class WriterModule(VaultModule):
    """A module that writes one item, given by its ``single_options``, or a batch of them in ``batch_option``.

    The two forms are mutually exclusive, and one of ``batch_option`` and ``required`` must be given.
    """

    def __init__(
        self,
        options: dict,
        *,
        batch_option: str,
        single_options: t.Sequence[str],
        required: str,
        mutually_exclusive: t.Sequence[t.Sequence[str]] = (),
        **module_kwargs: t.Any,
    ) -> None:
        super().__init__(
            argument_spec=writer_argument_spec(options),
            mutually_exclusive=[(batch_option, name) for name in single_options] + list(mutually_exclusive),
            required_one_of=[(batch_option, required)],
            **module_kwargs,
        )
        self.batch = self.params[batch_option] is not None
        # A single item is the batch of one the top-level options describe.
        self.items: list[dict] = (
            self.params[batch_option] if self.batch else [{name: self.params[name] for name in single_options}]
        )

    def write_all(self, write: t.Callable[[_client.VaultClient], list[dict]]) -> dict:
        """What the module returns for the results ``write`` gets over one session (see VaultModule.session)."""
        with self.session() as client:
            results = write(client)
        return _batch.run_result(results, batch=self.batch)


def run_writer(action: t.Callable[[WriterModule], dict], options: dict, **writer: t.Any) -> t.NoReturn:
    """The main() of a writing module: ``action`` runs on a WriterModule of ``options`` (see VaultModule.run)."""
    vault = WriterModule(options, **writer)
    vault.run(lambda: action(vault))


def _format(exc: BaseException | None) -> str | None:
    if exc is None:
        return None
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))

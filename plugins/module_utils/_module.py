# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The shared argument spec and a small module base. Private to the collection."""

from __future__ import annotations

import traceback
import typing as t
from contextlib import contextmanager

from ansible.module_utils.basic import AnsibleModule, env_fallback, missing_required_lib
from ansible.module_utils.errors import UnsupportedError

from ansible_collections.certautopilot.vault.plugins.module_utils import _batch, _certs, _client, _pem
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
        self.module = _KeySafeModule(argument_spec=spec, supports_check_mode=True, **module_kwargs)
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


# Text in the BEGIN and END lines of every PEM private key, whatever its type.
PEM_KEY_MARK = "PRIVATE KEY-----"
NO_LOG_PLACEHOLDER = "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"
MASK = "********"


def mask_private_keys(value: t.Any, keys: t.Collection[str] = (), *, secrets: t.Collection[str] = ()) -> t.Any:
    """``value`` with every private key masked, in linear time; dict keys included.

    A string equal to one of ``keys`` becomes Ansible's no_log placeholder; inside
    longer text the ``keys``, any other PEM private key block (found by its markers,
    truncated or re-wrapped ones included) and a key pasted as bare base64 DER
    become ``********``. Dict keys are also cleared of ``secrets`` (the other no_log
    values), which Ansible masks in values only.
    """
    return _KeyMasker(keys, secrets).mask(value)


def mask_secrets(value: t.Any, secrets: t.Collection[str] = ()) -> t.Any:
    """``value`` as mask_private_keys() leaves it, with every one of ``secrets`` masked too, wherever it is.

    For text no no_log option covers, such as an argument validator's messages that quote refused values.
    """
    return _KeyMasker((), secrets, secrets_in_text=True).mask(value)


class _KeyMasker:
    """One masking pass over a value.

    Each distinct text is scanned once (a batch repeats the same chain in every item), and a
    dict or list none of whose contents changed is returned as it is rather than copied: a
    batch's arguments are megabytes, and almost never hold a key outside ``key_bundle``.
    """

    def __init__(self, keys: t.Collection[str], secrets: t.Collection[str], *, secrets_in_text: bool = False) -> None:
        self._keys = frozenset(keys)
        # Longest first, so that a key holding another is masked whole.
        self._keys_longest_first = sorted(self._keys, key=len, reverse=True)
        self._secrets = sorted(
            {secret for secret in secrets if isinstance(secret, str) and secret}, key=len, reverse=True
        )
        # Ansible masks no_log values in values itself; only text it never saw needs them masked here.
        self._text_secrets = self._secrets if secrets_in_text else []
        self._masked_texts: dict[str, str] = {}

    def mask(self, value: t.Any) -> t.Any:
        if isinstance(value, str):
            return self._text(value)
        if isinstance(value, dict):
            masked = [(self._name(name), self.mask(item)) for name, item in value.items()]
            unchanged = all(new is old for (new, _item), old in zip(masked, value)) and all(
                new is old for (_name, new), old in zip(masked, value.values())
            )
            return value if unchanged else dict(masked)
        if isinstance(value, (list, tuple)):
            items = [self.mask(item) for item in value]
            return value if all(new is old for new, old in zip(items, value)) else items
        return value

    def _name(self, name: t.Any) -> t.Any:
        if not isinstance(name, str):
            return name
        masked = self._text(name)
        for secret in self._secrets:
            if secret in masked:
                masked = masked.replace(secret, MASK)
        return masked

    def _text(self, text: str) -> str:
        masked = self._masked_texts.get(text)
        if masked is None:
            masked = self._masked_texts[text] = self._scan(text)
        # An equal text seen before that needed no masking: give back this one, so that its container
        # counts as unchanged.
        return text if masked == text else masked

    def _scan(self, text: str) -> str:
        if text in self._keys:
            return NO_LOG_PLACEHOLDER
        if PEM_KEY_MARK in text:
            for key in self._keys_longest_first:
                text = text.replace(key, MASK)
            for block in _pem.private_key_blocks(text):
                text = text.replace(block, MASK)
        for found in _pem.headerless_private_keys(text) + _pem.token_like_secrets(text):
            text = text.replace(found, MASK)
        for secret in self._text_secrets:
            text = text.replace(secret, MASK)
        return text


def _declared_secrets(argument_spec: dict, params: dict) -> list[str]:
    """The string values of the top-level options declared no_log."""
    return [
        params[name]
        for name, spec in argument_spec.items()
        if spec.get("no_log") and isinstance(params.get(name), str) and params[name]
    ]


def url_credentials(url: t.Any) -> list[str]:
    """The ``user:password`` part of a URL, if it has one."""
    userinfo = _client.split_userinfo(url)[0] if isinstance(url, str) else ""
    return [userinfo] if userinfo else []


class _KeySafeModule(AnsibleModule):
    """AnsibleModule that keeps PEM private keys out of its log line and answers, whatever option holds them.

    A key pasted into an option that is not no_log (certificate, chain, path, ...) is found by
    its PEM markers and masked in the syslog/journal line and in every answer, argument errors
    included (those are answered from inside AnsibleModule's own start-up). Declared no_log
    values stay Ansible's to mask; a batch's keys are one of them (``key_bundle``, see _keys.py).
    """

    def log(self, msg: str, log_args: dict | None = None) -> None:
        log_args = {name: mask_private_keys(str(value)) for name, value in (log_args or {}).items()}
        super().log(mask_private_keys(msg), log_args=log_args)

    def exit_json(self, **kwargs: t.Any) -> t.NoReturn:
        super().exit_json(**self._masked(kwargs))

    def fail_json(self, msg: str, **kwargs: t.Any) -> t.NoReturn:
        super().fail_json(**self._masked({"msg": self._unknown_options_first(msg), **kwargs}))

    def _unknown_options_first(self, msg: str) -> str:
        """An argument error names a misspelt option first: its other errors (a required option missing, say)
        are most often that typo's consequence. AnsibleModule answers the first error it found, which comes
        before the unknown options in its order of checks."""
        validation = getattr(self, "validation_result", None)
        errors = validation.errors.errors if validation is not None else []
        if not errors or msg != validation.errors.msg:
            return msg
        unknown = [error for error in errors if isinstance(error, UnsupportedError)]
        if not unknown or unknown[0] is errors[0]:
            return msg
        return f"Unsupported parameters: {unknown[0].msg} (and then: {msg})"

    def _masked(self, result: dict) -> dict:
        # Ansible collects no_log values while validating; an argument error can stop it before
        # it got to them (a batch item that is not a dictionary), so the declared ones are added.
        self.no_log_values.update(_declared_secrets(self.argument_spec, self.params))
        # A url with user:password@ is refused, but Ansible would still echo it in ``invocation``.
        self.no_log_values.update(url_credentials(self.params.get("url")))
        # So is any refused url, whole: what made it refused (a query, a fragment, a pasted token) may be a secret.
        if _client.url_is_refused(self.params.get("url")):
            self.no_log_values.add(self.params["url"])
        result = {"invocation": {"module_args": self._known_options_shown()}, **result}
        keys = {value for value in self.no_log_values if PEM_KEY_MARK in value}
        return mask_private_keys(result, keys, secrets=frozenset(self.no_log_values))

    def _known_options_shown(self) -> dict:
        """The arguments for ``invocation``, an unknown option's value replaced (see _known_only)."""
        return _known_only(self.params, self.argument_spec)


def _known_only(options: t.Mapping[str, t.Any], spec: t.Mapping[str, t.Any]) -> dict:
    """``options`` with the value of every option ``spec`` does not know replaced, in batch items too: only its
    right name makes an option no_log, so a misspelt secret_id or pkcs12_password would be echoed as it is. The
    name stays, as the argument error names it."""
    known = {name: option for name, option in spec.items()}
    for option in spec.values():
        known.update(dict.fromkeys(option.get("aliases") or (), option))
    shown = {}
    for name, value in options.items():
        option = known.get(name)
        if option is None and not name.startswith("_ansible_"):
            shown[name] = NO_LOG_PLACEHOLDER
        elif option and option.get("options") and isinstance(value, list):
            shown[name] = [_known_only(item, option["options"]) if isinstance(item, dict) else item for item in value]
        elif option and option.get("options") and isinstance(value, dict):
            shown[name] = _known_only(value, option["options"])
        else:
            shown[name] = value
    return shown


def _format(exc: BaseException | None) -> str | None:
    if exc is None:
        return None
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))

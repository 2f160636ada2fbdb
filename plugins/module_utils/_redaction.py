# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What keeps secrets out of a module's answers and log line: the AnsibleModule the modules run on, and the
masking it applies. Private to the collection."""

from __future__ import annotations

import typing as t

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.errors import UnsupportedError

from ansible_collections.certautopilot.vault.plugins.module_utils import _client, _pem

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


class KeySafeModule(AnsibleModule):
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
    known = dict(spec)
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

# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The secrets a module learns of beyond its no_log options, handed to Ansible's own masking
(``module.no_log_values``), and the AnsibleModule the modules run on. Private to the collection.

Nothing here guesses whether a value is a secret: a message never quotes a user's value (it names the option and
the item), and what is known to be secret - a PEM private key block by its markers, the password of a url, a
refused url whole, a misspelt option's value - is masked by Ansible wherever it writes.
"""

from __future__ import annotations

import typing as t

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.parameters import remove_values
from ansible.module_utils.errors import UnsupportedError

from ansible_collections.certautopilot.vault.plugins.module_utils import _client, _keys, _pem

NO_LOG_PLACEHOLDER = "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"
MASK = "********"
# A key's base64 lines are masked one by one too, so that the key is masked however its line breaks are written
# (escaped in a repr, CRLF, joined by another tool). A shorter line (a key's last) could be found by chance in
# ordinary text, and masking it there would garble messages; it holds a few bytes of the key's tail only.
SHORTEST_MASKED_LINE = 17


def key_block_secrets(text: str) -> set[str]:
    """Every PEM private key block in ``text`` (truncated ones included), whole and each of its long lines."""
    found: set[str] = set()
    for block in _pem.private_key_blocks(text):
        found.add(block)
        found.update(line.strip() for line in block.splitlines() if len(line.strip()) >= SHORTEST_MASKED_LINE)
    return found


def pasted_key_secrets(value: t.Any) -> set[str]:
    """The key_block_secrets() of every string in ``value``, dict keys included: a key pasted where a certificate,
    a chain or a name goes (a combined cert+key file is a real mistake)."""
    if isinstance(value, str):
        return key_block_secrets(value) if _pem.PRIVATE_KEY_LABEL in value else set()
    found: set[str] = set()
    if isinstance(value, t.Mapping):
        for name, item in value.items():
            found |= pasted_key_secrets(name) | pasted_key_secrets(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            found |= pasted_key_secrets(item)
    return found


def url_secrets(url: t.Any) -> set[str]:
    """What of a url must never be shown: its ``user:password`` part, and the whole url when it is refused (what
    made it refused - a query, a fragment, a pasted token - may be a secret)."""
    if not isinstance(url, str):
        return set()
    found = {_client.split_userinfo(url)[0]} - {""}
    if _client.url_is_refused(url):
        found.add(url)
    return found


def mask_secrets(value: t.Any, secrets: t.Collection[str] = ()) -> t.Any:
    """``value`` with every PEM private key block in it and every one of ``secrets`` masked, with Ansible's masking,
    dict keys included.

    For text no no_log option covers, such as an argument validator's messages that quote refused values.
    """
    masked = set(secrets) | pasted_key_secrets(value)
    return remove_values(with_names_masked(value, masked), masked) if masked else value


def with_names_masked(value: t.Any, secrets: t.Collection[str]) -> t.Any:
    """``value`` with ``secrets`` masked in its dict keys, which Ansible's masking leaves as they are (a key pasted
    as a name in ``fields`` or ``custom_metadata``). A container none of whose names changed is returned as it is:
    a batch's answer is large, and its names are a handful of words repeated."""
    return _NameMasker(secrets).mask(value) if secrets else value


class _NameMasker:
    def __init__(self, secrets: t.Collection[str]) -> None:
        given = (secret for secret in secrets if isinstance(secret, str) and secret)
        self._secrets = sorted(given, key=len, reverse=True)
        self._names: dict[str, str] = {}

    def mask(self, value: t.Any) -> t.Any:
        if isinstance(value, t.Mapping):
            masked = {self._name(name): self.mask(item) for name, item in value.items()}
            unchanged = all(new is old for new, old in zip(masked, value)) and all(
                masked[new] is value[old] for new, old in zip(masked, value)
            )
            return value if unchanged else masked
        if isinstance(value, (list, tuple)):
            items = [self.mask(item) for item in value]
            return value if all(new is old for new, old in zip(items, value)) else items
        return value

    def _name(self, name: t.Any) -> t.Any:
        if not isinstance(name, str):
            return name
        masked = self._names.get(name)
        if masked is None:
            masked = name
            for secret in self._secrets:
                masked = masked.replace(secret, MASK)
            self._names[name] = masked
        # An equal name seen before that needed no masking: this one, so that its container counts as unchanged.
        return name if masked == name else masked


def _repr_forms(secrets: t.Iterable[str]) -> set[str]:
    """Multi-line secrets as a repr() shows them, line breaks escaped: how the log line shows a list option."""
    return {repr(secret)[1:-1] for secret in secrets if "\n" in secret or "\r" in secret}


class KeySafeModule(AnsibleModule):
    """AnsibleModule that hands Ansible the secrets it learns of and never echoes a misspelt option's value.

    A key pasted into an option that is not no_log (certificate, chain, a field name, ...) is found by its PEM
    markers and joins ``no_log_values`` before the module logs or answers, argument errors included (those are
    answered from inside AnsibleModule's own start-up).
    """

    def log(self, msg: str, log_args: dict | None = None) -> None:
        self._learn_secrets()
        # The log line holds a list option as its repr, where a key's line breaks are escaped.
        escaped = _repr_forms(self.no_log_values)
        if escaped:
            msg = remove_values(msg, escaped)
            log_args = {name: remove_values(value, escaped) for name, value in (log_args or {}).items()}
        super().log(msg, log_args=log_args)

    def exit_json(self, **kwargs: t.Any) -> t.NoReturn:
        self._learn_secrets()
        super().exit_json(**with_names_masked(self._with_invocation(kwargs), self.no_log_values))

    def fail_json(self, msg: str, **kwargs: t.Any) -> t.NoReturn:
        self._learn_secrets()
        self._learn_refused_values()
        result = self._with_invocation({"msg": self._unknown_options_first(msg), **kwargs})
        super().fail_json(**with_names_masked(result, self.no_log_values))

    def _learn_secrets(self) -> None:
        # Ansible collects no_log values while validating; an argument error can stop it before it got to them (a
        # batch item that is not a dictionary), so the declared ones are added.
        declared = _declared_secrets(self.argument_spec, self.params)
        self.no_log_values.update(declared.values())
        # A no_log key's lines too, so that a copy of it re-wrapped elsewhere (a field name, say) is masked. Not the
        # bundle's: a batch's every key line would be masked in every string of the answer, and each key sits in
        # the bundle whole, where Ansible masks it.
        declared.pop(_keys.BUNDLE_OPTION, None)
        self.no_log_values.update(pasted_key_secrets(list(declared.values())))
        self.no_log_values.update(url_secrets(self.params.get("url")))
        self.no_log_values.update(pasted_key_secrets(_without_declared_secrets(self.params, self.argument_spec)))

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

    def _learn_refused_values(self) -> None:
        """An argument error's refused values join the masking: Ansible's validator quotes them ("got: ...", "The
        value '...' is not a valid boolean", "... cannot be converted to an int"), and whatever was pasted there,
        a token included, is the user's. Only an argument error's answer: the run stops there, before its log line."""
        validation = getattr(self, "validation_result", None)
        if validation is not None and validation.errors.errors:
            self.no_log_values.update(_refused_values(self.params, self.argument_spec))

    def _with_invocation(self, result: dict) -> dict:
        """``result`` with the arguments for ``invocation``, an unknown option's value replaced (see _known_only);
        Ansible masks the no_log values in it as in the rest of the answer."""
        return {"invocation": {"module_args": _known_only(self.params, self.argument_spec)}, **result}


# The types whose validator converts a string: one still a string after validation was refused.
_CONVERTED_TYPES = frozenset({"bool", "int", "float", "bytes", "bits"})


def _refused_values(options: t.Any, spec: t.Mapping[str, t.Any]) -> set[str]:
    """The string values validation refused, in batch items too: a converted type left a string, or no choice."""
    if isinstance(options, list):
        return set().union(*(_refused_values(item, spec) for item in options))
    if not isinstance(options, t.Mapping):
        return set()
    refused: set[str] = set()
    for name, option in spec.items():
        value = options.get(name)
        if isinstance(value, str) and value:
            choices = option.get("choices")
            if option.get("type") in _CONVERTED_TYPES or (choices is not None and value not in choices):
                refused.add(value)
        elif option.get("options"):
            refused |= _refused_values(value, option["options"])
    return refused


def _declared_secrets(argument_spec: t.Mapping[str, t.Any], params: t.Mapping[str, t.Any]) -> dict[str, str]:
    """The string values of the top-level options declared no_log, by option."""
    return {
        name: params[name]
        for name, spec in argument_spec.items()
        if spec.get("no_log") and isinstance(params.get(name), str) and params[name]
    }


def _without_declared_secrets(options: t.Any, spec: t.Mapping[str, t.Any]) -> t.Any:
    """``options`` but the values of options declared no_log, in batch items too: Ansible masks those whole
    wherever they go (key_bundle holds every key of a batch; one no_log value per key line would be masked in every
    string of the answer)."""
    if isinstance(options, list):
        return [_without_declared_secrets(item, spec) for item in options]
    if not isinstance(options, t.Mapping):
        return options
    kept = {}
    for name, value in options.items():
        option = spec.get(name) or {}
        if not option.get("no_log"):
            kept[name] = _without_declared_secrets(value, option.get("options") or {})
    return kept


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

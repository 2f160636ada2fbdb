# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Watching certificate secrets over time: what changed between two inventories. Private to the collection.

The event source ``certautopilot.vault.cert_expiry`` polls through this file; each poll is one
vault_cert_info inventory (one login, the same reads) and the events are what changed since the one
before: a certificate that enters ``expiring`` or ``expired``, a secret that becomes unreadable, a
secret with a new version. The server being down is an event once, and its return once.
"""

from __future__ import annotations

import json
import os
import tempfile
import typing as t
from dataclasses import dataclass, field
from datetime import datetime

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.certautopilot.vault.plugins.module_utils import _info, _kv2
from ansible_collections.certautopilot.vault.plugins.module_utils._auth import select_auth_method
from ansible_collections.certautopilot.vault.plugins.module_utils._client import ConnectionSettings, VaultClient
from ansible_collections.certautopilot.vault.plugins.module_utils._errors import VaultCertError
from ansible_collections.certautopilot.vault.plugins.module_utils._module import (
    auth_argument_spec,
    connection_argument_spec,
)

VERSION_CHANGED = "version_changed"
VAULT_UNAVAILABLE = "vault_unavailable"
VAULT_AVAILABLE = "vault_available"
# The statuses a certificate "enters"; a first poll reports those already in the first two.
ALERTING = (_info.EXPIRING, _info.EXPIRED)
ENTERED = (*ALERTING, _info.UNREADABLE)
# What an event tells of a secret: where it is, which certificate, how long it has. Never key material.
EVENT_KEYS = ("path", "version", "status", "reason", "days_left", "cn", "sans", "serial", "not_after")
# The longest wait between two polls while the server is down, unless the interval itself is longer.
MAX_BACKOFF = 300.0
STATE_FORMAT = 1


def argument_spec() -> dict:
    """vault_cert_info's options (fail_on aside: a watch reports, it does not fail) and the watch's own."""
    spec = {**connection_argument_spec(), **auth_argument_spec(), **_info.argument_spec()}
    del spec["fail_on"]
    spec["interval"] = {"type": "float", "default": 3600}
    spec["state_file"] = {"type": "path"}
    return spec


def watch_from_args(args: t.Mapping[str, t.Any], *, log: t.Callable[[str], None] | None = None) -> Watch:
    """A Watch for a source's ``args``, checked as a module checks its options (types, defaults, VAULT_* env)."""
    spec = argument_spec()
    result = ArgumentSpecValidator(spec).validate(dict(args))
    if result.error_messages:
        # Ansible's messages may quote a value; the ones given for no_log options are masked.
        secrets = [str(args[name]) for name, option in spec.items() if option.get("no_log") and args.get(name)]
        messages = []
        for message in result.error_messages:
            for secret in secrets:
                message = message.replace(secret, "********")
            messages.append(message)
        raise VaultCertError("cert_expiry: " + "; ".join(messages))
    params = result.validated_parameters
    request = _info.request_from(params)
    return Watch(
        mount=params["mount"],
        request=request,
        params=params,
        interval=params["interval"],
        state_file=params["state_file"],
        log=log or _ignore,
    )


def _ignore(_message: str) -> None:
    """The log of a watch nobody listens to."""


def changes(
    mount: str, before: t.Mapping[str, t.Mapping[str, t.Any]] | None, entries: t.Iterable[t.Mapping[str, t.Any]]
) -> list[dict[str, t.Any]]:
    """The events for ``entries`` (inventory lines) against ``before`` (path -> status and version).

    ``before`` None is a first poll with no memory: every certificate already expiring or expired is
    reported once, nothing else. A new version is one event whatever its status (a renewal is not also
    an expiry event); otherwise a secret entering expiring, expired or unreadable is one.
    """
    events = []
    for item in entries:
        seen = None if before is None else before.get(item["path"])
        if before is None:
            kind = item["status"] if item["status"] in ALERTING else None
        elif seen is not None and _new_version(seen.get("version"), item["version"]):
            kind = VERSION_CHANGED
        elif item["status"] in ENTERED and (seen is None or seen.get("status") != item["status"]):
            kind = item["status"]
        else:
            kind = None
        if kind is not None:
            event = {"type": kind, "mount": mount, **{key: item.get(key) for key in EVENT_KEYS}}
            if kind == VERSION_CHANGED:
                event["previous_version"] = seen["version"]
            events.append(inert(event))
    return events


def inert(event: dict[str, t.Any]) -> dict[str, t.Any]:
    """``event`` with every field that holds template syntax withheld (null, and named in ``withheld``).

    An event's text comes from whoever may write under the prefix (a secret's name, a certificate's CN or
    SANs, the server's message), and ansible-rulebook hands events to playbooks as extra variables, which
    Ansible renders: ``{{ lookup('pipe', ...) }}`` in a CN would run on the EDA host.
    """
    withheld = [key for key, value in event.items() if _holds_template(value)]
    if not withheld:
        return event
    return {**event, **dict.fromkeys(withheld), "withheld": withheld}


def _holds_template(value: t.Any) -> bool:
    if isinstance(value, str):
        return any(opener in value for opener in _kv2.TEMPLATE_OPENERS)
    if isinstance(value, (list, tuple)):
        return any(_holds_template(element) for element in value)
    return False


def _new_version(before: int | None, now: int | None) -> bool:
    # An unreadable secret has no version to compare: not a change.
    return before is not None and now is not None and before != now


def remembered(entries: t.Iterable[t.Mapping[str, t.Any]]) -> dict[str, dict[str, t.Any]]:
    """What the next poll compares with: each path's status and version."""
    return {item["path"]: {"status": item["status"], "version": item["version"]} for item in entries}


@dataclass
class Watch:
    """The state of one watch: what the last good poll saw, and whether the server is down."""

    mount: str
    request: _info.InfoRequest
    params: t.Mapping[str, t.Any]
    interval: float
    state_file: str | None = None
    seen: dict[str, dict[str, t.Any]] | None = None
    # The highest X-Vault-Index state any poll saw: each poll starts from it, so it never reads older data
    # than the poll before through a lagging standby.
    consistency_index: str = ""
    down_polls: int = 0
    log: t.Callable[[str], None] = field(default=lambda _message: None)

    def __post_init__(self) -> None:
        # Checked once, before the first poll: a watch with a wrong option never starts.
        for warning in ConnectionSettings.from_params(self.params).warnings():
            self.log(warning)
        select_auth_method(self.params)
        if self.interval <= 0:
            raise VaultCertError("interval must be a positive number of seconds")
        self.consistency_index = self.params.get("consistency_index") or ""
        if self.state_file:
            stored = load_state(self.state_file, mount=self.mount)
            if stored is not None:
                self.seen, index = stored
                self.consistency_index = index or self.consistency_index

    def poll(self, *, now: datetime | None = None) -> list[dict[str, t.Any]]:
        """One inventory and the events it brings; a failed inventory is one event, and only the first of a row."""
        try:
            report = self._inventory(now)
        except VaultCertError as exc:
            self.down_polls += 1
            if self.down_polls > 1:
                return []
            return [inert({"type": VAULT_UNAVAILABLE, "mount": self.mount, "reason": str(exc)})]
        events = []
        if self.down_polls:
            events.append({"type": VAULT_AVAILABLE, "mount": self.mount})
            self.down_polls = 0
        events += changes(self.mount, self.seen, report["certificates"])
        self.seen = remembered(report["certificates"])
        if self.state_file:
            save_state(self.state_file, mount=self.mount, seen=self.seen, consistency_index=self.consistency_index)
        return events

    def wait(self) -> float:
        """Seconds until the next poll: the interval, doubled for each poll in a row that found the server down."""
        if not self.down_polls:
            return self.interval
        return min(self.interval * 2 ** min(self.down_polls, 16), max(self.interval, MAX_BACKOFF))

    def _inventory(self, now: datetime | None) -> dict[str, t.Any]:
        # A new client and login per poll: a token never outlives the poll that needed it.
        settings = ConnectionSettings.from_params(self.params)
        auth = select_auth_method(self.params)
        client = VaultClient(settings, pool_size=self.request.concurrency)
        client.consistency.seed(self.consistency_index)
        try:
            auth.login(client)
            return _info.inventory(client, self.request, now=now)
        finally:
            # Kept from a failed poll too: what it saw was committed, and the next poll must not see less.
            self.consistency_index = client.consistency.state or self.consistency_index
            if auth.OBTAINS_TOKEN and client.token and self.params.get("revoke_token", True):
                client.revoke_self(namespace=auth.namespace)
            client.close()


def load_state(path: str, *, mount: str) -> tuple[dict[str, dict[str, t.Any]], str] | None:
    """What an earlier process of this watch saw, and its consistency index; None before the file exists."""
    try:
        with open(path, encoding="utf-8") as handle:
            stored = json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise VaultCertError(f"state_file cannot be read as a watch state ({type(exc).__name__})") from None
    if not isinstance(stored, dict) or stored.get("format") != STATE_FORMAT or not isinstance(stored.get("seen"), dict):
        raise VaultCertError("state_file does not hold a cert_expiry watch state")
    if stored.get("mount") != mount:
        # Paths of another mount would all look new: start over rather than compare the wrong secrets.
        return None
    index = stored.get("consistency_index")
    return stored["seen"], index if isinstance(index, str) else ""


def save_state(path: str, *, mount: str, seen: t.Mapping[str, t.Any], consistency_index: str = "") -> None:
    """Replace the state file atomically, so a process stopped mid-write leaves the previous state."""
    directory = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".cert_expiry-", suffix=".json")
    state = {"format": STATE_FORMAT, "mount": mount, "seen": seen, "consistency_index": consistency_index}
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(state, out)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise

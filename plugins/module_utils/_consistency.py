# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read-your-writes on a read-scaled cluster: the X-Vault-Index state of a run. Private to the collection.

OpenBao 2.7 (like Vault Enterprise's performance standbys) answers reads on a
standby from its own replica, which may be behind the active node. Every
answer that changed or read state carries ``X-Vault-Index``: on OpenBao the
base64 of ``{"cluster": <cluster id>, "value": "<raft index>"}``. A request
sent with that header (and ``X-Vault-Inconsistent: forward-active-node``) is
served by a node that has caught up with it, or forwarded to the active node.

Vault Enterprise sends the base64 of ``v1:<cluster id>:<local index>:<replicated
index>:<hmac>`` instead (read from its documentation, not tried here): the value
is signed, so the header received with the highest indexes is kept as it came.

A write whose answer brought no index (lost, or refused by a check-and-set
conflict with someone else's newer version) leaves the run knowing that the
active node is ahead of its state, but not by how much. It is fenced: the next
request asks for an index far beyond the state, which no standby has, so it is
forwarded to the active node (which answers whatever the index, with its own);
that answer's index lifts the fence. Measured on OpenBao 2.7.2. A Vault
Enterprise state is signed and cannot be raised: there the fence does nothing.

The state kept is the highest index seen per cluster: answers from threads of
one run arrive in any order, and a lower index received last must never make a
later request accept an older replica. A server that sends no header leaves
the state empty, and then no header is ever sent.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
import typing as t

INDEX_HEADER = "X-Vault-Index"
INCONSISTENT_HEADER = "X-Vault-Inconsistent"
FORWARD_ACTIVE_NODE = "forward-active-node"
# The statuses a node answers, with no error text, to a request whose index it has not reached yet:
# 412 when it may not forward, 429 when it asks the client to come back.
NOT_CAUGHT_UP_STATUS = frozenset({412, 429})
# How far beyond the state a fenced request asks: more than any standby can have, so the active node answers.
FENCE_AHEAD = 1 << 40
# Separates one cluster's entry from the next in a state handed from run to run.
STATE_SEPARATOR = ","


def parse_index(value: str | None) -> tuple[str, tuple[int, ...]] | None:
    """``(cluster, indexes)`` from one X-Vault-Index value (OpenBao's or Vault Enterprise's), or None."""
    if not value or not isinstance(value, str):
        return None
    try:
        text = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    if text.startswith("v1:"):
        return _parse_vault_wal_state(text)
    try:
        decoded = json.loads(text)
    except ValueError:
        return None
    if not isinstance(decoded, dict):
        return None
    cluster, index = decoded.get("cluster"), decoded.get("value")
    if not isinstance(cluster, str) or not cluster or not isinstance(index, (str, int)) or isinstance(index, bool):
        return None
    index = str(index)
    if not index.isdigit() or not index.isascii():
        return None
    return cluster, (int(index),)


def _parse_vault_wal_state(text: str) -> tuple[str, tuple[int, ...]] | None:
    parts = text.split(":")
    if len(parts) != 5 or not parts[1] or not all(part.isdigit() and part.isascii() for part in parts[2:4]):
        return None
    return parts[1], (int(parts[2]), int(parts[3]))


def format_index(cluster: str, index: int) -> str:
    """The X-Vault-Index value OpenBao reads for ``cluster`` at ``index``."""
    payload = json.dumps({"cluster": cluster, "value": str(index)}, separators=(",", ":"))
    return base64.b64encode(payload.encode()).decode("ascii")


def merge(
    state: t.Mapping[str, tuple[tuple[int, ...], str]], cluster: str, indexes: tuple[int, ...], value: str
) -> dict[str, tuple[tuple[int, ...], str]]:
    """``state`` with ``cluster`` at the newer of its entry there and ``(indexes, value)``.

    Newer means no index lower and one higher; of two that each lead in one
    index (Vault Enterprise's local and replicated ones), the one kept is the
    first received.
    """
    merged = dict(state)
    kept = merged.get(cluster)
    if kept is None or _newer(indexes, kept[0]):
        merged[cluster] = (indexes, value)
    return merged


def _newer(indexes: tuple[int, ...], than: tuple[int, ...]) -> bool:
    return len(indexes) == len(than) and indexes != than and all(a >= b for a, b in zip(indexes, than))


def not_caught_up(status: int, body: bytes, *, sent_index: bool) -> bool:
    """True for an answer (``status``, raw ``body``) of a node that would not serve a request before its index.

    Only when the request carried an index: a 429 without one is a rate limit.
    OpenBao answers it with an empty error list; such a node processed
    nothing, so even a write may be sent again.
    """
    if not sent_index or status not in NOT_CAUGHT_UP_STATUS:
        return False
    if not body:
        return True
    try:
        decoded = json.loads(body)
    except ValueError:
        return False
    return isinstance(decoded, dict) and not any(decoded.get("errors") or [])


class ConsistencyIndex:
    """The highest X-Vault-Index per cluster seen by a run, shared by its threads.

    ``record`` takes each answer's header, ``headers`` gives what the next
    request carries. ``state`` and ``seed`` hand the state from one run to the
    next (a string: the entries joined by commas, the cluster answering last at
    the end); an unreadable part of a seed is ignored, as an unknown header is.
    """

    def __init__(self, state: str | None = None) -> None:
        self._lock = threading.Lock()
        # Per cluster: its highest indexes and the header value that carried them.
        self._indexes: dict[str, tuple[tuple[int, ...], str]] = {}
        # The cluster that answered last: the one the next request goes to.
        self._current: str | None = None
        self._fenced = False
        if state:
            self.seed(state)

    def record(self, value: str | None, *, answers_fence: bool = False) -> None:
        """Keep an answer's index; ``answers_fence``: the request was fenced, so the active node answered it."""
        parsed = parse_index(value)
        if parsed is None:
            return
        cluster, indexes = parsed
        with self._lock:
            self._indexes = merge(self._indexes, cluster, indexes, value.strip())
            self._current = cluster
            if answers_fence:
                self._fenced = False

    @property
    def fenced(self) -> bool:
        return self._fenced

    def fence(self) -> None:
        """A write may have advanced the active node past the state: read from the active node next."""
        with self._lock:
            self._fenced = self._current is not None

    def seed(self, state: str | None) -> None:
        """Merge a state from another run (``state``'s value) into this one."""
        for part in (state or "").split(STATE_SEPARATOR):
            self.record(part)

    @property
    def state(self) -> str:
        """Every cluster's highest index, as ``seed`` takes it; "" when the server sent none."""
        with self._lock:
            order = sorted(self._indexes, key=lambda cluster: cluster == self._current)
            return STATE_SEPARATOR.join(self._indexes[cluster][1] for cluster in order)

    def headers(self) -> dict[str, str]:
        """The headers of the next request: the answering cluster's highest index, forwarded if not reached."""
        with self._lock:
            if self._current is None:
                return {}
            indexes, value = self._indexes[self._current]
            if self._fenced and len(indexes) == 1:
                value = format_index(self._current, indexes[0] + FENCE_AHEAD)
        return {INDEX_HEADER: value, INCONSISTENT_HEADER: FORWARD_ACTIVE_NODE}

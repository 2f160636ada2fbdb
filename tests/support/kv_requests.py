"""What a run asked of the KV mounts, from its audit entries (``run.requests`` or ``bao.audit_requests``)."""

from __future__ import annotations

import typing as t

KV_WRITE_OPERATIONS = frozenset({"create", "update", "patch", "delete"})


def data_writes(entries: t.Iterable[t.Mapping[str, t.Any]]) -> list[str]:
    """The paths of the data writes (a new version) among the entries."""
    return [
        entry["request"]["path"]
        for entry in entries
        if "/data/" in entry["request"]["path"] and entry["request"]["operation"] in ("create", "update")
    ]


def kv_writes(entries: t.Iterable[t.Mapping[str, t.Any]], *, mount: str = "secret") -> list[str]:
    """Every write-type request (data or metadata) on ``mount``, as "operation path"."""
    return [
        f"{entry['request']['operation']} {entry['request']['path']}"
        for entry in entries
        if entry["request"].get("path", "").startswith(f"{mount}/")
        and entry["request"].get("operation") in KV_WRITE_OPERATIONS
    ]

"""Module options for the test server: where it is and how to log in to it.

Plain Python, no pytest: for code that builds a task's arguments outside a fixture (a
module-scoped run, a test that adds its own options); ``vault_conn`` and ``approle_auth``
in tests/integration/conftest.py are the fixtures for the same.
"""

from __future__ import annotations

import typing as t


def approle_args(bao: t.Any, role: str = "certs") -> dict[str, t.Any]:
    """The server's url and CA, and an AppRole login as ``role`` with a fresh secret_id."""
    return {
        "url": bao.addr,
        "ca_cert": bao.ca_cert,
        "auth_method": "approle",
        "role_id": bao.role_ids[role],
        "secret_id": bao.new_approle_secret_id(role),
    }

"""Secret histories written directly as root, for the tests of the modules that act on what a push left.

The rollback, retire and info tests build the versions they act on this way (fast, and independent of the
push): certificate data as a push writes it, one KV v2 write per version.
"""

from __future__ import annotations

import pki


def cert_data(cn: str, **extra: str) -> dict[str, str]:
    """Secret data as a push writes it: a certificate and its key (self-signed, EC: fast), plus ``extra`` fields."""
    leaf = pki.make_leaf(None, cn, sans=(cn,))
    return {"certificate": leaf.cert_pem, "private_key": leaf.key_pem, **extra}


def write(bao, path: str, data: dict, mount: str = "secret") -> int:
    """Write ``data`` as a new version of ``path`` (as root, no check-and-set); returns its version number."""
    status, body = bao.api("POST", f"{mount}/data/{path}", {"data": data})
    assert status == 200, body
    return body["data"]["version"]


def write_history(bao, path: str, *datas: dict, mount: str = "secret") -> list[int]:
    """One version per data, in order; returns their version numbers."""
    return [write(bao, path, data, mount) for data in datas]


def pem_values(*datas: dict) -> list[str]:
    """Every PEM of the histories' data (keys and certificates): what a module's output must never hold."""
    return [value for data in datas for value in data.values() if "-----BEGIN" in value]

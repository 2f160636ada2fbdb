"""Tokens with a policy of the test's own, for cases the provisioned AppRole roles do not cover."""

from __future__ import annotations

import json
import typing as t


def token_with_policy(bao: t.Any, name: str, rules: dict[str, list[str]]) -> str:
    """A policy ``name`` with ``rules`` (path -> capabilities) and a 5-minute token holding it (plus default)."""
    hcl = "".join(
        f'path "{rule_path}" {{\n  capabilities = {json.dumps(caps)}\n}}\n' for rule_path, caps in rules.items()
    )
    status, body = bao.api("PUT", f"sys/policies/acl/{name}", {"policy": hcl})
    assert status in (200, 204), body
    status, body = bao.api("POST", "auth/token/create", {"policies": [name], "ttl": "5m"})
    assert status == 200, body
    return body["auth"]["client_token"]

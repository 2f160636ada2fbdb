# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""vault_health's verdicts: what a sys/health answer, the capabilities and max_versions say."""

from __future__ import annotations

import pytest

from ansible_collections.certautopilot.vault.plugins.module_utils import _health

URL = "https://vault.example.com:8200"
ACTIVE = {"initialized": True, "sealed": False, "standby": False, "version": "2.7.2"}


@pytest.mark.parametrize(
    ("body", "standby_ok", "ok", "words"),
    [
        (ACTIVE, True, True, "initialized, unsealed and active (version 2.7.2)"),
        ({**ACTIVE, "standby": True}, True, True, "unsealed and standby"),
        ({**ACTIVE, "standby": True}, False, False, "is a standby node and standby_ok is false"),
        ({**ACTIVE, "sealed": True}, True, False, "is sealed"),
        ({**ACTIVE, "initialized": False, "sealed": True}, True, False, "is not initialized"),
    ],
    ids=["active", "standby-ok", "standby-refused", "sealed", "uninitialized"],
)
def test_server_verdict_reads_the_health_answer(body, standby_ok, ok, words):
    verdict, message = _health.server_verdict(body, url=URL, standby_ok=standby_ok)
    assert verdict is ok
    assert message.startswith(URL) and words in message


@pytest.mark.parametrize(
    ("granted", "needed", "missing"),
    [
        (["read", "create", "update"], _health.PUSH_CAPABILITIES, []),
        (["read"], _health.PUSH_CAPABILITIES, ["create", "update"]),
        (["root"], _health.PUSH_CAPABILITIES, []),
        ([], _health.ROLLBACK_METADATA_CAPABILITIES, ["read"]),
    ],
)
def test_missing_capabilities_are_what_the_operation_needs_and_the_token_lacks(granted, needed, missing):
    assert _health._missing(granted, needed) == missing


def test_capability_check_names_the_path_and_what_is_lacking():
    report = _health.HealthReport()
    _health._record_capabilities(report, "push", "secret/data/certs/a", ["read"], _health.PUSH_CAPABILITIES)
    assert report.failures() == [
        "permission denied on secret/data/certs/a: the token needs read, create, update and lacks create, update "
        "(it has: read)"
    ]


@pytest.mark.parametrize(
    ("effective", "ok", "words"),
    [
        (20, True, "max_versions 20 keeps at least 10 versions"),
        (10, True, "keeps at least 10"),
        (5, False, "max_versions is 5, fewer than min_versions 10"),
        (None, False, "max_versions of secret is unknown"),
    ],
)
def test_max_versions_verdict_against_the_rollback_depth_asked_for(effective, ok, words):
    verdict, message = _health.max_versions_verdict(effective, 10, mount="secret")
    assert verdict is ok and words in message

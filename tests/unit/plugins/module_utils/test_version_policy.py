# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The version policy a push may set, and the durations it is written in: read as Vault reads them, refused by name."""

from __future__ import annotations

import re

import pytest

from ansible_collections.certautopilot.vault.plugins.module_utils import _kv2, _version_policy
from ansible_collections.certautopilot.vault.plugins.module_utils._errors import VaultCertError


@pytest.mark.parametrize(
    ("given", "seconds"),
    [
        (0, 0),
        (90, 90),
        ("90", 90),
        ("30d", 2592000),
        ("720h0m0s", 2592000),
        ("1h30m", 5400),
        ("1.5h", 5400),
        ("30d5h", 2610000),
        (" 720h0m0s ", 2592000),
        ("1h0m0.9s", 3600),
        ("0", 0),
        ("0s", 0),
        (10**9, 10**9),
    ],
)
def test_durations_are_read_as_vault_reads_them(given, seconds):
    assert _version_policy.duration_seconds(given, option="delete_version_after") == seconds


@pytest.mark.parametrize(
    "given",
    ["soon", "30 days", "-5", -5, True, "", "1x", "1e9h", "+5s", "-5s", "5 s", "5S", "h", "1h 30m"]
    + [1.5, False, None, [], {"s": 1}],
)
def test_a_value_that_is_no_duration_is_refused_by_name(given):
    with pytest.raises(VaultCertError, match="delete_version_after must be a number of seconds or a duration"):
        _version_policy.duration_seconds(given, option="delete_version_after")


def test_a_refused_duration_that_holds_a_private_key_is_not_echoed():
    key = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n"
    with pytest.raises(VaultCertError) as refused:
        _version_policy.duration_seconds(key, option="delete_version_after")
    assert "MIGHAgEAMBMGByqGSM49" not in str(refused.value)


def test_version_policy_lists_only_the_settings_that_differ():
    policy = _version_policy.VersionPolicy.from_options(max_versions=20, delete_version_after="30d", cas_required=True)
    metadata = _kv2.SecretMetadata(
        current_version=1, oldest_version=1, max_versions=20, cas_required=False, delete_version_after=2592000
    )
    assert policy.differences(metadata) == {"cas_required": True}
    assert policy.differences(None) == {"max_versions": 20, "delete_version_after": "2592000s", "cas_required": True}
    assert not _version_policy.VersionPolicy().given


def test_a_negative_max_versions_is_refused():
    with pytest.raises(VaultCertError, match="max_versions must be 0"):
        _version_policy.VersionPolicy.from_options(max_versions=-1, delete_version_after=None, cas_required=None)


@pytest.mark.parametrize(
    ("given", "message"),
    [
        # str.isdigit() holds for these but int() refuses them.
        ("²", "must be a number of seconds or a duration"),
        ("¹²", "must be a number of seconds or a duration"),
        ("①", "must be a number of seconds or a duration"),
        ("٣d", "must be a number of seconds or a duration"),
        # float() makes this inf, which int() refuses.
        ("1" * 400 + "s", "must be at most"),
        # Truncated to 0 whole seconds they would mean "never delete": the opposite of what was asked.
        ("500ms", "must be 0 (never) or at least one second"),
        ("0.5s", "must be 0 (never) or at least one second"),
        ("1ns", "must be 0 (never) or at least one second"),
        ("999us", "must be 0 (never) or at least one second"),
    ],
)
def test_durations_the_server_would_misread_are_refused_by_name(given, message):
    with pytest.raises(VaultCertError, match=re.escape(f"delete_version_after {message}")):
        _version_policy.duration_seconds(given, option="delete_version_after")


def test_max_versions_given_as_a_boolean_is_refused():
    with pytest.raises(VaultCertError, match="max_versions must be a number of versions, got True"):
        _version_policy.VersionPolicy.from_options(max_versions=True, delete_version_after=None, cas_required=None)

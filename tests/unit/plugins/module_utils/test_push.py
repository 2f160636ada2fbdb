# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Deciding a push against the current version: pure logic of _push."""

from __future__ import annotations

import pytest

from ansible_collections.certautopilot.vault.plugins.module_utils import _certs, _push
from ansible_collections.certautopilot.vault.plugins.module_utils._errors import VaultCertError
from ansible_collections.certautopilot.vault.plugins.module_utils._kv2 import (
    SecretMetadata,
    SecretVersion,
    VersionPolicy,
)

PAYLOAD = {"certificate": "C", "private_key": "K", "fullchain": "C"}
TAG = {"managed_by": "certautopilot.vault"}
SUMMARY = {"cn": "example.com", "serial": "01", "not_after": "2027-01-01T00:00:00Z", "fingerprint_sha256": "ab"}


def _item():
    return _push.PushItem(path="certs/example.com", payload=dict(PAYLOAD), summary=SUMMARY)


def _options(**overrides):
    settings = {"mount": "secret", "fields": dict(_certs.DEFAULT_FIELDS)}
    settings.update(overrides)
    return _push.PushOptions(**settings)


def _decide(current, options=None, **state):
    return _push.decide(_item(), _push.SecretState(current, **state), options or _options())


def _tagged(version, data, **custom):
    return SecretVersion(version=version, data=data, custom_metadata={**TAG, **custom})


def test_new_secret_is_a_change_with_cas_zero_and_the_tag_goes_after_the_data():
    decision = _decide(None)
    assert decision.data_changed and decision.base_version == 0
    assert decision.changed_fields == ["certificate", "private_key", "fullchain", "managed_by"]
    # Its custom metadata is unknown before the write: the tag is not part of a metadata write before it.
    assert decision.metadata is None and decision.tag_separately


def test_equal_current_data_with_the_tag_is_no_change():
    decision = _decide(_tagged(4, dict(PAYLOAD)))
    assert not decision.anything_to_write and decision.changed_fields == [] and decision.base_version == 4


def test_equal_data_without_the_tag_adds_only_the_tag():
    decision = _decide(SecretVersion(version=4, data=dict(PAYLOAD), custom_metadata={"team": "a"}))
    assert not decision.data_changed and decision.anything_to_write
    assert decision.changed_fields == ["managed_by"] and decision.tag_separately and decision.metadata is None
    assert decision.custom_metadata == {"team": "a"}


def test_once_the_server_refused_the_tag_the_run_stops_asking():
    options = _options()
    options.tag_refused.set()
    decision = _decide(SecretVersion(version=4, data=dict(PAYLOAD)), options)
    assert not decision.anything_to_write and decision.changed_fields == []


def test_version_policy_differences_are_written_before_the_data_with_the_tag():
    current = SecretVersion(version=2, data=dict(PAYLOAD), custom_metadata={"team": "a"})
    metadata = SecretMetadata(current_version=2, oldest_version=1, max_versions=0, custom_metadata={"team": "a"})
    policy = VersionPolicy(max_versions=20, delete_version_after=86400, cas_required=False)
    decision = _decide(current, _options(version_policy=policy), metadata=metadata, metadata_read=True)
    assert decision.changed_fields == ["max_versions", "delete_version_after", "managed_by"]
    assert decision.metadata == {
        "max_versions": 20,
        "delete_version_after": "86400s",
        "custom_metadata": {"team": "a", **TAG},
    }
    assert decision.previous_metadata == {
        "max_versions": 0,
        "delete_version_after": "0s",
        "custom_metadata": {"team": "a"},
    }
    assert not decision.tag_separately


def test_a_version_policy_already_in_place_is_no_change():
    metadata = SecretMetadata(
        current_version=2, oldest_version=1, max_versions=20, custom_metadata=TAG, delete_version_after=86400
    )
    policy = VersionPolicy(max_versions=20, delete_version_after=86400, cas_required=False)
    decision = _decide(
        _tagged(2, dict(PAYLOAD)), _options(version_policy=policy), metadata=metadata, metadata_read=True
    )
    assert not decision.anything_to_write


def test_unmanaged_keys_are_carried_into_the_new_version():
    current = _tagged(1, {**PAYLOAD, "certificate": "OLD", "owner": "team-a"})
    decision = _decide(current)
    assert decision.desired == {**PAYLOAD, "owner": "team-a"}
    assert decision.changed_fields == ["certificate"]


def test_unmanaged_keys_are_dropped_when_not_kept():
    current = _tagged(1, {**PAYLOAD, "owner": "team-a"})
    decision = _decide(current, _options(keep_other_fields=False))
    assert decision.desired == PAYLOAD and decision.changed_fields == ["other_fields"]


def test_managed_key_absent_from_payload_is_removed():
    current = _tagged(2, {**PAYLOAD, "chain": "OLDCHAIN"})
    decision = _decide(current)
    assert "chain" not in decision.desired and decision.changed_fields == ["chain"]


def test_deleted_current_version_is_rewritten_with_cas_of_its_number():
    decision = _decide(SecretVersion(version=3, data=None, deleted=True))
    assert decision.data_changed and decision.base_version == 3


def test_custom_metadata_change_is_a_change_of_its_own():
    current = SecretVersion(version=1, data=dict(PAYLOAD), custom_metadata={"team": "a"})
    decision = _decide(current, _options(custom_metadata=True))
    assert not decision.data_changed
    assert decision.metadata == {"custom_metadata": {"team": "a", **SUMMARY, **TAG}}
    assert decision.previous_metadata == {"custom_metadata": {"team": "a"}}
    assert decision.changed_fields == ["managed_by", "custom_metadata"]


def test_duplicate_paths_in_a_batch_are_refused_before_parsing():
    raw = [{"path": "certs/a", "certificate": "x"}, {"path": "certs/a", "certificate": "x"}]
    with pytest.raises(VaultCertError, match="invalid path 'certs/a': it appears twice"):
        _push.prepare_items(raw, _options(include_private_key=False, validate=False))


def test_bad_mount_is_refused_before_any_item():
    with pytest.raises(VaultCertError, match="invalid mount"):
        _push.prepare_items([], _options(mount="a//b"))


def test_ownership_warning_names_the_untagged_secrets_the_grant_and_the_first_failure():
    options = _options()
    options.tag_failures.append("certs/b: permission denied on secret/metadata/certs/b")
    results = [{"path": "certs/a", "managed": True}, {"path": "certs/b", "managed": False}]
    warning = _push.ownership_warning(results, options)
    assert warning.startswith("1 secret(s) were delivered but are not marked managed_by: certautopilot.vault")
    assert "(certs/b)" in warning and "create and update on secret/metadata/<path>" in warning
    assert warning.endswith("First failure - certs/b: permission denied on secret/metadata/certs/b")
    assert _push.ownership_warning(results[:1], options) is None

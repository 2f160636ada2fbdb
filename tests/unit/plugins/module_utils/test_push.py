# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Deciding a push against the current version: pure logic of _push."""

from __future__ import annotations

import pytest

from ansible_collections.certautopilot.vault.plugins.module_utils import _kv2, _layouts, _push
from ansible_collections.certautopilot.vault.plugins.module_utils._errors import VaultCertError
from ansible_collections.certautopilot.vault.plugins.module_utils._kv2 import SecretMetadata, SecretVersion
from ansible_collections.certautopilot.vault.plugins.module_utils._version_policy import VersionPolicy

PAYLOAD = {"certificate": "C", "private_key": "K", "fullchain": "C"}
TAG = {"managed_by": "certautopilot.vault"}
MARK_A = {**TAG, "certautopilot_owner": "team-a"}
SUMMARY = {"cn": "example.com", "serial": "01", "not_after": "2027-01-01T00:00:00Z", "fingerprint_sha256": "ab"}


def _item():
    return _push.PushItem(path="certs/example.com", payload=dict(PAYLOAD), summary=SUMMARY)


def _options(**overrides):
    settings = {"mount": "secret", "fields": dict(_layouts.DEFAULT_FIELDS)}
    settings.update(overrides)
    return _push.PushOptions(**settings)


def _decide(current, options=None, **state):
    return _push.decide(_item(), _push.SecretState(current, **state), options or _options())


def _tagged(version, data, **custom):
    return SecretVersion(version=version, data=data, custom_metadata={**TAG, **custom})


def test_new_secret_without_an_owner_is_a_data_change_with_cas_zero_and_no_metadata():
    decision = _decide(None)
    assert decision.data_changed and decision.base_version == 0
    assert decision.changed_fields == ["certificate", "private_key", "fullchain"]
    assert decision.metadata is None


def test_equal_current_data_is_no_change_without_an_owner_whatever_the_custom_metadata():
    for custom in ({}, {"team": "a"}, TAG):
        decision = _decide(SecretVersion(version=4, data=dict(PAYLOAD), custom_metadata=custom))
        assert not decision.anything_to_write and decision.changed_fields == [] and decision.base_version == 4


def test_with_an_owner_a_new_secret_gets_the_mark_before_the_data():
    decision = _decide(None, _options(owner="team-a"), metadata=None, metadata_read=True)
    assert decision.changed_fields == ["certificate", "private_key", "fullchain", "certautopilot_owner"]
    assert decision.metadata == {"custom_metadata": MARK_A}
    assert decision.metadata_cas == 0


def test_with_an_owner_equal_data_without_the_mark_adds_only_the_mark_every_other_key_kept():
    metadata = SecretMetadata(
        current_version=4, oldest_version=1, max_versions=0, custom_metadata={"owner": "x"}, current_metadata_version=7
    )
    current = SecretVersion(version=4, data=dict(PAYLOAD), custom_metadata={"owner": "x"})
    decision = _decide(current, _options(owner="team-a"), metadata=metadata, metadata_read=True)
    assert not decision.data_changed and decision.anything_to_write
    assert decision.changed_fields == ["certautopilot_owner"]
    assert decision.metadata == {"custom_metadata": {"owner": "x", **MARK_A}}
    assert decision.metadata_cas == 7


def test_with_its_own_mark_a_rerun_is_no_change():
    current = SecretVersion(version=4, data=dict(PAYLOAD), custom_metadata=dict(MARK_A))
    decision = _decide(current, _options(owner="team-a"))
    assert not decision.anything_to_write and decision.changed_fields == []


def test_the_mark_written_on_an_existing_secret_keeps_every_other_key_of_its_custom_metadata():
    custom = {"team": "web", "a": "b", "owner": "me"}
    current = SecretVersion(version=3, data=dict(PAYLOAD), custom_metadata=custom)

    decision = _decide(current, _options(owner="team-web"))

    assert not decision.data_changed
    assert decision.metadata == {
        "custom_metadata": {**custom, "managed_by": _kv2.MANAGED_BY, "certautopilot_owner": "team-web"}
    }


def test_a_forged_tag_value_does_not_count_as_managed_and_is_replaced_by_the_real_one():
    for forged in ("certautopilot.vaultX", "CERTAUTOPILOT.VAULT", " certautopilot.vault", ["certautopilot.vault"]):
        current = SecretVersion(version=1, data=dict(PAYLOAD), custom_metadata={"managed_by": forged})
        decision = _decide(current, _options(owner="team-web"))
        assert not _kv2.is_managed(current.custom_metadata)
        assert "certautopilot_owner" in decision.changed_fields
        assert decision.metadata["custom_metadata"]["managed_by"] == _kv2.MANAGED_BY


def test_without_an_owner_the_run_neither_writes_nor_claims_the_mark():
    decision = _decide(SecretVersion(version=1, data=dict(PAYLOAD), custom_metadata={}))

    assert not decision.anything_to_write
    assert decision.changed_fields == []
    assert not _kv2.is_managed(decision.custom_metadata_after)


@pytest.mark.parametrize("adopt", [True, False])
def test_another_owners_secret_is_refused_whatever_adopt_says(adopt):
    current = SecretVersion(version=4, data=dict(PAYLOAD), custom_metadata={**TAG, "certautopilot_owner": "team-b"})
    with pytest.raises(VaultCertError, match="is owned by team-b, not by owner team-a"):
        _decide(current, _options(owner="team-a", adopt=adopt))


def test_without_an_owner_an_owned_secret_is_refused_naming_its_owner():
    current = SecretVersion(version=4, data=dict(PAYLOAD), custom_metadata={**TAG, "certautopilot_owner": "team-b"})
    with pytest.raises(VaultCertError, match="is owned by team-b: give owner team-b or another path; nothing written"):
        _decide(current)


def test_an_owner_read_from_the_server_is_quoted_only_when_it_is_a_valid_name():
    current = SecretVersion(version=4, data=dict(PAYLOAD), custom_metadata={"certautopilot_owner": "{{ x }}"})
    with pytest.raises(VaultCertError) as refused:
        _decide(current)
    message = str(refused.value)
    assert "{{" not in message
    assert "is owned by an owner whose name is not a valid owner name: use another path; nothing written" in message


@pytest.mark.parametrize(
    "current",
    [
        SecretVersion(version=4, data=dict(PAYLOAD), custom_metadata={}),
        SecretVersion(version=4, data=dict(PAYLOAD), custom_metadata=dict(TAG)),
        SecretVersion(version=3, data=None, deleted=True, custom_metadata={}),
    ],
)
def test_adopt_false_refuses_an_existing_secret_not_marked_with_the_owner(current):
    with pytest.raises(VaultCertError, match="is not marked with owner team-a \\(adopt: false\\); nothing written"):
        _decide(current, _options(owner="team-a", adopt=False))


def test_adopt_false_refuses_a_metadata_only_secret_and_takes_a_new_path():
    metadata = SecretMetadata(current_version=0, oldest_version=0, max_versions=0, custom_metadata={})
    with pytest.raises(VaultCertError, match="adopt: false"):
        _decide(None, _options(owner="team-a", adopt=False), metadata=metadata, metadata_read=True)
    assert _decide(None, _options(owner="team-a", adopt=False), metadata=None, metadata_read=True).data_changed


@pytest.mark.parametrize("owner", ["", "a b", "x" * 65, "team/web", "é", 5])
def test_a_bad_owner_is_refused_before_any_item(owner):
    with pytest.raises(VaultCertError, match="^owner must be 1 to 64 characters"):
        _push.prepare_items([], _options(owner=owner))


def test_version_policy_differences_are_written_before_the_data_with_the_mark():
    current = SecretVersion(version=2, data=dict(PAYLOAD), custom_metadata={"team": "a"})
    metadata = SecretMetadata(current_version=2, oldest_version=1, max_versions=0, custom_metadata={"team": "a"})
    policy = VersionPolicy(max_versions=20, delete_version_after=86400, cas_required=False)
    decision = _decide(current, _options(version_policy=policy, owner="team-a"), metadata=metadata, metadata_read=True)
    assert decision.changed_fields == ["max_versions", "delete_version_after", "certautopilot_owner"]
    assert decision.metadata == {
        "max_versions": 20,
        "delete_version_after": "86400s",
        "custom_metadata": {"team": "a", **MARK_A},
    }
    assert decision.previous_metadata == {
        "max_versions": 0,
        "delete_version_after": "0s",
        "custom_metadata": {"team": "a"},
    }


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
    assert decision.metadata == {"custom_metadata": {"team": "a", **SUMMARY}}
    assert decision.previous_metadata == {"custom_metadata": {"team": "a"}}
    assert decision.changed_fields == ["custom_metadata"]


def test_duplicate_paths_in_a_batch_are_refused_before_parsing():
    raw = [{"path": "certs/a", "certificate": "x"}, {"path": "certs/a", "certificate": "x"}]
    with pytest.raises(VaultCertError, match="invalid path 'certs/a': it appears twice"):
        _push.prepare_items(raw, _options(include_private_key=False, validate=False))


def test_bad_mount_is_refused_before_any_item():
    with pytest.raises(VaultCertError, match="invalid mount"):
        _push.prepare_items([], _options(mount="a//b"))

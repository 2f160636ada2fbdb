# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Deciding a push against the current version: pure logic of _push."""

from __future__ import annotations

import pytest

from ansible_collections.certautopilot.vault.plugins.module_utils import _certs, _push
from ansible_collections.certautopilot.vault.plugins.module_utils._errors import VaultCertError
from ansible_collections.certautopilot.vault.plugins.module_utils._kv2 import SecretVersion

PAYLOAD = {"certificate": "C", "private_key": "K", "fullchain": "C"}
SUMMARY = {"cn": "example.com", "serial": "01", "not_after": "2027-01-01T00:00:00Z", "fingerprint_sha256": "ab"}


def _item():
    return _push.PushItem(path="certs/example.com", payload=dict(PAYLOAD), summary=SUMMARY)


def _options(**overrides):
    settings = {"mount": "secret", "fields": dict(_certs.DEFAULT_FIELDS)}
    settings.update(overrides)
    return _push.PushOptions(**settings)


def test_new_secret_is_a_change_with_cas_zero():
    decision = _push.decide(_item(), None, _options())
    assert decision.data_changed and decision.base_version == 0
    assert decision.changed_fields == ["certificate", "private_key", "fullchain"]


def test_equal_current_data_is_no_change():
    decision = _push.decide(_item(), SecretVersion(version=4, data=dict(PAYLOAD)), _options())
    assert not decision.data_changed and decision.changed_fields == [] and decision.base_version == 4


def test_unmanaged_keys_are_carried_into_the_new_version():
    current = SecretVersion(version=1, data={**PAYLOAD, "certificate": "OLD", "owner": "team-a"})
    decision = _push.decide(_item(), current, _options())
    assert decision.desired == {**PAYLOAD, "owner": "team-a"}
    assert decision.changed_fields == ["certificate"]


def test_unmanaged_keys_are_dropped_when_not_kept():
    current = SecretVersion(version=1, data={**PAYLOAD, "owner": "team-a"})
    decision = _push.decide(_item(), current, _options(keep_other_fields=False))
    assert decision.desired == PAYLOAD and decision.changed_fields == ["other_fields"]


def test_managed_key_absent_from_payload_is_removed():
    current = SecretVersion(version=2, data={**PAYLOAD, "chain": "OLDCHAIN"})
    decision = _push.decide(_item(), current, _options())
    assert "chain" not in decision.desired and decision.changed_fields == ["chain"]


def test_deleted_current_version_is_rewritten_with_cas_of_its_number():
    decision = _push.decide(_item(), SecretVersion(version=3, data=None, deleted=True), _options())
    assert decision.data_changed and decision.base_version == 3


def test_custom_metadata_change_is_a_change_of_its_own():
    current = SecretVersion(version=1, data=dict(PAYLOAD), custom_metadata={"team": "a"})
    decision = _push.decide(_item(), current, _options(custom_metadata=True))
    assert not decision.data_changed
    assert decision.desired_custom_metadata == {"team": "a", **SUMMARY}
    assert decision.changed_fields == ["custom_metadata"]


def test_duplicate_paths_in_a_batch_are_refused_before_parsing():
    raw = [{"path": "certs/a", "certificate": "x"}, {"path": "certs/a", "certificate": "x"}]
    with pytest.raises(VaultCertError, match="invalid path 'certs/a': it appears twice"):
        _push.prepare_items(raw, _options(include_private_key=False, validate=False))


def test_bad_mount_is_refused_before_any_item():
    with pytest.raises(VaultCertError, match="invalid mount"):
        _push.prepare_items([], _options(mount="a//b"))

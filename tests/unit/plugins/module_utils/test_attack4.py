# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Attacks on the duration parsing of delete_version_after and on the push's metadata decision.

A test named for a defect fails on the code it was written against and states the safe behaviour; the others
are attacks that held, kept as regressions.
"""

from __future__ import annotations

import pytest

from ansible_collections.certautopilot.vault.plugins.module_utils import _kv2, _push
from ansible_collections.certautopilot.vault.plugins.module_utils._errors import VaultCertError

REFUSED = "delete_version_after must be a number of seconds or a duration"


@pytest.mark.parametrize("given", ["\u00b2", "\u00b9\u00b2", "\u2460"])
def test_a_superscript_or_circled_digit_is_refused_by_name_not_with_an_unexpected_value_error(given):
    """str.isdigit() is true for "²" but int() refuses it: the module fails with "unexpected error (ValueError)"
    instead of naming the option. Expected: VaultCertError naming delete_version_after."""
    with pytest.raises(VaultCertError, match=REFUSED):
        _kv2.duration_seconds(given, option="delete_version_after")


def test_a_duration_too_large_for_a_float_is_refused_by_name_not_with_an_overflow_error():
    """float("1" * 400) is inf, and int(inf) raises OverflowError: "unexpected error" again.
    Expected: VaultCertError naming delete_version_after."""
    with pytest.raises(VaultCertError, match="delete_version_after"):
        _kv2.duration_seconds("1" * 400 + "s", option="delete_version_after")


@pytest.mark.parametrize("given", ["500ms", "0.5s", "1ns", "999us"])
def test_a_sub_second_duration_does_not_silently_become_zero_which_keeps_versions_forever(given):
    """A non-zero duration is truncated to 0 whole seconds, and 0 means "never delete": the opposite of what
    was asked. Expected: refused by name (or rounded up to 1 s); never 0."""
    try:
        seconds = _kv2.duration_seconds(given, option="delete_version_after")
    except VaultCertError as exc:
        assert "delete_version_after" in str(exc)
    else:
        assert seconds >= 1, f"{given!r} became {seconds}: delete_version_after 0 keeps every version forever"


@pytest.mark.parametrize(
    ("given", "seconds"),
    [("30d5h", 2610000), (" 720h0m0s ", 2592000), ("1h0m0.9s", 3600), ("0", 0), ("0s", 0), (10**9, 10**9)],
)
def test_go_durations_and_vaults_own_spellings_are_read_in_whole_seconds(given, seconds):
    assert _kv2.duration_seconds(given, option="delete_version_after") == seconds


@pytest.mark.parametrize("given", ["1e9h", "+5s", "-5s", "5 s", "5S", "h", "1h 30m", 1.5, False, None, [], {"s": 1}])
def test_odd_durations_are_refused_by_name(given):
    with pytest.raises(VaultCertError, match=REFUSED):
        _kv2.duration_seconds(given, option="delete_version_after")


def test_a_refused_duration_that_holds_a_private_key_is_not_echoed():
    key = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n"
    with pytest.raises(VaultCertError) as refused:
        _kv2.duration_seconds(key, option="delete_version_after")
    assert "MIGHAgEAMBMGByqGSM49" not in str(refused.value)


def _options(**settings) -> _push.PushOptions:
    return _push.PushOptions(mount="secret", fields={"certificate": "certificate"}, **settings)


def _item() -> _push.PushItem:
    return _push.PushItem(path="certs/x", payload={"certificate": "PEM"}, summary={})


def test_the_mark_written_on_an_existing_secret_keeps_every_other_key_of_its_custom_metadata():
    custom = {"team": "web", "a": "b", "owner": "me"}
    current = _kv2.SecretVersion(version=3, data={"certificate": "PEM"}, custom_metadata=custom)

    decision = _push.decide(_item(), _push.SecretState(current), _options(owner="team-web"))

    assert not decision.data_changed
    assert decision.metadata == {
        "custom_metadata": {**custom, "managed_by": _kv2.MANAGED_BY, "certautopilot_owner": "team-web"}
    }


def test_a_forged_tag_value_does_not_count_as_managed_and_is_replaced_by_the_real_one():
    for forged in ("certautopilot.vaultX", "CERTAUTOPILOT.VAULT", " certautopilot.vault", ["certautopilot.vault"]):
        current = _kv2.SecretVersion(version=1, data={"certificate": "PEM"}, custom_metadata={"managed_by": forged})
        decision = _push.decide(_item(), _push.SecretState(current), _options(owner="team-web"))
        assert not _kv2.is_managed(current.custom_metadata)
        assert "certautopilot_owner" in decision.changed_fields
        assert decision.metadata["custom_metadata"]["managed_by"] == _kv2.MANAGED_BY


def test_without_an_owner_the_run_neither_writes_nor_claims_the_mark():
    current = _kv2.SecretVersion(version=1, data={"certificate": "PEM"}, custom_metadata={})

    decision = _push.decide(_item(), _push.SecretState(current), _options())

    assert not decision.anything_to_write
    assert decision.changed_fields == []
    assert not _kv2.is_managed(decision.custom_metadata_after)

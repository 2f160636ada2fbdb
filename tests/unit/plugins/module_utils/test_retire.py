# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Deciding a retirement from the metadata: what to delete or destroy, what is already done, what is refused."""

from __future__ import annotations

import dataclasses

import pytest

from ansible_collections.certautopilot.vault.plugins.module_utils import _retire
from ansible_collections.certautopilot.vault.plugins.module_utils._errors import CasConflict, VaultCertError
from ansible_collections.certautopilot.vault.plugins.module_utils._kv2 import (
    PurgeGuard,
    SecretMetadata,
    SecretRecreated,
    VersionState,
)
from ansible_collections.certautopilot.vault.plugins.module_utils._retire import RetirePlan, RetireRequest

LOCATION = "secret/data/certs/example.com"
MANAGED = {"managed_by": "certautopilot.vault"}
PAST = "2026-01-01T00:00:00Z"
FUTURE = "2999-01-01T00:00:00Z"


def _metadata(current, *, oldest=1, deleted=(), destroyed=(), scheduled=(), managed=True, custom=None):
    """Metadata with versions ``oldest`` to ``current``; tagged as the collection's unless ``managed`` is false."""
    versions = {
        n: VersionState(
            deletion_time=FUTURE if n in scheduled else PAST if n in deleted else "", destroyed=n in destroyed
        )
        for n in range(oldest, current + 1)
    }
    return SecretMetadata(
        current_version=current,
        oldest_version=oldest,
        max_versions=0,
        versions=versions,
        custom_metadata=dict(MANAGED) if managed else custom,
    )


def _plan(metadata, mode="delete", **request):
    return _retire.plan(
        metadata, RetireRequest(mount="secret", path="certs/example.com", mode=mode, **request), LOCATION
    )


# -- which versions ----------------------------------------------------------------------------


def test_delete_takes_the_current_version_only():
    assert _plan(_metadata(3)) == RetirePlan(version=3, delete=(3,))


@pytest.mark.parametrize(
    "metadata",
    [_metadata(3, deleted={3}), _metadata(3, destroyed={3}), _metadata(3, deleted={3}, destroyed={3})],
    ids=["deleted", "destroyed", "both"],
)
def test_delete_of_a_current_version_already_gone_is_unchanged(metadata):
    decided = _plan(metadata)
    assert not decided.changed
    assert decided.version == 3


def test_delete_makes_a_scheduled_deletion_now():
    assert _plan(_metadata(2, scheduled={2})).delete == (2,)


def test_delete_ignores_earlier_versions_whatever_their_state():
    assert _plan(_metadata(4, deleted={1}, destroyed={2})).delete == (4,)


def test_destroy_takes_every_kept_version_not_yet_destroyed_deleted_ones_included():
    decided = _plan(_metadata(5, oldest=2, deleted={3}, destroyed={4}), "destroy")
    assert decided == RetirePlan(version=5, destroy=(2, 3, 5))


def test_destroy_when_every_version_is_destroyed_is_unchanged():
    decided = _plan(_metadata(3, destroyed={1, 2, 3}), "destroy")
    assert not decided.changed
    assert decided.destroy == ()


def test_purge_deletes_the_metadata_and_names_the_versions_whose_data_goes_with_it():
    decided = _plan(_metadata(3, destroyed={1}), "purge")
    assert decided == RetirePlan(version=3, destroy=(2, 3), purge=True)
    assert decided.changed


def test_purge_of_fully_destroyed_secret_still_removes_the_metadata():
    decided = _plan(_metadata(2, destroyed={1, 2}), "purge")
    assert decided.changed and decided.purge and decided.destroy == ()


def test_metadata_without_any_version_is_purged_but_has_nothing_to_delete_or_destroy():
    empty = SecretMetadata(current_version=0, oldest_version=0, max_versions=0, custom_metadata=MANAGED)
    assert not _plan(empty, "delete").changed
    assert not _plan(empty, "destroy").changed
    assert _plan(empty, "purge").purge


# -- idempotence and guards --------------------------------------------------------------------


@pytest.mark.parametrize("mode", _retire.MODES)
def test_no_secret_is_already_retired_whatever_the_mode_guard_and_tag(mode):
    decided = _plan(None, mode, current_version=7, require_managed=True)
    assert decided == RetirePlan(version=None)
    assert not decided.changed


@pytest.mark.parametrize("custom", [None, {}, {"managed_by": "someone-else"}, {"owner": "team-a"}])
@pytest.mark.parametrize("mode", _retire.MODES)
def test_an_unmanaged_secret_is_refused_naming_the_tag_and_the_way_out(custom, mode):
    with pytest.raises(VaultCertError) as refused:
        _plan(_metadata(2, managed=False, custom=custom), mode)
    message = str(refused.value)
    assert f"{LOCATION} is not managed by this collection" in message
    assert "managed_by=certautopilot.vault" in message
    assert "require_managed: false" in message and "nothing written" in message


def test_require_managed_false_retires_an_unmanaged_secret():
    assert _plan(_metadata(2, managed=False), require_managed=False).delete == (2,)


def test_guard_on_the_current_version_lets_the_retirement_go_ahead():
    assert _plan(_metadata(3), "destroy", current_version=3).destroy == (1, 2, 3)


@pytest.mark.parametrize("mode", _retire.MODES)
def test_guard_on_an_older_version_is_refused_naming_both_versions(mode):
    with pytest.raises(VaultCertError, match=r"current version of .* is 4, not 3 \(current_version guard\)"):
        _plan(_metadata(4), mode, current_version=3)


def test_an_unmanaged_secret_is_refused_before_its_guard_is_looked_at():
    with pytest.raises(VaultCertError, match="not managed"):
        _plan(_metadata(4, managed=False), current_version=3)


# -- diff ----------------------------------------------------------------------------------------


def test_diff_shows_version_states_before_and_after_never_data():
    metadata = _metadata(4, deleted={1}, destroyed={2}, scheduled={3})
    decided = _plan(metadata, "destroy")

    before = _retire.version_states(metadata)
    after = _retire.after_states(metadata, decided)

    assert before == {
        "current_version": 4,
        "versions": {"1": "deleted", "2": "destroyed", "3": "deletion scheduled", "4": "live"},
    }
    assert after == {"current_version": 4, "versions": dict.fromkeys(("1", "2", "3", "4"), "destroyed")}


def test_diff_after_a_delete_marks_the_current_version_deleted_and_after_a_purge_is_empty():
    metadata = _metadata(2)
    assert _retire.after_states(metadata, _plan(metadata))["versions"] == {"1": "live", "2": "deleted"}
    assert _retire.after_states(metadata, _plan(metadata, "purge")) == {}
    assert _retire.version_states(None) == _retire.after_states(None, _plan(None)) == {}


# -- the run's checks ----------------------------------------------------------------------------


def test_prepare_refuses_a_repeated_path_and_an_unknown_mode_before_any_request():
    with pytest.raises(VaultCertError, match="appears twice in secrets"):
        _retire.prepare_requests(
            "secret", [{"path": "certs/a"}, {"path": "certs/a"}], mode="delete", require_managed=True, check_mode=False
        )
    with pytest.raises(VaultCertError, match="mode must be one of delete, destroy, purge"):
        _retire.prepare_requests("secret", [{"path": "certs/a"}], mode="shred", require_managed=True, check_mode=False)
    with pytest.raises(VaultCertError, match="invalid path"):
        _retire.prepare_requests(
            "secret", [{"path": "certs/../a"}], mode="delete", require_managed=True, check_mode=False
        )


def test_prepared_requests_keep_input_order_and_per_item_guards():
    requests = _retire.prepare_requests(
        "secret",
        [{"path": "certs/b", "current_version": 2}, {"path": "certs/a"}],
        mode="destroy",
        require_managed=False,
        check_mode=True,
    )
    assert [(r.path, r.current_version, r.mode, r.require_managed, r.check_mode) for r in requests] == [
        ("certs/b", 2, "destroy", False, True),
        ("certs/a", None, "destroy", False, True),
    ]


@pytest.mark.parametrize(
    ("mode", "written", "capabilities"),
    [
        ("delete", "secret/delete/certs/a", ("update",)),
        ("destroy", "secret/destroy/certs/a", ("update",)),
        ("purge", "secret/metadata/certs/a", ("read", "update", "delete")),
    ],
)
def test_each_mode_needs_a_metadata_read_and_its_own_write(mode, written, capabilities):
    request = RetireRequest(mount="secret", path="certs/a", mode=mode)
    needs = _retire.needed_capabilities([request])
    assert needs[written] == capabilities
    assert needs["secret/metadata/certs/a"] == (("read", "update", "delete") if mode == "purge" else ("read",))


# -- purge: what its second read may show -------------------------------------------


def _guard(current=2, metadata_version=3):
    return PurgeGuard(current_version=current, metadata_version=metadata_version, cas_required_before=False)


def _reread(current=2, metadata_version=3):
    return dataclasses.replace(_metadata(current), current_metadata_version=metadata_version)


def test_a_purge_goes_ahead_while_the_secret_is_as_its_guard_left_it():
    _retire.refuse_written_during_purge(_reread(), _guard(), LOCATION)


def test_a_version_written_during_the_purge_is_named_and_nothing_destroyed():
    with pytest.raises(CasConflict, match=f"version 3 of {LOCATION} was written during the purge.*nothing destroyed"):
        _retire.refuse_written_during_purge(_reread(current=3), _guard(), LOCATION)


def test_a_metadata_write_during_the_purge_keeps_the_secret():
    with pytest.raises(CasConflict, match="metadata of .* was changed by another writer during the purge"):
        _retire.refuse_written_during_purge(_reread(metadata_version=4), _guard(), LOCATION)


def test_a_server_without_metadata_versions_is_judged_by_the_version_alone():
    _retire.refuse_written_during_purge(_reread(metadata_version=None), _guard(metadata_version=None), LOCATION)


def test_a_secret_re_created_during_the_purge_is_another_secret_whatever_its_numbers():
    guard = dataclasses.replace(_guard(), created_time="2026-12-06T12:00:00.1Z")
    reread = dataclasses.replace(_reread(), created_time="2026-12-06T12:00:05.2Z")
    with pytest.raises(SecretRecreated, match="purged and created anew by someone else.*nothing destroyed"):
        _retire.refuse_written_during_purge(reread, guard, LOCATION)


@pytest.mark.parametrize(
    ("custom", "owner", "refused"),
    [
        ({**MANAGED, "certautopilot_owner": "team-a"}, "team-a", False),
        ({**MANAGED, "certautopilot_owner": "team-b"}, "team-a", True),
        (MANAGED, "team-a", True),
        ({"certautopilot_owner": "team-a"}, "team-a", True),
        (MANAGED, None, False),
    ],
)
def test_with_an_owner_require_managed_means_the_mark_names_it(custom, owner, refused):
    metadata = _metadata(1, managed=False, custom=custom)
    if refused:
        with pytest.raises(VaultCertError, match=f"is not marked with owner {owner}.*nothing written"):
            _plan(metadata, owner=owner)
    else:
        assert _plan(metadata, owner=owner).delete == (1,)


def test_without_an_owner_a_secret_whose_mark_names_an_owner_is_refused_unless_require_managed_is_false():
    metadata = _metadata(1, managed=False, custom={**MANAGED, "certautopilot_owner": "team-b"})
    with pytest.raises(VaultCertError, match="is owned by team-b: give owner team-b or another path; nothing written"):
        _plan(metadata)
    assert _plan(metadata, require_managed=False).delete == (1,)

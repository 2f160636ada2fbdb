# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Path checks made before any request."""

from __future__ import annotations

import pytest

from ansible_collections.certautopilot.vault.plugins.module_utils import _kv2
from ansible_collections.certautopilot.vault.plugins.module_utils._errors import (
    CasConflict,
    OutcomeUnknown,
    VaultCertError,
)


@pytest.mark.parametrize(
    "path",
    [
        "",
        "../x",
        "/x",
        "a//b",
        "x/",
        "a/./b",
        "a/..",
        "a b",
        "a\tb",
        "a\nb",
        "a\x00b",
        "a\x7fb",
        "a?b",
        "a#b",
        "a%2e",
        "x" * 1025,
    ],
)
def test_invalid_paths_are_refused_naming_the_option_never_the_path(path):
    with pytest.raises(VaultCertError) as caught:
        _kv2.validate_path(path, what="certificates[2].path")
    assert str(caught.value).startswith("invalid certificates[2].path: it ")
    assert not path or path not in str(caught.value)


@pytest.mark.parametrize("path", ["certs/example.com", "a", "certs/*.example.com", "team-a/certs/x_y-z.example"])
def test_ordinary_paths_pass(path):
    _kv2.validate_path(path)


def test_mount_is_checked_with_its_own_name():
    with pytest.raises(VaultCertError, match="invalid mount"):
        _kv2.validate_path("/secret", what="mount")


def test_scheduled_deletion_counts_as_deleted():
    state = _kv2.VersionState(deletion_time="2999-01-01T00:00:00Z")
    assert state.deleted and not state.live


def test_destroyed_version_is_not_live():
    assert not _kv2.VersionState(destroyed=True).live


def test_version_from_404_body_keeps_number_of_a_deleted_current_version():
    body = {"data": {"data": None, "metadata": {"version": 3, "deletion_time": "2026-01-01T00:00:00Z"}}}
    version = _kv2._version_from(body)
    assert version.version == 3 and version.deleted and version.data is None


def test_version_from_404_without_metadata_means_no_secret():
    assert _kv2._version_from({"errors": []}) is None


def test_deletion_in_the_future_is_scheduled_and_in_the_past_is_not():
    assert _kv2.VersionState(deletion_time="2999-01-01T00:00:00.123456789Z").deletion_scheduled
    assert not _kv2.VersionState(deletion_time="2020-01-01T00:00:00Z").deletion_scheduled
    assert not _kv2.VersionState().deletion_scheduled


def test_only_the_collections_tag_makes_a_secret_managed():
    assert _kv2.is_managed({"managed_by": "certautopilot.vault"})
    assert not _kv2.is_managed({"managed_by": "someone-else"})
    assert not _kv2.is_managed({})
    assert not _kv2.is_managed(None)


@pytest.mark.parametrize("what", ["path", "prefix", "mount"])
@pytest.mark.parametrize(
    "path", ["certs/{{lookup('pipe','id>/tmp/x')}}", "certs/{% set x = 1 %}", "certs/{#x#}", "{{x}}"]
)
def test_a_path_holding_template_syntax_is_refused_without_quoting_it(path, what):
    with pytest.raises(VaultCertError) as caught:
        _kv2.validate_path(path, what=what)
    assert str(caught.value) == f"invalid {what}: it holds template syntax ({{{{, {{% or {{#), which a path never may"


def test_the_mark_names_its_owner_and_keeps_every_other_key():
    marked = _kv2.with_mark({"owner": "alice", "managed_by": "x"}, "team-a")
    assert marked == {"owner": "alice", "managed_by": "certautopilot.vault", "certautopilot_owner": "team-a"}
    assert _kv2.is_owned_by(marked, "team-a") and not _kv2.is_owned_by(marked, "team-b")
    assert not _kv2.is_owned_by({"certautopilot_owner": "team-a"}, "team-a")
    assert _kv2.is_owned_by({"managed_by": "certautopilot.vault"}, None)
    assert _kv2.owner_of(marked) == "team-a" and _kv2.owner_of(None) is None


@pytest.mark.parametrize("owner", ["a", "team-web", "A.b_c-9", "x" * 64])
def test_a_valid_owner_passes(owner):
    _kv2.validate_owner(owner)


@pytest.mark.parametrize("owner", ["", " ", "a b", "x" * 65, "a/b", "a\n", "é", 7, True, ["a"]])
def test_an_invalid_owner_is_refused_without_its_value(owner):
    with pytest.raises(VaultCertError) as refused:
        _kv2.validate_owner(owner)
    assert str(refused.value) == (
        "owner must be 1 to 64 characters of A-Z, a-z, 0-9, '.', '_' and '-'; nothing written"
    )


# -- after a lost answer: the secret read back, or another one re-created at its path --------------

CREATED = "2026-12-06T12:00:00.123456789Z"
RECREATED = "2026-12-06T12:00:07.987654321Z"
METADATA_LOCATION = "secret/metadata/certs/example.com"


def _guard(created_time=CREATED, metadata_version=4):
    return _kv2.PurgeGuard(
        current_version=2, metadata_version=metadata_version, cas_required_before=False, created_time=created_time
    )


def _read_back(current=2, metadata_version=4, cas_required=True, created_time=CREATED):
    return _kv2.SecretMetadata(
        current_version=current,
        oldest_version=1,
        max_versions=0,
        cas_required=cas_required,
        current_metadata_version=metadata_version,
        created_time=created_time,
    )


def test_a_purge_read_back_as_gone_was_applied():
    assert _kv2.purge_landed(None, _guard(), METADATA_LOCATION) is True


@pytest.mark.parametrize("metadata_version", [4, None], ids=["metadata-cas", "no-metadata-cas"])
def test_a_purge_read_back_as_the_guarded_secret_unchanged_was_not_applied(metadata_version):
    read_back = _read_back(metadata_version=metadata_version)
    assert _kv2.purge_landed(read_back, _guard(metadata_version=metadata_version), METADATA_LOCATION) is False


def test_a_purge_read_back_with_a_version_added_under_its_guard_was_not_applied_and_keeps_the_secret():
    with pytest.raises(CasConflict, match="version 3 was written since version 2 was read; nothing destroyed"):
        _kv2.purge_landed(_read_back(current=3), _guard(), METADATA_LOCATION)


@pytest.mark.parametrize(
    ("read_back", "guard"),
    [
        # Purged, then another team's secret created at the path with the very same numbers.
        (_read_back(created_time=RECREATED), _guard()),
        (_read_back(created_time=RECREATED, metadata_version=None), _guard(metadata_version=None)),
        # Our guard set cas_required: a secret without it is not as the guard left it.
        (_read_back(cas_required=False), _guard()),
        (_read_back(metadata_version=5), _guard()),
        # A server that does not say when the secret was created cannot tell a re-created one.
        (_read_back(created_time=""), _guard(created_time="")),
    ],
    ids=["re-created", "re-created-no-metadata-cas", "cas-required-unset", "metadata-changed", "no-created-time"],
)
def test_a_purge_read_back_as_anything_but_the_guarded_secret_is_unknown_never_sent_again(read_back, guard):
    with pytest.raises(OutcomeUnknown, match="it is not sent again"):
        _kv2.purge_landed(read_back, guard, METADATA_LOCATION)


def test_a_version_write_read_back_on_a_re_created_secret_is_unknown_never_sent_again():
    with pytest.raises(OutcomeUnknown, match="purged and created anew by someone else since; the new secret was not"):
        _kv2.refuse_recreated(_read_back(created_time=RECREATED), CREATED, "PUT", "secret/destroy/certs/example.com")


def test_a_version_write_read_back_on_the_same_secret_is_judged_by_its_versions():
    _kv2.refuse_recreated(_read_back(), CREATED, "PUT", "secret/destroy/certs/example.com")

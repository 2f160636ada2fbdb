# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Choosing the rollback target from the metadata, refusing what cannot be restored."""

from __future__ import annotations

import pytest

from ansible_collections.certautopilot.vault.plugins.module_utils import _certs, _rollback
from ansible_collections.certautopilot.vault.plugins.module_utils._errors import VaultCertError
from ansible_collections.certautopilot.vault.plugins.module_utils._kv2 import SecretMetadata, VersionState
from ansible_collections.certautopilot.vault.plugins.module_utils._rollback import RollbackRequest, choose_target

LOCATION = "secret/data/certs/example.com"


def _metadata(current, *, oldest=1, deleted=(), destroyed=()):
    versions = {
        n: VersionState(deletion_time="2026-01-01T00:00:00Z" if n in deleted else "", destroyed=n in destroyed)
        for n in range(oldest, current + 1)
    }
    return SecretMetadata(current_version=current, oldest_version=oldest, max_versions=0, versions=versions)


def _target(metadata, version=None):
    return choose_target(metadata, RollbackRequest(mount="secret", path="certs/example.com", version=version), LOCATION)


def test_default_target_is_the_previous_version():
    assert _target(_metadata(3)) == 2


def test_default_target_skips_deleted_and_destroyed_versions():
    assert _target(_metadata(4, deleted={3}, destroyed={2})) == 1


def test_soft_deleted_current_version_does_not_block_rollback():
    assert _target(_metadata(3, deleted={3})) == 2


@pytest.mark.parametrize(
    ("metadata", "version", "words"),
    [
        (_metadata(1), None, "no earlier live version"),
        (_metadata(3, deleted={1, 2}), None, "no earlier live version"),
        (_metadata(3), 3, "version 3 of secret/data/certs/example.com is the current version"),
        (_metadata(3), 7, "version 7 of secret/data/certs/example.com does not exist"),
        (_metadata(3), 0, "version 0 of secret/data/certs/example.com does not exist"),
        (_metadata(5, oldest=4), 2, "version 2 of secret/data/certs/example.com was pruned"),
        (_metadata(3, deleted={1}), 1, "version 1 of secret/data/certs/example.com is deleted"),
        (_metadata(3, destroyed={1}), 1, "version 1 of secret/data/certs/example.com is destroyed"),
    ],
)
def test_unrestorable_targets_are_refused_naming_the_version(metadata, version, words):
    with pytest.raises(VaultCertError, match=words):
        _target(metadata, version)


def test_explicit_live_version_is_taken():
    assert _target(_metadata(5), 2) == 2


def test_scheduled_deletion_is_refused_as_scheduled_not_as_deleted():
    metadata = SecretMetadata(
        current_version=2,
        oldest_version=1,
        max_versions=0,
        versions={1: VersionState(deletion_time="2999-01-01T00:00:00Z"), 2: VersionState()},
    )
    with pytest.raises(VaultCertError, match="version 1 of .* is scheduled for deletion at 2999"):
        _target(metadata, 1)


# -- the custom metadata a push recorded ---------------------------------------------------------


def test_recorded_certificate_metadata_is_made_to_describe_the_restored_certificate(ec_chain, rsa_chain):
    recorded = {
        "owner": "team-a",
        **_certs.certificate_custom_metadata(_certs.certificate_info(rsa_chain.leaf.cert_pem)),
    }
    restored = _rollback.restored_custom_metadata(recorded, {"certificate": ec_chain.leaf.cert_pem})
    assert restored == {
        "owner": "team-a",
        **_certs.certificate_custom_metadata(_certs.certificate_info(ec_chain.leaf.cert_pem)),
    }


@pytest.mark.parametrize(
    ("existing", "data"),
    [
        (None, {"certificate": "x"}),
        ({"owner": "team-a"}, {"certificate": "x"}),
        ({"cn": "a", "serial": "1", "not_after": "x", "fingerprint_sha256": "f"}, {"certificate": "not PEM"}),
        ({"cn": "a", "serial": "1", "not_after": "x", "fingerprint_sha256": "f"}, {"notes": "no certificate"}),
    ],
    ids=["no-metadata", "no-certificate-record", "unreadable-certificate", "no-certificate-field"],
)
def test_metadata_without_a_certificate_record_or_a_readable_certificate_is_left_alone(existing, data):
    assert _rollback.restored_custom_metadata(existing, data) is None

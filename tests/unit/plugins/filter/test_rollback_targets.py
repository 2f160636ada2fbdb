# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rollback_targets filter: what undoes a recorded push, and what has nothing to undo."""

from __future__ import annotations

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from ansible_collections.certautopilot.vault.plugins.filter import rollback_targets as plugin

RENEWED = {"path": "certs/renewed", "changed": True, "version": 4, "previous_version": 3}
CREATED = {"path": "certs/created", "changed": True, "version": 1, "previous_version": None}
UNCHANGED = {"path": "certs/unchanged", "changed": False, "version": 2, "previous_version": 2}
METADATA_ONLY = {"path": "certs/metadata", "changed": True, "version": 5, "previous_version": 5}


def test_filter_is_registered_under_its_documented_name():
    assert plugin.FilterModule().filters() == {"rollback_targets": plugin.rollback_targets}
    assert yaml.safe_load(plugin.DOCUMENTATION)["name"] == "rollback_targets"


def test_a_renewal_goes_back_to_its_previous_version_guarded_by_the_version_it_left():
    assert plugin.rollback_targets([RENEWED]) == [{"path": "certs/renewed", "version": 3, "current_version": 4}]


def test_without_guard_no_current_version_is_set():
    assert plugin.rollback_targets([RENEWED], guard=False) == [{"path": "certs/renewed", "version": 3}]


def test_created_unchanged_and_metadata_only_pushes_have_nothing_to_undo():
    assert plugin.rollback_targets([CREATED, UNCHANGED, METADATA_ONLY, RENEWED]) == [
        {"path": "certs/renewed", "version": 3, "current_version": 4}
    ]


def test_an_item_that_is_no_push_result_rolls_back_to_the_newest_earlier_version():
    items = [{"path": "certs/a", "certificate": "-----BEGIN CERTIFICATE-----"}]
    assert plugin.rollback_targets(items) == [{"path": "certs/a"}]


@pytest.mark.parametrize("recorded", ["certs/a", [{"version": 1}], [None]])
def test_input_that_is_not_a_list_of_results_is_refused(recorded):
    with pytest.raises(AnsibleFilterError, match="list of push results"):
        plugin.rollback_targets(recorded)

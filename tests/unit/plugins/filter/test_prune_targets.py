# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The prune_targets filter: what one owner's prune retires, and which names it leaves out."""

from __future__ import annotations

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from ansible_collections.certautopilot.vault.plugins.filter import prune_targets as plugin


def entry(path: str, *, owner: str | None = "team-a", managed: bool | None = None, version: int = 3) -> dict:
    return {
        "path": path,
        "version": version,
        "owner": owner,
        "managed": owner == "team-a" if managed is None else managed,
    }


class Warnings:
    def __init__(self) -> None:
        self.shown: list[str] = []

    def warning(self, msg: str) -> None:
        self.shown.append(msg)


@pytest.fixture
def warnings(monkeypatch: pytest.MonkeyPatch) -> Warnings:
    caught = Warnings()
    monkeypatch.setattr(plugin, "display", caught)
    return caught


def test_filter_is_registered_under_its_documented_name():
    assert plugin.FilterModule().filters() == {"prune_targets": plugin.prune_targets}
    assert yaml.safe_load(plugin.DOCUMENTATION)["name"] == "prune_targets"


def test_only_this_owners_secrets_not_delivered_are_chosen_each_guarded_by_the_version_read(warnings):
    inventory = [
        entry("certs/a/kept"),
        entry("certs/a/stale", version=7),
        entry("certs/b/theirs", owner="team-b", managed=False),
        entry("certs/legacy", owner=None, managed=False),
        entry("certs/unreadable", owner=None, managed=False),
        # managed without the owner agreeing is not enough: both must say this owner.
        entry("certs/odd", owner="team-b", managed=True),
    ]

    chosen = plugin.prune_targets(inventory, owner="team-a", delivered=["certs/a/kept"])

    assert chosen == [{"path": "certs/a/stale", "current_version": 7}]
    assert warnings.shown == []


def test_a_name_that_is_not_a_valid_path_is_left_out_and_named_in_one_warning(warnings):
    inventory = [entry("certs/a/has space"), entry("certs/a/stale"), entry("certs/a/tab\there")]

    chosen = plugin.prune_targets(inventory, owner="team-a", delivered=[])

    assert chosen == [{"path": "certs/a/stale", "current_version": 3}]
    assert len(warnings.shown) == 1
    assert "2 secret(s)" in warnings.shown[0]
    assert "'certs/a/has space'" in warnings.shown[0] and "'certs/a/tab\\there'" in warnings.shown[0]


@pytest.mark.parametrize(
    ("certificates", "owner", "delivered", "message"),
    [
        ("certs", "team-a", [], "prune_targets expects the certificates of an inventory"),
        ([{"version": 1}], "team-a", [], "prune_targets expects the certificates of an inventory"),
        ([], "", [], "prune_targets needs owner"),
        ([], None, [], "prune_targets needs owner"),
        ([], "team-a", "certs/a", "prune_targets needs delivered"),
    ],
)
def test_wrong_input_is_refused_by_name(certificates, owner, delivered, message):
    with pytest.raises(AnsibleFilterError, match=message):
        plugin.prune_targets(certificates, owner=owner, delivered=delivered)

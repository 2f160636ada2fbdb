# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The expiry_metrics filter: a vault_cert_info report as Prometheus text, read back with Prometheus' own parser."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
import yaml
from ansible.errors import AnsibleFilterError
from prometheus_client.parser import text_string_to_metric_families

from ansible_collections.certautopilot.vault.plugins.filter import expiry_metrics as plugin
from ansible_collections.certautopilot.vault.plugins.module_utils._info import build_report, entry

NOT_AFTER = "2027-01-02T03:04:05Z"


def sample_report() -> dict:
    return build_report(
        [
            entry(
                "certs/a", "expiring", version=2, managed=True, cn="a.example.com", serial="0a:01", not_after=NOT_AFTER
            ),
            entry("certs/odd", "ok", version=1, cn='say "hi"\\\nnow', serial="01", not_after=NOT_AFTER),
            entry("certs/folder/", "unreadable", "permission denied"),
        ]
    )


def families(text: str) -> dict:
    return {family.name: family for family in text_string_to_metric_families(text)}


def test_filter_is_registered_under_its_documented_name():
    assert plugin.FilterModule().filters() == {"expiry_metrics": plugin.expiry_metrics}
    assert yaml.safe_load(plugin.DOCUMENTATION)["name"] == "expiry_metrics"


def test_every_secret_has_its_not_after_status_and_mark_and_the_run_its_time_and_counts():
    text = plugin.expiry_metrics(sample_report(), "secret", "certs", timestamp=1700000000)
    parsed = families(text)
    not_after = {
        s.labels["path"]: s for s in parsed["certautopilot_vault_certificate_not_after_timestamp_seconds"].samples
    }
    expected = datetime(2027, 1, 2, 3, 4, 5, tzinfo=timezone.utc).timestamp()
    assert set(not_after) == {"certs/a", "certs/odd"} and not_after["certs/a"].value == expected
    assert not_after["certs/a"].labels == {
        "mount": "secret",
        "path": "certs/a",
        "cn": "a.example.com",
        "serial": "0a:01",
    }
    # A label value with quotes, a backslash and a newline comes back as it was.
    assert not_after["certs/odd"].labels["cn"] == 'say "hi"\\\nnow'
    status = [s for s in parsed["certautopilot_vault_certificate_status"].samples if s.labels["path"] == "certs/a"]
    assert {s.labels["status"]: s.value for s in status if s.value} == {"expiring": 1.0} and len(status) == 7
    managed = {s.labels["path"]: s.value for s in parsed["certautopilot_vault_certificate_managed"].samples}
    assert managed == {"certs/a": 1.0, "certs/odd": 0.0, "certs/folder/": 0.0}
    (last,) = parsed["certautopilot_vault_inventory_last_success_timestamp_seconds"].samples
    assert last.value == 1700000000 and last.labels == {"mount": "secret", "prefix": "certs"}
    counts = {s.labels["status"]: s.value for s in parsed["certautopilot_vault_inventory_certificates"].samples}
    assert counts["expiring"] == 1 and counts["ok"] == 1 and counts["unreadable"] == 1 and sum(counts.values()) == 3


def test_every_family_is_a_gauge_with_help_and_no_name_claims_to_be_a_counter():
    parsed = families(plugin.expiry_metrics(sample_report(), "secret", "certs"))
    assert all(family.type == "gauge" and family.documentation for family in parsed.values())
    assert not any(name.endswith("_total") for name in parsed)


def test_anything_but_a_vault_cert_info_report_is_refused():
    with pytest.raises(AnsibleFilterError, match="vault_cert_info"):
        plugin.expiry_metrics({"counts": {}}, "secret", "certs")

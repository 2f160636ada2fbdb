# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The inventory as Prometheus metrics: the text exposition format node_exporter's textfile collector reads.

Private to the collection. Pure: a report of vault_cert_info in, the text of one metrics file out.
The format is Prometheus text 0.0.4 (what the textfile collector parses; it is also valid OpenMetrics
input for Prometheus' own parser apart from the missing ``# EOF``). Every series is a gauge: nothing here
counts up over the life of a process, so no name ends in ``_total``.
"""

from __future__ import annotations

import typing as t
from datetime import datetime, timezone

from ansible_collections.certautopilot.vault.plugins.module_utils._info import STATUSES

PREFIX = "certautopilot_vault_"
# The labels of a secret's series: where it is and which certificate it holds.
SECRET_LABELS = ("mount", "path", "cn", "serial")

NOT_AFTER = PREFIX + "certificate_not_after_timestamp_seconds"
STATUS = PREFIX + "certificate_status"
MANAGED = PREFIX + "certificate_managed"
LAST_SUCCESS = PREFIX + "inventory_last_success_timestamp_seconds"
CERTIFICATES = PREFIX + "inventory_certificates"

HELP = {
    NOT_AFTER: "The end of the certificate's validity (notAfter), as a Unix timestamp.",
    STATUS: "1 for the secret's status in the last inventory, 0 for every other status.",
    MANAGED: "1 when the secret carries the certautopilot.vault ownership mark (of the owner asked for), else 0.",
    LAST_SUCCESS: "When the last inventory that read the prefix completed, as a Unix timestamp.",
    CERTIFICATES: "How many secrets under the prefix had each status in the last inventory.",
}


def render(report: t.Mapping[str, t.Any], *, mount: str, prefix: str, now: datetime | None = None) -> str:
    """The metrics file for a vault_cert_info ``report`` of ``prefix`` on ``mount``, taken at ``now``."""
    now = now or datetime.now(timezone.utc)
    certificates = report.get("certificates") or []
    counts = report.get("counts") or {}
    lines: list[str] = []
    _family(lines, NOT_AFTER)
    for item in certificates:
        not_after = _timestamp(item.get("not_after"))
        if not_after is not None:
            lines.append(_sample(NOT_AFTER, _secret_labels(item, mount), not_after))
    _family(lines, STATUS)
    for item in certificates:
        labels = _secret_labels(item, mount)
        for status in STATUSES:
            lines.append(_sample(STATUS, {**labels, "status": status}, 1 if item.get("status") == status else 0))
    _family(lines, MANAGED)
    for item in certificates:
        lines.append(_sample(MANAGED, _secret_labels(item, mount), 1 if item.get("managed") else 0))
    run_labels = {"mount": mount, "prefix": prefix}
    _family(lines, LAST_SUCCESS)
    lines.append(_sample(LAST_SUCCESS, run_labels, now.timestamp()))
    _family(lines, CERTIFICATES)
    for status in STATUSES:
        lines.append(_sample(CERTIFICATES, {**run_labels, "status": status}, int(counts.get(status, 0))))
    return "\n".join(lines) + "\n"


def _family(lines: list[str], name: str) -> None:
    lines.append(f"# HELP {name} {_escape_help(HELP[name])}")
    lines.append(f"# TYPE {name} gauge")


def _secret_labels(item: t.Mapping[str, t.Any], mount: str) -> dict[str, str]:
    labels = {"mount": mount}
    for name in SECRET_LABELS[1:]:
        labels[name] = str(item.get(name) or "")
    return labels


def _sample(name: str, labels: t.Mapping[str, str], value: float) -> str:
    rendered = ",".join(f'{key}="{_escape_label(value_)}"' for key, value_ in labels.items())
    return f"{name}{{{rendered}}} {_number(value)}"


def _number(value: float) -> str:
    # Whole numbers as integers, so a timestamp reads as one and compares exactly.
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _timestamp(not_after: t.Any) -> float | None:
    """The Unix time of a summary's ``not_after`` (``2025-08-30T00:00:00Z``); None when there is none."""
    if not isinstance(not_after, str) or not not_after:
        return None
    return datetime.fromisoformat(not_after.replace("Z", "+00:00")).timestamp()


def _escape_label(value: str) -> str:
    # A secret's path or a certificate's CN may hold any of these; unescaped they would end the label.
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")

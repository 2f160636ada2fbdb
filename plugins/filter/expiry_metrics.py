# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The expiry_metrics filter: a vault_cert_info report to Prometheus metrics text."""

from __future__ import annotations

DOCUMENTATION = r"""
name: expiry_metrics
short_description: Turn a certificate inventory into Prometheus metrics
version_added: 0.2.0
author:
  - CertAutoPilot team
description:
  - Takes the result of M(certautopilot.vault.vault_cert_info) (or the C(cert_distribution_report) fact of the
    P(certautopilot.vault.cert_distribution#role) role) and returns the text of a metrics file in the Prometheus
    text exposition format, for node_exporter's textfile collector or any scraper of such files.
  - "Per secret, labelled by C(mount), C(path), C(cn) and C(serial) (empty when the secret holds no readable
    certificate): C(certautopilot_vault_certificate_not_after_timestamp_seconds), the end of the certificate's
    validity as a Unix timestamp (only for secrets with a certificate);
    C(certautopilot_vault_certificate_status), one series per status (C(ok), C(expiring), C(expired),
    C(not_yet_valid), C(invalid), C(no_certificate), C(unreadable)), 1 for the secret's status and 0 for the
    others; C(certautopilot_vault_certificate_managed), 1 when the secret carries the ownership mark."
  - "Per run, labelled by C(mount) and C(prefix): C(certautopilot_vault_inventory_last_success_timestamp_seconds),
    when this inventory completed, and C(certautopilot_vault_inventory_certificates), the number of secrets per
    status (label C(status))."
  - Every series is a gauge. Label values are escaped as the format requires; no key material is in a report, so
    none can be in the metrics.
  - Write the text with M(ansible.builtin.copy), which replaces the file atomically (a temporary file in the same
    directory, then a rename), so a scrape never reads half a file.
  - Runs on the controller; it makes no request to Vault.
options:
  _input:
    description: The result of M(certautopilot.vault.vault_cert_info), with C(certificates) and C(counts).
    type: dict
    required: true
  mount:
    description: The KV v2 mount the report was taken from (label C(mount)).
    type: str
    required: true
  prefix:
    description: The folder the report listed (label C(prefix) of the per-run series).
    type: str
    required: true
  timestamp:
    description: When the inventory completed, as a Unix timestamp; default now.
    type: float
seealso:
  - module: certautopilot.vault.vault_cert_info
"""

EXAMPLES = r"""
- name: Take the inventory
  certautopilot.vault.vault_cert_info:
    prefix: certs
  register: inventory

- name: Write the metrics for node_exporter's textfile collector
  ansible.builtin.copy:
    content: "{{ inventory | certautopilot.vault.expiry_metrics(mount='secret', prefix='certs') }}"
    dest: /var/lib/node_exporter/textfile_collector/certautopilot.prom
    mode: "0644"
"""

RETURN = r"""
_value:
  description: The metrics file's text, one sample a line, ending with a newline.
  type: str
"""

import typing as t
from datetime import datetime, timezone

from ansible.errors import AnsibleFilterError

from ansible_collections.certautopilot.vault.plugins.module_utils import _metrics


def expiry_metrics(report: t.Any, mount: str, prefix: str, timestamp: float | None = None) -> str:
    """A vault_cert_info report -> Prometheus text (see DOCUMENTATION)."""
    if not isinstance(report, t.Mapping) or not isinstance(report.get("certificates"), list):
        raise AnsibleFilterError("expiry_metrics expects the result of vault_cert_info, with a certificates list")
    now = None if timestamp is None else datetime.fromtimestamp(float(timestamp), timezone.utc)
    return _metrics.render(report, mount=str(mount), prefix=str(prefix), now=now)


class FilterModule:
    """The collection's inventory metrics filter."""

    def filters(self) -> dict[str, t.Callable[..., t.Any]]:
        return {"expiry_metrics": expiry_metrics}

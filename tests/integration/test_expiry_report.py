"""playbooks/expiry_report.yml and the role's report state against a real OpenBao: the summary file, the fact,
and failing the job after the report when a certificate expires."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path

import pytest
from cryptography import x509
from leaks import assert_no_leak
from pki import make_chain, make_leaf
from prometheus_client.parser import text_string_to_metric_families
from push_runs import approle
from role_runs import html_report

REPO = Path(__file__).resolve().parents[2]
MARK = "certautopilot.vault"
PLAYBOOK = REPO / "playbooks" / "expiry_report.yml"


def store(bao, path: str, certificate: str, key: str) -> None:
    status, body = bao.api("POST", f"secret/data/{path}", {"data": {"certificate": certificate, "private_key": key}})
    assert status == 200, body


def seeded(bao) -> tuple[str, dict[str, str]]:
    """A prefix with one certificate of each kind, and the keys stored next to them."""
    prefix = f"certs/report-{uuid.uuid4().hex[:8]}"
    now = datetime.now(timezone.utc)
    healthy = make_chain(f"ok.{prefix[6:]}.example.com", days=200)
    expiring = make_chain(f"soon.{prefix[6:]}.example.com", days=10)
    expired = make_leaf(
        healthy.intermediate,
        f"old.{prefix[6:]}.example.com",
        not_before=now - timedelta(days=60),
        not_after=now - timedelta(days=1),
    )
    keys = {}
    for name, leaf in (("ok", healthy.leaf), ("soon", expiring.leaf), ("team/old", expired)):
        store(bao, f"{prefix}/{name}", leaf.cert_pem, leaf.key_pem)
        keys[name] = leaf.key_pem
    return prefix, keys


def test_the_report_is_written_then_the_job_fails_for_what_expires(bao, ansible, vault_conn, tmp_path):
    prefix, keys = seeded(bao)
    login = {**vault_conn, **approle(bao)}
    summary = tmp_path / "expiry.md"
    mark = bao.audit_mark()

    run = ansible.run_playbook(
        PLAYBOOK,
        extra_vars={
            "cert_distribution_vault": login,
            "expiry_report_prefix": prefix,
            "expiry_report_days": 30,
            "expiry_report_file": str(summary),
        },
    )

    assert run.rc != 0, run.output
    assert f"2 certificate(s) expired or expiring within 30 days: {prefix}/team/old, {prefix}/soon" in run.output
    text = summary.read_text()
    assert f"3 secret(s) under `secret/{prefix}`" in text
    assert f"| {prefix}/ok | ok |" in text and f"| {prefix}/soon | expiring |" in text
    assert f"| {prefix}/team/old | expired |" in text
    assert "| expired | 1 |" in text and "| expiring | 1 |" in text and "| ok | 1 |" in text
    writes = [r for r in bao.audit_requests(mark) if r["request"]["operation"] in ("create", "update", "delete")]
    assert [r["request"]["path"] for r in writes] == ["auth/approle/login", "auth/token/revoke-self"]
    assert_no_leak([run.output, text], login["secret_id"], *keys.values())


def test_the_metrics_file_matches_the_server_and_is_written_before_the_job_fails(bao, ansible, vault_conn, tmp_path):
    prefix, keys = seeded(bao)
    # Five days left, with a name that needs escaping in a label value.
    five_days = make_chain(f'five"\\days.{prefix[6:]}.example.com', sans=["five.example.com"], days=5).leaf
    store(bao, f"{prefix}/five", five_days.cert_pem, five_days.key_pem)
    status, body = bao.api("POST", f"secret/metadata/{prefix}/ok", {"custom_metadata": {"managed_by": MARK}})
    assert status in (200, 204), body
    login = {**vault_conn, **approle(bao)}
    metrics_file = tmp_path / "textfile" / "certautopilot.prom"
    metrics_file.parent.mkdir()
    started = datetime.now(timezone.utc).timestamp()

    run = ansible.run_playbook(
        PLAYBOOK,
        extra_vars={
            "cert_distribution_vault": login,
            "expiry_report_prefix": prefix,
            "expiry_report_metrics_file": str(metrics_file),
        },
    )

    assert run.rc != 0 and "3 certificate(s) expired or expiring" in run.output, run.output
    text = metrics_file.read_text()
    samples = {family.name: family.samples for family in text_string_to_metric_families(text)}
    expected_status = {"ok": "ok", "soon": "expiring", "five": "expiring", "team/old": "expired"}
    not_after = {s.labels["path"]: s for s in samples["certautopilot_vault_certificate_not_after_timestamp_seconds"]}
    assert set(not_after) == {f"{prefix}/{name}" for name in expected_status}
    for name, status_name in expected_status.items():
        path = f"{prefix}/{name}"
        stored = x509.load_pem_x509_certificate(bao.kv_data(path)["certificate"].encode())
        sample = not_after[path]
        assert sample.value == stored.not_valid_after_utc.timestamp()
        assert sample.labels == {
            "mount": "secret",
            "path": path,
            "cn": stored.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value,
            "serial": ":".join(f"{byte:02x}" for byte in stored.serial_number.to_bytes(20, "big").lstrip(b"\0")),
        }
        states = {
            s.labels["status"]: s.value
            for s in samples["certautopilot_vault_certificate_status"]
            if s.labels["path"] == path
        }
        assert states == {**dict.fromkeys(states, 0.0), status_name: 1.0} and len(states) == 7
    managed = {s.labels["path"]: s.value for s in samples["certautopilot_vault_certificate_managed"]}
    assert managed == {f"{prefix}/{name}": float(name == "ok") for name in expected_status}
    counts = {s.labels["status"]: s.value for s in samples["certautopilot_vault_inventory_certificates"]}
    assert counts == {**dict.fromkeys(counts, 0.0), "ok": 1.0, "expiring": 2.0, "expired": 1.0}
    (last_success,) = samples["certautopilot_vault_inventory_last_success_timestamp_seconds"]
    assert last_success.labels == {"mount": "secret", "prefix": prefix}
    assert started <= last_success.value <= datetime.now(timezone.utc).timestamp()
    assert all(family.type == "gauge" for family in text_string_to_metric_families(text))
    assert list(metrics_file.parent.iterdir()) == [metrics_file]
    assert_no_leak([run.output, text], login["secret_id"], *keys.values(), five_days.key_pem)


@pytest.fixture(scope="module")
def never_failing_report(bao, ansible, vault_conn, tmp_path_factory):
    """The playbook with fail_on never over a seeded prefix, its HTML summary written: the prefix, the keys stored
    there, the login, the page and the run."""
    prefix, keys = seeded(bao)
    login = {**vault_conn, **approle(bao)}
    page = tmp_path_factory.mktemp("html") / "expiry.html"
    return prefix, keys, login, page, html_report(ansible, login, prefix, page)


def test_only_expired_certificates_fail_the_job_with_fail_on_expired(bao, ansible, vault_conn, never_failing_report):
    prefix, _keys, _login, _page, never = never_failing_report
    base = {"cert_distribution_vault": {**vault_conn, **approle(bao)}, "expiry_report_prefix": prefix}

    expired_only = ansible.run_playbook(PLAYBOOK, extra_vars={**base, "expiry_report_fail_on": "expired"})

    assert expired_only.rc != 0 and f"1 certificate(s) expired: {prefix}/team/old" in expired_only.output
    assert never.rc == 0, never.output


def test_the_role_sets_the_report_fact_even_when_fail_on_fails_it(bao, ansible, vault_conn, tmp_path):
    prefix, _keys = seeded(bao)
    playbook = tmp_path / "site.yml"
    facts = tmp_path / "facts.json"
    role = {
        "ansible.builtin.include_role": {"name": "certautopilot.vault.cert_distribution"},
        "vars": {
            "cert_distribution_state": "report",
            "cert_distribution_report_prefix": prefix,
            "cert_distribution_fail_on": "expired",
        },
    }
    record = {
        "ansible.builtin.copy": {
            "dest": str(facts),
            "content": "{{ {'report': cert_distribution_report, 'failed': ansible_failed_result.msg} | to_json }}",
            "mode": "0600",
        }
    }
    play = {"hosts": "localhost", "connection": "local", "gather_facts": False}
    playbook.write_text(json.dumps([{**play, "tasks": [{"block": [role], "rescue": [record]}]}]))

    run = ansible.run_playbook(playbook, extra_vars={"cert_distribution_vault": {**vault_conn, **approle(bao)}})

    recorded = json.loads(facts.read_text())
    assert run.rc == 0, run.output
    assert recorded["report"]["expired"] == [f"{prefix}/team/old"]
    assert recorded["report"]["expiring"] == [f"{prefix}/soon"]
    assert recorded["report"]["counts"] == {
        **dict.fromkeys(recorded["report"]["counts"], 0),
        "ok": 1,
        "expiring": 1,
        "expired": 1,
    }
    assert "expired" in recorded["failed"]
    assert not any("private_key" in entry or "BEGIN" in str(entry) for entry in recorded["report"]["certificates"])


def test_the_html_summary_has_a_row_per_secret_and_its_counts(never_failing_report):
    prefix, keys, login, page, run = never_failing_report

    assert run.rc == 0, run.output
    rows = html_rows(page.read_text())
    assert [row[:2] for row in rows if row and row[0].startswith(prefix)] == [
        [f"{prefix}/ok", "ok"],
        [f"{prefix}/soon", "expiring"],
        [f"{prefix}/team/old", "expired"],
    ]
    assert ["expired", "1"] in rows and ["expiring", "1"] in rows and ["ok", "1"] in rows
    assert_no_leak([run.output, page.read_text()], login["secret_id"], *keys.values())


def html_rows(text: str) -> list[list[str]]:
    """The text of each table row's cells, as a browser would show them."""

    class Rows(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.rows: list[list[str]] = []
            self.cell: list[str] | None = None

        def handle_starttag(self, tag: str, attrs: list) -> None:
            if tag == "tr":
                self.rows.append([])
            elif tag == "td":
                self.cell = []

        def handle_endtag(self, tag: str) -> None:
            if tag == "td" and self.cell is not None:
                self.rows[-1].append("".join(self.cell))
                self.cell = None

        def handle_data(self, data: str) -> None:
            if self.cell is not None:
                self.cell.append(data)

    parser = Rows()
    parser.feed(text)
    return parser.rows

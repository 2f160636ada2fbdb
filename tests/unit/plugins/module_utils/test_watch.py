# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a watch reports between two inventories (_watch.changes), its state file, its back-off and its options."""

from __future__ import annotations

import json

import pytest

from ansible_collections.certautopilot.vault.plugins.module_utils import _watch
from ansible_collections.certautopilot.vault.plugins.module_utils._errors import VaultCertError
from ansible_collections.certautopilot.vault.plugins.module_utils._info import entry


def line(path: str, status: str, version: int | None = 1, **found) -> dict:
    return entry(path, status, version=version, **{"cn": path.rsplit("/", 1)[-1], **found})


def kinds(events: list[dict]) -> list[tuple[str, str]]:
    return [(event["type"], event["path"]) for event in events]


def test_a_first_poll_without_memory_reports_what_is_already_expiring_or_expired_and_nothing_else():
    entries = [line("a", "ok"), line("b", "expiring"), line("c", "expired"), line("d", "unreadable", None)]
    assert kinds(_watch.changes("secret", None, entries)) == [("expiring", "b"), ("expired", "c")]


def test_a_certificate_that_stays_expiring_is_not_reported_again():
    before = _watch.remembered([line("b", "expiring")])
    assert _watch.changes("secret", before, [line("b", "expiring")]) == []


def test_entering_expiring_then_expired_then_unreadable_is_one_event_each():
    ok, expiring, expired = line("b", "ok"), line("b", "expiring"), line("b", "expired")
    unreadable = line("b", "unreadable", None)
    steps = [(ok, expiring), (expiring, expired), (expired, unreadable)]
    reported = [kinds(_watch.changes("secret", _watch.remembered([old]), [new])) for old, new in steps]
    assert reported == [[("expiring", "b")], [("expired", "b")], [("unreadable", "b")]]


def test_a_new_version_is_one_event_even_when_its_status_changed_too():
    events = _watch.changes("kv", _watch.remembered([line("b", "expiring", 3)]), [line("b", "ok", 4)])
    assert kinds(events) == [("version_changed", "b")]
    assert events[0]["previous_version"] == 3 and events[0]["version"] == 4 and events[0]["mount"] == "kv"


def test_a_secret_that_becomes_readable_again_is_no_version_change():
    before = _watch.remembered([line("b", "unreadable", None)])
    assert _watch.changes("secret", before, [line("b", "ok", 2)]) == []


def test_a_new_secret_already_expiring_is_reported_and_a_healthy_one_is_not():
    before = _watch.remembered([line("a", "ok")])
    entries = [line("a", "ok"), line("new", "expiring"), line("fine", "ok")]
    assert kinds(_watch.changes("secret", before, entries)) == [("expiring", "new")]


def test_an_event_holds_only_the_report_keys_of_the_secret():
    (event,) = _watch.changes("secret", None, [line("b", "expired", private_key="x")])
    assert set(event) == {"type", "mount", *_watch.EVENT_KEYS}


def test_the_state_file_is_replaced_whole_and_read_back(tmp_path):
    state = tmp_path / "state.json"
    seen = _watch.remembered([line("a", "ok", 2)])
    _watch.save_state(str(state), mount="secret", seen=seen, consistency_index="c2VlbiBpbmRleA==")
    assert _watch.load_state(str(state), mount="secret") == (seen, "c2VlbiBpbmRleA==")
    assert _watch.load_state(str(state), mount="other") is None
    assert _watch.load_state(str(tmp_path / "missing.json"), mount="secret") is None
    assert [path.name for path in tmp_path.iterdir()] == ["state.json"]


@pytest.mark.parametrize("text", ["not json", json.dumps([1]), json.dumps({"format": 99, "seen": {}})])
def test_a_state_file_that_is_not_a_watch_state_is_refused_without_quoting_it(tmp_path, text):
    state = tmp_path / "state.json"
    state.write_text(text)
    with pytest.raises(VaultCertError, match="state_file") as raised:
        _watch.load_state(str(state), mount="secret")
    assert text not in str(raised.value)


def test_the_wait_doubles_for_each_failed_poll_up_to_its_ceiling(monkeypatch):
    monkeypatch.setenv("VAULT_ADDR", "https://127.0.0.1:8200")
    watch = _watch.watch_from_args({"auth_method": "token", "token": "t0k", "prefix": "certs", "interval": 10})
    waits = []
    for down in range(7):
        watch.down_polls = down
        waits.append(watch.wait())
    assert waits == [10, 20, 40, 80, 160, 300, 300]


def test_options_are_checked_like_a_module_s_and_a_refusal_never_quotes_a_secret(monkeypatch):
    monkeypatch.delenv("VAULT_ADDR", raising=False)
    secret = "s3cr3t-value-42"
    with pytest.raises(VaultCertError) as raised:
        _watch.watch_from_args({"url": "https://v:8200", "secret_id": secret, "role_id": "r", "interval": secret})
    assert "interval" in str(raised.value) and secret not in str(raised.value)
    with pytest.raises(VaultCertError, match="fail_on"):
        _watch.watch_from_args({"url": "https://v:8200", "token": "x", "auth_method": "token", "fail_on": "never"})
    with pytest.raises(VaultCertError, match="interval must be a positive"):
        _watch.watch_from_args(
            {"url": "https://v:8200", "token": "x", "auth_method": "token", "prefix": "c", "interval": 0}
        )


@pytest.mark.parametrize("field", ["path", "cn", "sans", "reason"])
def test_a_field_holding_template_syntax_is_withheld_from_the_event(field):
    """Events reach playbooks as extra variables, which Ansible renders: whoever can write under the prefix
    (a secret's name, a certificate's CN) must not be able to put a template there."""
    values = {"path": "certs/{{ 7 * 191 }}", "cn": "{% raw %}x", "sans": ["a.example.com", "{#x#}"], "reason": "{{x}}"}
    found = {key: value for key, value in values.items() if key == field and key != "path"} or {"cn": "a.example.com"}
    path = values["path"] if field == "path" else "certs/a"
    (event,) = _watch.changes("secret", None, [line(path, "expired", **found)])
    assert event[field] is None and event["withheld"] == [field]
    assert event["status"] == "expired" and event["type"] == "expired"


def test_a_watch_warns_once_when_credentials_would_cross_the_network_in_clear(monkeypatch):
    logged: list[str] = []
    args = {"url": "http://127.0.0.1:8200", "auth_method": "token", "token": "t0k", "prefix": "certs"}
    _watch.watch_from_args(args, log=logged.append)
    assert len(logged) == 1 and "plain http://" in logged[0] and "t0k" not in logged[0]

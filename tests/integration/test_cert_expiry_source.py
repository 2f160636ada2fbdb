"""The event source certautopilot.vault.cert_expiry: its main(queue, args), loaded the way ansible-rulebook loads
it (by file path, from the installed collection), against the real OpenBao server."""

from __future__ import annotations

import asyncio
import json
import runpy
import time
import typing as t
import uuid
from datetime import datetime, timedelta, timezone

from fault_proxy import FaultProxy
from leaks import assert_no_leak
from pki import make_chain, make_leaf
from rulebook import RulebookRun

SOURCE = "ansible_collections/certautopilot/vault/extensions/eda/plugins/event_source/cert_expiry.py"
INTERVAL = 0.3
# No event for this long (several polls) means the source has nothing more to say.
QUIET = 6 * INTERVAL


def store(bao, path: str, certificate: str, key: str) -> None:
    status, body = bao.api("POST", f"secret/data/{path}", {"data": {"certificate": certificate, "private_key": key}})
    assert status == 200, body


def seeded(bao) -> tuple[str, list[str]]:
    """A prefix with a healthy, an expiring (5 days) and an expired certificate; and their keys."""
    prefix = f"certs/watch-{uuid.uuid4().hex[:8]}"
    healthy = make_chain(f"ok.{prefix[6:]}.example.com", days=200)
    expiring = make_chain(f"five.{prefix[6:]}.example.com", days=5)
    now = datetime.now(timezone.utc)
    expired = make_leaf(
        healthy.intermediate,
        f"old.{prefix[6:]}.example.com",
        not_before=now - timedelta(days=60),
        not_after=now - timedelta(days=1),
    )
    for name, leaf in (("ok", healthy.leaf), ("five", expiring.leaf), ("old", expired)):
        store(bao, f"{prefix}/{name}", leaf.cert_pem, leaf.key_pem)
    return prefix, [healthy.leaf.key_pem, expiring.leaf.key_pem, expired.key_pem]


class Source:
    """The plugin's main() running as a task, with the events it has put on its queue."""

    def __init__(self, ansible, args: dict[str, t.Any]) -> None:
        self.main = runpy.run_path(str(ansible.collections_path / SOURCE))["main"]
        self.args = {"interval": INTERVAL, "retries": 0, "timeout": 5, **args}
        self.queue: asyncio.Queue = asyncio.Queue()
        self.task: asyncio.Task | None = None
        self.seen: list[dict[str, t.Any]] = []

    async def __aenter__(self) -> Source:
        self.task = asyncio.create_task(self.main(self.queue, self.args))
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self.task is not None
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)

    async def events(self, *, quiet: float = QUIET) -> list[dict[str, t.Any]]:
        """The events that arrive until the source has been quiet for ``quiet`` seconds."""
        events = []
        while True:
            try:
                event = await asyncio.wait_for(self.queue.get(), quiet)
            except asyncio.TimeoutError:
                assert self.task is not None and not self.task.done(), self.task.exception()
                self.seen += events
                return events
            assert set(event) == {"cert_expiry"}, event
            events.append(event["cert_expiry"])


def summary(events: list[dict[str, t.Any]]) -> list[tuple[str, str | None]]:
    return sorted((event["type"], event.get("path")) for event in events)


def test_a_certificate_is_reported_once_as_it_expires_and_its_renewal_once_as_a_new_version(
    bao, ansible, vault_conn, approle_auth
):
    prefix, keys = seeded(bao)
    renewed = make_chain(f"five.{prefix[6:]}.example.com", days=200).leaf
    mark = bao.audit_mark()

    async def scenario() -> list[list[dict[str, t.Any]]]:
        async with Source(ansible, {**vault_conn, **approle_auth, "prefix": prefix}) as source:
            first = await source.events()
            store(bao, f"{prefix}/five", renewed.cert_pem, renewed.key_pem)
            after_renewal = await source.events()
            return [first, after_renewal, source.seen]

    first, after_renewal, everything = asyncio.run(scenario())

    assert summary(first) == [("expired", f"{prefix}/old"), ("expiring", f"{prefix}/five")]
    (expiring,) = [event for event in first if event["type"] == "expiring"]
    assert expiring["mount"] == "secret" and expiring["version"] == 1 and expiring["status"] == "expiring"
    assert expiring["cn"] == f"five.{prefix[6:]}.example.com" and expiring["days_left"] in (4, 5)
    assert expiring["not_after"].endswith("Z") and expiring["sans"] == [expiring["cn"]]
    assert summary(after_renewal) == [("version_changed", f"{prefix}/five")]
    assert after_renewal[0]["previous_version"] == 1 and after_renewal[0]["version"] == 2
    assert after_renewal[0]["status"] == "ok"
    # One login per poll, each token revoked when its poll is done.
    requests = [r["request"]["path"] for r in bao.audit_requests(mark)]
    logins = requests.count("auth/approle/login")
    assert logins >= 4 and requests.count("auth/token/revoke-self") == logins
    assert_no_leak([repr(everything)], approle_auth["secret_id"], *keys, renewed.key_pem)


def test_a_state_file_carries_what_was_reported_across_a_restart(bao, ansible, vault_conn, approle_auth, tmp_path):
    prefix, _keys = seeded(bao)
    state_file = tmp_path / "cert_expiry.json"
    args = {**vault_conn, **approle_auth, "prefix": prefix}

    async def run_once(extra: dict[str, t.Any]) -> list[dict[str, t.Any]]:
        async with Source(ansible, {**args, **extra}) as source:
            return await source.events()

    first = asyncio.run(run_once({"state_file": str(state_file)}))
    restarted = asyncio.run(run_once({"state_file": str(state_file)}))
    store(bao, f"{prefix}/ok", *_fresh_pair(prefix))
    after_a_write = asyncio.run(run_once({"state_file": str(state_file)}))
    without_state = asyncio.run(run_once({}))

    assert summary(first) == [("expired", f"{prefix}/old"), ("expiring", f"{prefix}/five")]
    assert restarted == []
    assert summary(after_a_write) == [("version_changed", f"{prefix}/ok")]
    assert summary(without_state) == summary(first)
    assert "BEGIN" not in state_file.read_text() and prefix in state_file.read_text()


def _fresh_pair(prefix: str) -> tuple[str, str]:
    leaf = make_chain(f"ok.{prefix[6:]}.example.com", days=300).leaf
    return leaf.cert_pem, leaf.key_pem


def test_a_server_that_goes_away_is_one_event_and_its_return_one_more(bao, ansible, approle_auth):
    prefix, _keys = seeded(bao)
    with FaultProxy(bao.addr, bao.ca_cert) as proxy:

        async def scenario() -> list[list[dict[str, t.Any]]]:
            async with Source(ansible, {"url": proxy.url, **approle_auth, "prefix": prefix}) as source:
                first = await source.events()
                # Three polls in a row find the server refusing (sealed, restarting), then it answers again.
                proxy.add_rule("POST", r"^auth/approle/login$", status=503, times=3)
                # The source backs off while the server is down (0.6, 1.2 and 2.4 s here).
                outage = await source.events(quiet=5)
                # Then it is gone for good: one more event, however many polls fail after it.
                proxy.die()
                stopped = await source.events()
                return [first, outage, stopped]

        first, outage, stopped = asyncio.run(scenario())

    assert summary(first) == [("expired", f"{prefix}/old"), ("expiring", f"{prefix}/five")]
    assert [event["type"] for event in outage] == ["vault_unavailable", "vault_available"]
    assert "503" in outage[0]["reason"]
    assert [event["type"] for event in stopped] == ["vault_unavailable"]
    assert proxy.url.split("//")[1] in stopped[0]["reason"]


def test_the_example_rulebook_runs_its_playbook_once_per_expiring_certificate_and_renders_no_event_text(
    bao, ansible, vault_conn, approle_auth, tmp_path
):
    prefix = f"certs/rulebook-{uuid.uuid4().hex[:8]}"
    soon = make_chain(f"soon.{prefix[6:]}.example.com", days=5).leaf
    healthy = make_chain(f"ok.{prefix[6:]}.example.com", days=200).leaf
    store(bao, f"{prefix}/soon", soon.cert_pem, soon.key_pem)
    store(bao, f"{prefix}/ok", healthy.cert_pem, healthy.key_pem)
    # A second team's secrets under the same prefix, with template syntax where a playbook would render it:
    # in a certificate's CN, and in a secret's name (OpenBao takes both).
    hostile_cn = make_chain("{{ 7 * 191 }}.example.com", sans=["cn.example.com"], days=5).leaf
    store(bao, f"{prefix}/hostile-cn", hostile_cn.cert_pem, hostile_cn.key_pem)
    hostile_name = make_chain("name.example.com", days=5).leaf
    store(bao, f"{prefix}/{{{{ 7 * 191 }}}}.example.com", hostile_name.cert_pem, hostile_name.key_pem)
    runs = tmp_path / "runs"
    runs.mkdir()
    renew = tmp_path / "renew.yml"
    renew.write_text(RENEW_PLAYBOOK.replace("RUNS", str(runs)))
    variables = tmp_path / "vars.yml"
    variables.write_text(
        json.dumps(
            {
                "renew_playbook": str(renew),
                "cert_expiry_prefix": prefix,
                "cert_expiry_interval": 1,
            }
        )
    )
    rulebook = RulebookRun(ansible, tmp_path)
    # The credentials travel as an EDA controller's credential injects them: in the environment.
    environment = {
        "VAULT_ADDR": vault_conn["url"],
        "VAULT_CACERT": vault_conn["ca_cert"],
        "VAULT_AUTH_METHOD": "approle",
        "VAULT_ROLE_ID": approle_auth["role_id"],
        "VAULT_SECRET_ID": approle_auth["secret_id"],
    }

    with rulebook.started(variables, environment):
        rulebook.wait_for(lambda: len([path for path in runs.iterdir() if path.read_text()]) >= 3)
        # Several more polls: the certificates stay expiring, so nothing runs again.
        time.sleep(5)
        rulebook.wait_for(lambda: all(path.read_text() for path in runs.iterdir()))
        recorded = sorted(path.read_text() for path in runs.iterdir())

    days = "4" if any(" expiring 4 " in run for run in recorded) else "5"
    assert recorded == sorted(
        [
            f"{prefix}/soon expiring {days} soon.{prefix[6:]}.example.com withheld ",
            # The templates were withheld from the events, never rendered ("1337"): the fields are null.
            f"{prefix}/hostile-cn expiring {days} None withheld cn",
            f" expiring {days} name.example.com withheld path",
        ]
    ), rulebook.log()
    assert days in ("4", "5")
    keys = (soon.key_pem, healthy.key_pem, hostile_cn.key_pem, hostile_name.key_pem)
    assert_no_leak([rulebook.log()], approle_auth["secret_id"], *keys)


# What a renewal playbook gets: the event, as ansible_eda.event. This one records each run in its own file.
RENEW_PLAYBOOK = """\
- name: Renew one certificate
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Make a file for this run
      ansible.builtin.tempfile:
        path: RUNS
      register: run_file
    - name: Record which certificate it was for
      ansible.builtin.copy:
        dest: "{{ run_file.path }}"
        content: >-
          {{ ansible_eda.event.cert_expiry.path }} {{ ansible_eda.event.cert_expiry.type }}
          {{- ' ' ~ ansible_eda.event.cert_expiry.days_left ~ ' ' ~ ansible_eda.event.cert_expiry.cn }}
          {{- ' withheld ' ~ ansible_eda.event.cert_expiry.withheld | default([]) | join(',') }}
        mode: "0600"
"""

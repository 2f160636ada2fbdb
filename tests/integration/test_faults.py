"""Faults between the collection and the server: injected 5xx answers, lost answers, a server that
goes away, a listener that never answers, a sealed server, an expiring token, TLS failures.

Faults come from tests/support/fault_proxy.py: a reverse proxy on loopback that answers some
requests itself, from threads of this process, while the module runs in it (the `modules` fixture).
The scenarios that share the session server run once, in order, in a module-scoped fixture; each
test then checks one scenario's result and the server. Sealing and token expiry happen on a
throwaway server of this file, never on the session one.
"""

from __future__ import annotations

import time
import typing as t
import uuid
from pathlib import Path

import pytest
from bao import BaoServer, ProvisionedBao
from fault_proxy import BlackHole, FaultProxy
from identities import CertificateAuthority
from module_call import ModuleCall
from pki import Chain, make_chain
from push_runs import approle

PUSH = "vault_cert_push"
ROLLBACK = "vault_cert_rollback"
RUN = uuid.uuid4().hex[:8]

BLACK_HOLE_TIMEOUT = 2
BLACK_HOLE_RETRIES = 1
# The module's own work around its requests (argument checks, building the client) on a busy
# 2-core machine; the waits are what the bound is about.
RUN_OVERHEAD = 3.0


# -- helpers ------------------------------------------------------------------------------------


def item(path: str, chain: Chain) -> dict[str, str]:
    return {
        "path": path,
        "certificate": chain.leaf.cert_pem,
        "private_key": chain.leaf.key_pem,
        "chain": chain.chain_pem,
    }


def outcome(run) -> dict[str, t.Any]:
    """A run's result as a test reads it: ``failed`` always there."""
    return {**run.result, "failed": run.failed}


def assert_written_once(server: BaoServer, path: str, chain: Chain) -> None:
    """The secret has exactly one version, holding this certificate and key."""
    assert set(server.kv_versions("secret", path)) == {"1"}, path
    status, body = server.api("GET", f"secret/data/{path}")
    assert status == 200, body
    data = body["data"]["data"]
    assert data["certificate"] == chain.leaf.cert_pem, path
    assert data["private_key"] == chain.leaf.key_pem, path


def assert_absent(server: BaoServer, path: str) -> None:
    assert server.kv_versions("secret", path) == {}, f"{path} was written"


def forwarded(proxy: FaultProxy, method: str, path: str) -> int:
    return sum(1 for hit in proxy.hits(method, f"^{path}$") if hit.forwarded)


# -- the scenarios that run against the session server ------------------------------------------


class SharedRun:
    """One in-process run per scenario, in order, and what each scenario needs to check it."""

    def __init__(self, bao: ProvisionedBao, workdir: Path) -> None:
        self.bao = bao
        self.workdir = workdir
        self.base = f"certs/faults-{RUN}"
        self.write_proxy = FaultProxy(bao.addr, bao.ca_cert)
        self.login_proxy = FaultProxy(bao.addr, bao.ca_cert)
        self.dying_proxy = FaultProxy(bao.addr, bao.ca_cert)
        self.dying_rollback_proxy = FaultProxy(bao.addr, bao.ca_cert)
        self.tls_ca = CertificateAuthority("certautopilot faults test CA")
        server_identity = self.tls_ca.issue_server("vault.elsewhere.example")
        cert_file, key_file = workdir / "elsewhere.pem", workdir / "elsewhere-key.pem"
        cert_file.write_text(server_identity.cert_pem)
        key_file.write_text(server_identity.key_pem)
        self.tls_proxy = FaultProxy(bao.addr, bao.ca_cert, tls_cert=str(cert_file), tls_key=str(key_file))
        self.black_hole = BlackHole()
        self.stopped_addr = self._stopped_server_addr(workdir / "stopped")
        self.chains: dict[str, Chain] = {}
        self.results: dict[str, dict[str, t.Any]] = {}
        self.black_hole_seconds = 0.0

    def close(self) -> None:
        for proxy in (self.write_proxy, self.login_proxy, self.dying_proxy, self.dying_rollback_proxy, self.tls_proxy):
            proxy.close()
        self.black_hole.close()

    @staticmethod
    def _stopped_server_addr(workdir: Path) -> str:
        server = BaoServer.start_dev(workdir, audit=False)
        server.stop()
        return server.addr

    def path(self, name: str) -> str:
        return f"{self.base}-{name}"

    def chain(self, name: str) -> Chain:
        if name not in self.chains:
            self.chains[name] = make_chain(f"{name}.faults.example.com")
        return self.chains[name]

    def _inject(self) -> None:
        bao = self.bao
        # Write faults, one path each: refused twice before reaching the server; 500 before
        # reaching it; 500 after it was applied (answer lost); reads refused, then the write's
        # answer lost.
        self.write_proxy.add_rule("POST", f"^secret/data/{self.path('refused-503')}$", status=503, times=2)
        self.write_proxy.add_rule("POST", f"^secret/data/{self.path('refused-500')}$", status=500)
        self.write_proxy.add_rule("POST", f"^secret/data/{self.path('lost-500')}$", status=500, after_forward=True)
        self.write_proxy.add_rule("GET", f"^secret/data/{self.path('read-503')}$", status=503, times=2)
        self.write_proxy.add_rule("POST", f"^secret/data/{self.path('read-503')}$", status=502, after_forward=True)
        # A rollback whose answer is lost.
        bao.api("POST", f"secret/data/{self.path('rollback')}", {"data": {"generation": "one"}})
        bao.api("POST", f"secret/data/{self.path('rollback')}", {"data": {"generation": "two"}})
        self.write_proxy.add_rule("POST", f"^secret/data/{self.path('rollback')}$", status=502, after_forward=True)
        # The server goes away while a rollback is being written.
        for generation in ("one", "two"):
            bao.api("POST", f"secret/data/{self.path('rollback-gone')}", {"data": {"generation": generation}})
        self.dying_rollback_proxy.add_rule(
            "POST", f"^secret/data/{self.path('rollback-gone')}$", action=self.dying_rollback_proxy.die, drop=True
        )
        # Logins are never retried once answered.
        self.login_proxy.add_rule("POST", "^auth/approle/login$", status=503, times=None)
        # The server goes away while the 5th of 8 certificates is being written.
        self.dying_proxy.add_rule(
            "POST", f"^secret/data/{self.base}-gone-", skip=4, action=self.dying_proxy.die, drop=True
        )

    def run(self, modules: ModuleCall) -> None:
        bao = self.bao
        self._inject()

        def scenario(name: str, module: str, args: dict[str, t.Any]) -> None:
            self.results[name] = outcome(modules.run_module(module, args))

        via_proxy = {**approle(bao), "url": self.write_proxy.url}
        gone = [item(self.path(f"gone-{n}"), self.chain(f"gone-{n}")) for n in range(1, 9)]
        written = ("refused-503", "refused-500", "lost-500", "read-503")
        scenario(
            "write faults",
            PUSH,
            {**via_proxy, "retries": 3, "certificates": [item(self.path(name), self.chain(name)) for name in written]},
        )
        scenario(
            "rollback answer lost",
            ROLLBACK,
            {**approle(bao), "url": self.write_proxy.url, "retries": 3, "path": self.path("rollback"), "version": 1},
        )
        scenario(
            "rollback server gone",
            ROLLBACK,
            {
                **approle(bao),
                "url": self.dying_rollback_proxy.url,
                "retries": 1,
                "path": self.path("rollback-gone"),
                "version": 1,
            },
        )
        scenario(
            "login answered 503",
            PUSH,
            {**approle(bao), "url": self.login_proxy.url, **item(self.path("login"), self.chain("login"))},
        )
        scenario(
            "server gone mid-batch",
            PUSH,
            {**approle(bao), "url": self.dying_proxy.url, "retries": 2, "certificates": gone, "concurrency": 1},
        )
        scenario(
            "rerun after server came back",
            PUSH,
            {**approle(bao), "url": bao.addr, "ca_cert": bao.ca_cert, "certificates": gone},
        )
        scenario(
            "server stopped",
            PUSH,
            {
                "url": self.stopped_addr,
                "ca_cert": bao.ca_cert,
                "auth_method": "token",
                "token": "not-a-real-token",
                "retries": 1,
                **item(self.path("stopped"), self.chain("stopped")),
            },
        )
        black_hole = {
            "url": self.black_hole.url,
            "auth_method": "token",
            "token": "not-a-real-token",
            "timeout": BLACK_HOLE_TIMEOUT,
            "retries": BLACK_HOLE_RETRIES,
            **item(self.path("black-hole"), self.chain("black-hole")),
        }
        started = time.monotonic()
        scenario("black hole", PUSH, black_hole)
        self.black_hole_seconds = time.monotonic() - started
        scenario(
            "tls name mismatch",
            PUSH,
            {
                **approle(bao),
                "url": self.tls_proxy.url,
                "ca_cert": self.tls_ca.cert_pem,
                **item(self.path("tls-name"), self.chain("tls-name")),
            },
        )
        self.audit_mark = bao.audit_mark()
        scenario(
            "tls unknown ca",
            PUSH,
            {
                **approle(bao),
                "url": bao.addr,
                "ca_cert": self.tls_ca.cert_pem,
                **item(self.path("tls-ca"), self.chain("tls-ca")),
            },
        )


@pytest.fixture(scope="module")
def shared(bao, modules, tmp_path_factory) -> t.Iterator[SharedRun]:
    run = SharedRun(bao, tmp_path_factory.mktemp("faults"))
    try:
        run.run(modules)
        yield run
    finally:
        run.close()


@pytest.mark.parametrize("name", ["refused-503", "refused-500", "lost-500", "read-503"])
def test_injected_5xx_is_retried_and_the_write_applied_once(shared: SharedRun, name: str) -> None:
    result = shared.results["write faults"]
    assert result["failed"] is False, result.get("msg")
    by_path = {entry["path"]: entry for entry in result["results"]}
    entry = by_path[shared.path(name)]

    assert entry["changed"] is True
    assert entry["version"] == 1
    assert entry["created"] is True
    assert_written_once(shared.bao, shared.path(name), shared.chain(name))


def test_503_before_the_write_is_resent_until_it_reaches_the_server(shared: SharedRun) -> None:
    posts = shared.write_proxy.hits("POST", f"^secret/data/{shared.path('refused-503')}$")

    assert [hit.injected for hit in posts] == [True, True, False]


def test_500_after_an_applied_write_is_never_resent(shared: SharedRun) -> None:
    # The answer was lost after the server applied the write: the module re-reads, finds its own
    # data at the version it asked for, and does not send the write again.
    assert forwarded(shared.write_proxy, "POST", f"secret/data/{shared.path('lost-500')}") == 1
    assert forwarded(shared.write_proxy, "POST", f"secret/data/{shared.path('read-503')}") == 1
    # Refused before reaching the server: sent again, and applied by the second one.
    assert forwarded(shared.write_proxy, "POST", f"secret/data/{shared.path('refused-500')}") == 1
    assert len(shared.write_proxy.hits("POST", f"^secret/data/{shared.path('refused-500')}$")) == 2


def test_rollback_whose_answer_is_lost_is_applied_once(shared: SharedRun) -> None:
    result = shared.results["rollback answer lost"]
    path = shared.path("rollback")

    assert result["failed"] is False, result.get("msg")
    assert result["changed"] is True
    assert result["version"] == 3
    assert result["restored_version"] == 1
    assert set(shared.bao.kv_versions("secret", path)) == {"1", "2", "3"}
    status, body = shared.bao.api("GET", f"secret/data/{path}")
    assert body["data"]["data"] == {"generation": "one"}
    assert forwarded(shared.write_proxy, "POST", f"secret/data/{path}") == 1


def test_login_answered_503_is_not_retried(shared: SharedRun) -> None:
    result = shared.results["login answered 503"]

    assert result["failed"] is True
    assert "login failed" in result["msg"]
    assert "approle" in result["msg"]
    assert len(shared.login_proxy.hits("POST", "^auth/approle/login$")) == 1
    assert_absent(shared.bao, shared.path("login"))


def test_server_gone_mid_batch_fails_naming_the_url_and_keeps_what_was_written(shared: SharedRun) -> None:
    result = shared.results["server gone mid-batch"]

    assert result["failed"] is True
    assert shared.dying_proxy.url in result["msg"]
    assert "connection refused by" in result["msg"]
    # The 5th write's answer never came: the module cannot know whether it was applied.
    assert "may or may not have been applied" in result["msg"]
    assert shared.path("gone-5") in result["msg"]
    for n in range(1, 5):
        assert_written_once(shared.bao, shared.path(f"gone-{n}"), shared.chain(f"gone-{n}"))
    # The 5th write died with the server, before reaching it; the rest were never sent. (The
    # rerun, the next task, wrote them: the server itself can no longer tell.)
    for n in range(5, 9):
        assert forwarded(shared.dying_proxy, "POST", f"secret/data/{shared.path(f'gone-{n}')}") == 0


def test_rerun_after_the_server_came_back_changes_only_the_rest(shared: SharedRun) -> None:
    result = shared.results["rerun after server came back"]

    assert result["failed"] is False, result.get("msg")
    assert [entry["changed"] for entry in result["results"]] == [False] * 4 + [True] * 4
    for n in range(1, 9):
        assert_written_once(shared.bao, shared.path(f"gone-{n}"), shared.chain(f"gone-{n}"))


def test_server_gone_during_a_rollback_says_the_outcome_is_unknown(shared: SharedRun) -> None:
    result = shared.results["rollback server gone"]
    path = shared.path("rollback-gone")

    assert result["failed"] is True
    assert shared.dying_rollback_proxy.url in result["msg"]
    assert "may or may not have been applied" in result["msg"]
    # Dropped before it reached the server, in fact.
    assert set(shared.bao.kv_versions("secret", path)) == {"1", "2"}


def test_stopped_server_fails_as_connection_refused_naming_the_url(shared: SharedRun) -> None:
    result = shared.results["server stopped"]

    assert result["failed"] is True
    assert shared.stopped_addr in result["msg"]
    assert "connection refused by" in result["msg"]


def test_black_hole_fails_within_timeout_times_attempts_naming_the_url(shared: SharedRun) -> None:
    result = shared.results["black hole"]
    attempts = BLACK_HOLE_RETRIES + 1
    elapsed = shared.black_hole_seconds

    assert result["failed"] is True
    assert shared.black_hole.url in result["msg"]
    assert "timed out" in result["msg"]
    # Every attempt waited out its timeout on a fresh connection, and no more attempts were made.
    assert shared.black_hole.accepted == attempts
    longest_waits = 0.6 * BLACK_HOLE_RETRIES
    assert BLACK_HOLE_TIMEOUT * attempts <= elapsed <= BLACK_HOLE_TIMEOUT * attempts + longest_waits + RUN_OVERHEAD


def test_tls_name_mismatch_fails_before_any_request(shared: SharedRun) -> None:
    result = shared.results["tls name mismatch"]

    assert result["failed"] is True
    assert "TLS" in result["msg"]
    assert "mismatch" in result["msg"]
    assert "not valid for '127.0.0.1'" in result["msg"]
    assert "subject alternative names" in result["msg"]
    assert "ca_cert" in result["msg"]
    assert shared.tls_proxy.url in result["msg"]
    assert shared.tls_proxy.hits() == []


def test_unknown_ca_fails_before_any_request(shared: SharedRun) -> None:
    result = shared.results["tls unknown ca"]

    assert result["failed"] is True
    assert "certificate verify failed" in result["msg"]
    assert "ca_cert" in result["msg"]
    assert shared.bao.addr in result["msg"]
    assert shared.bao.audit_requests(shared.audit_mark, path_prefix=f"secret/data/{shared.path('tls-ca')}") == []
    assert_absent(shared.bao, shared.path("tls-ca"))


# -- a throwaway server: sealed mid-run, token expiring mid-run --------------------------------

SHORT_TTL = 2


@pytest.fixture(scope="module")
def spare(tmp_path_factory) -> t.Iterator[ProvisionedBao]:
    server = ProvisionedBao.start_dev(tmp_path_factory.mktemp("spare-bao"), audit=False)
    try:
        server.provision()
        status, body = server.api(
            "POST",
            "auth/approle/role/short",
            {"token_policies": ["certs"], "token_ttl": f"{SHORT_TTL}s", "token_max_ttl": f"{SHORT_TTL}s"},
        )
        assert status == 204, body
        yield server
    finally:
        server.stop()


def test_sealed_mid_batch_fails_clearly_and_rerun_changes_only_the_rest(spare, modules) -> None:
    chains = [make_chain(f"sealed-{n}.faults.example.com") for n in range(1, 31)]
    items = [item(f"certs/sealed-{n}", chain) for n, chain in enumerate(chains, 1)]
    connection = {"auth_method": "token", "token": spare.root_token, "retries": 2}
    with FaultProxy(spare.addr, spare.ca_cert) as proxy:
        # The 10th write finds the server sealed: sealed by another thread while the run goes on.
        proxy.add_rule("POST", "^secret/data/certs/sealed-", skip=9, action=spare.seal)
        try:
            result = outcome(
                modules.run_module(PUSH, {**connection, "url": proxy.url, "certificates": items, "concurrency": 1})
            )
        finally:
            spare.unseal()

    assert result["failed"] is True
    assert "sealed" in result["msg"]
    assert "secret/data/certs/sealed-10" in result["msg"]
    for n, chain in enumerate(chains, 1):
        if n < 10:
            assert_written_once(spare, f"certs/sealed-{n}", chain)
        else:
            assert_absent(spare, f"certs/sealed-{n}")

    rerun = outcome(
        modules.run_module(PUSH, {**connection, "url": spare.addr, "ca_cert": spare.ca_cert, "certificates": items})
    )

    assert rerun["failed"] is False, rerun.get("msg")
    assert [entry["changed"] for entry in rerun["results"]] == [False] * 9 + [True] * 21
    for n, chain in enumerate(chains, 1):
        assert_written_once(spare, f"certs/sealed-{n}", chain)


def test_token_expiring_mid_batch_fails_understandably_and_writes_whole_secrets(spare, modules) -> None:
    chains = [make_chain(f"expiry-{n}.faults.example.com") for n in range(1, 11)]
    items = [item(f"certs/expiry-{n}", chain) for n, chain in enumerate(chains, 1)]
    auth = {
        "auth_method": "approle",
        "role_id": spare.approle_role_id("short"),
        "secret_id": spare.new_approle_secret_id("short"),
    }
    with FaultProxy(spare.addr, spare.ca_cert) as proxy:
        # Slow reads after the first: the batch outlives the token's TTL.
        proxy.add_rule("GET", "^secret/data/certs/expiry-", skip=1, delay=0.5, times=None)
        result = outcome(modules.run_module(PUSH, {**auth, "url": proxy.url, "certificates": items, "concurrency": 1}))

    assert result["failed"] is True
    assert "permission denied" in result["msg"]
    assert "expired" in result["msg"]
    assert "secret/data/certs/expiry-" in result["msg"]
    written = []
    for n, chain in enumerate(chains, 1):
        if spare.kv_versions("secret", f"certs/expiry-{n}"):
            assert_written_once(spare, f"certs/expiry-{n}", chain)
            written.append(n)
    # Written in order, and some before the token expired, none after.
    assert written == list(range(1, len(written) + 1))
    assert 1 <= len(written) < len(chains)

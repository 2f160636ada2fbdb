"""The write-outcome matrix: a KV v2 write whose answer proves nothing is resolved by re-reading.

A write (POST secret/data/<path>) answered 500, 502, 503, 504, 412, 429 or with a dropped
connection may or may not have been applied. The fault proxy gives each answer either before the
write reaches the server (not applied) or after the server applied it (the proxy forwards, then
replaces the answer), to a single push, to the middle item of a batch of three, and to a
rollback, for a new secret and for a secret that already has a version. In every case:

- the run succeeds, and what it reports (`changed`, `created`, `previous_version`, `version`,
  `restored_version`; per item for a batch) is what the server's metadata shows afterwards;
- the server holds exactly one new version per changed secret: the write was never applied twice;
- after the faulty answer the secret is read again before any write is sent again;
- a rerun with the same input reports `changed: false` and creates no version.

When the server stays out of reach for that re-read as well, the outcome is unknown and the run
says so: a batch fails naming the item in `outcome_unknown` (not in `not_written`), a rollback
fails saying the write "may or may not have been applied"; a rerun over a healthy connection then
finds the write applied and writes only the rest.

The 86 scenarios are independent (one secret path and one proxy each, on the session server). Each
runs the module in this process (the `modules` fixture), the proxy answering from its own threads;
a scenario runs when the first test that checks it asks for it, and its runs and the server's state
are kept for the other tests of the same case.
"""

from __future__ import annotations

import dataclasses
import typing as t
import uuid

import pytest
from bao import ProvisionedBao
from fault_proxy import FaultProxy, Hit
from module_call import ModuleCall, ModuleCallRun
from pki import Chain, make_chain
from push_runs import approle

RUN = uuid.uuid4().hex[:8]
# Few retries keep the unreachable cases short; one transient fault needs only one.
RETRIES = 2

FAULTS: dict[str, dict[str, t.Any]] = {
    "500": {"status": 500},
    "502": {"status": 502},
    "503": {"status": 503},
    "504": {"status": 504},
    "412": {"status": 412},
    "429": {"status": 429},
    "dropped": {"drop": True},
}
BEFORE_WRITE, AFTER_APPLY = "before-write", "after-apply"
PROXY_DIES, READS_DROPPED = "proxy-dies", "reads-dropped"
ROLLBACK_DATA = {1: {"generation": "one"}, 2: {"generation": "two"}}
REPORTED_BY_PUSH = ("changed", "created", "previous_version", "version")
REPORTED_BY_ROLLBACK = ("changed", "previous_version", "version", "restored_version")


@dataclasses.dataclass(frozen=True)
class Case:
    """One scenario: which operation gets which faulty answer to its write, and when."""

    operation: str  # push | batch | rollback
    fault: str
    timing: str  # BEFORE_WRITE | AFTER_APPLY
    existing: bool = False  # push: the secret already has version 1
    unreachable: str | None = None  # the re-read cannot reach the server either

    @property
    def id(self) -> str:
        parts = [self.operation]
        if self.operation != "rollback":
            parts.append("existing" if self.existing else "new")
        parts += [self.fault, self.timing]
        if self.unreachable:
            parts.append(f"then-{self.unreachable}")
        return "-".join(parts)

    @property
    def size(self) -> int:
        return 3 if self.operation == "batch" else 1

    @property
    def faulty_index(self) -> int:
        return self.size // 2


def matrix(operation: str, *, states: t.Sequence[bool] = (False, True)) -> list[Case]:
    return [
        Case(operation, fault, timing, existing=existing)
        for existing in states
        for fault in FAULTS
        for timing in (BEFORE_WRITE, AFTER_APPLY)
    ]


# One answer of each kind the client tells apart: ambiguous (500, 502), "not now" (503, 412, 429),
# neither (504), no answer at all.
STRANDING_FAULTS = ("500", "503", "504", "dropped")


def stranded(operation: str) -> list[Case]:
    return [
        Case(operation, fault, AFTER_APPLY, unreachable=unreachable)
        for unreachable in (PROXY_DIES, READS_DROPPED)
        for fault in STRANDING_FAULTS
    ]


PUSH_CASES = matrix("push")
BATCH_CASES = matrix("batch")
ROLLBACK_CASES = matrix("rollback", states=(False,))
MATRIX_CASES = PUSH_CASES + BATCH_CASES + ROLLBACK_CASES
STRANDED_BATCH_CASES = stranded("batch")
STRANDED_ROLLBACK_CASES = stranded("rollback")


def cases(selection: list[Case]) -> t.Any:
    return pytest.mark.parametrize("case", selection, ids=[case.id for case in selection])


# -- what the server holds ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Stored:
    """A secret as the root token sees it: every version number and the current version's data."""

    versions: tuple[int, ...]
    current_version: int | None
    data: dict[str, t.Any] | None


@dataclasses.dataclass
class Outcome:
    """A scenario's runs and the server after each."""

    case: Case
    paths: list[str]
    chains: dict[str, Chain]
    before: int | None  # each secret's current version before the run
    first: ModuleCallRun
    after_first: dict[str, Stored]
    hits: list[Hit]  # what the proxy saw for the faulty secret, in order
    rerun: ModuleCallRun
    after_rerun: dict[str, Stored]

    @property
    def faulty(self) -> str:
        return self.paths[self.case.faulty_index]


def push_account(before: int | None, stored: Stored) -> dict[str, t.Any]:
    """What a truthful push report says, from the server's metadata before and after the run."""
    return {
        "changed": stored.current_version != before,
        "created": before is None and stored.current_version is not None,
        "previous_version": before,
        "version": stored.current_version,
    }


def rollback_account(before: int, stored: Stored) -> dict[str, t.Any]:
    """What a truthful rollback report says: the restored version is the one whose data is current."""
    restored = [number for number, data in ROLLBACK_DATA.items() if data == stored.data]
    return {
        "changed": stored.current_version != before,
        "previous_version": before,
        "version": stored.current_version,
        "restored_version": restored[0] if restored else None,
    }


def reported(entry: dict[str, t.Any], keys: t.Sequence[str]) -> dict[str, t.Any]:
    return {key: entry.get(key) for key in keys}


def common_name(n: int) -> str:
    # Every call issues a new leaf (and key); the name only has to fit in a CN (64 characters).
    return f"item-{n}.outcomes.example.com"


def holds_certificate(stored: Stored, chain: Chain) -> bool:
    data = stored.data or {}
    return data.get("certificate") == chain.leaf.cert_pem and data.get("private_key") == chain.leaf.key_pem


# -- running the scenarios ----------------------------------------------------------------------


class Scenarios:
    """Sets up, runs and records scenarios, each once: the first test of a case runs it, the others read it."""

    def __init__(self, bao: ProvisionedBao, modules: ModuleCall) -> None:
        self.bao = bao
        self.modules = modules
        self._outcomes: dict[Case, Outcome | BaseException] = {}

    def outcome(self, case: Case) -> Outcome:
        if case not in self._outcomes:
            try:
                self._outcomes[case] = self.run(case)
            except Exception as error:  # a scenario's paths are its own: the other tests of the case see this too
                self._outcomes[case] = error
        outcome = self._outcomes[case]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def stored(self, path: str) -> Stored:
        status, body = self.bao.api("GET", f"secret/metadata/{path}")
        if status == 404:
            return Stored((), None, None)
        assert status == 200, body
        metadata = body["data"]
        status, body = self.bao.api("GET", f"secret/data/{path}")
        data = body["data"]["data"] if status == 200 else None
        return Stored(tuple(sorted(int(n) for n in metadata["versions"])), metadata["current_version"], data)

    def run(self, case: Case) -> Outcome:
        base = f"certs/outcomes-{RUN}-{case.id}"
        paths = [f"{base}-{n}" for n in range(1, case.size + 1)] if case.size > 1 else [base]
        chains = {path: make_chain(common_name(n)) for n, path in enumerate(paths, 1)}
        before = self._existing_versions(case, paths)
        args = self._args(case, paths, chains)
        faulty = paths[case.faulty_index]
        module = "vault_cert_rollback" if case.operation == "rollback" else "vault_cert_push"
        with FaultProxy(self.bao.addr, self.bao.ca_cert) as proxy:
            self._inject(case, proxy, faulty)
            first = self.modules.run_module(module, {**approle(self.bao), **args, "url": proxy.url, "retries": RETRIES})
            hits = proxy.hits(path=f"^secret/(data|metadata)/{faulty}$")
        after_first = {path: self.stored(path) for path in paths}
        healthy = {"url": self.bao.addr, "ca_cert": self.bao.ca_cert}
        rerun = self.modules.run_module(module, {**approle(self.bao), **args, **healthy})
        after_rerun = {path: self.stored(path) for path in paths}
        return Outcome(case, paths, chains, before, first, after_first, hits, rerun, after_rerun)

    def _existing_versions(self, case: Case, paths: list[str]) -> int | None:
        if case.operation == "rollback":
            for data in ROLLBACK_DATA.values():
                self.bao.api("POST", f"secret/data/{paths[0]}", {"data": data})
            return 2
        if not case.existing:
            return None
        for n, path in enumerate(paths, 1):
            # Version 1 holds the certificate this run renews.
            old = make_chain(common_name(n))
            managed = {
                "certificate": old.leaf.cert_pem,
                "private_key": old.leaf.key_pem,
                "chain": old.chain_pem,
                "fullchain": old.fullchain_pem,
            }
            status, body = self.bao.api("POST", f"secret/data/{path}", {"data": managed})
            assert status == 200, body
        return 1

    @staticmethod
    def _args(case: Case, paths: list[str], chains: dict[str, Chain]) -> dict[str, t.Any]:
        if case.operation == "rollback":
            return {"path": paths[0], "version": 1}
        items = [
            {
                "path": path,
                "certificate": chains[path].leaf.cert_pem,
                "private_key": chains[path].leaf.key_pem,
                "chain": chains[path].chain_pem,
            }
            for path in paths
        ]
        # One item after another: the matrix pins which item meets the fault and what follows it;
        # test_concurrency.py covers the same outcomes in a pool.
        return {"certificates": items, "concurrency": 1} if case.operation == "batch" else items[0]

    @staticmethod
    def _inject(case: Case, proxy: FaultProxy, faulty: str) -> None:
        fault = dict(FAULTS[case.fault], after_forward=case.timing == AFTER_APPLY)

        def cut_off() -> None:
            # Runs when the write arrives: from then on the server is out of reach for the re-read.
            if case.unreachable == PROXY_DIES:
                for method in ("GET", "POST", "PUT"):
                    proxy.add_rule(method, "", action=proxy.die, drop=True)
            else:
                proxy.add_rule("GET", f"^secret/(data|metadata)/{faulty}$", drop=True, times=None)

        if case.unreachable:
            fault["action"] = cut_off
        proxy.add_rule("POST", f"^secret/data/{faulty}$", **fault)


@pytest.fixture(scope="module")
def outcomes(bao: ProvisionedBao, modules: ModuleCall) -> Scenarios:
    """The scenarios of this file, on the session server, each run by the first test that checks it."""
    return Scenarios(bao, modules)


def outcome_of(outcomes: Scenarios, case: Case) -> Outcome:
    return outcomes.outcome(case)


def succeeded(outcomes: Scenarios, case: Case, run_name: str = "first") -> tuple[Outcome, ModuleCallRun]:
    """The case's outcome and its ``first`` run (or ``rerun``), asserting that the run succeeded."""
    outcome = outcome_of(outcomes, case)
    run = getattr(outcome, run_name)
    assert not run.failed, run.msg
    return outcome, run


# -- one transient fault: resolved by re-reading ------------------------------------------------


def assert_push_entry_is_truthful(outcome: Outcome, entry: dict[str, t.Any], path: str) -> None:
    stored = outcome.after_first[path]
    new_version = 1 if outcome.before is None else outcome.before + 1

    assert entry["path"] == path
    assert reported(entry, REPORTED_BY_PUSH) == push_account(outcome.before, stored), path
    assert reported(entry, REPORTED_BY_PUSH) == {
        "changed": True,
        "created": outcome.before is None,
        "previous_version": outcome.before,
        "version": new_version,
    }, path
    # Exactly one new version, holding this certificate: the write was applied once.
    assert stored.versions == tuple(range(1, new_version + 1)), path
    assert holds_certificate(stored, outcome.chains[path]), path


@cases(PUSH_CASES)
def test_push_whose_write_answer_proves_nothing_reports_what_the_server_holds(outcomes, case: Case) -> None:
    outcome, run = succeeded(outcomes, case)

    assert_push_entry_is_truthful(outcome, run.result, outcome.paths[0])


@cases(BATCH_CASES)
def test_batch_whose_middle_write_answer_proves_nothing_reports_what_the_server_holds(outcomes, case: Case) -> None:
    outcome, run = succeeded(outcomes, case)

    assert run.result["changed"] is True
    assert [entry["path"] for entry in run.result["results"]] == outcome.paths
    for entry, path in zip(run.result["results"], outcome.paths, strict=True):
        assert_push_entry_is_truthful(outcome, entry, path)


@cases(ROLLBACK_CASES)
def test_rollback_whose_write_answer_proves_nothing_reports_what_the_server_holds(outcomes, case: Case) -> None:
    outcome, run = succeeded(outcomes, case)
    stored = outcome.after_first[outcome.paths[0]]

    assert reported(run.result, REPORTED_BY_ROLLBACK) == rollback_account(2, stored)
    assert reported(run.result, REPORTED_BY_ROLLBACK) == {
        "changed": True,
        "previous_version": 2,
        "version": 3,
        "restored_version": 1,
    }
    # Exactly one new version, holding version 1's data.
    assert stored.versions == (1, 2, 3)
    assert stored.data == ROLLBACK_DATA[1]


@cases(MATRIX_CASES)
def test_write_whose_answer_proves_nothing_is_reread_before_anything_is_sent_again(outcomes, case: Case) -> None:
    outcome = outcome_of(outcomes, case)
    injected = [n for n, hit in enumerate(outcome.hits) if hit.injected]
    assert injected, f"the write never reached the proxy: {outcome.hits}"
    following = outcome.hits[injected[0] + 1 :]

    assert following, f"nothing after the faulty answer: {outcome.hits}"
    assert following[0].method == "GET", f"sent again without re-reading: {[(h.method, h.status) for h in following]}"
    # Whether the faulty answer came before or after the server applied it, one write reached it.
    assert sum(1 for hit in outcome.hits if hit.method == "POST" and "/data/" in hit.path and hit.forwarded) == 1


@cases(MATRIX_CASES)
def test_rerun_after_a_resolved_write_outcome_converges(outcomes, case: Case) -> None:
    outcome, rerun = succeeded(outcomes, case, run_name="rerun")

    assert rerun.result["changed"] is False
    for entry in rerun.result.get("results", [rerun.result]):
        assert entry["changed"] is False, entry.get("path")
        assert entry["version"] == outcome.after_first[entry["path"]].current_version, entry.get("path")
    assert outcome.after_rerun == outcome.after_first


# -- the server stays out of reach for the re-read: the outcome is unknown ----------------------


@cases(STRANDED_BATCH_CASES)
def test_batch_stops_at_a_write_it_cannot_resolve_and_names_it_outcome_unknown(outcomes, case: Case) -> None:
    outcome = outcome_of(outcomes, case)
    run = outcome.first
    first, faulty, last = outcome.paths

    assert run.failed
    assert run.result.get("failed_path") == faulty, run.msg
    assert run.result.get("outcome_unknown") == [faulty], run.msg
    assert run.result.get("not_written") == [last], run.msg
    assert [entry["path"] for entry in run.result.get("results", [])] == [first], run.msg
    assert reported(run.result["results"][0], REPORTED_BY_PUSH) == push_account(None, outcome.after_first[first])
    # The unknown write was in fact applied, once; the one after it was never sent.
    assert outcome.after_first[first].versions == (1,)
    assert outcome.after_first[faulty].versions == (1,)
    assert holds_certificate(outcome.after_first[faulty], outcome.chains[faulty])
    assert outcome.after_first[last].versions == ()


@cases(STRANDED_ROLLBACK_CASES)
def test_rollback_it_cannot_resolve_says_the_outcome_is_unknown(outcomes, case: Case) -> None:
    outcome = outcome_of(outcomes, case)
    run = outcome.first
    stored = outcome.after_first[outcome.paths[0]]

    assert run.failed
    assert "may or may not have been applied" in run.msg
    assert "nothing written" not in run.msg
    # It was in fact applied, once.
    assert stored.versions == (1, 2, 3)
    assert stored.data == ROLLBACK_DATA[1]


@cases(STRANDED_BATCH_CASES + STRANDED_ROLLBACK_CASES)
def test_rerun_after_an_unresolved_write_finds_it_applied_and_writes_only_the_rest(outcomes, case: Case) -> None:
    outcome, rerun = succeeded(outcomes, case, run_name="rerun")

    if case.operation == "rollback":
        assert reported(rerun.result, REPORTED_BY_ROLLBACK) == {
            "changed": False,
            "previous_version": 3,
            "version": 3,
            "restored_version": 1,
        }
        assert outcome.after_rerun[outcome.paths[0]].versions == (1, 2, 3)
        return
    done, unresolved, rest = rerun.result["results"]
    assert not done["changed"]
    # The unresolved write had landed: nothing is written again (no owner: no mark either).
    assert unresolved["changed_fields"] == []
    assert rest["changed"] and "certificate" in rest["changed_fields"]
    for path in outcome.paths:
        assert outcome.after_rerun[path].versions == (1,), path
        assert holds_certificate(outcome.after_rerun[path], outcome.chains[path]), path

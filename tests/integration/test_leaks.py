"""No secret in anything a user sees: every module, every auth method, success and failure, check
mode included, run with -vvv --diff.

The secrets: every private key pushed (and the TLS client key), the secret_ids, JWTs and tokens
handed to the modules, and every token the server issued during the run, taken from its raw
audit log (log_raw is on, so tokens are there in clear). The scan covers the console output and
every task result, tracebacks (`exception`) included. All runs are the tasks of one
ansible-playbook run, to keep the suite fast.
"""

from __future__ import annotations

import json
import typing as t
import uuid
from pathlib import Path

import pytest
from fault_proxy import FaultProxy
from leaks import assert_no_leak, find_leaks
from pki import key_pem, make_chain, new_key

PUSH = "certautopilot.vault.vault_cert_push"
ROLLBACK = "certautopilot.vault.vault_cert_rollback"
HEALTH = "certautopilot.vault.vault_health"
RUN = uuid.uuid4().hex[:8]
# The harness's root token: the modules never get it, and it is too common a word to scan for.
HARNESS_ROOT_TOKEN = "root"


def issued_tokens(bao, since: int) -> set[str]:
    """Every client token in the audit log after `since`: issued by a login, or presented."""
    with open(bao.audit_log, "rb") as log:
        log.seek(since)
        lines = log.read().split(b"\n")[:-1]
    tokens = set()
    for line in lines:
        if not line.strip():
            continue
        entry = json.loads(line)
        for auth in ((entry.get("response") or {}).get("auth"), entry.get("auth")):
            if auth and auth.get("client_token"):
                tokens.add(auth["client_token"])
    tokens.discard(HARNESS_ROOT_TOKEN)
    return tokens


def create_token(bao, *policies: str) -> str:
    status, body = bao.api("POST", "auth/token/create", {"policies": list(policies), "ttl": "10m"})
    assert status == 200, body
    return body["auth"]["client_token"]


class LeakRun:
    """One -vvv --diff playbook run over every module, auth method and outcome."""

    def __init__(self, bao, ansible, workdir: Path) -> None:
        self.bao = bao
        conn = {"url": bao.addr, "ca_cert": bao.ca_cert}
        self.secret_id = bao.new_approle_secret_id("certs")
        self.wrong_secret_id = str(uuid.uuid4())
        self.jwt = bao.sign_jwt(sub="leak-scan")
        self.wrong_jwt = bao.sign_jwt(sub="leak-scan", aud="someone-else")
        self.file_jwt = bao.sign_jwt(sub="leak-scan-file")
        jwt_file = workdir / "jwt"
        jwt_file.write_text(self.file_jwt)
        self.token = create_token(bao, "certs")
        self.readonly_token = create_token(bao, "certs-readonly")
        self.client_key_pem = Path(bao.client_key).read_text()
        approle = {**conn, "auth_method": "approle", "role_id": bao.role_ids["certs"], "secret_id": self.secret_id}
        jwt = {**conn, "auth_method": "jwt", "role": "certs", "jwt": self.jwt}
        chains = {
            name: make_chain(f"{name}.leaks.example.com")
            for name in ("one", "two", "batch-a", "batch-b", "jwt", "token", "cert", "odd")
        }
        self.keys = [chain.leaf.key_pem for chain in chains.values()]
        self.stranger_key = key_pem(new_key())
        self.keys.append(self.stranger_key)

        def push(name: str, path: str, **extra: t.Any) -> dict[str, t.Any]:
            chain = chains[name]
            return {
                "path": f"certs/leaks-{RUN}-{path}",
                "certificate": chain.leaf.cert_pem,
                "private_key": chain.leaf.key_pem,
                "chain": chain.chain_pem,
                **extra,
            }

        main = f"certs/leaks-{RUN}-main"
        # A server answer the module cannot make sense of: 200 without a version to a write.
        self.odd_proxy = FaultProxy(bao.addr, bao.ca_cert)
        self.odd_proxy.add_rule("POST", f"^secret/data/certs/leaks-{RUN}-odd$", status=200, times=None)
        # hvac that fails to import: the module's missing-library failure carries a traceback.
        broken = workdir / "broken-site"
        (broken / "hvac").mkdir(parents=True)
        (broken / "hvac" / "__init__.py").write_text('raise ImportError("hvac is broken on purpose by test_leaks")\n')

        tasks = [
            ("push approle", PUSH, {**approle, **push("one", "main")}, {}),
            ("push approle unchanged", PUSH, {**approle, **push("one", "main")}, {}),
            ("push approle check mode", PUSH, {**approle, **push("two", "main")}, {"check_mode": True}),
            ("push approle renewal", PUSH, {**approle, **push("two", "main")}, {}),
            (
                "push batch",
                PUSH,
                {**approle, "certificates": [push("batch-a", "batch-a"), push("batch-b", "batch-b")]},
                {},
            ),
            (
                "push key mismatch",
                PUSH,
                {**approle, **push("one", "mismatch", private_key=self.stranger_key)},
                {},
            ),
            ("push login refused", PUSH, {**approle, "secret_id": self.wrong_secret_id, **push("one", "refused")}, {}),
            ("push jwt", PUSH, {**jwt, **push("jwt", "jwt")}, {}),
            ("push jwt refused", PUSH, {**jwt, "jwt": self.wrong_jwt, **push("jwt", "jwt")}, {}),
            (
                "push jwt_file",
                PUSH,
                {**conn, "auth_method": "jwt", "role": "certs", "jwt_file": str(jwt_file), **push("jwt", "jwt")},
                {},
            ),
            ("push token", PUSH, {**conn, "auth_method": "token", "token": self.token, **push("token", "token")}, {}),
            (
                "push token denied",
                PUSH,
                {**conn, "auth_method": "token", "token": self.readonly_token, **push("token", "denied")},
                {},
            ),
            (
                "push cert auth",
                PUSH,
                {
                    **conn,
                    "auth_method": "cert",
                    "role": "certs",
                    "client_cert": bao.client_cert,
                    "client_key": bao.client_key,
                    **push("cert", "cert"),
                },
                {},
            ),
            (
                "push key as certificate",
                PUSH,
                {
                    **approle,
                    "path": f"certs/leaks-{RUN}-pasted",
                    "certificate": chains["one"].leaf.key_pem,
                    "include_private_key": False,
                },
                {},
            ),
            (
                "push unexpected answer",
                PUSH,
                {**approle, "url": self.odd_proxy.url, "retries": 1, **push("odd", "odd")},
                {},
            ),
            (
                "push without hvac",
                PUSH,
                {**approle, **push("one", "no-hvac")},
                {"environment": {"PYTHONPATH": str(broken)}},
            ),
            ("rollback", ROLLBACK, {**approle, "path": main, "version": 1}, {}),
            ("rollback check mode", ROLLBACK, {**approle, "path": main, "version": 2}, {"check_mode": True}),
            ("rollback refused", ROLLBACK, {**approle, "path": main, "version": 99}, {}),
            ("health", HEALTH, {**approle, "mount": "secret", "path": main, "check_rollback": True}, {}),
            ("health refused", HEALTH, {**jwt, "mount": "secret", "path": main, "min_versions": 1000}, {}),
        ]
        self.main = main
        playbook = workdir / "leaks.yml"
        plays = [
            {
                "name": "Leak scan",
                "hosts": "localhost",
                "gather_facts": False,
                "tasks": [
                    {"name": name, module: args, "ignore_errors": True, **keywords}
                    for name, module, args, keywords in tasks
                ],
            }
        ]
        playbook.write_text(json.dumps(plays))
        playbook.chmod(0o600)
        mark = bao.audit_mark()
        try:
            # Tracebacks shown for every error, as a user chasing a failure would ask for them.
            self.run = ansible.run_playbook(
                playbook, verbosity=3, diff=True, env={"ANSIBLE_DISPLAY_TRACEBACK": "error"}
            )
        finally:
            self.odd_proxy.close()
        self.tokens = issued_tokens(bao, mark)
        self.results = {task.task: {**task.result, "status": task.status} for task in self.run.tasks}

    @property
    def secrets(self) -> list[str]:
        return [
            *self.keys,
            self.client_key_pem,
            self.secret_id,
            self.wrong_secret_id,
            self.jwt,
            self.wrong_jwt,
            self.file_jwt,
            self.token,
            self.readonly_token,
            *sorted(self.tokens),
        ]


@pytest.fixture(scope="module")
def leak_run(bao, ansible, tmp_path_factory) -> LeakRun:
    return LeakRun(bao, ansible, tmp_path_factory.mktemp("leaks"))


SUCCEEDS = [
    "push approle",
    "push approle unchanged",
    "push approle check mode",
    "push approle renewal",
    "push batch",
    "push jwt",
    "push jwt_file",
    "push token",
    "push cert auth",
    "rollback",
    "rollback check mode",
    "health",
]
FAILS = [
    "push key mismatch",
    "push login refused",
    "push jwt refused",
    "push token denied",
    "push key as certificate",
    "push unexpected answer",
    "push without hvac",
    "rollback refused",
    "health refused",
]


def test_the_scanned_runs_cover_success_and_failure(leak_run: LeakRun) -> None:
    outcomes = {name: result["status"] for name, result in leak_run.results.items()}

    assert {name: outcomes.get(name) for name in SUCCEEDS} == dict.fromkeys(SUCCEEDS, "ok")
    assert {name: outcomes.get(name) for name in FAILS} == dict.fromkeys(FAILS, "failed")
    assert leak_run.results["push approle check mode"]["changed"] is True
    assert leak_run.results["rollback"]["changed"] is True
    assert "diff" in leak_run.results["push approle renewal"]


def test_the_tokens_the_server_issued_were_collected(leak_run: LeakRun) -> None:
    # Logins that succeeded: approle (push x4, batch, key-as-cert is refused before, odd, rollback x3,
    # health), jwt (push, jwt_file, health), cert; at least these many distinct tokens.
    assert len(leak_run.tokens) >= 10


def test_no_secret_in_console_output(leak_run: LeakRun) -> None:
    assert_no_leak([leak_run.run.output], *leak_run.secrets)


@pytest.mark.parametrize("name", SUCCEEDS + FAILS)
def test_no_secret_in_task_result(leak_run: LeakRun, name: str) -> None:
    assert_no_leak([leak_run.results[name]], *leak_run.secrets)


def test_traceback_is_shown_and_holds_no_secret(leak_run: LeakRun) -> None:
    result = leak_run.results["push without hvac"]

    assert "hvac" in result["msg"]
    assert "Traceback" in result.get("exception", "")
    assert "Traceback" in leak_run.run.output
    assert find_leaks([result["exception"]], *leak_run.secrets) == []


def test_unexpected_server_answer_fails_with_a_clear_message(leak_run: LeakRun) -> None:
    result = leak_run.results["push unexpected answer"]

    assert "Module failed" not in result["msg"]
    assert f"secret/data/certs/leaks-{RUN}-odd" in result["msg"]
    assert "without the new version number" in result["msg"]

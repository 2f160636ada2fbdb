"""vault_cert_info against a real OpenBao server (SPEC.md, Round 2, vault_cert_info).

One tree of 200 secrets in mixed states is written as root under a prefix of its own; a read-only
AppRole (``read`` on data, ``list`` on metadata, no more) reports on it. The tree holds a folder
whose secrets the role may not read and one it may not list. Every test checks the report against
what was written, and the server afterwards for anything changed. The inventory of the whole tree
runs once through ansible-playbook; every other run is in-process (``modules``). The harness scans
each run for its credentials and tokens, and the tests hand it the tree's keys and passwords.
"""

from __future__ import annotations

import typing as t
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pki
import pytest
from kv_histories import write

MODULE = "vault_cert_info"
MANAGED = {"managed_by": "certautopilot.vault"}
STATUSES = ("ok", "expiring", "expired", "not_yet_valid", "invalid", "no_certificate", "unreadable")

# How many secrets of each kind the tree holds, and where (folders below the tree's base).
TREE_PLAN = (
    # folder, kind, count
    ("team-a", "ok", 60),
    ("team-b/eu", "ok", 30),
    ("team-b/eu", "expiring", 10),
    ("team-b/us/deep", "ok", 30),
    ("team-b/us/deep", "expiring", 10),
    ("team-b/us/deep", "expired", 15),
    ("legacy", "not_yet_valid", 5),
    ("legacy", "invalid_pem", 5),
    ("legacy", "truncated_pem", 5),
    ("legacy", "other_json", 10),
    ("legacy", "deleted", 3),
    ("legacy", "destroyed", 2),
    ("denied", "ok", 10),
    ("locked", "ok", 5),
)
# Folders listed in the tree: the base, team-a, team-b, team-b/eu, team-b/us, team-b/us/deep, legacy,
# denied, and locked (refused).
TREE_FOLDERS = 9


# -- the tree -------------------------------------------------------------------------------------


@dataclass
class Tree:
    base: str
    expected: dict[str, str] = field(default_factory=dict)  # path -> status
    managed: set[str] = field(default_factory=set)
    versions: dict[str, int] = field(default_factory=dict)
    # Every private key and password written; kept out of repr() so that a failed assertion does not print them.
    keys: list[str] = field(default_factory=list, repr=False)

    @property
    def readable_secrets(self) -> int:
        return sum(1 for path in self.expected if not path.endswith("/"))


def _secret_data(kind: str, cn: str, ca: pki.Issued) -> tuple[dict, str | None]:
    """The secret's data for a kind of tree entry, and the secret it holds (a private key or password), if any."""
    now = datetime.now(UTC)
    validity = {
        "ok": {"days": 200},
        "expiring": {"not_after": now + timedelta(days=10)},
        "expired": {"not_before": now - timedelta(days=100), "not_after": now - timedelta(days=3)},
        "not_yet_valid": {"not_before": now + timedelta(days=5), "days": 90},
    }
    if kind in validity:
        leaf = pki.make_leaf(ca, cn, sans=(cn,), **validity[kind])
        return {"certificate": leaf.cert_pem, "private_key": leaf.key_pem, "owner": "team"}, leaf.key_pem
    if kind == "invalid_pem":
        return {"certificate": "this is not PEM", "private_key": "nor this"}, None
    if kind == "truncated_pem":
        leaf = pki.make_leaf(ca, cn)
        return {"certificate": leaf.cert_pem[:200], "private_key": leaf.key_pem}, leaf.key_pem
    if kind == "other_json":
        password = f"pw-{uuid.uuid4().hex}"
        return {"username": "svc-" + cn, "password": password}, password
    raise AssertionError(kind)


def _status_of(kind: str) -> str:
    return {
        "invalid_pem": "invalid",
        "truncated_pem": "invalid",
        "other_json": "no_certificate",
        "deleted": "no_certificate",
        "destroyed": "no_certificate",
    }.get(kind, kind)


def _build_tree(bao) -> Tree:
    tree = Tree(base=f"certs/info-{uuid.uuid4().hex[:8]}")
    ca = pki.make_ca("Inventory Test CA")
    for folder, kind, count in TREE_PLAN:
        for index in range(count):
            path = f"{tree.base}/{folder}/{kind}-{index:02d}.example.com"
            cn = path.rsplit("/", 1)[1]
            if kind in ("deleted", "destroyed"):
                data, key = _secret_data("ok", cn, ca)
                write(bao, path, data)
                version = write(bao, path, data)
                if kind == "deleted":
                    status, body = bao.api("DELETE", f"secret/data/{path}")
                else:
                    status, body = bao.api("PUT", f"secret/destroy/{path}", {"versions": [version]})
                assert status == 204, body
            else:
                data, key = _secret_data(kind, cn, ca)
                version = write(bao, path, data)
            if key:
                tree.keys.append(key)
            # Every third secret carries the collection's tag (the push writes it); another tag is not managed.
            tag = MANAGED if index % 3 == 0 else {"managed_by": "someone-else"} if index % 3 == 1 else None
            if tag:
                status, body = bao.api("POST", f"secret/metadata/{path}", {"custom_metadata": tag})
                assert status in (200, 204), body
            if folder == "locked":
                continue
            tree.versions[path] = version
            tree.expected[path] = "unreadable" if folder == "denied" else _status_of(kind)
            if tag is MANAGED and folder != "denied":
                tree.managed.add(path)
    tree.expected[f"{tree.base}/locked/"] = "unreadable"
    return tree


@dataclass(frozen=True)
class ReadOnlyRole:
    name: str
    role_id: str
    policy: str

    def args(self, bao) -> dict[str, t.Any]:
        secret_id = bao.new_approle_secret_id(self.name)
        return {"url": bao.addr, "ca_cert": bao.ca_cert, "role_id": self.role_id, "secret_id": secret_id}


def _read_only_role(bao, tree: Tree) -> ReadOnlyRole:
    """An AppRole whose policy reads and lists certs/ only, and is denied <base>/denied (read) and <base>/locked."""
    name = f"info-ro-{uuid.uuid4().hex[:6]}"
    policy = (
        'path "secret/data/certs/*" { capabilities = ["read"] }\n'
        'path "secret/metadata/certs/*" { capabilities = ["list"] }\n'
        f'path "secret/data/{tree.base}/denied/*" {{ capabilities = ["deny"] }}\n'
        f'path "secret/metadata/{tree.base}/locked/*" {{ capabilities = ["deny"] }}\n'
    )
    status, body = bao.api("PUT", f"sys/policies/acl/{name}", {"policy": policy})
    assert status == 204, body
    status, body = bao.api("POST", f"auth/approle/role/{name}", {"token_policies": [name], "token_ttl": "5m"})
    assert status == 204, body
    return ReadOnlyRole(name=name, role_id=bao.approle_role_id(name), policy=name)


@pytest.fixture(scope="module")
def tree(bao) -> Tree:
    return _build_tree(bao)


@pytest.fixture(scope="module")
def reader(bao, tree) -> ReadOnlyRole:
    return _read_only_role(bao, tree)


def info(runner, args: dict, *, check: bool = False, secrets: t.Sequence[str] = ()):
    """Run the module; ``secrets`` (the tree's keys and passwords, which reach the run from the server) never shown.

    The run's audit entries are in ``run.requests``.
    """
    return runner.run_module(MODULE, args, check=check, secrets=secrets)


@pytest.fixture(scope="module")
def tree_run(ansible, bao, tree, reader):
    """The inventory of the whole tree by the read-only role, run once (through ansible-playbook, the path a user
    takes) for the tests that read it."""
    return info(ansible, {**reader.args(bao), "prefix": tree.base}, secrets=tree.keys)


def _statuses(run) -> dict[str, str]:
    return {item["path"]: item["status"] for item in run.result["certificates"]}


def _server_versions(bao, tree: Tree) -> dict[str, int]:
    return {path: max(int(n) for n in bao.kv_versions("secret", path)) for path in tree.versions}


# -- the inventory ----------------------------------------------------------------------------------


def test_an_inventory_of_200_secrets_reports_the_exact_status_of_each(tree_run, tree):
    run = tree_run

    assert not run.failed, run.msg
    assert run.result["changed"] is False
    assert _statuses(run) == tree.expected
    paths = [item["path"] for item in run.result["certificates"]]
    assert paths == sorted(paths)
    expected_counts = Counter(tree.expected.values())
    assert run.result["counts"] == {status: expected_counts.get(status, 0) for status in STATUSES}
    assert run.result["total"] == len(tree.expected) == 196
    assert run.result["expired"] == sorted(path for path, status in tree.expected.items() if status == "expired")
    assert run.result["expiring"] == sorted(path for path, status in tree.expected.items() if status == "expiring")


def test_each_entry_says_why_and_what_it_knows(tree_run, tree):
    entries = {item["path"]: item for item in tree_run.result["certificates"]}
    base = tree.base

    ok = entries[f"{base}/team-a/ok-00.example.com"]
    assert (ok["cn"], ok["sans"], ok["issuer"], ok["field"]) == (
        "ok-00.example.com",
        ["ok-00.example.com"],
        "CN=Inventory Test CA,O=CertAutoPilot Tests",
        "certificate",
    )
    assert ok["reason"] is None and 198 <= ok["days_left"] <= 200
    written = datetime.fromisoformat(ok["updated_time"][:19]).replace(tzinfo=UTC)
    assert ok["version"] == 1 and timedelta(0) <= datetime.now(UTC) - written < timedelta(hours=1)
    expired = entries[f"{base}/team-b/us/deep/expired-00.example.com"]
    assert expired["days_left"] == -4 and expired["reason"].startswith("expired on ")
    expiring = entries[f"{base}/team-b/eu/expiring-00.example.com"]
    assert expiring["days_left"] == 9 and "in 9 day(s)" in expiring["reason"]
    assert "not yet valid" in entries[f"{base}/legacy/not_yet_valid-00.example.com"]["reason"]
    assert entries[f"{base}/legacy/invalid_pem-00.example.com"]["reason"] == (
        "field 'certificate' holds no PEM certificate"
    )
    assert "truncated?" in entries[f"{base}/legacy/truncated_pem-00.example.com"]["reason"]
    assert entries[f"{base}/legacy/other_json-00.example.com"]["reason"] == "the secret has no field 'certificate'"
    deleted = entries[f"{base}/legacy/deleted-00.example.com"]
    assert (deleted["version"], deleted["reason"]) == (2, "current version 2 is deleted")
    assert entries[f"{base}/legacy/destroyed-01.example.com"]["reason"] == "current version 2 is destroyed"
    denied = entries[f"{base}/denied/ok-00.example.com"]
    assert "permission denied" in denied["reason"] and f"secret/data/{base}/denied/ok-00" in denied["reason"]
    locked = entries[f"{base}/locked/"]
    assert "permission denied" in locked["reason"] and "'list'" in locked["reason"]
    for path, item in entries.items():
        # What the token may not read, it cannot know: no version, not managed.
        version = None if item["status"] == "unreadable" else tree.versions[path]
        assert item["version"] == version, path
        assert item["managed"] == (path in tree.managed), path


def test_the_inventory_sends_one_list_per_folder_one_read_per_secret_and_nothing_else(tree_run, tree):
    operations = Counter()
    for entry in tree_run.requests:
        request = entry["request"]
        path, operation = request["path"], request["operation"]
        if path == "auth/approle/login":
            operations["login"] += 1
        elif path == "auth/token/revoke-self":
            operations["revoke"] += 1
        elif path == "sys/internal/ui/mounts/secret":
            operations["mount check"] += 1
        elif operation == "list" and path.startswith(f"secret/metadata/{tree.base}"):
            operations["list"] += 1
        elif operation == "read" and path.startswith(f"secret/data/{tree.base}/"):
            operations["read"] += 1
        else:
            operations[f"{operation} {path}"] += 1

    assert operations == {
        "login": 1,
        "mount check": 1,
        "list": TREE_FOLDERS,
        "read": tree.readable_secrets,
        "revoke": 1,
    }
    # Concurrency 8 by default: several kept-alive connections, at most 8, all on the one login.
    ports = {entry["request"].get("remote_port") for entry in tree_run.requests if "/data/" in entry["request"]["path"]}
    assert 1 < len(ports) <= 8, f"connections used by the reads: {ports}"


def test_the_inventory_changes_nothing_on_the_server(tree_run, bao, tree):
    assert _server_versions(bao, tree) == tree.versions
    secret_operations = {
        entry["request"]["operation"] for entry in tree_run.requests if entry["request"]["path"].startswith("secret/")
    }
    assert secret_operations == {"read", "list"}


# -- fail_on --------------------------------------------------------------------------------------------


def test_fail_on_expired_fails_naming_the_count_and_keeps_the_report(modules, bao, tree, reader):
    run = info(modules, {**reader.args(bao), "prefix": tree.base, "fail_on": "expired"}, secrets=tree.keys)

    assert run.failed
    assert "fail_on expired: 15 certificate(s) expired: " in run.msg
    assert f"{tree.base}/team-b/us/deep/expired-00.example.com" in run.msg
    assert "and 10 more" in run.msg
    assert _statuses(run) == tree.expected
    assert run.result["counts"]["expired"] == 15
    assert len(run.result["expired"]) == 15


def test_fail_on_expiring_counts_expired_and_expiring(modules, bao, tree, reader):
    run = info(modules, {**reader.args(bao), "prefix": tree.base, "fail_on": "expiring"}, secrets=tree.keys)

    assert run.failed
    assert "fail_on expiring: 35 certificate(s) expired or expiring" in run.msg
    assert run.result["expiring"] and run.result["expired"]


def test_fail_on_passes_when_nothing_is_expired_or_expiring(modules, bao, tree, reader):
    args = {**reader.args(bao), "prefix": f"{tree.base}/team-b/eu/", "fail_on": "expired"}
    passed = info(modules, args, secrets=tree.keys)
    strict = info(
        modules, {**args, "secret_id": bao.new_approle_secret_id(reader.name), "fail_on": "expiring"}, secrets=tree.keys
    )

    assert not passed.failed, passed.msg
    assert passed.result["counts"]["ok"] == 30 and passed.result["counts"]["expiring"] == 10
    assert strict.failed and "10 certificate(s) expired or expiring" in strict.msg


def test_expiring_within_moves_the_line(modules, bao, tree, reader):
    args = {**reader.args(bao), "prefix": f"{tree.base}/team-b/eu", "expiring_within": 5}
    run = info(modules, args, secrets=tree.keys)

    assert not run.failed, run.msg
    assert run.result["counts"]["ok"] == 40 and run.result["expiring"] == []


# -- paths, auth, check mode, odd prefixes -----------------------------------------------------------


def test_paths_reports_just_those_secrets_with_a_read_only_token(modules, bao, tree, reader):
    status, body = bao.api("POST", "auth/token/create", {"policies": [reader.policy], "ttl": "5m"})
    assert status == 200, body
    token = body["auth"]["client_token"]
    base = tree.base
    paths = [
        f"{base}/team-b/us/deep/expired-03.example.com",
        f"{base}/team-a/ok-01.example.com",
        f"{base}/denied/ok-02.example.com",
        f"{base}/legacy/deleted-01.example.com",
        f"{base}/nowhere/missing.example.com",
        f"{base}/team-a/ok-01.example.com",
    ]
    args = {"url": bao.addr, "ca_cert": bao.ca_cert, "auth_method": "token", "token": token, "paths": paths}

    run = info(modules, args, secrets=tree.keys)

    assert not run.failed, run.msg
    assert _statuses(run) == {
        f"{base}/denied/ok-02.example.com": "unreadable",
        f"{base}/legacy/deleted-01.example.com": "no_certificate",
        f"{base}/nowhere/missing.example.com": "no_certificate",
        f"{base}/team-a/ok-01.example.com": "ok",
        f"{base}/team-b/us/deep/expired-03.example.com": "expired",
    }
    missing = next(item for item in run.result["certificates"] if item["path"].endswith("missing.example.com"))
    assert (missing["version"], missing["reason"]) == (None, "the secret has no version")
    reads = [
        entry
        for entry in run.requests
        if entry["request"]["operation"] == "read" and "/data/" in entry["request"]["path"]
    ]
    assert len(reads) == 5
    assert not any(entry["request"]["operation"] == "list" for entry in run.requests)
    # A token given to the module is the caller's: never revoked.
    assert bao.api("GET", "auth/token/lookup-self", token=token)[0] == 200


def test_check_mode_reports_the_same_and_writes_nothing(modules, bao, tree, reader):
    args = {**reader.args(bao), "prefix": f"{tree.base}/legacy", "concurrency": 1}
    run = info(modules, args, check=True, secrets=tree.keys)

    assert not run.failed, run.msg
    assert run.result["changed"] is False
    assert _statuses(run) == {path: status for path, status in tree.expected.items() if "/legacy/" in path}
    assert _server_versions(bao, tree) == tree.versions


def test_an_empty_or_missing_prefix_is_an_empty_report(modules, bao, reader):
    run = info(modules, {**reader.args(bao), "prefix": f"certs/info-nothing-{uuid.uuid4().hex[:8]}"})

    assert not run.failed, run.msg
    assert run.result["certificates"] == [] and run.result["total"] == 0
    assert run.result["counts"] == dict.fromkeys(STATUSES, 0)


def test_a_prefix_the_token_may_not_list_is_reported_not_fatal(modules, bao, tree, reader):
    run = info(modules, {**reader.args(bao), "prefix": f"{tree.base}/locked"})

    assert not run.failed, run.msg
    assert _statuses(run) == {f"{tree.base}/locked/": "unreadable"}


def test_the_writers_approle_sees_the_denied_folders_too(modules, bao, tree):
    status, body = bao.api(
        "POST",
        "auth/approle/login",
        {"role_id": bao.role_ids["certs"], "secret_id": bao.new_approle_secret_id("certs")},
        token="",
    )
    assert status == 200, body
    args = {"url": bao.addr, "ca_cert": bao.ca_cert, "auth_method": "token", "token": body["auth"]["client_token"]}

    run = info(modules, {**args, "prefix": tree.base}, secrets=tree.keys)

    assert not run.failed, run.msg
    statuses = _statuses(run)
    assert statuses[f"{tree.base}/denied/ok-00.example.com"] == "ok"
    assert statuses[f"{tree.base}/locked/ok-00.example.com"] == "ok"
    assert run.result["counts"]["unreadable"] == 0 and run.result["total"] == 200


def test_a_kv_v1_mount_fails_before_any_listing(modules, approle_auth, vault_conn):
    run = info(modules, {**vault_conn, **approle_auth, "mount": "kv1", "prefix": "certs"})

    assert run.failed
    assert "KV v1" in run.msg and "only KV v2" in run.msg
    assert not any(entry["request"]["operation"] == "list" for entry in run.requests)


def test_a_missing_prefix_and_paths_is_refused_before_any_request(modules, bao, reader):
    run = info(modules, reader.args(bao))

    assert run.failed and "prefix" in run.msg and "paths" in run.msg
    assert run.requests == []


def test_with_an_owner_managed_means_marked_with_it_and_every_entry_names_its_owner(modules, bao, vault_conn):
    base = f"certs/info-owner-{uuid.uuid4().hex[:8]}"
    marks = {
        "ours": {**MANAGED, "certautopilot_owner": "team-a"},
        "theirs": {**MANAGED, "certautopilot_owner": "team-b"},
        "unnamed": MANAGED,
        "unmarked": None,
    }
    ca = pki.make_ca("Owner Test CA")
    keys = []
    for name, custom in marks.items():
        data, key = _secret_data("ok", f"{name}.example.com", ca)
        keys.append(key)
        write(bao, f"{base}/{name}", data)
        if custom:
            assert bao.api("POST", f"secret/metadata/{base}/{name}", {"custom_metadata": custom})[0] == 204
    args = {
        **vault_conn,
        "auth_method": "approle",
        "role_id": bao.role_ids["certs"],
        "prefix": base,
    }

    owned = info(modules, {**args, "secret_id": bao.new_approle_secret_id("certs"), "owner": "team-a"}, secrets=keys)
    anyone = info(modules, {**args, "secret_id": bao.new_approle_secret_id("certs")}, secrets=keys)
    refused = info(modules, {**args, "secret_id": bao.new_approle_secret_id("certs"), "owner": "team a"})

    def by_name(run) -> dict[str, tuple[bool, str | None]]:
        return {item["path"].rsplit("/", 1)[1]: (item["managed"], item["owner"]) for item in run.result["certificates"]}

    assert by_name(owned) == {
        "ours": (True, "team-a"),
        "theirs": (False, "team-b"),
        "unnamed": (False, None),
        "unmarked": (False, None),
    }
    assert by_name(anyone) == {
        "ours": (True, "team-a"),
        "theirs": (True, "team-b"),
        "unnamed": (True, None),
        "unmarked": (False, None),
    }
    assert refused.failed and refused.msg.startswith("owner must be 1 to 64 characters"), refused.msg


# -- a token the server does not know: a failure, not every secret unreadable (moved from the round-3 file) --


def test_info_with_a_bad_token_fails_instead_of_reporting_everything_unreadable(modules, vault_conn):
    token = "hvs.not-a-real-token-000000000000"

    run = modules.run_module(
        "vault_cert_info", {**vault_conn, "auth_method": "token", "token": token, "prefix": "certs"}
    )

    assert run.failed, run.result
    # Not even a part of the token: the harness looks for it whole.
    assert "hvs.not-a-real-token" not in run.output

# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Role cert_distribution against OpenBao: state absent, and prune after a push.

Every case is one include of the role, in a block of its own, and the cases share four ansible-playbook runs
(tests/support/role_runs.py run_role_cases): the pushes that seed them, the check-mode prunes, the runs under
test, and the reruns that prove a second run changes nothing. Each case has its own paths and owner, so the
others' writes never reach what it checks; a refusal proves it wrote nothing under its own paths, and the run
under test wrote nowhere but under the paths of the cases that write.
"""

from __future__ import annotations

import dataclasses
import re
import typing as t
import uuid

import pytest
from fault_proxy import FaultProxy
from pki import make_chain
from push_runs import approle
from role_runs import RoleCall, RoleCase, certs_for, current_deleted, metadata, new_owner, run_role, run_role_cases

TAG = {"managed_by": "certautopilot.vault"}
OWNER_KEY = "certautopilot_owner"


def foreign_secret(bao, path: str, custom_metadata: dict | None = None) -> None:
    """A certificate secret someone else wrote: no mark, unless ``custom_metadata`` sets one by hand."""
    leaf = make_chain("foreign.example.com").leaf
    status, body = bao.api("POST", f"secret/data/{path}", {"data": {"certificate": leaf.cert_pem}})
    assert status == 200, body
    if custom_metadata is not None:
        status, body = bao.api("POST", f"secret/metadata/{path}", {"custom_metadata": custom_metadata})
        assert status == 204, body


def live(bao, path: str) -> bool:
    """The secret exists and its current version is not deleted."""
    return metadata(bao, path) is not None and not current_deleted(bao, path)


def writes_since(bao, mark: int) -> list[str]:
    """The KV paths written (created, updated, deleted) after the audit mark."""
    return [
        entry["request"]["path"]
        for entry in bao.audit_requests(mark)
        if entry["request"]["operation"] in ("create", "update", "delete")
        and entry["request"]["path"].startswith("secret/")
    ]


def writes_under(writes: list[str], *prefixes: str) -> list[str]:
    """Those of the KV paths ``writes`` that lie under any of ``prefixes`` (the secret itself or below it)."""
    kinds = ("data", "metadata", "delete", "destroy")
    return [path for path in writes if path.startswith(tuple(f"secret/{kind}/{p}" for p in prefixes for kind in kinds))]


def two_versions_marked(bao, path: str, owner: str) -> None:
    for body in ("v1", "v2"):
        assert bao.api("POST", f"secret/data/{path}", {"data": {"certificate": body}})[0] == 200
    assert bao.api("POST", f"secret/metadata/{path}", {"custom_metadata": {**TAG, OWNER_KEY: owner}})[0] == 204


PRUNE_REFUSALS = ("empty list", "prefix outside", "several hosts")


@dataclasses.dataclass
class Lifecycle:
    """Every case's paths and owners, what the server held between the runs, and each run's cases."""

    # Case -> what it set up: prefix, owner, items, snapshots of metadata.
    given: dict[str, dict[str, t.Any]] = dataclasses.field(default_factory=dict)
    seeded: dict[str, RoleCase] = dataclasses.field(default_factory=dict)
    checked: dict[str, RoleCase] = dataclasses.field(default_factory=dict)
    ran: dict[str, RoleCase] = dataclasses.field(default_factory=dict)
    again: dict[str, RoleCase] = dataclasses.field(default_factory=dict)
    # The KV paths the check-mode run and the run under test wrote.
    check_writes: list[str] = dataclasses.field(default_factory=list)
    run_writes: list[str] = dataclasses.field(default_factory=list)


def prepare(bao) -> tuple[dict[str, dict[str, t.Any]], dict[str, RoleCall]]:
    """Each case's paths, owners and server state set up by hand, and the pushes that seed it."""
    given: dict[str, dict[str, t.Any]] = {}
    seeds: dict[str, RoleCall] = {}

    def case(name: str, prefix: str, **context: t.Any) -> dict[str, t.Any]:
        given[name] = {"prefix": prefix, **context}
        return given[name]

    def seed(name: str, **role_vars: t.Any) -> None:
        seeds[name] = RoleCall(role_vars)

    absent = case("absent", f"certs/absent-{uuid.uuid4().hex[:8]}", owner=new_owner("absent"))
    absent["items"], _keys = certs_for(absent["prefix"], "gone", "kept")
    seed("absent", cert_distribution_owner=absent["owner"], cert_distribution_certs=absent["items"])

    purge = case("purge", f"certs/absent-{uuid.uuid4().hex[:8]}", owner=new_owner("absent"))
    purge["items"], _keys = certs_for(purge["prefix"], "ours", "theirs")
    seed("purge", cert_distribution_owner=purge["owner"], cert_distribution_certs=purge["items"][:1])

    other = case("absent other owner", f"certs/absent-{uuid.uuid4().hex[:8]}", owner=new_owner("team-b"))
    other["items"], _keys = certs_for(other["prefix"], "b-api")
    seed("absent other owner", cert_distribution_owner=other["owner"], cert_distribution_certs=other["items"])

    no_owner = case("absent no owner", f"certs/absent-{uuid.uuid4().hex[:8]}", owner=new_owner("team-a"))
    no_owner["items"], _keys = certs_for(no_owner["prefix"], "a-web")
    foreign_secret(bao, f"{no_owner['prefix']}/a-web", {**TAG, OWNER_KEY: no_owner["owner"]})

    rollback = case("rollback", f"certs/rollback-{uuid.uuid4().hex[:8]}")
    rollback.update(team_a=new_owner("team-a"), team_b=new_owner("team-b"))
    two_versions_marked(bao, rollback["prefix"], rollback["team_b"])

    prune = case("prune", f"certs/prune-{uuid.uuid4().hex[:8]}", owner=new_owner("prune"))
    prune["items"], _keys = certs_for(prune["prefix"], "web", "old-api", "team/old-db")
    seed("prune", cert_distribution_owner=prune["owner"], cert_distribution_certs=prune["items"])

    # Team A and team B, each with its own owner, deliver under one folder of the default prune prefix (certs).
    for name in ("two teams", "two teams check"):
        teams = case(name, f"certs/teams-{uuid.uuid4().hex[:8]}", team_a=new_owner("team-a"))
        teams["a_items"], _keys = certs_for(f"{teams['prefix']}/team-a", "web", "old-api")
        teams["b_items"], _keys = certs_for(f"{teams['prefix']}/team-b", "api", "old-db")
        seed(f"{name}, team A", cert_distribution_owner=teams["team_a"], cert_distribution_certs=teams["a_items"])
        seed(f"{name}, team B", cert_distribution_owner=new_owner("team-b"), cert_distribution_certs=teams["b_items"])

    unowned = case("prune no owner", f"certs/prune-{uuid.uuid4().hex[:8]}", owner=new_owner("prune"))
    unowned["items"], _keys = certs_for(unowned["prefix"], "stale", "new")
    seed("prune no owner", cert_distribution_owner=unowned["owner"], cert_distribution_certs=unowned["items"][:1])

    partial = case("partial push", f"certs/prune-{uuid.uuid4().hex[:8]}", owner=new_owner("prune"))
    partial["items"], _keys = certs_for(partial["prefix"], "first", "second", "third", "stale")
    partial["renewed"], _keys = certs_for(partial["prefix"], "first", "second", "third")
    seed("partial push", cert_distribution_owner=partial["owner"], cert_distribution_certs=partial["items"])

    outside = case("prefix outside", f"certs/prune-{uuid.uuid4().hex[:8]}", owner=new_owner("prune"))
    outside["stale"], _keys = certs_for(f"{outside['prefix']}/pruned", "stale")
    outside["inside"], _keys = certs_for(f"{outside['prefix']}/pruned", "web")
    outside["outside"], _keys = certs_for(f"{outside['prefix']}/elsewhere", "api")
    seed("prefix outside", cert_distribution_owner=outside["owner"], cert_distribution_certs=outside["stale"])

    space = case("space", f"certs/prune-{uuid.uuid4().hex[:8]}", owner=new_owner("prune"))
    space["items"], _keys = certs_for(space["prefix"], "kept", "stale")
    seed("space", cert_distribution_owner=space["owner"], cert_distribution_certs=space["items"])

    bad_owner = case("owner not a name", f"certs/prune-{uuid.uuid4().hex[:8]}")
    bad_owner["items"], _keys = certs_for(bad_owner["prefix"], "web")

    empty = case("prune empty", f"certs/prune-{uuid.uuid4().hex[:8]}", owner=new_owner("prune"))
    empty["items"], _keys = certs_for(empty["prefix"], "only")
    seed("prune empty", cert_distribution_owner=empty["owner"], cert_distribution_certs=empty["items"])

    acme = case("absent acme", f"certs/absent-acme-{uuid.uuid4().hex[:8]}")
    acme["items"], _keys = certs_for(acme["prefix"], "acme")
    acme["layout"] = {
        "cert_distribution_layout": "acme_sh",
        "cert_distribution_certs": acme["items"],
        "cert_distribution_owner": new_owner("acme"),
    }
    seed("absent acme", **acme["layout"])

    for refusal in PRUNE_REFUSALS:
        ignored = case(f"ignored {refusal}", f"certs/ignored-{uuid.uuid4().hex[:8]}", owner=new_owner("team-a"))
        ignored["items"], _keys = certs_for(ignored["prefix"], "web", "api")
        seed(f"ignored {refusal}", cert_distribution_owner=ignored["owner"], cert_distribution_certs=ignored["items"])

    nokey = case("acme no key", f"certs/acme-nokey-{uuid.uuid4().hex[:8]}")
    nokey["common"] = {
        "cert_distribution_owner": new_owner("acme"),
        "cert_distribution_layout": "acme_sh",
        "cert_distribution_include_private_key": False,
    }
    nokey["stale"], _keys = certs_for(nokey["prefix"], "stale")
    nokey["web"], _keys = certs_for(nokey["prefix"], "web")
    seed("acme no key", **nokey["common"], cert_distribution_certs=nokey["stale"])
    return given, seeds


def runs_under_test(given: dict[str, dict[str, t.Any]], proxied: dict) -> dict[str, RoleCall]:
    """The role run each case is about (after its seed); ``proxied``: a login through the fault proxy."""
    g = given

    def prune_of(name: str, **role_vars: t.Any) -> dict[str, t.Any]:
        return prune_vars(g[name], **role_vars)

    absent = {"cert_distribution_state": "absent"}
    calls = {
        "absent": RoleCall(
            {
                **absent,
                "cert_distribution_owner": g["absent"]["owner"],
                "cert_distribution_certs": g["absent"]["items"][:1],
            }
        ),
        "purge": RoleCall(
            {
                **absent,
                "cert_distribution_owner": g["purge"]["owner"],
                "cert_distribution_retire_mode": "purge",
                "cert_distribution_certs": g["purge"]["items"],
                "cert_distribution_concurrency": 1,
            }
        ),
        "absent other owner": RoleCall(
            {
                **absent,
                "cert_distribution_owner": new_owner("team-a"),
                "cert_distribution_certs": g["absent other owner"]["items"],
            }
        ),
        "absent no owner": RoleCall({**absent, "cert_distribution_certs": g["absent no owner"]["items"]}),
        "rollback": RoleCall(rollback_vars(g["rollback"], "team_a")),
        "prune": RoleCall(prune_of("prune", cert_distribution_certs=g["prune"]["items"][:1])),
        "two teams": RoleCall(two_teams_prune(g["two teams"])),
        "prune no owner": RoleCall(
            {
                "cert_distribution_certs": g["prune no owner"]["items"][1:],
                "cert_distribution_prune": True,
                "cert_distribution_prune_prefix": g["prune no owner"]["prefix"],
            }
        ),
        "partial push": RoleCall(
            prune_of(
                "partial push",
                cert_distribution_certs=g["partial push"]["renewed"],
                cert_distribution_concurrency=1,
                cert_distribution_vault=proxied,
            ),
            apply={"ignore_errors": True},
        ),
        "prefix outside": RoleCall(
            {
                **prune_of("prefix outside"),
                "cert_distribution_certs": g["prefix outside"]["inside"] + g["prefix outside"]["outside"],
                "cert_distribution_prune_prefix": f"{g['prefix outside']['prefix']}/pruned",
            }
        ),
        "space": RoleCall(prune_of("space", cert_distribution_certs=g["space"]["items"][:1])),
        "owner not a name": RoleCall(
            {"cert_distribution_owner": "team a/x", "cert_distribution_certs": g["owner not a name"]["items"]}
        ),
        "prune empty": RoleCall(prune_of("prune empty", cert_distribution_certs=[])),
        "absent acme": RoleCall({**g["absent acme"]["layout"], **absent}),
        "acme no key": RoleCall(
            {
                **g["acme no key"]["common"],
                "cert_distribution_certs": g["acme no key"]["web"],
                "cert_distribution_prune": True,
                "cert_distribution_prune_prefix": g["acme no key"]["prefix"],
            }
        ),
    }
    for refusal in PRUNE_REFUSALS:
        calls[f"ignored {refusal}"] = ignored_prune(g[f"ignored {refusal}"], refusal)
    return calls


def prune_vars(case: dict[str, t.Any], **role_vars: t.Any) -> dict[str, t.Any]:
    """A prune by the case's owner under the case's prefix."""
    return {
        "cert_distribution_owner": case["owner"],
        "cert_distribution_prune": True,
        "cert_distribution_prune_prefix": case["prefix"],
        **role_vars,
    }


def rollback_vars(case: dict[str, t.Any], team: str) -> dict[str, t.Any]:
    return {
        "cert_distribution_state": "rollback",
        "cert_distribution_rollback_items": [{"path": case["prefix"], "version": 1}],
        "cert_distribution_owner": case[team],
    }


def two_teams_prune(case: dict[str, t.Any]) -> dict[str, t.Any]:
    """Team A's prune with the default prefix (certs), delivering the first of its two certificates."""
    return {
        "cert_distribution_owner": case["team_a"],
        "cert_distribution_certs": case["a_items"][:1],
        "cert_distribution_prune": True,
    }


def ignored_prune(case: dict[str, t.Any], refusal: str) -> RoleCall:
    """A refused prune in a role included with errors ignored."""
    prune = prune_vars(case)
    ignored = {"ignore_errors": True}
    if refusal == "empty list":
        case["expected"] = "would retire every managed secret"
        return RoleCall({**prune, "cert_distribution_certs": []}, apply=ignored)
    if refusal == "prefix outside":
        outside, _keys = certs_for(f"certs/elsewhere-{uuid.uuid4().hex[:8]}", "web")
        case["expected"] = "does not contain the secret path"
        return RoleCall({**prune, "cert_distribution_certs": outside}, apply=ignored)
    # Each host delivers one of the two: each would retire the other's.
    case["expected"] = "it would retire the other hosts' certificates"
    hosts = {"web1": {"host_certs": case["items"][:1]}, "web2": {"host_certs": case["items"][1:]}}
    return RoleCall({**prune, "cert_distribution_certs": "{{ host_certs }}"}, apply=ignored, hosts=hosts)


@pytest.fixture(scope="module")
def lifecycle(ansible, bao, vault_conn, tmp_path_factory) -> Lifecycle:
    workdir = tmp_path_factory.mktemp("lifecycle")
    found = Lifecycle()
    found.given, seeds = prepare(bao)
    g = found.given
    found.seeded, _run = run_role_cases(ansible, bao, vault_conn, workdir, seeds)

    # What the runs under test must leave as it is, as the server holds it after the seeding.
    foreign_secret(bao, f"{g['purge']['prefix']}/theirs")
    foreign_secret(bao, f"{g['prune']['prefix']}/foreign")
    foreign_secret(bao, f"{g['prune']['prefix']}/team/foreign")
    foreign_secret(bao, f"{g['space']['prefix']}/has space", {**TAG, OWNER_KEY: g["space"]["owner"]})
    for name, case in g.items():
        case["before"] = snapshot(bao, case["prefix"], metadata_paths(name, case))

    check_mark = bao.audit_mark()
    checks = {
        "prune": RoleCall(prune_vars(g["prune"], cert_distribution_certs=g["prune"]["items"][:1])),
        "two teams check": RoleCall(two_teams_prune(g["two teams check"])),
    }
    found.checked, _run = run_role_cases(ansible, bao, vault_conn, workdir, checks, check=True)
    g["prune"]["after_check"] = snapshot(bao, g["prune"]["prefix"], ("old-api", "team/old-db"))
    found.check_writes = writes_since(bao, check_mark)

    partial = g["partial push"]["prefix"]
    with FaultProxy(bao.addr, bao.ca_cert) as proxy:
        proxy.add_rule("POST", rf"^secret/data/{re.escape(partial)}/second$", status=403, times=None)
        calls = runs_under_test(g, {**vault_conn, **approle(bao), "url": proxy.url, "retries": 0})
        run_mark = bao.audit_mark()
        found.ran, _run = run_role_cases(ansible, bao, vault_conn, workdir, calls)
    found.run_writes = writes_since(bao, run_mark)
    for name, case in g.items():
        case["writes"] = writes_under(found.run_writes, case["prefix"])
        case["after_run"] = snapshot(bao, case["prefix"], metadata_paths(name, case))

    # Reruns: a second run changes nothing; the owner's own rollback after the other owner's was refused.
    reruns = {
        "absent": calls["absent"],
        "prune": calls["prune"],
        "rollback": RoleCall(rollback_vars(g["rollback"], "team_b")),
    }
    found.again, _run = run_role_cases(ansible, bao, vault_conn, workdir, reruns)
    return found


def metadata_paths(name: str, case: dict[str, t.Any]) -> tuple[str, ...]:
    """The secrets (below the case's prefix) whose metadata a case compares before and after."""
    return {
        "purge": ("ours", "theirs"),
        "absent other owner": ("b-api",),
        "absent no owner": ("a-web",),
        "rollback": ("",),
        "prune": ("web", "foreign", "team/foreign", "old-api", "team/old-db"),
        "two teams": ("team-b/api", "team-b/old-db"),
        "partial push": ("second", "third", "stale"),
        "space": ("has space",),
        "prune empty": ("only",),
    }.get(name, ())


def snapshot(bao, prefix: str, names: t.Iterable[str]) -> dict[str, t.Any]:
    return {name: metadata(bao, f"{prefix}/{name}" if name else prefix) for name in names}


# The cases whose run under test writes (purge takes out the marked secret before it meets the unmarked one):
# every write of that run lies under one of their prefixes.
WRITING_CASES = ("absent", "purge", "prune", "two teams", "partial push", "space", "absent acme", "acme no key")


def test_the_seeds_delivered_and_the_run_under_test_wrote_only_under_the_paths_of_the_cases_that_write(lifecycle):
    writing = [lifecycle.given[name]["prefix"] + "/" for name in WRITING_CASES]

    assert [path for path in lifecycle.run_writes if path not in writes_under(lifecycle.run_writes, *writing)] == []
    assert {name: case.error for name, case in lifecycle.seeded.items() if case.failed} == {}


def test_absent_soft_deletes_the_listed_certificates_and_leaves_the_others(lifecycle, bao):
    prefix = lifecycle.given["absent"]["prefix"]
    pushed, retired, again = (runs["absent"] for runs in (lifecycle.seeded, lifecycle.ran, lifecycle.again))

    assert not retired.failed, retired.output
    assert [(result["path"], result["changed"], result["mode"]) for result in retired.results] == [
        (f"{prefix}/gone", True, "delete")
    ]
    assert current_deleted(bao, f"{prefix}/gone")
    assert not current_deleted(bao, f"{prefix}/kept")
    assert all(result["managed"] for result in pushed.results)
    assert not again.failed and not again.results[0]["changed"]


def test_absent_purge_refuses_a_secret_without_the_mark_and_writes_nothing(lifecycle, bao):
    case = lifecycle.given["purge"]
    prefix, run = case["prefix"], lifecycle.ran["purge"]

    assert run.failed
    assert f"{prefix}/theirs" in run.output and "managed_by" in run.output, run.output
    assert case["after_run"]["theirs"] == case["before"]["theirs"]


def test_absent_of_one_owner_refuses_the_secret_of_another_owner_and_writes_nothing(lifecycle, bao):
    case = lifecycle.given["absent other owner"]
    prefix, run = case["prefix"], lifecycle.ran["absent other owner"]

    assert not lifecycle.seeded["absent other owner"].failed
    assert run.failed
    assert f"{prefix}/b-api" in run.output, run.output
    assert case["after_run"] == case["before"]


def test_absent_without_an_owner_refuses_a_secret_marked_with_an_owner_and_writes_nothing(lifecycle, bao):
    """Retiring without an owner follows the push's rule: a secret whose mark names an owner is that owner's."""
    case = lifecycle.given["absent no owner"]
    team_a, run = case["owner"], lifecycle.ran["absent no owner"]

    assert run.failed
    assert f"is owned by {team_a}: give owner {team_a} or another path" in " ".join(run.output.split()), run.output
    assert case["writes"] == [], run.output
    assert case["after_run"] == case["before"]


def test_rollback_of_one_owner_refuses_the_secret_of_another_owner_and_writes_nothing(lifecycle, bao):
    case = lifecycle.given["rollback"]
    team_a, team_b = case["team_a"], case["team_b"]
    run, own = lifecycle.ran["rollback"], lifecycle.again["rollback"]

    assert run.failed
    assert f"is owned by {team_b}, not by owner {team_a}" in " ".join(run.output.split()), run.output
    assert case["writes"] == [], run.output
    assert case["after_run"] == case["before"]
    assert not own.failed, own.output
    assert [(result["version"], result["restored_version"]) for result in own.results] == [(3, 1)]


def test_prune_lists_in_check_mode_then_retires_only_managed_secrets_not_delivered(lifecycle, bao):
    case = lifecycle.given["prune"]
    prefix, before = case["prefix"], case["before"]
    listed, pruned, again = (runs["prune"] for runs in (lifecycle.checked, lifecycle.ran, lifecycle.again))

    assert not listed.failed, listed.output
    assert sorted(listed.pruned) == [f"{prefix}/old-api", f"{prefix}/team/old-db"]
    assert case["after_check"] == {path: before[path] for path in ("old-api", "team/old-db")}
    assert not pruned.failed, pruned.output
    assert sorted(pruned.pruned) == [f"{prefix}/old-api", f"{prefix}/team/old-db"]
    assert current_deleted(bao, f"{prefix}/old-api") and current_deleted(bao, f"{prefix}/team/old-db")
    untouched = ("web", "foreign", "team/foreign")
    assert snapshot(bao, prefix, untouched) == {path: before[path] for path in untouched}
    assert not again.failed and again.pruned == []


def test_prune_of_one_owner_never_retires_another_owners_secrets_under_the_default_prefix(lifecycle, bao):
    """The audit's data-loss case: team A's prune with default settings retired team B's certificates."""
    case = lifecycle.given["two teams"]
    folder, run = case["prefix"], lifecycle.ran["two teams"]

    assert not lifecycle.seeded["two teams, team A"].failed and not lifecycle.seeded["two teams, team B"].failed
    assert not run.failed, run.output
    assert run.pruned == [f"{folder}/team-a/old-api"]
    assert current_deleted(bao, f"{folder}/team-a/old-api") and live(bao, f"{folder}/team-a/web")
    assert case["after_run"] == case["before"]


def test_prune_in_check_mode_lists_only_this_owners_secrets_and_writes_nothing(lifecycle, bao):
    case = lifecycle.given["two teams check"]
    folder, run = case["prefix"], lifecycle.checked["two teams check"]

    assert not run.failed, run.output
    assert run.pruned == [f"{folder}/team-a/old-api"]
    # Nothing at all was written by the check-mode run, this case's prune or the other's.
    assert lifecycle.check_writes == []
    assert live(bao, f"{folder}/team-a/old-api")


def test_prune_without_an_owner_is_refused_before_anything_is_written(lifecycle, bao):
    case = lifecycle.given["prune no owner"]
    prefix, run = case["prefix"], lifecycle.ran["prune no owner"]

    assert case["writes"] == []
    assert run.failed
    assert "cert_distribution_prune needs cert_distribution_owner" in run.output, run.output
    assert live(bao, f"{prefix}/stale") and metadata(bao, f"{prefix}/new") is None


def test_prune_after_a_push_that_failed_part_way_with_errors_ignored_retires_nothing(lifecycle, bao):
    """include_role with apply: {ignore_errors: true}: the push stops at the second certificate, the role goes on.

    Before, prune compared the inventory with the results of the first certificate alone and retired the second
    and third, still in the list. Prune must not run at all after a push that did not deliver everything.
    """
    case = lifecycle.given["partial push"]
    prefix, run = case["prefix"], lifecycle.ran["partial push"]

    assert not lifecycle.seeded["partial push"].failed
    assert case["after_run"] == case["before"]
    assert "cert_distribution_prune did not run" in run.output, run.output
    assert [result["path"] for result in run.results] == [f"{prefix}/first"]
    assert run.pruned == []


def test_prune_whose_prefix_does_not_hold_every_delivered_path_is_refused_before_anything_is_written(lifecycle, bao):
    case = lifecycle.given["prefix outside"]
    folder, run = case["prefix"], lifecycle.ran["prefix outside"]

    assert case["writes"] == []
    assert run.failed
    assert "cert_distribution_prune_prefix does not contain the secret path of cert_distribution_certs[1]:" in (
        " ".join(run.output.split())
    ), run.output
    assert live(bao, f"{folder}/pruned/stale")


def test_a_secret_of_this_owner_whose_name_holds_a_space_is_left_out_with_a_warning_and_the_rest_pruned(lifecycle, bao):
    case = lifecycle.given["space"]
    prefix, run = case["prefix"], lifecycle.ran["space"]
    odd = f"{prefix}/has space"

    assert not run.failed, run.output
    assert run.pruned == [f"{prefix}/stale"]
    assert current_deleted(bao, f"{prefix}/stale")
    assert case["after_run"] == case["before"]
    warning = " ".join(run.output[run.output.index("[WARNING]") :].split())
    assert f"'{odd}'" in warning and "not a valid secret path" in warning, run.output


def test_an_owner_that_is_not_a_name_is_refused_by_the_role_before_anything_is_written(lifecycle, bao):
    case = lifecycle.given["owner not a name"]
    run = lifecycle.ran["owner not a name"]

    assert case["writes"] == []
    assert run.failed
    assert "cert_distribution_owner must be 1 to 64 characters" in run.output, run.output
    assert "team a/x" not in run.output


def test_prune_with_no_certificates_is_refused_before_anything_is_written(lifecycle, bao):
    case = lifecycle.given["prune empty"]
    run = lifecycle.ran["prune empty"]

    assert run.failed
    assert "cert_distribution_prune with an empty cert_distribution_certs would retire every managed secret" in (
        run.output
    )
    assert case["after_run"] == case["before"]


def test_absent_with_the_acme_sh_layout_retires_the_four_secrets_of_each_certificate(lifecycle, bao):
    prefix, retired = lifecycle.given["absent acme"]["prefix"], lifecycle.ran["absent acme"]

    assert not retired.failed, retired.output
    files = ("cert.pem", "cert.key", "ca.pem", "fullchain.pem")
    assert [result["path"] for result in retired.results] == [f"{prefix}/acme/{name}" for name in files]
    assert all(current_deleted(bao, f"{prefix}/acme/{name}") for name in files)


@pytest.mark.parametrize("refusal", PRUNE_REFUSALS)
def test_a_prune_refusal_holds_when_the_role_is_included_with_errors_ignored(lifecycle, bao, refusal):
    """include_role's apply: {ignore_errors: true} (or the play's) must not turn a refusal into a push and a prune."""
    case = lifecycle.given[f"ignored {refusal}"]
    prefix, run = case["prefix"], lifecycle.ran[f"ignored {refusal}"]

    assert not lifecycle.seeded[f"ignored {refusal}"].failed
    # Failed and not ignored: only such a failure reaches the case's rescue.
    assert run.failed and case["expected"] in run.output, run.output
    assert case["writes"] == [], run.output
    assert live(bao, f"{prefix}/web") and live(bao, f"{prefix}/api")


def test_prune_with_acme_sh_and_no_private_key_retires_the_stale_certificate(lifecycle, bao):
    """Without the key, acme_sh delivers three secrets a certificate (no cert.key): prune must count those."""
    prefix, run = lifecycle.given["acme no key"]["prefix"], lifecycle.ran["acme no key"]

    assert not lifecycle.seeded["acme no key"].failed
    assert not run.failed, run.output
    assert sorted(run.pruned) == [f"{prefix}/stale/{name}" for name in ("ca.pem", "cert.pem", "fullchain.pem")]
    assert live(bao, f"{prefix}/web/cert.pem") and metadata(bao, f"{prefix}/web/cert.key") is None


# -- the first hour: a misspelt variable is named, not silently ignored -------------------------------------


def test_a_misspelt_role_variable_and_an_empty_certificate_list_are_each_warned_about_by_name(
    ansible, bao, vault_conn, tmp_path
):
    items, _keys = certs_for(f"certs/typo-{uuid.uuid4().hex[:8]}", "typo")

    facts, run = run_role(ansible, bao, vault_conn, tmp_path, {"cert_distribution_cert": items})

    assert run.rc == 0, run.output
    assert "WARNING: cert_distribution_cert: not a variable of the role cert_distribution" in run.output
    assert "WARNING: cert_distribution_certs is empty" in run.output
    assert facts["results"] == []
    # The role's own variables and the facts it sets are never named.
    assert "cert_distribution_vault:" not in run.output and "cert_distribution_results," not in run.output

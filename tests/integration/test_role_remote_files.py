# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Role cert_distribution with cert_distribution_remote_files: the file options read on each managed host.

Hosts with a local connection, each with a directory of its own, stand in for remote hosts: each host's
host_vars point its certificate list at its own directory (and, where the case says, its cert_distribution_files_root
there). Every case is one include of the role over its own hosts, and all of them share one ansible-playbook run at
-vvv (tests/support/role_runs.py run_role_cases), whose output the harness scans for every key the files hold.
"""

from __future__ import annotations

import dataclasses
import typing as t
import uuid
from pathlib import Path

import pytest
from pki import make_chain
from role_runs import RoleCall, current_deleted, metadata, run_role_cases

PREFIX = f"certs/remote-{uuid.uuid4().hex[:8]}"
# Written as a role variable, the template is trusted: it may use the host's variables as well as the certificate's.
TEMPLATE = PREFIX + "/{{ inventory_hostname }}/{{ cn }}"


@dataclasses.dataclass
class HostFiles:
    """One stand-in host: its directory, the PEM texts its files hold, and where its certificate goes."""

    name: str
    root: Path
    cert_pem: str
    key_pem: str
    chain_pem: str

    def path(self, cn: str | None = None) -> str:
        return f"{PREFIX}/{self.name}/{cn or self.name + '.example.com'}"


def host_files(workdir: Path, name: str) -> HostFiles:
    """A host directory laid out as certbot does: live/ holds links into archive/."""
    chain = make_chain(f"{name}.example.com")
    root = workdir / name
    (root / "archive").mkdir(parents=True)
    (root / "live").mkdir()
    for file_name, text in (
        ("cert1.pem", chain.leaf.cert_pem),
        ("privkey1.pem", chain.leaf.key_pem),
        ("chain1.pem", chain.chain_pem),
    ):
        (root / "archive" / file_name).write_text(text)
        (root / "live" / file_name.replace("1", "")).symlink_to(Path("..") / "archive" / file_name)
    return HostFiles(name, root, chain.leaf.cert_pem, chain.leaf.key_pem, chain.chain_pem)


def files_of(host: HostFiles, *, relative: bool = True, **changes: str) -> dict[str, str]:
    """The host's certificate item: its live/ files, relative to its root or absolute; ``changes`` replace some."""
    base = "live" if relative else str(host.root / "live")
    item = {
        "certificate_file": f"{base}/cert.pem",
        "chain_file": f"{base}/chain.pem",
        "private_key_file": f"{base}/privkey.pem",
    }
    return {**item, **changes}


def host_vars(host: HostFiles, certs: list[dict], *, rooted: bool = True) -> dict[str, t.Any]:
    return {"remote_certs": certs, **({"host_root": str(host.root)} if rooted else {})}


ROLE_VARS = {
    "cert_distribution_remote_files": True,
    "cert_distribution_certs": "{{ remote_certs }}",
    "cert_distribution_files_root": "{{ host_root | default(none) }}",
    "cert_distribution_path_template": TEMPLATE,
}


RETIRED_VARS = {
    **ROLE_VARS,
    "cert_distribution_path_template": PREFIX + "/retired/{{ cn }}",
    "cert_distribution_owner": f"remote-{uuid.uuid4().hex[:8]}",
}


@dataclasses.dataclass
class Found:
    hosts: dict[str, HostFiles]
    errors: dict[str, dict[str, str | None]]  # case -> host -> the refusal (None: not refused)
    results: dict[str, dict[str, t.Any]]  # case -> host -> cert_distribution_results
    output: str
    read_on: set[str]  # the hosts a slurp ran on


def per_host(run, case: str, key: str) -> dict[str, t.Any]:
    """What each host recorded for the case (run_role_cases keeps only the first host's)."""
    return {
        task.host: task.result["ansible_facts"]["__case_record"][key]
        for task in run.tasks
        if task.task == f"Case {case}: record"
    }


@pytest.fixture(scope="module")
def found(ansible, bao, vault_conn, tmp_path_factory) -> Found:
    workdir = tmp_path_factory.mktemp("remote-files")
    names = ("web1", "web2", "out1", "out2", "gone", "mixed", "rel", "old", "paste")
    hosts = {name: host_files(workdir, name) for name in names}
    web1, web2 = hosts["web1"], hosts["web2"]
    outside = hosts["out2"].root / "archive" / "privkey1.pem"
    # A link below out1's root to another host's key: it resolves outside the root.
    (hosts["out1"].root / "live" / "stolen.pem").symlink_to(outside)
    # A certificate file that holds the key after the certificate.
    (hosts["mixed"].root / "archive" / "combined.pem").write_text(hosts["mixed"].cert_pem + hosts["mixed"].key_pem)

    def one(name: str, certs: list[dict], **kwargs: t.Any) -> dict[str, dict]:
        return {name: host_vars(hosts[name], certs, **kwargs)}

    delivery = {
        # web1: paths relative to its root, through certbot's links; web2: absolute paths and no root.
        **one("web1", [files_of(web1)]),
        **one("web2", [files_of(web2, relative=False)], rooted=False),
    }
    cases = {
        "deliver": RoleCall(ROLE_VARS, hosts=delivery),
        "deliver again": RoleCall(ROLE_VARS, hosts=delivery),
        # The second certificate's key lies outside the root: through a link, through '..', by an absolute path.
        "key outside the root": RoleCall(
            ROLE_VARS,
            hosts={
                **one("out1", [files_of(hosts["out1"]), files_of(hosts["out1"], private_key_file="live/stolen.pem")]),
                **one("out2", [files_of(hosts["out2"], private_key_file="../out1/archive/privkey1.pem")]),
            },
        ),
        "missing chain file": RoleCall(
            ROLE_VARS, hosts=one("gone", [files_of(hosts["gone"], chain_file="live/no.pem")])
        ),
        "key in the certificate file": RoleCall(
            ROLE_VARS, hosts=one("mixed", [files_of(hosts["mixed"], certificate_file="archive/combined.pem")])
        ),
        "relative path without a root": RoleCall(ROLE_VARS, hosts=one("rel", [files_of(hosts["rel"])], rooted=False)),
        # A survey field mixed up: the key's text where its file's path belongs (the harness scans for it at -vvv).
        "key pasted into the key file option": RoleCall(
            ROLE_VARS, hosts=one("paste", [files_of(hosts["paste"], private_key_file=hosts["paste"].key_pem)])
        ),
        # Retiring renders the paths from the certificate files alone: the key file, gone by then, is not read.
        "deliver to retire": RoleCall(RETIRED_VARS, hosts=one("old", [files_of(hosts["old"])])),
        "retire": RoleCall(
            {**RETIRED_VARS, "cert_distribution_state": "absent"},
            # Another inventory name for the same host directory: a play's host vars are the inventory's.
            hosts={"old-again": host_vars(hosts["old"], [files_of(hosts["old"], private_key_file="live/gone.pem")])},
        ),
    }
    keys = [host.key_pem for host in hosts.values()]
    _cases, run = run_role_cases(ansible, bao, vault_conn, workdir, cases, verbosity=3, secrets=keys)
    return Found(
        hosts=hosts,
        errors={case: per_host(run, case, "error") for case in cases},
        results={case: per_host(run, case, "results") for case in cases},
        output=run.output,
        read_on={task.host for task in run.tasks if task.action == "ansible.builtin.slurp"},
    )


def test_each_host_delivers_its_own_files_read_on_it(found, bao):
    # A local connection shares the controller's files: what tells is that each host ran the reads itself.
    assert {"web1", "web2"} <= found.read_on
    for name in ("web1", "web2"):
        host = found.hosts[name]
        assert found.errors["deliver"][name] is None
        assert [(r["path"], r["changed"]) for r in found.results["deliver"][name]] == [(host.path(), True)]
        data = bao.kv_data(host.path())
        assert data["certificate"] == host.cert_pem
        assert data["private_key"] == host.key_pem
        assert data["chain"] == host.chain_pem
        assert bao.kv_version_numbers(host.path()) == [1]


def test_a_second_run_reads_the_same_files_and_changes_nothing(found, bao):
    for name in ("web1", "web2"):
        assert found.errors["deliver again"][name] is None
        assert [r["changed"] for r in found.results["deliver again"][name]] == [False]
        assert bao.kv_version_numbers(found.hosts[name].path()) == [1]


def test_a_key_file_outside_the_root_on_the_host_is_refused_naming_the_item(found, bao):
    refusal = "lies outside cert_distribution_files_root on the managed host"
    assert found.errors["key outside the root"] == {
        "out1": f"cert_distribution_certs[1].private_key_file: the file {refusal} (symlinks and '..' resolved); "
        "nothing written",
        "out2": f"cert_distribution_certs[0].private_key_file: the file {refusal} (symlinks and '..' resolved); "
        "nothing written",
    }
    # The first certificate of out1 was in order: it is not written either.
    for name in ("out1", "out2"):
        assert metadata(bao, found.hosts[name].path()) is None


def test_a_missing_file_on_the_host_is_refused_naming_the_item(found, bao):
    error = found.errors["missing chain file"]["gone"]
    assert error.startswith("cert_distribution_certs[0].chain_file: no such file on the managed host")
    assert "no.pem" not in error
    assert metadata(bao, found.hosts["gone"].path()) is None


def test_a_key_in_a_certificate_file_is_refused_without_showing_it(found, bao):
    error = found.errors["key in the certificate file"]["mixed"]
    assert error.startswith("cert_distribution_certs[0].certificate_file: the file is not a PEM certificate file")
    assert "PRIVATE KEY-----" not in found.output
    assert metadata(bao, found.hosts["mixed"].path()) is None


def test_a_relative_path_needs_a_root_on_the_host(found, bao):
    error = found.errors["relative path without a root"]["rel"]
    assert "cert_distribution_certs[0].certificate_file: a relative path on the managed host needs" in error
    assert metadata(bao, found.hosts["rel"].path()) is None


def test_a_key_pasted_into_a_file_option_is_refused_before_it_is_shown_or_sent_to_the_host(found, bao):
    # Before: the list of files to read, a fact shown at -v and in every job event, held the key as its path, and
    # realpath got it in its argv on the host. The harness scans the run for the key.
    assert (
        "cert_distribution_certs[0].private_key_file is not a file path (it holds a PEM marker or a line break: not "
        "shown); nothing written"
    ) in found.errors["key pasted into the key file option"]["paste"]
    assert "paste" not in found.read_on
    assert metadata(bao, found.hosts["paste"].path()) is None


def test_absent_reads_only_the_certificate_files_on_the_host(found, bao):
    path = f"{PREFIX}/retired/old.example.com"
    assert found.errors["deliver to retire"]["old"] is None
    assert found.errors["retire"]["old-again"] is None
    assert bao.kv_version_numbers(path) == [1]
    assert current_deleted(bao, path)


def test_the_verbose_run_shows_no_key_read_on_a_host(found):
    # The harness scanned the -vvv output and every task result for each host's key (secrets=); what carried the
    # files' text was hidden.
    assert "Read each file on the host" in found.output
    assert "the output has been hidden" in found.output

"""The cert_distribution role's path template, written every way a user writes it, against a real OpenBao.

Each case sets ``cert_distribution_path_template`` to ``certs/<prefix>/<cn>`` in one place Ansible takes
variables from - plainly, with ``!unsafe``, ``{% raw %}`` or the Go-template form - runs the role, and
checks that the server holds the certificate at exactly that path. Also: private keys in Ansible
Vault-encrypted files reach the secret and no output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import typing as t
import uuid
from pathlib import Path

import pki
import pytest
import yaml
from ansible.parsing.vault import VaultLib, VaultSecret
from leaks import assert_no_leak
from pki import Chain, make_chain
from push_runs import approle
from role_runs import RoleCall, run_role_cases

ROLE = "certautopilot.vault.cert_distribution"
VAULT_PASSWORD = "integration-vault-password"
PLAIN = "certs/{{ tpl_prefix }}/{{ cn }}"
# What the cases that Ansible does not trust as a template (!unsafe, a survey answer) may use: the
# certificate's own variables; PREFIX is replaced by the test's literal prefix.
OWN_ONLY = "certs/PREFIX/{{ cn }}"


def yaml_text(value: t.Any) -> str:
    """JSON is YAML: a file Ansible reads, with nothing tagged."""
    return json.dumps(value, indent=2) + "\n"


def play(**extra: t.Any) -> dict[str, t.Any]:
    return {"name": "Deliver", "hosts": "localhost", "connection": "local", "gather_facts": False, **extra}


def role_play(**role_params: t.Any) -> list[dict]:
    return [play(roles=[{"role": ROLE, **role_params}])]


class Case(t.NamedTuple):
    """Where the template is set: the playbook, files next to it, and more -e values."""

    playbook: str
    files: dict[str, str] = {}
    extra_vars_args: tuple[str, ...] = ()


def cases() -> dict[str, Case]:
    role_only = yaml_text(role_play())
    return {
        "play vars, plain": Case(yaml_text([play(vars={"cert_distribution_path_template": PLAIN}, roles=[ROLE])])),
        # A role parameter would be rendered by the argument validation Ansible runs for a `main` entry point.
        "role parameter, plain": Case(yaml_text(role_play(cert_distribution_path_template=PLAIN))),
        "role entry vars, plain": Case(yaml_text(role_play(vars={"cert_distribution_path_template": PLAIN}))),
        "role parameter, !unsafe": Case(
            "- name: Deliver\n  hosts: localhost\n  connection: local\n  gather_facts: false\n  roles:\n"
            f"    - role: {ROLE}\n      cert_distribution_path_template: !unsafe '{OWN_ONLY}'\n"
        ),
        "include_role vars, plain": Case(
            yaml_text(
                [
                    play(
                        tasks=[
                            {
                                "name": "Run the role",
                                "ansible.builtin.include_role": {"name": ROLE},
                                "vars": {"cert_distribution_path_template": PLAIN},
                            }
                        ]
                    )
                ]
            )
        ),
        "group_vars, plain": Case(
            role_only, files={"group_vars/all.yml": f"cert_distribution_path_template: '{PLAIN}'\n"}
        ),
        "extra vars key=value, plain": Case(role_only, extra_vars_args=(f"cert_distribution_path_template={PLAIN}",)),
        # What AWX writes for a survey answer or a variable prompted at launch: tagged unsafe.
        "AWX survey (extra vars file, !unsafe)": Case(
            role_only,
            files={"extravars.yml": f"cert_distribution_path_template: !unsafe '{OWN_ONLY}'\n"},
            extra_vars_args=("@extravars.yml",),
        ),
        "play vars, !unsafe": Case(
            "- name: Deliver\n  hosts: localhost\n  connection: local\n  gather_facts: false\n"
            f"  vars:\n    cert_distribution_path_template: !unsafe '{OWN_ONLY}'\n  roles:\n    - {ROLE}\n"
        ),
        "play vars, raw": Case(
            yaml_text(
                [play(vars={"cert_distribution_path_template": "{% raw %}" + PLAIN + "{% endraw %}"}, roles=[ROLE])]
            )
        ),
        "play vars, raw around part of it": Case(
            yaml_text(
                [
                    play(
                        vars={
                            "cert_distribution_path_template": "certs/{{ tpl_prefix }}/{% raw %}{{ cn }}{% endraw %}"
                        },
                        roles=[ROLE],
                    )
                ]
            )
        ),
        "play vars, Go-template form": Case(
            yaml_text(
                [play(vars={"cert_distribution_path_template": "certs/{{ .tpl_prefix }}/{{ .cn }}"}, roles=[ROLE])]
            )
        ),
    }


def write_case(directory: Path, case: Case) -> Path:
    directory.mkdir()
    for name, text in case.files.items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_text(text)
    playbook = directory / "site.yml"
    playbook.write_text(case.playbook)
    return playbook


# Where Ansible takes the template from once for a whole run: each of these cases has a run of its own. The
# others are plays of one playbook, each with its own prefix (a play variable, or the literal PREFIX).
RUN_WIDE = ("group_vars, plain", "extra vars key=value, plain", "AWX survey (extra vars file, !unsafe)")


def as_play(where: str, case: Case, prefix: str) -> str:
    """The case's play as YAML text to join with others', named for the case, its prefix a play variable."""
    if case.playbook.lstrip().startswith("["):
        plays = json.loads(case.playbook)
        plays[0]["vars"] = {**plays[0].get("vars", {}), "tpl_prefix": prefix}
        text = yaml.safe_dump(plays, sort_keys=False, width=1000)
    else:  # written by hand for its tag; its template names no tpl_prefix
        text = case.playbook.replace("PREFIX", prefix)
    assert text.startswith("- name: Deliver\n"), text
    return f"- name: {json.dumps('Deliver, ' + where)}\n" + text[len("- name: Deliver\n") :]


@pytest.fixture(scope="module")
def delivered_by_template(bao, ansible, vault_conn, tmp_path_factory) -> dict[str, tuple[str, Chain, t.Any]]:
    """Each case: the path its template should give, the certificate delivered there, and its run."""
    workdir = tmp_path_factory.mktemp("templates")
    run_prefix = f"tpl-{uuid.uuid4().hex[:8]}"
    cn = f"{run_prefix}.example.com"
    chain = make_chain(cn)
    certs = [{"certificate": chain.leaf.cert_pem, "private_key": chain.leaf.key_pem}]
    delivered = {}

    def run(directory: Path, case: Case, **more_vars: str):
        playbook = write_case(directory, case)
        role_vars = {
            **more_vars,
            "cert_distribution_vault": {**vault_conn, **approle(bao)},
            "cert_distribution_certs": certs,
        }
        return ansible.run_playbook(
            playbook, extra_vars=role_vars, extra_vars_args=case.extra_vars_args, cwd=playbook.parent
        )

    for index, where in enumerate(RUN_WIDE):
        prefix = f"{run_prefix}-{index}"
        case = cases()[where]
        case = case._replace(
            playbook=case.playbook.replace("PREFIX", prefix),
            files={name: text.replace("PREFIX", prefix) for name, text in case.files.items()},
        )
        delivered[where] = (f"certs/{prefix}/{cn}", chain, run(workdir / f"wide-{index}", case, tpl_prefix=prefix))
    in_plays = {where: f"{run_prefix}-p{index}" for index, where in enumerate(cases()) if where not in RUN_WIDE}
    playbook = "".join(as_play(where, cases()[where], prefix) for where, prefix in in_plays.items())
    # No tpl_prefix among the extra variables: it would win over each play's.
    joined = run(workdir / "plays", Case(playbook))
    delivered.update({where: (f"certs/{prefix}/{cn}", chain, joined) for where, prefix in in_plays.items()})
    return delivered


@pytest.mark.parametrize("where", list(cases()))
def test_the_path_template_works_as_written(bao, delivered_by_template, where):
    path, chain, run = delivered_by_template[where]

    assert run.rc == 0, run.output
    stored = bao.kv_data(path)
    assert stored is not None, f"nothing at {path}:\n{run.output}"
    assert stored["certificate"] == chain.leaf.cert_pem


def run_refused(ansible, playbook: Path, login: dict, chain: Chain, **options: t.Any):
    """The role on one certificate, in the playbook's directory (for its files), with this login."""
    certs = [{"certificate": chain.leaf.cert_pem, "private_key": chain.leaf.key_pem}]
    return ansible.run_playbook(
        playbook,
        extra_vars={"cert_distribution_vault": login, "cert_distribution_certs": certs},
        cwd=playbook.parent,
        **options,
    )


def test_a_template_naming_an_unknown_variable_says_which_certificate_and_what_it_has(
    bao, ansible, vault_conn, tmp_path
):
    chain = make_chain(f"tpl-{uuid.uuid4().hex[:8]}.example.com")
    playbook = write_case(
        tmp_path / "play",
        Case(yaml_text([play(vars={"cert_distribution_path_template": "x/{{ cname }}"}, roles=[ROLE])])),
    )
    login = {**vault_conn, **approle(bao)}
    mark = bao.audit_mark()

    run = run_refused(ansible, playbook, login, chain)

    assert run.rc != 0
    assert "rendering the path template for cert_distribution_certs[0] failed" in run.output
    assert "cname" in run.output and "fingerprint_sha256" in run.output, run.output
    assert bao.audit_requests(mark) == [], "nothing may reach the server"


def test_a_survey_answer_cannot_run_code_or_read_variables_through_the_template(bao, ansible, vault_conn, tmp_path):
    """An AWX survey answer is data: a template in it gets the certificate's placeholders, no Jinja."""
    marker = tmp_path / "ran"
    chain = make_chain(f"tpl-{uuid.uuid4().hex[:8]}.example.com")
    login = {**vault_conn, **approle(bao)}
    attempts = {
        "code": f"certs/{{{{ lookup('pipe', 'touch {marker}') }}}}{{{{ cn }}}}",
        "variable": "certs/{{ cert_distribution_vault.secret_id }}/{{ cn }}",
        # A trusted template that inserts the answer: the answer stays text, and a path holding it is refused.
        "indirect": "certs/x/{{ cn }}",
    }
    for what, template in attempts.items():
        indirect = {"cert_distribution_path_template": "{{ path_template }}"} if what == "indirect" else {}
        answer = "path_template" if what == "indirect" else "cert_distribution_path_template"
        playbook = write_case(
            tmp_path / what,
            Case(
                yaml_text([play(vars=indirect, roles=[ROLE])]),
                files={"extravars.yml": f"{answer}: !unsafe {json.dumps(template)}\n"},
            ),
        )
        mark = bao.audit_mark()

        run = run_refused(ansible, playbook, login, chain, extra_vars_args=("@extravars.yml",))

        assert run.rc != 0, run.output
        refusals = ("does not trust as a template", "own variables", "still holds template syntax")
        assert any(refusal in run.output for refusal in refusals), run.output
        assert not marker.exists(), "the survey answer ran a command on the controller"
        assert bao.audit_requests(mark) == [], f"{what}: nothing may reach the server"


def test_the_role_still_checks_its_parameters_before_anything_is_sent(bao, ansible, vault_conn, tmp_path):
    """The role validates its own spec (not Ansible's `main` entry point): a wrong value given next to a plain
    template is refused by name, the template does not break the check, and nothing reaches the server."""
    chain = make_chain(f"tpl-{uuid.uuid4().hex[:8]}.example.com")
    login = {**vault_conn, **approle(bao)}
    wrong = {
        "cert_distribution_state": ("presnt", "cert_distribution_state must be one of"),
        "cert_distribution_validate": ("maybe", "cert_distribution_validate"),
        "cert_distribution_rollback_items": ([{"version": 2}], "path"),
    }
    for option, (value, refusal) in wrong.items():
        playbook = write_case(
            tmp_path / option,
            Case(yaml_text(role_play(cert_distribution_path_template=PLAIN, **{option: value}))),
        )
        mark = bao.audit_mark()

        run = run_refused(ansible, playbook, login, chain)

        assert run.rc != 0, f"{option}: {run.output}"
        assert "Validation of arguments failed" in run.output and refusal in run.output, f"{option}: {run.output}"
        assert "is undefined" not in run.output, run.output
        assert bao.audit_requests(mark) == [], f"{option}: nothing may reach the server"


# -- private keys in Ansible Vault-encrypted files ----------------------------------------------


def encrypted_key_files(directory: Path, chain: Chain) -> tuple[Path, Path]:
    """The leaf's key encrypted with Ansible Vault, and the password file that opens it."""
    vault = VaultLib([("default", VaultSecret(VAULT_PASSWORD.encode()))])
    directory.mkdir(parents=True, exist_ok=True)
    key_file = directory / "key.pem.vault"
    key_file.write_bytes(vault.encrypt(chain.leaf.key_pem))
    password_file = directory / "vault-password"
    password_file.write_text(VAULT_PASSWORD + "\n")
    return key_file, password_file


def test_a_vault_encrypted_key_file_is_decrypted_on_the_controller_and_never_shown(bao, ansible, vault_conn, tmp_path):
    prefix = f"enc-{uuid.uuid4().hex[:8]}"
    names = [f"{prefix}-{index}.example.com" for index in range(3)]
    chains = [make_chain(name) for name in names]
    certs = []
    for index, chain in enumerate(chains):
        key_file, password_file = encrypted_key_files(tmp_path / f"c{index}", chain)
        (tmp_path / f"c{index}" / "cert.pem").write_text(chain.leaf.cert_pem)
        certs.append({"certificate_file": str(tmp_path / f"c{index}" / "cert.pem"), "private_key_file": str(key_file)})
    auth = approle(bao)
    playbook = write_case(tmp_path / "play", Case(yaml_text(role_play())))

    run = ansible.run_playbook(
        playbook,
        extra_vars={
            "cert_distribution_vault": {**vault_conn, **auth},
            "cert_distribution_certs": certs,
            "cert_distribution_path_template": f"certs/{prefix}/{{{{ cn }}}}",
        },
        diff=True,
        verbosity=3,
        env={"ANSIBLE_VAULT_PASSWORD_FILE": str(password_file)},
        # The keys reach the run in encrypted files: the harness scans for them as given here.
        secrets=[chain.leaf.key_pem for chain in chains],
    )

    assert run.rc == 0, run.output
    for name, chain in zip(names, chains):
        stored = bao.kv_data(f"certs/{prefix}/{name}")
        assert stored is not None and stored["private_key"] == chain.leaf.key_pem


# -- the controller's trust boundary: certificate names, file options, display settings ----------------------


@pytest.mark.parametrize(
    ("cn", "templates"),
    [
        pytest.param("team-b/api.example.com", ("{{ cn }}", "{{ .cn }}"), id="slash"),
        # No "/" in the CN: the template's filter makes one of it.
        pytest.param("team-b%2Fapi.example.com", ("{{ cn | urldecode }}",), id="slash-a-filter-makes"),
    ],
)
def test_a_certificate_name_cannot_add_a_path_segment(bao, ansible, vault_conn, tmp_path, cn, templates):
    prefix = f"seg-{uuid.uuid4().hex[:8]}"
    # Another team's secret, which a CN "team-b/api..." would reach through certs/PREFIX/{{ cn }}.
    victim = f"certs/{prefix}/team-b/api.example.com"
    status, body = bao.api("POST", f"secret/data/{victim}", {"data": {"certificate": "team-b's"}})
    assert status == 200, body
    certs = []
    for index, name in enumerate(["ok.example.com", "other.example.com", cn]):
        leaf = pki.write_leaf(tmp_path / f"c{index}", name, sans=("api.example.com",))
        assert leaf.cert.subject.rfc4514_string().startswith(f"CN={name},")
        certs.append(
            {
                "certificate_file": str(tmp_path / f"c{index}" / "cert.pem"),
                "private_key_file": str(tmp_path / f"c{index}" / "key.pem"),
            }
        )
    mark = bao.audit_mark()
    # Named by index: a task name is a template too.
    calls = {
        f"template {index}": RoleCall(
            {"cert_distribution_certs": certs, "cert_distribution_path_template": f"certs/{prefix}/{form}"}
        )
        for index, form in enumerate(templates)
    }

    cases, _run = run_role_cases(ansible, bao, vault_conn, tmp_path, calls)

    for case in cases.values():
        assert case.failed, case.output
        assert "cert_distribution_certs[2]: the certificate's cn would add a path segment" in case.output, case.output
    writes = [e for e in bao.audit_requests(mark, path_prefix="secret/") if e["request"]["operation"] != "read"]
    assert writes == []
    assert bao.kv_versions("secret", victim).keys() == {"1"}
    assert bao.kv_data(victim) == {"certificate": "team-b's"}
    assert bao.kv_data(f"certs/{prefix}/ok.example.com") is None


def test_a_file_option_gives_only_what_it_names_and_shows_nothing_of_another_file(bao, ansible, vault_conn, tmp_path):
    prefix = f"files-{uuid.uuid4().hex[:8]}"
    leaf = pki.write_leaf(tmp_path / "c", f"{prefix}.example.com")
    app_conf = tmp_path / "app.conf"
    app_conf.write_text(f"db_password={prefix}-hunter2\n")
    item = {"certificate_file": str(tmp_path / "c" / "cert.pem"), "private_key_file": str(tmp_path / "c" / "key.pem")}
    template = {"cert_distribution_path_template": f"certs/{prefix}/{{{{ cn }}}}"}
    mark = bao.audit_mark()

    # What each refusal says: the option and the item, and neither the path nor the file's text.
    refusals = {
        "chain_file": (
            {**item, "chain_file": str(app_conf), "path": f"certs/{prefix}/chain"},
            "chain_file: the file is not a PEM certificate file",
        ),
        "certificate_file": (
            {**item, "certificate_file": str(app_conf), "path": f"certs/{prefix}/certificate"},
            "certificate_file: the file is not a PEM certificate file",
        ),
        "private_key_file": (
            {**item, "private_key_file": str(app_conf), "path": f"certs/{prefix}/key"},
            "certificates[1].private_key_file: the file does not hold exactly one PEM private key",
        ),
    }
    calls = {
        option: RoleCall({**template, "cert_distribution_certs": [item, bad]})
        for option, (bad, _message) in refusals.items()
    }
    # The key reaches the run in a file: the harness scans for it as given here.
    cases, run = run_role_cases(
        ansible, bao, vault_conn, tmp_path, calls, verbosity=3, diff=True, secrets=[leaf.key_pem]
    )

    for option, (_bad, refusal) in refusals.items():
        case = cases[option]
        assert case.failed, f"{option}: {case.output}"
        assert refusal in case.output, f"{option}: {case.output}"
        assert option == "private_key_file" or "cert_distribution_certs[1]" in case.output, case.output
    results = json.dumps([task.result for task in run.tasks], default=str)
    assert f"{prefix}-hunter2" not in run.output + results
    assert [e for e in bao.audit_requests(mark, path_prefix="secret/") if e["request"]["operation"] != "read"] == []


def test_files_root_confines_every_file_option_of_the_list(bao, ansible, vault_conn, tmp_path):
    prefix = f"root-{uuid.uuid4().hex[:8]}"
    root, outside = tmp_path / "root", tmp_path / "outside"
    pki.write_leaf(root / "mine", f"{prefix}.example.com")
    theirs = pki.write_leaf(outside, f"{prefix}-theirs.example.com")
    (root / "theirs-key.pem").symlink_to(outside / "key.pem")
    mine = {"certificate_file": "mine/cert.pem", "private_key_file": "mine/key.pem", "chain_file": "mine/chain.pem"}
    common = {
        "cert_distribution_path_template": f"certs/{prefix}/{{{{ cn }}}}",
        "cert_distribution_files_root": str(root),
        # The key is not the certificate's: only files_root keeps this survey answer from storing it.
        "cert_distribution_validate": False,
    }
    mark = bao.audit_mark()

    escapes = {
        "symlink": {**mine, "private_key_file": "theirs-key.pem"},
        "dotdot": {**mine, "private_key_file": "../outside/key.pem"},
        "absolute": {**mine, "private_key_file": str(outside / "key.pem")},
        "certificate": {**mine, "certificate_file": "../outside/cert.pem"},
    }
    calls = {escape: RoleCall({**common, "cert_distribution_certs": [mine, bad]}) for escape, bad in escapes.items()}
    # Their key reaches the run only in a file: the harness scans for it as given here.
    cases, run = run_role_cases(ansible, bao, vault_conn, tmp_path, calls, verbosity=3, secrets=[theirs.key_pem])

    for escape, case in cases.items():
        assert case.failed, f"{escape}: {case.output}"
        assert "the file lies outside files_root" in case.output, f"{escape}: {case.output}"
    assert "outside/" not in run.output and "theirs-key" not in run.output, run.output
    assert [e for e in bao.audit_requests(mark, path_prefix="secret/") if e["request"]["operation"] != "read"] == []

    delivered, run = run_role_cases(
        ansible, bao, vault_conn, tmp_path, {"mine": RoleCall({**common, "cert_distribution_certs": [mine]})}
    )
    assert not delivered["mine"].failed, run.output
    stored = bao.kv_data(f"certs/{prefix}/{prefix}.example.com")
    assert stored is not None and stored["private_key"] == (root / "mine" / "key.pem").read_text()


def run_as_awx_job(ansible, directory: Path, playbook: str, extra_vars: dict, env: dict) -> tuple[int, list[str]]:
    """The playbook run by ansible-runner, as AWX runs a job: its rc, and its stdout and every job event as text."""
    bin_dir = Path(sys.executable).parent
    (directory / "project").mkdir(parents=True)
    (directory / "project" / "play.yml").write_text(playbook)
    (directory / "inventory").mkdir()
    (directory / "inventory" / "hosts").write_text(
        f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n"
    )
    (directory / "env").mkdir()
    (directory / "env" / "envvars").write_text(
        json.dumps({"ANSIBLE_COLLECTIONS_PATH": str(ansible.collections_path), **env})
    )
    (directory / "env" / "extravars").write_text(json.dumps(extra_vars))
    clean = {key: value for key, value in os.environ.items() if not key.startswith(("VAULT_", "BAO_", "ANSIBLE_"))}
    clean["PATH"] = f"{bin_dir}{os.pathsep}{clean.get('PATH', '')}"
    completed = subprocess.run(  # noqa: S603
        [str(bin_dir / "ansible-runner"), "run", str(directory), "-p", "play.yml", "--ident", "job"],
        env=clean,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    artifacts = directory / "artifacts" / "job"
    texts = [completed.stdout, completed.stderr]
    texts += [path.read_text() for path in sorted((artifacts / "job_events").glob("*.json"))]
    return int((artifacts / "rc").read_text()), texts


def test_display_args_to_stdout_shows_no_key_and_no_secret_id_in_job_events(bao, ansible, vault_conn, tmp_path):
    prefix = f"args-{uuid.uuid4().hex[:8]}"
    chain = make_chain(f"{prefix}.example.com")
    stranger = make_chain(f"{prefix}-other.example.com")
    auth = approle(bao)
    item = {"certificate": chain.leaf.cert_pem, "private_key": chain.leaf.key_pem, "chain": chain.chain_pem}
    # The refused list's second item has another certificate's key: the push refuses it, and says why.
    mismatched = {**item, "certificate": stranger.leaf.cert_pem, "path": f"certs/{prefix}/mismatch"}
    common = {
        "cert_distribution_vault": {**vault_conn, **auth},
        "cert_distribution_path_template": f"certs/{prefix}/{{{{ cn }}}}",
    }
    env = {"ANSIBLE_DISPLAY_ARGS_TO_STDOUT": "True"}
    # One job: the first play delivers, the second is refused (and fails the job).
    plays = [
        play(vars={"cert_distribution_certs": "{{ delivered_certs }}"}, roles=[ROLE]),
        play(name="Refuse", vars={"cert_distribution_certs": "{{ refused_certs }}"}, roles=[ROLE]),
    ]
    lists = {"delivered_certs": [item], "refused_certs": [item, mismatched]}

    rc, texts = run_as_awx_job(ansible, tmp_path / "job", yaml_text(plays), {**common, **lists}, env)

    assert f"1 of 1 certificate secret(s) changed: certs/{prefix}/{prefix}.example.com" in texts[0], texts[0]
    assert bao.kv_data(f"certs/{prefix}/{prefix}.example.com")["private_key"] == chain.leaf.key_pem
    assert rc != 0, texts[0]
    assert "private key does not match the certificate" in texts[0], texts[0]
    assert bao.kv_data(f"certs/{prefix}/mismatch") is None
    assert_no_leak(texts, chain.leaf.key_pem, auth["secret_id"])


def test_display_args_to_stdout_shows_no_secret_id_in_any_state_of_the_role(bao, ansible, vault_conn, tmp_path):
    """Every module task of the role (push, prune's listing and retirement, report, rollback, absent) gets
    cert_distribution_vault through module_defaults: each is hidden when Ansible would print its arguments."""
    prefix = f"certs/args-states-{uuid.uuid4().hex[:8]}"
    first, renewed = make_chain(f"a.{prefix[6:]}.example.com"), make_chain(f"a.{prefix[6:]}.example.com")
    stale = make_chain(f"stale.{prefix[6:]}.example.com")
    auth = approle(bao)
    path = f"{prefix}/a.{prefix[6:]}.example.com"

    def role(state: str, **role_vars: t.Any) -> dict[str, t.Any]:
        return {
            "name": f"Role, state {state}",
            "ansible.builtin.include_role": {"name": ROLE},
            "vars": {"cert_distribution_state": state, **role_vars},
        }

    def certs(chain) -> list[dict[str, str]]:
        return [{"certificate": chain.leaf.cert_pem, "private_key": chain.leaf.key_pem, "chain": chain.chain_pem}]

    prune = {"cert_distribution_prune": True, "cert_distribution_prune_prefix": prefix}
    tasks = [
        role("present", cert_distribution_certs=certs(first) + [{**certs(stale)[0], "path": f"{prefix}/stale"}]),
        role("present", cert_distribution_certs=certs(renewed), **prune),
        role("report", cert_distribution_report_prefix=prefix),
        role("rollback", cert_distribution_rollback_items=[{"path": path, "version": 1, "current_version": 2}]),
        role("absent", cert_distribution_certs=certs(first)),
    ]
    common = {
        "cert_distribution_vault": {**vault_conn, **auth},
        "cert_distribution_owner": "args-team",
        "cert_distribution_path_template": f"{prefix}/{{{{ cn }}}}",
    }

    rc, texts = run_as_awx_job(
        ansible, tmp_path / "job", yaml_text([play(tasks=tasks)]), common, {"ANSIBLE_DISPLAY_ARGS_TO_STDOUT": "True"}
    )

    assert rc == 0, texts[0][-2000:]
    # Each state ran: the stale secret was pruned, the rollback wrote version 3, absent soft-deleted it.
    assert bao.kv_data(f"{prefix}/stale") is None and bao.kv_data(path) is None
    assert max(int(number) for number in bao.kv_versions("secret", path)) == 3
    assert_no_leak(texts, auth["secret_id"], first.leaf.key_pem, renewed.leaf.key_pem, stale.leaf.key_pem)

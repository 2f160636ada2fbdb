"""The matrix smoke: what must hold on every ansible-core the collection supports (noxfile.py runs it on each).

One ansible-playbook run (tests/matrix/smoke.yml) drives every module, the push's action plugin (keys read from
files on the controller, one of them Ansible Vault-encrypted), the cert_batch lookup, the filters and the role
(its path template written four ways, the lifecycle states); then the server is read. Each module's main() also
runs in-process, through the harness's patch_module_args (a shim on ansible-core 2.17 and 2.18). The whole
suite (tests/integration) runs on .venv's core; this is the part of it each other core must pass too.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ansible.parsing.vault import VaultLib, VaultSecret
from pki import Issued, make_chain
from vault_args import approle_args

PLAYBOOK = Path(__file__).resolve().with_name("smoke.yml")
PREFIX = "certs/smoke"
# One certificate per use in the playbook: single push (first, renewed), batch (a, b), role (role, vaulted),
# lifecycle (kept, old).
NAMES = ("first", "renewed", "a", "b", "role", "vaulted", "kept", "old")
VAULT_PASSWORD = "smoke-ansible-vault-password"


def write_private(path: Path, content: str | bytes) -> None:
    if isinstance(content, str):
        path.write_text(content)
    else:
        path.write_bytes(content)
    path.chmod(0o600)


def write_inputs(directory: Path, leaves: dict[str, Issued], login: dict[str, str]) -> tuple[Path, list[str]]:
    """The playbook, its key files, its two extra vars files and the vault password file; returns the password file
    and the extra vars arguments."""
    files = directory / "files"
    files.mkdir()
    vault = VaultLib([("default", VaultSecret(VAULT_PASSWORD.encode()))])
    for name, leaf in leaves.items():
        if name == "vaulted":
            write_private(files / "vaulted.key.vault", vault.encrypt(leaf.key_pem))
        else:
            write_private(files / f"{name}.key", leaf.key_pem)
    shutil.copy(PLAYBOOK, directory / PLAYBOOK.name)
    variables = {
        "smoke_vault": login,
        "smoke_prefix": PREFIX,
        "smoke_files": str(files),
        "smoke_survey_file": str(directory / "survey.yml"),
        "smoke_certs": {name: leaf.cert_pem for name, leaf in leaves.items()},
    }
    write_private(directory / "smoke-vars.json", json.dumps(variables))
    # What AWX writes for a survey answer: tagged unsafe.
    (directory / "survey.yml").write_text(f"cert_distribution_path_template: !unsafe '{PREFIX}/survey/{{{{ cn }}}}'\n")
    write_private(directory / "vault-password", VAULT_PASSWORD + "\n")
    return directory / "vault-password", ["@smoke-vars.json"]


def test_every_module_the_lookup_the_filters_and_the_role_in_one_playbook_run(bao, ansible, tmp_path):
    leaves = {name: make_chain(f"{name}.smoke.example.com").leaf for name in NAMES}
    login = approle_args(bao)
    password_file, extra_vars_args = write_inputs(tmp_path, leaves, login)

    run = ansible.run_playbook(
        tmp_path / PLAYBOOK.name,
        extra_vars_args=extra_vars_args,
        diff=True,
        verbosity=3,
        env={"ANSIBLE_VAULT_PASSWORD_FILE": str(password_file)},
        cwd=tmp_path,
        # The extra vars files and the key files hold these; the harness scans for them too.
        secrets=[login["secret_id"], VAULT_PASSWORD, *(leaf.key_pem for leaf in leaves.values())],
    )

    assert run.rc == 0, run.output
    assert [task.task for task in run.tasks if task.status not in ("ok", "skipped")] == [], run.output
    asserted = [task for task in run.tasks if task.action == "ansible.builtin.assert"]
    assert len(asserted) == 2 and all(task.status == "ok" for task in asserted), run.output
    single = f"{PREFIX}/single"
    # Created, renewed, rolled back (version 3, which the playbook saw restore version 1), then retired.
    assert bao.kv_version_numbers(single) == [1, 2, 3]
    assert bao.kv_data(single) is None
    assert bao.kv_data(single, version=1)["private_key"] == leaves["first"].key_pem
    assert bao.kv_data(single, version=2)["certificate"] == leaves["renewed"].cert_pem
    for name in ("a", "b"):
        stored = bao.kv_data(f"{PREFIX}/batch/{name}.smoke.example.com")
        assert (stored["certificate"], stored["private_key"]) == (leaves[name].cert_pem, leaves[name].key_pem)
    for written_as in ("plain", "unsafe", "raw", "survey"):
        stored = bao.kv_data(f"{PREFIX}/{written_as}/role.smoke.example.com")
        assert stored is not None, f"the role with the template written {written_as} delivered nothing"
        assert (stored["certificate"], stored["private_key"]) == (leaves["role"].cert_pem, leaves["role"].key_pem)
    assert bao.kv_data(f"{PREFIX}/vaulted/vaulted.smoke.example.com")["private_key"] == leaves["vaulted"].key_pem
    # Pruned, then retired by the absent state: both soft-deleted, the history kept.
    for name in ("old", "kept"):
        path = f"{PREFIX}/life/{name}.smoke.example.com"
        assert bao.kv_version_numbers(path) == [1] and bao.kv_data(path) is None


def test_each_module_runs_in_process_on_this_core(modules, bao):
    login = approle_args(bao)
    path = f"{PREFIX}/in-process"
    first, renewed = (make_chain(f"{name}.in-process.example.com").leaf for name in ("first", "renewed"))

    def push(leaf: Issued, **options):
        args = {**login, "path": path, "certificate": leaf.cert_pem, "private_key": leaf.key_pem, "owner": "inproc"}
        return modules.run_module("vault_cert_push", {**args, **options.pop("args", {})}, **options)

    refused = push(first, args={"path": "certs/{{ host }}"})
    created = push(first)
    unchanged = push(first)
    preview = push(renewed, check=True, diff=True)
    renewal = push(renewed)
    health = modules.run_module("vault_health", {**login, "mount": "secret", "path": path, "check_rollback": True})
    info = modules.run_module("vault_cert_info", {**login, "paths": [path], "owner": "inproc"})
    rollback = modules.run_module(
        "vault_cert_rollback", {**login, "path": path, "version": 1, "current_version": 2, "owner": "inproc"}
    )
    retire = modules.run_module(
        "vault_cert_retire", {**login, "path": path, "owner": "inproc", "current_version": 3}, check=True
    )

    assert refused.failed and "path" in refused.msg and "host" not in refused.msg
    assert (created.changed, created.result["version"]) == (True, 1), created.msg
    assert (unchanged.changed, unchanged.result["version"]) == (False, 1), unchanged.msg
    assert preview.changed and "diff" in preview.result, preview.msg
    assert (renewal.changed, renewal.result["version"]) == (True, 2), renewal.msg
    assert not health.failed and all(check["ok"] for check in health.result["checks"]), health.msg
    assert [(item["status"], item["owner"]) for item in info.result["certificates"]] == [("ok", "inproc")], info.msg
    assert (rollback.result["restored_version"], rollback.result["version"]) == (1, 3), rollback.msg
    assert retire.changed and not retire.failed, retire.msg
    # The refusal and the previews wrote nothing: three versions, the last live and version 1's data.
    assert bao.kv_version_numbers(path) == [1, 2, 3]
    assert bao.kv_data(path) == bao.kv_data(path, version=1)

"""Every module's EXAMPLES, run as a playbook against the real OpenBao server, so they cannot rot.

Each module's EXAMPLES text is read from its source (no import) and wrapped,
verbatim, comments and all, into one play on localhost. The
environment-specific variables the examples use (`vault_url`,
`vault_ca_cert`, `vault_role_id`, `vault_secret_id`, `vault_token`,
`vault_jwt_file`) come from a vars file with the test server's values; the
certificate files they look up (`example.com.crt`, ...) are in the playbook's
files/ directory. Every task must succeed (none skipped, none failed), no
secret may show in the output, and the server is then checked for what the
examples claim to do. The same playbooks must pass
`ansible-lint --profile production`, as the collection does.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import typing as t
from pathlib import Path

import pki
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
MODULES_DIR = REPO / "plugins" / "modules"
MODULES = sorted(path.stem for path in MODULES_DIR.glob("*.py") if path.stem != "__init__")

# The variables the examples may use: anything else is an undocumented prerequisite.
EXAMPLE_VARIABLES = {"vault_url", "vault_ca_cert", "vault_role_id", "vault_secret_id", "vault_token", "vault_jwt_file"}
# The secrets the examples write; reset before and after each example run, since other tests expect them absent.
EXAMPLE_PATHS = (
    "certs/example.com",
    "certs/www.example.com",
    "certs/a.example.com",
    "certs/b.example.com",
    "certs/haproxy/example.com",
    "certs/team-web/example.com",
)


def module_examples(module: str) -> str:
    """The EXAMPLES string of a module, read from its source without importing it."""
    tree = ast.parse((MODULES_DIR / f"{module}.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(target, "id", None) == "EXAMPLES" for target in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{module} has no EXAMPLES")


def example_tasks(module: str) -> list[dict[str, t.Any]]:
    tasks = yaml.safe_load(module_examples(module))
    assert isinstance(tasks, list), f"{module} EXAMPLES is not a task list"
    assert tasks, f"{module} EXAMPLES is empty"
    return tasks


def _write_certificate_files(files: Path) -> dict[str, pki.Issued]:
    """The files the examples look up; returns the leaf of each name (example.com, www.example.com, ...)."""
    files.mkdir(parents=True, exist_ok=True)
    leaves = {}
    for cn in ("example.com", "www.example.com", "a.example.com", "b.example.com"):
        chain = pki.make_chain(cn)
        (files / f"{cn}.crt").write_text(chain.leaf.cert_pem)
        (files / f"{cn}.key").write_text(chain.leaf.key_pem)
        (files / f"{cn}.key").chmod(0o600)
        leaves[cn] = chain.leaf
        (files / "intermediate.crt").write_text(chain.intermediate.cert_pem)
    return leaves


def _reset_example_secrets(bao) -> None:
    for path in EXAMPLE_PATHS:
        status, body = bao.api("DELETE", f"secret/metadata/{path}")
        assert status in (204, 404), body


def _new_token(bao) -> str:
    status, body = bao.api("POST", "auth/token/create", {"policies": ["certs"], "ttl": "5m", "no_parent": True})
    assert status == 200, body
    return body["auth"]["client_token"]


def examples_playbook(module: str, *, vars_file: str | None = None) -> str:
    """The module's EXAMPLES text, verbatim (comments and all), as the tasks of one play on localhost."""
    header = [
        "---",
        f"- name: EXAMPLES of certautopilot.vault.{module}",
        "  hosts: localhost",
        "  gather_facts: false",
    ]
    if vars_file:
        header += ["  vars_files:", f"    - {vars_file}"]
    header.append("  tasks:")
    body = [("    " + line) if line.strip() else "" for line in module_examples(module).strip("\n").splitlines()]
    return "\n".join(header + body) + "\n"


class ExampleRun:
    """One module's EXAMPLES as a playbook in its own directory, with the variables and files it needs."""

    def __init__(self, module: str, workdir: Path, bao) -> None:
        self.module = module
        self.dir = workdir / module
        self.leaves = _write_certificate_files(self.dir / "files")
        jwt_file = self.dir / "sa-token"
        jwt_file.write_text(bao.sign_jwt(sub="system:serviceaccount:certs:pusher"))
        jwt_file.chmod(0o600)
        self.secrets = {
            "vault_secret_id": bao.new_approle_secret_id("certs"),
            "vault_token": _new_token(bao),
            "vault_jwt": jwt_file.read_text(),
        }
        variables = {
            "vault_url": bao.addr,
            "vault_ca_cert": bao.ca_cert,
            "vault_role_id": bao.role_ids["certs"],
            "vault_secret_id": self.secrets["vault_secret_id"],
            "vault_token": self.secrets["vault_token"],
            "vault_jwt_file": str(jwt_file),
        }
        assert set(variables) == EXAMPLE_VARIABLES
        # The variables hold credentials: only we read the file.
        vars_file = self.dir / "vault-vars.json"
        vars_file.write_text(json.dumps(variables))
        vars_file.chmod(0o600)
        self.playbook = self.dir / "examples.yml"
        self.playbook.write_text(examples_playbook(module, vars_file=vars_file.name))

    def run(self, ansible):
        # The keys (in files) and the credentials (in a vars file) reach the run another way than the playbook's
        # text: the harness scans for them as given here.
        secret_texts = [leaf.key_pem for leaf in self.leaves.values()] + list(self.secrets.values())
        run = ansible.run_playbook(self.playbook, cwd=self.dir, secrets=secret_texts)
        assert run.rc == 0, f"EXAMPLES of {self.module} failed:\n{run.output}"
        ran = {task.task: task for task in run.tasks}
        for name in (task["name"] for task in example_tasks(self.module)):
            assert name in ran, f"example task {name!r} did not run:\n{run.output}"
            assert ran[name].status == "ok", f"example task {name!r}: {ran[name].status}\n{run.output}"
        return run


@pytest.fixture
def example_secrets(bao) -> t.Iterator[None]:
    _reset_example_secrets(bao)
    yield
    _reset_example_secrets(bao)


@pytest.mark.parametrize("module", MODULES)
def test_examples_use_only_the_variables_their_header_explains(module):
    text = module_examples(module)
    header = text.split("\n- name:")[0]
    registered = {task["register"] for task in example_tasks(module) if "register" in task}
    # The first name in each {{ ... }} expression: a variable, a registered result or lookup().
    used = set(re.findall(r"{{\s*([A-Za-z_]\w*)", text)) - {"lookup"}

    undocumented = used - registered - EXAMPLE_VARIABLES
    assert not undocumented, f"{module} EXAMPLES use variables no test sets: {sorted(undocumented)}"
    unexplained = [name for name in used & EXAMPLE_VARIABLES if name not in header]
    assert not unexplained, f"{module} EXAMPLES' header comment does not explain {unexplained}"


def test_vault_cert_push_examples_run(bao, ansible, tmp_path, example_secrets):
    example = ExampleRun("vault_cert_push", tmp_path, bao)

    run = example.run(ansible)

    delivered = run.task("Deliver a certificate with AppRole").result
    assert delivered["changed"] is True
    assert (delivered["version"], delivered["previous_version"]) == (1, None)
    # The check-mode preview wrote nothing: still one version.
    preview = next(task for task in run.tasks if task.task.startswith("Preview the same push"))
    assert preview.result["changed"] is False
    assert "diff" in preview.result
    assert list(bao.kv_versions("secret", "certs/example.com")) == ["1"]
    data = bao.kv_data("certs/example.com")
    assert set(data) == {"certificate", "private_key", "chain", "fullchain"}
    assert data["certificate"] == example.leaves["example.com"].cert_pem
    assert data["private_key"].strip() == example.leaves["example.com"].key_pem.strip()

    cert_only = bao.kv_data("certs/www.example.com")
    assert set(cert_only) == {"tls.crt", "tls-fullchain.crt"}
    assert cert_only["tls.crt"] == example.leaves["www.example.com"].cert_pem

    batch = run.task("Deliver a batch with one login, JWT auth set once with module_defaults").result
    assert [item["path"] for item in batch["results"]] == ["certs/a.example.com", "certs/b.example.com"]
    for cn in ("a.example.com", "b.example.com"):
        assert bao.kv_data(f"certs/{cn}")["certificate"] == example.leaves[cn].cert_pem

    policy = run.task("Keep 30 versions of the certificate for rollback, each for at most a year").result
    assert policy["changed_fields"] == ["max_versions", "delete_version_after"]
    metadata = bao.api("GET", "secret/metadata/certs/example.com")[1]["data"]
    assert (metadata["max_versions"], metadata["delete_version_after"]) == (30, "8760h0m0s")
    # No owner given there: no mark.
    assert not metadata["custom_metadata"]
    owned = bao.api("GET", "secret/metadata/certs/team-web/example.com")[1]["data"]
    assert owned["custom_metadata"] == {"managed_by": "certautopilot.vault", "certautopilot_owner": "team-web"}
    haproxy = bao.kv_data("certs/haproxy/example.com")
    assert list(haproxy) == ["pem"]
    assert haproxy["pem"].startswith(example.leaves["example.com"].cert_pem)
    assert haproxy["pem"].rstrip().endswith(example.leaves["example.com"].key_pem.strip())


def test_vault_cert_rollback_examples_run(bao, ansible, tmp_path, example_secrets):
    # The examples undo a renewal: the secret must already hold an earlier certificate.
    earlier = pki.make_chain("example.com").leaf
    status, body = bao.api(
        "POST",
        "secret/data/certs/example.com",
        {"data": {"certificate": earlier.cert_pem, "private_key": earlier.key_pem}},
    )
    assert status == 200, body
    example = ExampleRun("vault_cert_rollback", tmp_path, bao)

    run = example.run(ansible)

    undone = run.task("Undo exactly that push, unless someone wrote after it").result
    assert (undone["previous_version"], undone["restored_version"], undone["version"]) == (2, 1, 3)
    further = run.task("Roll back to the previous live version, with a token").result
    assert (further["previous_version"], further["restored_version"], further["version"]) == (3, 2, 4)
    assert list(bao.kv_versions("secret", "certs/example.com")) == ["1", "2", "3", "4"]
    for restored, original in ((3, 1), (4, 2)):
        assert bao.kv_data("certs/example.com", version=original) is not None
        assert bao.kv_data("certs/example.com", version=restored) == bao.kv_data("certs/example.com", version=original)
    assert bao.kv_data("certs/example.com")["certificate"] == example.leaves["example.com"].cert_pem


def test_vault_health_examples_run(bao, ansible, tmp_path, example_secrets):
    # The min_versions example checks a secret with its own max_versions (see its comment): an operator's setup.
    status, body = bao.api("POST", "secret/metadata/certs/example.com", {"max_versions": 20})
    assert status in (200, 204), body
    example = ExampleRun("vault_health", tmp_path, bao)

    run = example.run(ansible)

    health = run.task("Can this AppRole push and roll back certs/example.com?").result
    assert health["changed"] is False
    assert {"read", "create", "update"} <= set(health["capabilities"])
    assert all(check["ok"] for check in health["checks"])
    versions = run.task("Does the existing secret keep at least 10 versions, enough for the rollback window?").result
    assert versions["max_versions"] == 20
    # Nothing was written.
    assert bao.kv_versions("secret", "certs/example.com") == {}


def test_vault_cert_info_examples_run(bao, ansible, tmp_path, example_secrets):
    # The fail_on example reads two secrets that must hold certificates far from expiry (90 days, over 14).
    for cn in ("example.com", "www.example.com"):
        leaf = pki.make_chain(cn).leaf
        status, body = bao.api("POST", f"secret/data/certs/{cn}", {"data": {"certificate": leaf.cert_pem}})
        assert status == 200, body
    example = ExampleRun("vault_cert_info", tmp_path, bao)

    run = example.run(ansible)

    inventory = run.task("Report every certificate under certs/ (a read-only policy is enough)").result
    assert inventory["changed"] is False
    statuses = {item["path"]: item["status"] for item in inventory["certificates"]}
    assert statuses["certs/example.com"] == statuses["certs/www.example.com"] == "ok"
    checked = run.task("Fail the pipeline when a certificate expires within 14 days, or has expired").result
    assert [item["status"] for item in checked["certificates"]] == ["ok", "ok"]
    # Nothing was written.
    assert list(bao.kv_versions("secret", "certs/example.com")) == ["1"]


def test_vault_cert_retire_examples_run(bao, ansible, tmp_path, example_secrets):
    example = ExampleRun("vault_cert_retire", tmp_path, bao)

    run = example.run(ansible)

    deleted = run.task(
        "Soft-delete the version that push left, unless someone wrote after it (undo with bao kv undelete)"
    ).result
    assert (deleted["changed"], deleted["mode"], deleted["version"]) == (True, "delete", 1)
    preview = run.task("Preview destroying the data of every version of two decommissioned hosts").result
    assert [item["destroyed_versions"] for item in preview["results"]] == [[1], []]
    assert len(preview["diff"]) == 2
    purged = run.task("Remove the secret altogether - metadata and every version, one login for the batch").result
    assert [item["changed"] for item in purged["results"]] == [True, False]
    # Purged: no metadata, no versions.
    assert bao.kv_versions("secret", "certs/example.com") == {}


def test_examples_pass_ansible_lint_production(tmp_path, ansible):
    """The EXAMPLES, verbatim as playbooks, pass ansible-lint with the production profile, as the collection does."""
    for module in MODULES:
        (tmp_path / f"{module}.yml").write_text(examples_playbook(module))
    (tmp_path / ".ansible-lint").write_text("---\nprofile: production\noffline: true\n")
    completed = subprocess.run(  # noqa: S603
        [str(Path(sys.executable).parent / "ansible-lint"), "--offline", "--profile", "production", "--nocolor"]
        + [f"{module}.yml" for module in MODULES],
        cwd=tmp_path,
        env=ansible.environment({"HOME": os.environ.get("HOME", str(tmp_path))}),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr

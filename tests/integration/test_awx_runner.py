"""playbooks/push.yml as an AWX job: through ansible-runner, with the credential type's injections.

docs/awx/credential_type.yml is the custom credential type an AWX / Automation
Controller admin creates. AWX runs a job by laying out a private data
directory (env/envvars, env/extravars, env/cmdline, inventory/, project/) and
handing it to ansible-runner; a credential's injectors are rendered into it:
`file` templates become private files under env/, `env` templates become job
environment variables (with `tower.filename.<name>` the path of each file),
and `extra_vars` would become a YAML file passed with `-e @file` (this
credential type injects none: the auth method, its role, mount point and JWT
file reach the modules as VAULT_AUTH_* / VAULT_JWT_FILE like everything else).
`inject_credential` below does that the way AWX's CredentialType.inject_credential
does (Jinja sandbox; only non-empty inputs are defined; booleans default to
false), and the job runs with the `ansible-runner run` command, as AWX's task
does inside its execution environment, against the real OpenBao server: once
per auth method the credential type offers, a workflow of push.yml (renewing
a certificate pushed before), health.yml and rollback.yml (undoing the
renewal), which must all log in with the credential's method. Each launch
takes seconds, so every job that runs carries as many proofs as it can.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import typing as t
from pathlib import Path

import pki
import pytest
import yaml
from ansible.parsing.yaml.loader import AnsibleLoader
from jinja2 import StrictUndefined, meta
from jinja2.sandbox import ImmutableSandboxedEnvironment
from leaks import assert_no_leak
from vault_args import approle_args

REPO = Path(__file__).resolve().parents[2]
CREDENTIAL_TYPE = REPO / "docs" / "awx" / "credential_type.yml"
BIN_DIR = Path(sys.executable).parent
# AWX refuses these in an `env` injector (awx/main/fields.py and its ENV_BLOCKLIST, abridged).
AWX_ENV_BLOCKLIST = {
    "VIRTUAL_ENV", "PATH", "PYTHONPATH", "JOB_ID", "INVENTORY_ID", "INVENTORY_SOURCE_ID", "INVENTORY_UPDATE_ID",
    "AD_HOC_COMMAND_ID", "REST_API_URL", "REST_API_TOKEN", "MAX_EVENT_RES", "CALLBACK_QUEUE", "CALLBACK_CONNECTION",
    "CACHE", "JOB_CALLBACK_DEBUG", "INVENTORY_HOSTVARS", "AWX_HOST", "PROJECT_REVISION", "SUPERVISOR_CONFIG_PATH",
}  # fmt: skip
RUN_TIMEOUT = 300


def load_credential_type() -> dict[str, t.Any]:
    return yaml.safe_load(CREDENTIAL_TYPE.read_text(encoding="utf-8"))


class _Namespace:
    """AWX's TowerNamespace: `tower.filename` is a path, or an object with one path per file name."""


def inject_credential(
    credential_type: dict[str, t.Any], inputs: dict[str, t.Any], private_data_dir: Path
) -> tuple[dict[str, str], dict[str, t.Any]]:
    """Render the injectors for one credential as AWX does: returns (env, extra_vars); files land in env/."""
    fields = credential_type["inputs"]["fields"]
    injectors = credential_type["injectors"]
    namespace: dict[str, t.Any] = {}
    for name, value in inputs.items():
        # AWX defines a field only when it has a value; booleans always.
        if isinstance(value, bool) or len(value):
            namespace[name] = value
    for field in fields:
        if field["type"] == "boolean" and field["id"] not in inputs:
            namespace[field["id"]] = False
    tower = _Namespace()
    namespace["tower"] = tower
    sandbox = ImmutableSandboxedEnvironment()

    env_dir = private_data_dir / "env"
    env_dir.mkdir(parents=True, exist_ok=True)
    for label, template in injectors.get("file", {}).items():
        handle, path = tempfile.mkstemp(dir=env_dir)
        with os.fdopen(handle, "w") as file:
            file.write(sandbox.from_string(template).render(**namespace))
        os.chmod(path, 0o600)
        if "." not in label:
            tower.filename = path
        else:
            if not hasattr(tower, "filename"):
                tower.filename = _Namespace()
            setattr(tower.filename, label.split(".", 1)[1], path)

    env = {name: sandbox.from_string(source).render(**namespace) for name, source in injectors.get("env", {}).items()}

    def render(node: t.Any) -> t.Any:
        if isinstance(node, dict):
            return {render(key): render(value) for key, value in node.items()}
        if isinstance(node, list):
            return [render(item) for item in node]
        return sandbox.from_string(node).render(**namespace)

    return env, render(injectors.get("extra_vars", {}))


# -- the credential type itself --------------------------------------------------------------------------------


def test_credential_type_is_valid_for_awx():
    credential_type = load_credential_type()
    fields = credential_type["inputs"]["fields"]
    ids = [field["id"] for field in fields]

    assert set(credential_type) <= {"name", "description", "kind", "inputs", "injectors"}
    assert credential_type["kind"] == "cloud"
    assert len(ids) == len(set(ids))
    for field in fields:
        assert re.fullmatch(r"[a-zA-Z_]+[a-zA-Z0-9_]*", field["id"]), field
        assert field["label"], field
        assert field["type"] in ("string", "boolean"), field
        assert set(field) <= {"id", "label", "type", "secret", "multiline", "choices", "default", "help_text"}, field
    assert set(credential_type["inputs"]["required"]) <= set(ids)

    injectors = credential_type["injectors"]
    assert set(injectors) <= {"file", "env", "extra_vars"}
    assert all(label == "template" or label.startswith("template.") for label in injectors["file"])
    for name, template in injectors["env"].items():
        assert re.fullmatch(r"[a-zA-Z_]+[a-zA-Z0-9_]*", name), name
        assert not name.startswith("ANSIBLE_") and name not in AWX_ENV_BLOCKLIST, name
        assert template.isascii(), name

    # Every template refers to the credential's own fields or to tower.filename.
    sandbox = ImmutableSandboxedEnvironment()
    templates = [*injectors["file"].values(), *injectors["env"].values()]
    for template in templates:
        assert meta.find_undeclared_variables(sandbox.parse(template)) <= set(ids) | {"tower"}, template

    # AWX's own check when the type is saved (CredentialTypeInjectorField): every template renders with
    # StrictUndefined, every field defined, and tower.filename.<name> only for a declared file template.
    filename = _Namespace()
    for label in injectors["file"]:
        setattr(filename, label.split(".", 1)[1], "EXAMPLE_FILENAME")
    tower = _Namespace()
    tower.filename = filename
    example = {field["id"]: True if field["type"] == "boolean" else "EXAMPLE" for field in fields}
    strict = ImmutableSandboxedEnvironment(undefined=StrictUndefined)
    for template in templates:
        strict.from_string(template).render(**example, tower=tower)
    # A choice field's default is one of its choices.
    for field in fields:
        if "choices" in field and "default" in field:
            assert field["default"] in field["choices"], field


def test_credential_type_injects_environment_variables_only():
    """No extra variable: a cert_distribution_vault of the job template (or a task's option) still wins."""
    assert "extra_vars" not in load_credential_type()["injectors"]


def test_credential_type_injects_every_environment_variable_the_modules_read():
    read = set()
    for path in (REPO / "plugins").rglob("*.py"):
        read |= set(re.findall(r"[\"'](VAULT_[A-Z_]+)[\"']", path.read_text(encoding="utf-8")))

    assert set(load_credential_type()["injectors"]["env"]) == read


def test_secret_inputs_are_marked_secret():
    secret = {field["id"] for field in load_credential_type()["inputs"]["fields"] if field.get("secret")}

    assert {"secret_id", "jwt", "client_key", "token"} <= secret


# -- a push job per auth method ---------------------------------------------------------------------------------


def _new_token(bao) -> str:
    status, body = bao.api("POST", "auth/token/create", {"policies": ["certs"], "ttl": "5m", "no_parent": True})
    assert status == 200, body
    return body["auth"]["client_token"]


def _credential_inputs(bao, method: str) -> dict[str, t.Any]:
    """What an admin would enter into the credential for each auth method."""
    inputs: dict[str, t.Any] = {
        "vault_addr": bao.addr,
        "vault_cacert": Path(bao.ca_cert).read_text(),
        "auth_method": method,
    }
    if method == "approle":
        inputs.update(role_id=bao.role_ids["certs"], secret_id=bao.new_approle_secret_id("certs"))
    elif method == "jwt":
        inputs.update(role="certs", jwt=bao.sign_jwt(sub="system:serviceaccount:awx:automation-job"))
    elif method == "cert":
        inputs.update(
            role="certs", client_cert=Path(bao.client_cert).read_text(), client_key=Path(bao.client_key).read_text()
        )
    elif method == "token":
        inputs.update(token=_new_token(bao))
    return inputs


class AwxJob:
    """An AWX-style private data directory for playbooks/push.yml, run with the ansible-runner command."""

    def __init__(self, root: Path, ansible, credential_inputs: dict[str, t.Any], job_extra_vars: dict[str, t.Any]):
        self.dir = root / "private_data_dir"
        project = self.dir / "project"
        # The job template's project: this repository's playbooks.
        (project / "playbooks").mkdir(parents=True)
        for playbook in (REPO / "playbooks").glob("*.yml"):
            (project / "playbooks" / playbook.name).write_text(playbook.read_text())
        (self.dir / "inventory").mkdir()
        (self.dir / "inventory" / "hosts").write_text(
            f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n"
        )
        credential_env, credential_vars = inject_credential(load_credential_type(), credential_inputs, self.dir)
        self.credential_env = credential_env
        if credential_vars:
            # AWX writes a credential's extra vars to a private file and passes it with -e @file.
            handle, credential_vars_file = tempfile.mkstemp(dir=self.dir / "env")
            with os.fdopen(handle, "w") as file:
                yaml.safe_dump(credential_vars, file)
            os.chmod(credential_vars_file, 0o400)
            (self.dir / "env" / "cmdline").write_text(f"-e @{credential_vars_file}")
        job_env = {
            **credential_env,
            # The execution environment's settings: where the collection is installed, and no color.
            "ANSIBLE_COLLECTIONS_PATH": str(ansible.collections_path),
            "ANSIBLE_HOME": str(root / "ansible-home"),
            "ANSIBLE_FORCE_COLOR": "0",
            "ANSIBLE_NOCOLOR": "1",
        }
        (self.dir / "env" / "envvars").write_text(yaml.safe_dump(job_env))
        self.set_extra_vars(job_extra_vars)
        self.runs = 0
        self.secrets = [
            str(credential_inputs[name])
            for name in ("secret_id", "jwt", "client_key", "token")
            if credential_inputs.get(name)
        ]

    def set_extra_vars(self, job_extra_vars: dict[str, t.Any]) -> None:
        """What the job template (or its survey, or the workflow before it) passes."""
        (self.dir / "env" / "extravars").write_text(yaml.safe_dump(job_extra_vars))

    def run(self, playbook: str = "playbooks/push.yml") -> dict[str, t.Any]:
        # Each run its own artifacts directory, as each AWX job has.
        self.runs += 1
        ident = f"job{self.runs}"
        # Nothing of the test's own environment may reach the job: AWX starts it clean.
        env = {key: value for key, value in os.environ.items() if not key.startswith(("VAULT_", "BAO_", "ANSIBLE_"))}
        env["PATH"] = f"{BIN_DIR}{os.pathsep}{env.get('PATH', '')}"
        completed = subprocess.run(  # noqa: S603
            [str(BIN_DIR / "ansible-runner"), "run", str(self.dir), "-p", playbook, "--ident", ident],
            env=env,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
            check=False,
        )
        artifacts = self.dir / "artifacts" / ident
        stdout = (artifacts / "stdout").read_text() if (artifacts / "stdout").exists() else completed.stdout
        events = [json.loads(path.read_text()) for path in sorted((artifacts / "job_events").glob("*.json"))]
        return {
            "rc": int((artifacts / "rc").read_text()) if (artifacts / "rc").exists() else completed.returncode,
            "status": (artifacts / "status").read_text() if (artifacts / "status").exists() else "unknown",
            "stdout": stdout + completed.stderr,
            "events": events,
        }


def _task_result(events: list[dict[str, t.Any]], task: str) -> dict[str, t.Any]:
    for event in events:
        if event.get("event") == "runner_on_ok" and event["event_data"].get("task") == task:
            return event["event_data"]["res"]
    raise AssertionError(f"no successful result for task {task!r}")


def _artifact_data(events: list[dict[str, t.Any]]) -> dict[str, t.Any]:
    """What set_stats published: AWX hands it to the next job of a workflow."""
    stats = [event for event in events if event.get("event") == "playbook_on_stats"]
    assert stats, "no playbook_on_stats event"
    return stats[-1]["event_data"].get("artifact_data", {})


LOGIN_PATHS = {"approle": "auth/approle/login", "jwt": "auth/jwt/login", "cert": "auth/cert/login"}


def _assert_logged_in_with(bao, mark: int, method: str, inputs: dict[str, t.Any]) -> None:
    """The job's requests since `mark` were made with the credential's method, and no other login was tried."""
    if method == "token":
        # Every authenticated request of the job carried the credential's token (the test's own use root's).
        tokens = {entry["request"].get("client_token") for entry in bao.audit_requests(mark)}
        assert tokens - {bao.root_token, None, ""} == {inputs["token"]}
    else:
        assert bao.audit_requests(mark, path_prefix=LOGIN_PATHS[method]), f"no {LOGIN_PATHS[method]} request"
    for other, login_path in LOGIN_PATHS.items():
        if other != method:
            assert not bao.audit_requests(mark, path_prefix=login_path), f"{method} job logged in at {login_path}"


def _assert_job_succeeded(run: dict[str, t.Any]) -> None:
    assert run["rc"] == 0 and run["status"] == "successful", run["stdout"]


def _cert_texts(directory: Path) -> dict[str, str]:
    """What pki.write_leaf wrote to ``directory``, as vault_cert_push's certificate, private_key and chain."""
    return {
        "certificate": (directory / "cert.pem").read_text(),
        "private_key": (directory / "key.pem").read_text(),
        "chain": (directory / "chain.pem").read_text(),
    }


def _cert_files(directory: Path) -> dict[str, str]:
    """The files pki.write_leaf wrote to ``directory``, as an item of cert_distribution_certs."""
    return {
        "certificate_file": str(directory / "cert.pem"),
        "private_key_file": str(directory / "key.pem"),
        "chain_file": str(directory / "chain.pem"),
    }


@contextlib.contextmanager
def _fresh_path(bao, path: str) -> t.Iterator[None]:
    """``path`` holds no secret when the block starts, and is deleted when it ends."""
    status, body = bao.api("DELETE", f"secret/metadata/{path}")
    assert status in (204, 404), body
    try:
        yield
    finally:
        bao.api("DELETE", f"secret/metadata/{path}")


@pytest.mark.parametrize("method", ["approle", "jwt", "cert", "token"])
def test_push_playbook_runs_as_an_awx_job_with_the_credential_type(bao, ansible, modules, tmp_path, method):
    """A workflow per auth method: push.yml renews a certificate, health.yml checks, rollback.yml undoes the renewal.

    Each job logs in with the credential's method. The certificate renewed was pushed before, in-process: a push
    job that creates a secret is test_cert_distribution_vault_of_the_job_template_wins_over_the_credential's.
    """
    cn = f"awx-{method}.example.com"
    path = f"certs/{cn}"
    pki.write_leaf(tmp_path / "certs", cn)
    renewed = pki.write_leaf(tmp_path / "renewed", cn)
    job_extra_vars = {
        # What the job template (or its survey) sets; the connection and login come from the credential.
        "cert_distribution_certs": [_cert_files(tmp_path / "renewed")],
        "push_results_file": str(tmp_path / "push-results.json"),
    }
    inputs = _credential_inputs(bao, method)
    job = AwxJob(tmp_path, ansible, inputs, job_extra_vars)
    # The login reaches the job as environment variables only (no cert_distribution_vault).
    assert job.credential_env["VAULT_AUTH_METHOD"] == method
    assert job.credential_env["VAULT_AUTH_ROLE"] == inputs.get("role", "")
    if method == "jwt":
        assert Path(job.credential_env["VAULT_JWT_FILE"]).read_text() == inputs["jwt"]
    else:
        assert job.credential_env["VAULT_JWT_FILE"] == ""
    with _fresh_path(bao, path):
        original = modules.run_module(
            "vault_cert_push",
            {**approle_args(bao), "path": path, **_cert_texts(tmp_path / "certs")},
        )
        assert not original.failed and original.result["version"] == 1, original.msg

        # The renewal, pushed by the job template with the credential.
        mark = bao.audit_mark()
        run = job.run()
        _assert_job_succeeded(run)
        # The role's health check is the push's own capability check, in its one login.
        assert len(bao.audit_requests(mark, path_prefix="sys/capabilities-self")) == 1
        pushed = _task_result(run["events"], "Push all certificates with one login")
        assert [item["path"] for item in pushed["results"]] == [path]
        assert pushed["results"][0]["version"] == 2
        # The server holds the renewal, logged in with the credential's method.
        status, body = bao.api("GET", f"secret/data/{path}")
        assert status == 200, body
        assert body["data"]["data"]["certificate"] == renewed.cert_pem
        assert body["data"]["metadata"]["version"] == 2
        _assert_logged_in_with(bao, mark, method, inputs)
        # What a workflow's rollback job receives, and the results file, record the version.
        recorded = _artifact_data(run["events"])["cert_distribution_rollback_results"]
        assert recorded == [{"path": path, "version": 2, "previous_version": 1, "changed": True}]
        results_file = AnsibleLoader((tmp_path / "push-results.json").read_text()).get_single_data()
        assert results_file["cert_distribution_rollback_results"] == recorded
        runs = [run]

        # health.yml, same credential: logs in with its method too.
        job.set_extra_vars({"health_path": path, "health_check_rollback": True})
        mark = bao.audit_mark()
        run = job.run("playbooks/health.yml")
        _assert_job_succeeded(run)
        health = _task_result(run["events"], "Check the server, the login, the mount and the path")
        assert {check["name"] for check in health["checks"] if check["ok"]} >= {
            "server", "login", "mount", "push_capabilities", "rollback_capabilities",
        }  # fmt: skip
        _assert_logged_in_with(bao, mark, method, inputs)
        runs.append(run)

        # rollback.yml as the next workflow node: it receives what the push published, and its health check and
        # the rollback log in with the method too.
        job.set_extra_vars({"cert_distribution_rollback_results": recorded})
        mark = bao.audit_mark()
        run = job.run("playbooks/rollback.yml")
        _assert_job_succeeded(run)
        assert len(bao.audit_requests(mark, path_prefix="sys/capabilities-self")) == 1
        restored = _task_result(run["events"], "Restore the chosen version of each secret")
        assert [(item["path"], item["version"], item["restored_version"]) for item in restored["results"]] == [
            (path, 3, 1)
        ]
        status, body = bao.api("GET", f"secret/data/{path}")
        assert status == 200, body
        assert body["data"]["data"]["certificate"] == (tmp_path / "certs" / "cert.pem").read_text()
        _assert_logged_in_with(bao, mark, method, inputs)
        runs.append(run)

        # The jobs' output is not a harness run: the credential's secrets and both keys reach it through files.
        texts = [text for run in runs for text in (run["stdout"], *run["events"])]
        keys = [(tmp_path / folder / "key.pem").read_text() for folder in ("certs", "renewed")]
        assert_no_leak(texts, *job.secrets, *keys)


def test_cert_distribution_vault_of_the_job_template_wins_over_the_credential(bao, ansible, tmp_path):
    """Task option > environment: the role's health check and push both log in as cert_distribution_vault says.

    The push creates the secret: what the workflow's next job receives, and the results file, record version 1
    with no previous version.
    """
    cn = "awx-precedence.example.com"
    path = f"certs/{cn}"
    pki.write_leaf(tmp_path / "certs", cn)
    job_extra_vars = {
        "cert_distribution_certs": [_cert_files(tmp_path / "certs")],
        "push_results_file": str(tmp_path / "push-results.json"),
        # The job template overrides the credential's JWT login (VAULT_AUTH_METHOD=jwt) with AppRole.
        "cert_distribution_vault": {
            "auth_method": "approle",
            "role_id": bao.role_ids["certs"],
            "secret_id": bao.new_approle_secret_id("certs"),
        },
    }
    inputs = _credential_inputs(bao, "jwt")
    job = AwxJob(tmp_path, ansible, inputs, job_extra_vars)
    with _fresh_path(bao, path):
        mark = bao.audit_mark()
        run = job.run()
        _assert_job_succeeded(run)
        # One AppRole login (the health check is the push's own), no JWT login.
        assert len(bao.audit_requests(mark, path_prefix=LOGIN_PATHS["approle"])) == 1
        _assert_logged_in_with(bao, mark, "approle", {})
        status, body = bao.api("GET", f"secret/data/{path}")
        assert status == 200, body
        assert body["data"]["data"]["certificate"] == (tmp_path / "certs" / "cert.pem").read_text()
        assert body["data"]["metadata"]["version"] == 1
        recorded = _artifact_data(run["events"])["cert_distribution_rollback_results"]
        assert recorded == [{"path": path, "version": 1, "previous_version": None, "changed": True}]
        results_file = AnsibleLoader((tmp_path / "push-results.json").read_text()).get_single_data()
        assert results_file["cert_distribution_rollback_results"] == recorded
        assert_no_leak(
            [run["stdout"], *run["events"]],
            *job.secrets,
            job_extra_vars["cert_distribution_vault"]["secret_id"],
            (tmp_path / "certs" / "key.pem").read_text(),
        )


def test_empty_inputs_inject_empty_variables_that_the_modules_read_as_unset(tmp_path):
    # Through the API a credential may leave out a required input that has a default (auth_method).
    inputs = {"vault_addr": "https://vault.example.com:8200"}
    env, extra_vars = inject_credential(load_credential_type(), inputs, tmp_path)

    assert env["VAULT_ADDR"] == "https://vault.example.com:8200"
    assert env["VAULT_SKIP_VERIFY"] == "false"
    # Never empty: the modules would refuse an empty auth_method.
    assert env["VAULT_AUTH_METHOD"] == "approle"
    unset = {name for name, value in env.items() if value == ""}
    assert unset == {
        "VAULT_NAMESPACE", "VAULT_CACERT", "VAULT_CLIENT_CERT", "VAULT_CLIENT_KEY",
        "VAULT_AUTH_MOUNT_POINT", "VAULT_AUTH_NAMESPACE", "VAULT_AUTH_ROLE",
        "VAULT_ROLE_ID", "VAULT_SECRET_ID", "VAULT_JWT_FILE", "VAULT_TOKEN",
    }  # fmt: skip
    assert extra_vars == {}

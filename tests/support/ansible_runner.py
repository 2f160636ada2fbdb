"""Run the collection's modules and playbooks the way a user does: with ansible-playbook.

Each run is a real `ansible-playbook` process on localhost (connection local,
this Python as the interpreter) that loads the collection from the working
tree. The console output (stdout and stderr) is kept as a user would see it,
for tests that scan it for secrets; the task results come from a small
callback (tests/support/callback/result_recorder.py) that writes each result
dict to a JSON-lines file.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import typing as t
import uuid
from pathlib import Path

import yaml
from leaks import assert_no_leak, secrets_in, tokens_in

COLLECTION_ROOT = Path(__file__).resolve().parents[2]
COLLECTION_NAMESPACE, COLLECTION_NAME = "certautopilot", "vault"
CALLBACK_DIR = Path(__file__).resolve().parent / "callback"
RESULTS_FILE_ENV = "CERTAUTOPILOT_TEST_RESULTS"

# Inherited variables that could point a run at another Vault or another
# Ansible configuration; a test passes what it wants in `env`.
STRIPPED_ENV_PREFIXES = ("VAULT_", "BAO_", "ANSIBLE_")

RUN_TIMEOUT = 300


@dataclasses.dataclass
class TaskResult:
    """One task result as the callback saw it."""

    status: str  # ok, failed, skipped, unreachable
    task: str
    action: str
    host: str
    result: dict[str, t.Any]
    ignore_errors: bool = False


@dataclasses.dataclass
class PlaybookRun:
    rc: int
    output: str
    tasks: list[TaskResult]
    command: list[str]
    # The server's audit entries of the run (with the runner's ``audit``).
    requests: list[dict[str, t.Any]] = dataclasses.field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.rc != 0

    @property
    def changed(self) -> bool:
        return any(task.result.get("changed") for task in self.tasks)

    def task(self, name: str) -> TaskResult:
        """The last result of the task called `name`."""
        for task in reversed(self.tasks):
            if task.task == name:
                return task
        raise KeyError(f"no result for task {name!r}; tasks run: {[task.task for task in self.tasks]}")


@dataclasses.dataclass
class ModuleRun:
    rc: int
    output: str
    result: dict[str, t.Any]
    command: list[str]
    requests: list[dict[str, t.Any]] = dataclasses.field(default_factory=list)

    @property
    def failed(self) -> bool:
        return bool(self.result.get("failed")) or self.rc != 0

    @property
    def changed(self) -> bool:
        return bool(self.result.get("changed"))

    @property
    def msg(self) -> str:
        return str(self.result.get("msg", ""))


@dataclasses.dataclass
class ModuleStreamsRun(ModuleRun):
    """A ModuleRun without ansible-playbook (in-process or a module process): the module's own streams and syslog."""

    stdout: str = ""
    stderr: str = ""
    syslog: list[str] = dataclasses.field(default_factory=list)

    @property
    def texts(self) -> list[str]:
        """Everything the run produced, for leak scans."""
        return [self.stdout, self.stderr, *self.syslog]


def _playbook_data(playbook_path: str | os.PathLike[str]) -> t.Any:
    """The playbook as data, for its secrets (a file that is not YAML, such as a vaulted one, holds none we know)."""
    try:
        return yaml.safe_load(Path(playbook_path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None


def env_secrets(env: t.Mapping[str, str] | None) -> list[str]:
    """The secrets a run's environment gives it (VAULT_TOKEN, VAULT_SECRET_ID, ...)."""
    names = {"VAULT_TOKEN": "token", "VAULT_SECRET_ID": "secret_id", "VAULT_CLIENT_KEY": "client_key"}
    return secrets_in({names[key]: value for key, value in (env or {}).items() if key in names})


def link_collection(root: Path) -> Path:
    """``root`` made a collections path that holds this working tree as certautopilot.vault (a symlink)."""
    namespace_dir = root / "ansible_collections" / COLLECTION_NAMESPACE
    namespace_dir.mkdir(parents=True, exist_ok=True)
    link = namespace_dir / COLLECTION_NAME
    if not link.exists():
        link.symlink_to(COLLECTION_ROOT, target_is_directory=True)
    return root


def last_json_answer(stdout: str) -> dict[str, t.Any]:
    """A module's answer: the last line of stdout that parses as a JSON object."""
    for line in reversed(stdout.strip().splitlines()):
        try:
            answer = json.loads(line)
        except ValueError:
            continue
        if isinstance(answer, dict):
            return answer
    return {"failed": True, "msg": f"no JSON answer on stdout: {stdout[-500:]!r}"}


class AnsibleRunner:
    """Runs ansible-playbook from this Python's environment against localhost.

    Every run is scanned for the secrets it was given (in the playbook, its variables, the task's arguments,
    ``secrets``) and, with ``audit`` (the server), for every token the audit log shows the run used.
    """

    TASK_NAME = "Run the module under test"

    def __init__(self, workdir: Path, *, python: str = sys.executable, audit: t.Any = None) -> None:
        self.workdir = workdir
        self.python = python
        self.audit = audit
        self.bin_dir = Path(python).parent
        workdir.mkdir(parents=True, exist_ok=True)
        self.collections_path = link_collection(workdir / "collections")
        self.inventory = workdir / "inventory.ini"
        self.inventory.write_text(f"localhost ansible_connection=local ansible_python_interpreter={python}\n")
        # An empty config file keeps any ansible.cfg in a cwd or home out of the runs.
        self.config = workdir / "ansible.cfg"
        self.config.write_text("[defaults]\n")
        self.home = workdir / "ansible-home"
        self.home.mkdir(exist_ok=True)

    def environment(self, env: t.Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment of a run: inherited minus VAULT_*/BAO_*/ANSIBLE_*, our settings, then `env`."""
        base = {key: value for key, value in os.environ.items() if not key.startswith(STRIPPED_ENV_PREFIXES)}
        base.update(
            {
                "ANSIBLE_CONFIG": str(self.config),
                "ANSIBLE_HOME": str(self.home),
                "ANSIBLE_LOCAL_TEMP": str(self.home / "tmp"),
                "ANSIBLE_COLLECTIONS_PATH": str(self.collections_path),
                "ANSIBLE_INVENTORY": str(self.inventory),
                "ANSIBLE_PYTHON_INTERPRETER": self.python,
                "ANSIBLE_NOCOLOR": "1",
                "ANSIBLE_FORCE_COLOR": "0",
                "ANSIBLE_HOST_KEY_CHECKING": "0",
                "ANSIBLE_RETRY_FILES_ENABLED": "0",
                "ANSIBLE_DEPRECATION_WARNINGS": "1",
                # ansible-core 2.21 leaves a task's `invocation` out of its result unless told: the tests check
                # that it shows no secret, as every earlier core puts it there (and older ones ignore this).
                "ANSIBLE_INJECT_INVOCATION": "1",
                "ANSIBLE_STDOUT_CALLBACK": "default",
                "ANSIBLE_CALLBACK_PLUGINS": str(CALLBACK_DIR),
                "ANSIBLE_CALLBACKS_ENABLED": "result_recorder",
                "PYTHONUNBUFFERED": "1",
            }
        )
        base.update(env or {})
        return base

    def run_playbook(
        self,
        playbook_path: str | os.PathLike[str],
        *,
        extra_vars: dict[str, t.Any] | None = None,
        extra_vars_args: t.Sequence[str] = (),
        check: bool = False,
        diff: bool = False,
        verbosity: int = 0,
        env: t.Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        secrets: t.Iterable[str] = (),
    ) -> PlaybookRun:
        """``extra_vars_args`` are more ``-e`` values as a user types them (``key=value``, ``@file``).

        ``secrets`` are values the run must never show besides those the harness finds itself.
        """
        mark = self.audit.audit_mark() if self.audit else 0
        results_file = self.workdir / f"results-{uuid.uuid4().hex}.jsonl"
        command = [str(self.bin_dir / "ansible-playbook"), str(playbook_path)]
        if extra_vars:
            # JSON on the command line: typed values, no key=value splitting.
            command += ["--extra-vars", json.dumps(extra_vars)]
        for value in extra_vars_args:
            command += ["--extra-vars", value]
        if check:
            command.append("--check")
        if diff:
            command.append("--diff")
        if verbosity:
            command.append("-" + "v" * verbosity)
        run_env = self.environment(env)
        run_env[RESULTS_FILE_ENV] = str(results_file)
        completed = subprocess.run(  # noqa: S603
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=run_env,
            cwd=str(cwd or self.workdir),
            timeout=RUN_TIMEOUT,
            check=False,
        )
        tasks = []
        if results_file.exists():
            with results_file.open(encoding="utf-8") as lines:
                tasks = [TaskResult(**json.loads(line)) for line in lines if line.strip()]
            results_file.unlink()
        run = PlaybookRun(rc=completed.returncode, output=completed.stdout, tasks=tasks, command=command)
        # The process has ended: every request it sent was answered, and written to the log before that.
        run.requests = self.audit.audit_requests(mark, settle=False) if self.audit else []
        given = [*secrets_in(_playbook_data(playbook_path)), *secrets_in(extra_vars or {}), *secrets, *env_secrets(env)]
        assert_no_leak([run.output, *(task.result for task in tasks)], *given, *tokens_in(run.requests))
        return run

    def run_module(
        self,
        module: str,
        args: dict[str, t.Any],
        *,
        check: bool = False,
        diff: bool = False,
        verbosity: int = 0,
        env: t.Mapping[str, str] | None = None,
        module_defaults: dict[str, t.Any] | None = None,
        secrets: t.Iterable[str] = (),
    ) -> ModuleRun:
        """Run one module task; `module` is a short name (vault_cert_push) or an FQCN."""
        fqcn = module if "." in module else f"{COLLECTION_NAMESPACE}.{COLLECTION_NAME}.{module}"
        play: dict[str, t.Any] = {
            "name": "Module under test",
            "hosts": "localhost",
            "gather_facts": False,
        }
        if module_defaults:
            play["module_defaults"] = module_defaults
        play["tasks"] = [{"name": self.TASK_NAME, fqcn: args}]
        playbook = self.workdir / f"module-{uuid.uuid4().hex}.yml"
        # JSON is YAML; the file may hold credentials, so only we read it.
        playbook.write_text(json.dumps([play], indent=2))
        playbook.chmod(0o600)
        try:
            run = self.run_playbook(playbook, check=check, diff=diff, verbosity=verbosity, env=env, secrets=secrets)
        finally:
            playbook.unlink()
        task_results = [task for task in run.tasks if task.task == self.TASK_NAME]
        result = task_results[-1].result if task_results else {}
        if not task_results and run.rc != 0:
            # The task never ran (bad module name, syntax error): say so as a failure.
            result = {"failed": True, "msg": f"ansible-playbook exited {run.rc} before the task ran"}
        module_run = ModuleRun(rc=run.rc, output=run.output, result=result, command=run.command)
        module_run.requests = run.requests
        return module_run

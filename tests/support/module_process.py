"""Run one of the collection's modules as Ansible's module process runs it, without a playbook.

A module run here is the same code path as under ansible-playbook from the moment the
module starts: AnsibleModule reads its arguments (with Ansible's internal ``_ansible_*``
settings for check mode, diff and verbosity), logs its invocation and answers with one JSON
document. It takes a third of a second instead of three; the in-process call
(tests/support/module_call.py) takes milliseconds and is the default. A process is for what
needs one: modules racing each other, and streams that must be the interpreter's own (the
known leaks of the leak property test).

What the module sends to syslog is captured through tests/support/syslog_standin, so a
test can scan the log lines too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import typing as t
from pathlib import Path

from ansible_runner import (
    COLLECTION_NAME,
    COLLECTION_NAMESPACE,
    COLLECTION_ROOT,
    STRIPPED_ENV_PREFIXES,
    ModuleStreamsRun,
    env_secrets,
    last_json_answer,
)
from leaks import assert_no_leak, secrets_in, tokens_in

SYSLOG_STANDIN = Path(__file__).resolve().parent / "syslog_standin"
SYSLOG_FILE_ENV = "CERTAUTOPILOT_SYSLOG_FILE"
RUN_TIMEOUT = 300


# What a run answers (kept under this name for the tests that annotate with it).
ModuleProcessRun = ModuleStreamsRun


class ModuleProcess:
    """Starts modules of the collection as ``python -m`` processes with an arguments file."""

    def __init__(self, workdir: Path, *, python: str = sys.executable, audit: t.Any = None) -> None:
        self.workdir = workdir
        self.audit = audit
        self.python = python
        workdir.mkdir(parents=True, exist_ok=True)
        self.collections_path = workdir / "collections"
        namespace_dir = self.collections_path / "ansible_collections" / COLLECTION_NAMESPACE
        namespace_dir.mkdir(parents=True, exist_ok=True)
        link = namespace_dir / COLLECTION_NAME
        if not link.exists():
            link.symlink_to(COLLECTION_ROOT, target_is_directory=True)

    def run(
        self,
        module: str,
        args: t.Mapping[str, t.Any],
        *,
        check: bool = False,
        diff: bool = False,
        verbosity: int = 0,
        env: t.Mapping[str, str] | None = None,
        secrets: t.Iterable[str] = (),
    ) -> ModuleProcessRun:
        """Run ``module`` (short name, e.g. vault_cert_push) with ``args`` as the task's arguments.

        What it printed, answered and logged is scanned for its secrets (``secrets`` are more) and tokens.
        """
        mark = self.audit.audit_mark() if self.audit else 0
        internal = {"_ansible_check_mode": check, "_ansible_diff": diff, "_ansible_verbosity": verbosity}
        with tempfile.TemporaryDirectory(dir=self.workdir) as scratch:
            args_file = Path(scratch) / "args.json"
            # The arguments may hold credentials: only we read them.
            args_file.touch(mode=0o600)
            args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": {**args, **internal}}))
            syslog_file = Path(scratch) / "syslog"
            run_env = {k: v for k, v in os.environ.items() if not k.startswith(STRIPPED_ENV_PREFIXES)}
            run_env.update(
                {
                    "PYTHONPATH": os.pathsep.join([str(SYSLOG_STANDIN), str(self.collections_path)]),
                    SYSLOG_FILE_ENV: str(syslog_file),
                    **(env or {}),
                }
            )
            completed = subprocess.run(  # noqa: S603
                [
                    self.python,
                    "-m",
                    f"ansible_collections.{COLLECTION_NAMESPACE}.{COLLECTION_NAME}.plugins.modules.{module}",
                    str(args_file),
                ],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                env=run_env,
                cwd=scratch,
                timeout=RUN_TIMEOUT,
                check=False,
            )
            syslog = syslog_file.read_text(encoding="utf-8").splitlines() if syslog_file.exists() else []
        run = ModuleProcessRun(
            rc=completed.returncode,
            output=completed.stdout + completed.stderr,
            result=last_json_answer(completed.stdout),
            command=completed.args,
            stdout=completed.stdout,
            stderr=completed.stderr,
            syslog=syslog,
            requests=self.audit.audit_requests(mark, settle=False) if self.audit else [],
        )
        given = [*secrets_in(args), *secrets, *env_secrets(env)]
        assert_no_leak([*run.texts, run.result], *given, *tokens_in(run.requests))
        return run

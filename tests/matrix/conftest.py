"""The matrix smoke's fixtures: one OpenBao dev server for the session, a playbook runner and an in-process runner.

The server, the runners and their leak scan are tests/support's (as in tests/integration/conftest.py); the
smoke needs only these three.
"""

from __future__ import annotations

import sys
from pathlib import Path

SUPPORT_DIR = Path(__file__).resolve().parents[1] / "support"
if str(SUPPORT_DIR) not in sys.path:
    sys.path.insert(0, str(SUPPORT_DIR))

# The smoke uses the server, the playbook runner and the in-process runner of tests/support.
from harness_fixtures import ansible, bao, modules  # noqa: E402, F401  # pylint: disable=unused-import

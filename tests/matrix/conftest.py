"""The matrix smoke's fixtures: one OpenBao dev server for the session, a playbook runner and an in-process runner.

The server, the runners and their leak scan are tests/support's (as in tests/integration/conftest.py); the
smoke needs only these three.
"""

from __future__ import annotations

import sys
import typing as t
from pathlib import Path

import pytest

SUPPORT_DIR = Path(__file__).resolve().parents[1] / "support"
if str(SUPPORT_DIR) not in sys.path:
    sys.path.insert(0, str(SUPPORT_DIR))

from ansible_runner import AnsibleRunner  # noqa: E402
from bao import ProvisionedBao  # noqa: E402
from module_call import ModuleCall  # noqa: E402


@pytest.fixture(scope="session")
def bao(tmp_path_factory: pytest.TempPathFactory) -> t.Iterator[ProvisionedBao]:
    server = ProvisionedBao.start_dev(tmp_path_factory.mktemp("bao"))
    try:
        server.provision()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def ansible(tmp_path_factory: pytest.TempPathFactory, bao: ProvisionedBao) -> AnsibleRunner:
    return AnsibleRunner(tmp_path_factory.mktemp("ansible"), audit=bao)


@pytest.fixture(scope="session")
def modules(tmp_path_factory: pytest.TempPathFactory, bao: ProvisionedBao) -> ModuleCall:
    return ModuleCall(tmp_path_factory.mktemp("module-call"), audit=bao)

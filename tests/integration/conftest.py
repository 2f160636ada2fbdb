"""Integration test fixtures: one real OpenBao server per session, and an Ansible runner.

The server code lives in tests/support/bao.py and the runner in
tests/support/ansible_runner.py; this file only wires them into pytest.
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
from module_process import ModuleProcess  # noqa: E402


@pytest.fixture(scope="session")
def bao(tmp_path_factory: pytest.TempPathFactory) -> t.Iterator[ProvisionedBao]:
    """A running OpenBao dev server (TLS, file audit device) with the operator setup applied."""
    server = ProvisionedBao.start_dev(tmp_path_factory.mktemp("bao"))
    try:
        server.provision()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def vault_conn(bao: ProvisionedBao) -> dict[str, str]:
    """Connection options for the collection's modules."""
    return {"url": bao.addr, "ca_cert": bao.ca_cert}


@pytest.fixture
def approle_auth(bao: ProvisionedBao) -> dict[str, str]:
    """AppRole auth options for role certs, with a fresh secret_id."""
    return {
        "auth_method": "approle",
        "role_id": bao.role_ids["certs"],
        "secret_id": bao.new_approle_secret_id("certs"),
    }


@pytest.fixture(scope="session")
def ansible(tmp_path_factory: pytest.TempPathFactory) -> AnsibleRunner:
    """Runs the collection's modules and playbooks with ansible-playbook on localhost."""
    return AnsibleRunner(tmp_path_factory.mktemp("ansible"))


@pytest.fixture(scope="session")
def module_process(tmp_path_factory: pytest.TempPathFactory) -> ModuleProcess:
    """Runs one module as its own process, without a playbook, capturing its syslog lines."""
    return ModuleProcess(tmp_path_factory.mktemp("module-process"))

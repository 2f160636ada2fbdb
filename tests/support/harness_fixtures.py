"""The fixtures every suite against the real server shares: the server, the connection, and the three runners.

tests/integration/conftest.py and tests/matrix/conftest.py import them by name. Every runner scans each run for
the secrets it was given and the tokens the server's audit log shows it used.
"""

from __future__ import annotations

import typing as t

import pytest
from ansible_runner import AnsibleRunner
from bao import ProvisionedBao
from module_call import ModuleCall
from module_process import ModuleProcess


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
def modules(tmp_path_factory: pytest.TempPathFactory, bao: ProvisionedBao) -> ModuleCall:
    """Runs a module's main() in this process against the server: decisions, refusals, masking, outcomes."""
    return ModuleCall(tmp_path_factory.mktemp("module-call"), audit=bao)


@pytest.fixture(scope="session")
def ansible(tmp_path_factory: pytest.TempPathFactory, bao: ProvisionedBao) -> AnsibleRunner:
    """Runs playbooks with ansible-playbook on localhost: what only the controller does (actions, roles, display)."""
    return AnsibleRunner(tmp_path_factory.mktemp("ansible"), audit=bao)


@pytest.fixture(scope="session")
def module_process(tmp_path_factory: pytest.TempPathFactory, bao: ProvisionedBao) -> ModuleProcess:
    """Runs one module as its own process, without a playbook, capturing its syslog lines."""
    return ModuleProcess(tmp_path_factory.mktemp("module-process"), audit=bao)

# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cert_distribution role refuses bad input before the server: its own validation names the problem and never
prints a credential, key or PKCS#12 password given in the wrong option (validate_argument_spec quotes refused
values: "got: ...", "The value '...' is not a valid boolean"), and with the validation skipped (--skip-tags always)
the module still refuses a bad item.

Against a real OpenBao. The role is the controller's: one playbook at -vvv holds every refusal case, each a host
of its own with the case's variables (a refusal stops only its host); the run is scanned for every secret the
cases hold. The skipped validation is a run of its own.
"""

from __future__ import annotations

import dataclasses
import json
import typing as t
import uuid

import pytest
from kv_requests import kv_writes
from pki import make_chain
from push_runs import approle

ROLE = "certautopilot.vault.cert_distribution"
PASSWORD = "role-validation-pkcs12-password-2718"
JWT_LIKE = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJyb3VuZDMifQ.c2lnbmF0dXJlc2lnbmF0dXJl"
REFUSED = "Validation of arguments failed"


@dataclasses.dataclass
class ValidationRun:
    run: t.Any
    failures: dict[str, list[t.Any]]


def _cases(login: dict[str, str], key_pem: str, cert_pem: str) -> dict[str, dict[str, t.Any]]:
    """Each case's role variables, by host name."""
    item = {"certificate": cert_pem, "private_key": key_pem}
    pkcs12_item = [{"path": f"certs/role-validation-{uuid.uuid4().hex[:8]}", **item}]
    pkcs12 = {"cert_distribution_layout": "pkcs12", "cert_distribution_pkcs12_password": PASSWORD}
    return {
        # A secret given in an option that is no secret.
        "jwt-as-auth-method": {
            "cert_distribution_vault": {**login, "auth_method": JWT_LIKE},
            "cert_distribution_certs": [item],
        },
        "jwt-as-validate-certs": {
            "cert_distribution_vault": {**login, "validate_certs": JWT_LIKE},
            "cert_distribution_certs": [item],
        },
        "key-as-state": {
            "cert_distribution_vault": login,
            "cert_distribution_state": key_pem,
            "cert_distribution_certs": [item],
        },
        # Plain bad values: an unknown item key, a wrong type.
        "misspelled-item-key": {
            "cert_distribution_vault": login,
            "cert_distribution_certs": [{**item, "privat_key": key_pem}],
        },
        "vars-not-a-dict": {
            "cert_distribution_vault": login,
            "cert_distribution_certs": [{**item, "vars": "not a dict"}],
        },
        "certs-is-a-key": {"cert_distribution_vault": login, "cert_distribution_certs": key_pem},
        # The PKCS#12 password in another option (swapped variables).
        "password-as-layout": {
            "cert_distribution_vault": login,
            "cert_distribution_certs": pkcs12_item,
            **pkcs12,
            "cert_distribution_layout": PASSWORD,
        },
        "password-as-include-private-key": {
            "cert_distribution_vault": login,
            "cert_distribution_certs": pkcs12_item,
            **pkcs12,
            "cert_distribution_include_private_key": PASSWORD,
        },
    }


@pytest.fixture(scope="module")
def validation(ansible, bao, vault_conn, tmp_path_factory) -> ValidationRun:
    workdir = tmp_path_factory.mktemp("role-validation")
    chain = make_chain(f"role-validation-{uuid.uuid4().hex[:8]}.example.com")
    login = {**vault_conn, **approle(bao)}
    cases = _cases(login, chain.leaf.key_pem, chain.leaf.cert_pem)
    local = {"ansible_connection": "local", "ansible_python_interpreter": ansible.python}
    inventory = workdir / "hosts.json"
    inventory.write_text(json.dumps({"all": {"hosts": {host: {**local, **v} for host, v in cases.items()}}}))
    inventory.chmod(0o600)
    playbook = workdir / "site.yml"
    playbook.write_text(json.dumps([{"name": "Deliver", "hosts": "all", "gather_facts": False, "roles": [ROLE]}]))

    # The cases' variables are the inventory's, which the harness does not read: their secrets are named.
    run = ansible.run_playbook(
        playbook,
        verbosity=3,
        env={"ANSIBLE_INVENTORY": str(inventory)},
        secrets=[login["secret_id"], JWT_LIKE, chain.leaf.key_pem, PASSWORD],
    )

    failures = {host: [task for task in run.tasks if task.host == host and task.status == "failed"] for host in cases}
    return ValidationRun(run=run, failures=failures)


def test_the_refusals_reach_no_server(validation: ValidationRun):
    assert validation.run.rc != 0, validation.run.output[-2000:]
    assert kv_writes(validation.run.requests) == []


@pytest.mark.parametrize(
    "case",
    [
        "jwt-as-auth-method",
        "jwt-as-validate-certs",
        "key-as-state",
        "password-as-layout",
        "password-as-include-private-key",
    ],
)
def test_role_validation_refuses_a_secret_put_in_the_wrong_option_without_printing_it(validation, case):
    """The role masks what validate_argument_spec quotes for the Vault credentials, the keys and the PKCS#12
    password: the secret is refused by name, unseen (the run is scanned for it), and nothing is written."""
    failed = validation.failures[case]

    assert failed, f"{case}: the bad value was accepted"
    assert any(REFUSED in str(task.result.get("msg", "")) for task in failed), [task.result for task in failed]


@pytest.mark.parametrize("case", ["misspelled-item-key", "vars-not-a-dict", "certs-is-a-key"])
def test_role_validation_failure_writes_nothing_and_shows_no_credential_at_vvv(validation, case):
    """A plain bad value (unknown item key, wrong type): refused before the server, secrets unseen."""
    assert validation.failures[case], f"{case}: the bad value was accepted"


def test_skipping_the_always_tag_still_gets_a_bad_item_refused_by_the_module(bao, ansible, vault_conn, tmp_path):
    """--skip-tags always skips the validation task (as it skipped Ansible's own on main): the module refuses."""
    chain = make_chain(f"role-validation-{uuid.uuid4().hex[:8]}.example.com")
    certs = [{"certificate": chain.leaf.cert_pem, "private_key": chain.leaf.key_pem, "privat_key": "x"}]
    playbook = tmp_path / "site.yml"
    play = {"name": "Deliver", "hosts": "localhost", "connection": "local", "gather_facts": False, "roles": [ROLE]}
    playbook.write_text(json.dumps([play]))

    run = ansible.run_playbook(
        playbook,
        extra_vars={"cert_distribution_vault": {**vault_conn, **approle(bao)}, "cert_distribution_certs": certs},
        verbosity=3,
        env={"ANSIBLE_SKIP_TAGS": "always"},
    )

    assert run.rc != 0, run.output[-2000:]
    assert kv_writes(run.requests) == []

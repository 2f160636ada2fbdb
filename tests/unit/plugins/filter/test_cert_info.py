# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cert_info filter: thin wrapper over _certs.certificate_info, documented as it behaves."""

from __future__ import annotations

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from ansible_collections.certautopilot.vault.plugins.filter import cert_info as cert_info_plugin
from ansible_collections.certautopilot.vault.plugins.module_utils._certs import summarise_certificate


def test_filter_is_registered_under_its_documented_name():
    filters = cert_info_plugin.FilterModule().filters()
    assert filters == {"cert_info": cert_info_plugin.cert_info}
    assert yaml.safe_load(cert_info_plugin.DOCUMENTATION)["name"] == "cert_info"


def test_filter_returns_the_certificate_metadata(ec_chain):
    info = cert_info_plugin.cert_info(ec_chain.leaf.cert_pem)
    assert info == summarise_certificate(ec_chain.leaf.cert)
    assert info["cn"] == "www.example.com"
    assert info["sans"] == ["www.example.com", "example.com"]


def test_filter_return_documentation_lists_every_returned_key(ec_chain):
    documented = yaml.safe_load(cert_info_plugin.RETURN)["_value"]["contains"]
    assert set(documented) == set(cert_info_plugin.cert_info(ec_chain.leaf.cert_pem))


def test_filter_examples_are_valid_yaml():
    assert isinstance(yaml.safe_load(cert_info_plugin.EXAMPLES), list)


@pytest.mark.parametrize("bad", ["junk", "", "-----BEGIN CERTIFICATE-----\nMIIB\n"])
def test_filter_turns_bad_pem_into_a_filter_error(bad):
    with pytest.raises(AnsibleFilterError, match=r"^certificate is not a valid PEM certificate"):
        cert_info_plugin.cert_info(bad)


def test_filter_refuses_a_fullchain_without_echoing_it(ec_chain):
    with pytest.raises(AnsibleFilterError) as caught:
        cert_info_plugin.cert_info(ec_chain.fullchain_pem)
    message = str(caught.value)
    assert "put intermediates in chain" in message
    assert "-----BEGIN" not in message


def test_filter_refuses_a_private_key_without_echoing_it(ec_chain):
    with pytest.raises(AnsibleFilterError) as caught:
        cert_info_plugin.cert_info(ec_chain.leaf.key_pem)
    message = str(caught.value)
    assert "PEM" in message
    for line in ec_chain.leaf.key_pem.splitlines()[1:-1]:
        assert line not in message


@pytest.mark.parametrize("value", [None, 42, ["pem"]])
def test_filter_refuses_input_that_is_not_text(value):
    with pytest.raises(AnsibleFilterError, match="expects PEM text"):
        cert_info_plugin.cert_info(value)


def test_filter_reports_missing_cryptography(monkeypatch, ec_chain):
    monkeypatch.setattr(cert_info_plugin, "HAS_CRYPTOGRAPHY", False)
    with pytest.raises(AnsibleFilterError, match=r"cryptography >= 40\.0"):
        cert_info_plugin.cert_info(ec_chain.leaf.cert_pem)

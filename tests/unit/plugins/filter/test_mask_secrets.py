# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The mask_secrets filter: what a play may print of a message that quotes a refused value."""

from __future__ import annotations

import yaml

from ansible_collections.certautopilot.vault.plugins.filter import mask_secrets as plugin
from ansible_collections.certautopilot.vault.plugins.module_utils._redaction import MASK

JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJtYXNrIn0.c2lnbmF0dXJlc2lnbmF0dXJl"
SECRET_ID = "9f1c7a52-3b8e-4d41-a0f6-6c2e5d8b7a19"


def test_filter_is_registered_under_its_documented_name():
    assert plugin.FilterModule().filters() == {"mask_secrets": plugin.mask_secrets}
    assert yaml.safe_load(plugin.DOCUMENTATION)["name"] == "mask_secrets"


def test_a_validator_message_keeps_its_words_and_loses_the_key_and_the_given_token(ec_chain):
    messages = [
        f"value of auth_method must be one of: approle, jwt, cert, token, got: {JWT}",
        f"value of cert_distribution_state must be one of: present, rollback, got: {ec_chain.leaf.key_pem}",
    ]
    masked = plugin.mask_secrets(messages, secrets=[JWT])
    assert masked[0] == f"value of auth_method must be one of: approle, jwt, cert, token, got: {MASK}"
    assert masked[1].startswith("value of cert_distribution_state must be one of: present, rollback, got: ")
    for line in ec_chain.leaf.key_pem.splitlines()[1:-1]:
        assert line not in masked[1]


def test_a_token_shape_alone_is_not_guessed_to_be_a_secret():
    """Only PEM key blocks (found by their markers) and the given secrets are masked."""
    message = f"got: {JWT}"
    assert plugin.mask_secrets(message) == message


def test_given_secrets_are_masked_in_text_and_in_dictionary_keys():
    value = {f"role_{SECRET_ID}": [f"got: {SECRET_ID}", "nothing here"]}
    assert plugin.mask_secrets(value, secrets=[SECRET_ID, "", None]) == {
        f"role_{MASK}": [f"got: {MASK}", "nothing here"]
    }


def test_a_single_secret_may_be_given_as_text_and_clean_input_comes_back_as_it_was():
    assert plugin.mask_secrets(f"x {SECRET_ID} y", secrets=SECRET_ID) == f"x {MASK} y"
    clean = ["the arg spec validation passed", {"n": 3}]
    assert plugin.mask_secrets(clean) is clean

# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The connection and login options stand once, in _module.py's argument specs: the doc fragment and the role's
cert_distribution_vault must say the same of every option (name, type, default, choices, aliases, no_log)."""

from __future__ import annotations

import pathlib

import yaml

from ansible_collections.certautopilot.vault.plugins.doc_fragments.connection import ModuleDocFragment
from ansible_collections.certautopilot.vault.plugins.module_utils import _module

ROLE_SPEC = pathlib.Path(__file__).resolve().parents[4] / "roles" / "cert_distribution" / "meta" / "argument_specs.yml"
# Set by the role itself from task to task (each module returns it), never by the user of the role.
ROLE_SETS_ITSELF = {"consistency_index"}


def declared() -> dict[str, dict]:
    return {**_module.connection_argument_spec(), **_module.auth_argument_spec()}


def documented() -> dict[str, dict]:
    options = dict(yaml.safe_load(ModuleDocFragment.DOCUMENTATION)["options"])
    options.update(yaml.safe_load(ModuleDocFragment.WRITER)["options"])
    return options


def role_options() -> dict[str, dict]:
    spec = yaml.safe_load(ROLE_SPEC.read_text())
    return spec["argument_specs"]["cert_distribution"]["options"]["cert_distribution_vault"]["options"]


def shape(spec: dict) -> dict:
    return {
        "type": spec.get("type", "str"),
        "default": spec.get("default"),
        "choices": spec.get("choices"),
        "aliases": sorted(spec.get("aliases") or []),
    }


def test_the_doc_fragment_documents_every_connection_option_as_the_argument_spec_declares_it():
    docs = documented()

    assert set(docs) >= set(declared())
    assert {name: shape(docs[name]) for name in declared()} == {name: shape(spec) for name, spec in declared().items()}


def test_the_roles_cert_distribution_vault_takes_every_connection_option_with_the_same_type_choices_and_no_log():
    role = role_options()
    expected = {name: spec for name, spec in declared().items() if name not in ROLE_SETS_ITSELF}
    # The role's argument spec schema has no aliases: each alias is an option of its own there.
    aliases = {alias: name for name, spec in expected.items() for alias in spec.get("aliases") or []}

    assert set(role) == set(expected) | set(aliases)
    for name, spec in expected.items():
        assert role[name].get("type", "str") == spec.get("type", "str"), name
        assert role[name].get("choices") == spec.get("choices"), name
        assert bool(role[name].get("no_log")) == bool(spec.get("no_log")), name
    for alias, name in aliases.items():
        assert role[alias].get("type", "str") == expected[name].get("type", "str"), alias

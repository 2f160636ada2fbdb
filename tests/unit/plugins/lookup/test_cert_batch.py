# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cert_batch lookup: a certificate list to vault_cert_push's batch.

The plugin runs with a real DataLoader and Templar, as Ansible gives them to it, on certificates from
tests/support/pki.py written to a temporary directory. Private key files are found, never read.

A path template is rendered with full Jinja only when Ansible trusts it as a template (written in a playbook,
vars file or -e); anything else (a survey answer, a fact, and a plain str made in Python on ansible-core 2.19+)
gets placeholders only. ``trusted()`` and ``untrusted()`` build each kind on any supported ansible-core.
"""

from __future__ import annotations

import contextlib
import os
import typing as t

import pki
import pytest
import vault_files
import yaml
from ansible import constants as C
from ansible.errors import AnsibleLookupError
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar
from refusals import assert_holds_no_pem

from ansible_collections.certautopilot.vault.plugins.lookup import cert_batch
from ansible_collections.certautopilot.vault.plugins.module_utils._certs import certificate_info
from ansible_collections.certautopilot.vault.plugins.plugin_utils import _files

try:
    from ansible.template import trust_as_template
except ImportError:  # ansible-core 2.17, 2.18: text not marked unsafe is trusted
    trust_as_template = None

PLUGIN_NAME = "certautopilot.vault.cert_batch"
OWN_VARIABLES = "cn, fingerprint_sha256, issuer, not_after, not_before, sans, serial, subject"
UNTRUSTED = r"the path template came from data Ansible does not trust as a template"


# Before data tagging (2.17, 2.18) a plain str is trusted: the templates trusted() made, to tell them apart.
TRUSTED_ON_2_18: set[str] = set()


def is_trusted(template: t.Any) -> bool:
    if not isinstance(template, str):
        return False
    if trust_as_template is None:
        return template in TRUSTED_ON_2_18
    return cert_batch.is_trusted_as_template(template)


def trusted(text: str) -> str:
    """A template as Ansible gives one written in a playbook, a vars file or -e: full Jinja (via template_from)."""
    if trust_as_template is not None:
        return trust_as_template(text)
    TRUSTED_ON_2_18.add(text)
    return text


def untrusted(text: str) -> str:
    """A template as Ansible gives a survey answer, a fact or a !unsafe value: placeholders only."""
    if trust_as_template is not None:
        return text  # 2.19+: a str made in Python is not trusted as a template
    from ansible.utils.unsafe_proxy import AnsibleUnsafeText

    return AnsibleUnsafeText(text)


BOTH_MODES = [pytest.param(trusted, id="trusted"), pytest.param(untrusted, id="untrusted")]


@pytest.fixture
def files(tmp_path, ec_chain):
    """A directory with cert.pem, key.pem, chain.pem of www.example.com."""
    (tmp_path / "cert.pem").write_text(ec_chain.leaf.cert_pem)
    (tmp_path / "key.pem").write_text(ec_chain.leaf.key_pem)
    (tmp_path / "chain.pem").write_text(ec_chain.chain_pem)
    return tmp_path


@pytest.fixture
def files_read(monkeypatch) -> list[str]:
    """The controller files the lookup reads, in order (each is opened once, by _files.read_bytes)."""
    read: list[str] = []
    read_bytes = _files.read_bytes

    def recording(path: str, **kwargs: t.Any) -> bytes:
        read.append(path)
        return read_bytes(path, **kwargs)

    monkeypatch.setattr(_files, "read_bytes", recording)
    return read


@pytest.fixture
def loader(tmp_path) -> DataLoader:
    loader = DataLoader()
    loader.set_basedir(str(tmp_path))
    loader.set_vault_secrets(vault_files.secrets())
    return loader


@pytest.fixture
def lookup(loader) -> cert_batch.LookupModule:
    """The plugin as Ansible's plugin loader sets it up: documented options registered, loader and templar given."""
    options = yaml.safe_load(cert_batch.DOCUMENTATION)["options"]
    C.config.initialize_plugin_configuration_definitions("lookup", PLUGIN_NAME, options)
    plugin = cert_batch.LookupModule(loader=loader, templar=Templar(loader=loader))
    plugin._load_name = PLUGIN_NAME
    return plugin


def run(lookup: cert_batch.LookupModule, *terms: t.Any, variables: dict | None = None, **options: t.Any) -> list:
    """Run the lookup; a trusted ``template`` is passed the one way it keeps its trust, through template_from."""
    variables = {"inventory_hostname": "localhost", **(variables or {})}
    template = options.get("template")
    if is_trusted(template):
        variables["test_path_template"] = options.pop("template")
        options["template_from"] = "test_path_template"
    return lookup.run(list(terms), variables=variables, **options)


def leaf_item(issued: pki.Issued, **extra: t.Any) -> dict:
    return {"certificate": issued.cert_pem, "private_key": issued.key_pem, **extra}


# -- the batch ---------------------------------------------------------------


def test_certificate_and_chain_files_are_read_and_the_key_file_is_given_as_its_path(lookup, files, ec_chain):
    item = {
        "certificate_file": str(files / "cert.pem"),
        "private_key_file": str(files / "key.pem"),
        "chain_file": str(files / "chain.pem"),
    }
    assert run(lookup, [item]) == [
        {
            "path": "certs/www.example.com",
            "certificate": ec_chain.leaf.cert_pem,
            "private_key_file": str(files / "key.pem"),
            "chain": ec_chain.chain_pem,
        }
    ]


def test_relative_file_paths_are_searched_like_the_file_lookup(lookup, files, ec_chain):
    (files / "role" / "files").mkdir(parents=True)
    (files / "role" / "files" / "www.pem").write_text(ec_chain.leaf.cert_pem)
    variables = {"ansible_search_path": [str(files / "role")]}
    batch = run(lookup, {"certificate_file": "www.pem"}, variables=variables, include_private_key=False)
    assert batch[0]["certificate"] == ec_chain.leaf.cert_pem


def test_a_vault_encrypted_certificate_and_chain_file_are_decrypted(lookup, files, ec_chain):
    (files / "cert.vault").write_bytes(vault_files.encrypt(ec_chain.leaf.cert_pem))
    (files / "chain.vault").write_bytes(vault_files.encrypt(ec_chain.chain_pem))
    item = {"certificate_file": str(files / "cert.vault"), "chain_file": [str(files / "chain.vault")]}
    batch = run(lookup, item, include_private_key=False)
    assert batch[0]["certificate"] == ec_chain.leaf.cert_pem
    assert batch[0]["chain"] == [ec_chain.chain_pem]
    assert batch[0]["path"] == "certs/www.example.com"


def test_chain_file_may_be_a_list_and_inline_chain_passes_through(lookup, files, ec_chain):
    listed = run(lookup, leaf_item(ec_chain.leaf, chain_file=[str(files / "chain.pem"), str(files / "chain.pem")]))
    assert listed[0]["chain"] == [ec_chain.chain_pem, ec_chain.chain_pem]
    inline = run(lookup, leaf_item(ec_chain.leaf, chain=[ec_chain.chain_pem]))
    assert inline[0]["chain"] == [ec_chain.chain_pem]


def test_a_chain_file_shared_by_many_certificates_is_read_once(lookup, files_read, files):
    leaves = [pki.make_leaf(None, f"{name}.example.com") for name in ("a", "b", "c")]
    items = [leaf_item(leaf, chain_file=str(files / "chain.pem")) for leaf in leaves]
    batch = run(lookup, items)
    assert len({item["chain"] for item in batch}) == 1
    assert files_read.count(str(files / "chain.pem")) == 1


def test_an_item_without_a_chain_has_no_chain_key(lookup, ec_chain):
    assert "chain" not in run(lookup, leaf_item(ec_chain.leaf))[0]


def test_terms_may_be_dicts_or_lists_of_dicts_and_keep_their_order(lookup):
    first, second, third = (pki.make_leaf(None, f"{name}.example.com") for name in ("a", "b", "c"))
    batch = run(lookup, leaf_item(first), [leaf_item(second), leaf_item(third)])
    assert [item["path"] for item in batch] == ["certs/a.example.com", "certs/b.example.com", "certs/c.example.com"]


def test_an_empty_list_gives_an_empty_batch(lookup):
    assert run(lookup, []) == []


def test_a_term_that_is_not_a_dictionary_is_refused(lookup):
    with pytest.raises(AnsibleLookupError, match=r"each certificate must be a dictionary, got str"):
        run(lookup, ["certs/www.example.com"])


def test_unknown_keys_and_shared_paths_pass_through_for_the_module_to_check(lookup):
    leaves = [pki.make_leaf(None, "same.example.com"), pki.make_leaf(None, "other.example.com")]
    items = [leaf_item(leaves[0], pathh="typo"), leaf_item(leaves[1], path="certs/same.example.com")]
    batch = run(lookup, items)
    assert batch[0]["pathh"] == "typo"
    assert [item["path"] for item in batch] == ["certs/same.example.com", "certs/same.example.com"]


def test_item_vars_are_not_in_the_batch_item(lookup, ec_chain):
    batch = run(lookup, leaf_item(ec_chain.leaf, vars={"team": "web"}), template="{{ team }}/{{ cn }}")
    assert batch == [
        {"path": "web/www.example.com", "certificate": ec_chain.leaf.cert_pem, "private_key": ec_chain.leaf.key_pem}
    ]


def test_the_terms_given_are_not_changed(lookup, files, ec_chain):
    item = {"certificate_file": str(files / "cert.pem"), "private_key_file": "key.pem", "vars": {"team": "web"}}
    before = dict(item)
    run(lookup, item)
    assert item == before


# -- private keys: found, never read ----------------------------------------------


def test_a_private_key_file_is_resolved_not_read(lookup, files_read, files, ec_chain):
    (files / "files").mkdir()
    (files / "files" / "www.key").write_text(ec_chain.leaf.key_pem)
    variables = {"ansible_search_path": [str(files)]}
    batch = run(lookup, {"certificate": ec_chain.leaf.cert_pem, "private_key_file": "www.key"}, variables=variables)
    assert batch[0]["private_key_file"] == str(files / "files" / "www.key")
    assert "private_key" not in batch[0]
    assert files_read == []


@pytest.mark.parametrize(
    "content",
    [
        b"$ANSIBLE_VAULT;1.1;AES256\nnot-hex-at-all\n",  # a vault file no password opens
        b"\xff\xfe GARBAGE-KEY-BYTES \x00\x01",  # not even text
    ],
    ids=["broken-vault-file", "binary-garbage"],
)
def test_a_key_file_that_could_not_be_read_still_passes_and_its_content_is_not_in_the_output(
    lookup, files, ec_chain, content
):
    (files / "key.bad").write_bytes(content)
    batch = run(lookup, {"certificate_file": str(files / "cert.pem"), "private_key_file": str(files / "key.bad")})
    assert batch[0]["private_key_file"] == str(files / "key.bad")
    assert "private_key" not in batch[0]
    everything = repr(batch)
    assert "not-hex-at-all" not in everything
    assert "GARBAGE-KEY-BYTES" not in everything


def test_a_vault_encrypted_key_file_is_passed_on_encrypted_as_a_path(lookup, files, ec_chain):
    (files / "key.vault").write_bytes(vault_files.encrypt(ec_chain.leaf.key_pem))
    batch = run(lookup, {"certificate_file": str(files / "cert.pem"), "private_key_file": str(files / "key.vault")})
    assert batch[0]["private_key_file"] == str(files / "key.vault")
    assert ec_chain.leaf.key_pem not in repr(batch)


def test_an_inline_private_key_passes_through(lookup, ec_chain):
    assert run(lookup, leaf_item(ec_chain.leaf))[0]["private_key"] == ec_chain.leaf.key_pem


def test_a_certificate_without_any_key_passes_for_the_module_to_judge(lookup, ec_chain):
    batch = run(lookup, {"certificate": ec_chain.leaf.cert_pem})
    assert batch == [{"path": "certs/www.example.com", "certificate": ec_chain.leaf.cert_pem}]


def test_include_private_key_false_drops_both_key_keys(lookup, files, ec_chain):
    items = [
        leaf_item(ec_chain.leaf),
        {"certificate": ec_chain.leaf.cert_pem, "private_key_file": str(files / "absent.pem"), "path": "certs/b"},
        # With no key wanted, even an item giving both is not refused.
        leaf_item(ec_chain.leaf, private_key_file=str(files / "key.pem"), path="certs/c"),
    ]
    batch = run(lookup, items, include_private_key=False)
    assert batch == [
        {"path": "certs/www.example.com", "certificate": ec_chain.leaf.cert_pem},
        {"path": "certs/b", "certificate": ec_chain.leaf.cert_pem},
        {"path": "certs/c", "certificate": ec_chain.leaf.cert_pem},
    ]


def test_a_missing_private_key_file_is_named(lookup, ec_chain):
    with pytest.raises(AnsibleLookupError, match=r"^cert_batch: private_key_file of certificate 1 not found"):
        run(lookup, {"certificate": ec_chain.leaf.cert_pem, "private_key_file": "nope.key"})


def test_a_private_key_file_that_is_not_a_path_is_refused(lookup, ec_chain):
    with pytest.raises(AnsibleLookupError, match=r"private_key_file of certificate 1 must be a file path, got int"):
        run(lookup, {"certificate": ec_chain.leaf.cert_pem, "private_key_file": 42})


# -- path rendering: a trusted template is full Jinja --------------------------


# Run in the loader's base directory (tmp_path): it would create tmp_path / "ran" on the controller.
PIPE_TOUCHING = "{{ lookup('pipe', 'touch ran') }}"


def test_template_sees_the_certificate_metadata(lookup, ec_chain):
    template = "{{ cn }}|{{ sans | join(',') }}|{{ serial }}|{{ not_after }}|{{ fingerprint_sha256 }}|{{ issuer }}"
    info = certificate_info(ec_chain.leaf.cert_pem)
    path = run(lookup, leaf_item(ec_chain.leaf), template=trusted(template))[0]["path"]
    assert path == "|".join(
        [
            info["cn"],
            ",".join(info["sans"]),
            info["serial"],
            info["not_after"],
            info["fingerprint_sha256"],
            info["issuer"],
        ]
    )


def test_template_sees_variables_in_scope_and_item_vars_win(lookup):
    leaves = [pki.make_leaf(None, f"{name}.example.com") for name in ("a", "b", "c")]
    items = [
        leaf_item(leaves[0]),
        leaf_item(leaves[1], vars={"env": "staging"}),
        leaf_item(leaves[2], vars={"cn": "x"}),
    ]
    batch = run(lookup, items, template=trusted("certs/{{ env }}/{{ cn }}"), variables={"env": "prod"})
    assert [item["path"] for item in batch] == [
        "certs/prod/a.example.com",
        "certs/staging/b.example.com",
        "certs/prod/x",
    ]


def test_an_item_var_that_only_some_items_set_does_not_leak_to_the_next(lookup):
    leaves = [pki.make_leaf(None, f"{name}.example.com") for name in ("a", "b")]
    items = [leaf_item(leaves[0], vars={"team": "web"}), leaf_item(leaves[1])]
    batch = run(lookup, items, template=trusted("{{ team | default('none') }}/{{ cn }}"))
    assert [item["path"] for item in batch] == ["web/a.example.com", "none/b.example.com"]


def test_a_trusted_template_may_run_lookups_on_the_controller(lookup, ec_chain, tmp_path):
    # The control for the placeholder tests below: full Jinja does run what it is given.
    marker = tmp_path / "ran"
    batch = run(lookup, leaf_item(ec_chain.leaf), template=trusted(PIPE_TOUCHING + "certs/{{ cn }}"))
    assert batch[0]["path"] == "certs/www.example.com"
    assert marker.exists()


def test_an_item_path_is_used_as_it_is(lookup, ec_chain):
    batch = run(lookup, leaf_item(ec_chain.leaf, path="certs/not-rendered"), template="ignored/{{ cn }}")
    assert batch[0]["path"] == "certs/not-rendered"


@pytest.mark.parametrize("path", ["certs/{{ not_rendered }}", "certs/{% if x %}a{% endif %}", "certs/{# c #}"])
def test_an_item_path_with_template_syntax_is_refused_by_name_without_quoting_it(lookup, ec_chain, path):
    with pytest.raises(
        AnsibleLookupError, match=r"path of cert_distribution_certs\[1\] holds template syntax"
    ) as refused:
        run(
            lookup,
            leaf_item(ec_chain.leaf, path="certs/ok"),
            leaf_item(ec_chain.leaf, path=path),
            items_name="cert_distribution_certs",
        )
    assert path not in str(refused.value)


@pytest.mark.parametrize("mode", BOTH_MODES)
def test_a_certificate_cannot_inject_a_template_into_its_path(lookup, mode):
    hostile = pki.make_leaf(None, "{{ lookup('ansible.builtin.env', 'HOME') }}")
    with pytest.raises(AnsibleLookupError, match=r"for certificate 1, which still holds template syntax") as refused:
        run(
            lookup, leaf_item(hostile), leaf_item(pki.make_leaf(None, "b.example.com")), template=mode("certs/{{ cn }}")
        )
    assert os.environ["HOME"] not in str(refused.value)


@pytest.mark.parametrize("mode", BOTH_MODES)
def test_a_certificate_name_that_holds_a_lookup_does_not_run_it(lookup, tmp_path, mode):
    marker = tmp_path / "ran"
    hostile = pki.make_leaf(None, PIPE_TOUCHING)
    with pytest.raises(AnsibleLookupError, match=r"still holds template syntax"):
        run(lookup, leaf_item(hostile), template=mode("certs/{{ cn }}"))
    assert not marker.exists()


def test_a_thousand_certificates_each_get_their_own_path(lookup):
    issuer = pki.make_ca("Batch CA")
    items = [leaf_item(pki.make_leaf(issuer, f"host{index:04d}.example.com")) for index in range(1000)]
    items[500]["vars"] = {"env": "staging"}
    batch = run(lookup, items, template=trusted("certs/{{ env }}/{{ cn }}"), variables={"env": "prod"})
    expected = [f"certs/prod/host{index:04d}.example.com" for index in range(1000)]
    expected[500] = "certs/staging/host0500.example.com"
    assert [item["path"] for item in batch] == expected
    assert [item["certificate"] for item in batch] == [item["certificate"] for item in items]


# -- path rendering: an untrusted template gets placeholders only ---------------


def test_an_untrusted_template_renders_the_certificate_placeholders(lookup, ec_chain):
    # What a survey answer, a fact, or a value Ansible already rendered arrives as.
    template = untrusted("certs/{{ cn }}")
    if trust_as_template is not None:
        from ansible.template import is_trusted_as_template

        assert not is_trusted_as_template(template)
    assert run(lookup, leaf_item(ec_chain.leaf), template=template)[0]["path"] == "certs/www.example.com"


def test_an_untrusted_template_sees_every_metadata_field(lookup, ec_chain):
    fields = ("cn", "serial", "not_before", "not_after", "issuer", "subject", "fingerprint_sha256")
    info = certificate_info(ec_chain.leaf.cert_pem)
    template = untrusted("|".join(f"{{{{ {field} }}}}" for field in fields))
    assert run(lookup, leaf_item(ec_chain.leaf), template=template)[0]["path"] == "|".join(info[f] for f in fields)


def test_an_untrusted_template_uses_item_vars_and_they_win_over_the_metadata(lookup):
    leaves = [pki.make_leaf(None, f"{name}.example.com") for name in ("a", "b")]
    items = [leaf_item(leaves[0], vars={"team": "web"}), leaf_item(leaves[1], vars={"team": "api", "cn": "x"})]
    batch = run(lookup, items, template=untrusted("certs/{{ .team }}/{{ cn }}"))
    assert [item["path"] for item in batch] == ["certs/web/a.example.com", "certs/api/x"]


def test_an_untrusted_template_from_a_variable_uses_item_vars(lookup, ec_chain):
    # A survey answer reaches the lookup through template_from: placeholders work, item vars included.
    variables = {"path_template": untrusted("certs/{{ .team }}/{{ .cn }}")}
    item = leaf_item(ec_chain.leaf, vars={"team": "web"})
    batch = run(lookup, item, template_from="path_template", variables=variables)
    assert batch[0]["path"] == "certs/web/www.example.com"


@pytest.mark.parametrize(
    "template",
    [
        "certs/{{ lookup('pipe', 'id') }}",
        "certs/{{ cn | upper }}",
        "certs/{{ cn[0] }}",
        "certs/{{ 'text' }}",
        "certs/{{ cn.x }}",
        "certs/{% if true %}x{% endif %}",
        "certs/{# comment #}{{ cn }}",
        "certs/{{ cn }}}}",
        "{% raw %}certs/{{ cn | upper }}{% endraw %}",
    ],
)
def test_an_untrusted_template_may_hold_nothing_but_placeholders(lookup, ec_chain, template):
    with pytest.raises(AnsibleLookupError, match=UNTRUSTED) as raised:
        run(lookup, leaf_item(ec_chain.leaf), template=untrusted(template))
    assert "may only hold {{ name }} placeholders of the certificate's own variables" in str(raised.value)


def test_the_same_expressions_render_when_trusted(lookup, ec_chain):
    # So that the refusals above are about trust, not about the expressions themselves.
    template = trusted("certs/{{ cn | upper }}/{{ cn[0] }}/{{ 'text' }}/{% if true %}x{% endif %}")
    assert run(lookup, leaf_item(ec_chain.leaf), template=template)[0]["path"] == "certs/WWW.EXAMPLE.COM/w/text/x"


@pytest.mark.parametrize("via", ["template", "template_from"])
def test_an_untrusted_template_cannot_run_a_lookup(lookup, ec_chain, tmp_path, via):
    marker = tmp_path / "ran"
    template = untrusted("certs/" + PIPE_TOUCHING + "/{{ cn }}")
    options = {"template": template} if via == "template" else {"template_from": "path_template"}
    with pytest.raises(AnsibleLookupError, match=UNTRUSTED):
        run(lookup, leaf_item(ec_chain.leaf), variables={"path_template": template}, **options)
    assert not marker.exists()


def test_raw_tags_do_not_let_an_untrusted_template_run_a_lookup(lookup, ec_chain, tmp_path):
    marker = tmp_path / "ran"
    with pytest.raises(AnsibleLookupError, match=UNTRUSTED):
        run(lookup, leaf_item(ec_chain.leaf), template=untrusted("{% raw %}" + PIPE_TOUCHING + "{% endraw %}"))
    assert not marker.exists()


def test_an_untrusted_template_drops_raw_tags(lookup, ec_chain):
    template = untrusted("{% raw %}certs/{{ cn }}{% endraw %}/{%- raw -%}{{ .serial }}{%- endraw -%}")
    serial = certificate_info(ec_chain.leaf.cert_pem)["serial"]
    assert run(lookup, leaf_item(ec_chain.leaf), template=template)[0]["path"] == f"certs/www.example.com/{serial}"


def test_an_untrusted_template_cannot_read_a_variable_in_scope(lookup, ec_chain):
    token = "hvs.CAESIJ" + "x" * 40
    variables = {"env": "env-value-7f3a", "vault_token": token}
    with pytest.raises(AnsibleLookupError) as raised:
        run(lookup, leaf_item(ec_chain.leaf), template=untrusted("certs/{{ env }}/{{ cn }}"), variables=variables)
    message = str(raised.value)
    assert "rendering the path template for certificate 1 failed: env is not one of the certificate's own " in message
    assert f"({OWN_VARIABLES})" in message
    assert "env-value-7f3a" not in message
    with pytest.raises(AnsibleLookupError, match=r"failed: vault_token is not one of") as raised:
        run(lookup, leaf_item(ec_chain.leaf), template=untrusted("{{ vault_token }}"), variables=variables)
    assert token not in str(raised.value)


def test_an_untrusted_template_error_lists_the_item_vars_and_no_other_item_s(lookup):
    leaves = [pki.make_leaf(None, f"{name}.example.com") for name in ("a", "b")]
    items = [leaf_item(leaves[0], vars={"team": "web"}), leaf_item(leaves[1], vars={"owner": "ops"})]
    with pytest.raises(AnsibleLookupError) as raised:
        run(lookup, items, template=untrusted("{{ team }}/{{ cn }}"))
    message = str(raised.value)
    assert "for certificate 2 failed: team is not one of the certificate's own variables" in message
    assert "(cn, fingerprint_sha256, issuer, not_after, not_before, owner, sans, serial, subject)" in message


# -- template_from and the Go form ---------------------------------------------


def test_template_from_takes_the_raw_value_of_the_named_variable(lookup, ec_chain):
    variables = {"path_template": trusted("certs/{{ env }}/{{ cn }}"), "env": "prod"}
    batch = run(lookup, leaf_item(ec_chain.leaf), template_from="path_template", variables=variables)
    assert batch[0]["path"] == "certs/prod/www.example.com"


def test_template_from_wins_over_template(lookup, ec_chain):
    variables = {"path_template": "from-variable/{{ cn }}"}
    batch = run(
        lookup,
        leaf_item(ec_chain.leaf),
        template="from-option/{{ cn }}",
        template_from="path_template",
        variables=variables,
    )
    assert batch[0]["path"] == "from-variable/www.example.com"


@pytest.mark.parametrize("template", [None, "fallback/{{ cn }}"])
def test_template_from_an_undefined_variable_is_refused(lookup, ec_chain, template):
    options = {} if template is None else {"template": template}
    with pytest.raises(AnsibleLookupError, match=r"^cert_batch: template_from names no variable in scope$"):
        run(lookup, leaf_item(ec_chain.leaf), template_from="no_such_variable", **options)


def test_template_from_a_value_ansible_marked_as_a_template_renders_the_same(lookup, ec_chain):
    # What a template written in YAML vars arrives as: trusted (2.19+) or plain text (earlier).
    variables = {"path_template": trusted("certs/{{ cn }}")}
    batch = run(lookup, leaf_item(ec_chain.leaf), template_from="path_template", variables=variables)
    assert batch[0]["path"] == "certs/www.example.com"


@pytest.mark.parametrize("value", [None, "", "   ", 42])
def test_template_from_a_variable_that_holds_no_template_is_refused(lookup, ec_chain, value):
    with pytest.raises(AnsibleLookupError, match=r"the path template must be a non-empty string"):
        run(lookup, leaf_item(ec_chain.leaf), template_from="path_template", variables={"path_template": value})


@pytest.mark.parametrize("mode", BOTH_MODES)
@pytest.mark.parametrize("template", ["certs/{{ .cn }}", "certs/{{.cn}}", "certs/{{- .cn -}}", "certs/{{ cn }}"])
def test_the_go_template_form_reads_as_jinja(lookup, ec_chain, mode, template):
    assert run(lookup, leaf_item(ec_chain.leaf), template=mode(template))[0]["path"] == "certs/www.example.com"


def test_the_go_form_sees_item_vars_and_variables_in_scope(lookup, ec_chain):
    variables = {"path_template": trusted("certs/{{ .env }}/{{ .team }}/{{.cn}}"), "env": "prod"}
    item = leaf_item(ec_chain.leaf, vars={"team": "web"})
    batch = run(lookup, item, template_from="path_template", variables=variables)
    assert batch[0]["path"] == "certs/prod/web/www.example.com"


@pytest.mark.parametrize("mode", BOTH_MODES)
@pytest.mark.parametrize(
    ("template", "path"),
    [
        ("certs/ {{- .cn -}} /x", "certs/www.example.com/x"),
        ("certs/ {{- cn -}} /x", "certs/www.example.com/x"),
        ("certs/\n\t{{- .cn }} /x", "certs/www.example.com /x"),
        ("certs/ {{ .cn -}} \n/x", "certs/ www.example.com/x"),
        ("{{ .team -}} / {{ cn }}", "web/ www.example.com"),
        ("{{ .team }}{{ cn }}", "webwww.example.com"),
    ],
)
def test_the_go_form_and_jinja_trim_whitespace_alike_in_both_modes(lookup, ec_chain, mode, template, path):
    assert run(lookup, leaf_item(ec_chain.leaf, vars={"team": "web"}), template=mode(template))[0]["path"] == path


def test_a_trusted_left_trim_removes_the_whitespace_after_the_previous_expression(lookup, ec_chain):
    template = trusted("{{ .team }} {{- cn }}")
    assert (
        run(lookup, leaf_item(ec_chain.leaf, vars={"team": "web"}), template=template)[0]["path"]
        == "webwww.example.com"
    )


def test_an_untrusted_left_trim_removes_the_whitespace_after_the_previous_placeholder(lookup, ec_chain):
    template = untrusted("{{ .team }} {{- cn }}")
    assert (
        run(lookup, leaf_item(ec_chain.leaf, vars={"team": "web"}), template=template)[0]["path"]
        == "webwww.example.com"
    )


# -- {% raw %} in a trusted template -----------------------------------------------


def test_a_trusted_template_s_raw_parts_are_rendered_per_certificate_after_the_rest(lookup):
    leaves = [pki.make_leaf(None, f"{name}.example.com") for name in ("a", "b")]
    template = trusted("certs/{{ p }}/{% raw %}{{ cn }}{% endraw %}")
    batch = run(lookup, [leaf_item(leaf) for leaf in leaves], template=template, variables={"p": "prod"})
    assert [item["path"] for item in batch] == ["certs/prod/a.example.com", "certs/prod/b.example.com"]


@pytest.mark.parametrize("via", ["template", "template_from"])
def test_a_template_wrapped_whole_in_raw_renders_per_certificate(lookup, ec_chain, via):
    template = trusted("{% raw %}certs/{{ env }}/{{ .cn }}{% endraw %}")
    options = {"template": template} if via == "template" else {"template_from": "path_template"}
    variables = {"path_template": template, "env": "prod"}
    assert (
        run(lookup, leaf_item(ec_chain.leaf), variables=variables, **options)[0]["path"] == "certs/prod/www.example.com"
    )


def test_a_raw_template_with_an_undefined_variable_outside_raw_is_refused(lookup, ec_chain):
    with pytest.raises(
        AnsibleLookupError, match=r"rendering the path template for certificate 1 failed: 'nowhere' is undefined"
    ):
        run(lookup, leaf_item(ec_chain.leaf), template=trusted("certs/{{ nowhere }}/{% raw %}{{ cn }}{% endraw %}"))


def test_raw_pre_rendering_does_not_run_a_lookup_held_by_an_untrusted_variable(lookup, ec_chain, tmp_path):
    marker = tmp_path / "ran"
    template = trusted("certs/{{ p }}/{% raw %}{{ cn }}{% endraw %}")
    with contextlib.suppress(AnsibleLookupError):  # refusing it is as good as rendering it as text
        run(lookup, leaf_item(ec_chain.leaf), template=template, variables={"p": untrusted(PIPE_TOUCHING)})
    assert not marker.exists()


# -- errors: each names the certificate ---------------------------------------


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ({"private_key": "x"}, r"certificate 1 needs certificate or certificate_file"),
        (
            {"certificate": "x", "certificate_file": "y", "private_key": "x"},
            r"certificate 1 gives both certificate and certificate_file; give one",
        ),
        (
            {"certificate": "x", "private_key": "x", "private_key_file": "y", "path": "p"},
            r"certificate 1 gives both private_key and private_key_file; give one",
        ),
        ({"certificate": "x", "private_key": "x", "chain": "a", "chain_file": "b"}, r"gives both chain and chain_file"),
        ({"certificate": "x", "private_key": "x", "vars": ["a"]}, r"vars of certificate 1 must be a dictionary"),
        ({"certificate": ["x"], "private_key": "x"}, r"certificate of certificate 1 must be PEM text, got list"),
    ],
)
def test_malformed_items_are_refused_naming_the_certificate(lookup, files, item, message):
    (files / "y").write_text("a key that is there")  # so that a file that exists is not what fails
    with pytest.raises(AnsibleLookupError, match=message):
        run(lookup, item)


def test_a_missing_file_is_named(lookup, files):
    with pytest.raises(AnsibleLookupError, match=r"^cert_batch: certificate_file of certificate 1 not found"):
        run(lookup, {"certificate_file": "nope.pem"}, include_private_key=False)


def test_a_certificate_file_that_cannot_be_read_is_named(lookup, files):
    (files / "cert.bin").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(AnsibleLookupError, match=r"certificate_file: it is not UTF-8 text \(certificate 1\)"):
        run(lookup, {"certificate_file": str(files / "cert.bin")})


def test_a_certificate_that_does_not_parse_is_named(lookup, ec_chain):
    with pytest.raises(AnsibleLookupError, match=r"certificate 2: certificate is not a valid PEM certificate"):
        run(lookup, leaf_item(ec_chain.leaf), {"certificate": "junk", "private_key": "x"})


def test_a_template_error_names_the_certificate_and_lists_its_own_variables(lookup, ec_chain):
    leaf = pki.make_leaf(None, "b.example.com")
    items = [leaf_item(ec_chain.leaf, vars={"team": "web"}), leaf_item(leaf, path="certs/b"), leaf_item(leaf)]
    with pytest.raises(AnsibleLookupError) as raised:
        run(lookup, items, template=trusted("certs/{{ team }}/{{ cn }}"))
    message = str(raised.value)
    assert "rendering the path template for certificate 3 failed" in message
    assert "team" in message and "undefined" in message
    assert f"Its own variables are {OWN_VARIABLES}, besides every variable in scope" in message


def test_a_template_error_lists_the_item_vars_among_its_variables(lookup, ec_chain):
    with pytest.raises(AnsibleLookupError, match=r"for certificate 1 failed: .*own variables are .*subject, team,"):
        run(lookup, leaf_item(ec_chain.leaf, vars={"team": "web"}), template=trusted("certs/{{ nowhere }}"))


def test_a_template_syntax_error_names_the_certificate(lookup, ec_chain):
    with pytest.raises(AnsibleLookupError, match=r"rendering the path template for certificate 1 failed: "):
        run(lookup, leaf_item(ec_chain.leaf), template=trusted("certs/{% if %}"))


def test_a_template_that_renders_no_text_is_refused(lookup, ec_chain):
    with pytest.raises(AnsibleLookupError, match=r"rendered a list for certificate 1; a path is needed"):
        run(lookup, leaf_item(ec_chain.leaf), template=trusted("{{ sans }}"))
    with pytest.raises(AnsibleLookupError, match=r"a path is needed"):
        run(lookup, leaf_item(ec_chain.leaf), template=trusted("{{ '' }}"))


def test_an_untrusted_template_that_renders_no_text_is_refused(lookup, ec_chain):
    with pytest.raises(AnsibleLookupError, match=r"rendered blank text for certificate 1; a path is needed"):
        run(lookup, leaf_item(ec_chain.leaf, vars={"blank": ""}), template=untrusted(" {{ blank }} "))


def test_a_vault_file_the_password_does_not_open_is_named(lookup, files, ec_chain):
    encrypted = vault_files.encrypt(ec_chain.leaf.cert_pem, b"another-password")
    (files / "cert.vault").write_bytes(encrypted)
    with pytest.raises(AnsibleLookupError) as raised:
        run(lookup, {"certificate_file": str(files / "cert.vault")}, include_private_key=False)
    assert str(raised.value) == (
        "cert_batch: cannot read certificate_file: it cannot be decrypted (is the Ansible Vault password "
        "given, and the right one?) (certificate 1)"
    )


# -- errors never quote a value the user gave, whatever it holds -------------------------


@pytest.mark.parametrize("option", ["private_key_file", "certificate_file", "chain_file"])
def test_a_key_given_as_a_file_path_is_not_in_the_error(lookup, ec_chain, option):
    item = {"certificate": ec_chain.leaf.cert_pem, option: ec_chain.leaf.key_pem}
    if option == "certificate_file":
        del item["certificate"]
    with pytest.raises(AnsibleLookupError) as raised:
        run(lookup, item)
    message = str(raised.value)
    assert message == f"cert_batch: {option} of certificate 1 not found on the controller"
    assert "PRIVATE KEY" not in message
    assert_holds_no_pem(message, ec_chain.leaf.key_pem)


def test_a_key_given_as_the_path_is_not_in_the_error_naming_the_item(lookup, ec_chain):
    with pytest.raises(AnsibleLookupError) as raised:
        run(lookup, {"path": ec_chain.leaf.key_pem, "private_key": "x"})
    message = str(raised.value)
    assert message == "cert_batch: certificate 1 needs certificate or certificate_file"
    assert "PRIVATE KEY" not in message
    assert_holds_no_pem(message, ec_chain.leaf.key_pem)


def test_a_token_given_as_a_file_path_is_not_in_the_error(lookup, ec_chain):
    token = "hvs.CAESIJ" + "q" * 40
    with pytest.raises(AnsibleLookupError) as raised:
        run(lookup, {"certificate_file": token}, include_private_key=False)
    assert str(raised.value) == ("cert_batch: certificate_file of certificate 1 not found on the controller")


def test_a_key_given_as_template_from_is_not_in_the_error(lookup, ec_chain):
    with pytest.raises(AnsibleLookupError) as raised:
        run(lookup, leaf_item(ec_chain.leaf), template_from=ec_chain.leaf.key_pem)
    message = str(raised.value)
    assert message == "cert_batch: template_from names no variable in scope"
    assert "PRIVATE KEY" not in message
    assert_holds_no_pem(message, ec_chain.leaf.key_pem)


# -- hosts: each host's variables -----------------------------------------------


def test_a_host_sees_its_own_variables_in_place_of_the_task_hosts():
    task_host_own = {"inventory_hostname": "web01", "certs": ["a"], "only_first": 1, "layout": "default"}
    # The task's variables for web01: its own, a role var above them (layout), a play var (prefix).
    variables = {**task_host_own, "layout": "haproxy", "prefix": "certs", "role_default": "x"}
    own = {"inventory_hostname": "web02", "certs": ["b"], "layout": "fabio", "role_default": "mine"}
    view = cert_batch.host_variables(variables, task_host_own, own)
    assert view["inventory_hostname"] == "web02" and view["certs"] == ["b"]
    assert "only_first" not in view  # the first host's own, not this one's
    assert view["layout"] == "haproxy"  # set above the hosts: every host gets it
    assert view["prefix"] == "certs"
    assert view["role_default"] == "mine"  # only this host has it of its own
    # A default the first host overrides in its own vars: the other host gets the default back, not the override.
    fallback = cert_batch.host_variables(variables, task_host_own, own, {"only_first": 0})
    assert fallback["only_first"] == 0


# -- documentation -------------------------------------------------------------


def test_documentation_examples_and_return_are_valid_yaml():
    documentation = yaml.safe_load(cert_batch.DOCUMENTATION)
    assert documentation["name"] == "cert_batch"
    assert set(documentation["options"]) == {
        "_terms",
        "template",
        "template_from",
        "include_private_key",
        "files_root",
        "items_name",
        "hosts",
        "items_from",
        "values_from",
        "fallbacks",
    }
    assert set(yaml.safe_load(cert_batch.RETURN)["_raw"]["contains"]) == {
        "path",
        "certificate",
        "private_key",
        "private_key_file",
        "chain",
    }
    # EXAMPLES may use Ansible's !unsafe tag, which only Ansible's YAML loader knows.
    from ansible.parsing.yaml.loader import AnsibleLoader

    assert isinstance(AnsibleLoader(cert_batch.EXAMPLES).get_single_data(), list)


# -- the trust boundary: certificate values, file contents, files_root -------


SEGMENT_CASES = [
    pytest.param(trusted, "certs/{{ cn }}", id="trusted-cn"),
    pytest.param(trusted, "certs/{{ cn | upper }}", id="trusted-filter"),
    pytest.param(trusted, "certs/{{ sans[0] }}", id="trusted-san"),
    pytest.param(untrusted, "certs/{{ cn }}", id="untrusted-cn"),
    pytest.param(untrusted, "certs/{{ .cn }}-{{ serial }}", id="untrusted-go-form"),
]


@pytest.mark.parametrize(("mode", "template"), SEGMENT_CASES)
def test_a_certificate_value_that_would_add_a_path_segment_is_refused_by_name(lookup, mode, template):
    slashed = pki.make_leaf(None, "team-b/api.example.com", sans=("team-b/api.example.com",))
    ok = pki.make_leaf(None, "a.example.com", sans=("a.example.com",))
    with pytest.raises(
        AnsibleLookupError, match=r"cert_distribution_certs\[1\]: the certificate's .* would add a path"
    ):
        run(lookup, leaf_item(ok), leaf_item(slashed), template=mode(template), items_name="cert_distribution_certs")


def test_a_trusted_template_may_take_the_slash_out_of_a_certificate_value(lookup):
    slashed = pki.make_leaf(None, "team-b/api.example.com")
    batch = run(lookup, leaf_item(slashed), template=trusted("certs/{{ cn | replace('/', '-') }}"))
    assert batch[0]["path"] == "certs/team-b-api.example.com"


@pytest.mark.parametrize(
    ("cn", "template"),
    [
        pytest.param("team-b%2Fapi.example.com", "certs/{{ cn | urldecode }}", id="urldecode"),
        pytest.param("dGVhbS1iL2FwaQ==", "certs/{{ cn | b64decode }}", id="b64decode"),
        pytest.param("team-b_api.example.com", "certs/{{ cn | replace('_', '/') }}", id="replace"),
    ],
)
def test_a_certificate_value_a_filter_turns_into_a_slash_is_refused_by_name(lookup, cn, template):
    made = pki.make_leaf(None, cn)
    with pytest.raises(AnsibleLookupError) as caught:
        run(lookup, leaf_item(made), template=trusted(template), items_name="cert_distribution_certs")
    assert str(caught.value).startswith(
        "cert_batch: cert_distribution_certs[0]: the certificate's cn would add a path segment"
    )


@pytest.mark.parametrize(
    ("template", "path"),
    [
        pytest.param(
            "certs/{{ cn.split('.')[1:] | join('.') }}/{{ cn.split('.')[0] }}", "certs/example.com/www", id="labels"
        ),
        pytest.param("certs/{{ not_after[:4] }}/{{ cn }}", "certs/{year}/www.example.com", id="date-text"),
        pytest.param(
            "certs/{{ (not_after | to_datetime('%Y-%m-%dT%H:%M:%SZ')).year }}/{{ cn }}",
            "certs/{year}/www.example.com",
            id="date-parsed",
        ),
        pytest.param("certs/{{ serial | replace(':', '') }}", "certs/{serial}", id="serial"),
    ],
)
def test_a_template_whose_segments_are_its_own_renders_from_any_certificate_value(lookup, ec_chain, template, path):
    info = certificate_info(ec_chain.leaf.cert_pem)
    expected = path.format(year=info["not_after"][:4], serial=info["serial"].replace(":", ""))
    assert run(lookup, leaf_item(ec_chain.leaf), template=trusted(template))[0]["path"] == expected


def test_item_vars_are_the_user_s_own_and_may_hold_segments(lookup, ec_chain):
    batch = run(lookup, leaf_item(ec_chain.leaf, vars={"team": "a/b"}), template=untrusted("certs/{{ team }}/{{ cn }}"))
    assert batch[0]["path"] == "certs/a/b/www.example.com"


def test_a_chain_file_gives_only_its_certificates_and_never_other_text(lookup, files, ec_chain):
    (files / "mixed.pem").write_text(f"password=hunter2\n{ec_chain.chain_pem}trailer secret\n")
    batch = run(lookup, leaf_item(ec_chain.leaf, chain_file=str(files / "mixed.pem")), template="c/{{ cn }}")
    assert "hunter2" not in batch[0]["chain"] and "trailer" not in batch[0]["chain"]
    assert ec_chain.intermediate.cert_pem.strip() in batch[0]["chain"]


@pytest.mark.parametrize("option", ["chain_file", "certificate_file"])
@pytest.mark.parametrize("content", ["db_password=hunter2\n", "KEY"])
def test_a_file_that_is_not_certificates_is_refused_without_showing_it(lookup, files, ec_chain, option, content):
    text = ec_chain.leaf.key_pem if content == "KEY" else content
    (files / "app.conf").write_text(text)
    item = {"certificate": ec_chain.leaf.cert_pem, option: str(files / "app.conf")}
    if option == "certificate_file":
        item.pop("certificate")
    with pytest.raises(AnsibleLookupError, match=rf"{option}: the file is not a PEM certificate file") as refused:
        run(lookup, item, template="c/{{ cn }}", items_name="cert_distribution_certs")
    assert "hunter2" not in str(refused.value) and "PRIVATE" not in str(refused.value)


@pytest.mark.parametrize("escape", ["symlink", "dotdot", "absolute"])
def test_files_root_refuses_a_file_outside_it_after_resolving_links_and_dotdot(lookup, tmp_path, ec_chain, escape):
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "cert.pem").write_text(ec_chain.leaf.cert_pem)
    (root / "link.pem").symlink_to(outside / "cert.pem")
    path = {"symlink": "link.pem", "dotdot": "../outside/cert.pem", "absolute": str(outside / "cert.pem")}[escape]
    with pytest.raises(
        AnsibleLookupError, match=r"certificate_file of cert_distribution_certs\[0\]: the file lies outside files_root"
    ) as refused:
        run(
            lookup,
            {"certificate_file": path},
            template="c/{{ cn }}",
            files_root=str(root),
            items_name="cert_distribution_certs",
        )
    assert "outside" not in str(refused.value).replace("lies outside files_root", "")


def test_files_root_takes_relative_paths_from_it_and_confines_key_files(lookup, tmp_path, ec_chain, files):
    root = tmp_path / "root"
    root.mkdir()
    (root / "cert.pem").write_text(ec_chain.leaf.cert_pem)
    (root / "key.pem").write_text(ec_chain.leaf.key_pem)
    batch = run(
        lookup,
        {"certificate_file": "cert.pem", "private_key_file": "key.pem"},
        template="c/{{ cn }}",
        files_root=str(root),
    )
    assert batch[0]["private_key_file"] == str((root / "key.pem").resolve())
    with pytest.raises(
        AnsibleLookupError, match=r"private_key_file of certificate 1: the file lies outside files_root"
    ):
        run(
            lookup,
            {"certificate_file": "cert.pem", "private_key_file": str(files / "key.pem")},
            template="c/{{ cn }}",
            files_root=str(root),
        )

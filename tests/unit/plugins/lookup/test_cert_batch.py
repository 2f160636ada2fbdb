# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cert_batch lookup: a certificate list to vault_cert_push's batch.

The plugin runs with a real DataLoader and Templar, as Ansible gives them to it, on certificates from
tests/support/pki.py written to a temporary directory. Private key files are found, never read.
"""

from __future__ import annotations

import typing as t

import pki
import pytest
import yaml
from ansible import constants as C
from ansible.errors import AnsibleLookupError
from ansible.parsing.dataloader import DataLoader
from ansible.parsing.vault import VaultLib, VaultSecret
from ansible.template import Templar

from ansible_collections.certautopilot.vault.plugins.lookup import cert_batch
from ansible_collections.certautopilot.vault.plugins.module_utils._certs import certificate_info

PLUGIN_NAME = "certautopilot.vault.cert_batch"
VAULT_PASSWORD = b"unit-test-vault-password"


class CountingLoader(DataLoader):
    """A real DataLoader that also counts the files it is asked to read."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[str] = []

    def get_real_file(self, file_path: str, decrypt: bool = True) -> str:
        self.reads.append(file_path)
        return super().get_real_file(file_path, decrypt=decrypt)


@pytest.fixture(scope="module")
def chain() -> pki.Chain:
    return pki.make_chain("www.example.com", sans=("www.example.com", "example.com"))


@pytest.fixture
def files(tmp_path, chain):
    """A directory with cert.pem, key.pem, chain.pem of www.example.com."""
    (tmp_path / "cert.pem").write_text(chain.leaf.cert_pem)
    (tmp_path / "key.pem").write_text(chain.leaf.key_pem)
    (tmp_path / "chain.pem").write_text(chain.chain_pem)
    return tmp_path


@pytest.fixture
def loader(tmp_path) -> CountingLoader:
    loader = CountingLoader()
    loader.set_basedir(str(tmp_path))
    loader.set_vault_secrets([("default", VaultSecret(VAULT_PASSWORD))])
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
    return lookup.run(list(terms), variables={"inventory_hostname": "localhost", **(variables or {})}, **options)


def leaf_item(issued: pki.Issued, **extra: t.Any) -> dict:
    return {"certificate": issued.cert_pem, "private_key": issued.key_pem, **extra}


def vault_encrypt(text: str) -> bytes:
    return VaultLib([("default", VaultSecret(VAULT_PASSWORD))]).encrypt(text)


# -- the batch ---------------------------------------------------------------


def test_certificate_and_chain_files_are_read_and_the_key_file_is_given_as_its_path(lookup, files, chain):
    item = {
        "certificate_file": str(files / "cert.pem"),
        "private_key_file": str(files / "key.pem"),
        "chain_file": str(files / "chain.pem"),
    }
    assert run(lookup, [item]) == [
        {
            "path": "certs/www.example.com",
            "certificate": chain.leaf.cert_pem,
            "private_key_file": str(files / "key.pem"),
            "chain": chain.chain_pem,
        }
    ]


def test_relative_file_paths_are_searched_like_the_file_lookup(lookup, files, chain):
    (files / "role" / "files").mkdir(parents=True)
    (files / "role" / "files" / "www.pem").write_text(chain.leaf.cert_pem)
    variables = {"ansible_search_path": [str(files / "role")]}
    batch = run(lookup, {"certificate_file": "www.pem"}, variables=variables, include_private_key=False)
    assert batch[0]["certificate"] == chain.leaf.cert_pem


def test_a_vault_encrypted_certificate_and_chain_file_are_decrypted(lookup, files, chain):
    (files / "cert.vault").write_bytes(vault_encrypt(chain.leaf.cert_pem))
    (files / "chain.vault").write_bytes(vault_encrypt(chain.chain_pem))
    item = {"certificate_file": str(files / "cert.vault"), "chain_file": [str(files / "chain.vault")]}
    batch = run(lookup, item, include_private_key=False)
    assert batch[0]["certificate"] == chain.leaf.cert_pem
    assert batch[0]["chain"] == [chain.chain_pem]
    assert batch[0]["path"] == "certs/www.example.com"


def test_chain_file_may_be_a_list_and_inline_chain_passes_through(lookup, files, chain):
    listed = run(lookup, leaf_item(chain.leaf, chain_file=[str(files / "chain.pem"), str(files / "chain.pem")]))
    assert listed[0]["chain"] == [chain.chain_pem, chain.chain_pem]
    inline = run(lookup, leaf_item(chain.leaf, chain=[chain.chain_pem]))
    assert inline[0]["chain"] == [chain.chain_pem]


def test_a_chain_file_shared_by_many_certificates_is_read_once(lookup, loader, files):
    leaves = [pki.make_leaf(None, f"{name}.example.com") for name in ("a", "b", "c")]
    items = [leaf_item(leaf, chain_file=str(files / "chain.pem")) for leaf in leaves]
    batch = run(lookup, items)
    assert len({item["chain"] for item in batch}) == 1
    assert loader.reads.count(str(files / "chain.pem")) == 1


def test_an_item_without_a_chain_has_no_chain_key(lookup, chain):
    assert "chain" not in run(lookup, leaf_item(chain.leaf))[0]


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


def test_item_vars_are_not_in_the_batch_item(lookup, chain):
    batch = run(lookup, leaf_item(chain.leaf, vars={"team": "web"}), template="{{ team }}/{{ cn }}")
    assert batch == [
        {"path": "web/www.example.com", "certificate": chain.leaf.cert_pem, "private_key": chain.leaf.key_pem}
    ]


def test_the_terms_given_are_not_changed(lookup, files, chain):
    item = {"certificate_file": str(files / "cert.pem"), "private_key_file": "key.pem", "vars": {"team": "web"}}
    before = dict(item)
    run(lookup, item)
    assert item == before


# -- private keys: found, never read ----------------------------------------------


def test_a_private_key_file_is_resolved_not_read(lookup, loader, files, chain):
    (files / "files").mkdir()
    (files / "files" / "www.key").write_text(chain.leaf.key_pem)
    variables = {"ansible_search_path": [str(files)]}
    batch = run(lookup, {"certificate": chain.leaf.cert_pem, "private_key_file": "www.key"}, variables=variables)
    assert batch[0]["private_key_file"] == str(files / "files" / "www.key")
    assert "private_key" not in batch[0]
    assert loader.reads == []


@pytest.mark.parametrize(
    "content",
    [
        b"$ANSIBLE_VAULT;1.1;AES256\nnot-hex-at-all\n",  # a vault file no password opens
        b"\xff\xfe GARBAGE-KEY-BYTES \x00\x01",  # not even text
    ],
    ids=["broken-vault-file", "binary-garbage"],
)
def test_a_key_file_that_could_not_be_read_still_passes_and_its_content_is_not_in_the_output(
    lookup, files, chain, content
):
    (files / "key.bad").write_bytes(content)
    batch = run(lookup, {"certificate_file": str(files / "cert.pem"), "private_key_file": str(files / "key.bad")})
    assert batch[0]["private_key_file"] == str(files / "key.bad")
    assert "private_key" not in batch[0]
    everything = repr(batch)
    assert "not-hex-at-all" not in everything
    assert "GARBAGE-KEY-BYTES" not in everything


def test_a_vault_encrypted_key_file_is_passed_on_encrypted_as_a_path(lookup, files, chain):
    (files / "key.vault").write_bytes(vault_encrypt(chain.leaf.key_pem))
    batch = run(lookup, {"certificate_file": str(files / "cert.pem"), "private_key_file": str(files / "key.vault")})
    assert batch[0]["private_key_file"] == str(files / "key.vault")
    assert chain.leaf.key_pem not in repr(batch)


def test_an_inline_private_key_passes_through(lookup, chain):
    assert run(lookup, leaf_item(chain.leaf))[0]["private_key"] == chain.leaf.key_pem


def test_a_certificate_without_any_key_passes_for_the_module_to_judge(lookup, chain):
    batch = run(lookup, {"certificate": chain.leaf.cert_pem})
    assert batch == [{"path": "certs/www.example.com", "certificate": chain.leaf.cert_pem}]


def test_include_private_key_false_drops_both_key_keys(lookup, files, chain):
    items = [
        leaf_item(chain.leaf),
        {"certificate": chain.leaf.cert_pem, "private_key_file": str(files / "absent.pem"), "path": "certs/b"},
        # With no key wanted, even an item giving both is not refused.
        leaf_item(chain.leaf, private_key_file=str(files / "key.pem"), path="certs/c"),
    ]
    batch = run(lookup, items, include_private_key=False)
    assert batch == [
        {"path": "certs/www.example.com", "certificate": chain.leaf.cert_pem},
        {"path": "certs/b", "certificate": chain.leaf.cert_pem},
        {"path": "certs/c", "certificate": chain.leaf.cert_pem},
    ]


def test_a_missing_private_key_file_is_named(lookup, chain):
    with pytest.raises(AnsibleLookupError, match=r"private_key_file nope\.key of certificate 1 not found"):
        run(lookup, {"certificate": chain.leaf.cert_pem, "private_key_file": "nope.key"})


def test_a_private_key_file_that_is_not_a_path_is_refused(lookup, chain):
    with pytest.raises(AnsibleLookupError, match=r"private_key_file of certificate 1 must be a file path, got int"):
        run(lookup, {"certificate": chain.leaf.cert_pem, "private_key_file": 42})


# -- path rendering ----------------------------------------------------------


def test_template_sees_the_certificate_metadata(lookup, chain):
    template = "{{ cn }}|{{ sans | join(',') }}|{{ serial }}|{{ not_after }}|{{ fingerprint_sha256 }}|{{ issuer }}"
    info = certificate_info(chain.leaf.cert_pem)
    path = run(lookup, leaf_item(chain.leaf), template=template)[0]["path"]
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
    batch = run(lookup, items, template="certs/{{ env }}/{{ cn }}", variables={"env": "prod"})
    assert [item["path"] for item in batch] == [
        "certs/prod/a.example.com",
        "certs/staging/b.example.com",
        "certs/prod/x",
    ]


def test_an_item_var_that_only_some_items_set_does_not_leak_to_the_next(lookup):
    leaves = [pki.make_leaf(None, f"{name}.example.com") for name in ("a", "b")]
    items = [leaf_item(leaves[0], vars={"team": "web"}), leaf_item(leaves[1])]
    batch = run(lookup, items, template="{{ team | default('none') }}/{{ cn }}")
    assert [item["path"] for item in batch] == ["web/a.example.com", "none/b.example.com"]


def test_an_item_path_is_used_as_it_is(lookup, chain):
    batch = run(lookup, leaf_item(chain.leaf, path="certs/{{ not rendered }}"), template="ignored/{{ cn }}")
    assert batch[0]["path"] == "certs/{{ not rendered }}"


def test_a_certificate_cannot_inject_a_template_into_its_path(lookup):
    hostile = pki.make_leaf(None, "{{ lookup('ansible.builtin.env', 'HOME') }}")
    batch = run(lookup, leaf_item(hostile), leaf_item(pki.make_leaf(None, "b.example.com")))
    assert batch[0]["path"] == "certs/{{ lookup('ansible.builtin.env', 'HOME') }}"
    assert batch[1]["path"] == "certs/b.example.com"


def test_an_unsafe_or_untrusted_template_is_rendered(lookup, chain):
    # What a role default written with !unsafe, or a value Ansible already rendered, arrives as.
    if cert_batch.trust_as_template is not None:
        from ansible.template import is_trusted_as_template

        template = "certs/{{ cn }}"  # text made in Python is not trusted as a template
        assert not is_trusted_as_template(template)
    else:
        from ansible.utils.unsafe_proxy import AnsibleUnsafeText

        template = AnsibleUnsafeText("certs/{{ cn }}")
    assert run(lookup, leaf_item(chain.leaf), template=template)[0]["path"] == "certs/www.example.com"


def test_a_thousand_certificates_each_get_their_own_path(lookup):
    issuer = pki.make_ca("Batch CA")
    items = [leaf_item(pki.make_leaf(issuer, f"host{index:04d}.example.com")) for index in range(1000)]
    items[500]["vars"] = {"env": "staging"}
    batch = run(lookup, items, template="certs/{{ env }}/{{ cn }}", variables={"env": "prod"})
    expected = [f"certs/prod/host{index:04d}.example.com" for index in range(1000)]
    expected[500] = "certs/staging/host0500.example.com"
    assert [item["path"] for item in batch] == expected
    assert [item["certificate"] for item in batch] == [item["certificate"] for item in items]


# -- template_from and the Go form ---------------------------------------------


def test_template_from_takes_the_raw_value_of_the_named_variable(lookup, chain):
    variables = {"path_template": "certs/{{ env }}/{{ cn }}", "env": "prod"}
    batch = run(lookup, leaf_item(chain.leaf), template_from="path_template", variables=variables)
    assert batch[0]["path"] == "certs/prod/www.example.com"


def test_template_from_wins_over_template(lookup, chain):
    variables = {"path_template": "from-variable/{{ cn }}"}
    batch = run(
        lookup,
        leaf_item(chain.leaf),
        template="from-option/{{ cn }}",
        template_from="path_template",
        variables=variables,
    )
    assert batch[0]["path"] == "from-variable/www.example.com"


def test_template_from_an_undefined_variable_falls_back_to_template(lookup, chain):
    batch = run(lookup, leaf_item(chain.leaf), template="fallback/{{ cn }}", template_from="no_such_variable")
    assert batch[0]["path"] == "fallback/www.example.com"
    assert run(lookup, leaf_item(chain.leaf), template_from="no_such_variable")[0]["path"] == "certs/www.example.com"


def test_template_from_a_value_ansible_marked_as_a_template_renders_the_same(lookup, chain):
    # What a template written in YAML vars arrives as: trusted (2.19+) or plain text (earlier).
    value = "certs/{{ cn }}"
    if cert_batch.trust_as_template is not None:
        value = cert_batch.trust_as_template(value)
    batch = run(lookup, leaf_item(chain.leaf), template_from="path_template", variables={"path_template": value})
    assert batch[0]["path"] == "certs/www.example.com"


@pytest.mark.parametrize("value", [None, "", "   ", 42])
def test_template_from_a_variable_that_holds_no_template_is_refused(lookup, chain, value):
    with pytest.raises(AnsibleLookupError, match=r"the path template must be a non-empty string"):
        run(lookup, leaf_item(chain.leaf), template_from="path_template", variables={"path_template": value})


@pytest.mark.parametrize("template", ["certs/{{ .cn }}", "certs/{{.cn}}", "certs/{{- .cn -}}", "certs/{{ cn }}"])
def test_the_go_template_form_reads_as_jinja(lookup, chain, template):
    assert run(lookup, leaf_item(chain.leaf), template=template)[0]["path"] == "certs/www.example.com"


def test_the_go_form_sees_item_vars_and_variables_in_scope(lookup, chain):
    variables = {"path_template": "certs/{{ .env }}/{{ .team }}/{{.cn}}", "env": "prod"}
    item = leaf_item(chain.leaf, vars={"team": "web"})
    batch = run(lookup, item, template_from="path_template", variables=variables)
    assert batch[0]["path"] == "certs/prod/web/www.example.com"


def test_the_go_form_trims_whitespace_like_go_and_jinja(lookup, chain):
    go = run(lookup, leaf_item(chain.leaf), template="certs/ {{- .cn -}} /x")[0]["path"]
    assert go == run(lookup, leaf_item(chain.leaf), template="certs/ {{- cn -}} /x")[0]["path"]


# -- errors: each names the certificate ---------------------------------------


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ({"private_key": "x"}, r"certificate 1 needs certificate or certificate_file"),
        (
            {"certificate": "x", "certificate_file": "y", "private_key": "x"},
            r"certificate 1 \(y\) gives both certificate and certificate_file; give one",
        ),
        (
            {"certificate": "x", "private_key": "x", "private_key_file": "y", "path": "p"},
            r"certificate 1 \(p\) gives both private_key and private_key_file; give one",
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
    with pytest.raises(
        AnsibleLookupError, match=r"certificate_file nope\.pem of certificate 1 \(nope\.pem\) not found"
    ):
        run(lookup, {"certificate_file": "nope.pem"}, include_private_key=False)


def test_a_certificate_file_that_cannot_be_read_is_named(lookup, files):
    (files / "cert.bin").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(AnsibleLookupError, match=r"certificate_file .*cert\.bin: it is not UTF-8 text \(certificate 1"):
        run(lookup, {"certificate_file": str(files / "cert.bin")})


def test_a_certificate_that_does_not_parse_is_named(lookup, chain):
    with pytest.raises(AnsibleLookupError, match=r"certificate 2: certificate is not a valid PEM certificate"):
        run(lookup, leaf_item(chain.leaf), {"certificate": "junk", "private_key": "x"})


def test_a_template_error_names_the_certificate_and_lists_its_own_variables(lookup, chain):
    leaf = pki.make_leaf(None, "b.example.com")
    items = [leaf_item(chain.leaf, vars={"team": "web"}), leaf_item(leaf, path="certs/b"), leaf_item(leaf)]
    with pytest.raises(AnsibleLookupError) as raised:
        run(lookup, items, template="certs/{{ team }}/{{ cn }}")
    message = str(raised.value)
    assert "rendering the path template for certificate 3 failed" in message
    assert "team" in message and "undefined" in message
    assert "Its own variables are cn, fingerprint_sha256, issuer, not_after, not_before, sans, serial, subject," in (
        message
    )


def test_a_template_error_lists_the_item_vars_among_its_variables(lookup, chain):
    with pytest.raises(AnsibleLookupError, match=r"for certificate 1 failed: .*own variables are .*subject, team,"):
        run(lookup, leaf_item(chain.leaf, vars={"team": "web"}), template="certs/{{ nowhere }}")


def test_a_template_syntax_error_names_the_certificate(lookup, chain):
    with pytest.raises(AnsibleLookupError, match=r"rendering the path template for certificate 1 failed: "):
        run(lookup, leaf_item(chain.leaf), template="certs/{% if %}")


def test_a_template_that_renders_no_text_is_refused(lookup, chain):
    with pytest.raises(AnsibleLookupError, match=r"rendered \[.*\] for certificate 1; a non-empty string is needed"):
        run(lookup, leaf_item(chain.leaf), template="{{ sans }}")
    with pytest.raises(AnsibleLookupError, match=r"a non-empty string is needed"):
        run(lookup, leaf_item(chain.leaf), template="{{ '' }}")


# -- documentation -------------------------------------------------------------


def test_documentation_examples_and_return_are_valid_yaml():
    documentation = yaml.safe_load(cert_batch.DOCUMENTATION)
    assert documentation["name"] == "cert_batch"
    assert set(documentation["options"]) == {"_terms", "template", "template_from", "include_private_key"}
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

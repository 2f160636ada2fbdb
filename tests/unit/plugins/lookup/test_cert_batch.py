# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cert_batch lookup: a certificate list to vault_cert_push's batch, with paths rendered in one pass.

The plugin runs with a real DataLoader and Templar, as Ansible gives them to it, on certificates from
tests/support/pki.py written to a temporary directory.
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
def lookup(tmp_path) -> cert_batch.LookupModule:
    """The plugin as Ansible's plugin loader sets it up: documented options registered, loader and templar given."""
    loader = DataLoader()
    loader.set_basedir(str(tmp_path))
    loader.set_vault_secrets([("default", VaultSecret(VAULT_PASSWORD))])
    options = yaml.safe_load(cert_batch.DOCUMENTATION)["options"]
    C.config.initialize_plugin_configuration_definitions("lookup", PLUGIN_NAME, options)
    plugin = cert_batch.LookupModule(loader=loader, templar=Templar(loader=loader))
    plugin._load_name = PLUGIN_NAME
    return plugin


def run(lookup: cert_batch.LookupModule, *terms: t.Any, variables: dict | None = None, **options: t.Any) -> list:
    return lookup.run(list(terms), variables={"inventory_hostname": "localhost", **(variables or {})}, **options)


def leaf_item(issued: pki.Issued, **extra: t.Any) -> dict:
    return {"certificate": issued.cert_pem, "private_key": issued.key_pem, **extra}


# -- the batch ---------------------------------------------------------------


def test_files_are_read_into_the_batch_items_vault_cert_push_takes(lookup, files, chain):
    item = {
        "certificate_file": str(files / "cert.pem"),
        "private_key_file": str(files / "key.pem"),
        "chain_file": str(files / "chain.pem"),
    }
    assert run(lookup, [item]) == [
        {
            "path": "certs/www.example.com",
            "certificate": chain.leaf.cert_pem,
            "private_key": chain.leaf.key_pem,
            "chain": chain.chain_pem,
        }
    ]


def test_relative_file_paths_are_searched_like_the_file_lookup(lookup, files, chain):
    (files / "files").mkdir()
    (files / "files" / "www.pem").write_text(chain.leaf.cert_pem)
    variables = {"ansible_search_path": [str(files)]}
    batch = run(lookup, {"certificate_file": "www.pem"}, variables=variables, include_private_key=False)
    assert batch[0]["certificate"] == chain.leaf.cert_pem


def test_a_vault_encrypted_key_file_is_decrypted(lookup, files, chain):
    encrypted = VaultLib([("default", VaultSecret(VAULT_PASSWORD))]).encrypt(chain.leaf.key_pem)
    (files / "key.vault").write_bytes(encrypted)
    item = {"certificate_file": str(files / "cert.pem"), "private_key_file": str(files / "key.vault")}
    assert run(lookup, [item])[0]["private_key"] == chain.leaf.key_pem


def test_chain_file_may_be_a_list_and_inline_chain_passes_through(lookup, files, chain):
    listed = run(lookup, leaf_item(chain.leaf, chain_file=[str(files / "chain.pem"), str(files / "chain.pem")]))
    assert listed[0]["chain"] == [chain.chain_pem, chain.chain_pem]
    inline = run(lookup, leaf_item(chain.leaf, chain=[chain.chain_pem]))
    assert inline[0]["chain"] == [chain.chain_pem]


def test_cert_only_batch_has_no_private_key_and_needs_none(lookup, chain, files):
    batch = run(lookup, {"certificate": chain.leaf.cert_pem}, include_private_key=False)
    assert batch == [{"path": "certs/www.example.com", "certificate": chain.leaf.cert_pem}]
    # A key file that is not even there is not read.
    batch = run(
        lookup,
        {"certificate": chain.leaf.cert_pem, "private_key_file": str(files / "absent.pem")},
        include_private_key=False,
    )
    assert "private_key" not in batch[0]


def test_terms_may_be_dicts_or_lists_of_dicts_and_keep_their_order(lookup):
    first, second, third = (pki.make_leaf(None, f"{name}.example.com") for name in ("a", "b", "c"))
    batch = run(lookup, leaf_item(first), [leaf_item(second), leaf_item(third)])
    assert [item["path"] for item in batch] == ["certs/a.example.com", "certs/b.example.com", "certs/c.example.com"]


def test_an_empty_list_gives_an_empty_batch(lookup):
    assert run(lookup, []) == []


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


def test_an_item_var_that_only_some_items_set_falls_back_to_scope(lookup):
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


def test_an_unsafe_or_untrusted_template_is_rendered(lookup, chain):
    # What a role default written with !unsafe, or a value Ansible already rendered, arrives as.
    if cert_batch.HAS_DATA_TAGGING:
        from ansible.template import is_trusted_as_template

        template = "certs/{{ cn }}"  # text made in Python is not trusted as a template
        assert not is_trusted_as_template(template)
    else:
        from ansible.utils.unsafe_proxy import AnsibleUnsafeText

        template = AnsibleUnsafeText("certs/{{ cn }}")
    assert run(lookup, leaf_item(chain.leaf), template=template)[0]["path"] == "certs/www.example.com"


def test_a_thousand_paths_are_rendered_in_one_template_pass(lookup, monkeypatch):
    issuer = pki.make_ca("Batch CA")
    items = [leaf_item(pki.make_leaf(issuer, f"host{index:04d}.example.com")) for index in range(1000)]
    calls = []
    render_one = cert_batch.PathRenderer.render_one
    monkeypatch.setattr(
        cert_batch.PathRenderer, "render_one", lambda self, *args: calls.append(args) or render_one(self, *args)
    )
    batch = run(lookup, items, template="certs/{{ env }}/{{ cn }}", variables={"env": "prod"})
    assert [item["path"] for item in batch] == [f"certs/prod/host{index:04d}.example.com" for index in range(1000)]
    assert len(calls) == 1  # the first certificate alone, to check the template; the rest in one pass


@pytest.mark.parametrize(
    "template",
    [
        "{{ cn }}\x1e{{ cn }}",  # the separator inside a path
        "{% for x in [1] %}{{ cn }}{% endfor %}",  # the template's own loop
        "{{ loop | default('no-loop') }}/{{ cn }}",  # a name the batch's loop would shadow
    ],
)
def test_batch_rendering_matches_rendering_each_certificate(lookup, template, monkeypatch):
    leaves = [pki.make_leaf(None, f"{name}.example.com") for name in ("a", "b", "c")]
    batch = run(lookup, [leaf_item(leaf) for leaf in leaves], template=template)
    monkeypatch.setattr(cert_batch.PathRenderer, "_render_batch", lambda self, layers: None)
    one_by_one = run(lookup, [leaf_item(leaf) for leaf in leaves], template=template)
    assert [item["path"] for item in batch] == [item["path"] for item in one_by_one]


# -- errors: each names the certificate ---------------------------------------


def test_two_certificates_with_one_path_are_refused(lookup):
    leaves = [pki.make_leaf(None, "same.example.com"), pki.make_leaf(None, "other.example.com")]
    items = [leaf_item(leaves[0]), leaf_item(leaves[1], path="certs/same.example.com")]
    with pytest.raises(AnsibleLookupError, match=r"same secret path.*certs/same\.example\.com \(certificates 1, 2\)"):
        run(lookup, items)


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ({"private_key": "x"}, r"certificate 1 needs certificate or certificate_file"),
        (
            {"certificate": "x", "certificate_file": "y", "private_key": "x"},
            r"gives both certificate and certificate_file",
        ),
        ({"certificate": "x"}, r"needs private_key or private_key_file \(or set include_private_key to false"),
        ({"certificate": "x", "private_key": "x", "chain": "a", "chain_file": "b"}, r"gives both chain and chain_file"),
        ({"certificate": "x", "private_key": "x", "pathh": "typo"}, r"unknown key\(s\) pathh; allowed: "),
        ({"certificate": "x", "private_key": "x", "vars": ["a"]}, r"vars of certificate 1 must be a dictionary"),
    ],
)
def test_malformed_items_are_refused_before_anything_is_read(lookup, item, message):
    with pytest.raises(AnsibleLookupError, match=message):
        run(lookup, item)


def test_a_missing_file_is_named(lookup, files):
    with pytest.raises(
        AnsibleLookupError, match=r"certificate_file nope\.pem of certificate 1 \(nope\.pem\) not found"
    ):
        run(lookup, {"certificate_file": "nope.pem"}, include_private_key=False)


def test_a_certificate_that_does_not_parse_is_named(lookup, chain):
    with pytest.raises(AnsibleLookupError, match=r"certificate 2: certificate is not a valid PEM certificate"):
        run(lookup, leaf_item(chain.leaf), {"certificate": "junk", "private_key": "x"})


def test_a_template_error_names_the_certificate(lookup, chain):
    leaf = pki.make_leaf(None, "b.example.com")
    with pytest.raises(AnsibleLookupError, match=r"rendering the path template for certificate 1 failed: .*undefined"):
        run(lookup, leaf_item(chain.leaf), leaf_item(leaf), template="certs/{{ nowhere }}")


def test_a_template_that_renders_no_text_is_refused(lookup, chain):
    with pytest.raises(AnsibleLookupError, match=r"rendered \[.*\] for certificate 1; a non-empty string is needed"):
        run(lookup, leaf_item(chain.leaf), template="{{ sans }}")
    with pytest.raises(AnsibleLookupError, match=r"a non-empty string is needed"):
        run(lookup, leaf_item(chain.leaf), template="{{ '' }}")


# -- documentation -------------------------------------------------------------


def test_documentation_examples_and_return_are_valid_yaml():
    assert yaml.safe_load(cert_batch.DOCUMENTATION)["name"] == "cert_batch"
    assert set(yaml.safe_load(cert_batch.RETURN)["_raw"]["contains"]) == {"path", "certificate", "private_key", "chain"}
    # EXAMPLES use Ansible's !unsafe tag, which only Ansible's YAML loader knows.
    from ansible.parsing.yaml.loader import AnsibleLoader

    assert isinstance(AnsibleLoader(cert_batch.EXAMPLES).get_single_data(), list)

# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private keys leave vault_cert_push's arguments on the controller and come back, sealed, on the module side."""

from __future__ import annotations

import copy
import json

import pytest

from ansible_collections.certautopilot.vault.plugins.module_utils._errors import VaultCertError
from ansible_collections.certautopilot.vault.plugins.module_utils._keys import (
    BUNDLE_OPTION,
    KeySource,
    attach_keys,
    kind_of,
    seal,
    take_keys,
)

KEY_A = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
KEY_B = "-----BEGIN PRIVATE KEY-----\nBBBB\n-----END PRIVATE KEY-----\n"


# --- take_keys: the controller side ------------------------------------------------------------


def test_the_single_form_key_is_taken_out_of_the_arguments():
    args, sources = take_keys({"url": "https://vault", "certificate": "C", "private_key": KEY_A, "path": "p"})
    assert args == {"url": "https://vault", "certificate": "C", "path": "p"}
    assert sources == [KeySource(text=KEY_A, option="private_key_file")]


def test_the_single_form_key_file_is_taken_out_as_a_file_source():
    args, sources = take_keys({"certificate": "C", "private_key_file": "www.key"})
    assert args == {"certificate": "C"}
    assert sources == [KeySource(file="www.key", option="private_key_file")]


def test_a_single_push_without_a_key_has_one_empty_source():
    args, sources = take_keys({"certificate": "C", "include_private_key": False})
    assert args == {"certificate": "C", "include_private_key": False}
    assert sources == [KeySource()]


def test_each_batch_item_key_is_taken_out_in_item_order():
    items = [
        {"certificate": "A", "private_key": KEY_A, "path": "a"},
        {"certificate": "B", "private_key_file": "/keys/b.key", "path": "b"},
        {"certificate": "C", "path": "c"},
    ]
    args, sources = take_keys({"url": "https://vault", "certificates": items})
    assert args == {
        "url": "https://vault",
        "certificates": [
            {"certificate": "A", "path": "a"},
            {"certificate": "B", "path": "b"},
            {"certificate": "C", "path": "c"},
        ],
    }
    assert sources == [
        KeySource(text=KEY_A, option="certificates[0].private_key_file"),
        KeySource(file="/keys/b.key", option="certificates[1].private_key_file"),
        KeySource(option="certificates[2].private_key_file"),
    ]


def test_empty_key_values_count_as_no_key():
    items = [{"certificate": "A", "private_key": "", "private_key_file": None}]
    args, sources = take_keys({"certificates": items})
    assert args["certificates"] == [{"certificate": "A"}]
    assert sources == [KeySource(option="certificates[0].private_key_file")]


def test_an_item_that_is_not_a_dictionary_is_left_for_the_argument_spec():
    args, sources = take_keys({"certificates": ["not a dict", {"certificate": "B", "private_key": KEY_B}]})
    assert args["certificates"] == ["not a dict", {"certificate": "B"}]
    assert sources == [KeySource(), KeySource(text=KEY_B, option="certificates[1].private_key_file")]


def test_the_task_arguments_given_are_not_changed():
    # Ansible reuses one task's arguments for every host: taking keys out must not strip them for the next one.
    task_args = {
        "private_key": KEY_A,
        "certificates": [{"certificate": "A", "private_key": KEY_A}, {"certificate": "B", "private_key_file": "b"}],
    }
    before = copy.deepcopy(task_args)
    take_keys(task_args)
    assert task_args == before


def test_a_key_bundle_given_by_the_task_is_refused():
    with pytest.raises(VaultCertError, match=rf"{BUNDLE_OPTION} is filled by the module's action plugin"):
        take_keys({"certificate": "C", BUNDLE_OPTION: json.dumps([KEY_A])})


def test_a_key_bundle_given_by_the_task_is_refused_without_echoing_it():
    with pytest.raises(VaultCertError) as raised:
        take_keys({"certificate": "C", BUNDLE_OPTION: json.dumps([KEY_A])})
    assert "AAAA" not in str(raised.value)


def test_both_key_and_key_file_in_the_single_form_are_refused():
    with pytest.raises(VaultCertError, match=r"^private_key and private_key_file are mutually exclusive; give one$"):
        take_keys({"certificate": "C", "private_key": KEY_A, "private_key_file": "a.key"})


def test_both_key_and_key_file_in_an_item_are_refused_naming_the_item():
    items = [
        {"certificate": "A", "private_key": KEY_A},
        {"certificate": "B", "private_key": KEY_B, "private_key_file": "b"},
    ]
    with pytest.raises(VaultCertError) as raised:
        take_keys({"certificates": items})
    assert str(raised.value) == (
        "certificates[1].private_key and certificates[1].private_key_file are mutually exclusive; give one"
    )
    assert "BBBB" not in str(raised.value)


@pytest.mark.parametrize(("value", "kind"), [(["a.key"], "list"), (42, "int"), ({"path": "a.key"}, "dict")])
def test_a_key_file_that_is_not_a_string_is_refused(value, kind):
    with pytest.raises(VaultCertError, match=rf"^private_key_file must be a file path, got {kind}$"):
        take_keys({"certificate": "C", "private_key_file": value})
    with pytest.raises(VaultCertError, match=rf"^certificates\[0\]\.private_key_file must be a file path, got {kind}$"):
        take_keys({"certificates": [{"certificate": "C", "private_key_file": value}]})


@pytest.mark.parametrize(
    ("value", "kind"),
    [([KEY_A], "list"), ({"pem": KEY_A}, "dict"), (42, "int"), (True, "bool"), (1.5, "float")],
)
def test_a_key_that_is_not_text_is_refused_without_echoing_it(value, kind):
    with pytest.raises(VaultCertError) as raised:
        take_keys({"certificate": "C", "private_key": value})
    assert str(raised.value) == f"private_key must be PEM text, got {kind}"
    items = [{"certificate": "A"}, {"certificate": "C", "private_key": value}]
    with pytest.raises(VaultCertError) as raised:
        take_keys({"certificates": items})
    assert str(raised.value) == f"certificates[1].private_key must be PEM text, got {kind}"
    assert "AAAA" not in str(raised.value)


def test_a_key_file_source_names_the_option_it_came_from():
    _args, [single] = take_keys({"certificate": "C", "private_key_file": "a.key"})
    _args, batch = take_keys(
        {"certificates": [{"certificate": "A"}, {"certificate": "B", "private_key_file": "b.key"}]}
    )
    assert single.option == "private_key_file"
    assert [source.option for source in batch] == [
        "certificates[0].private_key_file",
        "certificates[1].private_key_file",
    ]


# --- kind_of: how a value's kind is named to a user ------------------------------------------


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ({"a": 1}, "dict"),
        ([1], "list"),
        ((1,), "list"),
        ("text", "str"),
        (7, "int"),
        (False, "bool"),
        (1.5, "float"),
        (None, "NoneType"),
    ],
)
def test_kind_of_names_plain_kinds(value, kind):
    assert kind_of(value) == kind


def test_kind_of_names_ansible_tagged_values_by_their_plain_kind():
    tags = pytest.importorskip("ansible._internal._datatag._tags", reason="data tagging is ansible-core 2.19+")
    origin = tags.Origin(path="/play.yml", line_num=1)
    tagged = [origin.tag({"a": 1}), origin.tag([1]), origin.tag("text"), origin.tag(7), origin.tag(1.5)]
    assert all(type(value).__name__.startswith("_AnsibleTagged") for value in tagged)  # what a user must not see
    assert [kind_of(value) for value in tagged] == ["dict", "list", "str", "int", "float"]


def test_kind_of_drops_the_leading_underscore_of_a_private_type_name():
    class _Private:
        pass

    assert kind_of(_Private()) == "Private"


# --- seal ------------------------------------------------------------------------------------


def test_seal_is_a_json_list_of_the_keys_in_order_with_null_for_none():
    sealed = seal([KEY_A, None, KEY_B])
    assert isinstance(sealed, str)
    assert json.loads(sealed) == [KEY_A, None, KEY_B]


def test_seal_of_no_keys_is_an_empty_list():
    assert json.loads(seal(())) == []


# --- attach_keys: the module side ------------------------------------------------------------


def test_keys_from_the_bundle_go_back_on_their_items():
    items = [{"certificate": "A", "path": "a"}, {"certificate": "B", "path": "b"}, {"certificate": "C", "path": "c"}]
    assert attach_keys(items, seal([KEY_A, None, KEY_B])) == [
        {"certificate": "A", "path": "a", "private_key": KEY_A},
        {"certificate": "B", "path": "b"},
        {"certificate": "C", "path": "c", "private_key": KEY_B},
    ]


def test_without_a_bundle_the_items_are_unchanged():
    items = [{"certificate": "A", "private_key": KEY_A}, {"certificate": "B"}]
    assert attach_keys(items, None) == items


def test_the_items_given_are_not_changed():
    items = [{"certificate": "A"}]
    attach_keys(items, seal([KEY_A]))
    assert items == [{"certificate": "A"}]


def test_a_round_trip_through_take_seal_attach_restores_each_key():
    items = [
        {"certificate": "A", "private_key": KEY_A},
        {"certificate": "B"},
        {"certificate": "C", "private_key": KEY_B},
    ]
    args, sources = take_keys({"certificates": items})
    bundle = seal([source.text for source in sources])
    assert attach_keys(args["certificates"], bundle) == items


@pytest.mark.parametrize("item_key_file", ["/keys/a.key", "a.key"])
def test_a_leftover_key_file_means_the_action_plugin_did_not_run(item_key_file):
    items = [{"certificate": "A"}, {"certificate": "B", "private_key_file": item_key_file}]
    with pytest.raises(
        VaultCertError, match=r"private_key_file is read on the controller by the module's action plugin"
    ):
        attach_keys(items, None)


def test_an_empty_key_file_is_no_leftover():
    assert attach_keys([{"certificate": "A", "private_key_file": None}], seal([KEY_A]))[0]["private_key"] == KEY_A


@pytest.mark.parametrize(
    "bundle",
    [
        json.dumps([KEY_A]),  # one key for two items
        json.dumps([KEY_A, KEY_B, None]),  # three for two
        json.dumps({"0": KEY_A, "1": KEY_B}),  # not a list
        json.dumps(KEY_A),  # a bare key
        "[" + json.dumps(KEY_A) + ",",  # not JSON
        "",
    ],
    ids=["too-short", "too-long", "object", "string", "broken-json", "empty"],
)
def test_a_bundle_that_is_not_one_key_per_item_is_refused_without_echoing_it(bundle):
    items = [{"certificate": "A"}, {"certificate": "B"}]
    with pytest.raises(VaultCertError) as raised:
        attach_keys(items, bundle)
    assert str(raised.value) == f"{BUNDLE_OPTION} does not hold one key (or null) per certificate"
    assert raised.value.__cause__ is None
    assert raised.value.__context__ is None or raised.value.__suppress_context__

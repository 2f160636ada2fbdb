# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cert_batch lookup: a certificate list to the batch that vault_cert_push takes, in one call."""

from __future__ import annotations

DOCUMENTATION = r"""
name: cert_batch
short_description: Build the O(certautopilot.vault.vault_cert_push#module:certificates) batch from a certificate list
version_added: 0.1.0
author:
  - CertAutoPilot team (@certautopilot)
description:
  - Turns a list of certificates, given inline or as file paths, into the list of items that
    O(certautopilot.vault.vault_cert_push#module:certificates) takes, so that any number of certificates is
    delivered by B(one) module run (one login, a few kept-alive connections).
  - Reads every C(certificate_file) and C(chain_file) and renders every secret path in one plugin call.
  - B(Private keys are not read here.) A C(private_key_file) is returned as the absolute path of the file found
    on the controller; the push's action plugin reads it (decrypting Ansible Vault files) and hands the keys to
    the module outside its arguments. An inline C(private_key) is passed on as it is.
  - The secret path of a certificate is its C(path) when the item has one, otherwise the template rendered with
    the certificate's metadata and every variable in scope (see O(template)).
  - B(Runs on the controller) - file paths are resolved on the controller, not on the managed host, like every
    lookup. Relative paths are searched like P(ansible.builtin.file#lookup) does (the role's or playbook's
    C(files/) directory, then its own directory). Files encrypted with Ansible Vault are decrypted. A file
    larger than 1 MiB, or one that is not a regular file (a FIFO, a device), is refused before it is read.
  - The items are otherwise passed on as they are; M(certautopilot.vault.vault_cert_push) checks them (unknown
    keys, two items with one path) before any request.
  - Use it with P(ansible.builtin.query#lookup) (or C(wantlist=true)) so that a single certificate still
    yields a list.
  - The P(certautopilot.vault.cert_distribution#role) role is built on it.
requirements:
  - cryptography >= 40.0 (Python library, on the controller)
options:
  _terms:
    description:
      - The certificates, each a dictionary; a list of them may be passed as one term.
      - C(certificate) or C(certificate_file) (exactly one) - the PEM leaf certificate, inline or as a file path.
      - C(private_key) or C(private_key_file) (at most one) - the PEM private key of the certificate, inline or as
        a file path. Left out of the items when O(include_private_key=false).
      - C(chain) or C(chain_file) (optional, at most one) - the PEM intermediates, leaf-first. C(chain) is a bundle
        text or a list of PEM texts; C(chain_file) is a path or a list of paths.
      - C(path) (optional) - the secret path of this certificate, used as it is instead of the template.
      - C(vars) (optional) - a dictionary of extra variables for rendering this certificate's path.
    type: list
    elements: dict
    required: true
  template:
    description:
      - The secret path template, rendered once per certificate that has no C(path) of its own.
      - "Variables available to it, highest precedence first - the item's C(vars); the certificate's metadata
        C(cn), C(sans), C(serial), C(not_before), C(not_after), C(issuer), C(subject), C(fingerprint_sha256)
        (as the P(certautopilot.vault.cert_info#filter) filter returns them); every variable in scope of the task
        (host vars, group vars, role vars, facts, C(inventory_hostname), ...)."
      - Written in Jinja (C(certs/{{ cn }})) or in the Go-template form of CertAutoPilot's own configuration
        (C(certs/{{ .cn }})); each C({{ .name }}) is read as C({{ name }}).
      - B(A template given here is never trusted) - whatever expression made it (a survey answer joined to a
        literal would lose its mark on some ansible-core versions), it may only hold C({{ name }}) placeholders of
        the certificate's own variables (its metadata and the item's C(vars)) - no filters, lookups or other
        variables. For full Jinja use O(template_from).
      - The metadata values are inserted as plain text and never rendered.
      - B(A value taken from the certificate may not add or remove path segments) - a CN C(team-b/api) rendered
        into C(certs/{{ cn }}) would write into another folder, so the item is refused, naming the field. The
        same holds for a template given with O(template_from), whatever filters it applies - a CN
        C(team-b%2Fapi) into C(certs/{{ cn | urldecode }}) is refused too. To tell, the template is rendered a
        second time with every certificate value made neutral (each run of characters between dots becomes
        C(x); the digits of C(serial), C(not_before), C(not_after) and C(fingerprint_sha256) become C(1), so
        filters that parse them still work); a path whose number of segments differs is refused. So a
        trusted template's lookups and filters run twice per certificate.
    type: str
    default: "certs/{{ cn }}"
  template_from:
    description:
      - The B(name) of a variable that holds the template. Its value is taken as it was written, before Ansible
        renders it, so it may be written plainly (C(certs/{{ cn }})) in play vars, role entry vars, C(include_role)
        vars, group or host vars or C(-e) extra vars, and in the Go-template form (C(certs/{{ .cn }})).
      - B(Full Jinja only for a template Ansible trusts) - one written in a playbook, role, inventory or vars file,
        or given with C(-e). A template that came from data - an AWX survey answer, a fact, a lookup's result, a
        value marked C(!unsafe) - gets placeholders only, as O(template) does, so that whoever may answer a survey
        cannot run code on the controller or read variables into a path. A variable's value inserted by a
        trusted template is text, and a path that still holds template syntax is refused.
      - Wins over O(template). Naming a variable that is not defined is an error.
      - C({% raw %}) and C({% endraw %}) tags are taken out (they were written for whoever renders the template
        first); the text between them is part of the template.
    type: str
  files_root:
    description:
      - A directory on the controller that every C(certificate_file), C(chain_file) and C(private_key_file) must
        lie in, judged after symlinks and C(..) are resolved; a relative path is taken from it (no search path).
      - Set it when the list comes from people who should not read every file of the controller user (an AWX
        survey). Pass the same directory to O(certautopilot.vault.vault_cert_push#module:files_root), whose action
        plugin reads the key files.
    type: path
  items_name:
    description:
      - How errors name an item - V(cert_distribution_certs) makes them say C(cert_distribution_certs[2]).
        Without it an item is C(certificate 3).
    type: str
  include_private_key:
    description:
      - When V(false), the items have neither C(private_key) nor C(private_key_file) - for
        O(certautopilot.vault.vault_cert_push#module:include_private_key=false) (cert-only delivery), or to get
        the secret paths alone.
    type: bool
    default: true
  hosts:
    description:
      - Build one batch per host, each from B(that host's own variables) (for the role's fleet mode, where one
        C(run_once) task gathers the certificates of every host of the run). Give the list with O(items_from),
        not as terms.
      - Returns one entry per host, in this order - C(host), C(own_variables) (the names of the host's own
        variables), C(batch) (the items, as without O(hosts)), C(paths) (their secret paths) and C(rendered) (the
        variables O(values_from) names, those the host has) - or, when that host's list does not read or render,
        no C(batch) and C(paths) but C(error) (the message, which names the item and option, never a value), so
        that the caller can fail that host alone.
      - "A host's variables are the task's own (play, role, C(include_role) and extra vars, as the host the task
        runs for sees them) with the host's own variables in place of that host's: its inventory host and group
        vars, facts and C(set_fact) values, read unrendered with C(hostvars.raw_get), the only public way to a
        host's variables (ansible-core 2.17 to 2.21), so O(template_from) keeps each host's trust rules. A
        variable the task's host gives both in its own vars and from a role or C(include_role) var of the same
        name is taken as the task gives it; one only other hosts give in their own vars is theirs."
    type: list
    elements: str
  items_from:
    description:
      - With O(hosts), the B(name) of the variable that holds each host's certificate list, rendered with that
        host's variables. Without it each host's batch is empty (only O(values_from) is rendered).
    type: str
  fallbacks:
    description:
      - With O(hosts), values for variables that the task's host has in its own vars and another host does not -
        a role's defaults, which sit below the hosts' own vars and which Ansible gives a lookup no public way to
        read apart. Without one, such a variable is not defined for that host.
    type: dict
    default: {}
  values_from:
    description:
      - With O(hosts), names of more variables to render with each host's variables, returned in C(rendered).
    type: list
    elements: str
    default: []
notes:
  - The metadata is computed with the same code as the P(certautopilot.vault.cert_info#filter) filter and the
    RV(certautopilot.vault.vault_cert_push#module:certificate) return value, so a path rendered here matches
    what the module reports.
  - A path, given or rendered, that holds template syntax (C({{), C({%), C({#)) is refused, naming the item.
  - A C(certificate_file) or C(chain_file) gives only its PEM certificates (text around them is left behind);
    one that holds none, or holds another kind of PEM block (a key), is refused without showing the file.
  - A certificate whose PEM does not parse fails the lookup, naming the item. The key, the chain and the
    validity period are checked by M(certautopilot.vault.vault_cert_push).
seealso:
  - module: certautopilot.vault.vault_cert_push
  - plugin: certautopilot.vault.cert_info
    plugin_type: filter
"""

EXAMPLES = r"""
- name: Deliver every certificate of a directory in one module run
  vars:
    path_template: "certs/{{ env }}/{{ cn }}"
    env: prod
    certs:
      - certificate_file: /etc/pki/issued/www.example.com/cert.pem
        private_key_file: /etc/pki/issued/www.example.com/key.pem
        chain_file: /etc/pki/issued/www.example.com/chain.pem
      - certificate: "{{ api_certificate_pem }}"
        private_key_file: api.key.vault
        path: certs/prod/api
  certautopilot.vault.vault_cert_push:
    url: https://vault.example.com:8200
    certificates: "{{ query('certautopilot.vault.cert_batch', certs, template_from='path_template') }}"

- name: Show where each certificate would go
  ansible.builtin.debug:
    msg: "{{ query('certautopilot.vault.cert_batch', certs, template_from='path_template', include_private_key=false)
             | map(attribute='path') }}"

- name: The Go-template form, and a per-certificate variable
  vars:
    path_template: "certs/{{ .team }}/{{ .cn }}"
  ansible.builtin.debug:
    msg: >-
      {{ query('certautopilot.vault.cert_batch', [{'certificate_file': 'www.pem', 'vars': {'team': 'web'}}],
               template_from='path_template', include_private_key=false) }}

- name: Inside an expression a string literal is not rendered, so it may be given directly
  ansible.builtin.debug:
    msg: >-
      {{ query('certautopilot.vault.cert_batch', certs, template='certs/{{ cn }}/{{ serial }}')
         | map(attribute='path') }}
"""

RETURN = r"""
_raw:
  description:
    - One item per certificate, in input order, ready for O(certautopilot.vault.vault_cert_push#module:certificates).
  type: list
  elements: dict
  contains:
    path:
      description: The secret path below the mount - the item's C(path), or the template rendered.
      type: str
      sample: certs/www.example.com
    certificate:
      description: The PEM certificate text.
      type: str
    private_key:
      description: The inline private key, when the item gave one and O(include_private_key=true).
      type: str
    private_key_file:
      description:
        - The absolute path on the controller of the item's C(private_key_file), when it gave one and
          O(include_private_key=true). Read by the push's action plugin, not here.
      type: str
    chain:
      description:
        - The chain as given (text or list of texts), or the text of each C(chain_file).
        - Absent when the item has no chain.
      type: raw
"""

import os
import re
import typing as t
from collections import ChainMap

from ansible.errors import AnsibleError, AnsibleLookupError
from ansible.plugins.lookup import LookupBase

from ansible_collections.certautopilot.vault.plugins.module_utils._certs import (
    CRYPTOGRAPHY_REQUIREMENT,
    HAS_CRYPTOGRAPHY,
    certificate_info,
)
from ansible_collections.certautopilot.vault.plugins.module_utils._errors import VaultCertError
from ansible_collections.certautopilot.vault.plugins.module_utils._keys import kind_of
from ansible_collections.certautopilot.vault.plugins.plugin_utils._files import CERTIFICATES, confined, read_option_file

try:
    # ansible-core 2.19+ (data tagging): a string is rendered only when trusted as a template.
    from ansible.template import is_trusted_as_template, trust_as_template
except ImportError:  # ansible-core 2.17, 2.18: what is not marked unsafe is trusted
    from ansible.utils.unsafe_proxy import AnsibleUnsafe

    trust_as_template = None

    def is_trusted_as_template(value: t.Any) -> bool:
        return not isinstance(value, AnsibleUnsafe)


# {{ .name }} of a Go template (the product's own path syntax) is {{ name }} in Jinja.
GO_FIELD = re.compile(r"\{\{(-?)\s*\.([A-Za-z_][A-Za-z0-9_]*)\s*(-?)\}\}")
# {{ name }} / {{ .name }} placeholders and {% raw %} / {% endraw %} tags, each with Jinja's "-" trimming.
PLACEHOLDER = r"\{\{(?P<p_left>-?)\s*\.?(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*(?P<p_right>-?)\}\}"
RAW_TAG = r"\{%(?P<r_left>-?)\s*(?:end)?raw\s*(?P<r_right>-?)%\}"
TOKENS = re.compile(f"{PLACEHOLDER}|{RAW_TAG}")
RAW_TAGS = re.compile(RAW_TAG)
TEMPLATE_MARKS = ("{{", "}}", "{%", "%}", "{#", "#}")
# Stands for the certificate's text in a second rendering, one per run of characters between dots (so that a
# template splitting a name into its DNS labels still renders): whatever filters the template applies, no "/"
# comes of it, so a path with other segments than that rendering's took them from the certificate.
NEUTRAL = "x"
NOT_A_DOT = re.compile(r"[^.]+")
# Values the collection formats itself (hex, UTC dates): each hex digit becomes "1", so filters that parse them
# still render and no digit the certificate chose is left.
FORMATTED_FIELDS = frozenset({"serial", "not_before", "not_after", "fingerprint_sha256"})
HEX_DIGIT = re.compile(r"[0-9a-f]")


def split_tokens(text: str, pattern: re.Pattern) -> list[t.Any]:
    """``text`` as [text, match, text, match, ..., text], with each match's "-" trimming done on its neighbours."""
    parts: list[t.Any] = []
    position = 0
    for match in pattern.finditer(text):
        parts += [text[position : match.start()], match]
        position = match.end()
    parts.append(text[position:])
    for index in range(1, len(parts), 2):
        match = parts[index]
        if match.group(0).startswith(("{{-", "{%-")):
            parts[index - 1] = parts[index - 1].rstrip()
        if match.group(0).endswith(("-}}", "-%}")):
            parts[index + 1] = parts[index + 1].lstrip()
    return parts


def without_raw_tags(text: str) -> str:
    """The template with {% raw %} tags taken out: they were written for whoever renders it first.

    Taken out as text, not by rendering: a first rendering would turn variables' values into template
    text, which is how data once became code.
    """
    return "".join(part for part in split_tokens(text, RAW_TAGS) if isinstance(part, str))


def flatten_terms(terms: t.Iterable[t.Any]) -> list[t.Mapping[str, t.Any]]:
    """The certificate items: each term is one item (a dict) or a list of them."""
    items: list[t.Mapping[str, t.Any]] = []
    for term in terms:
        elements = term if isinstance(term, (list, tuple)) else [term]
        for element in elements:
            if element is None:
                continue
            if not isinstance(element, t.Mapping):
                raise AnsibleLookupError(f"cert_batch: each certificate must be a dictionary, got {kind_of(element)}")
            items.append(element)
    return items


def describe_item(index: int, item: t.Mapping[str, t.Any], items_name: str | None = None) -> str:
    """How errors name an item: by its position, never by a value it holds (its path is not validated yet)."""
    if items_name:
        return f"{items_name}[{index}]"
    return f"certificate {index + 1}"


def has_template_syntax(text: str) -> bool:
    return any(mark in text for mark in TEMPLATE_MARKS)


def segment_count(path: str) -> int:
    return path.count("/")


def neutral(value: t.Any, *, formatted: bool = False) -> t.Any:
    """A certificate value with nothing of the certificate's choosing left, in strings, lists and dicts alike."""
    if isinstance(value, str):
        return HEX_DIGIT.sub("1", value) if formatted else NOT_A_DOT.sub(NEUTRAL, value)
    if isinstance(value, (list, tuple)):
        return [neutral(element, formatted=formatted) for element in value]
    if isinstance(value, t.Mapping):
        return {key: neutral(element, formatted=formatted) for key, element in value.items()}
    return value


def neutral_layer(layer: t.Mapping[str, t.Any], fields: t.Iterable[str]) -> dict[str, t.Any]:
    """``layer`` with each of ``fields`` made neutral."""
    return {**layer, **{key: neutral(layer[key], formatted=key in FORMATTED_FIELDS) for key in fields}}


def path_template(
    value: t.Any, templar: t.Any, variables: t.Mapping[str, t.Any]
) -> JinjaTemplate | PlaceholderTemplate:
    """The path template, rendered as Ansible trusts it: full Jinja when written in a playbook, inventory or
    vars file (or -e); only the certificate's own {{ name }} placeholders when it came from data - an AWX
    survey answer, a fact, a lookup's result - since a survey user must not run code on the controller.
    """
    text = template_text(value)
    if is_trusted_as_template(value):
        return JinjaTemplate(templar, GO_FIELD.sub(r"{{\1 \2 \3}}", text), variables)
    return PlaceholderTemplate(text)


def template_text(value: t.Any) -> str:
    """The template as a plain str: str.__str__ copies 2.17/2.18 unsafe text or 2.19 tagged text into one."""
    if not isinstance(value, str) or not value.strip():
        raise AnsibleLookupError("cert_batch: the path template must be a non-empty string")
    return str.__str__(value)


class JinjaTemplate:
    """A trusted template, rendered for one certificate at a time by Ansible's templar."""

    def __init__(self, templar: t.Any, text: str, variables: t.Mapping[str, t.Any]) -> None:
        self._templar = templar.copy_with_new_env(available_variables=variables)
        self._variables = variables
        self._text = without_raw_tags(text)

    def _render(self, text: str, variables: t.Mapping[str, t.Any], name: str) -> t.Any:
        self._templar.available_variables = variables
        try:
            return self._templar.template(trust_as_template(text) if trust_as_template else text)
        except Exception as exc:  # undefined variable, syntax error, filter error: all name the certificate
            raise AnsibleLookupError(f"cert_batch: rendering the path template for {name} failed: {exc}") from None

    def render(self, layer: t.Mapping[str, t.Any], name: str, certificate_fields: t.Collection[str] = ()) -> str:
        try:
            path = checked_path(self._render(self._text, ChainMap(_as_data(layer), self._variables), name), name)
        except AnsibleLookupError as exc:
            raise AnsibleLookupError(
                f"{exc}. Its own variables are {', '.join(sorted(layer))}, besides every variable in scope"
            ) from None
        # Filters may move a "/" anywhere: what the same template makes without it tells where segments are.
        refuse_added_segments(
            path,
            lambda plain: str(self._render(self._text, ChainMap(_as_data(plain), self._variables), name)),
            layer,
            certificate_fields,
            name,
        )
        return path


class PlaceholderTemplate:
    """An untrusted template: text and {{ name }} placeholders of the certificate's own variables, nothing else."""

    def __init__(self, text: str) -> None:
        self._parts = split_tokens(text, TOKENS)
        if any(mark in part for part in self._parts if isinstance(part, str) for mark in TEMPLATE_MARKS):
            raise AnsibleLookupError(
                "cert_batch: the path template came from data Ansible does not trust as a template (an AWX survey "
                "answer, a fact, a lookup's result, or a value marked !unsafe), so it may only hold {{ name }} "
                "placeholders of the certificate's own variables; write it in the playbook, a vars file or -e "
                "for full Jinja"
            )

    def render(self, layer: t.Mapping[str, t.Any], name: str, certificate_fields: t.Collection[str] = ()) -> str:
        path = checked_path("".join(self._text_of(part, layer, name) for part in self._parts), name)
        refuse_added_segments(
            path,
            lambda plain: "".join(self._text_of(part, plain, name) for part in self._parts),
            layer,
            certificate_fields,
            name,
        )
        return path

    @staticmethod
    def _text_of(part: t.Any, layer: t.Mapping[str, t.Any], name: str) -> str:
        if isinstance(part, str):
            return part
        key = part.group("name")
        if key is None:  # a {% raw %} tag
            return ""
        if key not in layer:
            raise AnsibleLookupError(
                f"cert_batch: rendering the path template for {name} failed: {key} is not one of the "
                f"certificate's own variables ({', '.join(sorted(layer))}); a template from data (an AWX "
                "survey answer, a fact, a value marked !unsafe) may use only those - write it in the playbook, "
                "a vars file or -e to use other variables, or give them in the item's vars"
            )
        value = layer[key]
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            raise AnsibleLookupError(
                f"cert_batch: rendering the path template for {name} failed: {key} is a {kind_of(value)}, not text"
            )
        return str(value)


def refuse_added_segments(
    path: str,
    render: t.Callable[[t.Mapping[str, t.Any]], str],
    layer: t.Mapping[str, t.Any],
    certificate_fields: t.Collection[str],
    name: str,
) -> None:
    """Refuse a path whose segments a certificate's value changed: a CN "team-b/api" into certs/{{ cn }}, or
    "team-b%2Fapi" into certs/{{ cn | urldecode }}.

    The template is rendered once more with every certificate value made neutral: the segments of that path are
    the template's own. Only when the real path has another number of them is each value made neutral alone, to
    name the fields that changed it.
    """
    if not certificate_fields:
        return
    added = segments_added(path, render, neutral_layer(layer, certificate_fields))
    if not added:
        return
    changed = {
        key: count
        for key in sorted(certificate_fields)
        if (count := segments_added(path, render, neutral_layer(layer, [key])))
    }
    fields = " and ".join(changed) or "values"
    change = "add" if max(changed.values(), default=added) > 0 else "remove"
    raise AnsibleLookupError(
        f"cert_batch: {name}: the certificate's {fields} would {change} a path segment (a '/' in it, or one a "
        "filter makes of it), writing into another folder; nothing written. Give the item a path of its own, or a "
        "template without it"
    )


def segments_added(path: str, render: t.Callable[[t.Mapping[str, t.Any]], str], layer: t.Mapping[str, t.Any]) -> int:
    """How many more segments ``path`` has than the template renders from ``layer``."""
    try:
        reference = render(layer)
    except AnsibleLookupError:  # a template that needs the certificate's own value (it splits on a "/" in it)
        return 1
    return segment_count(path) - segment_count(reference)


def checked_path(rendered: t.Any, name: str) -> str:
    if not isinstance(rendered, str) or not rendered.strip():
        what = "blank text" if isinstance(rendered, str) else f"a {kind_of(rendered)}"
        raise AnsibleLookupError(f"cert_batch: the path template rendered {what} for {name}; a path is needed")
    if any(mark in rendered for mark in TEMPLATE_MARKS):
        # A variable whose value is a template (a survey answer) is inserted as text, never rendered again.
        raise AnsibleLookupError(
            f"cert_batch: the path template rendered a path for {name}, which still holds template "
            "syntax (not shown): a template inside a variable's value is not rendered again; write the template itself "
            "where the path template is set"
        )
    return str(rendered)


def _as_data(layer: t.Mapping[str, t.Any]) -> t.Mapping[str, t.Any]:
    """A certificate's variables as data that is never rendered again (its CN may hold {{ }})."""
    if trust_as_template:
        return layer  # 2.19+: data made in Python is never trusted as a template
    from ansible.utils.unsafe_proxy import wrap_var

    return wrap_var(dict(layer))


def same_value(one: t.Any, other: t.Any) -> bool:
    try:
        return one is other or bool(one == other)
    except Exception:  # values that do not compare are not the same
        return False


def host_variables(
    variables: t.Mapping[str, t.Any],
    task_host_own: t.Mapping[str, t.Any],
    own: t.Mapping[str, t.Any],
    fallbacks: t.Mapping[str, t.Any] | None = None,
) -> dict[str, t.Any]:
    """The task's variables as another host sees them: that host's own variables in place of the task host's.

    ``task_host_own`` and ``own`` are the two hosts' own variables (hostvars.raw_get: inventory, facts, set_fact,
    unrendered). A variable the task's host has of its own with the value the task sees comes from that host's
    level: the other host's own value replaces it, or its value in ``fallbacks`` (a role's defaults, below the
    hosts' level, which Ansible gives no public way to read apart), or none. One the task sees with another value
    is set above the hosts (a role or include_role var): every host gets it. One only the other host has is its own.
    A plain dict: Ansible's templar takes no other mapping than a dict or a ChainMap.
    """
    host_level = {key for key, value in task_host_own.items() if key in variables and same_value(variables[key], value)}
    view = {key: variables[key] for key in variables if key not in host_level}
    view.update((key, value) for key, value in own.items() if key not in task_host_own or key in host_level)
    fallbacks = fallbacks or {}
    view.update((key, fallbacks[key]) for key in host_level - set(own) if key in fallbacks)
    return view


class LookupModule(LookupBase):
    def run(self, terms: list[t.Any], variables: t.Mapping[str, t.Any] | None = None, **kwargs: t.Any) -> list[dict]:
        if not HAS_CRYPTOGRAPHY:
            raise AnsibleLookupError(
                f"cert_batch needs the Python library {CRYPTOGRAPHY_REQUIREMENT} on the controller"
            )
        self.set_options(var_options=variables, direct=kwargs)
        variables = variables if variables is not None else {}
        hosts = self.get_option("hosts")
        if hosts is None:
            return self._batch(terms, variables)
        return self._host_batches(terms, variables, hosts)

    def _host_batches(
        self, terms: list[t.Any], variables: t.Mapping[str, t.Any], hosts: list[str]
    ) -> list[dict[str, t.Any]]:
        """One entry per host: its batch built from its own variables, or the error that stopped it."""
        items_from = self.get_option("items_from")
        if terms:
            raise AnsibleLookupError("cert_batch: with hosts, name the variable of each host's list in items_from")
        hostvars = variables.get("hostvars")
        if not hasattr(hostvars, "raw_get"):
            raise AnsibleLookupError("cert_batch: hosts needs the hostvars of a play")
        task_host_own = hostvars.raw_get(variables["inventory_hostname"])
        entries = []
        for host in hosts:
            own = hostvars.raw_get(host)
            view = host_variables(variables, task_host_own, own, self.get_option("fallbacks"))
            # The names alone, for checks such as a misspelt variable: one read of the host's variables does all.
            entry: dict[str, t.Any] = {"host": host, "own_variables": sorted(own)}
            try:
                entry["rendered"] = {
                    name: self._rendered(view, name) for name in self.get_option("values_from") if name in view
                }
                if items_from and items_from not in view:
                    raise AnsibleLookupError("cert_batch: items_from names no variable of this host")
                entry["batch"] = self._batch([self._rendered(view, items_from)], view) if items_from else []
            except AnsibleError as exc:
                entry.pop("batch", None)
                entries.append({**entry, "error": getattr(exc, "message", None) or str(exc)})
                continue
            entry["paths"] = [item["path"] for item in entry["batch"]]
            entries.append(entry)
        return entries

    def _rendered(self, view: t.Mapping[str, t.Any], name: str) -> t.Any:
        return self._templar.copy_with_new_env(available_variables=view).template(view[name])

    def _batch(self, terms: list[t.Any], variables: t.Mapping[str, t.Any]) -> list[dict]:
        self._variables = variables
        self._texts: dict[str, str] = {}  # a chain file shared by many certificates is read once
        source = self.get_option("template_from")
        if source:
            if source not in self._variables:
                raise AnsibleLookupError("cert_batch: template_from names no variable in scope")
            # As written: a lookup's variables are not rendered yet, and keep the trust Ansible gave them.
            self._renderer = path_template(self._variables[source], self._templar, self._variables)
        else:
            # An argument is whatever an expression made of it - on 2.17/2.18 a survey answer joined to a literal
            # loses its unsafe mark - so it is never trusted: placeholders only.
            self._renderer = PlaceholderTemplate(template_text(self.get_option("template")))
        with_key = self.get_option("include_private_key")
        self._files_root = self.get_option("files_root") or None
        self._items_name = self.get_option("items_name") or None
        return [self._batch_item(index, item, with_key) for index, item in enumerate(flatten_terms(terms))]

    def _batch_item(self, index: int, item: t.Mapping[str, t.Any], with_key: bool) -> dict[str, t.Any]:
        name = describe_item(index, item, self._items_name)
        entry = dict(item)
        extra = entry.pop("vars", None)
        extra = {} if extra is None else extra
        if not isinstance(extra, t.Mapping):
            raise AnsibleLookupError(f"cert_batch: vars of {name} must be a dictionary, got {kind_of(extra)}")
        entry["certificate"] = self._inline_or_file(entry, "certificate", name, required=True)
        chain = self._inline_or_file(entry, "chain", name)
        if chain is not None:
            entry["chain"] = chain
        key_file = entry.pop("private_key_file", None)
        if not with_key:
            entry.pop("private_key", None)
        elif key_file not in (None, ""):
            if entry.get("private_key") not in (None, ""):
                raise AnsibleLookupError(f"cert_batch: {name} gives both private_key and private_key_file; give one")
            entry["private_key_file"] = self._find(key_file, "private_key_file", name)
        if entry.get("path") in (None, ""):
            metadata = self._metadata(entry["certificate"], name)
            # The item's own vars are the user's choice, as its path is; the certificate's values are not.
            certificate_fields = [key for key in metadata if key not in extra]
            entry["path"] = self._renderer.render({**metadata, **extra}, name, certificate_fields)
        elif isinstance(entry["path"], str) and has_template_syntax(entry["path"]):
            # Recorded in results files and set_stats, a path is read back as variables: it may not act as code.
            raise AnsibleLookupError(
                f"cert_batch: the path of {name} holds template syntax ({{{{, {{% or {{#), which a path never may"
            )
        return entry

    def _inline_or_file(self, entry: dict, key: str, name: str, *, required: bool = False) -> t.Any:
        inline, from_file = entry.get(key), entry.pop(f"{key}_file", None)
        if inline not in (None, "") and from_file not in (None, ""):
            raise AnsibleLookupError(f"cert_batch: {name} gives both {key} and {key}_file; give one")
        if from_file in (None, ""):
            if required and inline in (None, ""):
                raise AnsibleLookupError(f"cert_batch: {name} needs {key} or {key}_file")
            return inline
        if isinstance(from_file, (list, tuple)):
            return [self._read(path, f"{key}_file", name) for path in from_file]
        return self._read(from_file, f"{key}_file", name)

    def _find(self, path: t.Any, what: str, name: str) -> str:
        if not isinstance(path, str) or not path:
            raise AnsibleLookupError(f"cert_batch: {what} of {name} must be a file path, got {kind_of(path)}")
        if self._files_root:
            # Below the root only: no search path may lead out of it, and no path is shown.
            try:
                return confined(path, option=f"{what} of {name}", root=self._files_root)
            except VaultCertError as exc:
                raise AnsibleLookupError(f"cert_batch: {exc}") from None
        found = self.find_file_in_search_path(self._variables, "files", path, ignore_missing=True)
        if not found:
            raise AnsibleLookupError(f"cert_batch: {what} of {name} not found on the controller")
        if not os.path.isfile(found):
            raise AnsibleLookupError(f"cert_batch: {what} of {name} is not a file")
        return found

    def _read(self, path: t.Any, what: str, name: str) -> str:
        found = self._find(path, what, name)
        if found not in self._texts:
            try:
                self._texts[found] = read_option_file(
                    self._loader, found, option=what, kind=CERTIFICATES, root=self._files_root
                )
            except VaultCertError as exc:
                raise AnsibleLookupError(f"cert_batch: {exc} ({name})") from None
        return self._texts[found]

    @staticmethod
    def _metadata(certificate: t.Any, name: str) -> dict[str, t.Any]:
        if not isinstance(certificate, str):
            raise AnsibleLookupError(f"cert_batch: certificate of {name} must be PEM text, got {kind_of(certificate)}")
        try:
            return certificate_info(certificate)
        except VaultCertError as exc:
            raise AnsibleLookupError(f"cert_batch: {name}: {exc}") from None

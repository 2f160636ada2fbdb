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
  - Turns a list of certificates, given inline or as file paths, into the list of
    C({path, certificate, private_key, chain}) items that
    O(certautopilot.vault.vault_cert_push#module:certificates) takes, so that any number of certificates is
    delivered by B(one) module run (one login, one HTTP connection).
  - Reads every C(*_file) entry and renders every secret path in one plugin call. A task C(loop) over the
    certificates would cost several milliseconds of task overhead per certificate; this lookup does the same work
    for a thousand certificates in about a third of a second.
  - The secret path of a certificate is its C(path) when the item has one, otherwise O(template) rendered with
    the certificate's metadata and every variable in scope (see O(template)).
  - B(Runs on the controller) - C(*_file) paths are read on the controller, not on the managed host, like
    every lookup. Relative paths are searched like P(ansible.builtin.file#lookup) does (the role's or
    playbook's C(files/) directory, then its own directory). Files encrypted with Ansible Vault are decrypted.
    The push itself normally runs on C(localhost) too, or is delegated to it.
  - Two certificates that end up with the same secret path are refused, since the second would overwrite the
    first on every run.
  - Use it with P(ansible.builtin.query#lookup) (or C(wantlist=true)) so that a single certificate still
    yields a list.
  - The P(certautopilot.vault.cert_distribution#role) role is built on it.
requirements:
  - cryptography >= 40.0 (Python library, on the controller)
options:
  _terms:
    description:
      - The certificates, each a dictionary; a list of them may be passed as one term.
      - Each item takes the keys below, and no others.
      - C(certificate) or C(certificate_file) (exactly one) - the PEM leaf certificate, inline or as a file path.
      - C(private_key) or C(private_key_file) (exactly one unless O(include_private_key=false)) - the PEM private
        key of the certificate. Ignored, and its file not read, when O(include_private_key=false).
      - C(chain) or C(chain_file) (optional, at most one) - the PEM intermediates, leaf-first. C(chain) is a bundle
        text or a list of PEM texts; C(chain_file) is a path or a list of paths.
      - C(path) (optional) - the secret path of this certificate, used as it is instead of O(template).
      - C(vars) (optional) - a dictionary of extra variables for rendering this certificate's path.
    type: list
    elements: dict
    required: true
  template:
    description:
      - The secret path template, Jinja2, rendered once per certificate (that has no C(path) of its own).
      - "Variables available to it, highest precedence first - the item's C(vars); the certificate's metadata
        C(cn), C(sans), C(serial), C(not_before), C(not_after), C(issuer), C(subject), C(fingerprint_sha256)
        (as the P(certautopilot.vault.cert_info#filter) filter returns them); every variable in scope of the task
        (host vars, group vars, role vars, facts, C(inventory_hostname), ...)."
      - B(The template must reach the lookup unrendered.) Ansible renders C({{ }}) in variables before a lookup
        sees them, and C(cn) is not defined then. Write it as C(!unsafe 'certs/{{ cn }}') in YAML (a variable
        file, role defaults, C(vars:)), or wrap it in C({% raw %}...{% endraw %}). In AWX and Ansible Automation
        Platform, survey answers and variables prompted at launch are passed as unsafe and can be written plainly;
        extra variables saved in the job template itself are rendered and need C({% raw %}). A string literal
        inside a Jinja expression (C(template='certs/{{ cn }}')) is not rendered either.
      - The lookup trusts this one string as a template. Never build it from data you do not control (such as
        a certificate's contents); the metadata values themselves are inserted as plain text and never rendered.
      - The result must be a non-empty string. Whether it is a valid secret path is checked by
        M(certautopilot.vault.vault_cert_push), before any request.
    type: str
    default: "certs/{{ cn }}"
  include_private_key:
    description:
      - When V(false), private keys are neither required nor read, and the items have no C(private_key) - for
        O(certautopilot.vault.vault_cert_push#module:include_private_key=false) (cert-only delivery), or to get
        the secret paths alone.
    type: bool
    default: true
notes:
  - The metadata is computed with the same code as the P(certautopilot.vault.cert_info#filter) filter and the
    RV(certautopilot.vault.vault_cert_push#module:certificate) return value, so a path rendered here matches
    what the module reports.
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
    path_template: !unsafe "certs/{{ env }}/{{ cn }}"
    env: prod
    certs:
      - certificate_file: /etc/pki/issued/www.example.com/cert.pem
        private_key_file: /etc/pki/issued/www.example.com/key.pem
        chain_file: /etc/pki/issued/www.example.com/chain.pem
      - certificate: "{{ api_certificate_pem }}"
        private_key: "{{ api_private_key_pem }}"
        path: certs/prod/api
  certautopilot.vault.vault_cert_push:
    url: https://vault.example.com:8200
    certificates: "{{ query('certautopilot.vault.cert_batch', certs, template=path_template) }}"

- name: Show where each certificate would go (no file holding a key is read)
  ansible.builtin.debug:
    msg: "{{ query('certautopilot.vault.cert_batch', certs, template=path_template, include_private_key=false)
             | map(attribute='path') }}"

- name: The template written with raw instead of !unsafe, and a per-certificate variable
  vars:
    path_template: "{% raw %}certs/{{ team }}/{{ cn }}{% endraw %}"
  ansible.builtin.debug:
    msg: >-
      {{ query('certautopilot.vault.cert_batch', [{'certificate_file': 'www.pem', 'vars': {'team': 'web'}}],
               template=path_template, include_private_key=false) }}

- name: Inside an expression a string literal is not rendered, so it needs neither
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
      description: The secret path below the mount - the item's C(path), or O(template) rendered.
      type: str
      sample: certs/www.example.com
    certificate:
      description: The PEM certificate text.
      type: str
    private_key:
      description:
        - The PEM private key text. Absent when O(include_private_key=false).
        - Mark a task that stores or shows it C(no_log).
      type: str
    chain:
      description:
        - The chain as given (text or list of texts), or the text of each C(chain_file).
        - Absent when the item has no chain.
      type: raw
"""

import collections
import typing as t

from ansible.errors import AnsibleLookupError
from ansible.module_utils.common.text.converters import to_text
from ansible.plugins.lookup import LookupBase

from ansible_collections.certautopilot.vault.plugins.module_utils._certs import (
    CRYPTOGRAPHY_REQUIREMENT,
    HAS_CRYPTOGRAPHY,
    certificate_info,
)
from ansible_collections.certautopilot.vault.plugins.module_utils._errors import VaultCertError

try:
    # ansible-core 2.19+ (data tagging): an unsafe or rendered string is untrusted and would be returned as it
    # is; the lookup trusts this one string explicitly.
    from ansible.template import trust_as_template

    HAS_DATA_TAGGING = True
except ImportError:  # ansible-core 2.17, 2.18
    trust_as_template = None
    HAS_DATA_TAGGING = False

ITEM_KEYS = frozenset(
    {"certificate", "certificate_file", "private_key", "private_key_file", "chain", "chain_file", "path", "vars"}
)
# (inline key, file key) of each PEM source an item can give
_SOURCES = (("certificate", "certificate_file"), ("private_key", "private_key_file"), ("chain", "chain_file"))


def flatten_terms(terms: t.Iterable[t.Any]) -> list[t.Mapping[str, t.Any]]:
    """The certificate items: each term is one item (a dict) or a list of them."""
    items: list[t.Mapping[str, t.Any]] = []
    for term in terms:
        if isinstance(term, t.Mapping):
            items.append(term)
        elif isinstance(term, (list, tuple)):
            for element in term:
                if not isinstance(element, t.Mapping):
                    raise AnsibleLookupError(
                        f"cert_batch: each certificate must be a dictionary, got {type(element).__name__}"
                    )
                items.append(element)
        elif term is None:
            continue
        else:
            raise AnsibleLookupError(
                f"cert_batch: each term must be a certificate dictionary or a list of them, got {type(term).__name__}"
            )
    return items


def describe_item(index: int, item: t.Mapping[str, t.Any]) -> str:
    """How errors name an item: its position, and the file or path that identifies it to a reader."""
    hint = item.get("path") or item.get("certificate_file")
    return f"certificate {index + 1}" + (f" ({hint})" if isinstance(hint, str) and hint else "")


def check_item(index: int, item: t.Mapping[str, t.Any], *, include_private_key: bool) -> None:
    """Refuse unknown keys and missing or doubled sources, before anything is read."""
    name = describe_item(index, item)
    unknown = sorted(str(key) for key in item if key not in ITEM_KEYS)
    if unknown:
        raise AnsibleLookupError(
            f"cert_batch: {name} has unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(ITEM_KEYS))}"
        )
    for inline, from_file in _SOURCES:
        given = [key for key in (inline, from_file) if item.get(key) not in (None, "")]
        if len(given) > 1:
            raise AnsibleLookupError(f"cert_batch: {name} gives both {inline} and {from_file}; give one")
        if given:
            continue
        if inline == "certificate" or (inline == "private_key" and include_private_key):
            hint = " (or set include_private_key to false for cert-only delivery)" if inline == "private_key" else ""
            raise AnsibleLookupError(f"cert_batch: {name} needs {inline} or {from_file}{hint}")
    extra = item.get("vars")
    if extra is not None and not isinstance(extra, t.Mapping):
        raise AnsibleLookupError(f"cert_batch: vars of {name} must be a dictionary, got {type(extra).__name__}")


def plain_text(value: str) -> str:
    """A plain copy of a string: without the unsafe marker (2.17, 2.18) or data tags (2.19+) it came with."""
    strip_unsafe = getattr(value, "_strip_unsafe", None)
    return strip_unsafe() if strip_unsafe else str(value)


def find_duplicate_paths(paths: t.Sequence[str]) -> list[tuple[str, list[int]]]:
    """Each path that more than one item renders to, with the 1-based positions of those items."""
    positions: dict[str, list[int]] = collections.defaultdict(list)
    for index, path in enumerate(paths):
        positions[path].append(index + 1)
    return [(path, where) for path, where in positions.items() if len(where) > 1]


class LookupModule(LookupBase):
    def run(self, terms: list[t.Any], variables: t.Mapping[str, t.Any] | None = None, **kwargs: t.Any) -> list[dict]:
        if not HAS_CRYPTOGRAPHY:
            raise AnsibleLookupError(
                f"cert_batch needs the Python library {CRYPTOGRAPHY_REQUIREMENT} on the controller"
            )
        self.set_options(var_options=variables, direct=kwargs)
        include_private_key = self.get_option("include_private_key")
        template = self.get_option("template")
        if not isinstance(template, str) or not template:
            raise AnsibleLookupError("cert_batch: template must be a non-empty string")
        variables = variables if variables is not None else {}

        items = flatten_terms(terms)
        for index, item in enumerate(items):
            check_item(index, item, include_private_key=include_private_key)

        self._file_cache: dict[str, str] = {}  # a chain file shared by many certificates is read once
        batch = []
        to_render: list[tuple[int, dict[str, t.Any]]] = []  # (position in batch, template variables)
        for index, item in enumerate(items):
            name = describe_item(index, item)
            entry: dict[str, t.Any] = {"path": item.get("path")}
            entry["certificate"] = self._source(item, "certificate", name, variables)
            if include_private_key:
                entry["private_key"] = self._source(item, "private_key", name, variables)
            chain = self._chain(item, name, variables)
            if chain is not None:
                entry["chain"] = chain
            if entry["path"] in (None, ""):
                to_render.append((index, self._template_variables(item, entry["certificate"], name)))
            elif not isinstance(entry["path"], str):
                raise AnsibleLookupError(
                    f"cert_batch: path of {name} must be a string, got {type(entry['path']).__name__}"
                )
            batch.append(entry)

        if to_render:
            renderer = PathRenderer(self._templar, template, variables)
            positions = [index for index, _layer in to_render]
            paths = renderer.render_all(
                [layer for _index, layer in to_render], [describe_item(index, items[index]) for index in positions]
            )
            for index, path in zip(positions, paths):
                batch[index]["path"] = path
        for entry in batch:
            entry["path"] = str(entry["path"])

        duplicates = find_duplicate_paths([entry["path"] for entry in batch])
        if duplicates:
            listed = "; ".join(f"{path} (certificates {', '.join(map(str, where))})" for path, where in duplicates)
            raise AnsibleLookupError(
                f"cert_batch: several certificates render to the same secret path, and each would overwrite the "
                f"other on every run: {listed}. Give them a path of their own or a template that tells them apart."
            )
        return batch

    @staticmethod
    def _template_variables(item: t.Mapping[str, t.Any], certificate: str, name: str) -> dict[str, t.Any]:
        """The certificate's own template variables: its metadata, overridden by the item's vars."""
        try:
            metadata = certificate_info(certificate)
        except VaultCertError as exc:
            raise AnsibleLookupError(f"cert_batch: {name}: {exc}") from exc
        return {**metadata, **dict(item.get("vars") or {})}

    def _read(self, path: t.Any, what: str, name: str, variables: t.Mapping[str, t.Any]) -> str:
        if not isinstance(path, str) or not path:
            raise AnsibleLookupError(f"cert_batch: {what} of {name} must be a file path, got {type(path).__name__}")
        found = self.find_file_in_search_path(variables, "files", path, ignore_missing=True)
        if not found:
            raise AnsibleLookupError(f"cert_batch: {what} {path} of {name} not found on the controller")
        if found in self._file_cache:
            return self._file_cache[found]
        try:
            if hasattr(self._loader, "get_text_file_contents"):  # ansible-core 2.19+
                text = str(self._loader.get_text_file_contents(found))
            else:
                contents, _show = self._loader._get_file_contents(found)
                text = to_text(contents, errors="surrogate_or_strict")
        except Exception as exc:  # the loader raises several types: not readable, not UTF-8, bad vault data
            raise AnsibleLookupError(f"cert_batch: cannot read {what} {found} of {name}: {exc}") from exc
        self._file_cache[found] = text
        return text

    def _source(self, item: t.Mapping[str, t.Any], key: str, name: str, variables: t.Mapping[str, t.Any]) -> str:
        inline = item.get(key)
        if inline not in (None, ""):
            if not isinstance(inline, str):
                raise AnsibleLookupError(f"cert_batch: {key} of {name} must be PEM text, got {type(inline).__name__}")
            return inline
        return self._read(item[f"{key}_file"], f"{key}_file", name, variables)

    def _chain(self, item: t.Mapping[str, t.Any], name: str, variables: t.Mapping[str, t.Any]) -> t.Any:
        chain = item.get("chain")
        if chain not in (None, ""):
            return chain
        chain_file = item.get("chain_file")
        if chain_file in (None, ""):
            return None
        if isinstance(chain_file, (list, tuple)):
            return [self._read(path, "chain_file", name, variables) for path in chain_file]
        return self._read(chain_file, "chain_file", name, variables)


class PathRenderer:
    """Renders the path template for many certificates.

    Compiling a Jinja template costs far more than rendering it, and Ansible's templar compiles on every call.
    So the whole batch is rendered by one template that loops over the certificates, binding each one's
    variables with ``{% with %}`` and ending each path with a record separator (a control character, which no
    valid secret path holds). When that cannot give a faithful answer - a variable name Jinja cannot bind, a
    rendering error, a separator inside a path - every certificate is rendered on its own instead, which also
    names the certificate in the error.
    """

    SEPARATOR = "\x1e"
    _ITEMS = "__cert_batch_items"
    _ITEM = "__cert_batch_item"
    # Names a {% with %} cannot bind: Jinja literals and operators, and names Jinja itself defines there.
    _UNBINDABLE = frozenset(
        ("true", "false", "none", "True", "False", "None", "and", "or", "not", "in", "is", "if", "else")
        + ("loop", "self", "varargs", "kwargs", "caller")
    )

    def __init__(self, templar: t.Any, template: str, variables: t.Mapping[str, t.Any]) -> None:
        self._templar = templar.copy_with_new_env(available_variables=variables)
        self._template = plain_text(template)
        self._variables = variables

    def _trusted(self, template: str) -> t.Any:
        return trust_as_template(template) if HAS_DATA_TAGGING else template

    @staticmethod
    def _layers(layer: t.Mapping[str, t.Any]) -> t.Mapping[str, t.Any]:
        if HAS_DATA_TAGGING:
            return layer  # data made in Python is never trusted as a template
        # Before data tagging, a variable's value that holds {{ }} would be rendered again: a certificate's
        # CN must never become a template.
        from ansible.utils.unsafe_proxy import wrap_var

        return wrap_var(dict(layer))

    def render_one(self, layer: t.Mapping[str, t.Any], name: str) -> str:
        self._templar.available_variables = collections.ChainMap(self._layers(layer), self._variables)
        try:
            rendered = self._templar.template(self._trusted(self._template))
        except Exception as exc:  # undefined variable, syntax error, filter error: all name the certificate
            raise AnsibleLookupError(f"cert_batch: rendering the path template for {name} failed: {exc}") from exc
        if not isinstance(rendered, str) or not rendered.strip():
            raise AnsibleLookupError(
                f"cert_batch: the path template rendered {rendered!r} for {name}; a non-empty string is needed"
            )
        return str(rendered)

    def render_all(self, layers: list[dict[str, t.Any]], names: list[str]) -> list[str]:
        # The first certificate alone checks that the template renders, to text, with a precise error if not.
        first = self.render_one(layers[0], names[0])
        if len(layers) == 1:
            return [first]
        paths = self._render_batch(layers)
        if paths is None or paths[0] != first or not all(path.strip() for path in paths):
            paths = [first] + [self.render_one(layer, name) for layer, name in zip(layers[1:], names[1:])]
        return paths

    def _render_batch(self, layers: list[dict[str, t.Any]]) -> list[str] | None:
        names = sorted({name for layer in layers for name in layer})
        if not all(
            name.isidentifier() and name not in self._UNBINDABLE and not name.startswith("__cert_batch")
            for name in names
        ):
            return None
        bindings = ", ".join(f"{name}={self._ITEM}[{name!r}] if {name!r} in {self._ITEM} else {name}" for name in names)
        # No whitespace control: it would strip the separator and the template's own spaces.
        wrapper = (
            f"{{% for {self._ITEM} in {self._ITEMS} %}}{{% with {bindings} %}}{self._template}{{% endwith %}}"
            f"{self.SEPARATOR}{{% endfor %}}"
        )
        self._templar.available_variables = collections.ChainMap(
            {self._ITEMS: [self._layers(layer) for layer in layers]}, self._variables
        )
        try:
            rendered = self._templar.template(self._trusted(wrapper))
        except Exception:  # the per-certificate rendering reports it, naming the certificate
            return None
        if not isinstance(rendered, str):
            return None
        paths = str(rendered).split(self.SEPARATOR)
        if len(paths) != len(layers) + 1 or paths[-1] != "":
            return None
        return paths[:-1]

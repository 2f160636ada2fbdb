# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""`make docs`: the collection's rendered documentation, built with antsibull-docs and Sphinx, offline.

antsibull-docs renders every module, plugin and role of the collection from its DOCUMENTATION into RST
(`antsibull-docs sphinx-init` + `antsibull-docs collection`, as its generated build.sh does), and Sphinx
turns that into HTML in build/docs/html, strictly (`-W`: any warning fails the build).

The one thing that needs the network is intersphinx: references to ansible-core's own docs (a module's
`ansible.builtin.file` lookup, "common return values") are resolved through docs.ansible.com's
objects.inv. Offline, this script writes the inventory files that the generated conf.py falls back to
(`../ansible_devel.inv`, ...), holding exactly the labels the collection's pages refer to, with their
docs.ansible.com addresses; the links in the HTML are the real ones. A label this script does not know
fails the build, naming it: add it to KNOWN_ANSIBLE_LABELS.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
BIN_DIR = Path(sys.executable).parent
COLLECTION = "certautopilot.vault"
DOCSITE = REPO_ROOT / "build" / "docsite"
OUTPUT = REPO_ROOT / "build" / "docs"

# Labels of docs.ansible.com pages that are not a plugin of ansible.builtin, by address.
KNOWN_ANSIBLE_LABELS = {
    "common_return_values": "reference_appendices/common_return_values.html",
    "ansible_configuration_settings": "reference_appendices/config.html",
    "action_plugins": "plugins/action.html",
}
BUILTIN_PLUGIN_LABEL = re.compile(
    r"ansible_collections\.ansible\.builtin\.(?P<page>\w+?_\w+?)(?:__(?P<anchor>[\w/-]+))?"
)
# The other inventories conf.py lists; the collection's pages refer to none of them.
EMPTY_INVENTORIES = ("python2.inv", "python3.inv", "jinja2.inv")


def run(*command: str | Path, cwd: Path = REPO_ROOT) -> None:
    print("+", " ".join(str(part) for part in command), flush=True)
    subprocess.run([str(part) for part in command], cwd=cwd, check=True)  # noqa: S603


def external_labels(rst_dir: Path) -> set[str]:
    """Labels that the generated pages refer to (:ref:) but do not define themselves."""
    referenced: set[str] = set()
    defined: set[str] = set()
    for page in rst_dir.rglob("*.rst"):
        text = page.read_text(encoding="utf-8")
        referenced |= {match.group(1) for match in re.finditer(r":ref:`(?:[^`<]*<)?([^`<>]+)>?`", text)}
        # :ansopt:/:ansretval: of another collection's plugin (the sphinx extension makes our own labels).
        for match in re.finditer(r":ans(opt|retval):`ansible\.builtin\.(\w+)#(\w+):([^`=]+)(?:=[^`]*)?`", text):
            kind = "parameter" if match.group(1) == "opt" else "return"
            anchor = match.group(4).replace(".", "/")
            referenced.add(f"ansible_collections.ansible.builtin.{match.group(2)}_{match.group(3)}__{kind}-{anchor}")
        defined |= {match.group(1) for match in re.finditer(r"^\.\. _([^:\n]+):", text, re.MULTILINE)}
    return referenced - defined


def address_of(label: str) -> str:
    if label in KNOWN_ANSIBLE_LABELS:
        return KNOWN_ANSIBLE_LABELS[label]
    match = BUILTIN_PLUGIN_LABEL.fullmatch(label)
    if not match:
        raise SystemExit(
            f"the docs refer to {label!r}, which is not in this collection and not an ansible.builtin plugin: "
            "add its docs.ansible.com address to KNOWN_ANSIBLE_LABELS in scripts/build_docs.py"
        )
    anchor = f"#{match.group('anchor')}" if match.group("anchor") else ""
    return f"collections/ansible/builtin/{match.group('page')}.html{anchor}"


def write_inventory(path: Path, labels: dict[str, str]) -> None:
    """A Sphinx objects.inv (version 2) with one std:label entry per label."""
    lines = "".join(f"{label} std:label -1 {address} -\n" for label, address in sorted(labels.items()))
    header = "# Sphinx inventory version 2\n# Project: Ansible\n# Version: devel\n"
    header += "# The remainder of this file is compressed using zlib.\n"
    path.write_bytes(header.encode("ascii") + zlib.compress(lines.encode("utf-8")))


def main() -> int:
    shutil.rmtree(DOCSITE, ignore_errors=True)
    shutil.rmtree(OUTPUT, ignore_errors=True)
    DOCSITE.mkdir(parents=True)
    antsibull_docs = BIN_DIR / "antsibull-docs"
    run(antsibull_docs, "sphinx-init", "--use-current", "--fail-on-error", "--dest-dir", DOCSITE, COLLECTION)
    rst_dir = DOCSITE / "rst"
    rst_dir.chmod(0o755)  # antsibull-docs wants the directory writable by itself only
    run(
        antsibull_docs,
        "--config-file",
        DOCSITE / "antsibull-docs.cfg",
        "collection",
        "--use-current",
        "--fail-on-error",
        "--cleanup",
        "everything",
        "--dest-dir",
        rst_dir,
        COLLECTION,
    )
    labels = {label: address_of(label) for label in external_labels(rst_dir)}
    write_inventory(DOCSITE / "ansible_devel.inv", labels)
    for name in EMPTY_INVENTORIES:
        write_inventory(DOCSITE / name, {})
    print(f"offline intersphinx inventory: {len(labels)} docs.ansible.com label(s)", flush=True)
    with (DOCSITE / "conf.py").open("a", encoding="utf-8") as conf:
        conf.write(
            "\n# scripts/build_docs.py: offline, give up on docs.ansible.com quickly.\nintersphinx_timeout = 5\n"
        )
    # Offline, fetching the real inventories fails fast and Sphinx takes the local fallbacks above.
    run(
        BIN_DIR / "sphinx-build",
        "-M",
        "html",
        rst_dir,
        OUTPUT,
        "-c",
        DOCSITE,
        "-W",
        "--keep-going",
        "-q",
    )
    print(f"rendered docs: {OUTPUT / 'html' / 'index.html'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

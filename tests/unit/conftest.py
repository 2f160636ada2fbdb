# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit test setup: make the collection importable as ``ansible_collections.certautopilot.vault``.

Runs at conftest import, before any test module is collected, so test modules can import the
collection's code at their top. ``tests/support`` (the ``pki`` certificate factory) goes on the
path too.
"""

from __future__ import annotations

import atexit
import pathlib
import shutil
import sys
import tempfile
import typing as t

import pytest

if t.TYPE_CHECKING:
    import pki

COLLECTION_ROOT = pathlib.Path(__file__).resolve().parents[2]
NAMESPACE, NAME = "certautopilot", "vault"


def _collections_path() -> pathlib.Path:
    """The directory that holds ``ansible_collections``.

    Under ansible-test the collection already sits at ``.../ansible_collections/certautopilot/vault``;
    elsewhere (a plain clone) a temporary tree with a symlink is built once per session.
    """
    if COLLECTION_ROOT.parent.name == NAMESPACE and COLLECTION_ROOT.parent.parent.name == "ansible_collections":
        return COLLECTION_ROOT.parents[2]
    root = pathlib.Path(tempfile.mkdtemp(prefix="certautopilot-unit-"))
    namespace_dir = root / "ansible_collections" / NAMESPACE
    namespace_dir.mkdir(parents=True)
    (namespace_dir / NAME).symlink_to(COLLECTION_ROOT, target_is_directory=True)
    # rmtree removes the symlink, never what it points to.
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return root


def _prepend(path: pathlib.Path) -> None:
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))


if "ansible_collections.certautopilot.vault" not in sys.modules:
    _prepend(_collections_path())
_prepend(COLLECTION_ROOT / "tests" / "support")


@pytest.fixture(scope="session")
def ec_chain() -> pki.Chain:
    """Root -> intermediate -> www.example.com, EC P-256."""
    import pki  # importable only once the path setup above has run

    return pki.make_chain("www.example.com", sans=("www.example.com", "example.com"))


@pytest.fixture(scope="session")
def rsa_chain() -> pki.Chain:
    """Root -> intermediate -> rsa.example.com, RSA 2048."""
    import pki

    return pki.make_chain("rsa.example.com", key_type="rsa")

# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The secret_paths filter answers from the layouts' one list of what each layout writes."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.certautopilot.vault.plugins.filter.secret_paths import secret_paths
from ansible_collections.certautopilot.vault.plugins.module_utils import _layouts


def test_a_one_secret_layout_keeps_each_path():
    assert secret_paths(["certs/a", "certs/b"], "default") == ["certs/a", "certs/b"]
    assert secret_paths(["certs/a"], "haproxy", include_private_key=False) == ["certs/a"]


def test_acme_sh_gives_its_secrets_below_each_path_and_no_key_secret_without_the_key():
    with_key = secret_paths(["certs/a"], "acme_sh")
    without_key = secret_paths(["certs/a"], "acme_sh", include_private_key=False)

    assert with_key == [f"certs/a/{name}" for name, _field in _layouts.ACME_SH_SECRETS]
    assert len(with_key) == 4
    assert without_key == [path for path in with_key if not path.endswith("cert.key")]


@pytest.mark.parametrize(("paths", "layout"), [("certs/a", "default"), ([1], "default"), (["certs/a"], "zip")])
def test_what_is_no_list_of_paths_or_no_layout_is_refused(paths, layout):
    with pytest.raises(AnsibleFilterError, match="secret_paths"):
        secret_paths(paths, layout)

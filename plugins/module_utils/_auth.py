# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Auth methods behind one registry. Private to the collection.

A new method is one class here (NAME, OPTIONS, validate(), login()) and one
entry in AUTH_METHODS.
"""

from __future__ import annotations

import re
import typing as t

from ansible_collections.certautopilot.vault.plugins.module_utils._client import VaultClient, header_value_problem
from ansible_collections.certautopilot.vault.plugins.module_utils._errors import VaultCertError

DEFAULT_JWT_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/token"
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+={0,2}")
# A JWT is a few KiB; a file larger than this is something else, and is not read whole.
JWT_FILE_MAX_BYTES = 64 * 1024


class AuthMethod:
    """Base class: ``validate`` checks options without the network, ``login`` returns a token."""

    NAME = ""
    # Options this method reads; used for the "not used by this method" check.
    OPTIONS: tuple[str, ...] = ()
    # True when the token comes from a login of ours, so the module may revoke it.
    OBTAINS_TOKEN = True

    def __init__(self, params: t.Mapping[str, t.Any]) -> None:
        self.params = params
        self.mount = params.get("auth_mount_point") or self.NAME
        self.namespace = params.get("auth_namespace") or params.get("namespace") or None

    def validate(self) -> None:
        """Raise VaultCertError for missing options; never touches the network."""

    def login(self, client: VaultClient) -> None:
        raise NotImplementedError

    def _require(self, *names: str) -> None:
        missing = [name for name in names if not self.params.get(name)]
        if missing:
            others = ", ".join(name for name in LOGIN_METHODS if name != self.NAME)
            raise VaultCertError(
                f"auth_method {self.NAME} needs {', '.join(missing)}; "
                f"auth_method (or VAULT_AUTH_METHOD) chooses another login: {others}"
            )

    def _log_in(self, client: VaultClient, payload: dict) -> None:
        client.login(method=self.NAME, mount=self.mount, payload=payload, namespace=self.namespace)


class AppRoleAuth(AuthMethod):
    NAME = "approle"
    OPTIONS = ("role_id", "secret_id")

    def validate(self) -> None:
        self._require("role_id", "secret_id")

    def login(self, client: VaultClient) -> None:
        client.remember_secret(self.params["secret_id"])
        self._log_in(client, {"role_id": self.params["role_id"], "secret_id": self.params["secret_id"]})


class JwtAuth(AuthMethod):
    NAME = "jwt"
    OPTIONS = ("jwt", "jwt_file", "role")

    def validate(self) -> None:
        if self.params.get("jwt") and self.params.get("jwt_file"):
            raise VaultCertError("auth_method jwt takes jwt or jwt_file, not both")

    def _read_jwt(self) -> str:
        if self.params.get("jwt"):
            return self.params["jwt"].strip()
        return _jwt_from_file(self.params.get("jwt_file") or DEFAULT_JWT_FILE)

    def login(self, client: VaultClient) -> None:
        jwt = self._read_jwt()
        client.remember_secret(jwt)
        if not _looks_like_jwt(jwt):
            # Whatever the file holds (a key, say) is not sent to the server; nor shown.
            jwt_file = self.params.get("jwt_file") or DEFAULT_JWT_FILE
            source = "jwt" if self.params.get("jwt") else _named_jwt_file(jwt_file)
            raise VaultCertError(
                f"auth_method jwt: {source} does not hold a JWT (three base64url parts joined by dots)"
            )
        payload = {"jwt": jwt}
        if self.params.get("role"):
            payload["role"] = self.params["role"]
        self._log_in(client, payload)


class CertAuth(AuthMethod):
    NAME = "cert"
    OPTIONS = ("role",)

    def validate(self) -> None:
        if not (self.params.get("client_cert") and self.params.get("client_key")):
            raise VaultCertError("auth_method cert needs client_cert and client_key (the TLS client certificate)")

    def login(self, client: VaultClient) -> None:
        payload = {"name": self.params["role"]} if self.params.get("role") else {}
        self._log_in(client, payload)


class TokenAuth(AuthMethod):
    NAME = "token"
    OPTIONS = ("token",)
    # A token we were given belongs to the caller: never revoke it.
    OBTAINS_TOKEN = False

    def validate(self) -> None:
        self._require("token")
        if header_value_problem(self.params["token"]):
            raise VaultCertError("invalid token: it holds whitespace, a line break or a control character")

    def login(self, client: VaultClient) -> None:
        client.set_token(self.params["token"])
        # In the namespace the token is used in (the run's namespace): auth_namespace is where a login goes, and a
        # token has none - VAULT_AUTH_NAMESPACE set for other tasks' logins must not fail the run or see the token.
        check_token_known(client)


# How Vault and OpenBao answer a token they do not know: a bare "permission denied", before any policy is
# looked at. A known token that its policies deny gets the policy check's "1 error occurred: ..." form.
_UNKNOWN_TOKEN_ERRORS = (["permission denied"], ["invalid token"])


def check_token_known(client: VaultClient) -> None:
    """Refuse a token the server does not know (wrong, expired, revoked) before anything else blames a mount.

    ``auth/token/lookup-self`` is allowed to every token by the default policy; a token without it (created
    with no_default_policy) is known all the same, and goes on.
    """
    reply = client.request("GET", "auth/token/lookup-self", accept=(403,))
    if reply.status == 403 and reply.body.get("errors") in _UNKNOWN_TOKEN_ERRORS:
        raise VaultCertError(
            "token not accepted: the server does not know it (auth/token/lookup-self refused it: it is wrong, "
            "expired or revoked); give a valid token in token or VAULT_TOKEN"
        )


class NoAuth(AuthMethod):
    NAME = "none"
    OBTAINS_TOKEN = False

    def login(self, client: VaultClient) -> None:
        """Unauthenticated: only endpoints like sys/health answer."""


def _named_jwt_file(jwt_file: str) -> str:
    """The file for a message: the option's name; the path only when it is the default, never a user's value."""
    return f"jwt_file {DEFAULT_JWT_FILE!r} (the default)" if jwt_file == DEFAULT_JWT_FILE else "jwt_file"


def _jwt_from_file(jwt_file: str) -> str:
    """The text of ``jwt_file``, stripped. A file over JWT_FILE_MAX_BYTES or not UTF-8 is refused naming the
    file, never quoting what it holds (a key, say)."""
    try:
        with open(jwt_file, "rb") as handle:
            content = handle.read(JWT_FILE_MAX_BYTES + 1)
    except OSError as exc:
        raise VaultCertError(f"auth_method jwt: cannot read {_named_jwt_file(jwt_file)}: {exc.strerror}") from None
    if len(content) > JWT_FILE_MAX_BYTES:
        raise VaultCertError(
            f"auth_method jwt: {_named_jwt_file(jwt_file)} does not hold a JWT: it is larger than "
            f"{JWT_FILE_MAX_BYTES // 1024} KiB, which no JWT is"
        )
    try:
        return content.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise VaultCertError(
            f"auth_method jwt: {_named_jwt_file(jwt_file)} does not hold a JWT: it is not UTF-8 text"
        ) from None


def _looks_like_jwt(text: str) -> bool:
    parts = text.split(".")
    return len(parts) == 3 and all(part and _BASE64URL.fullmatch(part) for part in parts[:2])


AUTH_METHODS: dict[str, type[AuthMethod]] = {
    method.NAME: method for method in (AppRoleAuth, JwtAuth, CertAuth, TokenAuth, NoAuth)
}


LOGIN_METHODS = ("approle", "jwt", "cert", "token")


# Credentials of a login other than the token's. Given beside a token - even empty, as a survey field left blank or
# an unset variable renders them - they leave the choice to auth_method: a VAULT_TOKEN in the host's environment
# (an operator's, a CI job's) never stands in for the login a task asked for.
OTHER_LOGIN_CREDENTIALS = ("role_id", "secret_id", "jwt", "jwt_file")


def implied_auth_method(params: t.Mapping[str, t.Any]) -> str:
    """The method when neither auth_method nor VAULT_AUTH_METHOD names one.

    A token given (``token`` or VAULT_TOKEN) with no credential of another login means token auth, as for
    the bao and vault CLIs; anything else means AppRole.
    """
    if params.get("token") and all(params.get(name) is None for name in OTHER_LOGIN_CREDENTIALS):
        return TokenAuth.NAME
    return AppRoleAuth.NAME


def select_auth_method(params: t.Mapping[str, t.Any]) -> AuthMethod:
    """The configured (or implied) method, validated (no network)."""
    name = params.get("auth_method") or implied_auth_method(params)
    try:
        method = AUTH_METHODS[name](params)
    except KeyError:
        raise VaultCertError(f"unknown auth_method; choose one of {', '.join(AUTH_METHODS)}") from None
    method.validate()
    return method

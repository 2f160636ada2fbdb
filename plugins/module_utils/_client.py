# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Vault HTTP client: connection settings, retry policy, error translation.

Private to the collection. This is the only file that talks HTTP and the only
place where hvac/requests exceptions become VaultCertError.
"""

from __future__ import annotations

import contextlib
import os
import random
import tempfile
import time
import typing as t
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit

from ansible_collections.certautopilot.vault.plugins.module_utils._errors import VaultCertError

try:
    import hvac
    import requests
    from urllib3.exceptions import ConnectTimeoutError, InsecureRequestWarning, NewConnectionError
except ImportError as exc:  # pragma: no cover - reported by the module as missing_required_lib
    HAS_HVAC = False
    HVAC_IMPORT_ERROR: Exception | None = exc
else:
    HAS_HVAC = True
    HVAC_IMPORT_ERROR = None

# Statuses that mean "not now" rather than "no": a sealed or standby node
# (503), a rate limit (429), a read-after-write miss on a performance standby
# (412) and transient server or proxy failures (500, 502).
RETRYABLE_STATUS = frozenset({412, 429, 500, 502, 503})
# A write answered with one of these may or may not have been applied.
AMBIGUOUS_STATUS = frozenset({500, 502})
FIRST_WAIT = 0.5
MAX_WAIT = 8.0
NAMESPACE_HINT = "namespaces need Vault Enterprise or OpenBao 2.3+"

IDEMPOTENT = "idempotent"
WRITE = "write"
LOGIN = "login"
HEALTH = "health"

_USE_DEFAULT = object()


class OutcomeUnknown(VaultCertError):
    """A write was sent but no answer says whether it was applied.

    The KV layer reacts by re-reading before deciding again, so a write is
    never applied twice.
    """


class CasConflict(VaultCertError):
    """Someone else wrote the secret between our read and our write."""


@dataclass(frozen=True)
class ConnectionSettings:
    url: str
    namespace: str | None = None
    ca_cert: str | None = None
    validate_certs: bool = True
    client_cert: str | None = None
    client_key: str | None = None
    timeout: int = 30
    retries: int = 5

    @classmethod
    def from_params(cls, params: t.Mapping[str, t.Any]) -> ConnectionSettings:
        validate_certs = params.get("validate_certs")
        if validate_certs is None:
            validate_certs = not _env_flag("VAULT_SKIP_VERIFY")
        url = (params.get("url") or "").rstrip("/")
        if not url:
            raise VaultCertError("url is required: set the url option or VAULT_ADDR")
        _check_url(url)
        if params.get("timeout", 30) <= 0:
            raise VaultCertError("timeout must be a positive number of seconds")
        if params.get("retries", 5) < 0:
            raise VaultCertError("retries must not be negative")
        return cls(
            url=url,
            namespace=params.get("namespace") or None,
            ca_cert=params.get("ca_cert") or None,
            validate_certs=validate_certs,
            client_cert=params.get("client_cert") or None,
            client_key=params.get("client_key") or None,
            timeout=params.get("timeout", 30),
            retries=params.get("retries", 5),
        )


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict = field(default_factory=dict)

    @property
    def data(self) -> dict:
        return self.body.get("data") or {}


def _check_url(url: str) -> None:
    """Refuse an address no retry could ever reach, before the first request."""
    try:
        parts = urlsplit(url)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname) and (parts.port or 0) >= 0
    except ValueError:  # a port that is not a number or out of range
        valid = False
    if not valid:
        raise VaultCertError(
            f"url {url!r} is not a Vault address: it needs http:// or https://, a host and optionally a port, "
            "e.g. https://vault.example.com:8200"
        )


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on", "t", "y")


def backoff_waits(retries: int, *, jitter: t.Callable[[], float] = random.random) -> list[float]:
    """Waits before each retry: 0.5 s doubling to at most 8 s, each +/-20 %."""
    return [min(MAX_WAIT, FIRST_WAIT * 2**attempt) * (0.8 + 0.4 * jitter()) for attempt in range(retries)]


def api_path(*segments: str) -> str:
    """Join path pieces into a request path, each piece URL-quoted but its slashes kept."""
    return "/".join(quote(segment.strip("/"), safe="/") for segment in segments if segment)


def _never_sent(exc: Exception) -> bool:
    """True when the connection failed before the request left, so resending is safe."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, (NewConnectionError, ConnectTimeoutError))


def _server_errors(response: t.Any) -> str:
    try:
        errors = response.json().get("errors") or []
    except ValueError:
        errors = []
    return "; ".join(str(error) for error in errors) or f"HTTP {response.status_code}"


class VaultClient:
    """One HTTP connection to Vault, reused for every request of a module run."""

    def __init__(self, settings: ConnectionSettings, *, sleep: t.Callable[[float], None] = time.sleep) -> None:
        self.settings = settings
        self._sleep = sleep
        self._ca_file: str | None = None
        self._secrets: list[str] = []
        self.token: str | None = None
        # When the token from our login runs out (monotonic clock), if it has a TTL.
        self._token_expires: float | None = None
        self._token_ttl = 0
        verify = self._verify_setting()
        cert = (settings.client_cert, settings.client_key) if settings.client_cert else None
        self._adapter = hvac.adapters.RawAdapter(
            base_uri=settings.url, cert=cert, verify=verify, timeout=settings.timeout
        )

    def _verify_setting(self) -> bool | str:
        if not self.settings.validate_certs:
            import warnings

            warnings.simplefilter("ignore", InsecureRequestWarning)
            return False
        ca_cert = self.settings.ca_cert
        if not ca_cert:
            return True
        if "-----BEGIN" in ca_cert:
            # requests wants a file; an explicit CA must win over REQUESTS_CA_BUNDLE.
            handle, self._ca_file = tempfile.mkstemp(prefix="certautopilot-ca-", suffix=".pem")
            with os.fdopen(handle, "w") as ca_file:
                ca_file.write(ca_cert)
            return self._ca_file
        if not os.path.isfile(ca_cert):
            raise VaultCertError(f"ca_cert {ca_cert!r} is neither a readable file nor inline PEM text")
        return ca_cert

    def retry_waits(self) -> list[float]:
        return backoff_waits(self.settings.retries)

    def pause(self, seconds: float) -> None:
        self._sleep(seconds)

    def close(self) -> None:
        self._adapter.close()
        if self._ca_file:
            os.unlink(self._ca_file)
            self._ca_file = None

    def remember_secret(self, value: str | None) -> None:
        """Values that must never appear in a message, whatever the server echoes."""
        if value:
            self._secrets.append(value)

    def set_token(self, token: str) -> None:
        self.remember_secret(token)
        self.token = token
        self._adapter.token = token

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "<redacted>")
        return text

    def request(
        self,
        method: str,
        path: str,
        *,
        json: dict | None = None,
        kind: str = IDEMPOTENT,
        needs: t.Sequence[str] = (),
        accept: t.Collection[int] = (),
        namespace: t.Any = _USE_DEFAULT,
        auth_label: str = "",
    ) -> Reply:
        """Send one API request with the retry policy of its kind.

        ``path`` is the API path without ``/v1/``. ``needs`` names the
        capabilities a 403 should report. Statuses in ``accept`` are returned
        instead of raised.
        """
        namespace = self.settings.namespace if namespace is _USE_DEFAULT else namespace
        headers = {"X-Vault-Namespace": namespace} if namespace else {}
        waits = self.retry_waits()
        for attempt in range(len(waits) + 1):
            retry_error = self._attempt(method, path, json, headers, kind, accept)
            if isinstance(retry_error, Reply):
                return retry_error
            if isinstance(retry_error, VaultCertError):
                if attempt == len(waits):
                    raise VaultCertError(f"{retry_error} (gave up after {_attempts(attempt + 1)})")
                self._sleep(waits[attempt])
                continue
            self._raise_for_status(retry_error, method, path, kind, needs, namespace, auth_label)
        raise AssertionError("unreachable")  # pragma: no cover

    def _attempt(self, method, path, json, headers, kind, accept):
        """One try. Returns a Reply, a retryable VaultCertError, or a final response to translate."""
        try:
            response = self._adapter.request(
                method, "/v1/" + path, json=json, headers=dict(headers), raise_exception=False
            )
        except requests.exceptions.SSLError as exc:
            reason = _short_tls_reason(exc)
            hint = "Set ca_cert (or VAULT_CACERT) to the CA that signed the server's certificate"
            if "mismatch" in reason.lower():
                # A trusted certificate for another name: no ca_cert fixes that, the url does.
                hint = (
                    "Use a url whose host the server's certificate names (its subject alternative names); "
                    "ca_cert (or VAULT_CACERT) only chooses the CA to trust"
                )
            raise VaultCertError(f"TLS error talking to {self.settings.url}: {reason}. {hint}") from None
        except requests.exceptions.RequestException as exc:
            error = self._transport_error(exc, method, path)
            if _never_sent(exc) and not self._redirected(exc):
                return error
            if kind == LOGIN:
                raise error from None
            if kind == WRITE:
                raise OutcomeUnknown(str(error)) from None
            return error
        status = response.status_code
        if kind == WRITE and response.history and (status == 400 or status in RETRYABLE_STATUS):
            # A standby redirects a write after forwarding it to the active
            # node failed, maybe once the active node had applied it. The
            # resent write then fails check-and-set against our own version,
            # or meets an election: neither answer says whether it landed.
            raise OutcomeUnknown(
                f"{method} {path} was redirected by {self.settings.url} (a standby whose forwarding failed) "
                f"and answered HTTP {status}: {self.redact(_server_errors(response))}"
            )
        if status == 404 and "namespace not found" in _server_errors(response):
            # Not "no such secret": the whole namespace is missing, whatever the caller accepts.
            return response
        if status < 400 or status in accept:
            return Reply(status, _json_body(response))
        retryable = status in RETRYABLE_STATUS and kind != LOGIN and not (kind == HEALTH and status == 429)
        if not retryable:
            return response
        message = f"{method} {path} answered HTTP {status}: {self.redact(_server_errors(response))}"
        if kind == WRITE and status in AMBIGUOUS_STATUS:
            raise OutcomeUnknown(message)
        return VaultCertError(message)

    def _redirected(self, exc: Exception) -> bool:
        """True when the failed request followed a redirect: the server that redirected it had the request."""
        failed = getattr(getattr(exc, "request", None), "url", None)
        return bool(failed) and urlsplit(failed).netloc != urlsplit(self.settings.url).netloc

    def _transport_error(self, exc: Exception, method: str, path: str) -> VaultCertError:
        url, redirect = self.settings.url, ""
        if self._redirected(exc):
            failed = urlsplit(exc.request.url)
            # A standby answers a write it cannot forward with a redirect to
            # the active node; when that node is down, say so, not that the
            # standby (which answered) is unreachable.
            url = f"{failed.scheme}://{failed.netloc}"
            redirect = f" (redirected there by {self.settings.url}, as a standby does to reach the active node)"
        if isinstance(exc, requests.exceptions.Timeout):
            return VaultCertError(
                f"{url} timed out: no answer to {method} {path} within {self.settings.timeout}s (timeout){redirect}"
            )
        return VaultCertError(f"{url} unreachable: {type(exc).__name__} on {method} {path}{redirect}")

    def _raise_for_status(self, response, method, path, kind, needs, namespace, auth_label) -> t.NoReturn:
        status = response.status_code
        errors = self.redact(_server_errors(response))
        if "namespace not found" in errors:
            raise VaultCertError(f"namespace not found: {namespace!r} ({NAMESPACE_HINT})")
        if kind == LOGIN:
            raise VaultCertError(f"login failed: {auth_label}: {errors}")
        if status == 403 and self._token_expired():
            # Vault answers an expired token with a bare "permission denied", like a missing grant.
            raise VaultCertError(
                f"permission denied on {path}: the token from the login expired (its TTL was {self._token_ttl}s); "
                "raise the token_ttl of the role the module logs in with, or deliver fewer certificates per run: "
                f"{errors}"
            )
        if status == 403:
            wanted = " and ".join(repr(cap) for cap in needs) or "a"
            raise VaultCertError(
                f"permission denied on {path}: the token needs the {wanted} capability "
                f"(check with: bao token capabilities {path}): {errors}"
            )
        raise VaultCertError(f"{method} {path} failed with HTTP {status}: {errors}")

    def login(self, *, method: str, mount: str, payload: dict, namespace: str | None) -> str:
        """Log in once; the answer is never re-sent (a secret_id may have limited uses)."""
        location = f"auth method {method} at mount point {mount!r}"
        if namespace:
            location += f" in namespace {namespace!r}"
        # Taken before the request, so the estimated expiry is never later than the server's.
        sent_at = time.monotonic()
        reply = self.request(
            "POST",
            api_path("auth", mount, "login"),
            json=payload,
            kind=LOGIN,
            namespace=namespace,
            auth_label=location,
        )
        auth = reply.body.get("auth") or {}
        token = auth.get("client_token")
        if not token:
            raise VaultCertError(f"login failed: {location}: the answer held no client token")
        self.set_token(token)
        ttl = auth.get("lease_duration")
        if isinstance(ttl, int) and ttl > 0:
            self._token_ttl = ttl
            self._token_expires = sent_at + ttl
        return token

    def _token_expired(self) -> bool:
        return self._token_expires is not None and time.monotonic() >= self._token_expires

    def revoke_self(self, *, namespace: str | None) -> None:
        """Best effort: a failure to revoke never fails the run; the token expires anyway."""
        headers = {"X-Vault-Namespace": namespace} if namespace else {}
        with contextlib.suppress(requests.exceptions.RequestException):
            self._adapter.request("POST", "/v1/auth/token/revoke-self", headers=headers, raise_exception=False)


def _attempts(count: int) -> str:
    return "1 attempt" if count == 1 else f"{count} attempts"


def _json_body(response: t.Any) -> dict:
    if response.status_code == 204 or not response.content:
        return {}
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _short_tls_reason(exc: Exception) -> str:
    text = str(exc)
    for reason in ("certificate verify failed", "hostname mismatch", "wrong version number", "unknown ca"):
        if reason in text.lower():
            start = text.lower().index(reason)
            found = text[start:].split("(", 1)[0].split("')", 1)[0].rstrip(' .")')
            # Keep a quoted host name whole ("not valid for '127.0.0.1'"), drop a stray closing quote.
            return found if found.count("'") % 2 == 0 else found.rstrip("'")
    return "TLS handshake failed"

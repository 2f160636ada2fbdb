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
import ssl
import tempfile
import threading
import time
import typing as t
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit

from ansible_collections.certautopilot.vault.plugins.module_utils._errors import (
    OutcomeUnknown,
    PermissionDenied,
    VaultCertError,
)
from ansible_collections.certautopilot.vault.plugins.module_utils._pem import NOT_SHOWN, shown

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
# (412) and transient server or proxy failures (500, 502, 504).
RETRYABLE_STATUS = frozenset({412, 429, 500, 502, 503, 504})
# Answers that speak for the server, not for one request (rate limit, standby, sealed): every request
# of the run backs off, not only the one that got it.
POOL_BACKOFF_STATUS = frozenset({429, 503})
# Vault's own words for "this node did not process the request": a write
# answered with them may be sent again. Any other failed answer to a write
# (a proxy's 502/504, a 500, a lost connection) leaves its fate unknown.
NOT_PROCESSED_ERRORS = ("vault is sealed", "local node not active", "node not active")
FIRST_WAIT = 0.5
MAX_WAIT = 8.0
# Eight retries wait about 40 s in all: a 3-node raft cluster with OpenBao's
# default timing took 11 to 21 s here to elect a new leader.
DEFAULT_RETRIES = 8
DEFAULT_TIMEOUT = 30
NAMESPACE_HINT = "namespaces need Vault Enterprise or OpenBao 2.3+"

IDEMPOTENT = "idempotent"
WRITE = "write"
# A request that destroys data (a delete, a destroy, a purge and its guard): like a WRITE, but not even Vault's
# own "not processed" answer sends it again - a proxy may have forwarded it first - and its caller reads first.
DESTRUCTIVE = "destructive"
_WRITE_KINDS = frozenset({WRITE, DESTRUCTIVE})
LOGIN = "login"

_USE_DEFAULT = object()


@dataclass(frozen=True)
class ConnectionSettings:
    url: str
    namespace: str | None = None
    ca_cert: str | None = None
    validate_certs: bool = True
    client_cert: str | None = None
    client_key: str | None = None
    timeout: int = DEFAULT_TIMEOUT
    retries: int = DEFAULT_RETRIES

    @classmethod
    def from_params(cls, params: t.Mapping[str, t.Any]) -> ConnectionSettings:
        validate_certs = params.get("validate_certs")
        if validate_certs is None:
            validate_certs = not _env_flag("VAULT_SKIP_VERIFY")
        url = (params.get("url") or "").rstrip("/")
        if not url:
            raise VaultCertError("url is required: set the url option or VAULT_ADDR")
        _check_url(url)
        timeout = params.get("timeout", DEFAULT_TIMEOUT)
        retries = params.get("retries", DEFAULT_RETRIES)
        if timeout <= 0:
            raise VaultCertError("timeout must be a positive number of seconds")
        if retries < 0:
            raise VaultCertError("retries must not be negative")
        for option in ("namespace", "auth_namespace"):
            problem = header_value_problem(params.get(option) or "")
            if problem:
                raise VaultCertError(f"invalid {option} {params[option]!r}: {problem}")
        if params.get("client_key") and not params.get("client_cert"):
            raise VaultCertError("client_key is set without client_cert: set both, or client_cert alone")
        return cls(
            url=url,
            namespace=params.get("namespace") or None,
            ca_cert=params.get("ca_cert") or None,
            validate_certs=validate_certs,
            client_cert=params.get("client_cert") or None,
            client_key=params.get("client_key") or None,
            timeout=timeout,
            retries=retries,
        )


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict = field(default_factory=dict)

    @property
    def data(self) -> dict:
        return self.body.get("data") or {}


def _check_url(url: str) -> None:
    """Refuse an address no retry could ever reach, or one that carries credentials, before the first request."""
    netloc = url.split("://", 1)[-1].split("/", 1)[0]
    if "@" in netloc:
        # Shown without what stands before the @: it is a user name and password.
        raise VaultCertError(
            f"url {_without_userinfo(url)!r} must not hold credentials (user:password@ before the host): "
            "give them as auth options (token, role_id/secret_id, ...) instead"
        )
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


def _without_userinfo(url: str) -> str:
    scheme, separator, rest = url.rpartition("://")
    netloc, slash, path = rest.partition("/")
    return f"{scheme}{separator}{netloc.rpartition('@')[2]}{slash}{path}"


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


def header_value_problem(value: str) -> str:
    """Why ``value`` cannot travel in an HTTP header (a line break would split the request), or ""."""
    if any(char.isspace() or not char.isprintable() for char in value):
        return "it holds whitespace, a line break or a control character"
    return ""


def redirect_allowed(origin: str, target: str) -> bool:
    """A redirect is followed only to https, or to the very origin it came from.

    A standby redirects to the active node, another host: fine over verified
    TLS. A redirect to plain http elsewhere would carry the token and the
    request body (a private key) in clear to whoever answers there.
    """
    source, destination = urlsplit(origin), urlsplit(target)
    if destination.scheme == "https":
        return True
    return (destination.scheme, destination.netloc) == (source.scheme, source.netloc)


if HAS_HVAC:

    class _RedirectSafeSession(requests.Session):
        """A requests session that does not follow a redirect redirect_allowed() refuses; its 3xx is returned.

        It also reads the environment (proxies, NO_PROXY, REQUESTS_CA_BUNDLE for an unset ca_cert) once per
        host and settings, not for every request: requests reads all of os.environ each time, a tenth of a
        batch's time, while a run talks to one host (two when a standby redirects to the active node).
        """

        def __init__(self) -> None:
            super().__init__()
            self._environment: dict[tuple, dict] = {}

        def merge_environment_settings(self, url, proxies, stream, verify, cert):  # noqa: ANN001, ANN201 - requests' own signature
            parts = urlsplit(url)
            key = (parts.scheme, parts.netloc, repr(proxies), stream, repr(verify), repr(cert))
            if key not in self._environment:
                self._environment[key] = super().merge_environment_settings(url, proxies, stream, verify, cert)
            settings = dict(self._environment[key])
            settings["proxies"] = dict(settings["proxies"])
            return settings

        def get_redirect_target(self, resp: requests.Response) -> str | None:
            target = super().get_redirect_target(resp)
            if target and not redirect_allowed(resp.url, requests.compat.urljoin(resp.url, target)):
                return None
            return target


@dataclass(frozen=True)
class _Retry:
    """An attempt that failed in a way that may pass if tried again."""

    error: VaultCertError
    status: int | None = None


class VaultClient:
    """One HTTP connection to Vault, reused for every request of a module run."""

    def __init__(
        self, settings: ConnectionSettings, *, sleep: t.Callable[[float], None] = time.sleep, pool_size: int = 1
    ) -> None:
        self.settings = settings
        self._sleep = sleep
        # When the whole pool may send again after a 429/503 (monotonic clock), and what each thread waited for.
        self._resume_lock = threading.Lock()
        self._resume_at = 0.0
        self._waited = threading.local()
        self._temp_files: list[str] = []
        self._secrets: list[str] = []
        self.token: str | None = None
        # When the token from our login runs out (monotonic clock), if it has a TTL.
        self._token_expires: float | None = None
        self._token_ttl = 0
        try:
            verify = self._verify_setting()
            cert = self._client_certificate()
        except BaseException:
            self._remove_temp_files()
            raise
        session = _RedirectSafeSession()
        # hvac takes verify and cert from a session it is given, over its own arguments.
        session.verify, session.cert = verify, cert
        # One kept-alive connection per request in flight.
        pool = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=max(pool_size, 1))
        session.mount("https://", pool)
        session.mount("http://", pool)
        self._adapter = hvac.adapters.RawAdapter(
            base_uri=settings.url, cert=cert, verify=verify, timeout=settings.timeout, session=session
        )

    def _verify_setting(self) -> bool | str:
        if not self.settings.validate_certs:
            import warnings

            warnings.simplefilter("ignore", InsecureRequestWarning)
            return False
        if not self.settings.ca_cert:
            return True
        # A file path for requests: an explicit CA must win over REQUESTS_CA_BUNDLE.
        ca_file = self._pem_file(self.settings.ca_cert, option="ca_cert", secret=False)
        try:
            ssl.create_default_context(cafile=ca_file)
        except (ssl.SSLError, ValueError):
            raise VaultCertError("ca_cert holds no PEM CA certificate that TLS can load") from None
        return ca_file

    def _client_certificate(self) -> tuple[str, str] | str | None:
        """The TLS client certificate (and key) as files, checked to load before any connection."""
        if not self.settings.client_cert:
            return None
        cert_file = self._pem_file(self.settings.client_cert, option="client_cert", secret=False)
        key_file = None
        if self.settings.client_key:
            key_file = self._pem_file(self.settings.client_key, option="client_key", secret=True)
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(cert_file, key_file)
        except (ssl.SSLError, ValueError):
            # Never the values: client_key is a private key or the path to one.
            raise VaultCertError(
                "client_cert and client_key could not be loaded as a PEM certificate and its matching, "
                "unencrypted private key"
            ) from None
        return (cert_file, key_file) if key_file else cert_file

    def _pem_file(self, value: str, *, option: str, secret: bool) -> str:
        """A path for ``value``: inline PEM text goes into a 0600 file removed by close()."""
        if "-----BEGIN" in value:
            handle, name = tempfile.mkstemp(prefix=f"certautopilot-{option.replace('_', '-')}-", suffix=".pem")
            self._temp_files.append(name)
            with os.fdopen(handle, "w") as pem_file:
                pem_file.write(value)
            return name
        path = os.path.expanduser(value)
        if os.path.isfile(path) and os.access(path, os.R_OK):
            return path
        detail = "" if secret or shown(value) == NOT_SHOWN else f" {value!r}"
        raise VaultCertError(f"{option}{detail} is neither a readable file nor inline PEM text")

    def _remove_temp_files(self) -> None:
        for name in self._temp_files:
            with contextlib.suppress(OSError):
                os.unlink(name)
        self._temp_files = []

    def retry_waits(self) -> list[float]:
        return backoff_waits(self.settings.retries)

    def pause(self, seconds: float) -> None:
        self._sleep(seconds)

    def close(self) -> None:
        self._adapter.close()
        self._remove_temp_files()

    @property
    def secrets(self) -> tuple[str, ...]:
        """The secrets this client learned (issued token, JWT read from a file)."""
        return tuple(self._secrets)

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
        instead of raised. A ``WRITE`` is sent again only when the answer
        proves it was not processed; otherwise OutcomeUnknown is raised for the
        caller to resolve by reading. A ``DESTRUCTIVE`` request is never sent
        again here: every failed answer raises OutcomeUnknown.
        """
        namespace = self.settings.namespace if namespace is _USE_DEFAULT else namespace
        headers = {"X-Vault-Namespace": namespace} if namespace else {}
        waits = self.retry_waits()
        for attempt in range(len(waits) + 1):
            self._wait_for_pool()
            outcome = self._attempt(method, path, json, headers, kind, accept, needs, namespace, auth_label)
            if isinstance(outcome, Reply):
                return outcome
            if attempt == len(waits):
                raise VaultCertError(f"{outcome.error} (gave up after {_attempts(attempt + 1)})")
            self._back_off(waits[attempt], pool_wide=outcome.status in POOL_BACKOFF_STATUS)
        raise AssertionError("unreachable")  # pragma: no cover

    def _back_off(self, seconds: float, *, pool_wide: bool) -> None:
        if pool_wide:
            self._waited.until = self._hold_pool(seconds)
        self._sleep(seconds)

    def _hold_pool(self, seconds: float) -> float:
        """Keep every request of the run from being sent for ``seconds``; when the pool may send again."""
        with self._resume_lock:
            self._resume_at = max(self._resume_at, time.monotonic() + seconds)
            return self._resume_at

    def _wait_for_pool(self) -> None:
        """Hold this request while another request of the run backs off from a 429/503."""
        resume_at = self._resume_at
        if resume_at <= getattr(self._waited, "until", 0.0):
            return
        self._waited.until = resume_at
        delay = resume_at - time.monotonic()
        if delay > 0:
            self._sleep(delay)

    def _attempt(self, method, path, json, headers, kind, accept, needs, namespace, auth_label) -> Reply | _Retry:
        """One try: a Reply, a _Retry, or an exception that ends the request."""
        try:
            response = self._adapter.request(
                method, "/v1/" + path, json=json, headers=dict(headers), raise_exception=False
            )
        except requests.exceptions.SSLError as exc:
            raise self._tls_error(exc) from None
        except (requests.exceptions.InvalidHeader, requests.exceptions.InvalidURL) as exc:
            # Refused by requests before anything was sent; no retry changes that.
            raise VaultCertError(f"{method} {path} could not be sent: {type(exc).__name__}") from None
        except requests.exceptions.RequestException as exc:
            error = self._transport_error(exc, method, path)
            if _never_sent(exc) and not self._redirected(exc):
                return _Retry(error)
            if kind == LOGIN:
                raise error from None
            if kind in _WRITE_KINDS:
                raise OutcomeUnknown(str(error), answered=False) from None
            return _Retry(error)
        status = response.status_code
        errors = self.redact(_server_errors(response))
        if kind in _WRITE_KINDS and response.history and (status == 400 or status in RETRYABLE_STATUS):
            # A standby redirects a write after forwarding it to the active
            # node failed, maybe once the active node had applied it. The
            # resent write then fails check-and-set against our own version,
            # or meets an election: neither answer says whether it landed.
            raise OutcomeUnknown(
                f"{method} {path} was redirected by {self.settings.url} (a standby whose forwarding failed) "
                f"and answered HTTP {status}: {errors}",
                answered=False,
            )
        if 300 <= status < 400:
            # A redirect redirect_allowed() refused, or one past requests' limit: like a standby that
            # cannot reach the active node, it may pass once the cluster settles.
            target = _without_userinfo(response.headers.get("Location") or "")
            message = f"{method} {path} was redirected to {target!r}, which is not followed (only https is)"
            if kind == LOGIN:
                raise VaultCertError(f"login failed: {auth_label}: {message}")
            if kind in _WRITE_KINDS:
                raise OutcomeUnknown(message, answered=False)
            return _Retry(VaultCertError(message))
        if status == 404 and "namespace not found" in errors:
            # Not "no such secret": the whole namespace is missing, whatever the caller accepts.
            raise VaultCertError(f"namespace not found: {namespace!r} ({NAMESPACE_HINT})")
        if status < 400 or status in accept:
            return Reply(status, _json_body(response))
        if kind == LOGIN or (status not in RETRYABLE_STATUS and status < 500):
            self._raise_for_status(status, errors, method, path, kind, needs, auth_label)
        message = f"{method} {path} answered HTTP {status}: {errors}"
        if kind == DESTRUCTIVE or (kind == WRITE and not _proves_not_processed(status, errors)):
            if status in POOL_BACKOFF_STATUS:
                # The server asks every request to slow down, not only this write (resolved by reading back).
                self._hold_pool(FIRST_WAIT)
            # A gateway timeout answers while the server may still be working on the write.
            raise OutcomeUnknown(message, answered=status != 504)
        if status not in RETRYABLE_STATUS:
            self._raise_for_status(status, errors, method, path, kind, needs, auth_label)
        return _Retry(VaultCertError(message), status=status)

    def _tls_error(self, exc: Exception) -> VaultCertError:
        reason = _short_tls_reason(exc)
        hint = "Set ca_cert (or VAULT_CACERT) to the CA that signed the server's certificate"
        if "mismatch" in reason.lower():
            # A trusted certificate for another name: no ca_cert fixes that, the url does.
            hint = (
                "Use a url whose host the server's certificate names (its subject alternative names); "
                "ca_cert (or VAULT_CACERT) only chooses the CA to trust"
            )
        return VaultCertError(f"TLS error talking to {self.settings.url}: {reason}. {hint}")

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

    def _raise_for_status(self, status, errors, method, path, kind, needs, auth_label) -> t.NoReturn:
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
            raise PermissionDenied(
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


def _proves_not_processed(status: int, errors: str) -> bool:
    """True when Vault itself says the node did not process the request (sealed, not the active node)."""
    return status == 503 and any(words in errors.lower() for words in NOT_PROCESSED_ERRORS)


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

# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Vault HTTP client: connection settings, retry policy, error translation.

Private to the collection. This is the only file that talks HTTP and the only
place where hvac/requests exceptions become VaultCertError.

hvac stays, for its RawAdapter only (base URL, the token header, requests underneath): it is the library
every Vault module user already has on the hosts - community.hashi_vault requires it - so taking it costs
nobody an install, while dropping it would change the documented requirements of every module for the
twenty lines it saves. Everything above the adapter (retries, deadlines, redirects, size caps, the
consistency index) is ours, since hvac's own API classes decide none of it the way a write must.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import heapq
import itertools
import json
import os
import random
import re
import shutil
import socket
import ssl
import tempfile
import threading
import time
import typing as t
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit

from ansible_collections.certautopilot.vault.plugins.module_utils._consistency import ConsistencyIndex, not_caught_up
from ansible_collections.certautopilot.vault.plugins.module_utils._errors import (
    OutcomeUnknown,
    PermissionDenied,
    VaultCertError,
)

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
# A run's first request gives a refused connection this long (about 10 s) to go away: a node restarting in a
# failover listens again within it, while a wrong port or a stopped server is reported in seconds, not after
# the whole retry window. Once the server has answered, refusals get every retry (an election in progress).
FIRST_CONTACT_REFUSED_SECONDS = 10.0
# The most one answer may hold. Twice OpenBao's and Vault's default max_request_size (32 MiB), so any
# secret or list the server accepted fits; an answer past it is refused unread, not held in memory.
MAX_ANSWER_MIB = 64
MAX_ANSWER_BYTES = MAX_ANSWER_MIB * 1024 * 1024
ANSWER_CHUNK_BYTES = 64 * 1024
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
        check_url(url)
        timeout = params.get("timeout", DEFAULT_TIMEOUT)
        retries = params.get("retries", DEFAULT_RETRIES)
        if timeout <= 0:
            raise VaultCertError("timeout must be a positive number of seconds")
        if retries < 0:
            raise VaultCertError("retries must not be negative")
        for option in ("namespace", "auth_namespace"):
            problem = header_value_problem(params.get(option) or "")
            if problem:
                raise VaultCertError(f"invalid {option}: {problem}")
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

    def warnings(self) -> list[str]:
        """What the module warns about these settings: each weakens what protects the credentials in transit."""
        found = []
        if not self.validate_certs:
            found.append("validate_certs is false: the server's TLS certificate is not checked (bring-up only)")
        if urlsplit(self.url).scheme == "http":
            found.append(
                "url is plain http://: tokens, secret IDs, JWTs and private keys cross the network in clear; "
                "use https:// outside a test on loopback"
            )
        return found


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict = field(default_factory=dict)

    @property
    def data(self) -> dict:
        return self.body.get("data") or {}


def check_url(url: str) -> None:
    """Refuse an address no retry could ever reach, or one that carries credentials, before the first request.

    No refusal quotes the url: a refused one may hold a token or password (in a query, before an "@", or pasted
    into the wrong field), and VaultModule also masks it in ``invocation`` (see url_is_refused).
    """
    if "?" in url or "#" in url:
        # A query string is where a token or password would ride along.
        raise VaultCertError(
            "url must not hold a query string (?...) or a fragment (#...): give the server's address alone, "
            "e.g. https://vault.example.com:8200 (the url is not shown: it may carry a credential)"
        )
    # Anywhere after the scheme: a password may hold a "/", which ends the host part before its "@".
    if "@" in url.split("://", 1)[-1]:
        raise VaultCertError(
            "url must not hold credentials (user:password@ before the host): give them as auth options (token, "
            "role_id/secret_id, ...) instead (the url is not shown)"
        )
    try:
        parts = urlsplit(url)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname) and (parts.port or 0) >= 0
    except ValueError:  # a port that is not a number or out of range
        valid = False
    if not valid:
        raise VaultCertError(
            "url is not a Vault address: it needs http:// or https://, a host and optionally a port, "
            "e.g. https://vault.example.com:8200 (the url is not shown: it may carry a credential)"
        )


def url_is_refused(url: t.Any) -> bool:
    """Whether ConnectionSettings refuses ``url`` (an option's value, or VAULT_ADDR's) as check_url does."""
    if not isinstance(url, str) or not url.rstrip("/"):
        return False
    try:
        check_url(url.rstrip("/"))
    except VaultCertError:
        return True
    return False


def split_userinfo(url: str) -> tuple[str, str]:
    """A URL's ``user:password`` part (empty when it has none) and the URL without it; the one parse of both."""
    scheme, separator, rest = url.rpartition("://")
    netloc, slash, path = rest.partition("/")
    userinfo, _at, host = netloc.rpartition("@")
    return userinfo, f"{scheme}{separator}{host}{slash}{path}"


def _without_userinfo(url: str) -> str:
    return split_userinfo(url)[1]


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


_MULTIERROR = re.compile(r"\A\d+ errors? occurred:\s*\n\t\* (.*)\Z", re.DOTALL)
# Go's net/http answers a plain HTTP request on a TLS port with this text (HTTP 400, no JSON).
_PLAIN_REQUEST_TO_TLS_PORT = b"Client sent an HTTP request to an HTTPS server"


def _refused(exc: Exception) -> bool:
    """True when the connection was refused: nothing listened at the address."""
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    seen: BaseException | None = reason if isinstance(reason, BaseException) else None
    while seen is not None:
        if isinstance(seen, ConnectionRefusedError):
            return True
        seen = seen.__cause__ or seen.__context__
    return isinstance(reason, NewConnectionError) and "Connection refused" in str(reason)


def _server_errors(status: int, decoded: dict) -> str:
    # Vault's error list is shown as it is: its handlers name what they refused (a capability, a cas version, a
    # metadata limit, a login's role) and never echo a request body's values, which for a KV write hold a private
    # key; should one ever be echoed whole, it is a no_log value the module's answer masks.
    errors = decoded.get("errors") or []
    if not isinstance(errors, list):
        errors = [errors]
    return "; ".join(_plain_error(str(error)) for error in errors) or f"HTTP {status}"


# A value this short sent in a request (an owner, a cas number) may be a word of the server's own error.
SHORTEST_ECHO_MASKED = 8


def _without_sent_values(decoded: dict, sent: t.Any) -> dict:
    """An error answer whose error list holds no string value of the request it answers, as sent or JSON-escaped,
    nor any of their lines: a gateway's error that echoes a batch write's body holds each private key only as JSON
    escapes it, where the module's masking of the whole key cannot find it. Every caller reads this list."""
    errors = decoded.get("errors")
    values = sorted(_sent_strings(sent), key=len, reverse=True) if errors else []
    if not values:
        return decoded
    masked = []
    for error in errors if isinstance(errors, list) else [errors]:
        text = str(error)
        for value in values:
            text = text.replace(value, "********")
        masked.append(text)
    return {**decoded, "errors": masked}


def _sent_strings(sent: t.Any) -> set[str]:
    if isinstance(sent, t.Mapping):
        return set().union(*(_sent_strings(value) for value in sent.values()))
    if isinstance(sent, (list, tuple)):
        return set().union(*(_sent_strings(value) for value in sent))
    if not isinstance(sent, str) or len(sent) < SHORTEST_ECHO_MASKED:
        return set()
    forms = {sent, json.dumps(sent)[1:-1]}
    forms.update(line.strip() for line in sent.splitlines() if len(line.strip()) >= SHORTEST_ECHO_MASKED)
    return forms


def _plain_error(error: str) -> str:
    """A server error without Go's multierror framing ("1 error occurred:\n\t* permission denied\n\n")."""
    framed = _MULTIERROR.match(error)
    if not framed:
        return error
    return "; ".join(item.strip() for item in framed.group(1).split("\n\t* ") if item.strip())


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
            if target:
                # requests reads a redirect's body whole before following it: read it here, under the cap.
                _read_capped(resp)
            return target


class _InlinePemFiles:
    """Inline PEM text (a CA, a client certificate, its private key) as paths, since Python's ssl loads only paths.

    On Linux each text goes into an anonymous memory file (memfd), opened through /proc/self/fd: nothing
    reaches a disk, and the kernel frees it when the process ends, however it ends (a task timeout's SIGKILL
    included). Elsewhere the texts go into a private (0700) directory, removed by remove() - on every way out
    of the module - and by an exit hook; only a SIGKILL leaves it behind.
    """

    def __init__(self) -> None:
        self._descriptors: list[int] = []
        self._directory: str | None = None

    def path_for(self, text: str, *, name: str) -> str:
        return self._memory_file(text, name) or self._private_file(text, name)

    def _memory_file(self, text: str, name: str) -> str | None:
        if not hasattr(os, "memfd_create"):
            return None
        try:
            descriptor = os.memfd_create(name, os.MFD_CLOEXEC)
        except OSError:
            return None
        self._descriptors.append(descriptor)
        with open(descriptor, "w", encoding="utf-8", closefd=False) as memory_file:
            memory_file.write(text)
        path = f"/proc/self/fd/{descriptor}"
        # Without /proc (some containers) the descriptor has no path ssl could open.
        return path if os.path.exists(path) else None

    def _private_file(self, text: str, name: str) -> str:
        if self._directory is None:
            self._directory = tempfile.mkdtemp(prefix="certautopilot-")
            atexit.register(self.remove)
        path = os.path.join(self._directory, f"{name}.pem")
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w", encoding="utf-8") as pem_file:
            pem_file.write(text)
        return path

    def remove(self) -> None:
        for descriptor in self._descriptors:
            with contextlib.suppress(OSError):
                os.close(descriptor)
        self._descriptors = []
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
            atexit.unregister(self.remove)
            self._directory = None


# The deadline of the request this thread has in flight, for the connections it opens or reuses.
_in_flight = threading.local()


class _AnswerTooLarge(Exception):
    """The answer holds more than MAX_ANSWER_BYTES; it was not read to its end."""


class _Deadline:
    """One request's time, from connecting to the last byte of the answer; then its sockets are shut down.

    A socket timeout bounds each wait for bytes, not the request: a server (or anything in between) that
    answers one byte a second holds the request for as long as it likes. Shutting the socket down when the
    time is up wakes whatever waits on it - the TLS handshake, the headers, the body - in any thread.
    """

    def __init__(self, seconds: float) -> None:
        self.ends_at = time.monotonic() + seconds
        self.cut = False
        self._lock = threading.Lock()
        self._finished = False
        # Duplicates of the request's socket descriptors: the TLS layer detaches the one it wraps.
        self._handles: list[socket.socket] = []
        _WATCHDOG.add(self)

    @property
    def finished(self) -> bool:
        return self._finished

    @property
    def expired(self) -> bool:
        return self.cut or time.monotonic() >= self.ends_at

    def remaining(self) -> float:
        return max(self.ends_at - time.monotonic(), 0.001)

    def watch(self, sock: socket.socket) -> None:
        try:
            handle = socket.socket(fileno=os.dup(sock.fileno()))
        except (OSError, ValueError):  # already closed: nothing left to wait on
            return
        with self._lock:
            if not self._finished:
                self._handles.append(handle)
                if self.cut:
                    _shut_down(handle)
                return
        handle.close()

    def expire(self) -> None:
        with self._lock:
            if self._finished:
                return
            self.cut = True
            for handle in self._handles:
                _shut_down(handle)

    def finish(self) -> None:
        with self._lock:
            self._finished = True
            handles, self._handles = self._handles, []
        for handle in handles:
            handle.close()


class _Watchdog:
    """One thread for every deadline of the process (a thread per request would cost more than the request)."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._pending: list[tuple[float, int, _Deadline]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def add(self, deadline: _Deadline) -> None:
        with self._condition:
            self._drop_finished()
            heapq.heappush(self._pending, (deadline.ends_at, next(self._order), deadline))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="certautopilot-deadlines", daemon=True)
                self._thread.start()
            elif self._pending[0][2] is deadline:
                self._condition.notify()

    def _drop_finished(self) -> None:
        while self._pending and self._pending[0][2].finished:
            heapq.heappop(self._pending)

    def _run(self) -> None:
        with self._condition:
            while True:
                self._drop_finished()
                if not self._pending:
                    self._condition.wait()
                    continue
                wait = self._pending[0][0] - time.monotonic()
                if wait > 0:
                    self._condition.wait(wait)
                    continue
                heapq.heappop(self._pending)[2].expire()


_WATCHDOG = _Watchdog()


def _shut_down(handle: socket.socket) -> None:
    with contextlib.suppress(OSError):
        handle.shutdown(socket.SHUT_RDWR)


def _watch_in_flight(sock: socket.socket | None) -> None:
    deadline = getattr(_in_flight, "deadline", None)
    if deadline is not None and sock is not None:
        deadline.watch(sock)


def _read_capped(response: t.Any) -> bytearray:
    """The whole body of ``response``, or _AnswerTooLarge as soon as it passes MAX_ANSWER_BYTES."""
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > MAX_ANSWER_BYTES:
        raise _AnswerTooLarge
    body = bytearray()
    for chunk in response.iter_content(ANSWER_CHUNK_BYTES):
        body += chunk
        if len(body) > MAX_ANSWER_BYTES:
            raise _AnswerTooLarge
    return body


if HAS_HVAC:

    class _DeadlineConnection:
        """Mixed into urllib3's connection classes: each socket joins the deadline of the request in flight."""

        def _new_conn(self) -> socket.socket:
            sock = super()._new_conn()
            _watch_in_flight(sock)
            return sock

        def request(self, *args: t.Any, **kwargs: t.Any) -> t.Any:
            # A kept-alive connection: no new socket, a new request.
            _watch_in_flight(self.sock)
            return super().request(*args, **kwargs)

    @functools.lru_cache(maxsize=None)
    def _deadline_pool(pool_class: type) -> type:
        if issubclass(pool_class.ConnectionCls, _DeadlineConnection):
            return pool_class
        connection_class = type(
            f"Deadline{pool_class.ConnectionCls.__name__}", (_DeadlineConnection, pool_class.ConnectionCls), {}
        )
        return type(f"Deadline{pool_class.__name__}", (pool_class,), {"ConnectionCls": connection_class})

    def _use_deadline_pools(manager: t.Any) -> t.Any:
        manager.pool_classes_by_scheme = {
            scheme: _deadline_pool(pool_class) for scheme, pool_class in manager.pool_classes_by_scheme.items()
        }
        return manager

    class _DeadlineAdapter(requests.adapters.HTTPAdapter):
        """An HTTPAdapter whose connections, direct or through a proxy, keep to the deadline of their request."""

        def init_poolmanager(self, *args: t.Any, **kwargs: t.Any) -> None:
            super().init_poolmanager(*args, **kwargs)
            _use_deadline_pools(self.poolmanager)

        def proxy_manager_for(self, proxy: str, **proxy_kwargs: t.Any) -> t.Any:
            return _use_deadline_pools(super().proxy_manager_for(proxy, **proxy_kwargs))


@dataclass(frozen=True)
class _Retry:
    """An attempt that failed in a way that may pass if tried again."""

    error: VaultCertError
    status: int | None = None
    # Nothing listened at the address (ECONNREFUSED): what a wrong port or a stopped server gives.
    refused: bool = False


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
        self._inline_pem = _InlinePemFiles()
        self._secrets: list[str] = []
        self.token: str | None = None
        # When the token from our login runs out (monotonic clock), if it has a TTL.
        self._token_expires: float | None = None
        self._token_ttl = 0
        # Set once any request got an answer: from then on a refused connection is a server restarting.
        self._answered = False
        # Read-your-writes on a read-scaled cluster (see _consistency); public so a caller may carry it on.
        self.consistency = ConsistencyIndex()
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
        pool = _DeadlineAdapter(pool_connections=1, pool_maxsize=max(pool_size, 1))
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
        ca_file = self._pem_file(self.settings.ca_cert, option="ca_cert")
        try:
            ssl.create_default_context(cafile=ca_file)
        except (ssl.SSLError, ValueError):
            raise VaultCertError("ca_cert holds no PEM CA certificate that TLS can load") from None
        return ca_file

    def _client_certificate(self) -> tuple[str, str] | str | None:
        """The TLS client certificate (and key) as files, checked to load before any connection."""
        if not self.settings.client_cert:
            return None
        cert_file = self._pem_file(self.settings.client_cert, option="client_cert")
        key_file = None
        if self.settings.client_key:
            key_file = self._pem_file(self.settings.client_key, option="client_key")
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(cert_file, key_file)
        except (ssl.SSLError, ValueError):
            # Never the values: client_key is a private key or the path to one.
            raise VaultCertError(
                "client_cert and client_key could not be loaded as a PEM certificate and its matching, "
                "unencrypted private key"
            ) from None
        return (cert_file, key_file) if key_file else cert_file

    def _pem_file(self, value: str, *, option: str) -> str:
        """A path for ``value``: inline PEM text becomes one of the client's _InlinePemFiles."""
        if "-----BEGIN" in value:
            return self._inline_pem.path_for(value, name=f"certautopilot-{option.replace('_', '-')}")
        path = os.path.expanduser(value)
        if os.path.isfile(path) and os.access(path, os.R_OK):
            return path
        raise VaultCertError(f"{option} is neither a readable file nor inline PEM text")

    def _remove_temp_files(self) -> None:
        self._inline_pem.remove()

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
        waited = 0.0
        for attempt in range(len(waits) + 1):
            self._wait_for_pool()
            outcome = self._attempt(method, path, json, headers, kind, accept, needs, namespace, auth_label)
            if isinstance(outcome, Reply):
                return outcome
            first_contact_over = (
                outcome.refused
                and not self._answered
                and attempt < len(waits)
                and waited + waits[attempt] > FIRST_CONTACT_REFUSED_SECONDS
            )
            if attempt == len(waits) or first_contact_over:
                raise VaultCertError(f"{outcome.error} (gave up after {_attempts(attempt + 1)})")
            self._back_off(waits[attempt], pool_wide=outcome.status in POOL_BACKOFF_STATUS)
            waited += waits[attempt]
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
        fenced, index_headers = self.consistency.fenced, self.consistency.headers()
        try:
            response, body = self._exchange(method, path, json, {**headers, **index_headers})
        except _AnswerTooLarge:
            message = (
                f"{method} {path} answered more than {MAX_ANSWER_MIB} MiB, the most one answer may hold: "
                "refused without reading the rest"
            )
            if kind == LOGIN:
                raise VaultCertError(f"login failed: {auth_label}: {message}") from None
            if kind in _WRITE_KINDS:
                raise OutcomeUnknown(message, answered=True) from None
            raise VaultCertError(message) from None
        except requests.exceptions.SSLError as exc:
            raise self._tls_error(exc) from None
        except (requests.exceptions.InvalidHeader, requests.exceptions.InvalidURL) as exc:
            # Refused by requests before anything was sent; no retry changes that.
            raise VaultCertError(f"{method} {path} could not be sent: {type(exc).__name__}") from None
        except requests.exceptions.RequestException as exc:
            if kind in _WRITE_KINDS:
                self.consistency.fence()
            error = self._transport_error(exc, method, path)
            if _never_sent(exc) and not self._redirected(exc):
                return _Retry(error, refused=_refused(exc))
            if kind == LOGIN:
                raise error from None
            if kind in _WRITE_KINDS:
                raise OutcomeUnknown(str(error), answered=False) from None
            return _Retry(error)
        status = response.status_code
        self._answered = True
        self.consistency.record(response.headers.get("X-Vault-Index"), answers_fence=fenced)
        if kind in _WRITE_KINDS and "X-Vault-Index" not in response.headers:
            # Refused or unanswered by the node that applies writes: the active node may be ahead of us.
            self.consistency.fence()
        if not_caught_up(status, body, sent_index=bool(index_headers)):
            # Nothing was processed: any request, a write or a login included, may be sent again.
            return _Retry(
                VaultCertError(f"{method} {path}: the node has not caught up with this run yet (HTTP {status})")
            )
        if status == 400 and body.startswith(_PLAIN_REQUEST_TO_TLS_PORT):
            raise VaultCertError(
                f"{self.settings.url} is a TLS listener: the server says it got a plain HTTP request on its "
                "HTTPS port; use https:// in url (and ca_cert for the CA that signed its certificate)"
            )
        decoded = _json_body(status, body)
        if status >= 400:
            decoded = _without_sent_values(decoded, json)
        errors = self.redact(_server_errors(status, decoded))
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
            return Reply(status, decoded)
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

    def _exchange(self, method: str, path: str, json: dict | None, headers: dict) -> tuple[t.Any, bytearray]:
        """Send one request and read its whole answer within ``timeout``; a late one ends as requests' ReadTimeout."""
        deadline = _Deadline(self.settings.timeout)
        _in_flight.deadline = deadline
        try:
            # The socket timeouts too: a connect that fails in time stays a ConnectTimeout (never sent).
            remaining = deadline.remaining()
            response = self._adapter.request(
                method,
                "/v1/" + path,
                json=json,
                headers=dict(headers),
                raise_exception=False,
                stream=True,
                timeout=(remaining, remaining),
            )
            try:
                body = _read_capped(response)
            finally:
                # Unread bytes (a refused or cut answer) close the connection; a whole answer keeps it alive.
                response.close()
        except requests.exceptions.ConnectTimeout:
            raise
        except requests.exceptions.RequestException as exc:
            if deadline.expired:
                raise requests.exceptions.ReadTimeout(request=exc.request) from None
            raise
        finally:
            _in_flight.deadline = None
            deadline.finish()
        if deadline.cut:
            # The cut may end a body without a declared length early, as if it were whole.
            raise requests.exceptions.ReadTimeout(request=response.request)
        return response, body

    def _tls_error(self, exc: Exception) -> VaultCertError:
        reason = _short_tls_reason(exc)
        hint = "Set ca_cert (or VAULT_CACERT) to the CA that signed the server's certificate"
        if "wrong version number" in reason.lower():
            # The answer to our TLS hello was not TLS: the server speaks plain HTTP on that port.
            hint = (
                "The server answers in plain HTTP, not TLS: if it is a dev server on loopback, use http:// in url "
                "(ca_cert does not help); anywhere else, find out why the address does not speak TLS before "
                "sending credentials to it"
            )
        elif "mismatch" in reason.lower():
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
                f"{url} timed out: no whole answer to {method} {path} within {self.settings.timeout}s "
                f"(timeout){redirect}"
            )
        if _refused(exc):
            return VaultCertError(
                f"connection refused by {url}: nothing listens at that address and port (a wrong port in url, "
                f"or the server is stopped) on {method} {path}{redirect}"
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
            # The token may be revoked by the time anyone reads this: name the policy rule that is missing.
            raise PermissionDenied(
                f"permission denied on {path}: the token's policies need the {wanted} capability on path "
                f'"{path}" (a policy rule: path "{path}" {{ capabilities = [...] }}): {errors}'
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
        with contextlib.suppress(requests.exceptions.RequestException, _AnswerTooLarge):
            self._exchange("POST", "auth/token/revoke-self", None, headers)


def _proves_not_processed(status: int, errors: str) -> bool:
    """True when Vault itself says the node did not process the request (sealed, not the active node)."""
    return status == 503 and any(words in errors.lower() for words in NOT_PROCESSED_ERRORS)


def _attempts(count: int) -> str:
    return "1 attempt" if count == 1 else f"{count} attempts"


def _json_body(status: int, body: bytearray) -> dict:
    if status == 204 or not body:
        return {}
    try:
        decoded = json.loads(body)
    except ValueError:
        return {}
    return decoded if isinstance(decoded, dict) else {}


def _short_tls_reason(exc: Exception) -> str:
    text = str(exc)
    for reason in ("certificate verify failed", "hostname mismatch", "wrong version number", "unknown ca"):
        if reason in text.lower():
            start = text.lower().index(reason)
            found = text[start:].split("(", 1)[0].split("')", 1)[0].rstrip(' .")')
            # Keep a quoted host name whole ("not valid for '127.0.0.1'"), drop a stray closing quote.
            return found if found.count("'") % 2 == 0 else found.rstrip("'")
    return "TLS handshake failed"

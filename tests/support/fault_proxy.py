"""Network faults between the collection and OpenBao, for the fault-injection tests.

`FaultProxy` is a small threaded reverse proxy on loopback. It serves plain
HTTP (or HTTPS with a certificate of the test's choosing) and forwards every
request to the real server over TLS, verified against the server's CA. Rules
make it misbehave for matching requests:

    proxy = FaultProxy(bao.addr, bao.ca_cert)
    proxy.add_rule("POST", r"^secret/data/certs/a$", status=503, times=2)   # refused twice, then forwarded
    proxy.add_rule("POST", r"^secret/data/certs/b$", status=500, after_forward=True)  # applied, answer lost
    proxy.add_rule("POST", r"^secret/data/certs/c$", drop=True, after_forward=True)   # applied, connection lost
    proxy.add_rule("GET", r"^secret/data/", delay=0.3)                       # slow reads
    proxy.add_rule("POST", r"^secret/data/", skip=9, action=bao.seal)        # seal before the 10th write
    proxy.add_rule("GET", r"^sys/", redirect="http://127.0.0.1:9")             # 307 to another origin
    proxy.add_rule("GET", r"^secret/metadata/", then=write_v2)                 # a race staged after a read
    proxy.add_rule("DELETE", r"^secret/metadata/", status=503, after_forward=True,
                   errors=("Vault is sealed",))                                # the server's own words, injected
    ... module run with url=proxy.url ...
    proxy.hits("POST", r"^secret/data/certs/a$")  # what the proxy saw, in order

`BlackHole` is a listener that accepts connections and never answers; `accept_until` is its
accept loop, for other listeners of the tests too.

Paths in rules are API paths without `/v1/` and without the query string.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.server
import json
import re
import socket
import ssl
import threading
import time
import typing as t

import requests

# Headers that describe one hop, not the message; never forwarded either way.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "content-encoding",
    }
)


@dataclasses.dataclass
class Rule:
    """What to do with requests whose method and API path match.

    The first ``skip`` matches pass untouched; the next ``times`` matches get
    the fault (``times=None``: every later match). For each faulty match, in
    order: ``action()`` runs, the proxy waits ``delay`` seconds, then either
    answers ``status`` without forwarding, forwards and answers ``status``
    instead of the server's answer (``after_forward``), or, with ``status``
    None, forwards normally. ``drop`` closes the connection without an answer:
    before forwarding, or with ``after_forward`` once the server has answered.
    ``redirect`` answers 307 to that origin with the request's own path, as a
    standby sends a client to the active node. ``then()`` runs once the server
    has answered and before the client gets the answer (a race staged between
    two requests of the client). ``errors`` replaces the injected answer's
    error list.
    """

    method: str
    path: str
    status: int | None = None
    times: int | None = 1
    skip: int = 0
    after_forward: bool = False
    delay: float = 0.0
    drop: bool = False
    redirect: str | None = None
    action: t.Callable[[], None] | None = None
    then: t.Callable[[], None] | None = None
    errors: tuple[str, ...] | None = None
    matched: int = 0
    applied: int = 0

    def claims(self, method: str, path: str) -> bool:
        """True when this request gets the fault; counts every match."""
        if method != self.method.upper() or not re.search(self.path, path):
            return False
        self.matched += 1
        if self.matched <= self.skip:
            return False
        if self.times is not None and self.applied >= self.times:
            return False
        self.applied += 1
        return True


@dataclasses.dataclass(frozen=True)
class Hit:
    """One request as the proxy handled it."""

    method: str
    path: str
    status: int | None  # what the client got; None: the connection was dropped
    forwarded: bool
    injected: bool
    # When the request arrived (monotonic clock).
    at: float = dataclasses.field(default_factory=time.monotonic)


class FaultProxy:
    """A reverse proxy to ``upstream`` that injects faults; use as a context manager or call close()."""

    def __init__(
        self,
        upstream: str,
        upstream_ca: str,
        *,
        tls_cert: str | None = None,
        tls_key: str | None = None,
    ) -> None:
        self.upstream = upstream.rstrip("/")
        self.upstream_ca = upstream_ca
        self.rules: list[Rule] = []
        self.log: list[Hit] = []
        self._lock = threading.Lock()
        self._local = threading.local()
        self._server = _ProxyServer(("127.0.0.1", 0), _handler_for(self))
        scheme = "http"
        if tls_cert:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(tls_cert, tls_key)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fault-proxy", daemon=True
        )
        self._thread.start()
        self._closed = False

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def add_rule(self, method: str, path: str, **settings: t.Any) -> Rule:
        rule = Rule(method=method.upper(), path=path, **settings)
        with self._lock:
            self.rules.append(rule)
        return rule

    def hits(self, method: str | None = None, path: str | None = None) -> list[Hit]:
        with self._lock:
            return [
                hit
                for hit in self.log
                if (method is None or hit.method == method.upper()) and (path is None or re.search(path, hit.path))
            ]

    def die(self) -> None:
        """Behave like a crashed server from now on: stop listening, drop every connection."""
        if self._closed:
            return
        self._closed = True
        # Called from a handler thread: shutdown() only waits for the serving thread's loop.
        self._server.shutdown()
        self._server.server_close()
        self._server.drop_connections()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._server.shutdown()
            self._server.server_close()
        self._server.drop_connections()
        self._thread.join(timeout=5)

    # -- used by the handler ------------------------------------------------

    def _claim(self, method: str, path: str) -> Rule | None:
        with self._lock:
            for rule in self.rules:
                if rule.claims(method, path):
                    return rule
        return None

    def _record(self, hit: Hit) -> None:
        with self._lock:
            self.log.append(hit)

    def _forward(self, method: str, target: str, headers: dict[str, str], body: bytes) -> requests.Response:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            session.trust_env = False
        return session.request(
            method,
            self.upstream + target,
            headers=headers,
            data=body or None,
            verify=self.upstream_ca,
            timeout=60,
            allow_redirects=False,
        )


class _ProxyServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def process_request(self, request: socket.socket, client_address: t.Any) -> None:
        with self.connections_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: socket.socket) -> None:
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        with self.connections_lock:
            connections, self.connections = list(self.connections), set()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
            connection.close()

    def handle_error(self, request: t.Any, client_address: t.Any) -> None:
        """A client that went away is part of the tests; no traceback on stderr."""


def _handler_for(proxy: FaultProxy) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: t.Any) -> None:  # noqa: A002 - the base class's name
            """Quiet: the proxy's log is `proxy.log`."""

        def _handle(self) -> None:
            method = self.command
            api_path = self.path.split("?", 1)[0]
            api_path = api_path[len("/v1/") :] if api_path.startswith("/v1/") else api_path.lstrip("/")
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {key: value for key, value in self.headers.items() if key.lower() not in _HOP_BY_HOP}
            rule = proxy._claim(method, api_path)
            if rule is not None:
                if rule.action is not None:
                    rule.action()
                if rule.delay:
                    time.sleep(rule.delay)
                if rule.redirect:
                    proxy._record(Hit(method, api_path, 307, forwarded=False, injected=True))
                    self._send_redirect(rule.redirect.rstrip("/") + self.path)
                    return
                if rule.drop and not rule.after_forward:
                    proxy._record(Hit(method, api_path, None, forwarded=False, injected=True))
                    self._drop()
                    return
                if rule.status is not None and not rule.after_forward:
                    proxy._record(Hit(method, api_path, rule.status, forwarded=False, injected=True))
                    self._send_injected(rule.status, rule.errors)
                    return
            try:
                answer = proxy._forward(method, self.path, headers, body)
            except requests.RequestException:
                # The server is gone: so is the proxy, as far as the client can tell.
                proxy._record(Hit(method, api_path, None, forwarded=False, injected=False))
                self._drop()
                return
            if rule is not None and rule.then is not None:
                rule.then()
            if rule is not None and rule.drop and rule.after_forward:
                proxy._record(Hit(method, api_path, None, forwarded=True, injected=True))
                self._drop()
                return
            if rule is not None and rule.status is not None and rule.after_forward:
                proxy._record(Hit(method, api_path, rule.status, forwarded=True, injected=True))
                self._send_injected(rule.status, rule.errors)
                return
            proxy._record(Hit(method, api_path, answer.status_code, forwarded=True, injected=False))
            self.send_response(answer.status_code)
            for key, value in answer.headers.items():
                if key.lower() not in _HOP_BY_HOP:
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(answer.content)))
            self.end_headers()
            self.wfile.write(answer.content)

        def _send_injected(self, status: int, errors: tuple[str, ...] | None) -> None:
            payload = json.dumps({"errors": list(errors or (f"fault proxy: injected HTTP {status}",))}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _send_redirect(self, location: str) -> None:
            self.send_response(307)
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _drop(self) -> None:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_LIST = do_HEAD = _handle  # noqa: N815

    return Handler


def accept_until(listener: socket.socket, stopped: threading.Event) -> t.Iterator[socket.socket]:
    """The connections ``listener`` accepts, until ``stopped`` is set or the listener is shut down or closed.

    A listener with a timeout wakes up at each timeout to look at ``stopped``; one without must be
    shut down to end the loop (closing it from another thread may not wake a blocked accept).
    """
    while not stopped.is_set():
        try:
            connection, _address = listener.accept()
        except TimeoutError:
            continue
        except OSError:
            return
        yield connection


class BlackHole:
    """A TCP listener on loopback that accepts every connection and never sends a byte."""

    def __init__(self, *, scheme: str = "https") -> None:
        self._socket = socket.socket()
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(64)
        self.url = f"{scheme}://127.0.0.1:{self._socket.getsockname()[1]}"
        self.accepted = 0
        self._held: list[socket.socket] = []
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="black-hole", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        for connection in accept_until(self._socket, self._stopped):
            self.accepted += 1
            self._held.append(connection)

    def __enter__(self) -> BlackHole:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._stopped.set()
        with contextlib.suppress(OSError):
            self._socket.shutdown(socket.SHUT_RDWR)
        self._socket.close()
        for connection in self._held:
            connection.close()
        self._thread.join(timeout=5)

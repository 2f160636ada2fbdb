"""A TCP relay that delivers bytes late, to make a raft follower lag behind its leader.

Placed on a node's advertised `cluster_addr` (tests/support/cluster.py does
it for `RaftCluster.start(..., lagging=True)`), it carries everything the
active node sends that node over the cluster port - raft's AppendEntries
included - and holds each chunk `delay` seconds before passing it on. The
node's answers go back at once. The node's own requests to the active node
(forwarded writes) use the active node's address, not this relay, so they
are not delayed: the node lags in what it knows, not in what it can send.

    relay = LagRelay(target_port=real_cluster_port)   # listens on relay.port
    relay.delay = 2.0                                  # from now on; 0 passes bytes straight through
    ...
    relay.stop()

TLS passes through untouched (the relay never looks at the bytes).
"""

from __future__ import annotations

import contextlib
import queue
import socket
import threading
import time

CHUNK = 65536


class LagRelay:
    """Listens on a free loopback port and relays every connection to `target_port`, delayed one way."""

    def __init__(self, *, target_port: int, port: int = 0, host: str = "127.0.0.1", delay: float = 0.0) -> None:
        self.target = (host, target_port)
        self.delay = delay
        self._listener = socket.create_server((host, port))
        self.port = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        threading.Thread(target=self._accept, name="lag-relay-accept", daemon=True).start()

    def stop(self) -> None:
        self._stopped.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.close()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                downstream, _address = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                downstream.close()
                continue
            with self._lock:
                self._sockets += [downstream, upstream]
            self._pipe(downstream, upstream, delayed=True)
            self._pipe(upstream, downstream, delayed=False)

    def _pipe(self, source: socket.socket, sink: socket.socket, *, delayed: bool) -> None:
        if not delayed:
            threading.Thread(target=self._copy, args=(source, sink), daemon=True).start()
            return
        # Reading and sending apart: a chunk's delay starts when it arrives, not when the one before it left.
        chunks: queue.Queue[tuple[float, bytes]] = queue.Queue()
        threading.Thread(target=self._read_into, args=(source, chunks), daemon=True).start()
        threading.Thread(target=self._send_from, args=(chunks, sink), daemon=True).start()

    def _copy(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(CHUNK):
                sink.sendall(data)
        self._close_both(source, sink)

    def _read_into(self, source: socket.socket, chunks: queue.Queue[tuple[float, bytes]]) -> None:
        data = b""
        with contextlib.suppress(OSError):
            while data := source.recv(CHUNK):
                chunks.put((time.monotonic() + self.delay, data))
        chunks.put((time.monotonic() + self.delay, b""))

    def _send_from(self, chunks: queue.Queue[tuple[float, bytes]], sink: socket.socket) -> None:
        while True:
            due, data = chunks.get()
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            if not data:
                break
            try:
                sink.sendall(data)
            except OSError:
                break
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    @staticmethod
    def _close_both(*sockets: socket.socket) -> None:
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

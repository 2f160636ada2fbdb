"""Concurrent runs against one real server: check-and-set keeps every write, and only one.

Each test starts six module processes at once (tests/support/module_process.py:
the module as Ansible runs it on a host, without a playbook; racing runs cannot
share this process). Starting a process costs far more (about 0.3 s) than the
read-to-write window of a push on loopback (a millisecond), so left alone the
runs would hardly overlap. A starting gate in front of the server holds every process's first connection
until all six have connected, then lets them through together, and delays
every answer by RTT seconds, as a server a few network hops away would: the
runs then move in step, each one's read-to-write window is as wide as a
round trip, and their reads and writes interleave for real. The server's
audit log tells how many writes were attempted, which shows that they did.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import queue
import socket
import threading
import time
import typing as t
import uuid
from urllib.parse import urlsplit

import pki
import pytest
from fault_proxy import accept_until

PARALLEL = 6
MOUNT = "secret"
GATE_TIMEOUT = 60.0
# Added to every answer; wider than the scheduling jitter of six processes on two cores.
RTT = 0.1


class StartingGate:
    """A TCP relay to the server that holds connections until `count` have arrived, then opens for all.

    Every chunk from the server reaches the client `delay` seconds after it
    arrived. TLS passes through untouched: the modules still verify the
    server's certificate (issued for 127.0.0.1, whatever the port).
    """

    def __init__(self, target_url: str, count: int, *, delay: float = 0.0) -> None:
        self._delay = delay
        target = urlsplit(target_url)
        self._target = (target.hostname, target.port)
        self._count = count
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.url = f"{target.scheme}://127.0.0.1:{self._listener.getsockname()[1]}"
        self._waiting: list[socket.socket] = []
        self._sockets: list[socket.socket] = []
        self._lock = threading.RLock()
        self.opened = threading.Event()
        self._closed = threading.Event()
        self._threads: list[threading.Thread] = []
        self._spawn(self._accept_loop)

    def _spawn(self, target: t.Callable[..., None], *args: t.Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _accept_loop(self) -> None:
        for client in accept_until(self._listener, self._closed):
            with self._lock:
                self._sockets.append(client)
                if self.opened.is_set():
                    self._spawn(self._relay, client)
                    continue
                self._waiting.append(client)
                if len(self._waiting) >= self._count:
                    self.open()

    def open(self) -> None:
        """Let everyone through (also called by the test when the gate waited too long)."""
        with self._lock:
            if self.opened.is_set():
                return
            self.opened.set()
            for client in self._waiting:
                self._spawn(self._relay, client)
            self._waiting.clear()

    def _relay(self, client: socket.socket) -> None:
        try:
            server = socket.create_connection(self._target, timeout=10)
        except OSError:
            client.close()
            return
        server.settimeout(None)
        client.settimeout(None)
        with self._lock:
            self._sockets.append(server)
        self._spawn(self._pump_delayed, server, client)
        self._pump(client, server)

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def _pump_delayed(self, source: socket.socket, sink: socket.socket) -> None:
        # Each chunk is due `delay` after it arrived: the delay of one answer
        # does not add to the next.
        chunks: queue.Queue[tuple[float, bytes]] = queue.Queue()
        self._spawn(self._send_when_due, chunks, sink)
        with contextlib.suppress(OSError):
            while chunk := source.recv(65536):
                chunks.put((time.monotonic() + self._delay, chunk))
        chunks.put((time.monotonic() + self._delay, b""))

    @staticmethod
    def _send_when_due(chunks: queue.Queue[tuple[float, bytes]], sink: socket.socket) -> None:
        while True:
            due, chunk = chunks.get()
            time.sleep(max(0.0, due - time.monotonic()))
            try:
                if not chunk:
                    sink.shutdown(socket.SHUT_WR)
                    return
                sink.sendall(chunk)
            except OSError:
                return

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.close()
        for thread in self._threads:
            thread.join(timeout=2)


@pytest.fixture
def gate(bao) -> t.Iterator[StartingGate]:
    starting_gate = StartingGate(bao.addr, PARALLEL, delay=RTT)
    try:
        yield starting_gate
    finally:
        starting_gate.close()


def run_together(module_process, gate: StartingGate, calls: list[tuple[str, dict]]) -> list:
    """Run the (module, args) calls as parallel module processes released by `gate`."""
    assert len(calls) == PARALLEL
    with concurrent.futures.ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        futures = [pool.submit(module_process.run, module, args) for module, args in calls]
        # A process that dies before it connects must not hold the others forever.
        if not gate.opened.wait(GATE_TIMEOUT):
            gate.open()
        return [future.result() for future in futures]


def new_path(prefix: str) -> str:
    return f"certs/race/{prefix}-{uuid.uuid4().hex[:8]}"


def certificate_item(path: str, chain: pki.Chain) -> dict[str, str]:
    return {
        "path": path,
        "certificate": chain.leaf.cert_pem,
        "private_key": chain.leaf.key_pem,
        "chain": chain.chain_pem,
    }


def write_attempts(bao, since: int, path: str) -> int:
    """Data writes to `path` that reached the server (accepted or refused by check-and-set)."""
    entries = bao.audit_requests(since, path_prefix=f"{MOUNT}/data/{path}")
    return sum(
        1
        for entry in entries
        if entry["request"]["path"] == f"{MOUNT}/data/{path}" and entry["request"]["operation"] in ("create", "update")
    )


def test_identical_pushes_to_new_paths_write_each_once(bao, module_process, vault_conn, approle_auth, gate):
    paths = [new_path("same") for _index in range(4)]
    chains = {path: pki.make_chain(path.rsplit("/", 1)[1] + ".example.com") for path in paths}
    batch = [certificate_item(path, chains[path]) for path in paths]
    args = {**vault_conn, **approle_auth, "url": gate.url, "certificates": batch, "owner": "racers"}
    mark = bao.audit_mark()

    runs = run_together(module_process, gate, [("vault_cert_push", args)] * PARALLEL)

    for run in runs:
        assert not run.failed, run.msg or run.output[-2000:]
    for index, path in enumerate(paths):
        items = [run.result["results"][index] for run in runs]
        assert [item["path"] for item in items] == [path] * PARALLEL
        # One run writes the data. The mark goes before the data, guarded by metadata check-and-set: another
        # run may have written it and lost the data race - then it reports only the mark.
        data_writers = [item for item in items if item["changed"] and item["changed_fields"] != ["certautopilot_owner"]]
        assert len(data_writers) == 1, items
        assert {item["version"] for item in items} == {1}
        assert all(item["managed"] and item["owner"] == "racers" for item in items), items
        custom = bao.api("GET", f"{MOUNT}/metadata/{path}")[1]["data"]["custom_metadata"]
        assert custom == {"managed_by": "certautopilot.vault", "certautopilot_owner": "racers"}
        assert set(bao.kv_versions(MOUNT, path)) == {"1"}
        assert bao.kv_data(path, version=1)["certificate"] == chains[path].leaf.cert_pem
    # The runs really collided: some writes were refused by check-and-set.
    attempts = sum(write_attempts(bao, mark, path) for path in paths)
    assert attempts > len(paths), f"only {attempts} writes for {len(paths)} paths: the runs never raced"


def test_different_certificates_to_one_path_each_own_a_version(bao, module_process, vault_conn, approle_auth, gate):
    path = new_path("many")
    chains = [pki.make_chain(f"racer{index}.example.com") for index in range(PARALLEL)]
    calls = [
        ("vault_cert_push", {**vault_conn, **approle_auth, "url": gate.url, **certificate_item(path, chain)})
        for chain in chains
    ]
    mark = bao.audit_mark()

    runs = run_together(module_process, gate, calls)

    succeeded = {index: run.result for index, run in enumerate(runs) if not run.failed}
    for run in runs:
        if run.failed:
            assert "check-and-set conflict" in run.msg and f"{MOUNT}/data/{path}" in run.msg, run.msg
    assert succeeded, [run.msg for run in runs]
    versions = [result["version"] for result in succeeded.values()]
    assert len(set(versions)) == len(versions), f"two runs claim one version: {versions}"
    assert bao.kv_version_numbers(path) == list(range(1, len(succeeded) + 1))
    for index, result in succeeded.items():
        # No write is lost: each version holds the certificate of the run that claims it.
        assert result["changed"] is True
        assert result["previous_version"] == (result["version"] - 1 or None)
        assert bao.kv_data(path, version=result["version"])["certificate"] == chains[index].leaf.cert_pem
    assert write_attempts(bao, mark, path) > len(succeeded), "no write was refused: the runs never raced"


def test_rollback_racing_pushes_never_overwrites_a_push_unseen(bao, module_process, vault_conn, approle_auth, gate):
    path = new_path("rollback")
    original, renewed = pki.make_chain("rollback-v1.example.com"), pki.make_chain("rollback-v2.example.com")
    for chain in (original, renewed):
        status, body = bao.api("POST", f"{MOUNT}/data/{path}", {"data": {"certificate": chain.leaf.cert_pem}})
        assert status == 200, body
    pushed = [pki.make_chain(f"rollback-push{index}.example.com") for index in range(3)]
    connection = {**vault_conn, **approle_auth, "url": gate.url}
    # A rollback reads three times before it writes, a push once. Each push
    # first delivers a certificate of its own, so that its write of the shared
    # path goes out in the same round trip as the rollbacks' writes: which one
    # lands first is up to the scheduler, and each order is checked.
    calls = [
        (
            "vault_cert_push",
            {**connection, "certificates": [certificate_item(new_path("own"), chain), certificate_item(path, chain)]},
        )
        for chain in pushed
    ]
    # Two rollbacks guarded by the version the last push returned (2), one not guarded.
    guards = [{"current_version": 2}, {"current_version": 2}, {}]
    calls += [("vault_cert_rollback", {**connection, "path": path, "version": 1, **guard}) for guard in guards]

    runs = run_together(module_process, gate, calls)

    pushes = [(chain, run.result["results"][1] if not run.failed else None, run) for chain, run in zip(pushed, runs)]
    rollbacks = [(guard, run.result if not run.failed else None, run) for guard, run in zip(guards, runs[3:])]
    writers = [result for _label, result, _run in pushes + rollbacks if result and result["changed"]]
    versions = sorted(result["version"] for result in writers)
    assert len(set(versions)) == len(versions), f"two runs claim one version: {versions}"
    assert bao.kv_version_numbers(path) == list(range(1, 3 + len(writers)))
    for result in writers:
        # Each writer decided against the version it replaced: nobody wrote in between.
        assert result["previous_version"] == result["version"] - 1, result
    for chain, result, run in pushes:
        if run.failed:
            assert "check-and-set conflict" in run.msg and path in run.msg, run.msg
            continue
        assert result["changed"]
        assert bao.kv_data(path, version=result["version"])["certificate"] == chain.leaf.cert_pem
    for guard, result, run in rollbacks:
        if run.failed:
            assert path in run.msg and "nothing written" in run.msg, run.msg
            continue
        assert result["restored_version"] == 1
        assert bao.kv_data(path, version=result["version"]) == {"certificate": original.leaf.cert_pem}
        if not result["changed"]:
            # Came after another rollback had restored version 1 already: nothing to write.
            assert result["version"] == result["previous_version"]
        elif guard:
            # A guarded rollback writes only while no push has landed since version 2.
            assert result["previous_version"] == 2

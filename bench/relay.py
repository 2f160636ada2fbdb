"""A loopback TCP relay that puts a network's round-trip time between the bench and OpenBao.

Every chunk read from one side reaches the other side RTT/2 later, in each
direction, in order; nothing limits the bandwidth: the reader queues each
chunk with its due time and never waits for the writer. The bytes pass
through untouched, so TLS runs end to end between client and server (the
server's certificate is for 127.0.0.1, the relay's address too). A new
connection reaches the server one RTT after the client connected, as a TCP
handshake over such a network would: the client's first bytes wait for it.

bench/run.py starts one in a thread for the distance run:

    with Relay("127.0.0.1", 8200, rtt=0.010) as relay:
        ... https://127.0.0.1:{relay.port} ...

or by hand: python bench/relay.py UPSTREAM_PORT RTT_MS
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading

CHUNK = 256 * 1024
EOF = b""  # queued after the last chunk: the writer then half-closes its side


class Relay:
    """The relay, served by an asyncio loop in a thread of its own while the `with` block runs."""

    def __init__(self, upstream_host: str, upstream_port: int, rtt: float) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.rtt = rtt
        self.port = 0
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve()), name="relay", daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    def __enter__(self) -> Relay:
        self._thread.start()
        if not self._ready.wait(timeout=10):
            raise RuntimeError("the relay did not start")
        return self

    def __exit__(self, *_exc: object) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)

    async def _serve(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        server = await asyncio.start_server(self._connect, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        await self._stop.wait()
        # No new connections; asyncio.run cancels those still open when this returns.
        # (Not server.wait_closed(): since Python 3.12 it waits for the open connections.)
        server.close()

    async def _connect(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            await asyncio.sleep(self.rtt)  # the TCP handshake
            server_reader, server_writer = await asyncio.open_connection(*self.upstream)
        except (OSError, asyncio.CancelledError):  # no server, or the relay stops
            client_writer.close()
            return
        try:
            await asyncio.gather(
                self._forward(client_reader, server_writer),
                self._forward(server_reader, client_writer),
            )
        except asyncio.CancelledError:
            pass  # the relay stops: a connection task must not end cancelled (asyncio would log it as an error)
        finally:
            server_writer.close()
            client_writer.close()

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One direction: read as fast as it comes, deliver each chunk RTT/2 after it was read."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        delivery = asyncio.create_task(self._deliver(queue, writer))
        loop = asyncio.get_running_loop()
        try:
            while True:
                try:
                    chunk = await reader.read(CHUNK)
                except OSError:  # reset by the sending side: an end as good as any
                    chunk = EOF
                queue.put_nowait((loop.time() + self.rtt / 2, chunk))
                if chunk == EOF:
                    break
            await delivery
        finally:
            delivery.cancel()

    @staticmethod
    async def _deliver(queue: asyncio.Queue[tuple[float, bytes]], writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due, chunk = await queue.get()
            await asyncio.sleep(max(0.0, due - loop.time()))
            try:
                if chunk == EOF:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                writer.write(chunk)
                await writer.drain()
            except OSError:  # reset or not connected any more (ENOTCONN on write_eof)
                return  # the receiving side is gone: nobody left to deliver to


def main(upstream_port: str, rtt_ms: str) -> None:
    with Relay("127.0.0.1", int(upstream_port), float(rtt_ms) / 1000) as relay:
        print(f"relay on 127.0.0.1:{relay.port} -> 127.0.0.1:{upstream_port}, RTT {rtt_ms} ms; Ctrl-C stops it")
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main(*sys.argv[1:])

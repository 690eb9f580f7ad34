"""A TCP proxy that stands for the network between daskscore and Azurite.

Tests and benchmarks put it between the Azure SDK and the emulator to see and
disturb what crosses the wire; Azurite still serves every request. It forwards
bytes both ways and, since the traffic is HTTP/1.1, follows each request and
response on a connection, which lets it:

- add **latency**: one delay to open a connection and the same delay before the
  first byte of every response (a storage account in a remote region);
- cap **bandwidth**: bytes per second over all connections, each direction
  its own link;
- **count** bytes sent each way, per connection and in total, and record every
  request (method, path, ``Range``/``x-ms-range``) with its status and the
  response bytes that reached the client (:class:`Exchange`);
- **drop** connections mid-response: :meth:`NetProxy.drop` cuts the first K
  responses to requests for a path after N body bytes (closed, or reset).

Anything that does not parse as HTTP is forwarded as a plain byte stream.

In a test, run it in a background thread::

    with NetProxy(("127.0.0.1", azurite.port), latency="30ms") as proxy:
        proxy.drop("*/in/item-0003.txt", times=1, after_bytes=1000)
        ...  # use http://127.0.0.1:{proxy.port}/devstoreaccount1
        [first, second] = proxy.exchanges(method="GET", path="*/item-0003.txt")

For a benchmark, as a process of its own (stopped by pid, see
:func:`start_netproxy_process`)::

    python tests/netproxy.py --target 127.0.0.1:10000 --latency 30ms \\
        --bandwidth 20MB --stats stats.json
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import fnmatch
import json
import os
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

__all__ = [
    "Connection",
    "DropRule",
    "Exchange",
    "NetProxy",
    "NetProxyProcess",
    "start_netproxy_process",
]

_CHUNK = 64 * 1024
_HEAD_LIMIT = 256 * 1024
_LISTENING = re.compile(r"netproxy listening on ([0-9.]+):(\d+)")


def _seconds(value: float | str | None) -> float:
    if value is None:
        return 0.0
    if isinstance(value, str):
        from dask.utils import parse_timedelta

        return float(parse_timedelta(value, default="s"))
    return float(value)


def _bytes(value: int | str | None) -> int | None:
    if value is None or value == 0:
        return None
    if isinstance(value, str):
        from dask.utils import parse_bytes

        return parse_bytes(value)
    return int(value)


# -- what the proxy records ------------------------------------------------------


@dataclass
class Exchange:
    """One HTTP request and its response as they passed through the proxy.

    Attributes
    ----------
    connection
        Id of the client connection (see :attr:`NetProxy.connections`).
    method, target
        The request line's method and target (path and query, as sent).
    headers
        Request headers, names in lower case.
    request_bytes
        Bytes of the request (head and body) forwarded to the server.
    status
        The response's status code (None: no response came).
    response_bytes, response_body_bytes
        Bytes of the response forwarded to the client: all, and the body alone.
    content_length
        The body length the response announced (None: chunked or unknown).
    dropped
        The proxy cut this response (see :meth:`NetProxy.drop`).
    """

    connection: int
    method: str
    target: str
    headers: dict[str, str] = field(default_factory=dict)
    request_bytes: int = 0
    status: int | None = None
    response_bytes: int = 0
    response_body_bytes: int = 0
    content_length: int | None = None
    dropped: bool = False

    @property
    def path(self) -> str:
        """The target's path, without the query, percent-decoded."""
        return unquote(urlsplit(self.target).path)

    @property
    def range(self) -> tuple[int, int | None] | None:
        """The requested byte range ``(first, last)`` (inclusive), or None.

        From ``x-ms-range`` (which Azure prefers) or ``Range``; ``last`` is None
        for an open range (``bytes=100-``).
        """
        text = self.headers.get("x-ms-range") or self.headers.get("range")
        match = re.fullmatch(r"\s*bytes=(\d+)-(\d*)\s*", text or "")
        if not match:
            return None
        last = match.group(2)
        return int(match.group(1)), int(last) if last else None


@dataclass
class Connection:
    """Byte counts of one client connection.

    Attributes
    ----------
    id
        Its number, in the order connections were accepted (from 0).
    bytes_up, bytes_down
        Bytes forwarded client -> server and server -> client.
    closed
        Whether it has ended.
    """

    id: int
    bytes_up: int = 0
    bytes_down: int = 0
    closed: bool = False


@dataclass
class DropRule:
    """Cut the first ``times`` responses to ``method`` requests for ``path``.

    ``path`` is a glob (``fnmatch``) matched against :attr:`Exchange.path`. A
    matching response whose body is longer than ``after_bytes`` is forwarded up
    to ``after_bytes`` bytes of its body, then the client connection is closed
    (or reset, with ``reset``) and the server connection abandoned; shorter
    responses pass untouched and do not count. ``times=None`` cuts every
    matching response. ``matched`` counts the responses the rule has cut.
    """

    path: str
    times: int | None = 1
    after_bytes: int = 0
    method: str = "GET"
    reset: bool = False
    matched: int = 0

    def claim(self, exchange: Exchange) -> bool:
        """Whether to cut ``exchange``'s response (and count it if so)."""
        if exchange.method != self.method.upper():
            return False
        if not fnmatch.fnmatchcase(exchange.path, self.path):
            return False
        length = exchange.content_length
        if length is not None and length <= self.after_bytes:
            return False
        if self.times is not None and self.matched >= self.times:
            return False
        self.matched += 1
        return True


class _Cut(Exception):
    """The response was cut on purpose; end the connection."""


class _Link:
    """A bandwidth cap shared by every connection, for one direction."""

    def __init__(self, bytes_per_s: int | None) -> None:
        self.bytes_per_s = bytes_per_s
        self._free_at = 0.0

    async def cross(self, size: int) -> None:
        """Wait until ``size`` bytes would have crossed the link."""
        if not self.bytes_per_s or not size:
            return
        now = time.monotonic()
        self._free_at = max(now, self._free_at) + size / self.bytes_per_s
        await asyncio.sleep(self._free_at - now)


# -- HTTP/1.1 framing ----------------------------------------------------------


def _parse_head(head: bytes) -> tuple[list[str], dict[str, str]] | None:
    """``(start line words, headers)`` of an HTTP head, or None if it is not one."""
    try:
        lines = head.decode("latin-1").split("\r\n")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes anything
        return None
    words = lines[0].split(" ", 2)
    if len(words) < 2 or not (
        words[0].startswith("HTTP/")
        or (len(words) == 3 and words[2].startswith("HTTP/"))
    ):
        return None
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return words, headers


def _body_length(
    headers: dict[str, str], *, response: bool, method: str = "", status: int = 0
) -> int | str:
    """How the body is framed: a byte count, ``"chunked"`` or ``"close"``."""
    if response and (method == "HEAD" or status in (204, 304) or 100 <= status < 200):
        return 0
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return "chunked"
    if "content-length" in headers:
        return int(headers["content-length"])
    return "close" if response else 0


async def _copy_body(reader: asyncio.StreamReader, framing: int | str, send) -> None:
    """Forward one message body from ``reader`` through ``await send(data)``."""
    if framing == "chunked":
        while True:
            line = await reader.readuntil(b"\r\n")
            await send(line)
            size = int(line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:  # trailer headers, then an empty line
                while True:
                    line = await reader.readuntil(b"\r\n")
                    await send(line)
                    if line == b"\r\n":
                        return
            await _copy_exactly(reader, size + 2, send)  # data and its CRLF
    elif framing == "close":
        while data := await reader.read(_CHUNK):
            await send(data)
    else:
        await _copy_exactly(reader, int(framing), send)


async def _copy_exactly(reader: asyncio.StreamReader, size: int, send) -> None:
    while size > 0:
        data = await reader.read(min(size, _CHUNK))
        if not data:
            raise asyncio.IncompleteReadError(b"", size)
        size -= len(data)
        await send(data)


# -- the proxy -----------------------------------------------------------------


class NetProxy:
    """Forward TCP connections to ``target``, with latency, a bandwidth cap, counts
    and dropped responses.

    Parameters
    ----------
    target
        ``(host, port)`` or ``"host:port"`` of the server (Azurite).
    host, port
        Where to listen; port 0 (the default) picks a free one (see :attr:`port`).
    latency
        Delay before connecting upstream and before the first byte of each
        response: seconds, or a string such as ``"30ms"``.
    bandwidth
        Bytes per second in each direction over all connections (``"20MB"``);
        None or 0: no cap.

    Use it as a context manager (or :meth:`start` / :meth:`stop`) to run it in a
    background thread, or ``await`` :meth:`serve` in an event loop of your own.
    """

    def __init__(
        self,
        target: tuple[str, int] | str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        latency: float | str | None = None,
        bandwidth: int | str | None = None,
    ) -> None:
        if isinstance(target, str):
            target_host, _, target_port = target.rpartition(":")
            target = (target_host or "127.0.0.1", int(target_port))
        self.target = target
        self.host = host
        self.port = port
        self.latency_s = _seconds(latency)
        self.bandwidth = _bytes(bandwidth)
        self._up = _Link(self.bandwidth)
        self._down = _Link(self.bandwidth)
        self._rules: list[DropRule] = []
        self._exchanges: list[Exchange] = []
        self._connections: list[Connection] = []
        self._lock = threading.Lock()
        self._tasks: set[asyncio.Task] = set()
        self._server: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._thread: threading.Thread | None = None

    # -- what tests read ---------------------------------------------------------

    @property
    def address(self) -> str:
        """``host:port`` the proxy listens on."""
        return f"{self.host}:{self.port}"

    def url(self, path: str = "") -> str:
        """``http://host:port/<path>``, e.g. ``url("devstoreaccount1")``."""
        return f"http://{self.address}/{path.lstrip('/')}"

    def drop(
        self,
        path: str,
        *,
        times: int | None = 1,
        after_bytes: int = 0,
        method: str = "GET",
        reset: bool = False,
    ) -> DropRule:
        """Cut the first ``times`` responses to ``method path`` after ``after_bytes``.

        See :class:`DropRule`; the rule is returned so that a test can read how
        many responses it cut (``rule.matched``).
        """
        rule = DropRule(path, times, after_bytes, method, reset)
        with self._lock:
            self._rules.append(rule)
        return rule

    def exchanges(
        self, method: str | None = None, path: str | None = None
    ) -> list[Exchange]:
        """The requests seen so far, in the order they arrived.

        ``method`` and ``path`` (a glob on :attr:`Exchange.path`) filter them.
        """
        with self._lock:
            found = list(self._exchanges)
        return [
            e
            for e in found
            if (method is None or e.method == method.upper())
            and (path is None or fnmatch.fnmatchcase(e.path, path))
        ]

    @property
    def connections(self) -> list[Connection]:
        """Every client connection so far, with its byte counts."""
        with self._lock:
            return list(self._connections)

    @property
    def bytes_up(self) -> int:
        """Bytes forwarded client -> server over all connections."""
        return sum(c.bytes_up for c in self.connections)

    @property
    def bytes_down(self) -> int:
        """Bytes forwarded server -> client over all connections."""
        return sum(c.bytes_down for c in self.connections)

    def stats(self) -> dict[str, Any]:
        """Totals and every exchange, as plain data (JSON-ready)."""
        exchanges = self.exchanges()
        return {
            "connections": len(self.connections),
            "bytes_up": self.bytes_up,
            "bytes_down": self.bytes_down,
            "requests": len(exchanges),
            "dropped": sum(e.dropped for e in exchanges),
            "exchanges": [asdict(e) for e in exchanges],
        }

    # -- running -------------------------------------------------------------------

    async def serve(self, ready: threading.Event | None = None) -> None:
        """Listen and forward until :meth:`stop` is called or the task is cancelled."""
        self._loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        self._server = await asyncio.start_server(
            self._accept, self.host, self.port, limit=_HEAD_LIMIT
        )
        self.port = self._server.sockets[0].getsockname()[1]
        if ready is not None:
            ready.set()
        try:
            await self._stop_event.wait()
        finally:
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def start(self, timeout_s: float = 10.0) -> NetProxy:
        """Run :meth:`serve` in a background thread; return once it listens."""
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            try:
                asyncio.run(self.serve(ready))
            except BaseException as exc:  # reported to start() below
                failure.append(exc)
                ready.set()

        self._thread = threading.Thread(target=run, name="netproxy", daemon=True)
        self._thread.start()
        if not ready.wait(timeout_s) or failure:
            self.stop()
            raise RuntimeError(f"netproxy did not start: {failure[:1]}")
        return self

    def stop(self) -> None:
        """Stop listening and end every connection (thread or loop mode)."""
        loop, event = self._loop, self._stop_event
        if loop is not None and event is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop just ended
                loop.call_soon_threadsafe(event.set)
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> NetProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- one connection ----------------------------------------------------------

    async def _accept(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        self._tasks.add(task)
        with self._lock:
            conn = Connection(len(self._connections))
            self._connections.append(conn)
        upstream_writer = None
        try:
            if self.latency_s:
                await asyncio.sleep(self.latency_s)  # the round trip to connect
            try:
                upstream_reader, upstream_writer = await asyncio.open_connection(
                    *self.target, limit=_HEAD_LIMIT
                )
            except OSError:
                return  # the client sees its connection closed, as with no server
            pending: collections.deque[Exchange] = collections.deque()
            requests = asyncio.create_task(
                self._requests(conn, client_reader, upstream_writer, pending)
            )
            try:
                await self._responses(conn, upstream_reader, client_writer, pending)
            finally:
                requests.cancel()
                await asyncio.gather(requests, return_exceptions=True)
        except (_Cut, ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass  # the proxy stops; asyncio's stream callback must not see this
        finally:
            conn.closed = True
            client_writer.close()
            if upstream_writer is not None:
                upstream_writer.transport.abort()  # what it still sends is unwanted
            self._tasks.discard(task)

    async def _requests(
        self,
        conn: Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        pending: collections.deque[Exchange],
    ) -> None:
        """Client -> server: forward requests, recording each one."""

        async def send(data: bytes) -> None:
            await self._up.cross(len(data))
            conn.bytes_up += len(data)  # counted first: a reader sees no lag
            writer.write(data)
            await writer.drain()

        try:
            while True:
                head = await self._read_head(reader)
                if head is None:
                    break
                parsed = _parse_head(head)
                if parsed is None:  # not HTTP: a plain byte stream from here on
                    await send(head)
                    await _copy_body(reader, "close", send)
                    break
                words, headers = parsed
                exchange = Exchange(conn.id, words[0].upper(), words[1], headers)
                with self._lock:
                    self._exchanges.append(exchange)
                pending.append(exchange)

                async def counted(data: bytes, exchange: Exchange = exchange) -> None:
                    exchange.request_bytes += len(data)
                    await send(data)

                await counted(head)
                await _copy_body(reader, _body_length(headers, response=False), counted)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        with contextlib.suppress(OSError, RuntimeError):
            if writer.can_write_eof():
                writer.write_eof()  # the server finishes what it has, then closes

    async def _responses(
        self,
        conn: Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        pending: collections.deque[Exchange],
    ) -> None:
        """Server -> client: forward responses, delayed, capped and maybe cut."""
        while True:
            head = await self._read_head(reader)
            if head is None:
                return
            if self.latency_s:
                await asyncio.sleep(self.latency_s)
            parsed = _parse_head(head)
            if parsed is None:
                await self._send_down(conn, writer, head)
                await _copy_body(
                    reader, "close", lambda d: self._send_down(conn, writer, d)
                )
                return
            words, headers = parsed
            status = int(words[1]) if words[1].isdigit() else 0
            interim = 100 <= status < 200
            if not pending:  # a response nobody asked for; record it all the same
                pending.append(Exchange(conn.id, "?", ""))
            exchange = pending[0] if interim else pending.popleft()
            exchange.status = status
            framing = _body_length(
                headers, response=True, method=exchange.method, status=status
            )
            if isinstance(framing, int):
                exchange.content_length = framing
            rule = None if interim else self._rule_for(exchange)
            await self._send_down(conn, writer, head, exchange, body=False)
            await self._forward_body(conn, reader, writer, exchange, framing, rule)
            if framing == "close":
                return

    async def _forward_body(
        self,
        conn: Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        exchange: Exchange,
        framing: int | str,
        rule: DropRule | None,
    ) -> None:
        """One response body to the client; with ``rule``, cut after its bytes."""

        async def send(data: bytes) -> None:
            if rule is not None:
                allowed = rule.after_bytes - exchange.response_body_bytes
                if len(data) > allowed:
                    await self._send_down(conn, writer, data[:allowed], exchange)
                    await self._cut(writer, exchange, rule)
            await self._send_down(conn, writer, data, exchange)

        await _copy_body(reader, framing, send)
        if rule is not None:  # a chunked body that ended before after_bytes
            with self._lock:
                rule.matched -= 1

    def _rule_for(self, exchange: Exchange) -> DropRule | None:
        with self._lock:
            return next((r for r in self._rules if r.claim(exchange)), None)

    async def _send_down(
        self,
        conn: Connection,
        writer: asyncio.StreamWriter,
        data: bytes,
        exchange: Exchange | None = None,
        *,
        body: bool = True,
    ) -> None:
        if not data:
            return
        await self._down.cross(len(data))
        # counted before they are sent: whoever got the bytes sees them counted
        conn.bytes_down += len(data)
        if exchange is not None:
            exchange.response_bytes += len(data)
            if body:
                exchange.response_body_bytes += len(data)
        writer.write(data)
        await writer.drain()

    async def _cut(
        self, writer: asyncio.StreamWriter, exchange: Exchange, rule: DropRule
    ) -> None:
        exchange.dropped = True
        transport = writer.transport
        transport.set_write_buffer_limits(high=0)
        await writer.drain()  # what was allowed through reaches the client first
        if rule.reset:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
            transport.abort()
        else:
            writer.close()
        raise _Cut

    @staticmethod
    async def _read_head(reader: asyncio.StreamReader) -> bytes | None:
        """The next message head, or None at the end of the stream."""
        try:
            return await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            return exc.partial or None
        except asyncio.LimitOverrunError:
            return await reader.read(_HEAD_LIMIT)


# -- as a process of its own -------------------------------------------------------


@dataclass
class NetProxyProcess:
    """A proxy running as a separate process (``python tests/netproxy.py``).

    Attributes
    ----------
    pid
        Its process id.
    port
        The 127.0.0.1 port it listens on.
    stats_path
        Where it writes :meth:`NetProxy.stats` when it stops (or None).
    """

    pid: int
    port: int
    stats_path: Path | None
    _proc: subprocess.Popen = field(repr=False)

    def url(self, path: str = "") -> str:
        """``http://127.0.0.1:port/<path>``."""
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}"

    def stop(self) -> dict[str, Any] | None:
        """Stop it by pid (SIGTERM, then SIGKILL) and return its stats, if any."""
        if self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
                self._proc.wait(timeout=10)
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        if self.stats_path is not None and self.stats_path.exists():
            return json.loads(self.stats_path.read_text())
        return None


def start_netproxy_process(
    target: str,
    *,
    latency: str | None = None,
    bandwidth: str | None = None,
    stats_path: Path | None = None,
    timeout_s: float = 30.0,
) -> NetProxyProcess:
    """Start ``python tests/netproxy.py`` forwarding to ``target`` (``host:port``).

    Returns once it listens; stop it with :meth:`NetProxyProcess.stop`.
    """
    args = [sys.executable, str(Path(__file__).resolve()), "--target", target]
    if latency:
        args += ["--latency", latency]
    if bandwidth:
        args += ["--bandwidth", bandwidth]
    if stats_path is not None:
        args += ["--stats", str(stats_path)]
    proc = subprocess.Popen(
        args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + timeout_s
    line = ""
    while proc.poll() is None:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([proc.stdout], [], [], left)[0]:
            break
        line = proc.stdout.readline()
        match = _LISTENING.search(line)
        if match:
            return NetProxyProcess(proc.pid, int(match.group(2)), stats_path, proc)
    proc.kill()
    proc.wait()
    proc.stdout.close()
    raise RuntimeError(f"netproxy did not start (exit {proc.returncode}): {line!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True, help="host:port to forward to")
    parser.add_argument("--listen", default="127.0.0.1:0", help="host:port")
    parser.add_argument("--latency", default=None, help="e.g. 30ms")
    parser.add_argument("--bandwidth", default=None, help="bytes/s each way, e.g. 20MB")
    parser.add_argument("--stats", default=None, help="write stats JSON here on exit")
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    proxy = NetProxy(
        args.target,
        host=host or "127.0.0.1",
        port=int(port),
        latency=args.latency,
        bandwidth=args.bandwidth,
    )

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, proxy.stop)
        ready = threading.Event()
        task = asyncio.create_task(proxy.serve(ready))
        while not ready.is_set() and not task.done():
            await asyncio.sleep(0.01)
        print(f"netproxy listening on {proxy.address}", flush=True)
        await task

    asyncio.run(serve())
    if args.stats:
        Path(args.stats).write_text(json.dumps(proxy.stats()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""How ``serve`` runs uvicorn: the event loop, the listener, and a clean drain.

**The listener.** libuv, under uvloop, accepts one connection per turn of the event
loop (libuv 1.45 and later) and leaves the rest in the kernel's queue until the next
turn. A turn of a busy worker serves every request that is ready, so a burst of new
connections to a saturated worker is taken in one at a time, a turn apart: a client
that connects while 50 others are busy waits up to half a second before its first
request is even read (bench/README.md has the numbers). ``Loop`` is uvloop with a
listener that accepts every pending connection when the socket is ready, up to the
listen backlog, as asyncio's own loop does; each accepted socket then becomes an
ordinary uvloop transport. It is used for plain TCP; TLS and Unix sockets keep
uvloop's server. A pod runs one worker, so greedy accepting takes nothing from
another process.

**The drain.** uvicorn re-raises SIGTERM once it has drained, so the process would end
"killed by signal 15"; ``DrainingServer`` ends a drained shutdown with exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import uvicorn
from uvicorn.server import HANDLED_SIGNALS

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a dependency on Linux and macOS
    uvloop = None  # type: ignore[assignment]

log = logging.getLogger("app.serving")

# What asyncio does when accept() fails for lack of descriptors or memory: stop
# accepting for a second instead of spinning on a socket that stays readable.
_RESOURCE_ERRORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_ACCEPT_RETRY_DELAY = 1.0


class AcceptingServer(asyncio.AbstractServer):
    """Listening sockets that accept all pending connections each time they are ready."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        sockets: list[socket.socket],
        backlog: int,
    ) -> None:
        self._loop = loop
        self._protocol_factory = protocol_factory
        self._sockets = sockets
        self._backlog = max(backlog, 1)
        self._serving = False
        self._closed = False
        self._handshakes: set[asyncio.Task[Any]] = set()

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return tuple(self._sockets)

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def is_serving(self) -> bool:
        return self._serving

    async def start_serving(self) -> None:
        self._start()

    def _start(self) -> None:
        if self._serving or self._closed:
            return
        self._serving = True
        for sock in self._sockets:
            self._loop.add_reader(sock.fileno(), self._accept, sock)

    def _pause(self) -> None:
        if not self._serving:
            return
        self._serving = False
        for sock in self._sockets:
            self._loop.remove_reader(sock.fileno())

    def _accept(self, listener: socket.socket) -> None:
        for _ in range(self._backlog):
            try:
                conn, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue  # the client gave up while queued: take the next one
            except OSError as exc:
                if exc.errno not in _RESOURCE_ERRORS:
                    raise
                log.error(
                    "cannot accept connections: %s; trying again in %.0f s",
                    exc.strerror,
                    _ACCEPT_RETRY_DELAY,
                )
                self._pause()
                self._loop.call_later(_ACCEPT_RETRY_DELAY, self._start)
                return
            conn.setblocking(False)
            task = self._loop.create_task(
                self._loop.connect_accepted_socket(self._protocol_factory, conn)
            )
            self._handshakes.add(task)
            task.add_done_callback(self._handshake_done)

    def _handshake_done(self, task: asyncio.Task[Any]) -> None:
        self._handshakes.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.warning("dropped a connection while opening it: %r", exc)

    def close(self) -> None:
        if self._closed:
            return
        self._pause()
        self._closed = True
        for sock in self._sockets:
            sock.close()

    async def wait_closed(self) -> None:
        # Open connections are uvicorn's to drain (it tracks them itself); here only
        # the connections still being set up are waited for.
        if self._handshakes:
            await asyncio.gather(*self._handshakes, return_exceptions=True)

    async def serve_forever(self) -> None:
        self._start()
        await asyncio.Event().wait()


def listen(host: str | None, port: int, backlog: int) -> list[socket.socket]:
    """Bound, listening, non-blocking sockets for every address of ``host``: one per
    address, as asyncio binds them (IPv6 sockets take IPv6 only, so "::" and "0.0.0.0"
    can both be bound)."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    try:
        for family, _, _, _, address in dict.fromkeys(infos):
            sockets.append(socket.create_server(address, family=family, backlog=backlog))
            sockets[-1].setblocking(False)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


if uvloop is not None:

    class Loop(uvloop.Loop):
        """uvloop, whose plain TCP servers accept every pending connection per turn."""

        async def create_server(  # type: ignore[override]
            self,
            protocol_factory: Callable[[], asyncio.BaseProtocol],
            host: str | None = None,
            port: int | None = None,
            *,
            sock: socket.socket | None = None,
            backlog: int = 100,
            ssl: Any = None,
            reuse_port: bool | None = None,
            start_serving: bool = True,
            **kwargs: Any,
        ) -> asyncio.AbstractServer:
            plain_tcp = (
                ssl is None
                and not reuse_port
                and not kwargs
                and (sock is None or sock.family in (socket.AF_INET, socket.AF_INET6))
            )
            if not plain_tcp:
                uvloop_server: Any = super().create_server
                return await uvloop_server(  # type: ignore[no-any-return]
                    protocol_factory,
                    host,
                    port,
                    sock=sock,
                    backlog=backlog,
                    ssl=ssl,
                    reuse_port=reuse_port,
                    start_serving=start_serving,
                    **kwargs,
                )
            if sock is not None:
                sock.listen(backlog)
                sock.setblocking(False)
                sockets = [sock]
            else:
                sockets = listen(host, port or 0, backlog)
            server = AcceptingServer(self, protocol_factory, sockets, backlog)
            if start_serving:
                server._start()
            return server


def new_event_loop() -> asyncio.AbstractEventLoop:
    """The loop factory ``serve`` gives uvicorn for ``FASTSHIP_EVENT_LOOP=uvloop``."""
    if uvloop is None:
        raise RuntimeError("uvloop is not installed; set FASTSHIP_EVENT_LOOP=asyncio")
    return Loop()


def uvicorn_loop(choice: str) -> str:
    """uvicorn's ``loop`` option for a ``FASTSHIP_EVENT_LOOP`` value."""
    if choice == "asyncio" or (choice == "auto" and uvloop is None):
        return "asyncio"
    return f"{__name__}:new_event_loop"


def loop_name(loop: asyncio.AbstractEventLoop) -> str:
    """``uvloop`` or ``asyncio``, for the start-up log line."""
    return "uvloop" if uvloop is not None and isinstance(loop, uvloop.Loop) else "asyncio"


class DrainingServer(uvicorn.Server):
    """uvicorn's server, ending a drained shutdown with exit 0 rather than SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # uvicorn's own version re-raises the signals it caught once the server has
        # stopped; this one installs the same handler and restores the previous ones,
        # without the re-raise.
        if threading.current_thread() is not threading.main_thread():
            yield  # signals can only be handled in the main thread
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in HANDLED_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

"""serve's event loop: uvloop with a listener that accepts every pending connection.

These run the real loop on real loopback sockets.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import cast

import pytest
import uvloop

from app.core import serving


class Recorder(asyncio.Protocol):
    """Counts connections and echoes what it is sent, upper-cased."""

    made: list[asyncio.Transport] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        Recorder.made.append(self.transport)

    def data_received(self, data: bytes) -> None:
        self.transport.write(data.upper())


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    Recorder.made = []
    loop = serving.new_event_loop()
    try:
        yield loop
    finally:
        for transport in Recorder.made:
            transport.close()
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()


async def _turns(n: int) -> None:
    """Lets the loop go round n times."""
    for _ in range(n):
        await asyncio.sleep(0)


def test_the_loop_is_uvloop_and_says_so(loop: asyncio.AbstractEventLoop) -> None:
    assert isinstance(loop, uvloop.Loop)
    assert serving.loop_name(loop) == "uvloop"
    assert serving.loop_name(asyncio.new_event_loop()) == "asyncio"
    assert serving.uvicorn_loop("uvloop") == "app.core.serving:new_event_loop"
    assert serving.uvicorn_loop("auto") == "app.core.serving:new_event_loop"
    assert serving.uvicorn_loop("asyncio") == "asyncio"


def test_a_burst_of_connections_is_accepted_within_a_few_turns(
    loop: asyncio.AbstractEventLoop,
) -> None:
    # uvloop's own server (libuv >= 1.45) takes one connection per turn of the loop:
    # after five turns it would have five of these forty.
    server = loop.run_until_complete(loop.create_server(Recorder, "127.0.0.1", 0, backlog=128))
    assert isinstance(server, serving.AcceptingServer)
    port = server.sockets[0].getsockname()[1]
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(40)]
    try:
        loop.run_until_complete(_turns(5))
        assert len(Recorder.made) == 40
    finally:
        for client in clients:
            client.close()
        server.close()
        loop.run_until_complete(server.wait_closed())


def test_accepted_connections_are_uvloop_transports_without_nagle(
    loop: asyncio.AbstractEventLoop,
) -> None:
    server = loop.run_until_complete(loop.create_server(Recorder, "127.0.0.1", 0))
    port = server.sockets[0].getsockname()[1]

    async def exchange() -> tuple[bytes, int]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"ping")
        answer = await reader.readexactly(4)
        accepted = Recorder.made[0].get_extra_info("socket")
        nodelay = accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        writer.close()
        return answer, nodelay

    try:
        assert loop.run_until_complete(exchange()) == (b"PING", 1)
        assert type(Recorder.made[0]).__module__.startswith("uvloop")
    finally:
        server.close()


def test_close_stops_accepting(loop: asyncio.AbstractEventLoop) -> None:
    server = loop.run_until_complete(loop.create_server(Recorder, "127.0.0.1", 0))
    port = server.sockets[0].getsockname()[1]
    assert server.is_serving()
    server.close()
    loop.run_until_complete(server.wait_closed())
    assert not server.is_serving()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_a_given_listening_socket_is_served(loop: asyncio.AbstractEventLoop) -> None:
    # uvicorn passes its own socket this way when it runs several workers.
    sock = socket.create_server(("127.0.0.1", 0))
    server = loop.run_until_complete(loop.create_server(Recorder, sock=sock, backlog=16))
    try:
        assert isinstance(server, serving.AcceptingServer)
        client = socket.create_connection(sock.getsockname())
        loop.run_until_complete(_turns(3))
        assert len(Recorder.made) == 1
        client.close()
    finally:
        server.close()


def test_tls_and_unix_sockets_keep_uvloops_server(
    loop: asyncio.AbstractEventLoop, tmp_path: object
) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls = loop.run_until_complete(loop.create_server(Recorder, "127.0.0.1", 0, ssl=context))
    unix = loop.run_until_complete(
        loop.create_server(Recorder, sock=_unix_listener(f"{tmp_path}/s.sock"))
    )
    try:
        assert not isinstance(tls, serving.AcceptingServer)
        assert not isinstance(unix, serving.AcceptingServer)
    finally:
        tls.close()
        unix.close()


def _unix_listener(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.listen()
    return sock


def test_out_of_descriptors_pauses_accepting_and_resumes() -> None:
    # Run apart: the test lowers the process's descriptor limit so that accept()
    # really fails with EMFILE, then raises it again.
    script = textwrap.dedent(
        """
        import asyncio, json, logging, os, resource, socket
        from app.core import serving

        serving._ACCEPT_RETRY_DELAY = 0.2
        records = []
        logging.getLogger("app.serving").addHandler(logging.Handler())
        logging.getLogger("app.serving").handlers[0].emit = records.append
        made = []

        class P(asyncio.Protocol):
            def connection_made(self, transport):
                made.append(transport)

        async def main():
            loop = asyncio.get_running_loop()
            server = await loop.create_server(P, "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
            lowest_free = os.dup(0)
            os.close(lowest_free)
            soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, hard))
            for _ in range(5):
                await asyncio.sleep(0)
            paused = not server.is_serving()
            during = len(made)
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
            await asyncio.sleep(0.6)
            print(json.dumps({
                "paused": paused,
                "accepted_while_out": during,
                "accepted_after": len(made),
                "serving_after": server.is_serving(),
                "logged": [r.getMessage() for r in records],
            }))
            for c in clients:
                c.close()
            server.close()

        with asyncio.Runner(loop_factory=serving.new_event_loop) as runner:
            runner.run(main())
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert outcome["paused"] is True
    assert outcome["accepted_while_out"] == 0
    assert outcome["accepted_after"] == 3
    assert outcome["serving_after"] is True
    assert any("cannot accept connections" in line for line in outcome["logged"])

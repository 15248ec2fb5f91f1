"""The order service's keep-alive client to inventory (order_service.http_pool) against a real socket server
on loopback: answers read by length and by chunks, connections kept and reused, a connection the server
closed while idle replaced without a failed call, old connections reopened (the balance across replicas),
and every failure to get an answer raised as TransportError."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from order_service.http_pool import KeepAlivePool, TransportError

Reply = Callable[[bytes], bytes | None]  # the request head and body -> the raw answer (None: close, say nothing)


class Server:
    """Answers each request on a connection with `reply`; counts the connections it accepted."""

    def __init__(self, reply: Reply, *, close_after_answer: bool = False) -> None:
        self.reply, self.close_after_answer = reply, close_after_answer
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.accepted = 0
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            buffer = b""
            while True:
                while b"\r\n\r\n" not in buffer:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(buffer) < length:
                    buffer += conn.recv(65536)
                body, buffer = buffer[:length], buffer[length:]
                answer = self.reply(head + b"\r\n\r\n" + body)
                if answer is None:
                    return
                conn.sendall(answer)
                if self.close_after_answer:
                    return

    def close(self) -> None:
        self.listener.close()


def _json(body: bytes, status: str = "200 OK", extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 " + status.encode() + b"\r\ncontent-length: %d\r\n" % len(body) + extra + b"\r\n" + body


def echo(request: bytes) -> bytes:
    """The request's body back, as JSON would be."""
    return _json(request.partition(b"\r\n\r\n")[2] or b"{}")


@pytest.fixture
def serve() -> Iterator[Callable[..., Server]]:
    servers: list[Server] = []

    def start(reply: Reply = echo, **kwargs: bool) -> Server:
        servers.append(Server(reply, **kwargs))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def pool(server_url: str, **kwargs: float) -> KeepAlivePool:
    options = {"maxsize": 4, "connect_timeout": 1.0, "read_timeout": 1.0, "max_age": 30.0, **kwargs}
    return KeepAlivePool(server_url, **options)  # type: ignore[arg-type]  # the options are all numbers


def test_calls_reuse_one_kept_connection(serve: Callable[..., Server]) -> None:
    server = serve()
    client = pool(server.url)
    for n in range(5):
        answer = client.request("POST", f"{server.url}/x", body=b'{"n":%d}' % n, headers={"A": "b"})
        assert (answer.status, answer.data) == (200, b'{"n":%d}' % n)
    assert server.accepted == 1


def test_a_connection_the_server_closed_while_idle_is_replaced_without_a_failed_call(
    serve: Callable[..., Server],
) -> None:
    server = serve(close_after_answer=True)  # no Connection: close said: the server just hangs up after each answer
    client = pool(server.url)
    for _ in range(3):
        assert client.request("GET", f"{server.url}/x", body=None, headers={}).status == 200
    assert server.accepted == 3


def test_an_old_connection_is_reopened(serve: Callable[..., Server]) -> None:
    server = serve()
    client = pool(server.url, max_age=0.0)
    for _ in range(3):
        assert client.request("GET", f"{server.url}/x", body=None, headers={}).status == 200
    assert server.accepted == 3


def test_a_chunked_answer_is_read_whole_and_the_connection_kept(serve: Callable[..., Server]) -> None:
    chunked = b"HTTP/1.1 409 Conflict\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\n"
    server = serve(lambda _request: chunked)
    client = pool(server.url)
    for _ in range(2):
        answer = client.request("GET", f"{server.url}/x", body=None, headers={})
        assert (answer.status, answer.data) == (409, b"hello world")
    assert server.accepted == 1


def test_connection_close_is_honoured(serve: Callable[..., Server]) -> None:
    server = serve(lambda _request: _json(b"{}", extra=b"connection: close\r\n"))
    client = pool(server.url)
    for _ in range(2):
        assert client.request("GET", f"{server.url}/x", body=None, headers={}).status == 200
    assert server.accepted == 2


def test_the_base_path_and_headers_are_sent(serve: Callable[..., Server]) -> None:
    seen: list[bytes] = []
    server = serve(lambda request: seen.append(request) or _json(b"{}"))
    client = pool(f"{server.url}/base/")
    client.request("POST", f"{server.url}/base/inventory/reserve", body=b"{}", headers={"X-Request-ID": "r1"})
    head = seen[0].partition(b"\r\n\r\n")[0].split(b"\r\n")
    assert head[0] == b"POST /base/inventory/reserve HTTP/1.1"
    assert {b"Host: 127.0.0.1:%d" % server.port, b"X-Request-ID: r1", b"Content-Length: 2"} <= set(head)


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(lambda _request: None, id="closed-without-answer"),
        pytest.param(lambda _request: b"SSH-2.0-OpenSSH\r\n\r\n", id="not-http"),
        pytest.param(lambda _request: b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n{}", id="cut-short"),
    ],
)
def test_an_answer_that_does_not_come_whole_is_a_transport_error(serve: Callable[..., Server], reply: Reply) -> None:
    server = serve(reply, close_after_answer=True)
    with pytest.raises(TransportError):
        pool(server.url).request("GET", f"{server.url}/x", body=None, headers={})


def test_a_server_that_does_not_answer_in_time_is_a_transport_error(serve: Callable[..., Server]) -> None:
    gate = threading.Event()
    server = serve(lambda _request: gate.wait(5) and None)
    try:
        with pytest.raises(TransportError):
            pool(server.url, read_timeout=0.2).request("GET", f"{server.url}/x", body=None, headers={})
    finally:
        gate.set()


def test_nothing_listening_is_a_transport_error() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
    with pytest.raises(TransportError):
        pool(f"http://127.0.0.1:{port}").request("GET", f"http://127.0.0.1:{port}/x", body=None, headers={})

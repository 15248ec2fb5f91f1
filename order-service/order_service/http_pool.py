"""A small HTTP/1.1 keep-alive client for one plain-HTTP host: what the order service needs to call inventory.

urllib3 (over http.client, which parses each answer's headers with the email package) was ~15 % of the
order service's CPU per order. Our calls are one small request and one small answer each, so this sends the
request in one write and reads the answer by its Content-Length (or chunks, or to the close), on sockets
kept open between calls.

- One idle connection per app thread at most is kept (LIFO, so the warmest is reused); a burst beyond that
  opens extra connections, which are closed after their call.
- A kept connection the server has closed meanwhile (its keep-alive timeout) is noticed when it is taken out
  (a non-blocking peek reads the end of the stream) and replaced, as urllib3 does.
- A connection older than `max_age` is closed when taken out and a new one opened: behind a Kubernetes
  Service a connection is bound to the replica it reached, so without that a replica added later would get
  none of the keep-alive traffic. That is the balance.
- Any failure (connect or read timeout, reset, an answer that is not HTTP) raises TransportError, and the
  connection is dropped. Nothing is retried here: the caller decides (inventory_client's retry loop).
"""

from __future__ import annotations

import select
import socket
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

_MAX_HEAD = 64 * 1024
_MAX_BODY = 16 * 1024 * 1024


class TransportError(Exception):
    """The call did not get an answer: the connection could not be made, broke, timed out, or the answer
    was not HTTP."""


@dataclass(frozen=True)
class Answer:
    status: int
    data: bytes


class _Connection:
    __slots__ = ("opened_at", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.opened_at = time.monotonic()


class KeepAlivePool:
    def __init__(self, base: str, *, maxsize: int, connect_timeout: float, read_timeout: float, max_age: float):
        parts = urlsplit(base)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"KeepAlivePool takes a plain http:// URL, not {base!r}")
        self._base = base.rstrip("/")
        self._address = (parts.hostname, parts.port or 80)
        self._prefix = parts.path.rstrip("/")
        self._host_header = f"Host: {parts.netloc}\r\n".encode("latin-1")
        self._maxsize = maxsize
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._max_age = max_age
        self._idle: list[_Connection] = []
        self._lock = threading.Lock()

    def request(self, method: str, url: str, *, body: bytes | None, headers: dict[str, str]) -> Answer:
        path = self._prefix + url[len(self._base) :] if url.startswith(self._base) else url
        head = [f"{method} {path} HTTP/1.1\r\n".encode("latin-1"), self._host_header]
        head += [f"{name}: {value}\r\n".encode("latin-1") for name, value in headers.items()]
        payload = body or b""
        if payload or method in ("POST", "PUT", "PATCH"):
            head.append(f"Content-Length: {len(payload)}\r\n".encode("latin-1"))
        head.append(b"\r\n")
        conn = self._take()
        try:
            conn.sock.sendall(b"".join(head) + payload)
            status, keep, data = _read_answer(conn.sock, method)
        except (OSError, TransportError, ValueError) as exc:
            conn.sock.close()
            if isinstance(exc, TransportError):
                raise
            raise TransportError(f"{type(exc).__name__}: {exc}") from exc
        if keep:
            self._give_back(conn)
        else:
            conn.sock.close()
        return Answer(status, data)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.sock.close()

    # --- connections -----------------------------------------------------------------------------------------

    def _take(self) -> _Connection:
        now = time.monotonic()
        while True:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                return self._open()
            if now - conn.opened_at <= self._max_age and _still_open(conn.sock):
                return conn
            conn.sock.close()

    def _give_back(self, conn: _Connection) -> None:
        with self._lock:
            if len(self._idle) < self._maxsize:
                self._idle.append(conn)
                return
        conn.sock.close()

    def _open(self) -> _Connection:
        try:
            sock = socket.create_connection(self._address, timeout=self._connect_timeout)
        except OSError as exc:
            raise TransportError(f"connect to {self._address[0]}:{self._address[1]}: {type(exc).__name__}") from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(self._read_timeout)
        return _Connection(sock)


def _still_open(sock: socket.socket) -> bool:
    """Whether a kept connection can carry a request: nothing to read on it. Readable between calls means
    the server closed it (or sent what no request asked for): either way it is not used again."""
    poll = select.poll()
    poll.register(sock, select.POLLIN)
    return not poll.poll(0)


def _read_answer(sock: socket.socket, method: str) -> tuple[int, bool, bytes]:
    """Status, whether the connection may be kept, and the body of one answer."""
    buffer = b""
    while (end := buffer.find(b"\r\n\r\n")) < 0:
        if len(buffer) > _MAX_HEAD:
            raise TransportError("answer head too large")
        chunk = sock.recv(65536)
        if not chunk:
            raise TransportError("connection closed before an answer")
        buffer += chunk
    lines = buffer[:end].decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    if not version.startswith("HTTP/1.") or not rest[:3].isdigit():
        raise TransportError(f"not an HTTP answer: {lines[0][:60]!r}")
    status = int(rest[:3])
    length: int | None = None
    chunked = False
    keep = version == "HTTP/1.1"
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value.strip())
        elif name == "transfer-encoding":
            chunked = "chunked" in value.lower()
        elif name == "connection":
            keep = value.strip().lower() != "close" and (keep or value.strip().lower() == "keep-alive")
    rest_bytes = buffer[end + 4 :]
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return status, keep, b""
    if chunked:
        return status, keep, _read_chunked(sock, rest_bytes)
    if length is not None:
        if length > _MAX_BODY:
            raise TransportError("answer body too large")
        return status, keep, _read_exactly(sock, rest_bytes, length)
    return status, False, _read_to_close(sock, rest_bytes)  # no length: the body ends with the connection


def _read_exactly(sock: socket.socket, have: bytes, length: int) -> bytes:
    parts = [have]
    got = len(have)
    while got < length:
        chunk = sock.recv(max(65536, length - got))
        if not chunk:
            raise TransportError("connection closed in the middle of an answer")
        parts.append(chunk)
        got += len(chunk)
    data = b"".join(parts)
    if len(data) != length:
        raise TransportError("more bytes than the answer's Content-Length")
    return data


def _read_to_close(sock: socket.socket, have: bytes) -> bytes:
    parts = [have]
    size = len(have)
    while chunk := sock.recv(65536):
        size += len(chunk)
        if size > _MAX_BODY:
            raise TransportError("answer body too large")
        parts.append(chunk)
    return b"".join(parts)


def _read_chunked(sock: socket.socket, have: bytes) -> bytes:
    buffer = have
    body: list[bytes] = []
    size_total = 0

    def fill(needed: int) -> None:
        nonlocal buffer
        while len(buffer) < needed:
            chunk = sock.recv(65536)
            if not chunk:
                raise TransportError("connection closed in the middle of a chunked answer")
            buffer += chunk

    while True:
        while (eol := buffer.find(b"\r\n")) < 0:
            fill(len(buffer) + 1)
        size = int(buffer[:eol].split(b";", 1)[0].strip() or b"0", 16)
        buffer = buffer[eol + 2 :]
        if size == 0:  # the last chunk; trailers, if any, end with an empty line
            while not buffer.startswith(b"\r\n") and b"\r\n\r\n" not in buffer:
                fill(len(buffer) + 1)
            return b"".join(body)
        fill(size + 2)
        body.append(buffer[:size])
        size_total += size
        if size_total > _MAX_BODY:
            raise TransportError("answer body too large")
        buffer = buffer[size + 2 :]

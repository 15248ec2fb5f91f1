"""The inventory client over real sockets (libcurl), against a small HTTP/1.1 server on loopback that records
what reaches it: calls are sent as made, keep their connection alive, give up on a dead or silent peer, and
move to a new connection once the old one is too old."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from order_service import inventory_client
from order_service.domain import Line
from order_service.inventory_client import InventoryClient, InventoryRefused, InventoryUnavailable
from order_service.settings import Settings

TOKEN = "transport-test-token"


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Peer:
    """What the server saw, and how it answers: `status` and `answer`, after `delay` seconds."""

    url: str = ""
    calls: list[Seen] = field(default_factory=list)
    connections: int = 0
    status: int = 200
    answer: dict[str, Any] = field(default_factory=lambda: {"ok": True})
    delay: float = 0.0
    close_after_answer: bool = False


@pytest.fixture
def peer() -> Iterator[Peer]:
    state = Peer()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive

        def setup(self) -> None:
            super().setup()
            state.connections += 1

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            state.calls.append(Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            time.sleep(state.delay)
            data = json.dumps(state.answer).encode()
            self.send_response(state.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if state.close_after_answer:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.handle_error = lambda request, address: None  # type: ignore[method-assign]  # a client that gave up
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def _client(url: str, tmp_path: Path, **overrides: Any) -> InventoryClient:
    settings: dict[str, Any] = {
        "service_token": TOKEN,
        "inventory_url": url,
        "inventory_retries": 0,
        "port": 0,
        "scratch_dir": tmp_path,
        **overrides,
    }
    return InventoryClient(Settings(**settings))


def test_calls_arrive_as_made_and_share_one_kept_connection(peer: Peer, tmp_path: Path) -> None:
    client = _client(peer.url, tmp_path)
    assert client.reserve("ORD-000000000001", [Line("P001", 2)]) == {"ok": True}
    assert client.update_product("P 1", {"price": 3.5}, admin_token="admin-token") == {"ok": True}
    assert client.reservation("ORD-000000000001") == {"ok": True}
    client.fold_ledger()

    assert [(c.method, c.path) for c in peer.calls] == [
        ("POST", "/inventory/reserve"),
        ("PATCH", "/inventory/P%201"),
        ("GET", "/inventory/reservations/ORD-000000000001"),
        ("POST", "/inventory/ledger/fold"),
    ]
    reserve, update, read, fold = peer.calls
    assert json.loads(reserve.body) == {"order_id": "ORD-000000000001", "product_id": "P001", "quantity": 2}
    assert json.loads(update.body) == {"price": 3.5}
    assert read.body == b"" and fold.body == b""
    assert reserve.headers["authorization"] == f"Bearer {TOKEN}"
    assert update.headers["authorization"] == "Bearer admin-token"  # the operator's own token
    assert reserve.headers["content-type"] == "application/json"
    assert "expect" not in reserve.headers
    assert peer.connections == 1


def test_an_answer_of_4xx_is_inventorys_refusal(peer: Peer, tmp_path: Path) -> None:
    peer.status = 409
    peer.answer = {"error": {"code": "insufficient_stock", "message": "Not enough stock.", "details": []}}
    with pytest.raises(InventoryRefused) as refused:
        _client(peer.url, tmp_path).reserve("ORD-000000000002", [Line("P001", 1)])
    assert (refused.value.status, refused.value.code, refused.value.details) == (409, "insufficient_stock", [])


def test_a_connection_the_server_closed_is_not_reused(peer: Peer, tmp_path: Path) -> None:
    peer.close_after_answer = True
    client = _client(peer.url, tmp_path)
    for n in range(3):
        assert client.reserve(f"ORD-00000000001{n}", [Line("P001", 1)]) == {"ok": True}
    assert peer.connections == 3
    assert len(peer.calls) == 3  # each sent once


def test_a_kept_connection_is_left_once_older_than_its_age(
    peer: Peer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inventory_client, "CONNECTION_MAX_AGE_SECONDS", 2.0)  # libcurl takes whole seconds
    client = _client(peer.url, tmp_path)
    client.reserve("ORD-000000000020", [Line("P001", 1)])
    client.reserve("ORD-000000000021", [Line("P001", 1)])
    assert peer.connections == 1
    time.sleep(3.1)
    client.reserve("ORD-000000000022", [Line("P001", 1)])
    assert peer.connections == 2


def test_a_refused_connection_is_an_outage(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(InventoryUnavailable):
        _client(f"http://127.0.0.1:{port}", tmp_path).reserve("ORD-000000000030", [Line("P001", 1)])


def test_a_silent_server_is_an_outage_once_the_timeout_passes(peer: Peer, tmp_path: Path) -> None:
    peer.delay = 4.0
    client = _client(peer.url, tmp_path, inventory_connect_timeout=0.5, inventory_read_timeout=1.0)
    with pytest.raises(InventoryUnavailable):
        client.reserve("ORD-000000000040", [Line("P001", 1)])
    peer.delay = 0.0
    assert client.reserve("ORD-000000000041", [Line("P001", 1)]) == {"ok": True}  # a new connection serves

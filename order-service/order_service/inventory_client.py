"""The order service's one way to reach inventory: a pooled keep-alive client with timeouts, bounded
jittered retries (every inventory write is idempotent by order_id, so a retry is safe) and a circuit
breaker that fails fast while inventory is down.

The calls go over libcurl (pycurl): one handle per call in flight, each keeping its keep-alive connection,
so the pool holds about one connection per app thread. A connection is not reused once it is older than
CONNECTION_MAX_AGE_SECONDS: behind a Kubernetes Service a connection is bound to the replica it was opened
to, so without that a replica added later would get none of the keep-alive traffic."""

from __future__ import annotations

import logging
import random
import ssl
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

import orjson
import pycurl
from circuitbreaker import CircuitBreaker, CircuitBreakerError

from order_service import metrics
from order_service.domain import Line
from order_service.settings import Settings
from service_common.batching import GroupCommit
from service_common.logs import REQUEST_ID_HEADER, current_request_id
from service_common.tracing import client_span

log = logging.getLogger(__name__)

_RETRYABLE_STATUSES = frozenset({502, 503, 504})

# A keep-alive connection to inventory is reopened once older than this (see the module's docstring).
CONNECTION_MAX_AGE_SECONDS = 30.0
# Retries wait a random time up to 50 ms, 100 ms, 200 ms, … (at most `inventory_backoff_max`): full jitter.
_BACKOFF_FIRST = 0.05


class InventoryUnavailable(Exception):
    """Inventory could not be reached, timed out, answered 5xx, or the circuit is open."""


class InventoryRefused(Exception):
    """Inventory answered with a 4xx: a decision, not an outage."""

    def __init__(self, status: int, code: str, message: str, details: list[Any] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details  # insufficient_stock: each short line

    @classmethod
    def answered(cls, status: int, body: Any) -> InventoryRefused:
        """The refusal a 4xx answer's body (`{"error": {"code", "message", "details"?}}`) says."""
        error = body.get("error") if isinstance(body, dict) else None
        error = error if isinstance(error, dict) else {}
        details = error.get("details")
        return cls(
            status,
            str(error.get("code", "refused")),
            str(error.get("message", "")),
            details if isinstance(details, list) else None,
        )

    @property
    def missing(self) -> bool:
        """Inventory does not know what was named (the product)."""
        return self.status == 404

    @property
    def rejects_order(self) -> bool:
        """Inventory's decision on this order (404, 409), unlike a fault of ours (401: a token mismatch) or a
        `released` tombstone (the worker already failed the order)."""
        return self.status in (404, 409) and self.code != "released"


class _Retryable(Exception):
    pass


class _NoBatchRoute(Exception):
    """Inventory does not know the batch route, or the batch is too large for it: each reserve goes alone."""


_ReserveAsk = tuple[str, Sequence[Line]]


def _reserve_body(order_id: str, lines: Sequence[Line]) -> dict[str, Any]:
    body: dict[str, Any] = {"order_id": order_id}
    if len(lines) == 1:  # the body from before carts, which every inventory release takes
        body.update(product_id=lines[0].product_id, quantity=lines[0].quantity)
    else:
        body["items"] = [{"product_id": line.product_id, "quantity": line.quantity} for line in lines]
    return body


def _reserve_outcome(result: Any) -> dict[str, Any] | Exception:
    """One reserve's answer within a batch's: its reservation, or the refusal its own call would have raised."""
    status = result.get("status") if isinstance(result, dict) else None
    if status in (200, 201) and isinstance(result.get("reservation"), dict):
        reservation: dict[str, Any] = result["reservation"]
        return reservation
    if isinstance(status, int) and 400 <= status < 500:
        return InventoryRefused.answered(status, result)
    return InventoryUnavailable(f"POST /inventory/reserve/batch: a reserve answered {status}")


class TransportError(Exception):
    """The call did not get through: refused, reset, timed out. Inventory may or may not have acted on it."""


class Answer(Protocol):
    @property
    def status(self) -> int: ...

    @property
    def data(self) -> bytes: ...


class Transport(Protocol):
    """What carries a call to inventory: libcurl's handles over sockets, or (the fast tests) the inventory app
    itself in the same process. It raises TransportError when the call did not get through."""

    def request(self, method: str, url: str, *, body: bytes | None, headers: dict[str, str]) -> Answer: ...


class InventoryClient:
    def __init__(self, settings: Settings, transport: Transport | None = None) -> None:
        self._base = settings.inventory_url.rstrip("/")
        self._headers = {"Content-Type": "application/json"}
        if settings.service_token:
            self._headers["Authorization"] = f"Bearer {settings.service_token}"
        self._pool: Transport = transport or _CurlPool(
            keep=max(settings.threads, 4),
            connect_timeout=settings.inventory_connect_timeout,
            read_timeout=settings.inventory_read_timeout,
            tls=self._base.startswith("https://"),
        )
        self._attempts = settings.inventory_retries + 1
        self._backoff_max = settings.inventory_backoff_max
        # No lock around the call: pybreaker holds one for the whole call, which let each server worker
        # have one inventory call in flight at a time. Only connection failures, timeouts and 5xx count;
        # a 4xx is inventory's healthy answer. Open: fail fast; after the reset time, calls probe again.
        self.breaker = CircuitBreaker(
            failure_threshold=settings.breaker_fail_max,
            recovery_timeout=settings.breaker_reset_seconds,
            expected_exception=(_Retryable, InventoryUnavailable),
            name="inventory",
        )
        self._guarded = self.breaker.decorate(self._with_retries)
        # Reserves coalesce while a call is out (service_common.batching: no timer, a lone one goes at once).
        self._reserves: GroupCommit[_ReserveAsk, dict[str, Any]] | None = (
            GroupCommit(self._reserve_together, settings.inventory_reserve_batch)
            if settings.inventory_reserve_batch > 1
            else None
        )

    # --- the calls -------------------------------------------------------------------------------------------

    def reserve(self, order_id: str, lines: Sequence[Line]) -> dict[str, Any]:
        """Hold stock for an order: its reservation. The reserves of this process's orders placed at the same
        moment go as one call (see _reserve_together), each still answered on its own."""
        if self._reserves is None:
            return self._reserve_alone((order_id, lines))
        outcome = self._reserves.submit((order_id, lines))
        if isinstance(outcome, _NoBatchRoute):
            return self._reserve_alone((order_id, lines))
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def _reserve_alone(self, ask: _ReserveAsk) -> dict[str, Any]:
        return self._call("POST", "/inventory/reserve", _reserve_body(*ask))

    def _reserve_together(self, asks: list[_ReserveAsk]) -> list[dict[str, Any] | Exception]:
        """Reserves that queued while the previous call was out, as one call: `POST /inventory/reserve` for a
        lone one, else `POST /inventory/reserve/batch`, whose answer holds each reserve's own answer. An
        outage fails every one of them (as it would have failed each); retrying the call is safe, since each
        reserve is idempotent by order id."""
        if len(asks) == 1:
            metrics.reserves_per_call(1)
            try:
                return [self._reserve_alone(asks[0])]
            except (InventoryRefused, InventoryUnavailable) as exc:
                return [exc]
        body = {"reservations": [_reserve_body(*ask) for ask in asks]}
        try:
            payload = self._call("POST", "/inventory/reserve/batch", body, operation="reserve_batch")
        except InventoryRefused as exc:
            # 404/405: an inventory from before the batch route (a rolling upgrade); 413: carts so large that
            # together they exceed inventory's MAX_BODY_BYTES (one alone, at most MAX_LINES lines, never does).
            if exc.status in (404, 405, 413):
                return [_NoBatchRoute()] * len(asks)
            return [exc] * len(asks)
        except InventoryUnavailable as exc:
            return [exc] * len(asks)
        results = payload.get("results") if isinstance(payload, dict) else None
        if not isinstance(results, list) or len(results) != len(asks):
            return [InventoryUnavailable("POST /inventory/reserve/batch: unreadable answer")] * len(asks)
        metrics.reserves_per_call(len(asks))
        return [_reserve_outcome(result) for result in results]

    def release(self, order_id: str, product_id: str | None = None, quantity: int | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"order_id": order_id}
        if product_id is not None:
            body["product_id"] = product_id
        if quantity is not None:
            body["quantity"] = quantity
        return self._call("POST", "/inventory/release", body)

    def commit(self, order_id: str) -> dict[str, Any]:
        return self._call("POST", "/inventory/commit", {"order_id": order_id})

    def reservation(self, order_id: str) -> dict[str, Any] | None:
        try:
            return self._call("GET", f"/inventory/reservations/{order_id}")
        except InventoryRefused as exc:
            if exc.status == 404:
                return None
            raise

    def stock_report(self) -> dict[str, Any]:
        return self._call("GET", "/inventory/audit")

    def fold_ledger(self) -> dict[str, Any]:
        """Ask inventory to fold one batch of its old ledger rows (retention); safe to repeat."""
        return self._call("POST", "/inventory/ledger/fold", operation="fold_ledger")

    # The operator console's calls (order_service.console): the catalogue, and the admin writes made
    # with the operator's own admin token, so inventory decides them as if the operator called it.

    def products(self) -> dict[str, Any]:
        return self._call("GET", "/inventory", operation="products")

    def restock(self, product_id: str, quantity: int, admin_token: str) -> dict[str, Any]:
        # Not idempotent: a retry after a lost answer could add the units twice, so it is sent once.
        path = f"/inventory/{quote(product_id, safe='')}/restock"
        body = {"quantity": quantity}
        return self._call("POST", path, body, operation="restock", token=admin_token, retry=False)

    def update_product(self, product_id: str, changes: dict[str, Any], admin_token: str) -> dict[str, Any]:
        # Setting a name or price is idempotent: retried like the saga's calls.
        path = f"/inventory/{quote(product_id, safe='')}"
        return self._call("PATCH", path, changes, operation="update_product", token=admin_token)

    # --- plumbing --------------------------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        operation: str | None = None,
        token: str | None = None,
        retry: bool = True,
    ) -> dict[str, Any]:
        # A metrics label: reserve, release, commit, reservations, audit, or the name given (never an id).
        operation = operation or path.split("/")[2]
        try:
            result: dict[str, Any] = self._guarded(method, path, body, operation, token, retry)  # untyped wrapper
        except CircuitBreakerError as exc:
            metrics.inventory_call(operation, "circuit_open")
            raise InventoryUnavailable("circuit open") from exc
        except _Retryable as exc:
            metrics.inventory_call(operation, "unavailable")
            raise InventoryUnavailable(str(exc)) from exc
        except InventoryRefused as exc:
            metrics.inventory_call(operation, f"refused_{exc.status}")
            raise
        except InventoryUnavailable:
            metrics.inventory_call(operation, "error")
            raise
        finally:
            metrics.breaker_open(self.breaker.opened)
        metrics.inventory_call(operation, "ok")
        return result

    def _with_retries(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        operation: str,
        token: str | None,
        retry: bool,
    ) -> dict[str, Any]:
        """Up to `inventory_retries` more tries after a _Retryable failure, each after a jittered wait."""
        attempts = self._attempts if retry else 1
        for attempt in range(1, attempts + 1):
            try:
                return self._once(method, path, body, token)
            except _Retryable as exc:
                if attempt == attempts:
                    raise
                metrics.inventory_retry(operation)
                log.warning("retrying inventory call", extra={"fields": {"attempt": attempt, "reason": str(exc)}})
                time.sleep(random.uniform(0, min(self._backoff_max, _BACKOFF_FIRST * 2 ** (attempt - 1))))
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _once(self, method: str, path: str, body: dict[str, Any] | None, token: str | None) -> dict[str, Any]:
        headers = dict(self._headers)
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        request_id = current_request_id()
        if request_id:
            headers[REQUEST_ID_HEADER] = request_id
        url = self._base + path
        try:
            with client_span(method, url, headers):
                response = self._pool.request(
                    method, url, body=orjson.dumps(body) if body is not None else None, headers=headers
                )
        except TransportError as exc:  # connect/read timeouts, refused or dropped connections
            raise _Retryable(f"{method} {path}: {exc}") from exc
        if response.status in _RETRYABLE_STATUSES:
            raise _Retryable(f"{method} {path}: HTTP {response.status}")
        try:
            payload = orjson.loads(response.data) if response.data else {}
        except orjson.JSONDecodeError as exc:
            raise _Retryable(f"{method} {path}: unreadable answer") from exc
        if 400 <= response.status < 500:
            raise InventoryRefused.answered(response.status, payload)
        if response.status >= 500:  # a fault in inventory, not a passing outage: counted, not retried
            raise InventoryUnavailable(f"{method} {path}: HTTP {response.status}")
        return payload


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    data: bytes


class _CurlPool:
    """The transport to inventory over sockets: libcurl easy handles, taken one per call and given back, each
    keeping its own keep-alive connection. A burst beyond `keep` calls at once opens more handles; only
    `keep` are kept.

    libcurl, not urllib3: one call cost the order service 0.6 ms of CPU through urllib3 and http.client
    (whose header parsing goes through the email package) and 0.1 ms through libcurl, on the same machine
    (docs/performance.md). Timeouts: `connect_timeout` to connect, and the whole call (connect, send,
    answer) within connect_timeout + read_timeout. libcurl does not reuse a connection older than
    CONNECTION_MAX_AGE_SECONDS, nor one the server has closed.
    """

    def __init__(self, *, keep: int, connect_timeout: float, read_timeout: float, tls: bool) -> None:
        self._keep = keep
        self._idle: list[pycurl.Curl] = []
        self._lock = threading.Lock()
        self._options: list[tuple[int, Any]] = [
            (pycurl.NOSIGNAL, 1),  # timeouts without SIGALRM: we are one of several threads
            (pycurl.CONNECTTIMEOUT_MS, round(connect_timeout * 1000)),
            (pycurl.TIMEOUT_MS, round((connect_timeout + read_timeout) * 1000)),
            (pycurl.MAXLIFETIME_CONN, round(CONNECTION_MAX_AGE_SECONDS)),
            (pycurl.HTTP_VERSION, pycurl.CURL_HTTP_VERSION_1_1),
            (pycurl.PROTOCOLS, pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS),
        ]
        if tls:  # the certificates this machine's Python trusts (the wheel's libcurl knows no system path)
            paths = ssl.get_default_verify_paths()
            if paths.cafile:
                self._options.append((pycurl.CAINFO, paths.cafile))
            if paths.capath:
                self._options.append((pycurl.CAPATH, paths.capath))

    def request(self, method: str, url: str, *, body: bytes | None, headers: dict[str, str]) -> Answer:
        handle = self._take()
        chunks: list[bytes] = []
        # "Expect:" unset: a body is sent at once, never after a 100 Continue.
        handle.setopt(pycurl.HTTPHEADER, [f"{name}: {value}" for name, value in headers.items()] + ["Expect:"])
        handle.setopt(pycurl.URL, url)
        if method == "GET":
            handle.setopt(pycurl.HTTPGET, 1)
        else:
            handle.setopt(pycurl.POSTFIELDS, body or b"")  # a POST, with this body
        if method in ("GET", "POST"):
            handle.unsetopt(pycurl.CUSTOMREQUEST)
        else:
            handle.setopt(pycurl.CUSTOMREQUEST, method)
        handle.setopt(pycurl.WRITEFUNCTION, chunks.append)
        try:
            handle.perform()  # without the GIL
            status: int = handle.getinfo(pycurl.RESPONSE_CODE)
        except pycurl.error as exc:
            handle.close()  # its connection's state is unknown
            code, message = exc.args if len(exc.args) == 2 else (None, str(exc))
            raise TransportError(f"curl error {code}: {message}") from exc
        self._give_back(handle)
        return _Answer(status, b"".join(chunks))

    def _take(self) -> pycurl.Curl:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        handle = pycurl.Curl()
        for option, value in self._options:
            handle.setopt(option, value)
        return handle

    def _give_back(self, handle: pycurl.Curl) -> None:
        with self._lock:
            if len(self._idle) < self._keep:
                self._idle.append(handle)
                return
        handle.close()

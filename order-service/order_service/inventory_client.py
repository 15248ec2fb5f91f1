"""The order service's one way to reach inventory: a pooled keep-alive client with timeouts, bounded
jittered retries (every inventory write is idempotent by order_id, so a retry is safe) and a circuit
breaker that fails fast while inventory is down.

The pool keeps one connection per app thread (each has at most one call in flight), and reopens a
connection once it is older than CONNECTION_MAX_AGE_SECONDS: behind a Kubernetes Service a connection
is bound to the replica it was opened to, so without that a replica added later would get none of the
keep-alive traffic."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence
from typing import Any, Protocol
from urllib.parse import quote

import orjson
import urllib3
from circuitbreaker import CircuitBreaker, CircuitBreakerError

from order_service import metrics
from order_service.domain import Line
from order_service.settings import Settings
from service_common.logs import REQUEST_ID_HEADER, current_request_id

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


class Answer(Protocol):
    @property
    def status(self) -> int: ...

    @property
    def data(self) -> bytes: ...


class Transport(Protocol):
    """What carries a call to inventory: urllib3's pool over sockets, or (the fast tests) the inventory app
    itself in the same process. It raises urllib3's HTTPError when the call did not get through."""

    def request(self, method: str, url: str, *, body: bytes | None, headers: dict[str, str]) -> Answer: ...


class InventoryClient:
    def __init__(self, settings: Settings, transport: Transport | None = None) -> None:
        self._base = settings.inventory_url.rstrip("/")
        self._headers = {"Content-Type": "application/json"}
        if settings.service_token:
            self._headers["Authorization"] = f"Bearer {settings.service_token}"
        timeout = urllib3.Timeout(connect=settings.inventory_connect_timeout, read=settings.inventory_read_timeout)
        maxsize = max(settings.threads, 4)
        self._pool: Transport = transport or (
            _BalancedPool(self._base, maxsize=maxsize, timeout=timeout)
            if self._base.startswith("http://")
            else urllib3.PoolManager(maxsize=maxsize, block=False, retries=False, timeout=timeout)  # https
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

    # --- the calls -------------------------------------------------------------------------------------------

    def reserve(self, order_id: str, lines: Sequence[Line]) -> dict[str, Any]:
        body: dict[str, Any] = {"order_id": order_id}
        if len(lines) == 1:  # the body from before carts, which every inventory release takes
            body.update(product_id=lines[0].product_id, quantity=lines[0].quantity)
        else:
            body["items"] = [{"product_id": line.product_id, "quantity": line.quantity} for line in lines]
        return self._call("POST", "/inventory/reserve", body)

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
        try:
            response = self._pool.request(
                method,
                self._base + path,
                body=orjson.dumps(body) if body is not None else None,
                headers=headers,
            )
        except urllib3.exceptions.HTTPError as exc:  # connect/read timeouts, refused or dropped connections
            raise _Retryable(f"{method} {path}: {type(exc).__name__}") from exc
        if response.status in _RETRYABLE_STATUSES:
            raise _Retryable(f"{method} {path}: HTTP {response.status}")
        try:
            payload = orjson.loads(response.data) if response.data else {}
        except orjson.JSONDecodeError as exc:
            raise _Retryable(f"{method} {path}: unreadable answer") from exc
        if 400 <= response.status < 500:
            error = payload.get("error", {}) if isinstance(payload, dict) else {}
            details = error.get("details")
            raise InventoryRefused(
                response.status,
                str(error.get("code", "refused")),
                str(error.get("message", "")),
                details if isinstance(details, list) else None,
            )
        if response.status >= 500:  # a fault in inventory, not a passing outage: counted, not retried
            raise InventoryUnavailable(f"{method} {path}: HTTP {response.status}")
        return payload


class _AgingPool(urllib3.HTTPConnectionPool):
    """urllib3's keep-alive pool to one host, whose connections are reopened once older than
    CONNECTION_MAX_AGE_SECONDS (so they spread again over the replicas behind a Service)."""

    def _get_conn(self, timeout: float | None = None) -> Any:
        conn = super()._get_conn(timeout)
        now = time.monotonic()
        opened = getattr(conn, "opened_at", None)
        if opened is not None and now - opened > CONNECTION_MAX_AGE_SECONDS:
            conn.close()  # it reconnects on its next request, maybe to another replica
            opened = None
        if opened is None:
            conn.opened_at = now  # type: ignore[attr-defined]  # our mark on the connection object
        return conn


class _BalancedPool:
    """The transport to inventory over sockets: the aging pool, asked for paths under the base URL."""

    def __init__(self, base: str, *, maxsize: int, timeout: urllib3.Timeout) -> None:
        parsed = urllib3.util.parse_url(base)
        self._base, self._path = base, (parsed.path or "").rstrip("/")
        # block=False: a burst over maxsize opens extra connections rather than waiting; they are not kept.
        self._pool = _AgingPool(
            parsed.host or "127.0.0.1", parsed.port, maxsize=maxsize, block=False, retries=False, timeout=timeout
        )

    def request(self, method: str, url: str, *, body: bytes | None, headers: dict[str, str]) -> Answer:
        path = self._path + url[len(self._base) :]
        return self._pool.urlopen(method, path, body=body, headers=headers, retries=False, preload_content=True)

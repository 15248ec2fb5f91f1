"""Order settings: the shared ones (service_common.settings) plus the inventory client and the saga's."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from service_common.settings import ServiceSettings, SpareThreads

# Time a request may spend on its own database work around the inventory calls.
_DATABASE_MARGIN = 2.0


class Settings(ServiceSettings):
    database_url: str = Field("sqlite:///data/orders.db", description="The order service's own database.")
    port: int = Field(30000, description="Port the order service listens on.")
    # An order's thread waits twice on other threads' work (its writes' group commit, its reserve's call):
    # spare threads let more orders meet there (docs/decisions.md, "Spare threads"). 8 + 8 threads are at most
    # one call of INVENTORY_RESERVE_BATCH (16) ahead of a reserve, so worst_reserve() stays two calls.
    spare_threads: SpareThreads = 8
    inventory_url: str = Field("http://127.0.0.1:5001", description="Base URL of the inventory service.")
    inventory_connect_timeout: float = Field(1.0, gt=0, description="Seconds to connect to inventory.")
    inventory_read_timeout: float = Field(3.0, gt=0, description="Seconds to wait for inventory's answer.")
    inventory_retries: int = Field(2, ge=0, description="Retries after a failed inventory call (all idempotent).")
    inventory_backoff_max: float = Field(0.5, ge=0, description="Longest pause between two retries, seconds.")
    inventory_reserve_batch: int = Field(
        16,
        ge=1,
        le=64,
        description="Most reserves one call to inventory carries: the reserves of orders placed while a call is "
        "out go together, as one call (POST /inventory/reserve/batch). 1: each order's reserve is its own call.",
    )
    breaker_fail_max: int = Field(5, ge=1, description="Failed calls in a row that open the circuit.")
    breaker_reset_seconds: float = Field(5.0, gt=0, description="Seconds the circuit stays open before a probe.")
    idempotency_ttl_hours: float = Field(24.0, gt=0, description="How long an Idempotency-Key is remembered.")
    idempotency_wait_seconds: float = Field(5.0, ge=0, description="How long a duplicate waits for the first.")
    recovery_grace_seconds: float = Field(30.0, gt=0, description="Age after which the worker resolves an order.")
    worker_interval_seconds: float = Field(1.0, gt=0, description="Pause between two passes of the worker.")
    worker_batch: int = Field(50, ge=1, description="Orders one worker pass claims at most.")
    write_batch_max: int = Field(
        64,
        ge=1,
        le=1000,
        description="Most order writes (new, confirmed, moved) one transaction may make: concurrent requests in "
        "a process share one commit (group commit). 1 turns batching off: each write is its own transaction.",
    )
    worker_metrics_port: int = Field(0, ge=0, description="Port of the worker's /metrics; 0: not served.")
    events_token: str | None = Field(
        None, description="Bearer token that may only read the event feed (GET /events); the admin token may too."
    )
    events_token_next: str | None = Field(None, description="Also accepted, for rotating EVENTS_TOKEN.")
    events_max_waiters: int = Field(
        64, ge=0, description="Long-polls (GET /events?wait=) waiting in one server process at once; more get 429."
    )
    events_retention_hours: float = Field(
        168.0, gt=0, description="Age after which the worker prunes events (published ones only, with a broker)."
    )
    events_broker_url: str = Field(
        "",
        description="NATS JetStream URL the recovery worker's relay publishes order events to, e.g. "
        "nats://nats:4222; empty: no relay (the feed only, and retention prunes events by age alone).",
    )
    retention_interval_seconds: float = Field(
        60.0, gt=0, description="Pause between two retention passes of the worker (events, keys, the ledger)."
    )
    retention_batch: int = Field(500, ge=1, description="Rows one retention transaction deletes or clears at most.")
    events_stream: str = Field("ORDER_EVENTS", description="JetStream stream of the order events (made if missing).")
    events_subject: str = Field("orders.events", description="Subject prefix: an event goes to <prefix>.<order id>.")
    events_publish_timeout: float = Field(2.0, gt=0, description="Seconds the relay waits for the broker's ack.")
    events_relay_batch: int = Field(100, ge=1, description="Events the relay reads and publishes per round.")
    events_relay_poll_seconds: float = Field(0.2, gt=0, description="Pause of the relay when nothing is new.")
    events_relay_lease_seconds: float = Field(
        10.0, gt=0, description="Term of the relay's lease in the database: one worker's relay publishes at a time."
    )
    console_low_stock: int = Field(
        10, ge=0, description="The operator console highlights a product whose available units are at or below this."
    )

    customer_auth: Literal["none", "jwt"] = Field(
        "none", description="jwt: customers are who a verified JWT's `sub` says; they see only their orders."
    )
    jwt_public_key_file: Path | None = Field(None, description="PEM public key that verifies customer JWTs.")
    jwt_jwks_file: Path | None = Field(None, description="JWKS file (keys chosen by `kid`), instead of a PEM.")
    jwt_algorithms: list[Literal["RS256", "RS384", "RS512", "ES256", "ES384", "EdDSA"]] = Field(
        ["RS256", "ES256"], description="Accepted signature algorithms; asymmetric only, never `none`."
    )
    jwt_audience: str = Field("order-service", description="Required `aud` claim.")
    jwt_issuer: str | None = Field(None, description="Required `iss` claim, when set.")
    jwt_leeway_seconds: float = Field(30.0, ge=0, description="Clock skew allowed on exp / nbf.")

    def tokens(self) -> dict[str, tuple[str | None, ...]]:
        return {**super().tokens(), "events": (self.events_token, self.events_token_next)}

    def worst_inventory_call(self) -> float:
        """Longest one inventory call can take, retries and pauses included."""
        attempts = self.inventory_retries + 1
        per_try = self.inventory_connect_timeout + self.inventory_read_timeout
        return attempts * per_try + self.inventory_retries * self.inventory_backoff_max

    def worst_reserve(self) -> float:
        """Longest an order's reserve can take: its own call at its worst, and before it, when reserves go
        together, the calls already out or queued ahead of it in its process (at most one for each of its
        other threads, spare ones included)."""
        if self.inventory_reserve_batch <= 1:
            return self.worst_inventory_call()
        ahead = -(-(self.threads + self.spare_threads - 1) // self.inventory_reserve_batch)
        return (1 + ahead) * self.worst_inventory_call()

    def worker_heartbeat_interval(self) -> float:
        """The longest the worker's loop goes between two heartbeats while it is healthy: its pause between
        passes, or one order's work (its inventory calls at their worst plus the database's share)."""
        return max(self.worker_interval_seconds, self.worst_inventory_call() + _DATABASE_MARGIN)

    @model_validator(mode="after")
    def _jwt_has_a_key(self) -> Settings:
        if self.customer_auth == "jwt" and not (self.jwt_public_key_file or self.jwt_jwks_file):
            raise ValueError("CUSTOMER_AUTH=jwt needs JWT_PUBLIC_KEY_FILE or JWT_JWKS_FILE")
        return self

    @model_validator(mode="after")
    def _lease_outlasts_a_publish(self) -> Settings:
        # A relay stops publishing a publish timeout (and a second) before its lease ends: see relay.Lease.
        if self.events_relay_lease_seconds <= 2 * (self.events_publish_timeout + 1):
            raise ValueError("EVENTS_RELAY_LEASE_SECONDS must exceed twice (EVENTS_PUBLISH_TIMEOUT + 1)")
        return self

    @model_validator(mode="after")
    def _grace_covers_a_request(self) -> Settings:
        # The worker must never act on an order whose request may still be talking to inventory.
        if self.recovery_grace_seconds <= self.worst_reserve() + _DATABASE_MARGIN:
            raise ValueError(
                f"RECOVERY_GRACE_SECONDS ({self.recovery_grace_seconds}) must exceed the worst case of one "
                f"request ({self.worst_reserve():.1f}s of inventory calls plus a margin)"
            )
        return self

"""Settings every service reads, each from the environment variable of the same name (upper case)."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

MAX_BODY_BYTES = 64 * 1024

# Each service sets its own default (docs/decisions.md, "Spare threads"); the bounds and meaning are shared.
SpareThreads = Annotated[
    int,
    Field(
        ge=0,
        le=256,
        description="Threads per worker process that run a request only while an app thread waits on a group "
        "commit: the asks one batch can gather grow by as many.",
    ),
]


@dataclass(frozen=True)
class Limits:
    """What one request may take before it is refused (each a setting, see ServiceSettings)."""

    header_read_timeout: float  # seconds for the whole request head (granian closes the connection)
    body_read_timeout: float  # seconds for the whole body once the head is in (408)
    max_body_bytes: int  # 413
    max_request_line: int  # bytes of method, target and version (414)
    max_header_bytes: int  # bytes of all header names and values (431)
    max_headers: int  # header count (431)

    def head_buffer(self) -> int:
        """granian's read buffer for a request head: room for the largest head we accept, and a margin so
        an over-long one reaches the app's check and is refused as our JSON, not dropped by the parser."""
        return self.max_request_line + self.max_header_bytes + 4 * self.max_headers + 8192


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)

    database_url: str = Field(description="SQLAlchemy URL; postgresql://… is mapped to psycopg 3.")
    host: str = Field("0.0.0.0", description="Address the server binds.")
    port: int = Field(description="Port the server listens on.")
    web_concurrency: int = Field(2, ge=1, description="Server worker processes (one per core).")
    threads: int = Field(8, ge=1, description="Threads per worker process.")
    spare_threads: SpareThreads = 0
    drain_seconds: float = Field(3.0, ge=0, description="After SIGTERM, seconds to keep serving while not ready.")
    graceful_timeout: float = Field(20.0, ge=1, description="After draining, seconds in-flight requests may take.")
    header_read_timeout: float = Field(
        10.0, gt=0, description="Seconds a client has to send a request's head; then the connection is closed."
    )
    body_read_timeout: float = Field(10.0, gt=0, description="Seconds a client has to send a request's body (408).")
    max_body_bytes: int = Field(MAX_BODY_BYTES, ge=1024, description="Largest request body, in bytes (413).")
    max_request_line: int = Field(8192, ge=256, description="Longest request line (method, target, version) (414).")
    max_header_bytes: int = Field(16384, ge=1024, description="Largest sum of header names and values (431).")
    max_headers: int = Field(100, ge=8, description="Most headers one request may carry (431).")
    scratch_dir: Path | None = Field(None, description="Writable scratch path (drain flag, worker files).")
    service_token: str | None = Field(None, description="Bearer token for service-to-service calls.")
    service_token_next: str | None = Field(None, description="Also accepted, for rotating SERVICE_TOKEN.")
    admin_token: str | None = Field(None, description="Bearer token for admin endpoints.")
    admin_token_next: str | None = Field(None, description="Also accepted, for rotating ADMIN_TOKEN.")
    log_level: str = Field("INFO", description="Log level of the JSON logs on stdout.")
    db_pool_size: int = Field(5, ge=1, description="Database connections per worker process (PostgreSQL).")
    db_pool_timeout: float = Field(2.0, gt=0, description="Seconds to wait for a pooled connection before 503.")
    statement_timeout_ms: int = Field(2000, ge=0, description="PostgreSQL statement_timeout per connection.")
    lock_timeout_ms: int = Field(1500, ge=0, description="PostgreSQL lock_timeout per connection.")
    sqlite_busy_timeout_ms: int = Field(2000, ge=0, description="SQLite busy_timeout per connection.")
    # Bounded so the largest order (MAX_LINES x MAX_QUANTITY x the largest price) fits the money columns.
    max_quantity: int = Field(10000, ge=1, le=100_000, description="Largest quantity one line may ask for.")
    max_lines: int = Field(50, ge=1, le=100, description="Most lines (products) one order may hold.")
    otel_exporter_otlp_endpoint: str | None = Field(
        None, description="OTLP/HTTP collector base URL; tracing is off (and free) when unset."
    )
    failpoints: str = Field("", description="TEST ONLY: `step,step` makes the process exit at those steps.")

    def scratch_path(self, service: str) -> Path:
        return self.scratch_dir or Path(tempfile.gettempdir()) / f"{service}-{self.port}"

    def drain_flag(self, service: str) -> Path:
        return self.scratch_path(service) / "draining"

    def limits(self) -> Limits:
        return Limits(
            header_read_timeout=self.header_read_timeout,
            body_read_timeout=self.body_read_timeout,
            max_body_bytes=self.max_body_bytes,
            max_request_line=self.max_request_line,
            max_header_bytes=self.max_header_bytes,
            max_headers=self.max_headers,
        )

    def tokens(self) -> dict[str, tuple[str | None, ...]]:
        return {
            "service": (self.service_token, self.service_token_next),
            "admin": (self.admin_token, self.admin_token_next),
        }

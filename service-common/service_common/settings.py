"""Settings every service reads, each from the environment variable of the same name (upper case)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)

    database_url: str = Field(description="SQLAlchemy URL; postgresql://… is mapped to psycopg 3.")
    host: str = Field("0.0.0.0", description="Address the server binds.")
    port: int = Field(description="Port the server listens on.")
    web_concurrency: int = Field(2, ge=1, description="Server worker processes (one per core).")
    threads: int = Field(8, ge=1, description="Threads per worker process.")
    drain_seconds: float = Field(3.0, ge=0, description="After SIGTERM, seconds to keep serving while not ready.")
    graceful_timeout: float = Field(20.0, ge=1, description="After draining, seconds in-flight requests may take.")
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
    max_quantity: int = Field(10000, ge=1, description="Largest quantity one request may ask for.")
    otel_exporter_otlp_endpoint: str | None = Field(
        None, description="OTLP/HTTP collector base URL; tracing is off (and free) when unset."
    )
    failpoints: str = Field("", description="TEST ONLY: `step,step` makes the process exit at those steps.")

    def scratch_path(self, service: str) -> Path:
        return self.scratch_dir or Path(tempfile.gettempdir()) / f"{service}-{self.port}"

    def drain_flag(self, service: str) -> Path:
        return self.scratch_path(service) / "draining"

    def tokens(self) -> dict[str, tuple[str | None, ...]]:
        return {
            "service": (self.service_token, self.service_token_next),
            "admin": (self.admin_token, self.admin_token_next),
        }

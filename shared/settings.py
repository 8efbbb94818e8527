"""Settings common to every service, from the environment (BEACON_*) or arguments."""

from __future__ import annotations

from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.bus import inbox_prefix

DEFAULT_PORTS = {"registry": 8101, "dispatch": 8102, "points": 8103, "reporting": 8104}


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BEACON_", extra="ignore")

    service: str = ""
    database_url: str = ""
    # One server, or a cluster's nodes comma-separated (the client moves to another if one goes).
    nats_url: str = "nats://127.0.0.1:4222"
    # The service's NATS user (deploy/nats/users.conf); unset, it connects without authenticating.
    nats_nkey_seed_file: str = ""
    # PEM of the Ed25519 public key that access tokens are verified with (registry signs them).
    jwt_public_key_file: str = ""
    host: str = "127.0.0.1"
    port: int = 0
    stream_replicas: int = Field(default=1, ge=1, le=5)
    duplicate_window_seconds: float = Field(default=3600.0, gt=0)
    log_level: str = "INFO"
    log_format: str = "json"  # or "text": one line a record either way (shared.logs)
    # Where spans go besides the trace ids in the logs: "" (nowhere), "console" or "otlp" (shared.tracing).
    trace_exporter: str = ""
    # The origins (scheme://host:port, comma-separated) whose pages may call this service from a
    # browser: the other services' pages (shared.web.install_cors). Unset: none.
    cors_origins: str = ""

    @property
    def nats_servers(self) -> list[str]:
        return [url.strip() for url in self.nats_url.split(",") if url.strip()]

    def nats_connect_options(self) -> dict[str, Any]:
        """nats-py `connect` arguments for this service's own plain clients (a rebuild's worker
        processes, command-line tools): its server, its user, its inboxes, as its runtime has."""
        options: dict[str, Any] = {"servers": self.nats_servers, "inbox_prefix": inbox_prefix(self.service)}
        if self.nats_nkey_seed_file:
            options["nkeys_seed"] = self.nats_nkey_seed_file
        return options

    def for_service(self, service: str) -> ServiceSettings:
        """Fill what was not set with this service's defaults (its own SQLite file and port)."""
        return self.model_copy(
            update={
                "service": service,
                "database_url": self.database_url or f"sqlite:///data/{service}.db",
                "port": self.port or DEFAULT_PORTS[service],
            }
        )

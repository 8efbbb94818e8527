"""`python -m services.<name>`: run one service with uvicorn."""

from __future__ import annotations

import argparse
from collections.abc import Callable

import uvicorn
from fastapi import FastAPI

from shared.logs import configure_logging
from shared.settings import ServiceSettings


def serve(service: str, create_app: Callable[[ServiceSettings], FastAPI], argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=f"python -m services.{service}", description=f"Run the Beacon {service} service.")
    parser.add_argument("--host", help="interface to listen on (BEACON_HOST)")
    parser.add_argument("--port", type=int, help="port to listen on (BEACON_PORT)")
    parser.add_argument("--database-url", help="sqlite:///… or postgresql://… (BEACON_DATABASE_URL)")
    parser.add_argument("--nats-url", help="nats://host:port (BEACON_NATS_URL)")
    args = parser.parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if v is not None}
    settings = ServiceSettings(**overrides).for_service(service)
    # One format for every record, uvicorn's access log included: it then logs through ours.
    configure_logging(service, settings.log_format, settings.log_level)
    app = create_app(settings)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level.lower(), log_config=None)

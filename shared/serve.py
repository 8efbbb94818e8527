"""`python -m services.<name>`: run one service with uvicorn."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable

import uvicorn
from fastapi import FastAPI

from shared.logmask import install_personal_data_mask
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
    logging.basicConfig(level=settings.log_level, format=f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s")
    install_personal_data_mask()
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level.lower())

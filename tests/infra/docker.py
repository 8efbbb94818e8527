"""Whether a Docker engine answers here (then testcontainers provides the servers)."""

from __future__ import annotations

import functools
import os


@functools.cache
def docker_available() -> bool:
    if os.environ.get("BEACON_TEST_NO_DOCKER"):
        return False
    try:
        import docker

        client = docker.from_env(timeout=3)
        client.ping()
        client.close()
        return True
    except Exception:
        return False

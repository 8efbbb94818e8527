"""`python -m deploy.nats_keys DIR`: a fresh nkey per service, for deploy/nats/users.conf.

Writes `DIR/<service>.nk` (the seed, readable by its owner only: it goes to that service's secret
store and nowhere else) and `DIR/service-keys.conf` (the public keys, which the server's
configuration includes). Seeds are never committed; tests make their own at run time.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import nkeys

SERVICES = ("registry", "dispatch", "points", "reporting")
USERS = (*SERVICES, "operator")  # the operator: `beacon status` and `beacon dlq` (users.conf)
PUBLIC_KEYS_FILE = "service-keys.conf"


def new_user_seed() -> bytes:
    return nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)


def public_key(seed: bytes) -> str:
    return nkeys.from_seed(bytearray(seed)).public_key.decode()


def seed_file(directory: Path, service: str) -> Path:
    return Path(directory) / f"{service}.nk"


def write_service_keys(directory: Path) -> dict[str, str]:
    """A seed file per user (each service, and the operator) and the public keys' configuration;
    returns the public keys."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    public = {}
    for service in USERS:
        seed = new_user_seed()
        path = seed_file(directory, service)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # never over an existing seed
        with os.fdopen(descriptor, "wb") as out:
            out.write(seed + b"\n")
        public[service] = public_key(seed)
    lines = [f"{service.upper()}_NKEY: {key}" for service, key in public.items()]
    header = "# Public nkeys of the Beacon services (python -m deploy.nats_keys); the seeds are kept apart.\n"
    (directory / PUBLIC_KEYS_FILE).write_text(header + "\n".join(lines) + "\n")
    return public


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m deploy.nats_keys", description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path, help="where to write the seeds and service-keys.conf")
    args = parser.parse_args(argv)
    public = write_service_keys(args.directory)
    for service, key in public.items():
        print(f"{service:10} {key}  seed: {seed_file(args.directory, service)}")
    print(f"copy {args.directory / PUBLIC_KEYS_FILE} beside the server's users.conf;")
    print("give each seed to its service only, as BEACON_NATS_NKEY_SEED_FILE")


if __name__ == "__main__":
    main()

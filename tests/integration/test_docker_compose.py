"""docker-compose.yml is valid for Debian's docker-compose (1.29) and wires the stack as intended.

Only `docker-compose config` runs: it validates and normalises the file without a Docker engine.
The venv has no YAML parser, so the normalised output is turned into JSON by PyYAML if the venv
has it, else by the Python interpreter docker-compose 1.29 itself runs on (which always has it).
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
CLUSTER_NODE_CONF = REPO / "deploy" / "nats" / "cluster" / "node.conf"
APP_PORTS = {"registry": 8101, "dispatch": 8102, "points": 8103, "reporting": 8104}
NATS_NODES = ("nats-1", "nats-2", "nats-3")
INFRA = (*NATS_NODES, "postgres")
ONE_SHOT = ("token-keys",)  # makes the token-signing key pair before the services start
INSTALL_HINT = (
    "docker-compose is not on PATH: install Debian's docker-compose package "
    "(as root: `apt-get update -qq && apt-get install -y -qq --no-install-recommends docker-compose`, "
    "or run deploy/ensure-docker-compose.sh)"
)
TO_JSON = "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)"


def _compose_env() -> dict[str, str]:
    """The caller's environment, less what would make compose read other files or settings."""
    return {k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_")}


def _docker_compose() -> str:
    """Fails (never skips) the calling test when the tool is missing."""
    path = shutil.which("docker-compose")
    if path is None:
        pytest.fail(INSTALL_HINT, pytrace=False)
    return path


def _compose(*args: str) -> str:
    docker_compose = _docker_compose()
    result = subprocess.run(
        [docker_compose, "-f", str(COMPOSE_FILE), "config", *args],
        cwd=REPO,
        env=_compose_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, (
        f"`docker-compose config {' '.join(args)}` exited {result.returncode}:\n{result.stderr}{result.stdout}"
    )
    return result.stdout


def _yaml_to_data(text: str) -> Any:
    try:
        import yaml  # type: ignore[import-untyped]
    except ImportError:
        pass
    else:
        return yaml.safe_load(text)
    # docker-compose 1.29 is a Python script: its interpreter has PyYAML (a dependency of it).
    first_line = Path(_docker_compose()).read_bytes().split(b"\n", 1)[0].decode(errors="replace")
    interpreter = first_line[2:].strip().split() if first_line.startswith("#!") else []
    candidates = [interpreter] if interpreter else []
    candidates.append(["python3"])
    for command in candidates:
        try:
            result = subprocess.run([*command, "-c", TO_JSON], input=text, capture_output=True, text=True, timeout=60)
        except OSError:
            continue
        if result.returncode == 0:
            return json.loads(result.stdout)
    pytest.fail(
        "cannot parse `docker-compose config` output: no PyYAML in this venv nor in docker-compose's "
        f"interpreter ({' '.join(interpreter) or 'unknown'}); is this Debian's docker-compose package?",
        pytrace=False,
    )


@functools.cache
def _normalised() -> dict[str, Any]:
    """`docker-compose config` parsed; called inside each test so that trouble fails it (never errors/skips)."""
    data = _yaml_to_data(_compose())
    assert isinstance(data, dict) and isinstance(data.get("services"), dict), data
    return data


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # KEY=VALUE form
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def _published_ports(service: dict[str, Any]) -> set[tuple[int, int]]:
    ports = set()
    for port in service.get("ports") or []:
        if isinstance(port, dict):
            ports.add((int(port["published"]), int(port["target"])))
        else:  # "[ip:]published:target[/proto]"
            parts = str(port).split("/")[0].split(":")
            if len(parts) >= 2:
                ports.add((int(parts[-2]), int(parts[-1])))
    return ports


def _volume_mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(source, target) of each mount, from short (`src:dst[:mode]`) or long syntax."""
    mounts = []
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            mounts.append((str(volume.get("source", "")), str(volume["target"])))
        else:
            parts = str(volume).split(":")
            mounts.append((parts[0], parts[1]) if len(parts) > 1 else ("", parts[0]))
    return mounts


def _healthcheck_test(service: dict[str, Any]) -> str:
    test = (service.get("healthcheck") or {}).get("test")
    return " ".join(test) if isinstance(test, list) else str(test or "")


def test_services_listed() -> None:
    services = set(_compose("--services").split())
    assert services == {*INFRA, *APP_PORTS, *ONE_SHOT}, services


def test_named_volumes_listed() -> None:
    volumes = set(_compose("--volumes").split())
    expected = {*(f"{node}-data" for node in NATS_NODES), "postgres-data", "token-signing-key", "token-public-key"}
    assert expected <= volumes, volumes


@pytest.mark.parametrize("name", list(APP_PORTS))
def test_app_service(name: str) -> None:
    config = _normalised()
    service = config["services"][name]
    port = APP_PORTS[name]

    assert service.get("build"), f"{name}: no build"
    assert service.get("image") == "beacon:local", f"{name}: image {service.get('image')!r}"
    assert service.get("command") == ["python", "-m", f"services.{name}"], service.get("command")
    assert service.get("restart") == "unless-stopped"

    depends_on = service.get("depends_on") or {}
    for dependency in INFRA:
        assert dependency in depends_on, f"{name} does not depend on {dependency}"
        if isinstance(depends_on, dict):
            assert (depends_on[dependency] or {}).get("condition") == "service_healthy", depends_on

    check = _healthcheck_test(service)
    assert check, f"{name}: no healthcheck"
    assert f"127.0.0.1:{port}/readyz" in check, f"{name}: healthcheck does not hit its own /readyz: {check}"

    env = _environment(service)
    database = urlsplit(env.get("BEACON_DATABASE_URL", ""))
    assert database.scheme.startswith("postgresql"), env.get("BEACON_DATABASE_URL")
    assert database.hostname == "postgres", env.get("BEACON_DATABASE_URL")
    assert database.path == f"/{name}", f"{name} uses another database: {env.get('BEACON_DATABASE_URL')}"
    nats_urls = env.get("BEACON_NATS_URL", "").split(",")
    assert sorted(urlsplit(url).hostname for url in nats_urls) == list(NATS_NODES), f"{name} is not given every node"
    assert env.get("BEACON_STREAM_REPLICAS") == "3", f"{name}: streams not kept on the three nodes"
    assert env.get("BEACON_HOST") == "0.0.0.0", f"{name} listens only inside its container"
    assert int(env.get("BEACON_PORT", port)) == port
    assert (port, port) in _published_ports(service), f"{name}: port {port} not published"


def test_app_services_share_one_image() -> None:
    config = _normalised()
    images = {config["services"][name].get("image") for name in APP_PORTS}
    assert len(images) == 1, images


def test_each_app_database_is_created_by_the_postgres_init_script() -> None:
    config = _normalised()
    postgres = config["services"]["postgres"]
    init_scripts = [
        Path(source) for source, target in _volume_mounts(postgres) if target.startswith("/docker-entrypoint-initdb.d")
    ]
    assert init_scripts, "postgres mounts no init script into /docker-entrypoint-initdb.d"
    sql = "\n".join(path.read_text() for path in init_scripts if path.is_file())
    created = {m.lower() for m in re.findall(r"create\s+database\s+\"?(\w+)", sql, flags=re.IGNORECASE)}
    for name in APP_PORTS:
        database = urlsplit(_environment(config["services"][name])["BEACON_DATABASE_URL"]).path.lstrip("/")
        assert database in created, f"database {database!r} is not created by {init_scripts}"
    assert "pg_isready" in _healthcheck_test(postgres)
    assert any(source == "postgres-data" for source, _ in _volume_mounts(postgres)), _volume_mounts(postgres)


@pytest.mark.parametrize("name", NATS_NODES)
def test_nats_node_runs_the_cluster_configuration_on_its_own_volume(name: str) -> None:
    config = _normalised()
    node = config["services"][name]
    check = _healthcheck_test(node)
    assert "127.0.0.1:8222/healthz" in check and "js-enabled-only" not in check, f"{name}: {check}"
    assert _environment(node).get("SERVER_NAME") == name, "each node needs its own, stable name"
    mounts = _volume_mounts(node)
    assert (f"{name}-data", "/data") in mounts, mounts
    conf_files = [Path(source) for source, target in mounts if target.endswith(".conf")]
    assert [path.resolve() for path in conf_files] == [CLUSTER_NODE_CONF.resolve()], conf_files
    conf = CLUSTER_NODE_CONF.read_text()
    assert re.search(r"^\s*server_name\s*:\s*\$SERVER_NAME\b", conf, flags=re.MULTILINE), (
        "node name not from SERVER_NAME"
    )
    assert re.search(r"^\s*jetstream\b", conf, flags=re.MULTILINE), "the NATS config does not enable JetStream"
    assert re.search(r"store_dir\s*:\s*\"?/data\b", conf), "the JetStream store is not on the /data volume"
    assert re.search(r"sync_interval\s*:\s*always\b", conf), "JetStream does not fsync every write"
    routes = set(re.findall(r"nats-route://([\w-]+):6222", conf))
    assert routes == set(NATS_NODES), f"the routes do not name every node: {routes}"


def test_bind_mounted_files_exist() -> None:
    """`config` does not check host paths; a missing file would be mounted as an empty directory."""
    config = _normalised()
    named = set((config.get("volumes") or {}).keys())
    for name, service in config["services"].items():
        for source, _ in _volume_mounts(service):
            if source and source not in named:
                assert Path(source).exists(), f"{name} mounts {source}, which does not exist"


def test_registry_alone_holds_the_token_signing_key_and_every_service_the_public_key() -> None:
    config = _normalised()
    keys = config["services"]["token-keys"]
    made = dict(zip(keys["command"][-4::2], keys["command"][-3::2], strict=True))
    mounted = {target: source for source, target in _volume_mounts(keys)}
    private_dir, public_dir = str(Path(made["--private"]).parent), str(Path(made["--public"]).parent)
    private_volume, public_volume = mounted[private_dir], mounted[public_dir]
    assert private_volume != public_volume
    for name in APP_PORTS:
        service = config["services"][name]
        env, mounts = _environment(service), dict(_volume_mounts(service))
        first = (service.get("depends_on") or {}).get("token-keys") or {}
        assert first.get("condition") == "service_completed_successfully", f"{name} may start before the keys exist"
        assert env.get("BEACON_JWT_PUBLIC_KEY_FILE") == made["--public"], name
        assert mounts.get(public_volume) == public_dir, f"{name} does not mount the public key"
        is_registry = name == "registry"
        assert (private_volume in mounts) is is_registry, f"{name}: the private key's volume"
        assert (env.get("BEACON_JWT_PRIVATE_KEY_FILE") == made["--private"]) is is_registry, name

"""deploy/k8s: every manifest is valid for Kubernetes (the schemas `kubernetes-validate` ships,
offline), and the pieces fit: each service has its Deployment, Service, autoscaler and disruption
budget aimed at its own pods, probes on its /healthz and /readyz, every setting it needs, and only
registry holds the token-signing key; the example secrets hold placeholders only; the NATS
chart's users are users.conf's, and nats-server accepts the configuration they make.

The fit checks are functions that return what is wrong, so that each is also shown to find a fault
in a manifest broken on purpose.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import copy
import json
import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes_validate
import nats
import pytest
import yaml
from nats.aio.msg import Msg
from nats.js.api import StorageType, StreamConfig

from deploy.k8s import nats_users
from deploy.nats_keys import new_user_seed, public_key, write_service_keys
from services.dispatch.app import DispatchSettings
from services.registry.app import RegistrySettings
from shared.bus import StreamSettings, context_stream, ensure_stream, inbox_prefix
from shared.natsserver import LocalNatsServer, free_port, nats_server_binary
from shared.settings import DEFAULT_PORTS, ServiceSettings
from tests.infra.nats import write_certificates

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
KUBERNETES = "1.33"  # a version whose schemas kubernetes-validate ships
SERVICES = ("registry", "dispatch", "points", "reporting")
SETTINGS = {
    "registry": RegistrySettings,
    "dispatch": DispatchSettings,
    "points": ServiceSettings,
    "reporting": ServiceSettings,
}
# Settings a Deployment may leave to their defaults: the code sets `service`; the QR period is a choice.
DEFAULTS_KEPT = {"service", "shift_code_period_seconds"}
PLACEHOLDER = "REPLACE-ME"
SIGNING_KEY_SECRET = "beacon-token-signing-key"


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def kustomization() -> dict[str, Any]:
    return yaml.safe_load((K8S / "kustomization.yaml").read_text())


def applied() -> list[dict[str, Any]]:
    """What `kubectl apply -k deploy/k8s` applies."""
    return [doc for name in kustomization()["resources"] for doc in documents(K8S / name)]


def examples() -> list[dict[str, Any]]:
    return [doc for path in sorted((K8S / "examples").glob("*.yaml")) for doc in documents(path)]


def find(resources: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [doc for doc in resources if doc["kind"] == kind and doc["metadata"]["name"] == name]
    assert len(found) == 1, f"{len(found)} {kind} named {name}"
    return found[0]


def container_of(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def container_port(container: dict[str, Any], port: int | str) -> int | None:
    """The container port a probe or a Service's targetPort names (by number or by name)."""
    for declared in container.get("ports", []):
        if port in (declared["containerPort"], declared.get("name")):
            return declared["containerPort"]
    return None


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


def validation_error(doc: dict[str, Any]) -> str | None:
    try:
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)
    except kubernetes_validate.ValidationError as error:
        return f"{'.'.join(str(p) for p in error.path)}: {error.message}"
    return None


# -- the fit checks -----------------------------------------------------------------------------


def service_problems(resources: list[dict[str, Any]], name: str) -> list[str]:
    """What keeps service `name`'s four resources from running and scaling it as intended."""
    problems = []
    deployment = find(resources, "Deployment", name)
    template = deployment["spec"]["template"]
    pod_labels = template["metadata"]["labels"]
    container = container_of(deployment)
    port = DEFAULT_PORTS[name]
    if not selects(deployment["spec"]["selector"]["matchLabels"], pod_labels):
        problems.append("the Deployment's selector does not match its own pods")
    if container["command"] != ["python", "-m", f"services.{name}"]:
        problems.append(f"the container runs {container['command']}")
    if container_port(container, "http") != port:
        problems.append(f"the container's http port is not {port}")
    env = {item["name"]: item.get("value") for item in container.get("env", [])}
    if env.get("BEACON_PORT") != str(port):
        problems.append(f"BEACON_PORT is {env.get('BEACON_PORT')}, not the container port {port}")
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"), ("startupProbe", "/healthz")):
        get = container.get(probe, {}).get("httpGet", {})
        if get.get("path") != path or container_port(container, get.get("port", "")) != port:
            problems.append(f"{probe} asks {get.get('path')} on {get.get('port')}, not {path} on {port}")
    for kind in ("requests", "limits"):
        if set(container.get("resources", {}).get(kind, {})) != {"cpu", "memory"}:
            problems.append(f"the container has no cpu and memory {kind}")
    security = container.get("securityContext", {})
    pod_security = template["spec"].get("securityContext", {})
    if not (pod_security.get("runAsNonRoot") and security.get("readOnlyRootFilesystem")):
        problems.append("the container may run as root or write its root filesystem")
    if security.get("allowPrivilegeEscalation") is not False or security.get("capabilities", {}).get("drop") != ["ALL"]:
        problems.append("the container may escalate privileges or keeps capabilities")

    service = find(resources, "Service", name)
    if not selects(service["spec"]["selector"], pod_labels):
        problems.append("the Service selects other pods")
    if [container_port(container, p["targetPort"]) for p in service["spec"]["ports"]] != [port]:
        problems.append("the Service does not forward to the container's port")

    autoscaler = find(resources, "HorizontalPodAutoscaler", name)
    target = autoscaler["spec"]["scaleTargetRef"]
    if (target["apiVersion"], target["kind"], target["name"]) != ("apps/v1", "Deployment", name):
        problems.append(f"the autoscaler scales {target}")
    low, high = autoscaler["spec"].get("minReplicas", 1), autoscaler["spec"]["maxReplicas"]
    if not 1 <= low <= high or deployment["spec"]["replicas"] != low:
        problems.append(f"replicas {deployment['spec']['replicas']} outside the autoscaler's {low}..{high}")

    budget = find(resources, "PodDisruptionBudget", name)
    if not selects(budget["spec"]["selector"]["matchLabels"], pod_labels):
        problems.append("the disruption budget counts other pods")
    if budget["spec"].get("maxUnavailable", 0) < 1 and budget["spec"].get("minAvailable", low) >= low:
        problems.append("the disruption budget lets no pod be evicted: no node could be drained")
    return problems


def environment(
    resources: list[dict[str, Any]], secrets: list[dict[str, Any]], name: str
) -> tuple[dict[str, str], list[str]]:
    """The environment service `name` starts with (secrets as their placeholders), and each
    reference to a ConfigMap, Secret or key that does not exist."""
    container = container_of(find(resources, "Deployment", name))
    config_maps = {doc["metadata"]["name"]: doc["data"] for doc in resources if doc["kind"] == "ConfigMap"}
    secret_data = {doc["metadata"]["name"]: doc["stringData"] for doc in secrets if doc["kind"] == "Secret"}
    values, missing = {}, []
    for source in container.get("envFrom", []):
        config_map = source["configMapRef"]["name"]
        if config_map not in config_maps:
            missing.append(f"ConfigMap {config_map}")
        values.update(config_maps.get(config_map, {}))
    for item in container.get("env", []):
        if "value" in item:
            values[item["name"]] = item["value"]
            continue
        ref = item["valueFrom"].get("secretKeyRef") or item["valueFrom"]["configMapKeyRef"]
        store = secret_data if "secretKeyRef" in item["valueFrom"] else config_maps
        if ref["key"] not in store.get(ref["name"], {}):
            missing.append(f"{ref['name']}/{ref['key']}")
        else:
            values[item["name"]] = store[ref["name"]][ref["key"]]
    return values, missing


def mounted_secrets(deployment: dict[str, Any]) -> dict[str, str]:
    """Mount path → the Secret mounted there."""
    spec = deployment["spec"]["template"]["spec"]
    by_volume = {v["name"]: v["secret"]["secretName"] for v in spec.get("volumes", []) if "secret" in v}
    return {
        mount["mountPath"]: by_volume[mount["name"]]
        for mount in container_of(deployment).get("volumeMounts", [])
        if mount["name"] in by_volume
    }


def mounted_paths(deployment: dict[str, Any]) -> list[str]:
    return [mount["mountPath"] for mount in container_of(deployment).get("volumeMounts", [])]


def looks_like_a_real_key(value: str) -> bool:
    """A PEM block, an nkey seed, or base64 of 16 bytes or more: what a leaked key looks like."""
    if "-----BEGIN" in value or re.search(r"\bS[UNOAC][A-Z2-7]{40,}\b", value):
        return True
    for word in re.findall(r"[A-Za-z0-9+/=]{22,}", value):
        if not all(re.search(pattern, word) for pattern in ("[a-z]", "[A-Z]", "[0-9]")):
            continue  # a path or a word, not random bytes
        try:
            if len(base64.b64decode(word, validate=True)) >= 16:
                return True
        except (binascii.Error, ValueError):
            continue
    return False


# -- every manifest is a valid Kubernetes object -------------------------------------------------


@pytest.mark.parametrize(
    "doc",
    [*applied(), *examples()],
    ids=lambda doc: f"{doc['kind']}/{doc['metadata']['name']}",
)
def test_every_manifest_is_valid_for_kubernetes(doc: dict[str, Any]) -> None:
    assert validation_error(doc) is None


def test_the_validator_refuses_a_broken_manifest() -> None:
    deployment = find(applied(), "Deployment", "dispatch")
    named_port = copy.deepcopy(deployment)
    container_of(named_port)["ports"][0]["containerPort"] = "http"
    misspelt = copy.deepcopy(deployment)
    misspelt["spec"]["replica"] = misspelt["spec"].pop("replicas")
    budget = copy.deepcopy(find(applied(), "PodDisruptionBudget", "dispatch"))
    budget["spec"]["maxUnavailable"] = [1]

    assert validation_error(deployment) is None
    assert "containerPort" in validation_error(named_port)
    assert "replica" in validation_error(misspelt)
    assert "maxUnavailable" in validation_error(budget)


def test_the_kustomization_applies_every_manifest_but_the_examples_and_the_nats_values() -> None:
    manifests = {path.name for path in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    helm_values = {"nats-values.yaml", "nats-users-values.yaml"}
    assert set(kustomization()["resources"]) == manifests - helm_values
    assert kustomization()["namespace"] == "beacon"
    assert (
        find(applied(), "Namespace", "beacon")["metadata"]["labels"]["pod-security.kubernetes.io/enforce"]
        == "restricted"
    )
    assert not [doc for doc in applied() if doc["kind"] == "Secret"], "a Secret applied with the services"


# -- the pieces fit ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SERVICES)
def test_each_service_is_deployed_served_autoscaled_and_protected_from_disruption(name: str) -> None:
    assert service_problems(applied(), name) == []


def test_the_fit_checks_find_a_fault_in_each_part() -> None:
    def broken(change: Any) -> list[str]:
        resources = copy.deepcopy(applied())
        change(resources)
        return service_problems(resources, "registry")

    def probe_health_for_readiness(resources: list[dict[str, Any]]) -> None:
        container_of(find(resources, "Deployment", "registry"))["readinessProbe"]["httpGet"]["path"] = "/healthz"

    def probe_another_port(resources: list[dict[str, Any]]) -> None:
        container_of(find(resources, "Deployment", "registry"))["livenessProbe"]["httpGet"]["port"] = 8102

    def scale_another_deployment(resources: list[dict[str, Any]]) -> None:
        find(resources, "HorizontalPodAutoscaler", "registry")["spec"]["scaleTargetRef"]["name"] = "dispatch"

    def budget_for_other_pods(resources: list[dict[str, Any]]) -> None:
        find(resources, "PodDisruptionBudget", "registry")["spec"]["selector"]["matchLabels"][
            "app.kubernetes.io/name"
        ] = "points"

    def budget_blocking_every_drain(resources: list[dict[str, Any]]) -> None:
        find(resources, "PodDisruptionBudget", "registry")["spec"] = {
            "minAvailable": 2,
            "selector": {"matchLabels": {"app.kubernetes.io/name": "registry"}},
        }

    def serve_other_pods(resources: list[dict[str, Any]]) -> None:
        find(resources, "Service", "registry")["spec"]["selector"] = {"app.kubernetes.io/name": "dispatch"}

    assert broken(probe_health_for_readiness) == ["readinessProbe asks /healthz on http, not /readyz on 8101"]
    assert broken(probe_another_port) == ["livenessProbe asks /healthz on 8102, not /healthz on 8101"]
    assert broken(scale_another_deployment) == [
        "the autoscaler scales {'apiVersion': 'apps/v1', 'kind': 'Deployment', 'name': 'dispatch'}"
    ]
    assert broken(budget_for_other_pods) == ["the disruption budget counts other pods"]
    assert broken(budget_blocking_every_drain) == [
        "the disruption budget lets no pod be evicted: no node could be drained"
    ]
    assert broken(serve_other_pods) == ["the Service selects other pods"]


@pytest.mark.parametrize("name", SERVICES)
def test_each_service_gets_every_setting_it_reads_and_they_parse(name: str) -> None:
    values, missing = environment(applied(), examples(), name)
    settings_class = SETTINGS[name]
    needed = {f"BEACON_{field.upper()}" for field in settings_class.model_fields} - {
        f"BEACON_{field.upper()}" for field in DEFAULTS_KEPT
    }

    assert missing == []
    assert needed - set(values) == set()
    fields = {key.removeprefix("BEACON_").lower(): value for key, value in values.items() if key.startswith("BEACON_")}
    settings = settings_class.model_validate({k: v for k, v in fields.items() if k in settings_class.model_fields})
    assert settings.port == DEFAULT_PORTS[name]
    assert settings.database_url.startswith("postgresql://")
    assert settings.nats_url.startswith("tls://")


@pytest.mark.parametrize("name", SERVICES)
def test_every_key_file_a_service_is_given_is_mounted_from_its_own_secrets(name: str) -> None:
    deployment = find(applied(), "Deployment", name)
    values, _ = environment(applied(), examples(), name)
    secrets_at = mounted_secrets(deployment)
    files = {key: value for key, value in values.items() if key.endswith("_FILE") and key.startswith("BEACON_")}

    for key, path in files.items():
        assert any(path.startswith(f"{mount}/") for mount in mounted_paths(deployment)), f"{key}={path} is not mounted"
    seed_dir = str(Path(values["BEACON_NATS_NKEY_SEED_FILE"]).parent)
    assert secrets_at[seed_dir] == f"beacon-{name}"
    assert set(secrets_at.values()) <= {f"beacon-{name}", SIGNING_KEY_SECRET}


def test_only_registry_holds_the_token_signing_key() -> None:
    holders = {
        name
        for name in SERVICES
        if SIGNING_KEY_SECRET in mounted_secrets(find(applied(), "Deployment", name)).values()
        or "BEACON_JWT_PRIVATE_KEY_FILE" in environment(applied(), examples(), name)[0]
    }
    private_key = environment(applied(), examples(), "registry")[0]["BEACON_JWT_PRIVATE_KEY_FILE"]

    assert holders == {"registry"}
    assert (
        mounted_secrets(find(applied(), "Deployment", "registry"))[str(Path(private_key).parent)] == SIGNING_KEY_SECRET
    )


def test_reporting_runs_replicas_that_share_the_partitions_out_without_a_gap() -> None:
    # Replicas are safe (shared/leadership.py, the checkpoint lock in shared/replay.py): at least
    # two, so that a partition's follower moves when one goes; no more than one per partition,
    # the projection's unit of work; and a rollout that never leaves fewer running.
    deployment = find(applied(), "Deployment", "reporting")
    autoscaler = find(applied(), "HorizontalPodAutoscaler", "reporting")
    partitions = int(environment(applied(), examples(), "reporting")[0]["BEACON_REPORTING_PARTITIONS"])

    assert deployment["spec"]["replicas"] == autoscaler["spec"]["minReplicas"] == 2
    assert autoscaler["spec"]["maxReplicas"] == partitions == 4
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_streams_are_replicated_on_as_many_servers_as_the_nats_cluster_has() -> None:
    config = find(applied(), "ConfigMap", "beacon-config")["data"]
    chart = yaml.safe_load((K8S / "nats-values.yaml").read_text())["config"]

    assert int(config["BEACON_STREAM_REPLICAS"]) == chart["cluster"]["replicas"] == 3
    assert chart["cluster"]["enabled"] and chart["jetstream"]["enabled"]
    assert chart["jetstream"]["fileStore"]["enabled"] and not chart["jetstream"]["memoryStore"]["enabled"]
    assert chart["nats"]["tls"]["enabled"]


# -- no real key in the repository ---------------------------------------------------------------


def test_the_example_secrets_hold_placeholders_only() -> None:
    stores = [doc for doc in examples() if doc["kind"] in ("Secret", "ConfigMap")]
    values = {
        f"{doc['metadata']['name']}/{key}": value
        for doc in stores
        for key, value in (doc.get("stringData") or doc.get("data") or {}).items()
    }

    assert {doc["metadata"]["name"] for doc in stores} >= {f"beacon-{name}" for name in SERVICES} | {SIGNING_KEY_SECRET}
    assert all(doc["metadata"]["annotations"]["beacon/placeholder"] == "true" for doc in stores)
    assert [name for name, value in values.items() if PLACEHOLDER not in value] == []
    assert [name for name, value in values.items() if looks_like_a_real_key(value)] == []


def test_no_file_under_deploy_k8s_holds_a_real_looking_key() -> None:
    files = [path for path in K8S.rglob("*") if path.is_file() and path.suffix in (".yaml", ".md", ".py")]
    assert [path.name for path in files if looks_like_a_real_key(path.read_text())] == []


def test_the_key_detector_recognises_real_keys() -> None:
    seed = new_user_seed().decode()
    pem = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----"
    random_key = base64.b64encode(bytes(range(32))).decode()

    assert [looks_like_a_real_key(value) for value in (seed, pem, random_key)] == [True, True, True]
    assert not looks_like_a_real_key("postgresql://registry:REPLACE-ME@postgres.example.internal:5432/registry")


# -- NATS: the chart's users are users.conf's ------------------------------------------------------


def chart_users() -> dict[str, Any]:
    values = yaml.safe_load((K8S / "nats-users-values.yaml").read_text())
    return {
        re.fullmatch(r"<< \$(\w+)_NKEY >>", user["nkey"]).group(1).lower(): user["permissions"]
        for user in values["config"]["merge"]["authorization"]["users"]
    }


def test_the_chart_users_are_generated_from_users_conf_as_it_is_now() -> None:
    assert (K8S / "nats-users-values.yaml").read_text() == nats_users.values_text(), (
        "deploy/nats/users.conf changed: run `python -m deploy.k8s.nats_users`"
    )


def test_the_chart_grants_each_service_exactly_the_permissions_of_users_conf() -> None:
    conf = nats_users.parse_conf(nats_users.USERS_CONF.read_text())
    tested = nats_users.permissions_by_service(conf)

    # Each service's user, and the operator's (`beacon status`, `beacon dlq`).
    assert set(chart_users()) == set(tested) == {*SERVICES, "operator"}
    assert chart_users() == tested
    assert "retry.>" in tested["operator"]["publish"]["allow"]
    # The parser reads users.conf's own words: a few of them, as written there.
    assert tested["registry"]["subscribe"] == {"allow": ["_INBOX.registry.>"]}
    assert "registry.>" in tested["registry"]["publish"]["allow"]
    assert "$JS.API.CONSUMER.DELETE.*.points-registry" in tested["reporting"]["publish"]["deny"]
    assert "deny" not in tested["dispatch"]["publish"]


def test_the_conf_parser_reads_variables_includes_and_every_value_form() -> None:
    conf = nats_users.parse_conf(
        '# comment\ninclude keys.conf\nP: { publish = { allow: ["a.>", b.c] } } // more\n'
        "authorization {\n  users = [\n    { nkey: $A_NKEY, permissions: $P }\n    {nkey: 'x', n: 3, t: true}\n  ]\n}\n"
    )

    assert conf.includes == ["keys.conf"]
    assert conf.settings["authorization"]["users"] == [
        {"nkey": nats_users.Variable("A_NKEY"), "permissions": {"publish": {"allow": ["a.>", "b.c"]}}},
        {"nkey": "x", "n": 3, "t": True},
    ]
    with pytest.raises(ValueError, match="line 1: missing '}'"):
        nats_users.parse_conf("a { b: 1")


def chart_nats_conf(store: Path) -> str:
    """nats.conf as the chart writes it from the two values files (its `config.merge` as JSON,
    `$include` as an include line, `<< … >>` unquoted), with the store at `store`."""
    chart = yaml.safe_load((K8S / "nats-values.yaml").read_text())["config"]
    merge = yaml.safe_load((K8S / "nats-users-values.yaml").read_text())["config"]["merge"]
    jetstream = {"store_dir": str(store), **chart["jetstream"]["merge"]}
    lines = ["port: -1", f"jetstream: {json.dumps(jetstream)}"]
    for key, value in merge.items():
        lines.append(f'include "{value}"' if key.endswith("$include") else f"{json.dumps(key)}: {json.dumps(value)}")
    return re.sub(r'"<< (.+?) >>"', r"\1", "\n".join(lines) + "\n")


def check_conf(path: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [nats_server_binary(), "-t", "-c", str(path)], check=False, capture_output=True, text=True, timeout=30, env=env
    )


def test_nats_server_accepts_the_chart_configuration_with_the_service_keys(tmp_path: Path) -> None:
    write_service_keys(tmp_path)
    (tmp_path / "nats.conf").write_text(chart_nats_conf(tmp_path / "store"))

    result = check_conf(tmp_path / "nats.conf")

    assert result.returncode == 0, result.stderr


def test_nats_server_refuses_the_chart_configuration_without_the_service_keys(tmp_path: Path) -> None:
    values = yaml.safe_load((K8S / "nats-users-values.yaml").read_text())
    (tmp_path / "service-keys.conf").write_text(values["configMap"]["merge"]["data"]["service-keys.conf"])
    (tmp_path / "nats.conf").write_text(chart_nats_conf(tmp_path / "store"))

    result = check_conf(tmp_path / "nats.conf")

    assert result.returncode != 0
    assert "REGISTRY_NKEY" in result.stderr + result.stdout


# -- a district's leaf node ------------------------------------------------------------------------

DISTRICT = "370303"


def leaf_node_setup(folder: Path, leaf_port: int) -> tuple[Path, Path, dict[str, str], Path]:
    """The city's configuration (users.conf with this run's keys, the district's side of the leaf
    node, and the district's leaf user added to the users) and the district's leaf-district.conf,
    their TLS paths pointed at a throwaway CA's certificate; returns both files, the district
    server's environment and the district user's seed file."""
    deploy_nats = REPO / "deploy" / "nats"
    tls, city, district = folder / "tls", folder / "city", folder / "district"
    write_certificates(tls, host="127.0.0.1")
    write_service_keys(city)
    district.mkdir()
    (city / "users.conf").write_text((deploy_nats / "users.conf").read_text())
    city_side = (deploy_nats / "leaf-district-city.conf").read_text().replace("/etc/nats/tls/", f"{tls}/")
    (city / "leaf-district-city.conf").write_text(re.sub(r"port: 7422", f"port: {leaf_port}", city_side))
    leaf_seed, user_seed = new_user_seed(), new_user_seed()
    (district / "user.nk").write_bytes(user_seed)
    (city / "city.conf").write_text(
        'include "users.conf"\ninclude "leaf-district-city.conf"\n'
        "authorization { users = [\n"
        "  { nkey: $REGISTRY_NKEY, permissions: $REGISTRY_PERMISSIONS }\n"
        f"  {{ nkey: {public_key(leaf_seed)}, permissions: ${f'DISTRICT_{DISTRICT}_LEAF_PERMISSIONS'} }}\n"
        "] }\n"
    )
    leaf = (deploy_nats / "leaf-district.conf").read_text().replace("/etc/nats/tls/", f"{tls}/")
    # The store and the client port come from the command line (nats-server refuses both).
    (district / "leaf.conf").write_text(re.sub(r"^\s*(http_port|store_dir|port):.*$", "", leaf, flags=re.MULTILINE))
    environment = {
        "BEACON_CITY_LEAF_URL": f"tls://127.0.0.1:{leaf_port}",
        "BEACON_DISTRICT_LEAF_SEED": leaf_seed.decode(),
        "BEACON_DISTRICT_USER_NKEY": public_key(user_seed),
    }
    return city / "city.conf", district / "leaf.conf", environment, district / "user.nk"


def test_nats_server_accepts_the_district_leaf_configuration(tmp_path: Path) -> None:
    _, leaf_conf, environment, _ = leaf_node_setup(tmp_path, leaf_port=7422)
    as_it_is = (REPO / "deploy" / "nats" / "leaf-district.conf").read_text()
    leaf_conf.write_text(as_it_is.replace("/etc/nats/tls/", f"{tmp_path / 'tls'}/"))  # but for the CA's place

    accepted = check_conf(leaf_conf, env={**os.environ, **environment})
    without_seed = check_conf(leaf_conf, env={**os.environ, **environment, "BEACON_DISTRICT_LEAF_SEED": ""})

    assert accepted.returncode == 0, accepted.stderr
    assert without_seed.returncode != 0  # an empty seed is no key: the leaf never connects unauthenticated


async def test_a_district_leaf_node_receives_its_own_districts_events_and_nothing_else(tmp_path: Path) -> None:
    leaf_port = free_port()
    city_conf, leaf_conf, environment, user_seed = leaf_node_setup(tmp_path, leaf_port)
    city = LocalNatsServer(tmp_path / "city-store", config_file=city_conf, log_file=tmp_path / "city.log")
    district = LocalNatsServer(
        tmp_path / "district-store", config_file=leaf_conf, log_file=tmp_path / "district.log", environment=environment
    )
    ours, theirs = f"registry.{DISTRICT}.volunteer.registered", "registry.370304.volunteer.registered"
    probe = f"registry.{DISTRICT}.probe.sent"
    received: list[str] = []

    async def on_message(msg: Msg) -> None:
        received.append(msg.subject)

    with city, district:
        registry = await nats.connect(
            city.url, nkeys_seed=str(tmp_path / "city" / "registry.nk"), inbox_prefix=inbox_prefix("registry")
        )
        errors: list[str] = []

        async def on_error(error: Exception) -> None:
            errors.append(str(error).lower())

        local = await nats.connect(district.url, nkeys_seed=str(user_seed), error_cb=on_error)
        try:
            await ensure_stream(registry.jetstream(), context_stream("registry", StreamSettings()))
            subjects = [f"{context}.{DISTRICT}.>" for context in ("registry", "dispatch", "points")]
            await local.jetstream().add_stream(
                StreamConfig(name="DISTRICT", subjects=subjects, storage=StorageType.FILE)
            )
            await local.subscribe("registry.>", cb=on_message)
            await local.flush()

            async def interest_reached_the_city() -> bool:
                await registry.jetstream().publish(probe, b"{}")
                await asyncio.sleep(0.1)
                return probe in received

            await until(interest_reached_the_city, "the leaf node to connect and its interest to reach the city")
            # The other district's event first: on one connection and one link, it would arrive first.
            await registry.jetstream().publish(theirs, b"{}")
            ack = await registry.jetstream().publish(ours, b"{}")
            await until(lambda: ours in received, "the district's event to arrive")
            district_copy = await local.jetstream().get_last_msg("DISTRICT", ours)
            await local.publish(ours, b"{}")  # the district's applications may not add events to its copy
            await until(lambda: any("permissions violation for publish" in error for error in errors), "a refusal")
        finally:
            await registry.close()
            await local.close()

    assert ack.stream == "REGISTRY"  # the city's stream answered the service, not the district's copy
    assert [subject for subject in received if subject != probe] == [ours]
    assert district_copy.subject == ours
    assert any(f'permissions violation for publish to "{ours}"' in error for error in errors)


async def until(condition: Callable[[], Any], what: str, within: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        outcome = condition()
        if asyncio.iscoroutine(outcome):
            outcome = await outcome
        if outcome:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"waited {within}s for {what}")
        await asyncio.sleep(0.05)

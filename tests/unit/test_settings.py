"""Service settings: a NATS cluster's nodes given in one BEACON_NATS_URL."""

from __future__ import annotations

from shared.settings import ServiceSettings


def test_a_clusters_nodes_are_given_comma_separated_and_each_is_a_server() -> None:
    settings = ServiceSettings(service="points", nats_url="nats://nats-1:4222, nats://nats-2:4222,nats://nats-3:4222")
    nodes = ["nats://nats-1:4222", "nats://nats-2:4222", "nats://nats-3:4222"]
    assert settings.nats_servers == nodes
    assert settings.nats_connect_options()["servers"] == nodes


def test_one_server_is_a_list_of_one() -> None:
    assert ServiceSettings(nats_url="tls://nats.example.internal:4222").nats_servers == [
        "tls://nats.example.internal:4222"
    ]

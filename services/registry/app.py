"""Wiring of the registry service: settings, store, personal-data vault, token signing, bus,
routes, jobs."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, time, timedelta

from fastapi import FastAPI
from nats.aio.client import Client

import shared.events  # noqa: F401  (registers the catalog)
from services.registry import credentials, store, subscribers
from services.registry.api import accounts, auth, certificates, imports, org, teams, training, volunteers
from services.registry.handlers import Registry
from services.registry.handlers import sign_in as sign_in_handlers
from services.registry.handlers import volunteers as volunteer_handlers
from services.registry.vault import Vault, VaultKeys
from shared.audit import audit_router
from shared.auth import TokenIssuer, TokenVerifier
from shared.citytime import CITY_ZONE, city_today
from shared.devkeys import beside_sqlite, public_pem_of
from shared.envelope import utcnow
from shared.runtime import ServiceRuntime, clock_job
from shared.settings import ServiceSettings
from shared.subscriber import subscribe

log = logging.getLogger(__name__)


class RegistrySettings(ServiceSettings):
    personal_data_key: str = ""  # base64 of 32 bytes: seals each volunteer's own key
    id_index_key: str = ""  # base64 of at least 32 bytes: keys the ID-number hash
    jwt_private_key_file: str = ""  # PEM of the Ed25519 key that signs access tokens: registry's alone


def vault_keys(settings: RegistrySettings) -> VaultKeys:
    if settings.personal_data_key and settings.id_index_key:
        return VaultKeys.from_settings(settings.personal_data_key, settings.id_index_key)
    path = beside_sqlite(settings.database_url, ".keys.json")
    if path is not None:
        return VaultKeys.from_file(path)
    raise RuntimeError("set BEACON_PERSONAL_DATA_KEY and BEACON_ID_INDEX_KEY: personal data is sealed with them")


async def expire_certifications_daily(registry: Registry) -> None:
    while True:
        try:
            expired = await volunteer_handlers.expire_certifications(registry, city_today())
            if expired:
                log.info("expired %d certifications", expired)
        except Exception:
            log.exception("certification expiry failed; trying again in an hour")
            await asyncio.sleep(3600)
            continue
        # A certification expires at the city's midnight, not the machine's.
        midnight = datetime.combine(city_today() + timedelta(days=1), time.min, CITY_ZONE)
        await asyncio.sleep(max((midnight - datetime.now(UTC)).total_seconds(), 1))


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    base = (settings or RegistrySettings()).for_service("registry")
    registry_settings = base if isinstance(base, RegistrySettings) else RegistrySettings(**base.model_dump())
    # Registry follows dispatch's service records, to certify them (志愿服务记录证明).
    runtime = ServiceRuntime(registry_settings, store.schema, consumes=("dispatch",))
    registry = Registry(runtime.store, Vault(vault_keys(registry_settings)))
    signing_key = credentials.signing_key(
        registry_settings.jwt_private_key_file, registry_settings.jwt_public_key_file, registry_settings.database_url
    )

    async def expiry_job(_: Client) -> None:
        await expire_certifications_daily(registry)

    records = subscribers.records_reactor(runtime.store)
    subscribe(runtime.broker, records, "dispatch", subject=subscribers.RECORD_SUBJECTS)
    runtime.reads(
        f"{records.name}-dispatch", "dispatch", records.handlers.__contains__, subject=subscribers.RECORD_SUBJECTS
    )
    runtime.add_worker(expiry_job)
    runtime.add_worker(
        clock_job("sign-in clean-up", lambda: sign_in_handlers.forget_expired(registry, utcnow()), every=3600)
    )
    app = runtime.create_app(
        audit_router("volunteer", "/volunteers/{aggregate_id}/audit", "volunteers"),
        org.router, imports.router, volunteers.router, teams.router, training.router, auth.router, accounts.router,
        certificates.router,
        title="Beacon registry", description="Org tree, practice sites, volunteers, teams, training, sign-in, service-record certificates.",
    )  # fmt: skip
    app.state.registry = registry
    app.state.token_issuer = TokenIssuer(signing_key)
    app.state.token_verifier = TokenVerifier(public_pem_of(signing_key))  # its own tokens, key file or not
    app.state.clock = utcnow
    return app

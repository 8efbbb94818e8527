"""Sign-in accounts, pure: who may grant which role where, the account's life, and the secrets
(argon2id as production hashes, the signing key registry refuses to start without)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from services.registry import credentials
from services.registry.app import RegistrySettings, create_app
from services.registry.domain import accounts
from services.registry.domain.accounts import Account, AccountState, Place
from shared.auth import Actor, Role, TokenIssuer, TokenVerifier, new_key_pair
from shared.envelope import utcnow
from shared.errors import Conflict, Forbidden, Invalid, NotFound
from shared.events.common import OrgLevel
from shared.events.registry import AccountClosed, AccountOpened, AccountRoleChanged, PasswordChanged
from tests.factories import TEST_ID_INDEX_KEY, TEST_PERSONAL_DATA_KEY

CITY_ADMIN = Actor("AC1", Role.city_admin, "370300")
DISTRICT = Actor("AC2", Role.district_admin, "370303")
STATION = Actor("AC3", Role.station_staff, "370303001001")
HERE = ("370303", "370303001000", "370303001001")
THERE = ("370303", "370303002000", "370303002001")


@pytest.mark.parametrize(
    ("granter", "role"),
    [
        (STATION, Role.volunteer), (STATION, Role.team_leader), (STATION, Role.station_staff),
        (DISTRICT, Role.district_admin), (DISTRICT, Role.street_staff),
        (CITY_ADMIN, Role.city_admin), (CITY_ADMIN, Role.partner),
    ],
)  # fmt: skip
def test_staff_may_grant_roles_at_or_below_their_own_level(granter: Actor, role: Role) -> None:
    accounts.ensure_may_grant(granter, role)


@pytest.mark.parametrize(
    ("granter", "role"),
    [
        (STATION, Role.street_staff), (STATION, Role.partner), (DISTRICT, Role.city_admin), (DISTRICT, Role.partner),
        (Actor("AC4", Role.team_leader, "T00000001"), Role.volunteer),
        (Actor("AC5", Role.volunteer, "V00000001"), Role.volunteer),
        (Actor("AC6", Role.partner, ""), Role.partner), (Actor("anonymous"), Role.volunteer),
    ],
)  # fmt: skip
def test_a_role_above_the_granters_or_a_granter_who_is_not_staff_is_forbidden(granter: Actor, role: Role) -> None:
    with pytest.raises(Forbidden):
        accounts.ensure_may_grant(granter, role)


def test_a_scope_outside_the_granters_part_of_the_tree_is_as_unknown_as_one_that_does_not_exist() -> None:
    with pytest.raises(NotFound) as outside:
        accounts.ensure_grantable_at(STATION, Role.volunteer, "V00000002", Place(THERE))
    with pytest.raises(NotFound) as missing:
        accounts.ensure_grantable_at(STATION, Role.volunteer, "V00000002", None)
    assert outside.value.message == missing.value.message == "unknown volunteer V00000002"
    accounts.ensure_grantable_at(STATION, Role.volunteer, "V00000001", Place(HERE))
    accounts.ensure_grantable_at(CITY_ADMIN, Role.volunteer, "V00000002", Place(THERE))


def test_a_staff_scope_is_an_org_unit_of_the_roles_level_and_a_gone_scope_is_refused() -> None:
    with pytest.raises(Invalid):
        accounts.ensure_grantable_at(DISTRICT, Role.station_staff, "370303001000", Place(HERE[:2], OrgLevel.street))
    accounts.ensure_grantable_at(DISTRICT, Role.station_staff, "370303001001", Place(HERE, OrgLevel.community))
    with pytest.raises(Conflict):
        accounts.ensure_grantable_at(STATION, Role.team_leader, "T00000001", Place(HERE, gone=True))


@pytest.mark.parametrize(
    ("role", "scope"),
    [
        (Role.city_admin, "370303"), (Role.district_admin, "370303001000"), (Role.street_staff, "370303001001"),
        (Role.station_staff, "370303"), (Role.team_leader, "V00000001"), (Role.volunteer, "T00000001"),
        (Role.partner, "370300"), (Role.volunteer, ""),
    ],
)  # fmt: skip
def test_each_role_names_its_own_kind_of_scope(role: Role, scope: str) -> None:
    with pytest.raises(Invalid) as refused:
        accounts.open_account("AC00000001", role, scope)
    assert refused.value.field == "scope"


def test_an_accounts_life_is_folded_from_its_events() -> None:
    opened = accounts.open_account("AC00000001", Role.volunteer, "V00000001")
    assert opened == AccountOpened(account_id="AC00000001", role=Role.volunteer, scope="V00000001")
    account = accounts.fold([opened])
    assert account == Account("AC00000001", Role.volunteer, "V00000001")
    assert accounts.change_role(account, Role.volunteer, "V00000001") == []  # nothing to change
    (changed,) = accounts.change_role(account, Role.team_leader, "T00000001")
    assert changed == AccountRoleChanged(
        account_id="AC00000001",
        role="team_leader",
        scope="T00000001",
        previous_role="volunteer",
        previous_scope="V00000001",
    )
    assert accounts.change_password(account, reset=True) == [PasswordChanged(account_id="AC00000001", reset=True)]
    closed = accounts.fold([opened, changed, *accounts.close(account)])
    assert closed == Account("AC00000001", Role.team_leader, "T00000001", AccountState.closed)
    assert accounts.close(account) == [AccountClosed(account_id="AC00000001")]
    for refused in (lambda: accounts.close(closed), lambda: accounts.change_password(closed, reset=False)):
        with pytest.raises(Conflict):
            refused()


def test_the_holder_or_staff_over_an_account_manage_it_and_nobody_else_learns_it_exists() -> None:
    account = Account("AC00000009", Role.volunteer, "V00000001")
    accounts.ensure_manages(STATION, account, HERE, holder_too=False)
    accounts.ensure_manages(Actor("AC00000009", Role.volunteer, "V00000001"), account, HERE, holder_too=True)
    for stranger in (Actor("AC7", Role.station_staff, "370303002001"), Actor("AC8", Role.volunteer, "V00000002")):
        with pytest.raises(NotFound):
            accounts.ensure_manages(stranger, account, HERE, holder_too=True)
    with pytest.raises(NotFound):
        accounts.ensure_holder(STATION, account)


def test_usernames_are_found_whatever_their_case_or_width() -> None:
    assert accounts.normal_username(" Heping-Station ") == accounts.normal_username("heping-station")
    assert accounts.normal_username("１３９１２３４５６７８") == "13912345678"


def test_passwords_are_hashed_with_argon2id_at_rfc_9106s_recommended_cost() -> None:
    hashed = asyncio.run(credentials.hash_password("lantern-festival"))
    assert hashed.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert asyncio.run(credentials.verify_password(hashed, "lantern-festival"))
    assert not asyncio.run(credentials.verify_password(hashed, "lantern-festivaL"))
    assert not asyncio.run(credentials.verify_password(None, "lantern-festival"))
    assert not asyncio.run(credentials.verify_password("not a hash", "lantern-festival"))
    assert credentials.refresh_token_hash("token") != credentials.refresh_token_hash("token2")


def _settings(database_url: str, **keys: str) -> RegistrySettings:
    keys = {"jwt_private_key_file": "", "jwt_public_key_file": "", **keys}
    return RegistrySettings(
        database_url=database_url, personal_data_key=TEST_PERSONAL_DATA_KEY, id_index_key=TEST_ID_INDEX_KEY, **keys
    )


def test_registry_refuses_to_start_on_postgresql_without_a_signing_key() -> None:
    with pytest.raises(RuntimeError, match="BEACON_JWT_PRIVATE_KEY_FILE"):
        create_app(_settings("postgresql://beacon@127.0.0.1:1/registry"))


def test_registry_refuses_a_public_key_that_is_not_its_signing_keys(tmp_path: Path) -> None:
    private, _ = new_key_pair()
    _, someone_elses = new_key_pair()
    (tmp_path / "signing.pem").write_bytes(private)
    (tmp_path / "verifying.pem").write_bytes(someone_elses)
    keys = {
        "jwt_private_key_file": str(tmp_path / "signing.pem"),
        "jwt_public_key_file": str(tmp_path / "verifying.pem"),
    }
    with pytest.raises(RuntimeError, match="not the public key"):
        create_app(_settings("postgresql://beacon@127.0.0.1:1/registry", **keys))


def test_on_a_sqlite_development_store_registry_makes_a_key_pair_once_beside_it(tmp_path: Path) -> None:
    app = create_app(_settings(f"sqlite:///{tmp_path / 'registry.db'}"))
    private, public = tmp_path / "registry.token-signing.pem", tmp_path / "registry.token-signing.pub.pem"
    assert private.stat().st_mode & 0o777 == 0o600
    token = app.state.token_issuer.issue("AC00000001", Role.volunteer, "V00000001", utcnow())
    assert TokenVerifier(public.read_bytes()).actor(token) == Actor("AC00000001", Role.volunteer, "V00000001")
    again = create_app(_settings(f"sqlite:///{tmp_path / 'registry.db'}"))
    assert private.read_bytes() == credentials.signing_key("", "", f"sqlite:///{tmp_path / 'registry.db'}")
    assert isinstance(again.state.token_issuer, TokenIssuer)

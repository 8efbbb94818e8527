"""Each service's schema migrations (Alembic), run at every start and by hand.

A service's revisions live in `services/<name>/migrations/versions/`; its `migrations/__init__.py`
names the models they lead to (a `ServiceMigrations`), and its `env.py` runs them through here.
No alembic.ini: the configuration is built here, and migrations always run over a connection of
the service's own async engine (`run_sync`), SQLite and PostgreSQL alike.

    python -m shared.migrations revision dispatch -m "shifts keep a note"   # autogenerate one
    python -m shared.migrations check dispatch --database-url …             # models vs database
    python -m shared.migrations upgrade|downgrade|current dispatch …
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
import tempfile
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, MetaData, inspect, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.types import TypeDecorator

from shared.db import make_engine, reading, writing

VERSION_TABLE = "alembic_version"


class SchemaMismatch(Exception):
    """A database made before migrations (by create_all) that is not what the models describe:
    it is left as it was, and the service does not start on it."""


def _never(_: str) -> bool:
    return False


@dataclass(frozen=True)
class ServiceMigrations:
    """A service's Alembic environment: where its revisions are, the models they lead to, and
    which tables of its database are made at run time rather than migrated (`run_time_table`)."""

    service: str
    metadata: MetaData
    run_time_table: Callable[[str], bool] = field(default=_never)

    @property
    def script_location(self) -> str:
        return f"services.{self.service}:migrations"

    @property
    def lock_key(self) -> str:
        """Names the PostgreSQL advisory lock its replicas take turns on (hashtextextended)."""
        return f"beacon migrations: {self.service}"

    def config(self, connection: Connection | None = None) -> Config:
        config = Config()
        config.set_main_option("script_location", self.script_location)
        # Revision files read in order: versions/0002_shifts_keep_a_note.py
        config.set_main_option("file_template", "%%(rev)s_%%(slug)s")
        config.attributes["connection"] = connection
        return config

    def script(self) -> ScriptDirectory:
        return ScriptDirectory.from_config(self.config())

    # -- in env.py ----------------------------------------------------------------------------

    def run_environment(self) -> None:
        """The body of the service's env.py: run the revisions over the connection it was given."""
        from alembic import context

        connection = context.config.attributes.get("connection")
        if connection is None:
            raise RuntimeError(
                f"{self.service}'s migrations run over a service's connection: use `python -m shared.migrations`"
            )
        context.configure(
            connection=connection,
            target_metadata=self.metadata,
            include_name=self._include_name,
            include_object=self._include_object,
            compare_type=True,
            # SQLite alters a table by copying it: autogenerate writes op.batch_alter_table, which
            # does that there and plain ALTERs on PostgreSQL.
            render_as_batch=True,
            render_item=_render_plain_types,
        )
        with context.begin_transaction():
            context.run_migrations()

    def _include_name(self, name: str | None, type_: str, parent_names: Any) -> bool:
        return not (type_ == "table" and name is not None and self.run_time_table(name))

    def _include_object(self, obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        if type_ == "unique_constraint":
            # One over exactly the primary key's columns adds nothing, and PostgreSQL folds it into
            # the key (points' `uq_redemption`): there is nothing to compare it with.
            table = self.metadata.tables.get(obj.table.name)
            key = {column.name for column in table.primary_key.columns} if table is not None else set()
            return {column.name for column in obj.columns} != key
        return True

    # -- over a connection (in run_sync) ------------------------------------------------------

    def upgrade_connection(self, connection: Connection, revision: str = "head") -> None:
        """Bring the schema to `revision`; a database made by create_all is adopted first."""
        present = set(inspect(connection).get_table_names())
        if VERSION_TABLE not in present and present & set(self.metadata.tables):
            self._adopt(connection)
        command.upgrade(self.config(connection), revision)

    def _adopt(self, connection: Connection) -> None:
        """Take over a database that create_all made (every start did, before migrations). Made
        from these models, perhaps before some table was added: the missing tables are made, as
        create_all would have, and it is recorded at head. Made before a later revision: it is
        recorded at the first revision (the schema create_all made then) and migrated. Either way
        it must then equal the models; if not, nothing changed (the transaction is rolled back)."""
        config = self.config(connection)
        attempt = connection.begin_nested()
        self.metadata.create_all(connection)  # only the missing tables
        at_head = self.differences_on(connection)
        if not at_head:
            attempt.commit()
            command.stamp(config, "head")
            return
        attempt.rollback()
        try:
            command.stamp(config, self.script().get_base())
            command.upgrade(config, "head")
        except DBAPIError as error:  # a revision met what it makes already there
            raise self._mismatch(at_head, f"its revisions do not apply ({error.orig})") from error
        self.metadata.create_all(connection)
        if self.differences_on(connection):
            raise self._mismatch(at_head, "migrated from the first revision it still differs")

    def _mismatch(self, at_head: list[Any], first: str) -> SchemaMismatch:
        listed = "\n  ".join(map(str, at_head))
        return SchemaMismatch(
            f"{self.service}: the database has tables but no {VERSION_TABLE}, and it is neither the models' "
            f"schema, which it differs from by\n  {listed}\nnor the first revision's ({first}). Nothing was "
            f"changed. Migrate it by hand and record it (`python -m shared.migrations stamp {self.service} "
            f"--to head`), or start from an empty database."
        )

    def differences_on(self, connection: Connection, metadata: MetaData | None = None) -> list[Any]:
        """What autogenerate would change to make the database the models (`metadata`: others, to
        compare against a copy); empty when they match."""
        context = MigrationContext.configure(
            connection,
            opts={"include_name": self._include_name, "include_object": self._include_object, "compare_type": True},
        )
        return compare_metadata(context, metadata if metadata is not None else self.metadata)

    def current_on(self, connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    # -- over the service's engine ------------------------------------------------------------

    async def upgrade(self, engine: AsyncEngine, revision: str = "head") -> None:
        """Migrate in one transaction. Replicas starting together on PostgreSQL take turns on an
        advisory lock, so the second finds the first one's work done; SQLite's BEGIN IMMEDIATE
        already lets one writer in at a time."""
        async with self._migrating(engine) as conn:
            await conn.run_sync(self.upgrade_connection, revision)

    async def downgrade(self, engine: AsyncEngine, revision: str) -> None:
        async with self._migrating(engine) as conn:
            await conn.run_sync(lambda sync: command.downgrade(self.config(sync), revision))

    async def stamp(self, engine: AsyncEngine, revision: str) -> None:
        async with self._migrating(engine) as conn:
            await conn.run_sync(lambda sync: command.stamp(self.config(sync), revision))

    async def differences(self, engine: AsyncEngine, metadata: MetaData | None = None) -> list[Any]:
        async with reading(engine) as conn:
            return await conn.run_sync(self.differences_on, metadata)

    async def current(self, engine: AsyncEngine) -> str | None:
        async with reading(engine) as conn:
            return await conn.run_sync(self.current_on)

    async def revision(self, engine: AsyncEngine, message: str) -> str:
        """Write a revision from what the models have that the database (at head) lacks; the
        file's path. Numbered in order: 0001, 0002, …"""
        rev_id = f"{len(list(self.script().walk_revisions())) + 1:04d}"

        def write(connection: Connection) -> Any:
            config = self.config(connection)
            config.set_section_option("post_write_hooks", "hooks", "ruff")  # in the house format
            config.set_section_option("post_write_hooks", "ruff.type", "module")
            config.set_section_option("post_write_hooks", "ruff.module", "ruff")
            config.set_section_option("post_write_hooks", "ruff.options", "format REVISION_SCRIPT_FILENAME")
            return command.revision(config, message, autogenerate=True, rev_id=rev_id)

        async with self._migrating(engine) as conn:
            script = await conn.run_sync(write)
        assert script is not None and not isinstance(script, list)
        return script.path

    @asynccontextmanager
    async def _migrating(self, engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
        """One transaction that has this process's turn at Alembic and, on PostgreSQL, the
        service's advisory lock (held until it ends)."""
        async with _alembic_turn(), writing(engine) as conn:
            if conn.dialect.name == "postgresql":
                await conn.execute(
                    text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": self.lock_key}
                )
            yield conn


# Alembic runs a command through module-level proxies (`alembic.context`, `alembic.op`), so two
# at once in one process (services started together in a test, each migrating its own store)
# would run in each other's environment: they take turns, across threads and event loops alike.
_ALEMBIC = threading.Lock()


@asynccontextmanager
async def _alembic_turn() -> AsyncIterator[None]:
    if not _ALEMBIC.acquire(blocking=False):
        waiting = asyncio.get_running_loop().run_in_executor(None, _ALEMBIC.acquire)
        try:
            await asyncio.shield(waiting)
        except asyncio.CancelledError:
            waiting.add_done_callback(lambda _: _ALEMBIC.release())  # the turn comes, unwanted
            raise
    try:
        yield
    finally:
        _ALEMBIC.release()


def _render_plain_types(type_: str, obj: Any, autogen_context: Any) -> str | bool:
    """A revision stays as written: a column of one of our own types (UtcDateTime) is written as
    the plain type it stores, not as an import of code that may change after."""
    if type_ == "type" and isinstance(obj, TypeDecorator):
        return f"sa.{obj.impl_instance!r}"
    return False


def migrations_of(service: str) -> ServiceMigrations:
    """The service's `ServiceMigrations`, from its own migrations package."""
    return importlib.import_module(f"services.{service}.migrations").migrations


# -- command line ---------------------------------------------------------------------------------


async def _run(args: argparse.Namespace) -> int:
    migrations = migrations_of(args.service)
    scratch = None
    url = args.database_url
    if url is None and args.command == "revision":
        # A revision needs a database at head to compare with: a scratch one unless given one.
        scratch = tempfile.TemporaryDirectory(prefix=f"beacon-{args.service}-migrations-")
        url = f"sqlite:///{Path(scratch.name) / 'scratch.db'}"
    if url is None:
        from shared.settings import ServiceSettings

        url = ServiceSettings().for_service(args.service).database_url
    engine = make_engine(url)
    try:
        if args.command == "revision":
            await migrations.upgrade(engine)
            path = await migrations.revision(engine, args.message)
            print(f"wrote {path}: read it, and run tests/integration/test_migrations.py")
        elif args.command == "upgrade":
            await migrations.upgrade(engine, args.to or "head")
        elif args.command == "downgrade":
            await migrations.downgrade(engine, args.to)
        elif args.command == "stamp":
            await migrations.stamp(engine, args.to)
        elif args.command == "current":
            print(await migrations.current(engine) or "(none)")
        elif args.command == "check":
            differences = await migrations.differences(engine)
            for difference in differences:
                print(difference)
            print(f"{len(differences)} differences between {args.service}'s models and the database")
            return 1 if differences else 0
        return 0
    finally:
        await engine.dispose()
        if scratch is not None:
            scratch.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.migrations", description="A service's schema migrations.")
    parser.add_argument("command", choices=["revision", "upgrade", "downgrade", "stamp", "current", "check"])
    parser.add_argument("service", choices=["registry", "dispatch", "points", "reporting"])
    parser.add_argument("-m", "--message", help="revision: what it changes")
    parser.add_argument("--to", help="upgrade (default head), downgrade, stamp: the revision")
    parser.add_argument(
        "--database-url", help="default: BEACON_DATABASE_URL or data/<service>.db (revision: a scratch one)"
    )
    args = parser.parse_args(argv)
    if args.command == "revision" and not args.message:
        parser.error("revision needs -m MESSAGE")
    if args.command in ("downgrade", "stamp") and not args.to:
        parser.error(f"{args.command} needs --to REVISION (base: all the way down)")
    return asyncio.run(_run(args))


if __name__ == "__main__":
    sys.exit(main())

"""Reporting's schema migrations: versions/ holds its revisions, which lead to the event store's
tables (as every service has) and its projector's bookkeeping (shared.replay.projector_tables).

Not migrated: each generation's figure tables (`counters_g3`, `org_nodes_g3`, …). They hold
nothing the streams cannot give again, so a change to them is a new generation that a rebuild
fills (Projector.setup sees an active generation of another shape and rebuilds it), made and
dropped at run time. Alembic leaves them alone and the comparison with the models skips them.
"""

import re

from sqlalchemy import MetaData

from services.reporting.projection import FigureTables
from shared.eventstore import EventStoreSchema
from shared.migrations import ServiceMigrations
from shared.replay import projector_tables

metadata = MetaData()
EventStoreSchema(metadata)
projector_tables(metadata)

_FIGURE_TABLES = {re.sub(r"_g0$", "", table.name) for table in FigureTables(MetaData(), 0).all()}


def is_figure_table(name: str) -> bool:
    """Whether a table is one generation's figure table (made at run time, never migrated)."""
    base, generation = re.subn(r"_g\d+$", "", name)
    return generation == 1 and base in _FIGURE_TABLES


migrations = ServiceMigrations("reporting", metadata, run_time_table=is_figure_table)

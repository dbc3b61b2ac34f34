"""Schema migrations (Alembic), run programmatically: ``python -m server migrate`` and
at start-up unless ``TASKBELL_NO_MIGRATE=1``."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(database_url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    cfg.attributes["configure_logger"] = False
    return cfg


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the database to ``revision``. Safe to run from several processes at once
    on PostgreSQL (an advisory lock serializes them). Call outside a running event loop
    (or in a thread): Alembic's env runs its own."""
    command.upgrade(alembic_config(database_url), revision)

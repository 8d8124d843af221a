"""Database engines and schema migrations (SQLite by default, PostgreSQL for scale)."""

from __future__ import annotations

import logging
import os
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

import migrations

__all__ = [
    "DEFAULT_DB_URL",
    "DatabaseFile",
    "alembic_config",
    "create_db_engine",
    "upgrade_database",
]

logger = logging.getLogger(__name__)

DEFAULT_DB_URL = "sqlite:///temporal-tracer.db"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the API read while the linker writes; NORMAL sync is safe under WAL.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def create_db_engine(url: str) -> Engine:
    """An engine for ``url`` with the settings the store relies on."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True)


def alembic_config(url: str) -> Config:
    """Alembic configuration pointing at the packaged ``migrations`` scripts."""
    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade_database(engine: Engine) -> None:
    """Apply every pending migration to the database behind ``engine``."""
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    logger.info("database schema is up to date (%s)", engine.url.render_as_string())


@dataclass
class DatabaseFile:
    """The SQLite file an engine writes to, and whether it is still the file at its path.

    A connection keeps writing to the file it opened even after the file (or its folder)
    was deleted or replaced: those writes are lost at the next start. The identity
    (device and inode) seen first is the file this process stands by.
    """

    path: Path
    identity: tuple[int, int] | None = field(default=None)

    @classmethod
    def of(cls, engine: Engine) -> DatabaseFile | None:
        """The file behind a SQLite engine (``None`` for PostgreSQL or in-memory SQLite)."""
        if engine.dialect.name != "sqlite":
            return None
        database = engine.url.database
        if not database or database == ":memory:" or database.startswith("file:"):
            return None
        found = cls(Path(database).resolve())
        found.problem()  # remember the file there now, when there is one
        return found

    def problem(self) -> str | None:
        """Why the path no longer holds the file this process opened (``None``: it does;
        the first file seen is remembered)."""
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return f"the database file {self.path} is gone" if self.identity else None
        except OSError as err:
            return f"the database file {self.path} cannot be checked: {err.strerror or err}"
        identity = (stat.st_dev, stat.st_ino)
        if self.identity is None:
            self.identity = identity
        elif identity != self.identity:
            return f"{self.path} is no longer the database file this collector opened"
        return None

    def probe_write(self) -> None:
        """Commit a write through a new connection, as the next pooled one would open it.

        Raises:
            sqlite3.Error: The file cannot be opened for writing, or the write fails.
        """
        # mode=rw: never create an empty database where the real one went missing.
        connection = sqlite3.connect(f"file:{self.path}?mode=rw", uri=True, timeout=5)
        try:
            now = datetime.now(UTC).replace(tzinfo=None).isoformat(" ")
            connection.execute(
                "INSERT INTO store_probes (name, written_at) VALUES ('readiness', ?) "
                "ON CONFLICT (name) DO UPDATE SET written_at = excluded.written_at",
                (now,),
            )
            connection.commit()
        finally:
            connection.close()

"""Database engines and schema migrations (SQLite by default, PostgreSQL for scale)."""

from __future__ import annotations

import importlib.util
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
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

import migrations

__all__ = [
    "DEFAULT_DB_URL",
    "DatabaseFile",
    "DatabaseProblem",
    "alembic_config",
    "check_db_url",
    "create_db_engine",
    "describe_database_error",
    "upgrade_database",
]

logger = logging.getLogger(__name__)

DEFAULT_DB_URL = "sqlite:///temporal-tracer.db"
_SUPPORTED = "sqlite:///path/to/file.db or postgresql+psycopg://user:password@host:5432/db"
_POSTGRES_EXTRA = "pip install 'temporal-tracer[postgres]'"
# Seconds to wait for PostgreSQL to accept a connection (libpq waits forever by default).
_CONNECT_TIMEOUT = 10


class DatabaseProblem(Exception):
    """A database the collector cannot use, said in one line with what to do about it."""


def check_db_url(url: str) -> URL:
    """The parsed URL, if the collector can use it.

    Raises:
        DatabaseProblem: Not a URL; a database other than SQLite and PostgreSQL; a
            PostgreSQL scheme without the psycopg driver (``postgres://``,
            ``postgresql://``) or psycopg not installed; a SQLite file in a folder that
            does not exist (it is never created).
    """
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise DatabaseProblem(f"not a database URL: use {_SUPPORTED}") from None
    # Read from the scheme itself: asking SQLAlchemy would import the dialect first.
    backend, _, driver = parsed.drivername.partition("+")
    if backend in ("postgres", "postgresql"):
        if backend == "postgres" or driver != "psycopg":
            raise DatabaseProblem(
                f"{parsed.drivername}:// is not a driver the collector has: use "
                "postgresql+psycopg://user:password@host:5432/db (psycopg 3)"
            )
        if importlib.util.find_spec("psycopg") is None:
            raise DatabaseProblem(f"PostgreSQL needs the psycopg driver: {_POSTGRES_EXTRA}")
        return parsed
    if backend != "sqlite" or driver not in ("", "pysqlite"):
        raise DatabaseProblem(
            f"the collector stores its data in SQLite or PostgreSQL: {_SUPPORTED}"
        )
    database = parsed.database
    if database and database != ":memory:" and not database.startswith("file:"):
        folder = Path(database).parent
        if not folder.is_dir():
            raise DatabaseProblem(
                f"the folder {folder} does not exist: create it, or give --db a file in an "
                "existing folder"
            )
    return parsed


def describe_database_error(error: BaseException, url: str) -> str:
    """One line saying why the database at ``url`` could not be used, and what to do."""
    try:
        parsed: URL | None = make_url(url)
    except (ArgumentError, ValueError):
        parsed = None
    original = getattr(error, "orig", None) or error
    reason = " ".join(str(original).split()) or type(original).__name__
    lowered = reason.lower()
    if parsed is not None and parsed.get_backend_name() == "postgresql":
        where = f"{parsed.host or 'localhost'}:{parsed.port or 5432}"
        refused_login = "password authentication failed" in lowered
        if refused_login or ("role" in lowered and "does not exist" in lowered):
            return f"PostgreSQL at {where} refused user {parsed.username!r}: {reason[:200]}"
        if "database" in lowered and "does not exist" in lowered:
            return (
                f"database {parsed.database!r} does not exist on PostgreSQL at {where}: create it"
            )
        if any(
            sign in lowered
            for sign in (
                "connection refused",
                "could not connect",
                "connection failed",
                "timeout",
                "could not translate host name",
                "name or service not known",
                "no route to host",
                "network is unreachable",
                "server closed the connection",
            )
        ):
            return f"cannot reach PostgreSQL at {where}: is it running and reachable from here?"
        return f"PostgreSQL at {where}: {reason[:300]}"
    if parsed is not None and parsed.get_backend_name() == "sqlite":
        path = parsed.database or ""
        if "unable to open database file" in lowered:
            return f"cannot open the SQLite file {path}: check the folder exists and is writable"
        if "readonly" in lowered or "read-only" in lowered:
            return f"the SQLite file {path} is read-only: make it writable for this user"
        if "not a database" in lowered:
            return f"{path} is not a SQLite database: give --db another file"
        return f"SQLite file {path}: {reason[:300]}"
    return reason[:300]


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the API read while the linker writes; NORMAL sync is safe under WAL.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def create_db_engine(url: str) -> Engine:
    """An engine for ``url`` with the settings the store relies on.

    A SQLite file is created if missing, but never its folder: a mistyped path fails here
    instead of silently writing somewhere else.

    Raises:
        DatabaseProblem: The collector cannot use ``url`` (see :func:`check_db_url`).
    """
    parsed = check_db_url(url)
    try:
        if parsed.get_backend_name() == "sqlite":
            engine = create_engine(url, connect_args={"check_same_thread": False})
            event.listen(engine, "connect", _sqlite_pragmas)
            return engine
        connect_args = (
            {} if "connect_timeout" in parsed.query else {"connect_timeout": _CONNECT_TIMEOUT}
        )
        return create_engine(url, pool_pre_ping=True, connect_args=connect_args)
    except (SQLAlchemyError, ImportError) as err:
        raise DatabaseProblem(describe_database_error(err, url)) from err


def alembic_config(url: str) -> Config:
    """Alembic configuration pointing at the packaged ``migrations`` scripts."""
    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade_database(engine: Engine) -> None:
    """Apply every pending migration to the database behind ``engine``.

    Raises:
        DatabaseProblem: The database cannot be reached or written (one line saying why).
    """
    url = engine.url.render_as_string(hide_password=False)
    config = alembic_config(url)
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    except SQLAlchemyError as err:
        raise DatabaseProblem(describe_database_error(err, url)) from err
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

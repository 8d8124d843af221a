"""Idempotent inserts: what makes every write of links and spans safe to repeat."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from ._models import Base

__all__ = ["insert_ignoring_duplicates"]


def insert_ignoring_duplicates(
    session: Session, model: type[Base], rows: Sequence[dict[str, Any]]
) -> None:
    """Insert ``rows``, skipping any that collide with a unique constraint.

    The same link or span delivered twice is stored once, and an existing row is never
    overwritten by a later, poorer source.
    """
    if not rows:
        return
    table = model.__table__
    assert isinstance(table, Table)
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        statement: Any = postgresql.insert(table).on_conflict_do_nothing()
    elif dialect == "sqlite":
        statement = sqlite.insert(table).on_conflict_do_nothing()
    else:  # pragma: no cover - the store supports SQLite and PostgreSQL only
        raise RuntimeError(f"unsupported database dialect {dialect!r}")
    session.execute(statement, list(rows))

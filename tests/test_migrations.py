"""The Alembic migrations are one straight line, and they build exactly the models' schema."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from tracer.db import Base, alembic_config, create_db_engine, upgrade_database


def test_one_head_and_no_branches(sqlite_url: str) -> None:
    scripts = ScriptDirectory.from_config(alembic_config(sqlite_url))
    assert len(scripts.get_heads()) == 1, scripts.get_heads()
    assert len(scripts.get_bases()) == 1


def test_migrations_build_the_models_schema_and_go_down_and_up(db_url: str) -> None:
    engine = create_db_engine(db_url)
    try:
        upgrade_database(engine)
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
        config = alembic_config(db_url)
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "base")
        with engine.connect() as connection:
            tables = set(engine.dialect.get_table_names(connection))
        assert tables <= {"alembic_version"}
        upgrade_database(engine)
    finally:
        engine.dispose()

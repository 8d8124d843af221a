"""Alembic migrations of the temporal-tracer store (run by ``temporal-tracer db upgrade``)."""

"""Which optional extra a missing module belongs to, so a command can say what to install.

The base install (``pip install temporal-tracer``) serves workers only; the collector, its
PostgreSQL driver and the demo come with extras. A command that needs one imports it
lazily and turns the ``ModuleNotFoundError`` of a module from that extra (and only those)
into one line naming the install command.
"""

from __future__ import annotations

__all__ = ["EXTRA_MODULES", "install_hint", "missing_extra"]

# Importable names each extra brings, at the level where they go missing. Namespace
# packages are named below the shared part: ``google.rpc``, not ``google`` (protobuf, a
# base dependency, provides ``google``); ``opentelemetry.exporter``, not ``opentelemetry``.
EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "collector": (
        "alembic",
        "anyio",
        "fastapi",
        "fastapi_offline",
        "google.rpc",
        "grpc",
        "httpx",
        "jinja2",
        "opentelemetry.exporter",
        "opentelemetry.proto",
        "pydantic",
        "sqlalchemy",
        "starlette",
        "uvicorn",
    ),
    "postgres": ("psycopg",),
}

# The demo extra includes the collector's, so the demo names its own extra.
_COMMAND_EXTRA = {("demo", "collector"): "demo"}


def missing_extra(error: ModuleNotFoundError) -> str | None:
    """The extra that provides the module ``error`` is about, or ``None`` if none does."""
    name = error.name or ""
    for extra, modules in EXTRA_MODULES.items():
        if any(name == module or name.startswith(module + ".") for module in modules):
            return extra
    return None


def install_hint(command: str, extra: str, missing: str) -> str:
    """One line telling the user of ``temporal-tracer COMMAND`` which extra to install;
    ``missing`` says what was not found."""
    extra = _COMMAND_EXTRA.get((command, extra), extra)
    return (
        f"temporal-tracer {command} needs the {extra} extra ({missing}): "
        f"pip install 'temporal-tracer[{extra}]'"
    )

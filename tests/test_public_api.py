"""The public names of the collector's packages: changing them breaks users' imports.

Each package's exports are computed from what it defines (as httpx's own test does), so
a name added to a module without being exported, or exported without existing, fails
here; the frozen lists below make every change to the surface a visible decision.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from types import ModuleType

import pytest

FROZEN: dict[str, list[str]] = {
    "tracer.collector": [
        "Collector",
        "ServeSettings",
        "Store",
        "TreeNode",
        "run_collector",
        "serve_forever",
    ],
    "tracer.devserver": [
        "DevServer",
        "NexusEndpoint",
        "PortBusyError",
        "create_nexus_endpoints",
        "ensure_port_free",
        "find_temporal_cli",
        "free_port",
        "wait_for_server",
    ],
    "tracer.domain": [
        "ERROR_STATUSES",
        "STARTING_LINKS",
        "ErrorKind",
        "ExecutionStatus",
        "LinkKind",
        "LinkSource",
        "NodeKind",
        "Placement",
        "Status",
        "classify_error",
    ],
    "web": ["LOCAL_HOSTS", "WebSettings", "create_app"],
}

# Packages whose names come from their private modules: every export must be defined in one.
PACKAGES = [
    "tracer.db",
    "tracer.export",
    "tracer.ingest",
    "tracer.jobs",
    "tracer.link",
    "tracer.query",
    "tracer.store",
    "web",
]


def _public(module: ModuleType) -> list[str]:
    """What a module offers: its non-underscore names, less modules and what it imported
    from other libraries."""
    names = [
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and not inspect.ismodule(value)
        and name != "annotations"
        and not (
            (inspect.isclass(value) or inspect.isfunction(value))
            and not value.__module__.startswith(("tracer", "web"))
        )
    ]
    return sorted(names)


@pytest.mark.parametrize("name", sorted(FROZEN))
def test_frozen_exports(name: str) -> None:
    module = importlib.import_module(name)
    assert list(module.__all__) == FROZEN[name]
    assert all(hasattr(module, export) for export in module.__all__)


@pytest.mark.parametrize("name", PACKAGES)
def test_package_exports_are_computed(name: str) -> None:
    package = importlib.import_module(name)
    assert sorted(package.__all__) == sorted(_public(package)), (
        f"{name}.__all__ must list exactly what the package imports from its modules"
    )
    path = package.__path__  # a package, made of private modules
    defined: set[str] = set()
    for info in pkgutil.iter_modules(path):
        if info.name.startswith("_"):
            defined |= set(importlib.import_module(f"{name}.{info.name}").__all__)
    assert set(package.__all__) <= defined, (
        f"{name} exports names none of its modules declares in __all__"
    )

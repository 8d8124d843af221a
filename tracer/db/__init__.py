"""The database: table models, engines and migrations, idempotent inserts, and the stored
shape of span attributes.

The lowest layer of the collector: it knows tables, not call trees. :mod:`tracer.query`
reads through it and :mod:`tracer.store` writes through it.
"""

from ._engine import (
    DEFAULT_DB_URL,
    DatabaseFile,
    DatabaseProblem,
    alembic_config,
    check_db_url,
    create_db_engine,
    describe_database_error,
    upgrade_database,
)
from ._models import (
    Base,
    Call,
    CollectorInstance,
    ExportCursor,
    ExportRun,
    Link,
    NamespaceLease,
    NamespaceState,
    NexusEndpointRow,
    Span,
    StoreProbe,
    TreeEdge,
    TreeSummary,
    TreeTerm,
    UTCDateTime,
    WorkflowRun,
)
from ._span_json import (
    AttributeValue,
    StoredEvent,
    StoredLink,
    attribute_map,
    bounded_attribute_map,
    decode_attributes,
    decode_events,
    decode_links,
    encode_events,
    encode_links,
    format_attribute,
)
from ._upsert import insert_ignoring_duplicates

__all__ = [
    "DEFAULT_DB_URL",
    "AttributeValue",
    "Base",
    "Call",
    "CollectorInstance",
    "DatabaseFile",
    "DatabaseProblem",
    "ExportCursor",
    "ExportRun",
    "Link",
    "NamespaceLease",
    "NamespaceState",
    "NexusEndpointRow",
    "Span",
    "StoreProbe",
    "StoredEvent",
    "StoredLink",
    "TreeEdge",
    "TreeSummary",
    "TreeTerm",
    "UTCDateTime",
    "WorkflowRun",
    "alembic_config",
    "attribute_map",
    "bounded_attribute_map",
    "check_db_url",
    "create_db_engine",
    "decode_attributes",
    "decode_events",
    "decode_links",
    "describe_database_error",
    "encode_events",
    "encode_links",
    "format_attribute",
    "insert_ignoring_duplicates",
    "upgrade_database",
]

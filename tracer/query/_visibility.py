"""Who sees what: the one redaction rule every read of the store applies.

A viewer sees a node's details, spans, attributes, errors, operation tokens and ids only
if it may see that node's namespace. What the caller's own history records (a Nexus call's
endpoint, operation, request id and outcome) belongs to the caller's namespace; what only
another namespace holds does not, and that includes an operation token, which names the
handler's namespace and workflow id once decoded. A span whose namespace is unknown is
never shown to a viewer restricted to some namespaces: nothing says whose it is.

Everything else is structure, shown to every viewer: a node's kind, namespace, name,
status, timing, link and children.

:class:`Scope` holds the rule; :class:`tracer.store.Store` applies it to every read it
returns, so no page or route has to remember it.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from ._search import TraceSummary
from ._spans import SpanInfo
from ._tree import TreeNode

__all__ = ["EVERY_NAMESPACE", "HIDDEN_NAMESPACE", "Scope", "Visible", "token_namespace"]

HIDDEN_NAMESPACE = "(hidden)"
"""What the namespace map calls a namespace the viewer may not see and the collector does
not link (its name could be anything a caller's history or a span recorded)."""


def token_namespace(token: str) -> str | None:
    """The namespace a Nexus operation token names (base64url JSON ``{"ns": ...}``), or
    ``None`` when the token is opaque."""
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    namespace = data.get("ns") if isinstance(data, dict) else None
    return namespace if isinstance(namespace, str) and namespace else None


@dataclass(frozen=True)
class Scope:
    """The namespaces a viewer may see in full.

    Args:
        namespaces: The visible namespaces; ``None`` means every namespace (an open UI, an
            admin token, or the collector's own jobs).
    """

    namespaces: frozenset[str] | None = None

    @classmethod
    def of(cls, visible: Visible) -> Scope:
        """A scope from a :class:`Scope`, a set of namespaces, or ``None`` (everything)."""
        if isinstance(visible, Scope):
            return visible
        return cls(None if visible is None else frozenset(visible))

    @property
    def restricted(self) -> bool:
        """Whether some namespaces are hidden."""
        return self.namespaces is not None

    def sees(self, namespace: str | None) -> bool:
        """Whether details in ``namespace`` are visible; an unknown namespace (``None``) is
        visible only to a viewer of every namespace."""
        if self.namespaces is None:
            return True
        return namespace is not None and namespace in self.namespaces

    def sees_any(self, namespaces: Iterable[str]) -> bool:
        """Whether one of ``namespaces`` is visible."""
        return any(self.sees(namespace) for namespace in namespaces)

    # --- trees --------------------------------------------------------------------------

    def tree(self, node: TreeNode) -> TreeNode:
        """A copy of the tree in which every node outside the scope keeps only its
        structure, and visible calls lose operation tokens naming a hidden namespace."""
        if self.namespaces is None:
            return node
        children = [self.tree(child) for child in node.children]
        if not self.sees(node.namespace):
            return replace(
                node,
                workflow_id=None,
                run_id=None,
                error=None,
                details={"restricted": True},
                pending=None,
                waits=[],
                children=children,
            )
        return replace(node, details=self._details(node.details), children=children)

    def _details(self, details: dict[str, Any]) -> dict[str, Any]:
        token = details.get("operation_token")
        if token is None:
            return details
        if self.sees(token_namespace(str(token))):
            return details
        # Decoded, the token is the handler's namespace and workflow id; opaque, nothing
        # says whose it is: a restricted viewer sees neither.
        return {key: value for key, value in details.items() if key != "operation_token"}

    def spans(self, spans: Iterable[SpanInfo]) -> list[SpanInfo]:
        """The spans whose namespace is visible (never those with no namespace when the
        scope is restricted)."""
        return [span for span in spans if self.sees(span.namespace)]

    def first_error(self, error: dict[str, str] | None) -> dict[str, str] | None:
        """A tree's first failure (``{"namespace", "name", "type", "message"}``), or
        ``None`` when it happened in a hidden namespace."""
        if error is None or not self.sees(error.get("namespace")):
            return None
        return error

    # --- search -------------------------------------------------------------------------

    def summary(self, row: TraceSummary) -> TraceSummary:
        """A search row: a hidden root keeps its type, status, timing and figures, not its
        ids; a first failure in a hidden namespace is dropped."""
        visible_root = self.sees(row.namespace)
        return replace(
            row,
            workflow_id=row.workflow_id if visible_root else None,
            run_id=row.run_id if visible_root else None,
            first_error=self.first_error(row.first_error),
        )

    # --- the namespace map --------------------------------------------------------------

    def map_edge(self, caller: str, callee: str, linked: Iterable[str]) -> tuple[str, str] | None:
        """How an edge of the namespace map shows: ``None`` (dropped) between two hidden
        namespaces; a hidden end keeps its name only when the collector links that
        namespace (``linked``), else it reads :data:`HIDDEN_NAMESPACE`."""
        if self.namespaces is None:
            return caller, callee
        if not (self.sees(caller) or self.sees(callee)):
            return None
        names = frozenset(linked)

        def shown(namespace: str) -> str:
            return namespace if self.sees(namespace) or namespace in names else HIDDEN_NAMESPACE

        return shown(caller), shown(callee)


Visible = Scope | frozenset[str] | set[str] | None
"""What a store read takes as its viewer's scope: a :class:`Scope`, the visible namespaces,
or ``None`` for every namespace."""

EVERY_NAMESPACE = Scope()
"""The scope of a viewer of every namespace (an open UI, an admin, the collector's jobs)."""

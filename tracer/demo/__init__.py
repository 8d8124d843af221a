"""The cross-namespace sample: orders -> payments, notifications, inventory.

``temporal-tracer demo`` runs it against an embedded Temporal dev server. The pieces are
ordinary Temporal code, so they double as examples of what the tracer links.
"""

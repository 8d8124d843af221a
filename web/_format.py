"""How values read on the pages: durations, timestamps, names that shorten in the middle
and titles that wrap only where a person would break them."""

from __future__ import annotations

import re
from datetime import datetime

from markupsafe import Markup, escape

__all__ = [
    "NBSP",
    "fmt_duration",
    "fmt_percent",
    "fmt_time",
    "namespace_hue",
    "split_name",
    "wrap_at_separators",
]

NBSP = "\u00a0"
"""Joins a number to its unit, so ``30 ms`` never wraps into ``30`` and ``ms``."""

# Names at most this long are never shortened: there is room for them in any row.
_SHORT = 20
# The tail kept whole when a name shrinks: long enough to tell siblings apart
# (``160504-declined``), short enough to leave room for the head.
_TAIL_MIN, _TAIL_MAX = 6, 18
_SEPARATORS = re.compile(r"[-_./:]")


def namespace_hue(namespace: str) -> int:
    """A stable color hue per namespace, so a namespace looks the same on every page."""
    return sum(ord(char) * 31 for char in namespace) % 360


def fmt_duration(seconds: float | None) -> str:
    """A duration for people: ``12 ms``, ``1.25 s``, ``3.4 min``, never split in two."""
    if seconds is None:
        return "-"
    if seconds < 1:
        text = f"{seconds * 1000:.0f} ms"
    elif seconds < 120:
        text = f"{seconds:.2f} s"
    elif seconds < 7200:
        text = f"{seconds / 60:.1f} min"
    else:
        text = f"{seconds / 3600:.1f} h"
    return text.replace(" ", NBSP)


def fmt_time(value: datetime | None) -> str:
    """A UTC timestamp with milliseconds, which wraps only between date and time."""
    if value is None:
        return "-"
    return value.strftime("%Y-%m-%d %H:%M:%S.") + f"{value.microsecond // 1000:03d}{NBSP}UTC"


def fmt_percent(value: float) -> str:
    """A CSS percentage in as few characters as it takes (``3.04``, ``.6``, ``0``)."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return text.removeprefix("0") if text.startswith("0.") else text


def split_name(name: str) -> tuple[str, str]:
    """``(head, tail)`` of a name shown in a row that may be too narrow for it.

    The head shrinks (with an ellipsis); the tail stays whole. The tail starts after a
    separator (``-``, ``_``, ``.``, ``/``, ``:``) so it is a readable unit, and is the
    longest such suffix up to 18 characters: ``payment-order-160504-declined`` keeps
    ``160504-declined``, ``PaymentsService/process_payment`` keeps ``process_payment``.
    A short name, or one without such a suffix (a type name such as
    ``ProcessPaymentWorkflow``, whose head is what tells it apart), is not split: it
    shortens at its end.
    """
    if len(name) <= _SHORT:
        return name, ""
    cuts = [m.end() for m in _SEPARATORS.finditer(name) if m.end() < len(name)]
    fitting = [cut for cut in cuts if _TAIL_MIN <= len(name) - cut <= _TAIL_MAX]
    if not fitting:
        return name, ""
    cut = min(fitting)
    return name[:cut], name[cut:]


def wrap_at_separators(text: str) -> Markup:
    """``text`` escaped, with a line-break opportunity after each ``/`` and ``.`` (and
    nowhere else), for titles such as ``PaymentsService/process_payment``."""
    escaped = str(escape(text))
    return Markup(re.sub(r"([/.])", r"\1<wbr>", escaped))

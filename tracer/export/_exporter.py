"""OTLP export upstream: forward stored spans, enriched, to Jaeger, Tempo, Phoenix...

The store is the queue. Each destination has a cursor (table ``export_cursors``): the
highest span row id it has received, plus the id ranges below it that were still
uncommitted when the cursor passed them (PostgreSQL hands out ids before commit, so rows
become visible out of order). A round reads the next batch, converts the rows to
``ReadableSpan`` objects (:mod:`._export_spans` adds namespaces, cross-trace links and
spans synthesized from histories), hands them to the opentelemetry-exporter-otlp
exporter, and moves the cursor only once the destination said yes. A destination that is
down is retried with backoff and its spans wait in the store: delivery is at least once
and survives restarts. Destinations are independent: one down never holds another back.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlsplit

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from sqlalchemy import and_, exists, or_, select
from sqlalchemy.orm import Session

from interceptors import ATTR
from tracer.db import ExportCursor, ExportRun, Span, WorkflowRun, insert_ignoring_duplicates
from tracer.jobs import LeaseHolder, run_periodically
from tracer.store import Store

from ._enrich import SpanEnricher

__all__ = [
    "ENDPOINTS_ENV",
    "ExportDestination",
    "ExportFailedError",
    "ExportSettings",
    "Exporter",
    "RoundReport",
    "export_lease",
    "parse_export_endpoints",
]

logger = logging.getLogger(__name__)

ENDPOINTS_ENV = "TEMPORAL_TRACER_EXPORT_ENDPOINTS"
"""Environment variable: comma-separated destination URLs (see :func:`parse_export_endpoints`)."""

Protocol = Literal["http/protobuf", "grpc"]
_THREAD_PREFIX = "tracer-export"
_MAX_GAPS = 10_000
_RUN_MARGIN = timedelta(seconds=60)


@dataclass
class ExportDestination:
    """One upstream OTLP endpoint.

    Attributes:
        endpoint: For ``http/protobuf`` the full URL spans are posted to
            (``http://jaeger:4318/v1/traces``); for ``grpc`` the collector address
            (``http://tempo:4317``; ``https://`` for TLS).
        protocol: ``"http/protobuf"`` or ``"grpc"``.
        headers: Extra request headers (API keys). Empty: the exporters read
            ``OTEL_EXPORTER_OTLP_HEADERS`` as usual.
        namespaces: When set, the destination receives only spans of these namespaces
            (after enrichment, which gives most spans theirs); a span with no namespace
            is not sent. The same rule as a viewer's scope in the UI.
    """

    endpoint: str
    protocol: Protocol = "http/protobuf"
    headers: dict[str, str] = field(default_factory=dict)
    namespaces: frozenset[str] | None = None

    def receives(self, span: ReadableSpan) -> bool:
        """Whether this destination may see ``span``."""
        if self.namespaces is None:
            return True
        return (span.attributes or {}).get(ATTR.NAMESPACE) in self.namespaces

    @property
    def key(self) -> str:
        """The name its cursor is stored under."""
        return f"{self.protocol} {self.endpoint}"[:255]

    def create_exporter(self, timeout: float) -> SpanExporter:
        """A fresh opentelemetry-exporter-otlp exporter for this destination."""
        headers = dict(self.headers) or None
        if self.protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                OTLPSpanExporter as GrpcExporter,
            )

            return GrpcExporter(
                endpoint=self.endpoint,
                insecure=not self.endpoint.startswith("https://"),
                headers=headers,
                timeout=timeout,
            )
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter as HttpExporter,
        )

        return HttpExporter(endpoint=self.endpoint, headers=headers, timeout=timeout)


def parse_export_endpoints(
    text: str | Sequence[str] | None,
    headers: dict[str, str] | None = None,
    *,
    namespaces: frozenset[str] | None = None,
) -> list[ExportDestination]:
    """Destinations from URLs: ``grpc://host:4317``, ``grpcs://host:4317`` (TLS),
    ``http://host:4318`` or ``https://host:4318[/path]``.

    Args:
        text: A comma-separated string (``TEMPORAL_TRACER_EXPORT_ENDPOINTS``) or a list of
            URLs (repeated ``--export-endpoint`` flags); ``None`` or empty gives none.
        headers: Headers sent to every destination.
        namespaces: When set, every destination receives only spans of these namespaces.

    Returns:
        One destination per URL, duplicates removed. An HTTP URL without a path gets the
        OTLP path ``/v1/traces``.

    Raises:
        ValueError: A URL with another scheme, or without a host.
    """
    if text is None:
        return []
    items = text.split(",") if isinstance(text, str) else [p for t in text for p in t.split(",")]
    destinations: list[ExportDestination] = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        parts = urlsplit(item)
        if not parts.hostname:
            raise ValueError(f"export endpoint {item!r} has no host (e.g. grpc://jaeger:4317)")
        scheme = parts.scheme.lower()
        if scheme in ("grpc", "grpcs"):
            secure = "https" if scheme == "grpcs" else "http"
            destination = ExportDestination(f"{secure}://{parts.netloc}", "grpc")
        elif scheme in ("http", "https"):
            path = parts.path if parts.path not in ("", "/") else "/v1/traces"
            destination = ExportDestination(f"{scheme}://{parts.netloc}{path}", "http/protobuf")
        else:
            raise ValueError(f"export endpoint {item!r}: use grpc://host:4317 or http://host:4318")
        destination.headers = dict(headers or {})
        destination.namespaces = namespaces
        if all(d.key != destination.key for d in destinations):
            destinations.append(destination)
    return destinations


@dataclass
class ExportSettings:
    """Tunables of the exporter; the defaults suit a production collector.

    Attributes:
        batch_size: Spans per export request.
        poll_interval: Seconds between rounds when there is nothing new.
        link_wait: A span whose run or Nexus call the linker has not stored yet is held
            back up to this many seconds, so that it goes out with its namespace and links.
        synthesize_after: A closed run that sent no span gets synthesized spans this many
            seconds after it closed (spans can arrive a little after the history).
        gap_timeout: How long an id skipped by the cursor is watched for a late commit.
        backoff_initial: First wait after a failed export, in seconds; doubles each time.
        backoff_max: Longest wait between retries of a destination that is down.
        request_timeout: Timeout of one export request (the exporter retries within it).
    """

    batch_size: int = 512
    poll_interval: float = 1.0
    link_wait: float = 30.0
    synthesize_after: float = 10.0
    gap_timeout: float = 600.0
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    request_timeout: float = 10.0


class ExportFailedError(RuntimeError):
    """The destination did not accept a batch; it is sent again later."""


@dataclass
class RoundReport:
    """What one round delivered to one destination."""

    spans: int = 0
    late_spans: int = 0
    synthesized_runs: int = 0
    synthesized_spans: int = 0
    more: bool = False  # a full batch: go again without waiting

    @property
    def total(self) -> int:
        """Spans sent in this round, received and synthesized."""
        return self.spans + self.late_spans + self.synthesized_spans


class _OwnThreadFilter(logging.Filter):
    """Drops the OTLP exporters' own retry/error logs from our export threads: the
    exporter logs each outage once itself, instead of once per attempt."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not threading.current_thread().name.startswith(_THREAD_PREFIX)


_FILTER = _OwnThreadFilter()
for _name in (
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.proto.grpc.exporter",
    "opentelemetry.exporter.otlp.proto.grpc.trace_exporter",
):
    logging.getLogger(_name).addFilter(_FILTER)


def _now() -> datetime:
    return datetime.now(UTC)


def _gaps_after(cursor: int, ids: Sequence[int], since: float) -> list[list[float]]:
    """Id ranges between ``cursor`` and the last of ``ids`` (ascending) that are missing."""
    gaps: list[list[float]] = []
    previous = cursor
    for row_id in ids:
        if row_id > previous + 1:
            gaps.append([previous + 1, row_id - 1, since])
        previous = row_id
    return gaps


def _split_gap(gap: list[float], found: Sequence[int]) -> list[list[float]]:
    """What is left of a gap once the ids in ``found`` (ascending) have turned up."""
    lo, hi, since = int(gap[0]), int(gap[1]), gap[2]
    left: list[list[float]] = []
    for row_id in found:
        if lo <= row_id <= hi:
            if row_id > lo:
                left.append([lo, row_id - 1, since])
            lo = row_id + 1
    if lo <= hi:
        left.append([lo, hi, since])
    return left


class _DestinationWorker:
    """Delivers the store to one destination, round after round."""

    def __init__(
        self, store: Store, destination: ExportDestination, settings: ExportSettings
    ) -> None:
        self.store = store
        self.destination = destination
        self.settings = settings
        self.exporter = destination.create_exporter(settings.request_timeout)
        self.outage_since: float | None = None
        self.outage_error = ""

    # --- one round (runs in an export thread) -----------------------------------------

    def _cursor(self, session: Session) -> ExportCursor:
        cursor = session.get(ExportCursor, self.destination.key)
        if cursor is None:
            cursor = ExportCursor(
                destination=self.destination.key,
                span_cursor=0,
                span_gaps="[]",
                spans_exported=0,
                runs_synthesized=0,
                updated_at=_now(),
            )
            session.add(cursor)
            session.flush()
        return cursor

    def _send(self, spans: list[ReadableSpan]) -> int:
        """Deliver what the destination may see of ``spans``; how many that was."""
        spans = [span for span in spans if self.destination.receives(span)]
        if not spans:
            return 0
        result = self.exporter.export(spans)
        if result is not SpanExportResult.SUCCESS:
            raise ExportFailedError(f"{self.destination.key} did not accept {len(spans)} spans")
        return len(spans)

    def run_round(self) -> RoundReport:
        """Export the next batch of spans, late commits and synthesized runs."""
        report = RoundReport()
        self._export_spans(report)
        self._export_synthesized(report)
        return report

    def _export_spans(self, report: RoundReport) -> None:
        settings = self.settings
        now, wall = _now(), time.time()
        with self.store.session.begin() as session:
            cursor = self._cursor(session)
            position = cursor.span_cursor
            gaps: list[list[float]] = json.loads(cursor.span_gaps or "[]")
            rows = list(
                session.scalars(
                    select(Span)
                    .where(Span.id > position)
                    .order_by(Span.id)
                    .limit(settings.batch_size)
                )
            )
            enricher = SpanEnricher(session)
            held_until = now - timedelta(seconds=settings.link_wait)
            ready: list[Span] = []
            for row in rows:
                # In order, stopping at the first span the linker has not caught up with,
                # so that the cursor stays one number.
                if row.received_at > held_until and not enricher.is_linked(row):
                    break
                ready.append(row)
            late: list[Span] = []
            if gaps:
                ranges = [and_(Span.id >= int(g[0]), Span.id <= int(g[1])) for g in gaps[:500]]
                late = list(session.scalars(select(Span).where(or_(*ranges)).order_by(Span.id)))
            if not ready and not late and not gaps:
                return
            sent = self._send(enricher.enrich([*late, *ready]))
            # Delivered: move the cursor, remember what it skipped, forget old gaps.
            found = [row.id for row in late]
            remaining = [part for gap in gaps for part in _split_gap(gap, found)]
            if ready:
                remaining += _gaps_after(position, [row.id for row in ready], wall)
                cursor.span_cursor = ready[-1].id
            remaining = [g for g in remaining if wall - g[2] < settings.gap_timeout]
            cursor.span_gaps = json.dumps(remaining[-_MAX_GAPS:])
            cursor.spans_exported += sent
            cursor.last_error = None
            cursor.updated_at = now
            report.spans, report.late_spans = len(ready), len(late)
            report.more = len(rows) == settings.batch_size and len(ready) == len(rows)

    def _export_synthesized(self, report: RoundReport) -> None:
        settings = self.settings
        key = self.destination.key
        # A run is stored (updated_at) after it closed, so runs stored before the cutoff
        # that are closed closed before it too; runs that close later are stored again.
        cutoff = _now() - timedelta(seconds=settings.synthesize_after)
        limit = max(settings.batch_size // 8, 1)
        with self.store.session.begin() as session:
            cursor = self._cursor(session)
            done = exists().where(
                ExportRun.destination == key,
                ExportRun.namespace == WorkflowRun.namespace,
                ExportRun.run_id == WorkflowRun.run_id,
            )
            query = select(WorkflowRun).where(
                WorkflowRun.updated_at <= cutoff, WorkflowRun.close_time.is_not(None), ~done
            )
            if cursor.run_cursor is not None:
                # Collectors' clocks differ a little: look a margin behind the cursor.
                query = query.where(WorkflowRun.updated_at > cursor.run_cursor - _RUN_MARGIN)
            runs = list(
                session.scalars(query.order_by(WorkflowRun.updated_at, WorkflowRun.id).limit(limit))
            )
            # Everything stored up to the cutoff is dealt with once a round is not full.
            cursor.run_cursor = runs[-1].updated_at if len(runs) == limit else cutoff
            if not runs:
                return
            enricher = SpanEnricher(session)
            spans: list[ReadableSpan] = []
            marks = []
            for run in runs:
                synthesized = not enricher.has_spans(run)
                if synthesized:
                    spans.extend(enricher.synthesize(run))
                    report.synthesized_runs += 1
                marks.append(
                    {
                        "destination": key,
                        "namespace": run.namespace,
                        "run_id": run.run_id,
                        "synthesized": synthesized,
                        "done_at": _now(),
                    }
                )
            sent = self._send(spans)
            insert_ignoring_duplicates(session, ExportRun, marks)
            cursor.runs_synthesized += report.synthesized_runs
            cursor.spans_exported += sent
            report.synthesized_spans = sent
            report.more = report.more or len(runs) == limit

    def record_error(self, error: str) -> None:
        """Keep the last error with the cursor, for people and the API to see."""
        try:
            with self.store.session.begin() as session:
                self._cursor(session).last_error = error[:2000]
        except Exception:  # the store may be what failed: the log already has the error
            logger.debug("could not record the export error", exc_info=True)

    def shutdown(self) -> None:
        """Stop the OTLP exporter (also cuts its retry sleep short)."""
        self.exporter.shutdown()


def export_lease(destination: ExportDestination) -> str:
    """The lease name under which one collector feeds ``destination``."""
    return f"export:{destination.key}"[:255]


class Exporter:
    """Forwards the store's spans, enriched, to every destination until stopped.

    Example::

        exporter = Exporter(store, parse_export_endpoints("grpc://jaeger:4317"))
        task = asyncio.create_task(exporter.run(stop))
    """

    def __init__(
        self,
        store: Store,
        destinations: Sequence[ExportDestination],
        settings: ExportSettings | None = None,
        leases: LeaseHolder | None = None,
    ) -> None:
        """Prepare an exporter.

        Args:
            store: The store whose spans and runs are exported.
            destinations: Where to send them; each keeps its own cursor.
            settings: Tunables; the defaults suit production.
            leases: With several collectors on one database, each destination is fed
                by the one collector holding its :func:`export_lease`.
        """
        self.store = store
        self.destinations = list(destinations)
        self.settings = settings or ExportSettings()
        self.leases = leases

    async def run(self, stop: asyncio.Event) -> None:
        """Export until ``stop`` is set; a destination that is down is retried forever."""
        if not self.destinations:
            return
        await asyncio.gather(*(self._run_one(d, stop) for d in self.destinations))

    def export_once(self, destination: ExportDestination) -> RoundReport:
        """One synchronous round to ``destination`` (tools and tests).

        Raises:
            ExportFailedError: The destination did not accept the batch.
        """
        worker = _DestinationWorker(self.store, destination, self.settings)
        try:
            return worker.run_round()
        finally:
            worker.shutdown()

    async def _run_one(self, destination: ExportDestination, stop: asyncio.Event) -> None:
        settings = self.settings
        # One thread per destination: blocking exports and queries never stall the loop,
        # and a slow destination never holds back another.
        pool = ThreadPoolExecutor(1, thread_name_prefix=f"{_THREAD_PREFIX}-{os.getpid()}")
        worker = _DestinationWorker(self.store, destination, settings)
        loop = asyncio.get_running_loop()
        backoff = settings.backoff_initial
        stopper = asyncio.create_task(stop.wait())
        logger.info("exporting spans to %s", destination.key)

        async def round_() -> float | None:
            nonlocal backoff
            attempt = loop.run_in_executor(pool, worker.run_round)
            waiting: list[asyncio.Future[Any]] = [attempt, stopper]
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if not attempt.done():
                return None  # stopping: the exporter's shutdown below ends the attempt
            try:
                report = attempt.result()
            except Exception as err:
                self._failed(worker, err)
                await loop.run_in_executor(pool, worker.record_error, str(err))
                wait, backoff = backoff, min(backoff * 2, settings.backoff_max)
                return wait
            backoff = settings.backoff_initial
            if worker.outage_since is not None:
                logger.info(
                    "export to %s recovered after %.1fs of failures; delivering the "
                    "spans kept in the store",
                    destination.key,
                    time.monotonic() - worker.outage_since,
                )
                worker.outage_since = None
            if report.total:
                logger.debug(
                    "exported %d spans (%d late commits) and %d synthesized spans for "
                    "%d runs to %s",
                    report.spans + report.late_spans,
                    report.late_spans,
                    report.synthesized_spans,
                    report.synthesized_runs,
                    destination.key,
                )
            return 0.0 if report.more else None

        try:
            await run_periodically(
                round_,
                stop,
                name=f"export to {destination.key}",
                interval=settings.poll_interval,
                lease=export_lease(destination),
                leases=self.leases,
            )
        finally:
            stopper.cancel()
            worker.shutdown()
            pool.shutdown(wait=True, cancel_futures=True)

    @staticmethod
    def _failed(worker: _DestinationWorker, err: Exception) -> None:
        if worker.outage_since is None:
            worker.outage_since = time.monotonic()
            logger.warning(
                "export to %s failing (%s); retrying with backoff, spans wait in the store",
                worker.destination.key,
                err,
            )

"""Sharing the linking work between collectors on one database.

Each collector heartbeats into ``collector_instances`` and holds time-limited leases on
namespaces. Every pass it renews its leases, gives back those above its fair share
(namespaces / live collectors, rounded up) and claims free or expired ones up to it. A
collector that stops gives its leases back; one that dies loses them when they expire.
Claims are conditional updates, so two collectors never hold the same namespace.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import socket
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from tracer.db import CollectorInstance, NamespaceLease, insert_ignoring_duplicates
from tracer.store import Store

from ._loop import run_periodically

__all__ = ["DEFAULT_LEASE_TTL", "LeaseKeeper"]

logger = logging.getLogger(__name__)

# A killed collector's namespaces wait this long for another one; renewals come 3x as often.
DEFAULT_LEASE_TTL = timedelta(seconds=6)


class LeaseKeeper:
    """One collector's view of the leases."""

    def __init__(self, store: Store, *, ttl: timedelta = DEFAULT_LEASE_TTL) -> None:
        self.store = store
        self.ttl = ttl
        self.id = uuid.uuid4().hex
        self.description = f"{socket.gethostname()}:{os.getpid()}/{self.id[:6]}"
        self.started_at = datetime.now(UTC)
        # The namespaces this collector links right now (empty until the first balance).
        self.held: set[str] = set()
        # Collectors alive on this database (this one included), as of the last balance:
        # they share each namespace's budget of Temporal calls.
        self.live = 1

    async def run(self, namespaces: Sequence[str], stop: asyncio.Event) -> None:
        """Keep :attr:`held` current until ``stop`` is set, then give every lease back.

        Renewal runs on its own clock, so a long linker pass never lets a lease lapse.
        """

        async def renew() -> None:
            self.held = await asyncio.to_thread(self.balance, namespaces)

        try:
            await run_periodically(
                renew, stop, name="lease renewal", interval=self.ttl.total_seconds() / 3
            )
        finally:
            await asyncio.to_thread(self.leave)

    def balance(self, namespaces: Sequence[str]) -> set[str]:
        """Heartbeat, then renew, release and claim leases; return the namespaces held."""
        now = datetime.now(UTC)
        expires = now + self.ttl
        with self.store.session.begin() as session:
            alive = session.get(CollectorInstance, self.id)
            if alive is None:
                session.add(
                    CollectorInstance(
                        id=self.id,
                        description=self.description,
                        started_at=self.started_at,
                        heartbeat_at=now,
                    )
                )
            else:
                alive.heartbeat_at = now
        with self.store.session.begin() as session:
            live = session.scalars(
                select(CollectorInstance.id).where(CollectorInstance.heartbeat_at > now - self.ttl)
            ).all()
            self.live = max(len(live), 1)
            fair_share = math.ceil(len(namespaces) / self.live)
            insert_ignoring_duplicates(
                session,
                NamespaceLease,
                [{"namespace": ns, "owner": "", "expires_at": now} for ns in namespaces],
            )
            leases = session.scalars(
                select(NamespaceLease).where(NamespaceLease.namespace.in_(namespaces))
            ).all()
            held = sorted(
                lease.namespace
                for lease in leases
                if lease.owner == self.id and lease.expires_at > now
            )
            for namespace in held[fair_share:]:
                self._release(session, namespace, now)
            held = held[:fair_share]
            session.execute(
                update(NamespaceLease)
                .where(NamespaceLease.namespace.in_(held), NamespaceLease.owner == self.id)
                .values(expires_at=expires)
            )
            free = sorted(
                lease.namespace for lease in leases if lease.expires_at <= now or not lease.owner
            )
            for namespace in free:
                if len(held) >= fair_share:
                    break
                claimed = session.execute(
                    update(NamespaceLease)
                    .where(
                        NamespaceLease.namespace == namespace,
                        or_(NamespaceLease.expires_at <= now, NamespaceLease.owner == ""),
                    )
                    .values(owner=self.id, expires_at=expires)
                )
                if claimed.rowcount == 1:  # type: ignore[attr-defined]
                    held.append(namespace)
        return set(held)

    @staticmethod
    def _release(session: Session, namespace: str, now: datetime) -> None:
        session.execute(
            update(NamespaceLease)
            .where(NamespaceLease.namespace == namespace)
            .values(owner="", expires_at=now)
        )

    def leave(self) -> None:
        """Give every lease back at once, so another collector takes over without waiting."""
        now = datetime.now(UTC)
        with self.store.session.begin() as session:
            session.execute(
                update(NamespaceLease)
                .where(NamespaceLease.owner == self.id)
                .values(owner="", expires_at=now)
            )
            session.execute(delete(CollectorInstance).where(CollectorInstance.id == self.id))
            # Forget collectors that died long ago, so the table stays small.
            session.execute(
                delete(CollectorInstance).where(
                    CollectorInstance.heartbeat_at < now - 100 * self.ttl
                )
            )

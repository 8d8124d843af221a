"""Two collectors on one PostgreSQL share the linking work, and one takes over for the other."""

from __future__ import annotations

import asyncio
import uuid
from contextlib import AsyncExitStack

import httpx
from sqlalchemy import func, select

from tests.conftest import LinkedSample, expected_namespaces, wait_linked
from tracer.collector import Collector, ServeSettings, run_collector
from tracer.db import Call, Link, WorkflowRun
from tracer.demo.fleet import run_orders, sample_orders
from tracer.demo.model import NAMESPACES, ORDERS_NAMESPACE
from tracer.devserver import DevServer, free_port


def _settings(address: str, db_url: str) -> ServeSettings:
    return ServeSettings(
        db_url=db_url,
        namespaces=list(NAMESPACES),
        temporal_address=address,
        port=free_port(),
        otlp_port=free_port(),
        otlp_grpc_port=0,
        poll_interval=0.3,
    )


async def _until_shared(collector: Collector, holders: int) -> dict[str, str]:
    owners: dict[str, str] = {}
    for _ in range(100):
        owners = await asyncio.to_thread(collector.store.lease_owners)
        if len(owners) == len(NAMESPACES) and len(set(owners.values())) == holders:
            break
        await asyncio.sleep(0.2)
    return owners


async def test_two_collectors_split_the_namespaces_and_store_each_row_once(
    linked_sample: LinkedSample, temporal_server: DevServer, postgres_url: str
) -> None:
    async with AsyncExitStack() as stack:
        first = await stack.enter_async_context(
            run_collector(_settings(temporal_server.address, postgres_url))
        )
        second_stack = AsyncExitStack()
        await second_stack.__aenter__()
        await second_stack.enter_async_context(
            run_collector(_settings(temporal_server.address, postgres_url))
        )
        owners = await _until_shared(first, holders=2)
        assert len(owners) == len(NAMESPACES) and len(set(owners.values())) == 2, owners
        # Two namespaces each: the fair share of four namespaces between two collectors.
        assert sorted(list(owners.values()).count(o) for o in set(owners.values())) == [2, 2]

        api = await stack.enter_async_context(httpx.AsyncClient(base_url=first.ui_url, timeout=10))
        orders = sample_orders(uuid.uuid4().hex[:8])
        await run_orders(linked_sample.fleet.clients[ORDERS_NAMESPACE], orders)
        expected = await expected_namespaces(linked_sample.fleet.clients, orders)
        assert not await wait_linked(api, expected, timeout=60)

        # The second collector stops: the first takes its namespaces over and links on.
        await second_stack.aclose()
        owners = await _until_shared(first, holders=1)
        assert len(owners) == len(NAMESPACES) and len(set(owners.values())) == 1, owners
        more = sample_orders(uuid.uuid4().hex[:8])
        await run_orders(linked_sample.fleet.clients[ORDERS_NAMESPACE], more)
        expected = await expected_namespaces(linked_sample.fleet.clients, more)
        assert not await wait_linked(api, expected, timeout=60)

        with first.store.session() as session:
            runs = session.scalar(select(func.count()).select_from(WorkflowRun))
            distinct_runs = session.scalar(
                select(func.count(func.distinct(WorkflowRun.namespace + WorkflowRun.run_id)))
            )
            assert runs == distinct_runs
            calls = session.scalar(select(func.count()).select_from(Call))
            distinct_calls = session.scalar(
                select(func.count()).select_from(
                    select(Call.run_pk, Call.event_id).distinct().subquery()
                )
            )
            assert calls == distinct_calls
            assert session.scalar(select(func.count()).select_from(Link))

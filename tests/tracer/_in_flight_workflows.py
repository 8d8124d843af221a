"""Calls left in flight and messages sent by Nexus handlers, in the shapes of Temporal's
``nexus_cancel`` and ``nexus_messaging`` samples (written here, not copied).

Used by ``test_in_flight.py`` and by the fixture capture script; kept apart because the
workflow sandbox re-imports this module. Every caller takes the endpoint it calls, so a
test module can bring its own.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import timedelta

import nexusrpc
import nexusrpc.handler
from temporalio import nexus, workflow
from temporalio.client import WorkflowUpdateStage
from temporalio.exceptions import CancelledError, NexusOperationError
from temporalio.workflow import NexusOperationCancellationType, ParentClosePolicy


@dataclass
class Greeting:
    """What a caller asks the greeting service for.

    ``seconds``: how long the handler works before answering. ``hold``: the handler then
    waits for its ``release`` signal. A handler workflow asked to cancel cleans up first,
    which here means waiting for ``release`` too: so a test decides when it ends.
    """

    name: str
    seconds: float = 0.0
    hold: bool = False


@workflow.defn
class GreetingWorkflow:
    """The async operation's handler workflow (and, in ``orders``, a child workflow)."""

    def __init__(self) -> None:
        self.released = False

    @workflow.signal
    def release(self) -> None:
        self.released = True

    @workflow.run
    async def run(self, greeting: Greeting) -> str:
        try:
            if greeting.seconds:
                await workflow.sleep(greeting.seconds)
            if greeting.hold:
                await workflow.wait_condition(lambda: self.released)
        except asyncio.CancelledError:
            # Clean up before accepting the cancellation, as the sample's handler does.
            await asyncio.shield(asyncio.ensure_future(self._released()))
            raise
        return f"Hello {greeting.name}"

    async def _released(self) -> None:
        await workflow.wait_condition(lambda: self.released)


@nexusrpc.service
class GreetingService:
    """Greetings: async (a workflow per greeting) or sync (answered inline)."""

    greet: nexusrpc.Operation[Greeting, str]
    greet_now: nexusrpc.Operation[Greeting, str]


@nexusrpc.handler.service_handler(service=GreetingService)
class GreetingServiceHandler:
    """Handlers of :class:`GreetingService`."""

    @nexus.workflow_run_operation
    async def greet(
        self, ctx: nexus.WorkflowRunOperationContext, greeting: Greeting
    ) -> nexus.WorkflowHandle[str]:
        return await ctx.start_workflow(
            GreetingWorkflow.run, greeting, id=f"greeting-{greeting.name}"
        )

    @nexusrpc.handler.sync_operation
    async def greet_now(
        self, ctx: nexusrpc.handler.StartOperationContext, greeting: Greeting
    ) -> str:
        await asyncio.sleep(greeting.seconds)
        return f"Hello {greeting.name}"


def greetings(endpoint: str) -> workflow.NexusClient[GreetingService]:
    return workflow.create_nexus_client(endpoint=endpoint, service=GreetingService)


@workflow.defn
class FirstGreetingWorkflow:
    """Asks for several greetings at once, takes the first and cancels the others, then
    returns without waiting for them to wind down (``WAIT_REQUESTED``)."""

    @workflow.run
    async def run(self, endpoint: str, seconds: list[float]) -> str:
        me = workflow.info().workflow_id
        calls = [
            asyncio.ensure_future(
                greetings(endpoint).execute_operation(
                    GreetingService.greet,
                    Greeting(f"{me}-{index}", delay),
                    cancellation_type=NexusOperationCancellationType.WAIT_REQUESTED,
                )
            )
            for index, delay in enumerate(seconds)
        ]
        done, pending = await workflow.wait(calls, return_when=asyncio.FIRST_COMPLETED)
        for call in pending:
            call.cancel()
        for call in pending:
            with contextlib.suppress(NexusOperationError, CancelledError, asyncio.CancelledError):
                await call
        return next(iter(done)).result()


@workflow.defn
class GiveUpWorkflow:
    """Asks for a sync and an async greeting, gives up on both (``ABANDON``: no cancel
    request is sent) and returns while their handlers still work."""

    @workflow.run
    async def run(self, endpoint: str, seconds: float) -> str:
        me = workflow.info().workflow_id
        calls = [
            asyncio.ensure_future(
                greetings(endpoint).execute_operation(
                    operation,
                    Greeting(f"{me}-{operation.name}", seconds),
                    cancellation_type=NexusOperationCancellationType.ABANDON,
                )
            )
            for operation in (GreetingService.greet_now, GreetingService.greet)
        ]
        await workflow.sleep(timedelta(milliseconds=300))
        for call in calls:
            call.cancel()
        for call in calls:
            with contextlib.suppress(NexusOperationError, CancelledError, asyncio.CancelledError):
                await call
        return "gave up"


@workflow.defn
class LeaveChildWorkflow:
    """Starts a child that outlives it (parent close policy ``ABANDON``) and returns."""

    @workflow.run
    async def run(self) -> str:
        await workflow.start_child_workflow(
            GreetingWorkflow.run,
            Greeting("left", hold=True),
            id=f"{workflow.info().workflow_id}-child",
            parent_close_policy=ParentClosePolicy.ABANDON,
        )
        return "left it running"


# --- messages sent by Nexus handlers (the nexus_messaging shape) ----------------------------


@dataclass
class ItemRequest:
    """An item for the entity workflow ``entity_id``."""

    entity_id: str
    item: str


@workflow.defn
class ItemsWorkflow:
    """A long-lived entity other namespaces reach through Nexus: signals and updates."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self.released = False
        self.finished = False

    @workflow.signal
    def approve(self, item: str) -> None:
        self.items.append(f"approved {item}")

    @workflow.update
    def add(self, item: str) -> int:
        self.items.append(item)
        return len(self.items)

    @workflow.update
    async def add_later(self, item: str) -> int:
        await workflow.wait_condition(lambda: self.released)
        self.items.append(item)
        return len(self.items)

    @workflow.signal
    def release(self) -> None:
        self.released = True

    @workflow.signal
    def finish(self) -> None:
        self.finished = True

    @workflow.run
    async def run(self) -> list[str]:
        await workflow.wait_condition(lambda: self.finished and workflow.all_handlers_finished())
        return self.items


@nexusrpc.service
class ItemsService:
    """What the entity's team offers other namespaces."""

    approve: nexusrpc.Operation[ItemRequest, str]
    add: nexusrpc.Operation[ItemRequest, int]
    add_by_update: nexusrpc.Operation[ItemRequest, int]
    add_later_by_update: nexusrpc.Operation[ItemRequest, int]


@nexusrpc.handler.service_handler(service=ItemsService)
class ItemsServiceHandler:
    """Sync handlers that signal and update the entity through the worker's client, and
    update-backed operations (the SDK's ``temporal_operation``)."""

    @nexusrpc.handler.sync_operation
    async def approve(
        self, ctx: nexusrpc.handler.StartOperationContext, request: ItemRequest
    ) -> str:
        handle = nexus.client().get_workflow_handle(request.entity_id)
        await handle.signal(ItemsWorkflow.approve, request.item)
        return "approved"

    @nexusrpc.handler.sync_operation
    async def add(self, ctx: nexusrpc.handler.StartOperationContext, request: ItemRequest) -> int:
        handle = nexus.client().get_workflow_handle(request.entity_id)
        return await handle.execute_update(ItemsWorkflow.add, request.item)

    @nexus.temporal_operation
    async def add_by_update(
        self,
        ctx: nexus.TemporalStartOperationContext,
        client: nexus.TemporalNexusClient,
        request: ItemRequest,
    ) -> nexus.TemporalOperationResult[int]:
        return await client.start_workflow_update(
            request.entity_id,
            ItemsWorkflow.add,
            request.item,
            wait_for_stage=WorkflowUpdateStage.ACCEPTED,
        )

    @nexus.temporal_operation
    async def add_later_by_update(
        self,
        ctx: nexus.TemporalStartOperationContext,
        client: nexus.TemporalNexusClient,
        request: ItemRequest,
    ) -> nexus.TemporalOperationResult[int]:
        return await client.start_workflow_update(
            request.entity_id,
            ItemsWorkflow.add_later,
            request.item,
            wait_for_stage=WorkflowUpdateStage.ACCEPTED,
        )


@workflow.defn
class ShopperWorkflow:
    """Approves and adds items on another namespace's entity through its Nexus service.

    With ``leave_one``, it also starts an update-backed operation the entity answers only
    later, and returns without waiting for it.
    """

    @workflow.run
    async def run(self, endpoint: str, entity_id: str, leave_one: bool) -> list[str]:
        items = workflow.create_nexus_client(endpoint=endpoint, service=ItemsService)
        outcomes = [
            await items.execute_operation(ItemsService.approve, ItemRequest(entity_id, "tea")),
            str(await items.execute_operation(ItemsService.add, ItemRequest(entity_id, "milk"))),
            str(
                await items.execute_operation(
                    ItemsService.add_by_update, ItemRequest(entity_id, "sugar")
                )
            ),
        ]
        if leave_one:
            # Returns once the operation started: the entity accepted the update.
            await items.start_operation(
                ItemsService.add_later_by_update,
                ItemRequest(entity_id, "honey"),
                cancellation_type=NexusOperationCancellationType.ABANDON,
            )
            outcomes.append("left honey to be added")
        return outcomes

"""Workflows for the linker's edge tests (kept apart: the workflow sandbox re-imports this)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow
from temporalio.exceptions import ApplicationError


@activity.defn
async def leaf(value: str) -> str:
    if value == "boom":
        raise ApplicationError("leaf failed", type="LeafError", non_retryable=True)
    return value


@workflow.defn
class ChildWorkflow:
    @workflow.run
    async def run(self, value: str) -> str:
        return await workflow.execute_activity(
            leaf, value, start_to_close_timeout=timedelta(seconds=10)
        )


@workflow.defn
class ParentWorkflow:
    @workflow.run
    async def run(self, values: list[str]) -> list[str]:
        results = []
        for index, value in enumerate(values):
            handle = await workflow.start_child_workflow(
                ChildWorkflow.run, value, id=f"{workflow.info().workflow_id}-child-{index}"
            )
            try:
                results.append(await handle)
            except Exception:
                results.append("failed")
        return results


@workflow.defn
class MailboxWorkflow:
    """Lives in its own namespace; other namespaces signal and update it over HTTP."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self.counted = False

    @workflow.signal
    def deposit(self, item: str) -> None:
        self.items.append(item)

    @workflow.update
    def count(self) -> int:
        self.counted = True
        return len(self.items)

    @workflow.run
    async def run(self) -> list[str]:
        await workflow.wait_condition(lambda: bool(self.items) and self.counted)
        return self.items


@workflow.defn
class NotifierWorkflow:
    """Reaches the mailbox through an activity that calls the mailbox team's HTTP API."""

    @workflow.run
    async def run(self, mailbox_id: str) -> int:
        result: int = await workflow.execute_activity(
            "notify_mailbox", mailbox_id, start_to_close_timeout=timedelta(seconds=30)
        )
        return result

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

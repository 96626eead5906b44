"""What the API and the CLI's database backend both do with a stored run, written once."""

from __future__ import annotations

from typing import Any

from overture.api import views
from overture.store.base import Store
from overture.store.records import RunRecord, StartRun


async def run_detail(store: Store, run_id: str, tenant: str) -> dict[str, Any]:
    """The run with every step of its workflow, as ``GET /v1/runs/{id}`` answers."""
    record = await store.get_run(run_id, tenant=tenant)
    state = await store.run_state(run_id, tenant=tenant)
    workflow = await store.get_workflow(record.workflow, record.version, tenant=tenant)
    return views.run_detail(record, state, workflow.workflow)


async def replay(store: Store, run_id: str, tenant: str) -> RunRecord:
    """A new run of the same workflow version with the same input."""
    old = await store.get_run(run_id, tenant=tenant)
    record, _ = await store.start_run(
        StartRun(
            workflow=old.workflow,
            version=old.version,
            input=old.input,
            tenant=tenant,
            priority=old.priority,
            correlation_id=old.correlation_id,
        )
    )
    return record

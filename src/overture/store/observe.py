"""What ``Store.observe`` shares between dialects: which runs count as unfinished, and the rows
its queries return made into an ``Observation``."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, get_args

from overture.core.state import TERMINAL_RUN, RunStatus
from overture.store.records import Observation, QueueGauge, RunGauge

UNFINISHED: tuple[str, ...] = tuple(s for s in get_args(RunStatus) if s not in TERMINAL_RUN)
"""The statuses a run may still leave; passed to the queries so they can never drift from the
core's, and listed (not negated) so an index on ``(tenant, status)`` serves them."""


def observation(
    at: datetime,
    queues: Iterable[Sequence[Any]],
    runs: Iterable[Sequence[Any]],
    dead_letters: Iterable[Sequence[Any]],
    when: Callable[[Any], datetime],
) -> Observation:
    """The rows of the ``observe_*`` queries (same columns in every dialect) as records."""
    return Observation(
        at=at,
        queues=tuple(
            QueueGauge(
                queue=queue,
                tenant=tenant,
                ready=int(ready),
                delayed=int(delayed),
                oldest_ready_at=None if oldest is None else when(oldest),
                running=int(running),
            )
            for queue, tenant, ready, delayed, oldest, running in queues
        ),
        runs=tuple(
            RunGauge(workflow=workflow, tenant=tenant, status=status, count=int(count))
            for workflow, tenant, status, count in runs
        ),
        dead_letters=tuple((tenant, int(count)) for tenant, count in dead_letters),
    )

"""A handler that fails its first attempt for good and succeeds on any later one
(``--app tests.apps.flaky:registry``).

``once`` remembers, in the file ``flag``, that it has already failed: so the first attempt of a
step fails non-retryably (the step goes to the dead-letter queue) and an attempt after a retry
or a requeue succeeds, even in another process.
"""

from __future__ import annotations

from pathlib import Path

from overture import HandlerRegistry, NonRetryable, StepContext

registry = HandlerRegistry()

FIRST_ATTEMPT_CODE = "first_attempt"


def _first_time(flag: str) -> bool:
    """True the first time it is asked about ``flag`` (a file it then creates)."""
    try:
        Path(flag).touch(exist_ok=False)
    except FileExistsError:
        return False
    return True


@registry.handler()
async def once(ctx: StepContext, *, flag: str) -> dict[str, str]:
    """Fail (non-retryable) the first time, succeed every time after."""
    if _first_time(flag):
        raise NonRetryable("the first attempt fails on purpose", code=FIRST_ATTEMPT_CODE)
    return {"ran": ctx.step_id}

"""Handlers that try to leak a secret into the process log
(``--app tests.apps.logging_handlers:registry``).

Both are given the secret as an input (``${secrets.X}``): ``chatty`` logs it through
``ctx.log``, through a library's logger and in an exception's traceback; ``shaky`` logs a
warning with it and fails its first attempt with it in the error, then succeeds (``flag`` is the
file that remembers the first attempt, so a retry in another process works too).
"""

from __future__ import annotations

import logging
from pathlib import Path

from overture import HandlerRegistry, StepContext

registry = HandlerRegistry()
library = logging.getLogger("tests.library")


@registry.handler()
async def chatty(ctx: StepContext, *, token: str, lines: int) -> dict[str, int]:
    """Log ``lines`` lines holding ``token`` in every way a handler can; output nothing of it."""
    for n in range(1, lines + 1):
        ctx.log(f"line {n} with {token}", n=n, token=token)
    library.info("a library line with %s", token)
    try:
        raise ValueError(f"refused {token}")
    except ValueError:
        library.exception("a library error")
    return {"lines": lines}


def _first_time(flag: str) -> bool:
    """True the first time it is asked about ``flag`` (a file it then creates)."""
    try:
        Path(flag).touch(exist_ok=False)
    except FileExistsError:
        return False
    return True


@registry.handler()
async def shaky(ctx: StepContext, *, flag: str, token: str) -> dict[str, int]:
    """Fail (retryably) the first time, naming ``token``; succeed every time after."""
    if not _first_time(flag):
        return {"attempt": ctx.attempt}
    ctx.log(f"failing on purpose, holding {token}", level="warning")
    raise RuntimeError(f"the first attempt fails holding {token}")

"""What a handler receives as ``ctx``: who it is running for, and where to log."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from overture.clock import Clock, SystemClock
from overture.runtime.redaction import masker
from overture.serde import JSON

logger = logging.getLogger("overture.step")

Level = Literal["debug", "info", "warning", "error"]
LEVELS: dict[str, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


@dataclass(frozen=True, kw_only=True, slots=True)
class LogLine:
    """One line a handler logged during an attempt."""

    at: datetime
    level: str
    message: str
    fields: dict[str, JSON]


@dataclass(kw_only=True, slots=True)
class StepContext:
    """The running attempt, as its handler sees it."""

    run_id: str
    step_id: str
    attempt: int
    workflow: str
    tenant: str = "default"
    compensation: bool = False
    clock: Clock = field(default_factory=SystemClock)
    logs: list[LogLine] = field(default_factory=list)
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)
    """Values masked in every line logged, in the attempt's log and the process's."""

    @property
    def idempotency_key(self) -> str:
        """Stable across attempts of this step, so downstreams can deduplicate: tenant:run:step."""
        key = f"{self.tenant}:{self.run_id}:{self.step_id}"
        return f"{key}:compensate" if self.compensation else key

    def log(self, message: str, *, level: Level = "info", **fields: JSON) -> None:
        """Record a line in the attempt's log (and in the process log)."""
        if level not in LEVELS:
            raise ValueError(f"log level must be one of {', '.join(LEVELS)}, not {level!r}")
        mask = masker(self.secrets)
        message = mask(message)
        masked = mask.json(fields)
        assert isinstance(masked, dict)
        self.logs.append(LogLine(at=self.clock.now(), level=level, message=message, fields=masked))
        # The attempt's own fields go under "fields", as in the stored line, so that none can
        # pass for (or hide) a field that says which run the line is about.
        extra: dict[str, Any] = {
            "run_id": self.run_id,
            "step_id": self.step_id,
            "attempt": self.attempt,
            "workflow": self.workflow,
            "tenant": self.tenant,
            "fields": masked or None,  # None: left out of the line
        }
        logger.log(LEVELS[level], message, extra={"overture": extra})

"""A job's flow controls, evaluated when the job is scheduled: what its claim must respect.

The workflow says ``concurrency: {key: "${input.flight_id}", limit: 1}``; the job carries
``Slot("flight-42", 1, "job")``. Keys are rendered once, against the run as it stands when the
attempt is queued, so every worker that later looks at the job agrees on them without the
workflow. The store enforces them when it claims (see ``overture.core.admission``).

- a **slot** is held while the job runs (``"job"``), or by the run from its first claimed step to
  its end (``"run"``, a workflow's ``concurrency``); at most ``limit`` holders per key;
- a **bucket** is a token bucket: one token per start, ``rate`` per second, at most ``burst``;
- a **breaker** is a circuit: its outcome is counted, and while open the job is parked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from overture.core.model import Concurrency, Step, Workflow
from overture.core.references import Scope
from overture.core.templates import render
from overture.errors import TemplateError
from overture.serde import JSON, UNSTORABLE_TEXT

SlotScope = Literal["job", "run"]

HTTP_HANDLER = "http"
RESERVED_PREFIX = "overture:"
"""Keys Overture makes itself (the per-tenant limits) begin so; no workflow's key may."""
BASE_URL_HOST = "base-url"
"""The host key of http steps that ``call:`` a path of the configured base URL."""


@dataclass(frozen=True, slots=True)
class Slot:
    key: str
    limit: int
    scope: SlotScope = "job"


@dataclass(frozen=True, slots=True)
class Bucket:
    key: str
    rate: float
    """Tokens per second."""
    burst: float
    """Most tokens the bucket holds: the burst allowed after a quiet spell."""


@dataclass(frozen=True, slots=True)
class Breaker:
    key: str
    threshold: int = 5
    window: float = 30.0
    cooldown: float = 30.0


@dataclass(frozen=True, slots=True)
class Gates:
    slots: tuple[Slot, ...] = ()
    buckets: tuple[Bucket, ...] = ()
    breaker: Breaker | None = None

    def __bool__(self) -> bool:
        return bool(self.slots or self.buckets or self.breaker)

    def to_data(self) -> dict[str, Any]:
        """As stored with the job: compact JSON."""
        data: dict[str, Any] = {}
        if self.slots:
            data["slots"] = [[s.key, s.limit, s.scope] for s in self.slots]
        if self.buckets:
            data["buckets"] = [[b.key, b.rate, b.burst] for b in self.buckets]
        if self.breaker is not None:
            b = self.breaker
            data["breaker"] = [b.key, b.threshold, b.window, b.cooldown]
        return data

    @classmethod
    def from_data(cls, data: Any) -> Gates:
        if not data:
            return NO_GATES
        breaker = data.get("breaker")
        return cls(
            slots=tuple(Slot(k, int(n), scope) for k, n, scope in data.get("slots", ())),
            buckets=tuple(Bucket(k, float(r), float(b)) for k, r, b in data.get("buckets", ())),
            breaker=None if breaker is None else Breaker(*breaker),
        )


NO_GATES = Gates()


def step_gates(workflow: Workflow, step: Step, scope: Scope, inputs: JSON) -> Gates:
    """The step's flow controls with their keys rendered (``TemplateError`` if one cannot be)."""
    slots: list[Slot] = []
    held: tuple[tuple[SlotScope, Concurrency | None], ...] = (
        ("run", workflow.concurrency),
        ("job", step.concurrency),
    )
    for held_by, c in held:
        if c is not None:
            slots.append(Slot(_key(c.key, scope, "concurrency"), c.limit, held_by))
    if step.max_in_flight is not None:
        slots.append(Slot(target(step, inputs), step.max_in_flight, "job"))
    buckets: tuple[Bucket, ...] = ()
    if step.rate_limit is not None:
        r = step.rate_limit
        burst = float(r.burst) if r.burst is not None else max(1.0, r.rate)
        buckets = (Bucket(_key(r.key, scope, "rate_limit"), r.rate, burst),)
    breaker: Breaker | None = None
    if step.circuit:
        b = step.circuit
        breaker = Breaker(_key(b.key, scope, "circuit"), b.failure_threshold, b.window, b.cooldown)
    elif step.circuit is None and step.uses == HTTP_HANDLER:
        breaker = Breaker(target(step, inputs))
    return Gates(tuple(slots), buckets, breaker)


def target(step: Step, inputs: JSON) -> str:
    """What a step calls, for per-target limits: ``host:<name>`` for http, else the handler."""
    if step.uses != HTTP_HANDLER:
        return f"agent:{step.uses}"
    url = inputs.get("url") if isinstance(inputs, dict) else None
    if isinstance(url, str):
        try:
            host = urlsplit(url).hostname
        except ValueError:
            host = None
        if host:
            return f"host:{host}"
    return f"host:{BASE_URL_HOST}"


def _key(template: str, scope: Scope, control: str) -> str:
    try:
        value = render(template, scope)
    except TemplateError as error:
        named = TemplateError(f"{control} key {template!r}: {error}")
        named.code = error.code  # the reason stays what it was; the message says where
        raise named from None
    if isinstance(value, dict | list) or value is None:
        raise TemplateError(f"{control} key {template!r} gave {type(value).__name__}, not text")
    text = value if isinstance(value, str) else str(value).lower()
    if not text or len(text) > 500:
        raise TemplateError(f"{control} key {template!r} gave {len(text)} characters (1 to 500)")
    if UNSTORABLE_TEXT.search(text):
        raise TemplateError(f"{control} key {template!r} gave text with NUL or a lone surrogate")
    if text.startswith(RESERVED_PREFIX):
        reserved = f"keys starting {RESERVED_PREFIX!r} are Overture's"
        raise TemplateError(f"{control} key {template!r}: {reserved}")
    return text

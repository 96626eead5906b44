"""Workflows as data: the shape of a workflow and its steps.

A workflow is built from a YAML/JSON file (see ``overture.core.loader``) or directly in Python:

    Workflow(name="greet", steps=[Step(id="hello", uses="echo", inputs={"to": "${input.name}"})])

Constructing a ``Workflow`` checks everything that does not need a handler registry (duplicate
ids, unknown dependencies, cycles, template syntax...) and raises ``pydantic.ValidationError``
listing every problem. ``validate_handlers`` checks the ``uses`` names against a registry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    PrivateAttr,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from overture.core import graph, validate
from overture.core.durations import parse_duration, parse_rate


def _coded(parse: Callable[[object], float], code: str) -> Callable[[object], float]:
    """Report a parser's ``ValueError`` under a stable error code instead of ``value_error``."""

    def validate(value: object) -> float:
        try:
            return parse(value)
        except ValueError as error:
            raise PydanticCustomError(code, str(error)) from None

    return validate


Duration = Annotated[
    float,
    BeforeValidator(_coded(parse_duration, "bad_duration")),
    WithJsonSchema(
        {"anyOf": [{"type": "number", "minimum": 0}, {"type": "string"}], "examples": ["30s"]}
    ),
]
"""Seconds; written as a number of seconds or ``'250ms'``, ``'30s'``, ``'1h30m'``."""

Rate = Annotated[
    float,
    BeforeValidator(_coded(parse_rate, "bad_rate")),
    WithJsonSchema({"anyOf": [{"type": "number"}, {"type": "string"}], "examples": ["10/s"]}),
]
"""Events per second; written as ``'10/s'``, ``'100/m'`` or a number per second."""

Identifier = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_-]*$", max_length=64)]
WorkflowName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=128)]

MIN_RATE, MAX_RATE = 1 / (365 * 86400), 1e9
"""Rates a token bucket accepts, per second: slower would defer a job past any horizon."""

DEFAULT_PRIORITY = 100
"""Lower runs first; a step or run without a priority gets this one."""


def _as_tuple(value: object) -> object:
    """Let a single string stand for a one-element list (``depends_on: fetch``)."""
    return (value,) if isinstance(value, str) else value


def _as_jitter(value: object) -> object:
    """``jitter: true`` is full jitter, ``false`` none; a number is the jittered fraction."""
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if value == "full":
        return 1.0
    if value == "none":
        return 0.0
    return value


StringList = Annotated[tuple[str, ...], BeforeValidator(_as_tuple)]


class Spec(BaseModel):
    """Base of every workflow model: immutable, strict about unknown fields."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", populate_by_name=True, validate_default=True
    )


class RetryPolicy(Spec):
    """How a failed step is tried again: exponential backoff with jitter, capped."""

    max_attempts: int = Field(3, ge=1, le=1000, description="Attempts in all, the first included.")
    initial: Duration = Field(1.0, description="Delay before the second attempt.")
    factor: float = Field(2.0, ge=1.0, le=100.0, description="Growth of the delay per attempt.")
    max: Duration = Field(60.0, description="Cap on any single delay.")
    jitter: Annotated[float, BeforeValidator(_as_jitter)] = Field(
        1.0, ge=0.0, le=1.0, description="Fraction of the delay randomised: 1 is full jitter."
    )
    non_retryable: StringList = Field((), description="Error codes that fail the step at once.")
    max_crashes: int = Field(
        3, ge=0, le=100, description="Re-deliveries after a worker died, separate from attempts."
    )

    @model_validator(mode="after")
    def _cap_not_below_initial(self) -> Self:
        if self.max < self.initial:
            raise ValueError(f"max ({self.max}s) is smaller than initial ({self.initial}s)")
        return self


class Compensation(Spec):
    """The action that undoes a step when its run fails later on."""

    uses: str = Field(min_length=1, description="Handler that undoes the step.")
    inputs: dict[str, JsonValue] = Field(default_factory=dict, alias="with")
    retry: RetryPolicy | None = None
    timeout: Duration | None = None


class Concurrency(Spec):
    """At most ``limit`` in flight per evaluated ``key``; 1 makes a critical section.

    On a step it counts the step's running attempts; on a workflow it counts runs, from their
    first step's start to their end.
    """

    key: str = Field(min_length=1, max_length=500)
    limit: int = Field(1, ge=1, le=1_000_000)


class RateLimit(Spec):
    """A token bucket shared by every worker, per evaluated ``key``: a job without a token
    waits for one (it is never failed for it)."""

    key: str = Field(min_length=1, max_length=500)
    rate: Rate = Field(description="At least one a year, at most a billion a second.")
    burst: int | None = Field(
        None, ge=1, le=1_000_000_000, description="Bucket size; defaults to one second's rate."
    )

    @field_validator("rate")
    @classmethod
    def _sane_rate(cls, rate: float) -> float:
        if not MIN_RATE <= rate <= MAX_RATE:
            raise ValueError(f"a rate must be from one a year to {MAX_RATE:g}/s, got {rate:g}/s")
        return rate


class Circuit(Spec):
    """Stop calling a downstream after repeated failures, probe again after a cooldown.

    Closed, it counts the step's retryable failures (errors, timeouts, 5xx: not a 4xx, which is
    the caller's fault); ``failure_threshold`` of them within ``window`` open it. Open, its jobs
    are parked (not failed, no attempt spent) until ``cooldown`` has passed; then one probe
    runs (half-open): success closes the circuit, failure opens it again.
    """

    key: str = Field(min_length=1, max_length=500)
    failure_threshold: int = Field(5, ge=1, le=10_000)
    window: Duration = 30.0
    cooldown: Duration = 30.0


def _as_circuit(value: object) -> object:
    """``circuit: agents`` names the circuit; ``circuit: false`` turns off the http host one."""
    return {"key": value} if isinstance(value, str) else value


class Budget(Spec):
    """Spending cap (in US dollars) per evaluated ``key`` over a rolling ``window``."""

    key: str = Field(min_length=1)
    limit_usd: float = Field(gt=0)
    window: Duration = 86400.0


class EventTrigger(Spec):
    """Start a run for each event of ``type`` (the event is the run's input), if ``when`` holds."""

    type: str = Field(min_length=1, max_length=200)
    when: str | None = Field(
        None, description="Condition over the event, e.g. input.payload.action == 'opened'."
    )


class CronTrigger(Spec):
    """Start a run at each tick of a cron expression, read in ``timezone``."""

    cron: str = Field(min_length=1, description="5 fields (minute first), or 6 (second first).")
    timezone: str = Field("UTC", description="An IANA time zone such as Europe/Paris.")
    input: JsonValue = Field(None, description="The input of each run.")
    catch_up: int = Field(
        0,
        ge=0,
        le=1000,
        description="Ticks missed while no scheduler ran: 0 skips them, N fires the last N.",
    )


class Triggers(Spec):
    """What starts runs besides the API: events, cron schedules, webhook sources.

    An event or cron entry is a bare string (the type, the expression) or a mapping with options.
    """

    events: tuple[str | EventTrigger, ...] = ()
    cron: tuple[str | CronTrigger, ...] = ()
    webhook: StringList = ()

    @field_validator("events", "cron", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, dict) else _as_tuple(value)

    def event_triggers(self) -> tuple[EventTrigger, ...]:
        return tuple(EventTrigger(type=e) if isinstance(e, str) else e for e in self.events)

    def cron_triggers(self) -> tuple[CronTrigger, ...]:
        return tuple(CronTrigger(cron=c) if isinstance(c, str) else c for c in self.cron)


class Defaults(Spec):
    """Values every step gets unless it sets its own."""

    retry: RetryPolicy | None = None
    timeout: Duration | None = None
    priority: int | None = None


class Step(Spec):
    """One node of the workflow's DAG: a handler call with templated inputs."""

    id: Identifier
    uses: str = Field(min_length=1, description="Name of the handler to call.")
    inputs: dict[str, JsonValue] | str = Field(
        default_factory=dict,
        alias="with",
        description="Handler inputs; strings may use ${...}. One template naming a mapping "
        "(e.g. ${input}) passes that whole mapping.",
    )
    depends_on: StringList = ()
    when: str | bool | None = Field(None, description="Condition; the step is skipped when false.")
    retry: RetryPolicy | None = None
    timeout: Duration | None = None
    compensate: Compensation | None = None
    concurrency: Concurrency | None = None
    rate_limit: RateLimit | None = None
    circuit: Annotated[Circuit | Literal[False] | None, BeforeValidator(_as_circuit)] = Field(
        None,
        description="A circuit breaker (a name, or options); http steps get one per host "
        "unless this is false.",
    )
    max_in_flight: int | None = Field(
        None,
        ge=1,
        le=1_000_000,
        description="At most this many calls in flight to the step's target (the host of an "
        "http step, else its handler), across every workflow of the tenant.",
    )
    budget: Budget | None = None
    priority: int | None = None
    description: str = ""

    def flow_keys(self) -> tuple[str, ...]:
        """The templated keys of the step's flow controls."""
        controls = (self.concurrency, self.rate_limit, self.circuit or None, self.budget)
        return tuple(c.key for c in controls if c is not None)


class Workflow(Spec):
    """A named, versioned DAG of steps."""

    name: WorkflowName
    version: int = Field(1, ge=1)
    description: str = ""
    on: Triggers = Field(default_factory=Triggers)
    input: dict[str, JsonValue] | None = Field(None, description="JSON Schema of the run input.")
    defaults: Defaults = Field(default_factory=Defaults)
    concurrency: Concurrency | None = Field(
        None, description="At most `limit` runs in flight per evaluated key."
    )
    steps: tuple[Step, ...] = Field(min_length=1, max_length=1000)
    output: JsonValue = Field(None, description="Template of the run output.")

    _graph: graph.Graph | None = PrivateAttr(default=None)

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, value: object) -> object:
        """Accept ``version: "2"`` and ``v2`` as written by people."""
        if isinstance(value, str) and value.lstrip("vV").isdigit():
            return int(value.lstrip("vV"))
        return value

    @model_validator(mode="after")
    def _check(self, info: ValidationInfo) -> Self:
        self._graph = graph.Graph.of(self)
        problems = validate.workflow_problems(self)
        context = info.context if isinstance(info.context, Mapping) else {}
        sink = context.get("problems")
        if isinstance(sink, list):
            sink.extend(problems)  # the loader locates them in the source file
        elif problems:
            raise ValueError("\n".join(str(p) for p in problems))
        return self

    @property
    def graph(self) -> graph.Graph:
        """The DAG: steps by id, what each waits for, the sinks."""
        # Read the private slot directly: pydantic's __getattr__ route is slow on a hot path.
        found: graph.Graph = self.__pydantic_private__["_graph"]  # type: ignore[index]
        return found

    def step(self, step_id: str) -> Step:
        """The step with this id (``KeyError`` if there is none)."""
        return self.graph.steps[step_id]

    def needs(self, step_id: str) -> frozenset[str]:
        """Every step this one waits for: ``depends_on`` plus the steps its templates read."""
        return self.graph.needs[step_id]

    def retry_policy(self, step: Step | Compensation) -> RetryPolicy:
        """The step's retry policy over the workflow defaults, field by field."""
        merged: dict[str, Any] = {}
        for layer in (self.defaults.retry, step.retry):
            if layer is not None:
                merged.update({name: getattr(layer, name) for name in layer.model_fields_set})
        return RetryPolicy(**merged)

    def timeout(self, step: Step | Compensation) -> float | None:
        """The step's timeout in seconds, or the workflow default."""
        return step.timeout if step.timeout is not None else self.defaults.timeout

    def priority(self, step: Step, run_priority: int | None) -> int:
        """Step priority, else the run's, else the workflow default, else ``DEFAULT_PRIORITY``."""
        for value in (step.priority, run_priority, self.defaults.priority):
            if value is not None:
                return value
        return DEFAULT_PRIORITY

    def to_data(self) -> dict[str, Any]:
        """The workflow as JSON data that ``Workflow.model_validate`` reads back unchanged."""
        return self.model_dump(mode="json", by_alias=True, exclude_defaults=True)

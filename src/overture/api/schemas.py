"""The API's request and response bodies, as pydantic models (they are the OpenAPI spec).

Requests reject unknown fields. Responses are built as plain data by ``api.views`` for speed;
the schemathesis suite checks that what the views build conforms to these models.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, JsonValue

from overture.api.payloads import AnyPayload, Payload, storable
from overture.core.attempts import AttemptStatus, Requeued
from overture.core.state import RunStatus, StepStatus
from overture.store.records import WORKER_LIVE_WITHIN

MAX_LIST = 1000
"""The most items one request may name, and the largest page a listing returns."""
MAX_SEQ = 2**31 - 1
"""The largest event seq or workflow version the stores can hold (32-bit columns)."""
MAX_ID = 2**63 - 1
"""The largest numeric id (dead letters, log lines) the stores can hold (64-bit columns)."""

Key = Annotated[str, Field(min_length=1, max_length=200)]
WorkflowName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=128)]
HandlerName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]*$", max_length=64)]
Priority = Annotated[int, Field(ge=-1_000_000, le=1_000_000, description="Lower runs first.")]


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- requests --------------------------------------------------------------------------------
class StartRunIn(Request):
    workflow: WorkflowName
    version: int | None = Field(
        None, ge=1, le=MAX_SEQ, description="None: the latest enabled version."
    )
    input: Payload = Field(default_factory=dict)
    idempotency_key: Key | None = Field(
        None, description="A repeated key returns the run it started (the header works too)."
    )
    priority: Priority | None = None
    delay: float | None = Field(None, ge=0, le=366 * 86400, description="Start after seconds.")
    run_at: AwareDatetime | None = Field(None, description="Start no earlier than this.")
    correlation_id: Key | None = None


class StartTaskIn(Request):
    type: HandlerName = Field(description="The handler that runs the task.")
    payload: Payload = Field(default_factory=dict)
    priority: Priority | None = None
    idempotency_key: Key | None = None
    max_retries: int | None = Field(None, ge=0, le=100, description="Attempts after the first.")


class CancelIn(Request):
    reason: str = Field("cancelled", min_length=1, max_length=500)


class RetryIn(Request):
    steps: list[Annotated[str, Field(max_length=64)]] | None = Field(
        None, min_length=1, max_length=MAX_LIST, description="None: every failed step."
    )


class SignalIn(Request):
    name: Annotated[str, Field(min_length=1, max_length=200)]
    payload: AnyPayload = None


# --- responses -------------------------------------------------------------------------------
class ErrorOut(BaseModel):
    code: str
    message: str
    retryable: bool
    retry_after: float | None = None
    details: dict[str, Any] = Field(default_factory=dict)


class StepOut(BaseModel):
    id: str
    status: StepStatus
    attempt: int
    crashes: int
    input: JsonValue = None
    output: JsonValue = None
    error: ErrorOut | None = None
    reason: str | None = None
    run_at: datetime | None = None
    scheduled_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    child_run_id: str | None = Field(
        None, description="A workflow step: the child run it started and waits for."
    )


class RunOut(BaseModel):
    id: str
    workflow: str
    version: int
    status: RunStatus
    input: JsonValue = None
    output: JsonValue = None
    error: ErrorOut | None = None
    priority: int | None = None
    correlation_id: str | None = None
    idempotency_key: str | None = None
    parent_run_id: str | None = None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None = None
    events: int = Field(description="How many events the run's history holds.")
    run_at: datetime | None = Field(None, description="A delayed run's start time.")


class RunDetailOut(RunOut):
    steps: list[StepOut] = Field(description="Every step of the workflow, in definition order.")
    compensations: list[StepOut] = Field(default_factory=list)
    failed_step: str | None = None
    parent_step: str | None = Field(
        None, description="A child run: the step of parent_run_id that waits for it."
    )


class RunPage(BaseModel):
    items: list[RunOut]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page.")


class EventOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    seq: int
    type: str
    at: datetime


class EventPage(BaseModel):
    items: list[EventOut]
    next_after: int | None = Field(description="Pass as ?after= for the next page.")


class LogOut(BaseModel):
    id: int
    step_id: str
    attempt: int
    compensation: bool
    at: datetime
    level: str
    message: str
    fields: dict[str, Any]


class LogPage(BaseModel):
    items: list[LogOut]
    next_after: int | None


class SignalOut(BaseModel):
    run_id: str
    seq: int
    name: str


class TaskOut(BaseModel):
    id: str
    type: str
    status: RunStatus
    payload: JsonValue = None
    result: JsonValue = None
    error: ErrorOut | None = None
    attempts: int
    priority: int | None = None
    idempotency_key: str | None = None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None = None


class WorkflowOut(BaseModel):
    name: str
    version: int
    digest: str
    disabled: bool
    created_at: datetime
    steps: int
    triggers: dict[str, list[str]]
    definition: dict[str, Any]
    versions: list[int] = Field(default_factory=list, description="Every version, newest first.")


class WorkflowSummary(BaseModel):
    name: str
    version: int = Field(description="The latest version.")
    disabled: bool
    created_at: datetime
    steps: int
    triggers: dict[str, list[str]]


class WorkflowList(BaseModel):
    items: list[WorkflowSummary]


class DeadLetterOut(BaseModel):
    id: int
    run_id: str
    workflow: str
    step_id: str
    compensation: bool
    attempts: int
    error: ErrorOut
    created_at: datetime
    requeued_at: datetime | None = None


class DeadLetterList(BaseModel):
    items: list[DeadLetterOut]


class RequeueOut(BaseModel):
    runs: list[RunOut]


class WorkerOut(BaseModel):
    id: str
    host: str
    pid: int
    concurrency: int
    handlers: list[str]
    started_at: datetime
    last_seen: datetime
    stopped_at: datetime | None = None
    running: bool = Field(description="Not stopped: it has not said it is shutting down.")
    live: bool = Field(
        description=f"Running and seen within the last {WORKER_LIVE_WITHIN:g} s (a worker "
        "heartbeats every min(lease/3, 10 s)): a running worker that is not live has likely "
        "crashed."
    )
    seen_seconds_ago: float = Field(
        ge=0,
        description="Seconds since its last heartbeat, as of the database's time in a status "
        "and of the API server's clock in a worker listing.",
    )


class WorkerList(BaseModel):
    items: list[WorkerOut]


class HealthOut(BaseModel):
    status: Literal["ok"]


class ReadyOut(BaseModel):
    status: Literal["ready"]
    database: str
    migrations: list[int]


# --- webhook sources -------------------------------------------------------------------------
WebhookScheme = Literal["github", "standard", "stripe", "clickup", "hmac", "make"]
"""``overture.triggers.signatures.SCHEMES``."""
WebhookSourceName = Annotated[
    str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", description="Its URL's last part.")
]
WebhookSecretValue = Annotated[str, BeforeValidator(storable), Field(min_length=1, max_length=1000)]
RETIRE_AFTER = "24h"
"""How long a rotation leaves the other secrets valid, unless told otherwise."""


def _finite(value: object) -> object:
    """Refuse "nan" and "inf" as text, which would read as a number of seconds."""
    try:
        seconds = float(value.replace(" ", "")) if isinstance(value, str) else 0.0
    except ValueError:  # a duration such as "24h": the route parses it
        return value
    if not abs(seconds) < float("inf"):  # also true of NaN
        raise ValueError(f"{value!r} is no duration: give seconds, or a duration such as '24h'")
    return value


RetireAfter = (
    Annotated[float, Field(strict=True, allow_inf_nan=False)]
    | Annotated[str, BeforeValidator(_finite), Field(max_length=32)]
)
"""Seconds (a JSON number, not ``true``), or a duration such as ``'24h'``; never NaN or
infinity."""


class WebhookSourceIn(Request):
    name: WebhookSourceName
    scheme: WebhookScheme
    secrets: list[WebhookSecretValue] = Field(
        min_length=1,
        max_length=10,
        repr=False,
        description="Each verifies deliveries; never shown again.",
    )
    options: Payload = Field(
        default_factory=dict, description="The scheme's options, and event_prefix."
    )


class RotateSecretIn(Request):
    secret: WebhookSecretValue = Field(repr=False, description="The new first secret.")
    retire_after: RetireAfter = Field(
        RETIRE_AFTER,
        description="Seconds, or a duration such as '24h', the other secrets stay valid.",
    )


class WebhookSecretOut(BaseModel):
    added_at: datetime
    expires_at: datetime | None = None


class WebhookSourceOut(BaseModel):
    name: str
    scheme: WebhookScheme
    url: str = Field(description="Where the sender delivers: POST it, no API key.")
    origin: Literal["api", "config"] = Field(description="config: from the config file.")
    options: dict[str, JsonValue]
    active_secrets: int
    secrets: list[WebhookSecretOut] = Field(description="The active secrets, never their values.")
    created_at: datetime | None = None
    updated_at: datetime | None = None


class WebhookSourceList(BaseModel):
    items: list[WebhookSourceOut]


# --- attempts ----------------------------------------------------------------------------------
class AttemptOut(BaseModel):
    step_id: str
    attempt: int = Field(description="The number the handler saw; a crash or release reruns it.")
    compensation: bool
    status: AttemptStatus = Field(
        description="expired: its worker stopped heartbeating; released: given back on shutdown."
    )
    queued_after: Requeued | None = Field(
        description="Why it was queued again (None: the step's first attempt)."
    )
    worker_id: str | None = None
    scheduled_at: datetime
    run_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration: float | None = Field(None, description="Seconds from its start to its end.")
    status_code: int | None = Field(None, description="The HTTP status its response had.")
    error: ErrorOut | None = None
    logs: list[LogOut] = Field(description="The lines it logged, in order.")


class AttemptList(BaseModel):
    items: list[AttemptOut] = Field(description="Every attempt, in the order they were queued.")

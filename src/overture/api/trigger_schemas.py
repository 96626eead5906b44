"""Request and response bodies of events and schedules (see ``api.schemas`` for the rules)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    field_validator,
)

from overture.api.payloads import AnyPayload, storable
from overture.api.schemas import Key, WorkflowName
from overture.serde import UNSTORABLE_TEXT
from overture.triggers.events import WEBHOOK_SOURCE


def storable_text(text: str | None) -> str | None:
    """Refuse what no text column keeps: NUL (PostgreSQL) and half surrogate pairs."""
    if text is not None and UNSTORABLE_TEXT.search(text):
        raise ValueError("text cannot hold NUL or half of a surrogate pair")
    return text


def _not_a_delivery(text: str | None) -> str | None:
    if text is not None and text.startswith(WEBHOOK_SOURCE):
        raise ValueError(f"{WEBHOOK_SOURCE}... belongs to verified webhook deliveries")
    return text


EventType = Annotated[
    str,
    Field(min_length=1, max_length=200, pattern=r"^[^\s]+$"),
    AfterValidator(storable_text),
]
Name = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(storable_text)]
EventKey = Annotated[Key, AfterValidator(storable_text)]
EventId = Annotated[
    str,
    Field(min_length=1, max_length=200, pattern=r"^[^/]+$"),
    AfterValidator(storable_text),
    AfterValidator(_not_a_delivery),
]
"""Unique per tenant; no ``/`` (it names the event in a URL), not ``webhook:...``."""
Object = Annotated[dict[str, JsonValue], BeforeValidator(storable)]


def _either(snake: str, *others: str) -> AliasChoices:
    """The field as ``snake_case`` or ``camelCase`` (the APEX EventEnvelope's wire format)."""
    head, *rest = snake.split("_")
    camel = head + "".join(part.title() for part in rest)
    return AliasChoices(snake, *others, camel) if camel != snake else AliasChoices(snake, *others)


def _document_aliases(schema: dict[str, Any], model: type[BaseModel]) -> None:
    """Declare every name a field is accepted under (pydantic shows the first only), so that an
    EventEnvelope in camelCase is valid against the published schema too."""
    properties = schema["properties"]
    for name, field in model.model_fields.items():
        first, *others = _names(field.validation_alias, name)
        for other in others:
            properties[other] = {**properties[first], "description": f"Another name for {first}."}
    required = schema.pop("required", [])
    schema["anyOf"] = [
        {"required": [alias]}
        for name in required
        for alias in _names(model.model_fields[name].validation_alias, name)
    ]


def _names(alias: object, name: str) -> list[str]:
    if isinstance(alias, AliasChoices):
        return [c for c in alias.choices if isinstance(c, str)]
    return [name]


class SendEventIn(BaseModel):
    """An event: ``{type, payload, id?, ...}``, or an EventEnvelope as is (``event_id``,
    ``event_type``, ``tenant_id``, ``timestamp``, ``source``, ``target``, ``trace``,
    ``schema_version``, in snake_case or camelCase)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_document_aliases)

    type: EventType = Field(validation_alias=_either("type", "event_type", "eventType"))
    payload: AnyPayload = None
    id: EventId | None = Field(
        None,
        validation_alias=_either("id", "event_id", "eventId"),
        description="Unique per tenant: an id sent before starts nothing.",
    )
    user_id: EventKey | None = Field(None, validation_alias=_either("user_id"))
    correlation_id: EventKey | None = Field(None, validation_alias=_either("correlation_id"))
    idempotency_key: Annotated[EventKey, AfterValidator(_not_a_delivery)] | None = Field(
        None,
        validation_alias=_either("idempotency_key"),
        description="Also unique per tenant: a key sent before starts nothing.",
    )
    tenant_id: EventKey | None = Field(
        None,
        validation_alias=_either("tenant_id"),
        description="If given, must be the API key's tenant.",
    )
    source: Name | None = Field(
        None,
        description="The application that sent it (webhook:... is kept for verified webhooks).",
    )
    timestamp: Name | None = None
    target: Name | Annotated[list[Name], Field(max_length=100)] | None = None
    trace: Object | None = None
    schema_version: Name | None = Field(None, validation_alias=_either("schema_version"))
    chaos: Object | None = None

    @field_validator("source")
    @classmethod
    def _not_a_webhook(cls, source: str | None) -> str | None:
        if source is not None and source.startswith(WEBHOOK_SOURCE):
            raise ValueError(f"{WEBHOOK_SOURCE}... is the source of verified webhook deliveries")
        return source


class EventRouteOut(BaseModel):
    workflow: str
    version: int | None = None
    run_id: str | None = Field(None, description="The run the event started.")
    reason: str | None = Field(None, description="Why it started none.")


class ReceivedEventOut(BaseModel):
    id: str
    type: str
    payload: JsonValue = None
    user_id: str | None = None
    correlation_id: str | None = None
    idempotency_key: str | None = None
    source: str | None = None
    meta: dict[str, JsonValue] = Field(description="What else the sender said.")
    received_at: datetime
    routes: list[EventRouteOut] = Field(description="One per workflow listening for the type.")


class EventSentOut(BaseModel):
    event: ReceivedEventOut
    created: bool = Field(description="False: the id or key was seen before; nothing started.")


class EventPageOut(BaseModel):
    items: list[ReceivedEventOut]
    next_cursor: str | None = None


class CreateScheduleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")]
    workflow: WorkflowName
    cron: Annotated[str, Field(min_length=1, max_length=200)] = Field(
        description="5 fields (minute hour day month weekday), 6 with seconds first, or @daily..."
    )
    timezone: Annotated[str, Field(min_length=1, max_length=64)] = "UTC"
    input: AnyPayload = None
    catch_up: int = Field(0, ge=0, le=1000, description="Missed ticks to fire: 0 skips them.")
    paused: bool = False


class TickOut(BaseModel):
    tick: datetime
    fired_at: datetime
    run_id: str | None = None
    error: str | None = None


class ScheduleOut(BaseModel):
    id: str
    workflow: str
    cron: str
    timezone: str
    input: JsonValue = None
    catch_up: int
    origin: Literal["api", "workflow"] = Field(description="workflow: from its on.cron.")
    paused: bool
    next_fire_at: datetime | None = None
    created_at: datetime
    updated_at: datetime


class ScheduleDetailOut(ScheduleOut):
    ticks: list[TickOut] = Field(description="The last ticks that fired, newest first.")


class SchedulePageOut(BaseModel):
    items: list[ScheduleOut]

"""How domain objects become column values and back, the same way in every dialect."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
from collections import OrderedDict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from overture import serde
from overture.core import events as ev
from overture.core.events import ErrorInfo
from overture.core.model import Workflow
from overture.core.state import RunState
from overture.errors import Conflict, InvalidCursor
from overture.store.artifacts import Artifacts
from overture.store.records import WorkflowRecord

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


def micros(at: datetime) -> int:
    """Exact microseconds since the UNIX epoch (floats would round some datetimes)."""
    return (at - EPOCH) // MICROSECOND


def from_micros(value: int) -> datetime:
    return EPOCH + timedelta(microseconds=value)


def encode_cursor(created_at: datetime, run_id: str) -> str:
    """An opaque position in a newest-first listing of runs."""
    raw = orjson.dumps([micros(created_at), run_id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The (created_at, id) a cursor points after; ``InvalidCursor`` if it is not one of ours."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        at, run_id = orjson.loads(base64.urlsafe_b64decode(padded))
        return from_micros(int(at)), str(run_id)
    except (ValueError, TypeError, OverflowError, binascii.Error):
        raise InvalidCursor(f"{cursor!r} is not a cursor returned by a listing") from None


def encode_position(seq: int) -> str:
    """An opaque position in a newest-first listing ordered by a sequence number."""
    return base64.urlsafe_b64encode(orjson.dumps(["seq", seq])).decode().rstrip("=")


def decode_position(cursor: str) -> int:
    """The sequence number a cursor points after; ``InvalidCursor`` if it is not one of ours."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        tag, seq = orjson.loads(base64.urlsafe_b64decode(padded))
        if tag != "seq" or not 0 <= int(seq) < 2**63:
            raise ValueError(tag)
        return int(seq)
    except (ValueError, TypeError, binascii.Error):
        raise InvalidCursor(f"{cursor!r} is not a cursor returned by a listing") from None


def run_id_taken(run_id: str) -> Conflict:
    return Conflict(f"a run with id {run_id!r} already exists", code="run_exists")


def run_finished(run_id: str, status: str) -> Conflict:
    return Conflict(
        f"run {run_id!r} has finished ({status}): it takes no signals", code="run_finished"
    )


def api_key_taken(key_id: str) -> Conflict:
    return Conflict(
        f"an API key with id {key_id!r} (or with the same secret) already exists",
        code="api_key_exists",
    )


def workflow_digest(workflow: Workflow) -> str:
    """Identity of a definition, version aside: equal for the same steps however written."""
    data = workflow.to_data()
    data.pop("version", None)
    canonical = orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()


def version_to_register(
    workflow: Workflow, latest: WorkflowRecord | None, same_version: WorkflowRecord | None
) -> WorkflowRecord | Workflow:
    """The existing record registering ``workflow`` amounts to, or the workflow to insert.

    A definition that states its ``version`` is registered under it, and a different definition
    under a taken version is a ``Conflict``. A definition without one gets the latest version
    when it is unchanged and the next version when it changed, so editing a file and
    registering it again just works.
    """
    digest = workflow_digest(workflow)
    if "version" in workflow.model_fields_set:
        if same_version is None:
            return workflow
        if same_version.digest == digest:
            return same_version
        raise Conflict(
            f"workflow {workflow.name!r} version {workflow.version} is already registered with "
            "a different definition; raise `version:` to register the change",
            code="workflow_version_conflict",
        )
    if latest is None:
        return workflow
    if latest.digest == digest:
        return latest
    return workflow.model_copy(update={"version": latest.version + 1})


def workflow_from_text(text: str | bytes) -> Workflow:
    return Workflow.model_validate(serde.loads(text))


def error_text(error: ErrorInfo | None) -> str | None:
    return None if error is None else serde.dumps_text(dataclasses.asdict(error))


def error_from_text(text: str | bytes | None) -> ErrorInfo | None:
    if text is None:
        return None
    return ErrorInfo(**serde.loads(text))


class EventCodec:
    """Events to JSON text and back, with large inputs and outputs kept as artifacts."""

    def __init__(self, artifacts: Artifacts) -> None:
        self.artifacts = artifacts

    def encode(self, event: ev.Event) -> str:
        data = ev.to_data(event)
        text = serde.dumps_text(data)
        if len(text) <= self.artifacts.threshold:
            return text  # the common case: one serialisation
        for name in ("input", "output"):
            if name in data:
                data[name] = self.artifacts.offload(data[name])
        return serde.dumps_text(data)

    def decode(self, text: str | bytes) -> ev.Event:
        data: dict[str, Any] = serde.loads(text)
        for name in ("input", "output"):
            if name in data:
                data[name] = self.artifacts.restore(data[name])
        return ev.from_data(data)

    def encode_value(self, value: serde.JSON) -> str:
        """A payload column (run input/output, job input), offloaded when large."""
        return serde.dumps_text(self.artifacts.offload(value))

    def decode_value(self, text: str | bytes | None) -> serde.JSON:
        if text is None:
            return None
        return self.artifacts.restore(serde.loads(text))


class StateCache:
    """Folded run states by run id, each valid only at the ``seq`` it was folded to.

    A state is used only when the database's ``last_seq`` for the run equals the cached one (or
    the missing events are folded on top), so another process writing the same run can never be
    missed: the cache saves folding, never correctness.
    """

    def __init__(self, size: int = 16384) -> None:
        self.size = size
        self._states: OrderedDict[str, tuple[int, RunState]] = OrderedDict()

    def get(self, run_id: str) -> tuple[int, RunState] | None:
        entry = self._states.get(run_id)
        if entry is not None:
            self._states.move_to_end(run_id)
        return entry

    def put(self, run_id: str, seq: int, state: RunState) -> None:
        self._states[run_id] = (seq, state)
        self._states.move_to_end(run_id)
        if len(self._states) > self.size:
            self._states.popitem(last=False)

    def forget(self, run_ids: Iterable[str]) -> None:
        for run_id in run_ids:
            self._states.pop(run_id, None)

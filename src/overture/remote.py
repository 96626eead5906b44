"""``overture.RemoteClient``: the HTTP API from Python, one method per operation.

    async with RemoteClient("http://127.0.0.1:8000", api_key=KEY) as client:
        await client.register_workflow(Path("workflows/trip.yml"))
        run = await client.start_run("trip", {"traveller": "ana"}, idempotency_key="order-17")
        async for event in client.stream(run["id"]):
            print(event["seq"], event["type"])

Results are the API's JSON as dicts, in the shapes ``/openapi.json`` declares. An error response
raises ``ApiProblem`` (branch on its ``code``); a server that cannot be reached raises
``ServerUnreachable``; both are ``OvertureError`` subclasses.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import httpx

from overture import __version__, serde, sse
from overture.core.state import TERMINAL_RUN
from overture.errors import OvertureError
from overture.remote_flow import FlowOperations
from overture.remote_parts import path_part as _part
from overture.remote_parts import present as _present
from overture.remote_triggers import TriggerOperations
from overture.serde import JSON

PROBLEM_JSON = "application/problem+json"
YAML = "application/yaml"
STREAM_READ_TIMEOUT = 60.0
"""Seconds a live stream may stay silent: the server sends a keep-alive every 15."""
RECONNECT_DELAY = 1.0
"""Seconds before resuming a dropped stream, until the server says otherwise (SSE ``retry``)."""
RECONNECTS = 10
"""Failed reconnections in a row after which ``stream`` gives up."""


class ApiProblem(OvertureError):
    """The server refused a request: an ``application/problem+json`` response.

    ``code`` is stable (``not_found``, ``unauthorized``, ``workflow_invalid``...); ``errors``
    locates each problem (``message``, ``code``, ``path``, ``line``, ``column``, ``step``).
    """

    def __init__(
        self,
        *,
        status: int,
        code: str,
        detail: str,
        title: str = "",
        type: str = "",
        errors: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        self.status = status
        self.code = code
        self.detail = detail
        self.title = title
        self.type = type
        self.errors: list[dict[str, Any]] = [dict(e) for e in errors]
        super().__init__(detail)


class ServerUnreachable(OvertureError):
    """No answer from the server: nothing listens at the URL, or the connection failed."""

    code = "server_unreachable"


def normalise_url(url: str) -> str:
    """``url`` without a trailing slash (``ValueError`` unless it is http(s)://HOST[:PORT])."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"expected http://HOST:PORT or https://HOST, got {url!r}")
    return url.rstrip("/")


class RemoteClient(TriggerOperations, FlowOperations):
    """A client of one Overture server, acting as the tenant its API key belongs to."""

    def __init__(self, url: str, *, api_key: str | None = None, timeout: float = 30.0) -> None:
        self.url = normalise_url(url)
        self.timeout = timeout
        headers = {"User-Agent": f"overture/{__version__}", "Accept": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._http = httpx.AsyncClient(base_url=self.url, headers=headers, timeout=timeout)

    async def __aenter__(self) -> RemoteClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    # --- runs ------------------------------------------------------------------------------
    async def start_run(
        self,
        workflow: str,
        input: Mapping[str, JSON] | None = None,
        *,
        version: int | None = None,
        idempotency_key: str | None = None,
        priority: int | None = None,
        correlation_id: str | None = None,
        delay: float | None = None,
        run_at: datetime | None = None,
        traceparent: str | None = None,
    ) -> dict[str, Any]:
        """Start a run of a registered workflow (None: its latest enabled version); a repeated
        ``idempotency_key`` returns the run it started. ``traceparent`` (W3C Trace Context)
        makes the run's span a child of the caller's."""
        body = _present(
            workflow=workflow,
            input=dict(input or {}),
            version=version,
            idempotency_key=idempotency_key,
            priority=priority,
            correlation_id=correlation_id,
            delay=delay,
            run_at=run_at,
        )
        headers = {"traceparent": traceparent} if traceparent else None
        return await self._call("POST", "/v1/runs", body=body, headers=headers)

    async def get_run(self, run_id: str) -> dict[str, Any]:
        """A run with each step's state and, if it failed, ``failed_step``."""
        return await self._call("GET", f"/v1/runs/{_part(run_id)}")

    async def list_runs(
        self,
        *,
        status: str | None = None,
        workflow: str | None = None,
        since: datetime | None = None,
        cursor: str | None = None,
        limit: int | None = None,
    ) -> dict[str, Any]:
        """A page of runs, newest first: ``{items, next_cursor}``."""
        params = _present(status=status, workflow=workflow, since=since, cursor=cursor, limit=limit)
        return await self._call("GET", "/v1/runs", params=params)

    async def events(
        self, run_id: str, *, after: int = 0, limit: int | None = None
    ) -> dict[str, Any]:
        """A page of the run's history after seq ``after``: ``{items, next_after}``."""
        params = _present(after=after, limit=limit)
        return await self._call("GET", f"/v1/runs/{_part(run_id)}/events", params=params)

    async def logs(
        self, run_id: str, *, after: int = 0, limit: int | None = None
    ) -> dict[str, Any]:
        """A page of what the run's steps logged after line ``after``: ``{items, next_after}``."""
        params = _present(after=after, limit=limit)
        return await self._call("GET", f"/v1/runs/{_part(run_id)}/logs", params=params)

    async def attempts(self, run_id: str, *, logs: bool = True) -> dict[str, Any]:
        """``{items}``: every attempt of the run's steps, in the order they were queued, each
        with its worker, timing, status, error, HTTP status code and (``logs``) log lines."""
        params = None if logs else {"logs": "false"}
        return await self._call("GET", f"/v1/runs/{_part(run_id)}/attempts", params=params)

    async def stream(
        self, run_id: str, *, after: int = 0, logs: bool = False
    ) -> AsyncIterator[dict[str, Any]]:
        """Each event of the run after seq ``after``, live, until the run has finished.

        Follows the run's Server-Sent Events; a dropped connection is resumed with
        ``Last-Event-ID``, so no event is missed or repeated. With ``logs``, each line its
        handlers log comes too (as ``logs`` shows it: a line has no ``seq``), before the event
        that completed its attempt.
        """
        path = f"/v1/runs/{_part(run_id)}/stream"
        params = {"logs": "true"} if logs else None
        timeout = httpx.Timeout(self.timeout, read=max(self.timeout, STREAM_READ_TIMEOUT))
        pause, failures, connected = RECONNECT_DELAY, 0, False
        last_id = str(after) if after else ""
        while True:
            headers = {"Accept": "text/event-stream"}
            if last_id:
                headers["Last-Event-ID"] = last_id
            try:
                async with self._http.stream(
                    "GET", path, params=params, headers=headers, timeout=timeout
                ) as got:
                    if not got.is_success:
                        await got.aread()
                        raise problem_from(got)
                    connected, failures = True, 0
                    async for message in sse.messages(got.aiter_lines()):
                        if message.retry is not None:
                            pause = message.retry / 1000
                        if message.data:
                            item: dict[str, Any] = serde.loads(message.data)
                            last_id = _resume_from(message.id, item, last_id)
                            after = int(last_id.partition(":")[0])
                            yield item
            except httpx.TransportError as error:
                failures += 1
                if not connected or failures > RECONNECTS:
                    raise self._unreachable(error) from None
                await asyncio.sleep(pause)
                continue
            # The server ends the stream once the run has finished; a proxy may end it sooner.
            run = await self.get_run(run_id)
            if run["status"] in TERMINAL_RUN and run["events"] <= after:
                return

    async def cancel(self, run_id: str, *, reason: str | None = None) -> dict[str, Any]:
        """Cancel a run; its running steps stop at their next heartbeat."""
        body = None if reason is None else {"reason": reason}
        return await self._call("POST", f"/v1/runs/{_part(run_id)}/cancel", body=body)

    async def retry(self, run_id: str, *, steps: Sequence[str] | None = None) -> dict[str, Any]:
        """Run the failed steps (or ``steps``) of a failed or cancelled run again."""
        body = None if steps is None else {"steps": list(steps)}
        return await self._call("POST", f"/v1/runs/{_part(run_id)}/retry", body=body)

    async def replay(self, run_id: str) -> dict[str, Any]:
        """Start a new run with the same workflow version and input."""
        return await self._call("POST", f"/v1/runs/{_part(run_id)}/replay")

    async def signal(self, run_id: str, name: str, payload: JSON = None) -> dict[str, Any]:
        """Send a signal to a run (for its ``wait`` steps): ``{run_id, seq, name}``."""
        body = {"name": name, "payload": payload}
        return await self._call("POST", f"/v1/runs/{_part(run_id)}/signal", body=body)

    # --- tasks -----------------------------------------------------------------------------
    async def create_task(
        self,
        type: str,
        payload: Mapping[str, JSON] | None = None,
        *,
        priority: int | None = None,
        idempotency_key: str | None = None,
        max_retries: int | None = None,
    ) -> dict[str, Any]:
        """Start a one-step run of handler ``type`` with ``payload`` as its inputs."""
        body = _present(
            type=type,
            payload=dict(payload or {}),
            priority=priority,
            idempotency_key=idempotency_key,
            max_retries=max_retries,
        )
        return await self._call("POST", "/v1/tasks", body=body)

    async def get_task(self, task_id: str) -> dict[str, Any]:
        return await self._call("GET", f"/v1/tasks/{_part(task_id)}")

    # --- workflows -------------------------------------------------------------------------
    async def register_workflow(
        self, definition: str | os.PathLike[str] | Mapping[str, Any]
    ) -> dict[str, Any]:
        """Register a workflow: a file (a path), its text (a ``str``) or its data (a mapping).

        A file is sent as JSON if its name ends in ``.json``, else as YAML. An invalid
        definition raises ``ApiProblem`` (``workflow_invalid``) locating each problem by line.
        """
        if isinstance(definition, Mapping):
            content, kind = serde.dumps(dict(definition)), "application/json"
        elif isinstance(definition, str):
            content, kind = definition.encode(), YAML
        else:
            path = Path(definition)
            content = await asyncio.to_thread(path.read_bytes)
            kind = "application/json" if path.suffix.lower() == ".json" else YAML
        return await self._call(
            "POST", "/v1/workflows", content=content, headers={"Content-Type": kind}
        )

    async def list_workflows(self) -> dict[str, Any]:
        """``{items}``: each workflow's latest version."""
        return await self._call("GET", "/v1/workflows")

    async def get_workflow(self, name: str, version: int | None = None) -> dict[str, Any]:
        """A version of a workflow (None: the latest) with its definition."""
        path = f"/v1/workflows/{_part(name)}"
        if version is not None:
            path += f"/versions/{version}"
        return await self._call("GET", path)

    async def disable_workflow(self, name: str) -> None:
        """Start no new runs of the workflow; running ones finish."""
        await self._call("DELETE", f"/v1/workflows/{_part(name)}")

    async def enable_workflow(self, name: str) -> dict[str, Any]:
        return await self._call("POST", f"/v1/workflows/{_part(name)}/enable")

    # --- operations ------------------------------------------------------------------------
    async def dead_letters(self, *, include_requeued: bool = False) -> dict[str, Any]:
        """``{items}``: steps that failed for good, oldest first."""
        params = {"include_requeued": "true"} if include_requeued else None
        return await self._call("GET", "/v1/dlq", params=params)

    async def requeue(self, letter_id: int) -> dict[str, Any]:
        """Run a dead letter's step again: ``{runs}``, its reopened run."""
        return await self._call("POST", f"/v1/dlq/{int(letter_id)}/requeue")

    async def workers(self) -> dict[str, Any]:
        """``{items}``: every worker with its last heartbeat (needs the admin scope)."""
        return await self._call("GET", "/v1/workers")

    async def status(self) -> dict[str, Any]:
        """The tenant at a glance: ``{healthy, attention, queues, runs, dead_letters, circuits,
        workers}`` (the workers listed for admin keys only)."""
        return await self._call("GET", "/v1/status")

    async def health(self) -> dict[str, Any]:
        return await self._call("GET", "/health")

    async def ready(self) -> dict[str, Any]:
        """``{status: ready, ...}``, or ``ApiProblem`` (503) naming what is not ready."""
        return await self._call("GET", "/ready")

    # --- plumbing --------------------------------------------------------------------------
    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """The JSON object the server answered (``{}`` for no content)."""
        if body is not None:
            content = serde.dumps(body)
            headers = {"Content-Type": "application/json", **(headers or {})}
        query = {k: _query_value(v) for k, v in (params or {}).items()}
        try:
            response = await self._http.request(
                method, path, params=query, content=content, headers=headers
            )
        except httpx.TransportError as error:
            raise self._unreachable(error) from None
        if not response.is_success:
            raise problem_from(response)
        if response.status_code == 204 or not response.content:
            return {}
        try:
            data = serde.loads(response.content)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise ApiProblem(
                status=response.status_code,
                code="bad_response",
                detail=f"{method} {response.url} answered something other than a JSON object",
            )
        return data

    def _unreachable(self, error: httpx.TransportError) -> ServerUnreachable:
        if isinstance(error, httpx.ConnectError):
            return ServerUnreachable(
                f"no Overture server at {self.url}: start one with `overture serve`, or use --local"
            )
        if isinstance(error, httpx.TimeoutException):
            return ServerUnreachable(f"the server at {self.url} did not answer in time")
        return ServerUnreachable(f"talking to {self.url} failed: {error or type(error).__name__}")


def problem_from(response: httpx.Response) -> ApiProblem:
    """The ``ApiProblem`` an error response carries (one made up if it is not a problem)."""
    status = response.status_code
    body: Any = None
    kind = response.headers.get("content-type", "").split(";")[0].strip()
    if kind in (PROBLEM_JSON, "application/json"):
        try:
            body = serde.loads(response.content)
        except ValueError:
            body = None
    if isinstance(body, dict) and isinstance(body.get("code"), str):
        errors = body.get("errors")
        return ApiProblem(
            status=status,
            code=body["code"],
            detail=str(body.get("detail") or body.get("title") or f"HTTP {status}"),
            title=str(body.get("title", "")),
            type=str(body.get("type", "")),
            errors=[e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else (),
        )
    request = response.request
    return ApiProblem(
        status=status,
        code=f"http_{status}",
        detail=f"{request.method} {request.url} answered {status} {response.reason_phrase}",
    )


def _resume_from(sent: str, item: dict[str, Any], last_id: str) -> str:
    """The ``Last-Event-ID`` to resume after ``item``: the id the server sent with it (``SEQ``
    or ``SEQ:LINE``), else the event's seq."""
    seq, colon, line = sent.partition(":")
    if seq.isdigit() and (not colon or line.isdigit()):
        return sent
    found = item.get("seq")
    return str(found) if isinstance(found, int) else last_id


def _query_value(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value

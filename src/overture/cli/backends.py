"""Where the ``runs``, ``dlq``, ``workers`` and ``workflows`` commands find their data.

With ``--url`` (or ``OVERTURE_URL``, or ``url`` in the settings file) they ask that server, as
the tenant of ``--api-key``; otherwise they open the database at ``--database-url`` as
``--tenant``. Both answer in the API's JSON (``DatabaseBackend`` builds it with ``api.views``),
so each command renders one shape whichever it talks to.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar, cast

import click
from click.core import ParameterSource

from overture import serde
from overture.api import runs, views
from overture.api.services import running_handlers
from overture.api.stream import FIRST_PAUSE, LONGEST_PAUSE
from overture.cli.common import database_url_option, setting_option, tenant_option, with_store
from overture.core.loader import load_workflow
from overture.core.state import TERMINAL_RUN, RunStatus
from overture.handlers.registry import BUILTIN_HANDLER_NAMES
from overture.remote import ApiProblem, RemoteClient, normalise_url
from overture.settings import SETTINGS, explicit_setting, resolve_setting
from overture.store.base import Store

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])
B = TypeVar("B")

KEY_HINT = "pass --api-key KEY or set OVERTURE_API_KEY (keys come from `overture keys create`)"


class Backend(Protocol):
    """The operations the commands use; ``RemoteClient`` is the server's implementation."""

    async def list_runs(
        self,
        *,
        status: str | None = None,
        workflow: str | None = None,
        cursor: str | None = None,
        limit: int | None = None,
    ) -> dict[str, Any]: ...

    async def get_run(self, run_id: str) -> dict[str, Any]: ...

    async def events(
        self, run_id: str, *, after: int = 0, limit: int | None = None
    ) -> dict[str, Any]: ...

    async def logs(
        self, run_id: str, *, after: int = 0, limit: int | None = None
    ) -> dict[str, Any]: ...

    async def attempts(self, run_id: str, *, logs: bool = True) -> dict[str, Any]: ...

    def stream(self, run_id: str, *, after: int = 0) -> AsyncIterator[dict[str, Any]]: ...

    async def cancel(self, run_id: str, *, reason: str | None = None) -> dict[str, Any]: ...

    async def retry(self, run_id: str, *, steps: Sequence[str] | None = None) -> dict[str, Any]: ...

    async def replay(self, run_id: str) -> dict[str, Any]: ...

    async def signal(self, run_id: str, name: str, payload: Any = None) -> dict[str, Any]: ...

    async def dead_letters(self, *, include_requeued: bool = False) -> dict[str, Any]: ...

    async def requeue(self, letter_id: int) -> dict[str, Any]: ...

    async def workers(self) -> dict[str, Any]: ...

    async def list_workflows(self) -> dict[str, Any]: ...

    async def get_workflow(self, name: str, version: int | None = None) -> dict[str, Any]: ...

    async def register_workflow(self, definition: Path) -> dict[str, Any]: ...


def as_http_json(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` as it would come over HTTP (times as RFC 3339 text)."""
    plain: dict[str, Any] = serde.loads(serde.dumps(data))
    return plain


class DatabaseBackend:
    """The API's operations, straight on a database, as one tenant."""

    def __init__(self, store: Store, tenant: str) -> None:
        self.store = store
        self.tenant = tenant

    async def list_runs(
        self,
        *,
        status: str | None = None,
        workflow: str | None = None,
        cursor: str | None = None,
        limit: int | None = None,
    ) -> dict[str, Any]:
        found = cast(RunStatus | Literal["scheduled"] | None, status)
        page = await runs.run_page(
            self.store,
            self.tenant,
            status=found,
            workflow=workflow,
            cursor=cursor,
            limit=limit or 50,
        )
        return as_http_json(page)

    async def get_run(self, run_id: str) -> dict[str, Any]:
        return as_http_json(await runs.run_detail(self.store, run_id, self.tenant))

    async def events(
        self, run_id: str, *, after: int = 0, limit: int | None = None
    ) -> dict[str, Any]:
        found = await self.store.events(run_id, tenant=self.tenant, after=after, limit=limit)
        last = found[-1].seq if found else None
        return as_http_json(views.page_after([views.event(e) for e in found], last, limit))

    async def logs(
        self, run_id: str, *, after: int = 0, limit: int | None = None
    ) -> dict[str, Any]:
        found = await self.store.logs(run_id, tenant=self.tenant, after=after, limit=limit)
        last = found[-1].id if found else None
        return as_http_json(views.page_after([views.log(line) for line in found], last, limit))

    async def attempts(self, run_id: str, *, logs: bool = True) -> dict[str, Any]:
        return as_http_json(await runs.run_attempts(self.store, run_id, self.tenant, logs=logs))

    async def stream(self, run_id: str, *, after: int = 0) -> AsyncIterator[dict[str, Any]]:
        """The run's events after ``after`` as they are stored, until it has finished."""
        pause = FIRST_PAUSE
        while True:
            found = await self.store.events(run_id, tenant=self.tenant, after=after)
            for stored in found:
                yield as_http_json(views.event(stored))
                after, pause = stored.seq, FIRST_PAUSE
            if found:
                continue
            run = await self.store.get_run(run_id, tenant=self.tenant)
            if run.status in TERMINAL_RUN and run.events <= after:
                return
            await asyncio.sleep(pause)
            pause = min(pause * 2, LONGEST_PAUSE)

    async def cancel(self, run_id: str, *, reason: str | None = None) -> dict[str, Any]:
        record = await self.store.cancel_run(
            run_id, tenant=self.tenant, reason=reason or "cancelled"
        )
        return as_http_json(views.run(record))

    async def retry(self, run_id: str, *, steps: Sequence[str] | None = None) -> dict[str, Any]:
        record = await self.store.retry_run(run_id, tenant=self.tenant, steps=steps)
        return as_http_json(views.run(record))

    async def replay(self, run_id: str) -> dict[str, Any]:
        return as_http_json(views.run(await runs.replay(self.store, run_id, self.tenant)))

    async def signal(self, run_id: str, name: str, payload: Any = None) -> dict[str, Any]:
        """Refused as the server refuses it (``RequestInvalid``), else stored."""
        limit = resolve_setting("max_body_bytes")
        body = runs.signal_request(name, payload, max_bytes=limit)
        stored = await self.store.signal_run(run_id, body.name, body.payload, tenant=self.tenant)
        return views.signal_sent(run_id, stored.seq, body.name)

    async def dead_letters(self, *, include_requeued: bool = False) -> dict[str, Any]:
        found = await self.store.dead_letters(tenant=self.tenant, include_requeued=include_requeued)
        return as_http_json({"items": [views.dead_letter(d) for d in found]})

    async def requeue(self, letter_id: int) -> dict[str, Any]:
        reopened = await self.store.requeue([letter_id], tenant=self.tenant)
        return as_http_json({"runs": [views.run(r) for r in reopened]})

    async def workers(self) -> dict[str, Any]:
        return as_http_json(views.workers(await self.store.list_workers()))

    async def list_workflows(self) -> dict[str, Any]:
        """The latest version of each workflow."""
        latest = views.latest_versions(await self.store.list_workflows(tenant=self.tenant))
        return as_http_json({"items": [views.workflow_summary(w) for w in latest]})

    async def get_workflow(self, name: str, version: int | None = None) -> dict[str, Any]:
        versions = await self.store.workflow_versions(name, tenant=self.tenant)
        return as_http_json(views.workflow_version(versions, name, version))

    async def register_workflow(self, definition: Path) -> dict[str, Any]:
        """Validated against the handlers built in and those of running workers, as the API
        does (``WorkflowInvalid`` or ``DocumentInvalid`` if it is not valid)."""
        handlers = BUILTIN_HANDLER_NAMES | await running_handlers(self.store)
        record = await self.store.register_workflow(
            load_workflow(definition, handlers=handlers), tenant=self.tenant
        )
        versions = await self.store.workflow_versions(record.name, tenant=self.tenant)
        return as_http_json(views.workflow(record, [w.version for w in versions]))


# --- choosing one --------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class Target:
    """What a command talks to: the server at ``url``, or else the database."""

    url: str | None
    api_key: str | None
    database_url: str
    tenant: str


def server_url(url: str) -> str:
    """``url`` checked, as a usage error when it is not one."""
    try:
        return normalise_url(url)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--url") from None


def given_here(name: str) -> bool:
    """Whether the command line gave parameter ``name``."""
    source = click.get_current_context().get_parameter_source(name)
    return source is ParameterSource.COMMANDLINE


def _target(url: str | None, api_key: str | None, database_url: str, tenant: str) -> Target:
    """A server if a URL is given (a --database-url flag beats one from the environment or the
    settings file, as flags beat variables), else the database."""
    if url is None and not given_here("database_url"):
        url = explicit_setting("url")
    if url is None:
        if given_here("api_key"):
            raise click.UsageError("--api-key is for a server: give its --url too")
        return Target(url=None, api_key=None, database_url=database_url, tenant=tenant)
    if given_here("database_url"):
        raise click.UsageError("give --url (a server) or --database-url (a database), not both")
    if given_here("tenant"):
        raise click.UsageError(
            "--tenant is for the database; a server acts as the tenant of the API key "
            "(a URL came from --url, OVERTURE_URL or the settings file)"
        )
    if api_key is None:
        api_key = resolve_setting("api_key")
    return Target(url=server_url(url), api_key=api_key, database_url=database_url, tenant=tenant)


def backend_options(command: F) -> F:
    """Add ``--url``, ``--api-key``, ``--database-url`` and ``--tenant``; the command receives
    them as one ``target``."""

    @functools.wraps(command)
    def with_target(
        *args: Any, url: str | None, api_key: str | None, database_url: str, tenant: str, **kw: Any
    ) -> Any:
        return command(*args, target=_target(url, api_key, database_url, tenant), **kw)

    options = (
        tenant_option,
        database_url_option,
        setting_option("api_key", metavar="KEY"),
        _server_option,
    )
    for option in options:
        with_target = option(with_target)
    return with_target  # type: ignore[return-value]


def _server_option(command: F) -> F:
    """``--url``, whose help says that without it these commands use the database."""
    command = setting_option("url", metavar="URL")(command)
    # setting_option's help names the setting's default, which is not used here: only a given
    # URL means a server.
    url = command.__click_params__[-1]  # type: ignore[attr-defined]
    url.help = f"Ask this Overture server instead of the database. [env: {SETTINGS['url'].env}]"
    return command


@asynccontextmanager
async def server(url: str, api_key: str | None) -> AsyncIterator[RemoteClient]:
    """A client of the server at ``url``; a refused key says how to pass one."""
    async with RemoteClient(url, api_key=api_key) as client:
        try:
            yield client
        except ApiProblem as problem:
            if problem.status != 401:
                raise
            raise ApiProblem(
                status=problem.status,
                code=problem.code,
                detail=f"{problem.detail}; {KEY_HINT}",
                title=problem.title,
                type=problem.type,
                errors=problem.errors,
            ) from None


def with_backend(
    target: Target,
    work: Callable[[B], Awaitable[T]],
    *,
    local: Callable[[Store, str], B] = DatabaseBackend,  # type: ignore[assignment]
) -> T:
    """Run ``work`` on the server or the database ``target`` names (``local`` makes what
    stands for the server on a database, as a tenant)."""
    if target.url is None:
        return with_store(target.database_url, lambda store: work(local(store, target.tenant)))
    url = target.url

    async def remotely() -> T:
        async with server(url, target.api_key) as client:
            return await work(cast(B, client))

    return asyncio.run(remotely())


async def every_item(
    fetch: Callable[..., Awaitable[dict[str, Any]]], run_id: str, after: int
) -> list[dict[str, Any]]:
    """Every item of a run's paged listing (events or logs) after ``after``."""
    items: list[dict[str, Any]] = []
    while True:
        page = await fetch(run_id, after=after)
        items += page["items"]
        if page.get("next_after") is None:
            return items
        after = page["next_after"]

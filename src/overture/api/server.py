"""``overture serve``: the API, an in-process worker and the workflow directory in one process.

    server = Server(settings, registry)
    await server.run()            # until SIGTERM/SIGINT, then drains the worker

Startup order: open (and migrate) the database, decide between key auth and development mode,
register every workflow file, start the worker, then listen. Shutdown: stop listening, let
running steps finish within ``grace``, give the rest back, close the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import signal
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import uvicorn

from overture.api.app import create_app
from overture.api.services import Services
from overture.core.loader import WORKFLOW_SUFFIXES, load_workflow
from overture.core.model import Workflow
from overture.errors import DocumentInvalid, OvertureError, Problem, WorkflowInvalid
from overture.handlers.registry import BUILTIN_HANDLER_NAMES, HandlerRegistry
from overture.runtime.scheduler import Scheduler
from overture.runtime.secrets import secrets_from_env
from overture.runtime.worker import Worker, new_worker_id
from overture.settings import Settings, tenant_limits
from overture.store import Store, create_store, redact_url
from overture.telemetry.setup import Instruments, instruments
from overture.triggers.webhooks import check_shadowing, config_sources

logger = logging.getLogger("overture.serve")

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class ServeRefused(OvertureError):
    """The server will not start as configured; the message says what to change."""

    code = "serve_refused"


class WorkflowFilesInvalid(OvertureError):
    """Some workflow files in the directory are invalid: every problem, by file."""

    code = "workflow_invalid"

    def __init__(self, problems: Mapping[Path, Sequence[Problem]]) -> None:
        self.problems = problems
        lines = [str(p) for found in problems.values() for p in found]
        super().__init__(f"{len(problems)} invalid workflow file(s):\n  " + "\n  ".join(lines))


def workflow_files(directory: Path) -> list[Path]:
    """Every workflow file under ``directory``, subdirectories included, in a stable order."""
    return sorted(p for p in directory.rglob("*") if p.is_file() and p.suffix in WORKFLOW_SUFFIXES)


def load_directory(directory: Path, handlers: frozenset[str]) -> list[Workflow]:
    """Every workflow under ``directory``, or ``WorkflowFilesInvalid`` naming every problem."""
    loaded, problems = [], {}
    for path in workflow_files(directory):
        try:
            loaded.append(load_workflow(path, handlers=handlers))
        except WorkflowInvalid as invalid:
            problems[path] = invalid.problems
        except DocumentInvalid as invalid:
            problems[path] = (invalid.problem,)
    if problems:
        raise WorkflowFilesInvalid(problems)
    return loaded


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Uvicorn(uvicorn.Server):
    """uvicorn without its own signal handling: ``Server.run`` owns SIGTERM and SIGINT.

    uvicorn re-raises the signal it caught once it has stopped listening, which would end the
    process before the worker is drained and the database closed.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class Server:
    """One process serving the API (and, unless ``workers`` is 0, running steps)."""

    def __init__(self, settings: Settings, registry: HandlerRegistry) -> None:
        self.settings = settings
        self.registry = registry
        self.workflows = self._workflows()
        # Checked before the database opens: a bad [webhooks.x] table refuses to start.
        self.webhook_sources = config_sources(settings.webhooks, os.environ)
        self.store: Store | None = None
        self.instruments: Instruments | None = None
        self.worker: Worker | None = None
        self._working: asyncio.Task[None] | None = None
        self.scheduler: Scheduler | None = None
        self._scheduling: asyncio.Task[None] | None = None
        self.uvicorn: uvicorn.Server | None = None
        self._stop_requested = False

    def _workflows(self) -> list[Workflow]:
        directory = Path(self.settings.workflows)
        if not directory.is_dir():
            if "workflows" in self.settings.sources:
                raise ServeRefused(f"workflow directory {str(directory)!r} does not exist")
            return []
        return load_directory(directory, BUILTIN_HANDLER_NAMES | self.registry.names())

    async def start(self) -> Services:
        """Open the database, register the workflows, start the worker."""
        settings = self.settings
        # One id labels this process's series, with or without an in-process worker.
        worker_id = new_worker_id()
        self.instruments = observed = instruments(worker_id)
        store = create_store(settings.database_url)
        observed.observe(store)
        await store.open()
        self.store = store
        await check_shadowing(store, self.webhook_sources)
        auth_required = await store.has_api_keys()
        if not auth_required and not is_loopback(settings.host):
            raise ServeRefused(
                f"no API key exists, so the API would be open to anyone on {settings.host}: "
                "create one with `overture keys create --tenant T --scopes admin`, or listen "
                "on 127.0.0.1"
            )
        if not auth_required:
            logger.warning(
                "DEVELOPMENT MODE: no API key exists, so every request acts as tenant 'default' "
                "with every scope. Create a key (overture keys create) to require keys."
            )
        for workflow in self.workflows:
            record = await store.register_workflow(workflow)
            logger.info("workflow %s v%d registered", record.name, record.version)
        if settings.workers > 0:
            self.worker = Worker(
                store,
                self.registry,
                concurrency=settings.workers,
                lease=settings.lease,
                grace=settings.grace,
                worker_id=worker_id,
                secrets=secrets_from_env(os.environ),
                limits=tenant_limits(settings),
                metrics=observed.metrics,
                tracing=observed.tracing,
            )
            self._working = asyncio.create_task(self.worker.run())
        if settings.scheduler:
            self.scheduler = Scheduler(store)
            self._scheduling = asyncio.create_task(self.scheduler.run())
        return Services(
            store=store,
            settings=settings,
            auth_required=auth_required,
            local_handlers=self.registry.names() if settings.workers > 0 else frozenset(),
            webhook_sources=self.webhook_sources,
            metrics=observed.metrics,
        )

    async def stop(self) -> None:
        """Stop the scheduler, drain the worker within ``grace``, then close the database."""
        if self.scheduler is not None and self._scheduling is not None:
            self.scheduler.stop()
            await self._scheduling
        if self.worker is not None and self._working is not None:
            self.worker.stop()
            await self._working
        try:
            if self.store is not None:
                await self.store.close()
        finally:
            if self.instruments is not None:
                self.instruments.close()

    def _on_signal(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if self._stop_requested:
            logger.warning("second %s: giving running steps back now", name)
            if self.uvicorn is not None:
                self.uvicorn.force_exit = True
            if self.worker is not None:
                self.worker.stop(grace=0)
            return
        self._stop_requested = True
        logger.info("%s: stopping; running steps get %gs to finish", name, self.settings.grace)
        if self.scheduler is not None:
            self.scheduler.stop()  # no tick fires while the API and the worker drain
        if self.uvicorn is not None:
            self.uvicorn.should_exit = True

    async def run(self) -> None:
        """Serve until SIGTERM/SIGINT (a second one gives running steps back at once)."""
        loop = asyncio.get_running_loop()
        for signum in SIGNALS:
            loop.add_signal_handler(signum, self._on_signal, signum)
        try:
            services = await self.start()
            if not self._stop_requested:
                await self._serve(services)
        finally:
            try:
                await self.stop()
            finally:
                for signum in SIGNALS:
                    loop.remove_signal_handler(signum)

    async def _serve(self, services: Services) -> None:
        config = uvicorn.Config(
            create_app(services),
            host=self.settings.host,
            port=self.settings.port,
            lifespan="off",
            log_config=None,
            access_log=False,
            # No X-Forwarded-* rewriting: nothing here reads the client address, and trusting
            # it is a deployment decision (a proxy in front can set it).
            proxy_headers=False,
            server_header=False,
            timeout_graceful_shutdown=max(1, int(self.settings.grace)),
        )
        self.uvicorn = _Uvicorn(config)
        serving = asyncio.create_task(self.uvicorn.serve())
        while not self.uvicorn.started and not serving.done():  # noqa: ASYNC110
            await asyncio.sleep(0.01)  # uvicorn offers a flag, not an event, for this
        if self.uvicorn.started:
            logger.info(
                "Overture API on http://%s:%d (database %s, %d workflows, worker slots %d)",
                self.settings.host,
                self.port,
                redact_url(self.settings.database_url),
                len(self.workflows),
                self.settings.workers,
            )
        await serving
        if not self.uvicorn.started and not self._stop_requested:
            raise ServeRefused(f"could not listen on {self.settings.host}:{self.settings.port}")

    @property
    def port(self) -> int:
        """The port listened on (the one the system chose, for ``--port 0``)."""
        assert self.uvicorn is not None
        sockets = [s for server in self.uvicorn.servers for s in server.sockets]
        return int(sockets[0].getsockname()[1]) if sockets else self.settings.port

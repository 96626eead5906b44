"""``overture run FILE|NAME``: run a workflow and watch every step.

On a server by default (``cli.run_on_server``); ``--dry-run`` and ``--handlers`` run a file in
memory, ``--local`` runs it durably in the database with a worker in this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

import click
from rich.console import Console
from rich.text import Text

from overture import serde
from overture.cli.backends import DatabaseBackend, given_here, server_url
from overture.cli.common import database_url_option, reports_errors, setting_option
from overture.cli.console import console, parse_assignments, print_problems
from overture.cli.progress import ProgressPrinter, steps_of, summary, watch
from overture.cli.run_on_server import ServerRun, run_on_server
from overture.cli.workflows import load_handler_names, report_invalid
from overture.core.document import read_document
from overture.core.loader import WORKFLOW_SUFFIXES, load_workflow
from overture.core.model import Workflow
from overture.core.state import RunState
from overture.core.validate import handler_problems
from overture.errors import DocumentInvalid, InputInvalid, OvertureError, WorkflowInvalid
from overture.handlers.loading import process_handlers
from overture.handlers.registry import BUILTIN_HANDLER_NAMES, HandlerRegistry, load_registry
from overture.runtime.local import LocalRunner
from overture.runtime.secrets import secrets_from_env
from overture.runtime.worker import Worker
from overture.serde import JSON
from overture.settings import load_settings
from overture.store import create_store
from overture.store.records import DEFAULT_TENANT, StartRun
from overture.testing import PlaceholderSecrets, echo_registry


@click.command()
@click.argument("target", metavar="FILE|NAME")
@setting_option("url", resolve=True, metavar="URL")
@setting_option("api_key", resolve=True, metavar="KEY")
@click.option("--detach", is_flag=True, help="Print the run's id and leave it running.")
@click.option("--dry-run", is_flag=True, help="Every step echoes its inputs instead of running.")
@click.option(
    "--handlers",
    "handler_target",
    metavar="MODULE:ATTR",
    help="Run the steps with the handlers of this HandlerRegistry.",
)
@click.option(
    "--local",
    is_flag=True,
    help="Run for real and durably: in the database (embedded SQLite by default) with an "
    "in-process worker. Handlers: the built-in ones (shell runs commands only with "
    "OVERTURE_ENABLE_SHELL=1) and those of --handlers.",
)
@database_url_option
@click.option("--input", "-i", "inputs", multiple=True, metavar="KEY=VALUE", help="Run input.")
@click.option("--input-json", metavar="JSON", help="Run input as a JSON object (KEY=VALUE adds).")
@click.option(
    "--input-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Run input from a JSON or YAML file holding an object (--input-json and KEY=VALUE add).",
)
@click.option(
    "--idempotency-key",
    metavar="KEY",
    help="Starting again with the same key returns the run it started (stored runs only).",
)
@click.option(
    "--fail",
    "fail_steps",
    multiple=True,
    metavar="STEP",
    help="With --dry-run: make STEP fail, to see how the run winds down and compensates.",
)
@reports_errors
def run(
    target: str,
    url: str,
    api_key: str | None,
    detach: bool,
    dry_run: bool,
    handler_target: str | None,
    local: bool,
    database_url: str,
    inputs: tuple[str, ...],
    input_json: str | None,
    input_file: Path | None,
    idempotency_key: str | None,
    fail_steps: tuple[str, ...],
) -> None:
    """Run a workflow and watch every step; exit 0 if it succeeds, 1 if it does not.

    By default the run happens on the Overture server at --url: FILE is pushed (registered)
    first, NAME must be registered there already. The run is then followed live until it ends;
    --detach prints its id instead. Ctrl-C stops following, not the run.

    --dry-run and --handlers run FILE in memory (nothing is stored: use them to try a workflow);
    --local stores the run like production does, so `overture runs show` finds it afterwards.
    Secrets come from OVERTURE_SECRET_<NAME> variables where the step runs (a dry run never
    reads them).
    """
    in_memory = dry_run or (handler_target is not None and not local)
    _check_mode(dry_run=dry_run, local=local, in_memory=in_memory, handlers=handler_target)
    if fail_steps and not dry_run:
        raise click.UsageError("--fail only applies to --dry-run")
    if idempotency_key and in_memory:
        raise click.UsageError("--idempotency-key applies to stored runs (a server or --local)")
    data = _input(input_file, input_json, inputs)
    if not (local or in_memory):
        file = Path(target) if Path(target).is_file() else None
        if file is None and _looks_like_a_file(target):
            raise click.BadParameter(f"no such file: {target!r}", param_hint="FILE|NAME")
        request = ServerRun(
            url=server_url(url),
            api_key=api_key,
            file=file,
            workflow=target,
            input=data,
            idempotency_key=idempotency_key,
            detach=detach,
        )
        raise SystemExit(run_on_server(request))
    out = console()
    workflow = _load(out, Path(target), handler_target, checked=not dry_run)
    if fail_steps:
        missing = sorted(set(fail_steps) - {s.id for s in workflow.steps})
        if missing:
            raise click.BadParameter(f"no such step: {', '.join(missing)}", param_hint="--fail")
    if local:
        status = _run_here_durably(
            out, workflow, data, database_url, handler_target, idempotency_key
        )
    else:
        status = _run_in_memory(out, workflow, data, handler_target, fail_steps)
    raise SystemExit(0 if status == "succeeded" else 1)


def _load(out: Console, path: Path, handler_target: str | None, *, checked: bool) -> Workflow:
    """The workflow in ``path`` (its handlers ``checked`` unless dry-running), or exit 1."""
    known = set(BUILTIN_HANDLER_NAMES)
    if handler_target:
        known |= load_handler_names(handler_target)
    try:
        return load_workflow(path, handlers=known if checked else None)
    except WorkflowInvalid as invalid:
        report_invalid(out, path, invalid.problems)
    except DocumentInvalid as invalid:
        report_invalid(out, path, [invalid.problem])
    raise SystemExit(1)


def _run_here_durably(
    out: Console,
    workflow: Workflow,
    data: dict[str, JSON],
    database_url: str,
    handler_target: str | None,
    idempotency_key: str | None,
) -> str:
    """``--local``: the run's status, once this process's worker has finished it."""
    handlers = process_handlers(load_settings({"app": handler_target}), option="--handlers")
    registry = handlers.registry
    if problems := handler_problems(workflow, registry.names()):
        out.print(Text("✗ the in-process worker cannot run this workflow:", style="red"))
        print_problems(out, problems)
        out.print("  (it has the built-in handlers and those of --handlers MODULE:ATTR)")
        raise SystemExit(1)
    printer = ProgressPrinter(out)

    async def work() -> RunState:
        try:
            return await _register_start_and_work(
                database_url, workflow, data, registry, printer, idempotency_key
            )
        finally:
            await handlers.aclose()

    state = asyncio.run(work())
    summary(out, steps_of(workflow), state)
    return state.status


def _run_in_memory(
    out: Console,
    workflow: Workflow,
    data: dict[str, JSON],
    handler_target: str | None,
    fail_steps: tuple[str, ...],
) -> str:
    """``--dry-run`` or ``--handlers``: the run's status, nothing stored."""
    runner = _runner(workflow, handler_target, fail_steps)
    try:
        result = asyncio.run(runner.run(workflow, data, listener=ProgressPrinter(out)))
    except InputInvalid as invalid:
        out.print(Text(f"✗ {invalid}", style="red"))
        raise SystemExit(1) from None
    except WorkflowInvalid as invalid:
        print_problems(out, invalid.problems)
        raise SystemExit(1) from None
    summary(out, steps_of(workflow), result.state)
    return result.status


def _check_mode(*, dry_run: bool, local: bool, in_memory: bool, handlers: str | None) -> None:
    """Usage errors for options that do not go together."""
    if dry_run and (local or handlers):
        raise click.UsageError("--dry-run cannot be combined with --local or --handlers")
    if local or in_memory:
        for flag, name in (("--url", "url"), ("--api-key", "api_key"), ("--detach", "detach")):
            if given_here(name):
                raise click.UsageError(
                    f"{flag} is for runs on a server; --dry-run, --handlers and --local run here"
                )
    elif given_here("database_url"):
        raise click.UsageError(
            "--database-url is for --local; a run on a server uses the server's database"
        )


def _looks_like_a_file(target: str) -> bool:
    return Path(target).suffix.lower() in WORKFLOW_SUFFIXES or os.sep in target


def _input(
    input_file: Path | None, input_json: str | None, pairs: tuple[str, ...]
) -> dict[str, JSON]:
    """The run's input: the file's object, then --input-json's, then each KEY=VALUE."""
    data: dict[str, JSON] = {}
    if input_file is not None:
        try:
            loaded = read_document(input_file).data
        except DocumentInvalid as invalid:
            raise click.BadParameter(str(invalid), param_hint="--input-file") from None
        if not isinstance(loaded, dict):
            raise click.BadParameter("must hold a JSON or YAML object", param_hint="--input-file")
        data.update(loaded)
    if input_json is not None:
        try:
            loaded = serde.loads(input_json)
        except ValueError as error:
            raise click.BadParameter(f"not JSON: {error}", param_hint="--input-json") from None
        if not isinstance(loaded, dict):
            raise click.BadParameter("must be a JSON object", param_hint="--input-json")
        data.update(loaded)
    data.update(parse_assignments(pairs, "--input"))
    return data


def _runner(workflow: Workflow, target: str | None, fail: tuple[str, ...]) -> LocalRunner:
    if target is None:
        names = {s.uses for s in workflow.steps}
        names |= {s.compensate.uses for s in workflow.steps if s.compensate}
        return LocalRunner(echo_registry(names, fail=fail), secrets=PlaceholderSecrets())
    registry: HandlerRegistry = load_registry(target)
    return LocalRunner(registry, secrets=secrets_from_env(os.environ))


async def _register_start_and_work(
    url: str,
    workflow: Workflow,
    data: JSON,
    registry: HandlerRegistry,
    printer: ProgressPrinter,
    idempotency_key: str | None,
) -> RunState:
    """Register, start and work the run with an in-process worker, printing its history live."""
    store = create_store(url)
    await store.open()
    try:
        record = await store.register_workflow(workflow)
        run, _ = await store.start_run(
            StartRun(
                workflow=record.name,
                version=record.version,
                input=data,
                idempotency_key=idempotency_key,
            )
        )
        worker = Worker(store, registry, poll=0.05, secrets=secrets_from_env(os.environ))
        working = asyncio.create_task(worker.run())
        history = DatabaseBackend(store, DEFAULT_TENANT).stream(run.id)
        watching = asyncio.create_task(watch(history, printer))
        try:
            await asyncio.wait({working, watching}, return_when=asyncio.FIRST_COMPLETED)
            if not watching.done():
                working.result()  # the worker died: say why
                raise OvertureError("the in-process worker stopped before the run ended")
            return watching.result()
        finally:
            watching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watching
            worker.stop(grace=0)
            await working
    finally:
        await store.close()

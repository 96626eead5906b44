"""Every error Overture raises, in one tree.

    OvertureError
    ├── WorkflowInvalid        a workflow definition has problems (each with file, line, step)
    ├── DocumentInvalid        a YAML/JSON document is unsafe or malformed (file, line)
    ├── TemplateError          a ``${...}`` template or ``when`` condition is wrong
    │   ├── TemplateSyntaxError      it cannot be parsed (found when a workflow is validated)
    │   └── TemplateResolutionError  it names data that does not exist (found at run time)
    ├── SecretMissing          a ``${secrets.NAME}`` reference has no value in the worker
    ├── HandlerNotFound        no handler is registered under a name
    ├── InputInvalid           a run's input does not match the workflow's JSON Schema
    ├── NotFound, Conflict, NotRetryable, InvalidCursor   what the stores refuse (below)
    ├── DatabaseUrlInvalid, SchemaOutdated                 the database cannot be used
    ├── SettingsInvalid        a setting's value (settings.py) cannot be used
    ├── RequestInvalid         what the API would refuse with 422, refused on the database too
    ├── ServeRefused, WorkflowFilesInvalid   `overture serve` will not start (api/server.py)
    ├── ApiProblem, ServerUnreachable        what RemoteClient raises (remote.py)
    ├── CronInvalid            a cron expression or time zone cannot be used (triggers/cron.py)
    ├── SignatureInvalid       a webhook delivery failed verification (triggers/signatures.py)
    ├── OptionsInvalid         a webhook source's scheme options are wrong (same module)
    └── StepError              raised by a handler to say how its step failed
        ├── Retry              "try again", optionally after ``delay`` seconds
        └── NonRetryable       "do not try again": the step fails at once

    Cancelled (BaseException)  delivered into a handler whose step or run was cancelled; a
                               BaseException so that ``except Exception`` in user code cannot
                               swallow it.

Handlers control retries by raising ``Retry`` or ``NonRetryable``; any other exception is a
retryable failure whose code is the exception's class name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class OvertureError(Exception):
    """Base class of every error Overture raises on purpose."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Problem:
    """One thing wrong with a workflow, located as precisely as the source allows."""

    message: str
    """What is wrong and, where possible, how to fix it."""
    code: str
    """A stable machine-readable identifier, e.g. ``cycle`` or ``unknown_handler``."""
    file: str | None = None
    """The file the workflow was loaded from, when it came from a file."""
    line: int | None = None
    """1-based line of the offending value."""
    column: int | None = None
    """1-based column of the offending value."""
    step: str | None = None
    """The id of the step the problem is in, when it is in a step."""
    path: tuple[str | int, ...] = ()
    """Where in the document the offending value sits, e.g. ``("steps", 2, "with", "url")``."""

    def __str__(self) -> str:
        where = ":".join(str(p) for p in (self.file, self.line, self.column) if p is not None)
        step = f"step {self.step!r}: " if self.step else ""
        prefix = f"{where}: " if where else ""
        return f"{prefix}{step}{self.message}"


class WorkflowInvalid(OvertureError):
    """A workflow definition has one or more problems."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class DocumentInvalid(OvertureError):
    """A YAML or JSON document was refused before it became a workflow."""

    def __init__(
        self,
        message: str,
        *,
        code: str,
        file: str | None = None,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        self.problem = Problem(message=message, code=code, file=file, line=line, column=column)
        super().__init__(str(self.problem))


class TemplateError(OvertureError):
    """A template or condition is malformed or cannot be evaluated."""

    code = "template_error"


class TemplateSyntaxError(TemplateError):
    """A template or condition cannot be parsed; ``position`` is a 0-based offset into it."""

    code = "bad_template"

    def __init__(self, message: str, *, text: str, position: int | None = None) -> None:
        self.text = text
        self.position = position
        at = f" at column {position + 1}" if position is not None else ""
        super().__init__(f"{message}{at} in {text!r}")


class TemplateResolutionError(TemplateError):
    """A template names data that does not exist when the step is scheduled."""

    code = "unresolved_reference"


class SecretMissing(OvertureError):
    """A ``${secrets.NAME}`` reference has no value where the step executes."""

    code = "secret_missing"

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"secret {name!r} is not configured")


class HandlerNotFound(OvertureError):
    """No handler is registered under the requested name."""

    def __init__(self, name: str, known: Sequence[str] = ()) -> None:
        self.name = name
        hint = f" (registered: {', '.join(sorted(known))})" if known else ""
        super().__init__(f"no handler named {name!r}{hint}")


class InputInvalid(OvertureError):
    """A run's input does not match its workflow's ``input`` JSON Schema."""

    def __init__(self, workflow: str, errors: Sequence[str]) -> None:
        self.workflow = workflow
        self.errors = tuple(errors)
        super().__init__(f"input of workflow {workflow!r} is invalid: " + "; ".join(errors))


class RequestInvalid(OvertureError):
    """A request the API refuses with 422: ``invalid_request`` (made straight on the database,
    the CLI without a server, it is refused the same way) or a more precise ``code``."""

    def __init__(self, message: str, *, code: str = "invalid_request") -> None:
        self.code = code
        super().__init__(message)


class NotFound(OvertureError):
    """The object does not exist (or belongs to another tenant: the two look the same)."""

    code = "not_found"

    def __init__(self, kind: str, key: object) -> None:
        self.kind = kind
        self.key = key
        super().__init__(f"{kind} {key!r} not found")


class Conflict(OvertureError):
    """The request contradicts what is stored, e.g. a workflow version redefined."""

    def __init__(self, message: str, *, code: str = "conflict") -> None:
        self.code = code
        super().__init__(message)


class NotRetryable(OvertureError):
    """A run cannot be reopened; the message says why and what to do instead."""

    code = "not_retryable"


class InvalidCursor(OvertureError):
    """A pagination cursor that no listing returned."""

    code = "bad_cursor"


class DatabaseUrlInvalid(OvertureError):
    """A ``--database-url`` names no store Overture has."""

    code = "bad_database_url"


class SchemaOutdated(OvertureError):
    """The database lacks migrations this version needs: run ``overture db migrate``."""

    code = "schema_outdated"


class StepError(OvertureError):
    """Raised by a handler to fail its step with a chosen code.

    ``retryable`` says whether the step's retry policy may try again.
    """

    retryable: bool = True

    def __init__(
        self,
        message: str = "",
        *,
        code: str | None = None,
        retryable: bool | None = None,
        details: dict[str, object] | None = None,
    ) -> None:
        self.message = message or type(self).__name__
        self.code = code or _snake(type(self).__name__)
        if retryable is not None:
            self.retryable = retryable
        self.details = details or {}
        super().__init__(self.message)


class Retry(StepError):
    """Ask for another attempt, after ``delay`` seconds when given (e.g. from ``Retry-After``).

    The delay replaces the computed backoff; the attempt still counts against ``max_attempts``.
    """

    def __init__(
        self, message: str = "", *, delay: float | None = None, code: str = "retry"
    ) -> None:
        if delay is not None and delay < 0:
            raise ValueError(f"Retry delay must be >= 0, got {delay!r}")
        self.delay = delay
        super().__init__(message or "handler asked to retry", code=code, retryable=True)


class NonRetryable(StepError):
    """Fail the step at once, whatever its retry policy says."""

    retryable = False

    def __init__(self, message: str = "", *, code: str = "non_retryable", **kw: object) -> None:
        details = kw.get("details")
        super().__init__(
            message or "handler failed permanently",
            code=code,
            retryable=False,
            details=details if isinstance(details, dict) else None,
        )


class Cancelled(BaseException):  # a signal, not an error: no Error suffix
    """The step or its run was cancelled; raised inside the handler's task."""


def _snake(name: str) -> str:
    out: list[str] = []
    for i, ch in enumerate(name):
        if ch.isupper() and i and not name[i - 1].isupper():
            out.append("_")
        out.append(ch.lower())
    return "".join(out)

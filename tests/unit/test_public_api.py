"""The names users import from ``overture``: changing them is a breaking change."""

from __future__ import annotations

import overture


def test_public_names_are_pinned() -> None:
    assert overture.__all__ == [
        "Cancelled",
        "Client",
        "Compensation",
        "Concurrency",
        "Conflict",
        "Defaults",
        "DocumentInvalid",
        "HandlerNotFound",
        "HandlerRegistry",
        "InputInvalid",
        "LocalRunner",
        "NonRetryable",
        "NotFound",
        "NotRetryable",
        "OvertureError",
        "Problem",
        "RateLimit",
        "RemoteClient",
        "Retry",
        "RetryPolicy",
        "RunResult",
        "Step",
        "StepContext",
        "StepError",
        "Triggers",
        "Worker",
        "Workflow",
        "WorkflowInvalid",
        "__version__",
        "load_workflow",
        "parse_workflow",
    ]
    for name in overture.__all__:
        assert hasattr(overture, name)


def test_cancellation_cannot_be_swallowed_by_except_exception() -> None:
    assert not issubclass(overture.Cancelled, Exception)
    assert issubclass(overture.Cancelled, BaseException)


def test_error_tree() -> None:
    for error in (overture.WorkflowInvalid, overture.InputInvalid, overture.StepError):
        assert issubclass(error, overture.OvertureError)
    assert issubclass(overture.Retry, overture.StepError)
    assert issubclass(overture.NonRetryable, overture.StepError)
    assert overture.Retry(delay=3).retryable
    assert not overture.NonRetryable("no").retryable

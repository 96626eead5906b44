"""schemathesis over the served OpenAPI document, on both stores, in the normal suite.

Every operation gets generated requests (deterministic: ``derandomize``, no example database),
first with random identifiers, then aimed at real objects of the tenant so the per-object
operations are exercised past their 404. Each response must not be a 5xx, must be a status the
document declares, with the declared content type and a body matching the declared schema; a
request that succeeded with the key must be refused (401) without it. Invalid requests
(``NEGATIVE`` mode) must be refused with a 4xx, never a 5xx.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode
from schemathesis.checks import CheckFunction, not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)
from tests.api.helpers import BROKEN, HELLO, Api, Tenant

EXAMPLES = 8
"""Requests per operation and pass: enough to reach every branch of these small operations
(the whole module stays well under a minute per store)."""
CONFORMS: list[CheckFunction] = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    ignored_auth,
]
REJECTS: list[CheckFunction] = [not_a_server_error, negative_data_rejection]
SETTINGS = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
TIMEOUT = 10.0
"""Seconds per request: a stream of a run that never ends would otherwise hang the suite."""


def exercise(
    api: Api,
    tenant: Tenant,
    mode: GenerationMode,
    checks: list[CheckFunction],
    path_parameters: Callable[[str], dict[str, Any] | None] = lambda path: None,
) -> list[str]:
    """Run every operation's generated cases; the failures, one per failing operation."""
    schema = schemathesis.openapi.from_url(f"{api.url}/openapi.json")
    key = f"Bearer {tenant.keys['admin']}"

    def keyed(case: Case[Any], mode: GenerationMode) -> dict[str, str] | None:
        """The key, sent explicitly (so ``ignored_auth`` probes without it); in negative mode
        only in place of a well-formed generated one: a case that dropped or mangled the
        header is an invalid request, and must be refused as one."""
        if mode.is_positive:
            return {"Authorization": key}
        generated = case.headers.get("Authorization") if case.headers else None
        if isinstance(generated, str) and generated.startswith("Bearer "):
            case.headers["Authorization"] = key
        return None

    failures = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result  # the document itself is valid
        operation = result.ok()
        strategy = operation.as_strategy(
            generation_mode=mode, path_parameters=path_parameters(operation.path)
        )

        @SETTINGS
        @given(case=strategy)
        def run(case: Case[Any]) -> None:
            case.call_and_validate(
                base_url=api.url, headers=keyed(case, mode), checks=checks, timeout=TIMEOUT
            )

        try:
            run()
        except Unsatisfiable:
            if mode.is_positive:
                raise
            # Nothing of the operation can be made invalid (/health takes no input at all).
        except (Exception, BaseExceptionGroup) as error:  # schemathesis' FailureGroup too
            failures.append(f"{operation.label}:\n{error}")
    return failures


@pytest.fixture(scope="module")
def fuzzed(api: Api) -> Tenant:
    """A tenant with a finished run, a task and a dead letter for the generated requests."""
    tenant = api.tenant()
    tenant.register(HELLO)
    tenant.register(BROKEN)
    tenant.wait(tenant.start("hello", {"name": "Ada"})["id"])
    tenant.wait(tenant.start("broken")["id"])
    return tenant


def real_objects(tenant: Tenant) -> Callable[[str], dict[str, Any] | None]:
    run = tenant.http.get("/v1/runs", params={"workflow": "hello"}).json()["items"][0]
    letter = tenant.http.get("/v1/dlq").json()["items"][0]
    task = tenant.http.post("/v1/tasks", json={"type": "echo", "payload": {}}).json()
    tenant.wait(task["id"])
    known = {
        "run_id": run["id"],
        "task_id": task["id"],
        "name": "hello",
        "version": 1,
        "letter_id": letter["id"],
    }

    def parameters(path: str) -> dict[str, Any] | None:
        found = {name: value for name, value in known.items() if f"{{{name}}}" in path}
        return found or None

    return parameters


def test_responses_conform_to_the_schema(api: Api, fuzzed: Tenant) -> None:
    failures = exercise(api, fuzzed, GenerationMode.POSITIVE, CONFORMS)
    assert not failures, "\n\n".join(failures)


def test_responses_about_real_objects_conform_to_the_schema(api: Api, fuzzed: Tenant) -> None:
    failures = exercise(
        api, fuzzed, GenerationMode.POSITIVE, CONFORMS, path_parameters=real_objects(fuzzed)
    )
    assert not failures, "\n\n".join(failures)


def test_invalid_requests_are_refused_with_a_4xx(api: Api, fuzzed: Tenant) -> None:
    failures = exercise(api, fuzzed, GenerationMode.NEGATIVE, REJECTS)
    assert not failures, "\n\n".join(failures)

"""``overture webhooks`` as a user runs it: a real ``overture serve`` on a SQLite file that
requires keys, with a source in its config file, and the ``overture`` command talking to it.
A test delivery signed with the right secret starts the listening workflow's run; a wrong one is
refused with a message that says so; secrets never show in what the commands print."""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from tests.support.cli import run_overture
from tests.support.processes import no_traceback
from tests.support.server import RunningServer, start_server

CONFIG_SECRET = "config-secret-3f9a1c"
CONFIG = """\
[webhooks.ci]
scheme = "github"
secrets = ["env:CI_WEBHOOK_SECRET"]
"""
LISTENER = """\
name: {name}
on: {{events: [{type}]}}
steps:
  - id: see
    uses: echo
    with: {{action: "${{input.payload.action}}"}}
"""
STARTED = re.compile(r"started run (\S+) of (\S+) v1")


@dataclass(frozen=True)
class Served:
    server: RunningServer
    directory: Path
    key: str

    def overture(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        """``overture ARGS`` in the server's directory (its overture.toml), with its URL and key."""
        extra = {"OVERTURE_URL": self.server.url, "OVERTURE_API_KEY": self.key, **env}
        return run_overture(*args, cwd=self.directory, env=extra)

    def ok(self, *args: str, **env: str) -> str:
        done = self.overture(*args, **env)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def run(self, run_id: str) -> dict[str, object]:
        response = httpx.get(
            f"{self.server.url}/v1/runs/{run_id}", headers={"Authorization": f"Bearer {self.key}"}
        )
        assert response.status_code == 200, response.text
        found: dict[str, object] = response.json()
        return found


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    directory = tmp_path_factory.mktemp("webhooks-cli")
    url = f"sqlite:///{directory / 'o.db'}"
    workflows = directory / "workflows"
    workflows.mkdir()
    (workflows / "on_pr.yml").write_text(LISTENER.format(name="on-pr", type="github.pull_request"))
    (workflows / "on_invoice.yml").write_text(
        LISTENER.format(name="on-invoice", type="billing.invoice.paid")
    )
    (directory / "overture.toml").write_text(CONFIG)
    created = run_overture(
        "keys", "create", "--scopes", "admin", "--database-url", url, cwd=directory
    )
    assert created.returncode == 0, created.stderr
    server = start_server(
        url, workflows=workflows, cwd=directory, env={"CI_WEBHOOK_SECRET": CONFIG_SECRET}
    )
    try:
        yield Served(server=server, directory=directory, key=created.stdout.strip())
    finally:
        assert server.stop() == 0, server.log


def name() -> str:
    return f"gh-{uuid.uuid4().hex[:8]}"


def test_add_then_test_starts_the_run_of_the_listening_workflow(served: Served) -> None:
    source = name()
    added = served.ok("webhooks", "add", source, "--scheme", "github", "--secret", "s3cret-1")

    sent = served.ok(
        "webhooks",
        "test",
        source,
        "--event",
        "pull_request",
        "--payload",
        '{"action": "opened"}',
        "--secret",
        "s3cret-1",
    )

    assert f"/v1/webhooks/{source}" in added
    assert "202 accepted: event github.pull_request" in sent
    found = STARTED.search(sent)
    assert found is not None, sent
    assert found.group(2) == "on-pr"
    run = served.run(found.group(1))
    assert run["workflow"] == "on-pr"
    assert run["input"]["payload"] == {"action": "opened"}  # type: ignore[index]


def test_a_wrong_secret_is_refused_and_says_so(served: Served) -> None:
    source = name()
    served.ok("webhooks", "add", source, "--scheme", "github", "--secret", "right")

    done = served.overture(
        "webhooks", "test", source, "--event", "pull_request", "--secret", "wrong"
    )

    assert done.returncode == 1, done.stdout + done.stderr
    assert "the server refused the delivery (401)" in done.stderr
    assert "bad_signature" in done.stderr and "check --secret" in done.stderr
    assert "started run" not in done.stdout
    assert no_traceback(done)


def test_the_secret_comes_from_the_environment_and_the_scheme_from_the_server(
    served: Served,
) -> None:
    source = "billing-" + uuid.uuid4().hex[:8]
    secret = "whsec_c2VjcmV0IGtleSBmb3IgYmlsbGluZw=="
    served.ok(
        "webhooks",
        "add",
        source,
        "--scheme",
        "standard",
        "--secret",
        secret,
        "--option",
        "event_prefix=billing",
    )

    sent = served.ok(
        "webhooks", "test", source, "--event", "invoice.paid", OVERTURE_WEBHOOK_SECRET=secret
    )

    assert "event billing.invoice.paid" in sent
    found = STARTED.search(sent)
    assert found is not None and found.group(2) == "on-invoice", sent


def test_a_config_file_source_is_tested_with_the_secret_its_table_names(served: Served) -> None:
    sent = served.ok(
        "webhooks",
        "test",
        "ci",
        "--event",
        "pull_request",
        "--payload",
        '{"action": "closed"}',
        CI_WEBHOOK_SECRET=CONFIG_SECRET,
    )

    found = STARTED.search(sent)
    assert found is not None, sent
    assert served.run(found.group(1))["input"]["payload"] == {"action": "closed"}  # type: ignore[index]


def test_sending_a_delivery_again_starts_nothing(served: Served) -> None:
    source = name()
    served.ok("webhooks", "add", source, "--scheme", "github", "--secret", "again")
    args = ("webhooks", "test", source, "--event", "pull_request", "--secret", "again")

    first = served.ok(*args, "--delivery-id", "d-1")
    second = served.ok(*args, "--delivery-id", "d-1")

    assert "202 accepted" in first
    assert "200 already received" in second and "nothing started again" in second
    assert "started run" not in second


def test_ls_rotate_and_rm_never_print_a_secret(served: Served) -> None:
    source = name()
    served.ok("webhooks", "add", source, "--scheme", "github", "--secret", "first-secret")

    rotated = served.ok("webhooks", "rotate", source, "--secret", "second-secret")
    listed = served.ok("webhooks", "ls")
    as_json = json.loads(served.ok("webhooks", "ls", "--json"))
    removed = served.ok("webhooks", "rm", source)
    gone = served.overture(
        "webhooks", "test", source, "--event", "ping", "--secret", "second-secret"
    )

    assert "2 active" in rotated
    assert source in listed and "ci" in listed
    origins = {s["name"]: s["origin"] for s in as_json["items"]}
    assert (origins[source], origins["ci"]) == ("api", "config")
    assert f"webhook source {source} deleted" in removed
    assert gone.returncode == 1 and "not found" in gone.stderr
    for output in (rotated, listed, json.dumps(as_json), removed):
        for secret in ("first-secret", "second-secret", CONFIG_SECRET):
            assert secret not in output


@pytest.mark.parametrize("secret", ["é-secret", "a\nb"])
def test_a_secret_that_cannot_be_sent_is_a_bad_secret_not_a_crash(
    served: Served, secret: str
) -> None:
    source = "make-" + uuid.uuid4().hex[:8]
    served.ok("webhooks", "add", source, "--scheme", "make", "--secret", "make-key")

    done = served.overture("webhooks", "test", source, "--secret", secret)

    assert done.returncode == 2, done.stdout + done.stderr
    assert "--secret" in done.stderr and "visible ASCII" in done.stderr
    assert "server_unreachable" not in done.stderr
    assert no_traceback(done)


def test_the_payload_is_json_or_at_file_as_events_send_takes_it(served: Served) -> None:
    source = name()
    served.ok("webhooks", "add", source, "--scheme", "github", "--secret", "payload-secret")
    (served.directory / "pr.json").write_text('{"action": "reopened"}')
    args = ("webhooks", "test", source, "--event", "pull_request", "--secret", "payload-secret")

    sent = served.ok(*args, "--payload", "@pr.json")
    bare = served.overture(*args, "--payload", "pr.json")

    found = STARTED.search(sent)
    assert found is not None, sent
    assert served.run(found.group(1))["input"]["payload"] == {"action": "reopened"}  # type: ignore[index]
    assert bare.returncode == 2 and "write @pr.json" in bare.stderr, bare.stderr

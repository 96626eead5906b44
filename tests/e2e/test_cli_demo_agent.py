"""``overture demo-agent`` as a user runs it: a real process on a free port."""

from __future__ import annotations

import signal

import httpx
import pytest
from tests.support.agent import AgentProcess, agent

__all__ = ["agent"]  # the fixture, used by name


def test_the_demo_agent_answers_and_stops_cleanly_on_sigterm(agent: AgentProcess) -> None:
    snapshot = agent.get("/functions/v1/agent-proxy/snapshot")
    assert snapshot.status_code == 200 and snapshot.json()["learner"] == "demo-learner"
    assert httpx.post(
        f"{agent.url}/echo", json={"a": 1}, headers={"Idempotency-Key": "k-1"}
    ).json() == {
        "method": "POST",
        "query": {},
        "json": {"a": 1},
        "idempotency_key": "k-1",
    }
    assert agent.get("/calls").json()["calls"][-1] == {
        "method": "POST",
        "path": "/echo",
        "idempotency_key": "k-1",
    }

    agent.process.send_signal(signal.SIGTERM)
    assert agent.process.wait(timeout=15) == 0, agent.output()
    output = agent.output()
    assert "Traceback" not in output
    assert f"demo agent on {agent.url}" in output
    with pytest.raises(httpx.TransportError):
        agent.get("/")

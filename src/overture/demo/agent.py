"""The demo agent: plays the agents the examples call, deterministically, in memory.

    overture demo-agent --port 8765
    export OVERTURE_HTTP_BASE_URL=http://127.0.0.1:8765
    overture run examples/wisely/weekly_seed_v1.yml --local

The Wisely agents answer under ``/functions/v1/agent-proxy/``. ``/flaky``, ``/slow``,
``/status/{code}`` and ``/echo`` misbehave on request, to show retries and timeouts; ``GET /calls``
lists every call received with its idempotency key, so deduplication can be seen.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Query, Request, Response
from fastapi.responses import JSONResponse

AGENT_PROXY = "/functions/v1/agent-proxy"
ANY_METHOD = ["GET", "POST", "PUT", "PATCH", "DELETE"]
MAX_SLOW_SECONDS = 60.0
WEEK = "2026-W02"  # fixed, so that answers never depend on the day the demo runs


def idempotency_key(request: Request) -> str | None:
    """The key an Overture ``http`` step sends with every attempt."""
    return request.headers.get("idempotency-key") or request.headers.get("x-idempotency-key")


async def json_body(request: Request) -> Any:
    """The request's JSON body; None when it has none or it is not JSON."""
    content = await request.body()
    if not content:
        return None
    try:
        return await request.json()
    except ValueError:
        return content.decode(errors="replace")


def create_app() -> FastAPI:
    """A fresh demo agent: its call log and counters live in this app, not in module globals."""
    app = FastAPI(title="Overture demo agent", version="1", docs_url="/docs", redoc_url=None)
    calls: list[dict[str, Any]] = []
    flaky_attempts: Counter[str] = Counter()

    @app.middleware("http")
    async def record(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Any:
        if request.url.path != "/calls":
            key = idempotency_key(request)
            calls.append(
                {"method": request.method, "path": request.url.path, "idempotency_key": key}
            )
        return await call_next(request)

    @app.get("/")
    async def about() -> dict[str, Any]:
        return {
            "agent": "overture demo agent",
            "endpoints": sorted({getattr(route, "path", "") for route in app.routes} - {""}),
        }

    @app.get("/calls")
    async def list_calls() -> dict[str, Any]:
        """Every call received so far (except to /calls), oldest first."""
        return {"calls": calls}

    @app.delete("/calls")
    async def forget() -> dict[str, Any]:
        """Forget the calls and the /flaky counters."""
        calls.clear()
        flaky_attempts.clear()
        return {"calls": calls}

    @app.api_route("/echo", methods=ANY_METHOD)
    async def echo(request: Request) -> dict[str, Any]:
        """What was received: method, query, JSON body and idempotency key."""
        return {
            "method": request.method,
            "query": dict(request.query_params),
            "json": await json_body(request),
            "idempotency_key": idempotency_key(request),
        }

    @app.api_route("/flaky", methods=ANY_METHOD)
    async def flaky(request: Request, failures: int = Query(2, ge=0)) -> Response:
        """503 with ``Retry-After: 0`` for the first ``failures`` calls per idempotency key."""
        key = idempotency_key(request) or ""
        flaky_attempts[key] += 1
        attempt = flaky_attempts[key]
        if attempt <= failures:
            return JSONResponse(
                {"error": "temporarily unavailable", "attempt": attempt},
                status_code=503,
                headers={"Retry-After": "0"},
            )
        return JSONResponse({"ok": True, "attempt": attempt, "idempotency_key": key or None})

    @app.api_route("/slow", methods=ANY_METHOD)
    async def slow(seconds: float = Query(1.0, ge=0, le=MAX_SLOW_SECONDS)) -> dict[str, Any]:
        """Answer after ``seconds``: a step with a shorter timeout times out."""
        await asyncio.sleep(seconds)
        return {"slept": seconds}

    @app.api_route("/status/{code}", methods=ANY_METHOD)
    async def status(
        code: int,
        retry_after: str | None = None,
        location: str = "/echo",
    ) -> Response:
        """Answer with status ``code`` (a 3xx points at ``location``; ``retry_after`` is sent)."""
        if not 200 <= code <= 599:
            return JSONResponse({"error": "code must be 200-599"}, status_code=422)
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        if 300 <= code < 400:
            headers["Location"] = location
        if code in (204, 304):
            return Response(status_code=code, headers=headers)
        return JSONResponse({"status": code}, status_code=code, headers=headers)

    _add_wisely_agents(app)
    return app


def _add_wisely_agents(app: FastAPI) -> None:
    """The agents the Wisely seed workflows (examples/wisely/) call."""

    @app.get(f"{AGENT_PROXY}/snapshot")
    async def snapshot(request: Request) -> dict[str, Any]:
        return {
            "learner": "demo-learner",
            "streak_days": 12,
            "signals": {"lessons_7d": 5, "minutes_7d": 95, "mood": "motivated"},
            "idempotency_key": idempotency_key(request),
        }

    @app.post(f"{AGENT_PROXY}/instructor/daily")
    async def daily_plan(request: Request) -> dict[str, Any]:
        return {
            "focus": "fractions",
            "plan": [
                {"slot": "morning", "activity": "review flashcards", "minutes": 10},
                {"slot": "evening", "activity": "practice problems", "minutes": 20},
            ],
            "received": await json_body(request),
            "idempotency_key": idempotency_key(request),
        }

    @app.post(f"{AGENT_PROXY}/notify")
    async def notify(request: Request) -> dict[str, Any]:
        return {
            "delivered": True,
            "channel": "push",
            "message": "Your plan for today is ready",
            "idempotency_key": idempotency_key(request),
        }

    @app.post(f"{AGENT_PROXY}/clo/begin-week")
    async def begin_week(request: Request) -> dict[str, Any]:
        return {
            "week": WEEK,
            "objectives": ["add fractions with unlike denominators", "read a bar chart"],
            "idempotency_key": idempotency_key(request),
        }

    @app.post(f"{AGENT_PROXY}/ta/generate-week")
    async def generate_week(request: Request) -> dict[str, Any]:
        return {
            "week": WEEK,
            "assignments": [
                {"day": "mon", "title": "Fraction warm-up"},
                {"day": "wed", "title": "Chart reading"},
                {"day": "fri", "title": "Mixed review"},
            ],
            "idempotency_key": idempotency_key(request),
        }

    @app.post(f"{AGENT_PROXY}/socratic/seed")
    async def socratic_seed(request: Request) -> dict[str, Any]:
        return {
            "week": WEEK,
            "questions": ["Why do we need a common denominator?", "What does a bar's height say?"],
            "idempotency_key": idempotency_key(request),
        }

    @app.post(f"{AGENT_PROXY}/brand/update-briefing")
    async def update_briefing(request: Request) -> dict[str, Any]:
        return {
            "week": WEEK,
            "briefing": "Week of fractions and charts: keep the tone encouraging.",
            "updated": True,
            "idempotency_key": idempotency_key(request),
        }

"""Which due jobs a claim may start, under their flow controls: a pure decision.

A store picks due jobs in claim order (priority, then fairness between tenants, then FIFO),
locks them, loads the flow state their gates name (slot holders, token buckets, circuits) and
asks ``admit``. The answer says which jobs start, what they take (slots, tokens, a circuit's
probe), and what becomes of the others: a job refused for a full slot waits until a holder lets
go (``blocked_on``, with a re-check as a safety net); one without a token waits until a token
exists; one whose circuit is open is parked until the cooldown ends. None of them is failed,
and none spends an attempt. Both stores persist exactly this, so they behave the same.

Times are seconds since the epoch, on the database's clock.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from overture.core.gates import RESERVED_PREFIX, Breaker, Bucket, Gates, Slot

CircuitStatus = Literal["closed", "open", "half_open"]
TenantKey = tuple[str, str]
"""(tenant, key): flow state is per tenant."""

TENANT_KEY = f"{RESERVED_PREFIX}tenant"
"""The key of the per-tenant default limits (``tenant_rate_limit``, ``tenant_max_in_flight``);
no workflow's key can be it (see ``gates``)."""
CIRCUIT_MARK = "\x1fcircuit:"
"""``blocked_on`` of a job parked by a circuit (then its key): a reset wakes exactly those."""
MAX_DEFER = 366 * 86400.0
"""The furthest a claim defers a job, whatever a rate says: a job is looked at again by then."""
RECHECK = 2.0
"""Seconds before a job refused for a full slot looks again, should its wake-up be missed (a
store whose wake-ups cannot be missed passes a longer one)."""
PROBE_WAIT = 1.0
"""Seconds a job waits while its half-open circuit's probe runs."""


@dataclass(frozen=True, slots=True)
class Candidate:
    """A due job the claim holds, in claim order."""

    id: int
    tenant: str
    run_id: str
    gates: Gates


@dataclass(frozen=True, slots=True)
class TenantLimits:
    """Limits every job of every tenant gets, on top of its own (None: none)."""

    rate: float | None = None
    burst: float | None = None
    max_in_flight: int | None = None

    def gates(self) -> Gates:
        slots = () if self.max_in_flight is None else (Slot(TENANT_KEY, self.max_in_flight),)
        buckets: tuple[Bucket, ...] = ()
        if self.rate is not None:
            burst = self.burst if self.burst is not None else max(1.0, self.rate)
            buckets = (Bucket(TENANT_KEY, self.rate, burst),)
        return Gates(slots, buckets)


NO_LIMITS = TenantLimits()


@dataclass(frozen=True, slots=True)
class BucketState:
    tokens: float
    updated: float
    promised: float = 0.0
    """When the last job deferred for a token was told to come back: the next one deferred
    comes a token later, so deferred jobs queue up across claims instead of all coming due
    at the same instant."""

    def refilled(self, bucket: Bucket, now: float) -> float:
        """Tokens at ``now``: what was there plus the refill since, at most a burst."""
        return min(bucket.burst, self.tokens + max(0.0, now - self.updated) * bucket.rate)


@dataclass(frozen=True, slots=True)
class CircuitState:
    status: CircuitStatus = "closed"
    failures: tuple[float, ...] = ()
    """When the failures counted in the current window happened."""
    opened_at: float | None = None
    open_until: float | None = None
    probe: int | None = None
    """The job probing a half-open circuit."""
    probe_running: bool = False
    """Whether that job still holds its lease (a crashed probe must not block forever)."""


@dataclass(slots=True)
class FlowState:
    """What the candidates' gates name, as stored before this claim."""

    holders: dict[TenantKey, int] = field(default_factory=dict)
    """Slots held per key."""
    run_holders: set[tuple[str, str, str]] = field(default_factory=set)
    """(tenant, key, run id) of the slots runs hold."""
    buckets: dict[TenantKey, BucketState] = field(default_factory=dict)
    circuits: dict[TenantKey, CircuitState] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Acquired:
    tenant: str
    key: str
    job_id: int | None
    """The holding job, or None when the run holds the slot."""
    run_id: str


@dataclass(frozen=True, slots=True)
class Deferred:
    run_at: float
    blocked_on: str | None = None
    """The slot key it waits for (a holder letting go wakes it), or ``CIRCUIT_MARK`` and the
    circuit's key (a reset wakes it)."""
    reason: Literal["slot", "rate", "circuit"] = "slot"


@dataclass(slots=True)
class Admission:
    admitted: list[int] = field(default_factory=list)
    acquired: list[Acquired] = field(default_factory=list)
    buckets: dict[TenantKey, BucketState] = field(default_factory=dict)
    circuits: dict[TenantKey, CircuitState] = field(default_factory=dict)
    """Circuits whose state this claim changed (half-opened, probe taken)."""
    deferred: dict[int, Deferred] = field(default_factory=dict)


def gates_of(candidate: Candidate, limits: TenantLimits) -> Gates:
    """The job's own gates plus the tenant defaults."""
    extra = limits.gates()
    if not extra:
        return candidate.gates
    own = candidate.gates
    return Gates(own.slots + extra.slots, own.buckets + extra.buckets, own.breaker)


def keys(candidates: Iterable[Candidate], limits: TenantLimits = NO_LIMITS) -> FlowKeys:
    """The flow state a claim must load (and, on PostgreSQL, lock) for these candidates."""
    found = FlowKeys()
    for c in candidates:
        g = gates_of(c, limits)
        found.slots.update((c.tenant, s.key) for s in g.slots)
        found.buckets.update({(c.tenant, b.key): b for b in g.buckets})
        if g.breaker is not None:
            found.circuits[(c.tenant, g.breaker.key)] = g.breaker
    return found


@dataclass(slots=True)
class FlowKeys:
    slots: set[TenantKey] = field(default_factory=set)
    buckets: dict[TenantKey, Bucket] = field(default_factory=dict)
    circuits: dict[TenantKey, Breaker] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.slots or self.buckets or self.circuits)


def admit(
    candidates: Sequence[Candidate],
    state: FlowState,
    now: float,
    limit: int,
    limits: TenantLimits = NO_LIMITS,
    *,
    recheck: float = RECHECK,
) -> Admission:
    """Take candidates in order until ``limit`` started; defer the ones their gates refuse."""
    claim = _Claim(state, now)
    out = claim.out
    for c in candidates:
        if len(out.admitted) >= limit:
            break
        gates = gates_of(c, limits)
        circuit: CircuitState | None = None
        if gates.breaker is not None:
            ck = (c.tenant, gates.breaker.key)
            verdict = _through_circuit(claim.circuits.get(ck, CircuitState()), now)
            if isinstance(verdict, Deferred):
                parked = CIRCUIT_MARK + gates.breaker.key
                out.deferred[c.id] = dataclasses.replace(verdict, blocked_on=parked)
                continue
            circuit = verdict
        if blocked := _full_slot(c, gates.slots, claim.holders, claim.run_holders):
            out.deferred[c.id] = Deferred(now + recheck, blocked_on=blocked, reason="slot")
            continue
        short = _short_bucket(c.tenant, gates.buckets, claim.buckets, now)
        if short is not None:
            out.deferred[c.id] = claim.wait_for_token(*short)
            continue
        claim.take(c, gates, circuit)
    return out


class _Claim:
    """What one claim has taken so far, over the stored state it started from."""

    def __init__(self, state: FlowState, now: float) -> None:
        self.now = now
        self.out = Admission()
        self.holders = dict(state.holders)
        self.run_holders = set(state.run_holders)
        self.buckets = dict(state.buckets)
        self.circuits = dict(state.circuits)

    def wait_for_token(self, bk: TenantKey, bucket: Bucket, tokens: float) -> Deferred:
        """Defer a job to the moment a token is its: after every job deferred before it."""
        now = self.now
        before = self.buckets.get(bk, BucketState(bucket.burst, now))
        at = max(now + (1.0 - tokens) / bucket.rate, before.promised + 1.0 / bucket.rate)
        at = min(at, now + MAX_DEFER)
        self.buckets[bk] = self.out.buckets[bk] = dataclasses.replace(before, promised=at)
        return Deferred(at, reason="rate")

    def take(self, c: Candidate, gates: Gates, circuit: CircuitState | None) -> None:
        """Start ``c``: its slots, a token from each bucket, and its circuit's probe."""
        out, now = self.out, self.now
        out.admitted.append(c.id)
        for s in gates.slots:
            sk = (c.tenant, s.key)
            if s.scope == "run":
                if (c.tenant, s.key, c.run_id) in self.run_holders:
                    continue
                self.run_holders.add((c.tenant, s.key, c.run_id))
                out.acquired.append(Acquired(c.tenant, s.key, None, c.run_id))
            else:
                out.acquired.append(Acquired(c.tenant, s.key, c.id, c.run_id))
            self.holders[sk] = self.holders.get(sk, 0) + 1
        for b in gates.buckets:
            bk = (c.tenant, b.key)
            before = self.buckets.get(bk, BucketState(b.burst, now))
            # Another claim may have written the bucket at a later instant than this claim's
            # clock says: never move its time back, or the same interval refills twice.
            updated = max(now, before.updated)
            tokens = before.refilled(b, updated) - 1.0
            self.buckets[bk] = out.buckets[bk] = BucketState(tokens, updated, before.promised)
        if circuit is not None and gates.breaker is not None:
            ck = (c.tenant, gates.breaker.key)
            if circuit.status == "half_open":
                circuit = dataclasses.replace(circuit, probe=c.id, probe_running=True)
            if circuit != self.circuits.get(ck, CircuitState()):
                self.circuits[ck] = out.circuits[ck] = circuit


def _through_circuit(circuit: CircuitState, now: float) -> CircuitState | Deferred:
    """The circuit as this job passes it, or how long the job is parked."""
    if circuit.status == "open":
        until = circuit.open_until if circuit.open_until is not None else now
        if now < until:
            return Deferred(until, reason="circuit")
        circuit = dataclasses.replace(circuit, status="half_open", probe=None, probe_running=False)
    if circuit.status == "half_open" and circuit.probe is not None and circuit.probe_running:
        return Deferred(now + PROBE_WAIT, reason="circuit")
    return circuit


def _full_slot(
    c: Candidate,
    slots: Sequence[Slot],
    holders: Mapping[TenantKey, int],
    run_holders: set[tuple[str, str, str]],
) -> str | None:
    for s in slots:
        held_by_run = (c.tenant, s.key, c.run_id) in run_holders
        if s.scope == "run" and held_by_run:
            continue  # the run holds it already: its later steps go through
        held = holders.get((c.tenant, s.key), 0)
        if held_by_run:
            held -= 1  # a run's own slot never keeps its steps out of the same key
        if held >= s.limit:
            return s.key
    return None


def _short_bucket(
    tenant: str, wanted: Sequence[Bucket], buckets: Mapping[TenantKey, BucketState], now: float
) -> tuple[TenantKey, Bucket, float] | None:
    """The first bucket without a whole token, with its tokens now."""
    for b in wanted:
        bk = (tenant, b.key)
        tokens = buckets.get(bk, BucketState(b.burst, now)).refilled(b, now)
        if tokens < 1.0:
            return bk, b, tokens
    return None


def circuit_after(
    circuit: CircuitState, breaker: Breaker, job_id: int, failed: bool | None, now: float
) -> CircuitState:
    """The circuit after one of its jobs finished: ``failed`` None means it does not count
    (a non-retryable error is the caller's fault, not the downstream's)."""
    if failed is None:
        return circuit
    if circuit.status == "half_open" and circuit.probe == job_id:
        if failed:
            return _opened(circuit, breaker, now)
        return CircuitState()
    if not failed:
        return circuit
    recent = (*(t for t in circuit.failures if t > now - breaker.window), now)
    if circuit.status == "closed" and len(recent) >= breaker.threshold:
        return _opened(circuit, breaker, now)
    return dataclasses.replace(circuit, failures=recent[-breaker.threshold :])


def _opened(circuit: CircuitState, breaker: Breaker, now: float) -> CircuitState:
    return CircuitState(
        status="open",
        failures=(),
        opened_at=now,
        open_until=now + breaker.cooldown,
    )

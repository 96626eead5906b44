"""Backoff: capped, non-decreasing before jitter, jitter within its bounds, deterministic."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from overture.core.model import RetryPolicy
from overture.core.retry import backoff, base_delay, unit_interval

policies = st.builds(
    lambda initial, factor, extra, jitter: RetryPolicy(
        initial=initial, factor=factor, max=initial + extra, jitter=jitter
    ),
    initial=st.floats(0, 100),
    factor=st.floats(1, 10),
    extra=st.floats(0, 3600),
    jitter=st.floats(0, 1),
)


@given(policy=policies, attempt=st.integers(1, 1000))
def test_base_delay_is_capped_and_never_below_initial(policy: RetryPolicy, attempt: int) -> None:
    delay = base_delay(policy, attempt)
    assert policy.initial <= delay <= policy.max or delay == policy.max


@given(policy=policies, attempt=st.integers(1, 999))
def test_base_delay_never_decreases(policy: RetryPolicy, attempt: int) -> None:
    assert base_delay(policy, attempt) <= base_delay(policy, attempt + 1)


@given(policy=policies, attempt=st.integers(1, 1000), run=st.text(max_size=20))
def test_jitter_stays_within_its_bounds(policy: RetryPolicy, attempt: int, run: str) -> None:
    base = base_delay(policy, attempt)
    delay = backoff(policy, attempt, seed=(run, "step"))
    assert base * (1 - policy.jitter) - 1e-9 <= delay <= base + 1e-9


@given(policy=policies, attempt=st.integers(1, 50))
def test_backoff_is_the_same_on_replay(policy: RetryPolicy, attempt: int) -> None:
    assert backoff(policy, attempt, seed=("r", "s")) == backoff(policy, attempt, seed=("r", "s"))


def test_exponential_sequence_without_jitter() -> None:
    policy = RetryPolicy(initial=1, factor=2, max=10, jitter=False)
    assert [backoff(policy, n) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]


def test_full_jitter_spreads_delays_over_the_whole_range() -> None:
    policy = RetryPolicy(initial=8, factor=1, max=8, jitter=True)
    delays = [backoff(policy, 1, seed=(f"run-{i}", "s")) for i in range(2000)]
    assert min(delays) < 0.5 and max(delays) > 7.5
    assert 3.5 < sum(delays) / len(delays) < 4.5  # uniform on [0, 8]


def test_unit_interval_is_in_range() -> None:
    values = [unit_interval("x", i) for i in range(1000)]
    assert all(0 <= v < 1 for v in values)

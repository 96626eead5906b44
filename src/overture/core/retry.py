"""Backoff between attempts: exponential, capped, with deterministic full jitter.

Jitter comes from a hash of (run, step, attempt) rather than a random generator, so ``decide``
stays a pure function: replaying a history gives the same delays, and property tests need no seed.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from overture.core.model import RetryPolicy


def base_delay(policy: RetryPolicy, attempt: int) -> float:
    """Unjittered delay after attempt n (1-based): initial·factor^(n-1), capped."""
    delay = policy.initial
    # Grow step by step and stop at the cap: factor**n overflows a float long before n = 1000.
    for _ in range(max(attempt - 1, 0)):
        delay *= policy.factor
        if delay >= policy.max:
            return policy.max
    return min(delay, policy.max)


def unit_interval(*parts: object) -> float:
    """A number in [0, 1) determined by ``parts``: the same parts always give the same number."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def backoff(policy: RetryPolicy, attempt: int, *, seed: tuple[object, ...] = ()) -> float:
    """Delay before the attempt after ``attempt``: within ``[base·(1-jitter), base]``."""
    base = base_delay(policy, attempt)
    return base * (1.0 - policy.jitter * unit_interval(*seed, attempt))

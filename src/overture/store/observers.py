"""Telling a store's observers what a committed transaction did (``StoreObserver``)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from overture.core.advance import Transition
from overture.store.base import StoreObserver

logger = logging.getLogger("overture.store")


def notify(
    observers: Sequence[StoreObserver],
    transitions: Sequence[Transition],
    deferred: Sequence[tuple[str, str]],
) -> None:
    """After a commit: a failing observer is logged and never fails the write it observed."""
    for observer in observers:
        try:
            if transitions:
                observer.recorded(transitions)
            if deferred:
                observer.deferred(deferred)
        except Exception:
            logger.exception("store observer %r failed", observer)

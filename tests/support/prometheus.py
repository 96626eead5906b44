"""Reading Prometheus's text format in tests: a scrape as ``{(name, labels): value}``."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.parser import text_string_to_metric_families

Sample = tuple[str, frozenset[tuple[str, str]]]
"""A series: its sample name (``_total``, ``_bucket``... included) and its labels."""


def samples(text: str, families: Iterable[str] | None = None) -> dict[Sample, float]:
    """Every sample of an exposition (only those of ``families``, by family name, if given)."""
    only = None if families is None else set(families)
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        if only is None or family.name in only
        for s in family.samples
    }


def sample(name: str, **labels: str) -> Sample:
    return name, frozenset(labels.items())


def total(seen: dict[Sample, float], name: str, **labels: str) -> float:
    """The sum over every series of ``name`` that has ``labels`` (e.g. across workers)."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in seen.items() if n == name and wanted <= ls)

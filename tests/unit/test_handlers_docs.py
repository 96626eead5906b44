"""docs/handlers.md opens by naming every built-in handler, and says how many there are."""

from __future__ import annotations

from pathlib import Path

from overture.handlers.builtin import builtin_registry

DOC = Path(__file__).resolve().parents[2] / "docs" / "handlers.md"
COUNTS = {5: "five", 6: "six", 7: "seven", 8: "eight", 9: "nine", 10: "ten"}


def test_the_intro_names_every_built_in_handler_and_counts_them() -> None:
    intro = DOC.read_text().split("\n## ")[0]
    names = builtin_registry().names()
    assert all(f"`{name}`" in intro for name in names), sorted(names)
    assert f"all {COUNTS[len(names)]}" in intro

"""docs/configuration.md lists every setting with its flag and variable."""

from __future__ import annotations

from pathlib import Path

from overture.settings import SETTINGS

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_every_setting_is_in_the_configuration_table() -> None:
    rows = [line for line in DOC.read_text().splitlines() if line.startswith("| `")]
    documented = {row.split("|")[1].strip().strip("`"): row for row in rows}
    assert set(documented) == set(SETTINGS)
    for name, setting in SETTINGS.items():
        assert f"`{setting.flag}`" in documented[name]
        assert f"`{setting.env}`" in documented[name]

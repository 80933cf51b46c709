"""The demo's length is said one way everywhere a newcomer reads it (it was "well under a minute", "under a minute"
and "about a minute"): the measured figure of app/pages/presets.py."""
from __future__ import annotations

import re
from pathlib import Path

from fitboard.app.pages.presets import DEMO_LENGTH, presets

ROOT = Path(__file__).resolve().parent.parent
SAID = ("README.md", "docs/recipes.md", "recipes/demo.yaml")


def test_the_demo_length_is_one_figure_everywhere():
    demo = next(p["about"] for p in presets("digits", 32) if p["key"] == "demo")
    assert demo == f"recipes/demo.yaml: every technique at once, in {DEMO_LENGTH}."
    for name in SAID:
        text = " ".join((ROOT / name).read_text().split())  # line breaks as spaces
        assert DEMO_LENGTH in text, name
    minutes = re.compile(r"(well |about |under |in )+a minute", re.I)
    for path in [*(ROOT / n for n in SAID), *(ROOT / "docs").glob("*.md"), *(ROOT / "templates").glob("*.html"),
                 ROOT / "app" / "pages" / "presets.py"]:
        for line in path.read_text().splitlines():
            assert not ("demo" in line.lower() and minutes.search(line)), (path.name, line)

"""The switching constants the reference pages quote hold the values the code has: a page
that writes "`hold_ms` (800 ms)" is wrong the day the default profile's hold changes.
docs/switching-quality.md is the history of those values, so it is left out."""
from __future__ import annotations

import pathlib
import re

import pytest

from dsp.tuning import DEFAULT_PROFILE, FIELDS, profile

ROOT = pathlib.Path(__file__).resolve().parents[1]
HISTORY = {"switching-quality.md"}
UNITS = {"ms": 1.0, "s": 1000.0, "dB": 1.0}
# "`name` (120 ms", "`name` (1.2 s", "`name` (1.75 dB": a tuning field with its value
QUOTED = re.compile(r"`([a-z_]+)` \((\d+(?:\.\d+)?) ?(ms|s|dB)\b")


def quoted_values(text: str) -> list[tuple[str, float, str]]:
    return [(name, float(value) * UNITS[unit], f"`{name}` ({value} {unit}")
            for name, value, unit in QUOTED.findall(text)]


def pages() -> list[pathlib.Path]:
    return [ROOT / "README.md", ROOT / "DEVELOPERS.md",
            *(p for p in sorted((ROOT / "docs").glob("*.md")) if p.name not in HISTORY)]


def test_every_quoted_switching_constant_is_the_default_profiles():
    defaults = profile(DEFAULT_PROFILE)
    seen, wrong = set(), []
    for page in pages():
        for name, value, text in quoted_values(page.read_text()):
            if name not in FIELDS:
                continue
            seen.add(name)
            if getattr(defaults, name) != pytest.approx(value):
                wrong.append(f"{page.name}: {text} but the {DEFAULT_PROFILE} profile has "
                             f"{getattr(defaults, name)}")
    assert {"min_speech_ms", "hold_ms", "interrupt_ms"} <= seen  # found how-it-decides.md
    assert wrong == []


def test_a_quoted_value_is_read_with_its_unit():
    assert quoted_values("at `interrupt_ms` (1.2 s): and `min_speech_ms` (120 ms) of") == [
        ("interrupt_ms", 1200.0, "`interrupt_ms` (1.2 s"),
        ("min_speech_ms", 120.0, "`min_speech_ms` (120 ms")]

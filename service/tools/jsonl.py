"""JSON Lines input files (decisions, events): one object per line; blank lines and lines
starting with # are skipped."""
from __future__ import annotations

import json
import pathlib
from collections.abc import Iterator


def records(path: str | pathlib.Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) per record; ValueError names the file and line."""
    with open(path, encoding="utf-8-sig") as f:  # -sig: a BOM some editors write
        try:
            lines = list(f)
        except UnicodeDecodeError:
            raise ValueError(f"{path}: not UTF-8 text (is it a JSON Lines file?)") from None
        for n, line in enumerate(lines, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            try:
                d = json.loads(line)
            except ValueError as e:
                raise ValueError(f"{path}:{n}: not JSON ({e})") from None
            if not isinstance(d, dict):
                raise ValueError(f"{path}:{n}: not a JSON object")
            yield n, d

"""A one-line progress display on stderr, only when it is a terminal (quiet in logs and
pipes)."""
from __future__ import annotations

import sys
import time
from typing import Callable, TextIO


class Progress:
    def __init__(self, label: str, total: float | None = None, unit: str = "",
                 stream: TextIO | None = None, min_interval_s: float = 0.1,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.label, self.total, self.unit = label, total, unit
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self.min_interval_s = min_interval_s
        self.clock = clock
        # None, not 0.0: a monotonic clock counts from boot, so "long ago" has no number
        # (a machine up for less than min_interval_s would never draw its first line).
        self._last: float | None = None
        self._shown = False

    def update(self, done: float, note: str = "", force: bool = False) -> None:
        if not self.enabled:
            return
        now = self.clock()
        if not force and self._last is not None and now - self._last < self.min_interval_s:
            return
        self._last = now
        if self.total:
            frac = min(1.0, done / self.total)
            bar = "#" * int(24 * frac) + "-" * (24 - int(24 * frac))
            text = f"{self.label} [{bar}] {done:g}/{self.total:g}{self.unit} {100 * frac:.0f}%"
        else:
            text = f"{self.label} {done:g}{self.unit}"
        self.stream.write(f"\r\x1b[K{text} {note}".rstrip())
        self.stream.flush()
        self._shown = True

    def close(self) -> None:
        if self.enabled and self._shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()

"""Every wall-clock user works on a machine that booted a moment ago.

``time.monotonic()`` and ``perf_counter()`` count from boot (or from an arbitrary point), so
a value of 0.0 is a real instant, not "long ago". These tests drive each user of a clock
from 0, as on a CI machine booted a minute before the run.
"""
import io
import itertools

import pytest

from service.demo import live as demo
from service.runtime import server
from service.api import speakerswitch_pb2 as pb
from service.runtime.auth import Principal
from service.runtime.config import ServiceConfig
from service.tools.progress import Progress
from service.runtime.rooms import RoomRegistry

from conftest import level_tick


class FakeTty(io.StringIO):
    def isatty(self):
        return True


class BootClock:
    """Seconds since boot, set by the test."""

    def __init__(self, now_s: float = 0.0) -> None:
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s


def test_progress_draws_its_first_line_at_boot_and_then_rate_limits():
    out, clock = FakeTty(), BootClock(0.0)
    p = Progress("replay", stream=out, min_interval_s=0.1, clock=clock)
    p.update(1)
    assert out.getvalue().count("\r") == 1
    clock.now_s = 0.05
    p.update(2)
    assert out.getvalue().count("\r") == 1
    clock.now_s = 0.15
    p.update(3)
    assert out.getvalue().count("\r") == 2
    p.update(4, force=True)
    assert out.getvalue().count("\r") == 3


@pytest.mark.parametrize("uptime_s", [0.0, 59.0, 3599.0, 86400.0])
def test_progress_with_a_long_interval_draws_once_whatever_the_uptime(uptime_s):
    out = FakeTty()
    p = Progress("replay", stream=out, min_interval_s=3600, clock=BootClock(uptime_s))
    p.update(1)
    p.update(2)
    assert out.getvalue().count("\r") == 1


def test_rate_limit_bucket_starts_full_at_boot(monkeypatch):
    monkeypatch.setattr(server.time, "monotonic", BootClock(0.0))
    bucket = server.TokenBucket(2)
    assert [bucket.take(0.0) for _ in range(3)] == [True, True, False]
    assert bucket.take(0.5) is True
    assert bucket.take(0.5) is False


def test_a_token_is_not_expired_at_media_or_boot_time_zero():
    p = Principal("acme", frozenset({"watch"}), expires_s=10.0)
    assert p.expired(now_s=0.0) is False
    assert p.expired(now_s=10.0 + 31) is True


def test_idle_collection_counts_from_boot():
    reg = RoomRegistry(ServiceConfig(idle_timeout_s=10))
    reg.process(pb.StreamRequest(ticks=[level_tick("r", 0, {"a": 30})]), now_s=0.0)
    assert reg.collect_idle(0.0) == []
    assert reg.collect_idle(9.0) == []
    assert reg.collect_idle(10.5) == [("", "r")]


def test_demo_position_is_known_from_a_start_at_boot(monkeypatch):
    clock = BootClock(0.0)
    monkeypatch.setattr(demo.time, "monotonic", clock)
    streamer = demo.Streamer("127.0.0.1:1", type("C", (), {"duration_ms": 10_000})())
    assert streamer.position_ms() is None
    streamer.started_s = 0.0
    clock.now_s = 2.5
    assert streamer.position_ms() == 2500


def test_no_module_starts_a_clock_comparison_at_zero():
    """A guard against the bug coming back elsewhere: a ``_last``/``last_*`` time that
    starts at 0.0 and is compared with a boot-relative clock."""
    import pathlib
    import re

    root = pathlib.Path(__file__).resolve().parent.parent
    pattern = re.compile(r"self\._?last\w*\s*(:\s*float)?\s*=\s*0(\.0)?\b")
    offenders = [f"{path.relative_to(root)}:{n}"
                 for path in itertools.chain((root / "service").rglob("*.py"),
                                             (root / "dsp").rglob("*.py"))
                 for n, line in enumerate(path.read_text().splitlines(), 1)
                 if pattern.search(line)]
    assert offenders == []

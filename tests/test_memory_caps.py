"""Memory is bounded by participants, server-wide and per tenant; the limit is derived from
the memory the process may use; a second wave of rooms reuses the first one's memory."""
import gc
import re

import grpc

from service.runtime import memory
from service.api import speakerswitch_pb2 as pb
from service.runtime.config import ServiceConfig
from service.runtime.metrics import Metrics
from service.runtime.rooms import RoomRegistry

from conftest import level_tick

EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]


def room_of(room: str, n: int, t_ms: int = 0) -> pb.RoomTick:
    return level_tick(room, t_ms, {f"{room}-p{i}": 70 for i in range(n)})


def test_a_join_over_the_server_cap_is_refused_and_the_rooms_here_go_on():
    metrics = Metrics()
    reg = RoomRegistry(ServiceConfig(max_participants=10), metrics)
    first = reg.process(pb.StreamRequest(ticks=[room_of("a", 6), room_of("b", 4),
                                                room_of("c", 1)]))
    # the wave is checked as a whole: a and b fill the server, c is refused
    assert [(r.tick_index, r.code, r.field) for r in first.rejections] == [(2, EXHAUSTED, "ticks[2]")]
    assert "max_participants=10" in first.rejections[0].message
    assert reg.room("c") is None
    # a and b go on, a participant leaving makes room for another
    later = room_of("a", 6, 20)
    later.events.add(participant_id="a-p0", type=pb.PARTICIPANT_EVENT_TYPE_LEAVE)
    del later.audio[0]
    resp = reg.process(pb.StreamRequest(ticks=[later, room_of("b", 4, 20), room_of("c", 1, 20)]))
    assert not resp.rejections
    assert metrics.limit_rejections.labels("max_participants")._value.get() == 1
    assert metrics.participants._value.get() == 10


def test_a_tenant_cannot_take_the_others_share():
    reg = RoomRegistry(ServiceConfig(max_participants=100, max_participants_per_tenant=8))
    a = reg.process(pb.StreamRequest(ticks=[room_of("r1", 5), room_of("r2", 5)]), tenant="a")
    b = reg.process(pb.StreamRequest(ticks=[room_of("r1", 8)]), tenant="b")
    assert [(r.tick_index, r.code) for r in a.rejections] == [(1, EXHAUSTED)]
    assert "max_participants_per_tenant=8" in a.rejections[0].message
    assert not b.rejections
    # rooms collected give the tenant its share back
    reg.collect_idle(10_000)
    assert not reg.process(pb.StreamRequest(ticks=[room_of("r2", 8)]), tenant="a").rejections


def test_the_default_cap_comes_from_the_container_limit(tmp_path):
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/meminfo").write_text("MemTotal:       25165824 kB\nMemFree: 1 kB\n")
    assert memory.memory_limit_bytes(str(tmp_path)) == 24 << 30
    (tmp_path / "sys/fs/cgroup").mkdir(parents=True)
    (tmp_path / "sys/fs/cgroup/memory.max").write_text(f"{2 << 30}\n")
    assert memory.memory_limit_bytes(str(tmp_path)) == 2 << 30
    assert memory.default_max_participants(str(tmp_path)) == (
        (2 << 30) // 2 // memory.BYTES_PER_PARTICIPANT_BUDGET)
    (tmp_path / "sys/fs/cgroup/memory.max").write_text("max\n")  # v2: no limit
    assert memory.memory_limit_bytes(str(tmp_path)) == 24 << 30
    assert (RoomRegistry(ServiceConfig()).capacity.max_participants
            == memory.default_max_participants())


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def test_a_second_wave_of_rooms_reuses_the_first_waves_memory():
    reg = RoomRegistry(ServiceConfig(idle_timeout_s=1))

    def wave(tag: str, now_s: float) -> None:
        for b in range(10):
            req = pb.StreamRequest()
            for r in range(b * 20, (b + 1) * 20):
                t = req.ticks.add(room_id=f"{tag}-{r}", timestamp_ms=0, duration_ms=20)
                t.levels.roster.extend(f"{tag}-{r}-participant-{i}" for i in range(100))
                t.levels.levels = bytes([70] * 100)
            assert not reg.process(req, now_s=now_s).rejections

    before = _rss_kib()
    wave("first", 0.0)
    first = _rss_kib() - before
    assert reg.capacity.participants == 20_000 and first > 0
    assert len(reg.collect_idle(100.0)) == 200
    gc.collect()
    wave("second", 100.0)
    second = _rss_kib() - before
    assert second <= first * 1.10 + 1024, (first, second)

"""Scale-out, for real: Redis, three `speakerswitch serve` replicas and nginx running the
shipped deploy/nginx/nginx.conf, all on loopback. Rooms stay on one replica each and decide
exactly as one process would; a replica killed mid-conversation hands its rooms over with
no gap, duplicate or spurious switch; a Watch on any replica sees every event and resumes
from a sequence number."""
from __future__ import annotations

import time

import grpc
import pytest

from service.api import speakerswitch_pb2 as pb
from service.client import Client
from service.runtime.rooms import RoomRegistry

from conftest import load_script, script_levels

cluster = load_script("cluster", "benchmarks/cluster.py")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(bool(cluster.missing_tools()),
                       reason=f"scale-out tests need {' and '.join(cluster.missing_tools())} "
                       "(Debian packages; `make test` installs them when it runs as root)"),
]

PEOPLE = ["ann", "bob", "cat", "dan"]


def conversation(room: str, k: int, duration_ms: int) -> list[pb.RoomTick]:
    """A different turn pattern per room: each of the four speaks in turn, with the turn
    length and order depending on ``k``, and a short remark from the next in line."""
    turn = 1500 + 250 * (k % 5)
    order = PEOPLE[k % 4:] + PEOPLE[:k % 4]
    segments = []
    for i, t in enumerate(range(0, duration_ms, turn)):
        segments.append((order[i % 4], t, t + turn))
        segments.append((order[(i + 1) % 4], t + turn // 2, t + turn // 2 + 240))
    return script_levels(room, segments, PEOPLE, duration_ms)


def by_room(events) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for e in events:
        out.setdefault(e.room_id, []).append(str(e))
    return out


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    with cluster.Cluster(tmp_path_factory.mktemp("cluster"), replicas=3) as c:
        yield c


def test_each_room_is_served_by_one_replica_and_decides_as_one_process(deployment):
    rooms = [f"affinity-{k}" for k in range(8)]
    per_room = [conversation(r, k, 8000) for k, r in enumerate(rooms)]
    batches = [pb.StreamRequest(ticks=list(ticks)) for ticks in zip(*per_room)]
    reference = RoomRegistry()
    expected = [e for b in batches for e in reference.process(b).events]
    got = []
    with Client(deployment.proxy_target) as c, c.sharded_session() as s:
        for b in batches:
            resp = s.send_ticks(*b.ticks)
            assert not resp.rejections, resp.rejections
            got.extend(resp.events)
        assert s.reconnects == 0
    assert sum(1 for e in expected if e.HasField("switch")) >= 8 * 4
    assert by_room(got) == by_room(expected)
    # every room lives in exactly one replica's memory, and none moved
    assert sum(deployment.owners()) == len(rooms)
    assert [r.metric("speakerswitch_rooms_restored_total") for r in deployment.replicas] == [0] * 3


def owner_of(deployment, before: list[int]) -> int:
    after = deployment.owners()
    grown = [i for i, (a, b) in enumerate(zip(before, after)) if b > a]
    assert len(grown) == 1, (before, after)
    return grown[0]


def test_watch_on_another_replica_sees_every_event_and_resumes(deployment):
    room = "watched-1"
    ticks = conversation(room, 3, 8000)
    before = deployment.owners()
    sent = []
    with Client(deployment.proxy_target) as c, c.sharded_session() as s:
        for t in ticks[:50]:
            sent += s.send_ticks(t).events
        owner = owner_of(deployment, before)
        other = deployment.replicas[(owner + 1) % 3]
        with Client(other.target) as w:
            watch = w.watch(room)
            snap = next(watch).snapshot
            assert snap.sequence == sent[-1].sequence and snap.speaker_id
            for t in ticks[50:200]:
                sent += s.send_ticks(t).events
            live = [e for e in sent if e.sequence > snap.sequence]
            got = [next(watch) for _ in live]
            watch.cancel()
            assert [str(e) for e in got] == [str(e) for e in live]
            last = got[-1].sequence
            for t in ticks[200:]:          # while the watcher is away
                sent += s.send_ticks(t).events
            missed = [e for e in sent if e.sequence > last]
            assert any(e.HasField("switch") for e in missed)
            again = w.watch(room, after_sequence=last)
            resumed = [next(again) for _ in missed]
            again.cancel()
            assert [str(e) for e in resumed] == [str(e) for e in missed]
            assert w.get_room(room).sequence == sent[-1].sequence  # GetRoom from Redis too


def test_failover_continues_the_sequence_without_a_spurious_switch(deployment):
    """Real-time pacing (20 ms per tick, ticks that cannot be sent on time are dropped as
    a media server would): bob talks from 2 s to 12 s; his replica is killed at 5 s."""
    room = "failover-1"
    segments = [("ann", 0, 2000), ("bob", 2000, 12000), ("cat", 7000, 7250),
                ("dan", 12000, 15000)]
    ticks = script_levels(room, segments, PEOPLE, 15000)
    kill_at_ms = 5000
    before = deployment.owners()
    events, answered = [], []
    with Client(deployment.proxy_target) as c, c.sharded_session(shards=4) as s:
        t0 = time.monotonic()
        for tick in ticks:
            due = t0 + tick.timestamp_ms / 1000
            if time.monotonic() - due > 0.04:
                continue  # late: a media server sends what is current, not a backlog
            time.sleep(max(0.0, due - time.monotonic()))
            if tick.timestamp_ms == kill_at_ms:
                owner = owner_of(deployment, before)
                deployment.replicas[owner].kill()
            resp = s.send_ticks(tick)
            assert not resp.rejections, resp.rejections
            events.extend(resp.events)
            answered.append(tick.timestamp_ms)
        assert s.reconnects >= 1
    resumed_at = next(t for t in answered if t >= kill_at_ms)
    assert resumed_at - kill_at_ms <= 2000
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    switches = [(e.timestamp_ms, e.switch.speaker_id) for e in events if e.HasField("switch")]
    assert [p for _, p in switches] == ["ann", "bob", "dan"]
    assert switches[1][0] < kill_at_ms and switches[2][0] >= 12000
    survivors = [r for r in deployment.replicas if r.proc.poll() is None]
    assert sum(r.metric("speakerswitch_rooms_restored_total") for r in survivors) == 1
    with Client(survivors[0].target) as c:
        state = c.get_room(room)
    assert state.speaker_id == "dan" and state.sequence == events[-1].sequence

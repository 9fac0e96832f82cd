"""Group commit: batches of many streams stepped together answer exactly what each would
have got alone (``RoomRegistry.process_many``), and the server batches what arrives
together."""
import random
import time

import grpc

from service.api import speakerswitch_pb2 as pb
from service.runtime.config import ServiceConfig
from service.runtime.rooms import Batch, RoomRegistry

from conftest import level_tick, script_levels

EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
PARTICIPANTS = ["a", "b", "c", "d"]


def room_script(room: str, seed: int) -> list[pb.RoomTick]:
    """A few turns of four people; every other room sends RFC 6464 bytes by roster."""
    rng = random.Random(seed)
    segments, t = [], 0
    while t < 8000:
        speaker, length = rng.choice(PARTICIPANTS), rng.randrange(300, 2500)
        segments.append((speaker, t, t + length))
        t += length + rng.randrange(0, 400)
    ticks = script_levels(room, segments, PARTICIPANTS, 8000)
    if seed % 2:
        for k, tick in enumerate(ticks):
            levels = {a.participant_id: a.level for a in tick.audio}
            del tick.audio[:]
            if k == 0:
                tick.levels.roster.extend(PARTICIPANTS)
            tick.levels.levels = bytes(levels[p].level | (0x80 if levels[p].voice
                                                          == pb.VOICE_ACTIVITY_PRESENT else 0)
                                       for p in PARTICIPANTS)
    ticks[50].events.add(participant_id="b", type=pb.PARTICIPANT_EVENT_TYPE_VIDEO_OFF)
    ticks[150].events.add(participant_id="b", type=pb.PARTICIPANT_EVENT_TYPE_VIDEO_ON)
    return ticks


def streams(n_rooms: int, tenants=("", "acme")):
    """(tenant, room, ticks) of one stream per room, half of them another tenant's."""
    names = [f"room-{k // len(tenants)}" for k in range(n_rooms)]
    return [(tenants[k % len(tenants)], names[k], room_script(names[k], k))
            for k in range(n_rooms)]


def test_stepping_many_streams_together_answers_what_each_gets_alone():
    alone, together = RoomRegistry(ServiceConfig()), RoomRegistry(ServiceConfig())
    rooms = streams(12)
    n_ticks = len(rooms[0][2])
    for k in range(n_ticks):
        requests = [pb.StreamRequest(batch_id=k + 1, ticks=[ticks[k]]) for _, _, ticks in rooms]
        expected = [alone.process(req, now_s=k * 0.02, tenant=tenant)
                    for req, (tenant, _, _) in zip(requests, rooms)]
        got = together.process_many([Batch(req, k * 0.02, tenant)
                                     for req, (tenant, _, _) in zip(requests, rooms)])
        assert [r.SerializeToString() for r in got] == [r.SerializeToString() for r in expected]
    # the rooms really switched and saw their events (not a comparison of empty answers)
    states = [together.room_state(room, tenant) for tenant, room, _ in rooms]
    assert all(s is not None and s.sequence > 3 for s in states)


def test_a_room_in_two_batches_of_one_drain_runs_its_ticks_in_batch_order():
    alone, together = RoomRegistry(ServiceConfig()), RoomRegistry(ServiceConfig())
    ticks = room_script("r", 2)
    for k in range(0, len(ticks) - 1, 2):
        first = pb.StreamRequest(batch_id=k, ticks=[ticks[k]])
        second = pb.StreamRequest(batch_id=k + 1, ticks=[ticks[k + 1]])
        expected = [alone.process(first), alone.process(second)]
        got = together.process_many([Batch(first), Batch(second)])
        assert [r.SerializeToString() for r in got] == [r.SerializeToString() for r in expected]


def test_rejections_keep_their_own_batch_paths_and_limits():
    reg = RoomRegistry(ServiceConfig(max_ticks_per_batch=2, max_rooms_per_tenant=2))
    too_many = pb.StreamRequest(batch_id=1, ticks=[level_tick(f"x{i}", 0, {"a": 30})
                                                   for i in range(3)])
    good = pb.StreamRequest(batch_id=2, ticks=[level_tick("r1", 0, {"a": 30}),
                                               level_tick("r2", 0, {"a": 300})])
    third_room = pb.StreamRequest(batch_id=3, ticks=[level_tick("r3", 0, {"a": 30})])
    other_tenant = pb.StreamRequest(batch_id=4, ticks=[level_tick("r3", 0, {"a": 30})])
    r1, r2, r3, r4 = reg.process_many([Batch(too_many), Batch(good), Batch(third_room),
                                       Batch(other_tenant, tenant="acme")])
    assert [(x.code, x.field) for x in r1.rejections] == [(EXHAUSTED, "ticks")]
    assert [(x.tick_index, x.field) for x in r2.rejections] == [(1, "ticks[1].audio[0].level.level")]
    # r2 of batch 2 was refused, so tenant "" has one room: r3 fits under its quota of 2
    assert not r3.rejections and not r4.rejections
    assert set(reg.rooms) == {("", "r1"), ("", "r3"), ("acme", "r3")}


def test_the_server_steps_messages_that_arrive_together_once(server, client):
    """Twenty streams, one room each, send while the server is busy: the messages waiting
    when it is free again are stepped in one drain, and each stream gets its own answer."""
    import asyncio
    import threading

    n_streams, rounds = 20, 3
    sessions = [client.session() for _ in range(n_streams)]
    scripts = [script_levels(f"gc-{k}", [("a", 0, 2000)], ["a", "b"], 200) for k in range(n_streams)]
    m = server.running.metrics
    drains_before = m.drains._value.get()
    answers: dict[int, list] = {k: [] for k in range(n_streams)}
    for r in range(rounds):
        busy = asyncio.run_coroutine_threadsafe(_block(0.3), server.loop)  # the loop is busy
        threads = [threading.Thread(target=lambda k=k: answers[k].append(
            sessions[k].send(pb.StreamRequest(batch_id=1000 + 100 * k + r, ticks=[scripts[k][r]]))))
            for k in range(n_streams)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        busy.result(5)
    drains = m.drains._value.get() - drains_before
    assert drains <= rounds * n_streams / 4, f"{drains} drains for {rounds * n_streams} messages"
    # open streams are counted (for the drain interval), and no longer once closed (the
    # module's server may still be closing streams of earlier tests: never opening any)
    open_streams = server.running.group_commit.streams
    assert open_streams >= n_streams
    for k, responses in answers.items():
        assert [resp.batch_id for resp in responses] == [1000 + 100 * k + r for r in range(rounds)]
        assert all(e.room_id == f"gc-{k}" for resp in responses for e in resp.events)
    for s in sessions:
        s.close()
    deadline = time.monotonic() + 10
    while (server.running.group_commit.streams > open_streams - n_streams
           and time.monotonic() < deadline):
        time.sleep(0.01)
    assert server.running.group_commit.streams <= open_streams - n_streams


async def _block(seconds: float) -> None:
    import time

    time.sleep(seconds)  # holds the event loop, as a long step would


def test_quiet_waits_for_a_drain_in_progress():
    """CloseRoom and idle collection change rooms only when no drain is between two engine
    steps of a batch: quiet() returns once the drain in progress has finished."""
    import asyncio

    from service.api import speakerswitch_pb2 as pb
    from service.runtime.group_commit import GroupCommit
    from service.runtime.rooms import Batch, RoomRegistry

    async def scenario() -> tuple[int, bool]:
        registry = RoomRegistry()
        gc_ = GroupCommit(registry)
        ticks = [pb.RoomTick(room_id="r", timestamp_ms=20 * k, duration_ms=20,
                             levels=pb.LevelVector(roster=["a"] if k == 0 else [],
                                                   levels=b"\x9e"))
                 for k in range(3000)]  # one room: 3000 steps, many slices
        done = asyncio.ensure_future(gc_.process(Batch(pb.StreamRequest(ticks=ticks))))
        await asyncio.sleep(0)  # the drain has started and yielded
        assert gc_._draining is not None
        await gc_.quiet()
        seen = (registry.room("r").last_audio_t_ms, gc_._draining is None)
        await done
        return seen

    assert asyncio.run(scenario()) == (20 * 2999, True)  # the whole batch was applied


def test_a_busy_server_lets_what_arrives_within_the_drain_interval_join_one_drain(monkeypatch):
    """A lone message is stepped at once (the last drain started long ago); one that arrives
    right after a drain waits for the rest of DRAIN_INTERVAL_S, and the messages that come
    meanwhile are stepped with it: one drain, where stepping each on the next loop turn
    took one drain each (most drains stepped one or two messages of a stream per room)."""
    import asyncio

    from service.runtime import group_commit
    from service.runtime.metrics import Metrics

    interval = 0.25  # long against a loop turn, so a loaded test machine cannot outrun it
    monkeypatch.setattr(group_commit, "DRAIN_INTERVAL_S", interval)
    now = [100.0]

    def request(room: str, k: int) -> pb.StreamRequest:
        return pb.StreamRequest(batch_id=k + 1, ticks=[pb.RoomTick(
            room_id=room, timestamp_ms=20 * k, duration_ms=20,
            levels=pb.LevelVector(roster=["a", "b"], levels=b"\x9e\x46"))])

    async def scenario() -> None:
        registry, metrics = RoomRegistry(), Metrics()
        gc_ = group_commit.GroupCommit(registry, metrics, clock=lambda: now[0])
        gc_.streams = 8  # a stream per room: others may send any moment
        drains = metrics.drains._value.get
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        lone = await gc_.process(Batch(request("r0", 0)))  # idle: stepped at once
        assert lone.batch_id == 1 and drains() == 1
        assert loop.time() - t0 < interval / 2
        first = asyncio.ensure_future(gc_.process(Batch(request("r1", 1))))
        for _ in range(3):
            await asyncio.sleep(0)  # the drain task runs: it waits for the interval
        assert not first.done() and drains() == 1
        later = [asyncio.ensure_future(gc_.process(Batch(request(f"r{k}", k))))
                 for k in (2, 3)]
        answers = await asyncio.gather(first, *later)
        assert [a.batch_id for a in answers] == [2, 3, 4]
        assert drains() == 2  # the three stepped together
        assert {key[1] for key in registry.rooms} == {"r0", "r1", "r2", "r3"}
        now[0] += 2 * interval  # a quiet spell: the next lone message is stepped at once
        t1 = loop.time()
        assert (await gc_.process(Batch(request("r0", 1)))).batch_id == 2
        assert loop.time() - t1 < interval / 2 and drains() == 3

    asyncio.run(scenario())


def test_one_stream_sending_back_to_back_is_never_held_for_the_drain_interval(monkeypatch):
    """With a message waiting from every open stream nothing else is about to arrive: a
    client that sends its next message when the last is answered is not slowed to one
    message per interval."""
    import asyncio

    from service.runtime import group_commit
    from service.runtime.metrics import Metrics

    interval = 0.25
    monkeypatch.setattr(group_commit, "DRAIN_INTERVAL_S", interval)

    async def scenario() -> None:
        registry, metrics = RoomRegistry(), Metrics()
        gc_ = group_commit.GroupCommit(registry, metrics,
                                       clock=lambda: 100.0)  # no time passes
        gc_.streams = 1
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        for k in range(4):
            answer = await gc_.process(Batch(pb.StreamRequest(batch_id=k + 1, ticks=[
                pb.RoomTick(room_id="r", timestamp_ms=20 * k, duration_ms=20,
                            levels=pb.LevelVector(roster=["a"] if k == 0 else [],
                                                  levels=b"\x9e"))])))
            assert answer.batch_id == k + 1 and not answer.rejections
        assert metrics.drains._value.get() == 4
        assert loop.time() - t0 < interval  # four drains within one interval: none waited

    asyncio.run(scenario())

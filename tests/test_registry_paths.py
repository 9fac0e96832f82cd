"""RoomRegistry's steady-state fast paths give exactly what the full validation gives.

A media server's usual tick (a known room, RFC 6464 bytes in the sticky roster's order,
nothing else) skips ``validate`` and ``_apply_state``, is read from the request's bytes
when service/runtime/_wire.c is built, and the rooms' roster slots are kept concatenated between
batches. Random batches of many rooms (joins, leaves, events,
roster changes, bad ticks, two tenants, a room pattern) must give byte-identical
responses and room states with both shortcuts turned off.
"""
from __future__ import annotations

import numpy as np
import pytest

from service.runtime.rooms import registry as rooms_mod
from service.runtime import wire
from service.api import speakerswitch_pb2 as pb
from service.runtime.rooms import RoomRegistry

ET = pb.ParticipantEventType
N_ROOMS = 10


def _batches(seed: int, n: int = 300):
    """(tenant, request) pairs."""
    rng = np.random.default_rng(seed)
    t = {r: 0 for r in range(N_ROOMS)}
    rosters = {r: [f"p{i}" for i in range(int(rng.integers(1, 7)))] for r in range(N_ROOMS)}
    talker = {r: 0 for r in range(N_ROOMS)}
    seen: set[tuple[str, int]] = set()
    for b in range(n):
        tenant = "a" if b % 3 else "b"
        q = pb.StreamRequest(batch_id=b)
        for r in rng.choice(N_ROOMS, size=int(rng.integers(1, N_ROOMS + 1)), replace=False):
            r = int(r)
            for _ in range(int(rng.choice([1, 1, 1, 2]))):  # some rooms tick twice
                t[r] += 20
                tick = q.ticks.add(room_id=f"room-{r}", timestamp_ms=t[r],
                                   duration_ms=15 if rng.random() < 0.01  # refused
                                   else int(rng.choice([20, 20, 0])))
                roster = rosters[r]
                first = (tenant, r) not in seen
                seen.add((tenant, r))
                if rng.random() < 0.02:
                    tick.events.add(participant_id=roster[0],
                                    type=int(rng.choice([ET.PARTICIPANT_EVENT_TYPE_VIDEO_OFF,
                                                         ET.PARTICIPANT_EVENT_TYPE_VIDEO_ON,
                                                         ET.PARTICIPANT_EVENT_TYPE_AUDIO_MUTED,
                                                         ET.PARTICIPANT_EVENT_TYPE_PIN])))
                if rng.random() < 0.01 and len(roster) > 1:
                    tick.events.add(participant_id=roster[-1],
                                    type=ET.PARTICIPANT_EVENT_TYPE_LEAVE)
                    roster = rosters[r] = roster[:-1]
                new_roster = rng.random() < 0.01
                if new_roster:
                    roster = rosters[r] = roster + [f"j{b}"]
                if rng.random() < 0.05:
                    talker[r] = int(rng.integers(len(roster)))
                lv = rng.integers(50, 80, size=len(roster)).astype(np.uint8)
                lv[talker[r] % len(roster)] = int(rng.integers(10, 40)) | 0x80
                if first or new_roster:
                    tick.levels.roster.extend(roster)
                if rng.random() < 0.01:
                    lv = lv[:-1]                       # wrong length: refused
                if rng.random() < 0.01:
                    tick.timestamp_ms -= 40            # going back: refused
                if rng.random() < 0.02:
                    tick.config.profile = "debate"
                tick.levels.levels = lv.tobytes()
        yield tenant, q


def _run(seed: int) -> list[bytes]:
    reg = RoomRegistry()
    out = []
    for tenant, q in _batches(seed):
        allowed = (lambda rid: rid != "room-3") if tenant == "b" else None
        out.append(reg.process(q, tenant=tenant, room_allowed=allowed)
                   .SerializeToString(deterministic=True))
    for tenant in ("a", "b"):
        for r in range(N_ROOMS):
            state = reg.room_state(f"room-{r}", tenant)
            out.append(state.SerializeToString(deterministic=True) if state else b"")
    return out


@pytest.mark.parametrize("seed", range(3))
def test_steady_path_and_kept_roster_slots_change_nothing(seed, monkeypatch):
    monkeypatch.setattr(rooms_mod, "STEADY_COLUMNS_MIN_TICKS", 1)  # these batches are small
    fast = _run(seed)
    assert sum(b"rejections" in m or len(m) > 40 for m in fast) > 10  # the batches decide
    monkeypatch.setattr(wire, "enabled", False)
    assert _run(seed) == fast  # steady ticks read through protobuf
    monkeypatch.setattr(rooms_mod, "steady", lambda tick, room: None)
    monkeypatch.setattr(RoomRegistry, "_roster_slots", lambda self, rooms: np.concatenate(
        [r.roster_slots for r in rooms]))
    assert _run(seed) == fast


@pytest.mark.skipif(wire._wire is None, reason="service/runtime/_wire.c is not built here")
def test_steady_ticks_are_read_from_the_bytes(monkeypatch):
    """With the scanner built, most ticks of these batches are read from their bytes and
    neither ``steady`` nor ``validate`` sees them."""
    calls = {"read": 0, "protobuf": 0}
    scan = wire.steady_ticks

    def counting_scan(raw):
        read = scan(raw)
        calls["read"] += sum(t is not None for t in read)
        return read

    def counting_steady(tick, room):
        calls["protobuf"] += 1
        return None

    monkeypatch.setattr(wire, "steady_ticks", counting_scan)
    monkeypatch.setattr(rooms_mod, "steady", counting_steady)
    _run(0)
    assert calls["read"] > 10 * calls["protobuf"] > 0


@pytest.mark.skipif(wire._wire is None, reason="service/runtime/_wire.c is not built here")
def test_steady_batches_are_stepped_as_columns_and_the_others_fall_back(monkeypatch):
    """Batches whose every tick is steady (one per room) take ``_step_steady``; a batch
    with anything else is declined by it, unchanged, and takes the general path. Both
    kinds occur here, so the comparison above covers both."""
    taken = {True: 0, False: 0}
    step_steady = RoomRegistry._step_steady

    def counting(self, *a):
        done = step_steady(self, *a)
        taken[done] += 1
        return done

    monkeypatch.setattr(RoomRegistry, "_step_steady", counting)
    monkeypatch.setattr(rooms_mod, "STEADY_COLUMNS_MIN_TICKS", 1)
    _run(0)
    assert taken[True] > 20 and taken[False] > 20


def test_steady_ticks_take_the_fast_path(monkeypatch):
    """The comparison above is not vacuous: most ticks of these batches are steady."""
    monkeypatch.setattr(wire, "enabled", False)
    calls = {"steady": 0, "full": 0}
    steady, validate = rooms_mod.steady, rooms_mod.validate

    def counting_steady(tick, room):
        result = steady(tick, room)
        calls["steady"] += result is not None
        return result

    def counting_validate(*a, **k):
        calls["full"] += 1
        return validate(*a, **k)

    monkeypatch.setattr(rooms_mod, "steady", counting_steady)
    monkeypatch.setattr(rooms_mod, "validate", counting_validate)
    _run(0)
    assert calls["steady"] > 2 * calls["full"] > 0


def test_small_batches_are_not_stepped_as_columns(monkeypatch):
    """A one-room message pays the columns' fixed cost for nothing: below
    STEADY_COLUMNS_MIN_TICKS ticks the general path takes it."""
    calls = []
    monkeypatch.setattr(RoomRegistry, "_step_steady",
                        lambda self, *a: calls.append(1) or False)
    _run(0)
    assert calls == []


def _same_rooms_batches(seed: int, n: int = 200):
    """(tenant, request, action) triples: the same rooms in the same order tick after tick,
    as a media server sends them, disturbed now and then by what must drop what
    ``_step_steady`` keeps of them: a roster change (a newcomer; the same people in
    another order), a leave, a refused tick (wrong length)
    and in the next batch one that is refused only by the time the refused batch's other
    rooms reached, a batch of another tenant with the same ids, a room closed (action
    "drop") that the next batch still ticks (refused) and the one after names again."""
    rng = np.random.default_rng(seed)
    t = {r: 0 for r in range(N_ROOMS)}
    rosters = {r: [f"p{i}" for i in range(4)] for r in range(N_ROOMS)}
    named: set[tuple[str, int]] = set()
    back: int | None = None  # a room whose next tick repeats its last time
    dropped = False
    for b in range(n):
        tenant = "b" if b % 23 == 22 else "a"
        action = "drop" if b % 31 == 30 else ""
        disturb = int(rng.integers(N_ROOMS)) if b % 7 == 6 else None
        kind = int(rng.integers(4))
        q = pb.StreamRequest(batch_id=b)
        for r in range(N_ROOMS):
            t[r] += 20
            tick = q.ticks.add(room_id=f"room-{r}", timestamp_ms=t[r], duration_ms=20)
            roster = rosters[r]
            if r == disturb and kind == 0:
                roster = rosters[r] = roster + [f"j{b}"]
                named.discard((tenant, r))
            if r == disturb and kind == 3:                 # the same people, reordered
                roster = rosters[r] = roster[1:] + roster[:1]
                named.discard((tenant, r))
            if r == disturb and kind == 1 and len(roster) > 1:
                tick.events.add(participant_id=roster[-1], type=ET.PARTICIPANT_EVENT_TYPE_LEAVE)
                roster = rosters[r] = roster[:-1]
            if (tenant, r) not in named:
                tick.levels.roster.extend(roster)
                named.add((tenant, r))
            lv = rng.integers(50, 80, size=len(roster)).astype(np.uint8)
            lv[(b // 40 + r) % len(roster)] = int(rng.integers(10, 40)) | 0x80
            if r == disturb and kind == 2:
                lv = lv[:-1]                       # wrong length: refused
                back = (r + 1) % N_ROOMS
            elif r == back:
                tick.timestamp_ms -= 20            # its last time again: refused
                back = None
            tick.levels.levels = lv.tobytes()
        if dropped:  # this batch ticked the closed room as if it were there
            named = {key for key in named if key[1] != 0}
        dropped = action == "drop"
        yield tenant, q, action


def _run_same_rooms(seed: int) -> list[bytes]:
    reg = RoomRegistry()
    out = []
    for b, (tenant, q, action) in enumerate(_same_rooms_batches(seed)):
        # now and then a stream whose token does not cover one of the (existing) rooms
        allowed = (lambda rid: rid != "room-4") if b % 11 == 10 else None
        out.append(reg.process(q, now_s=float(b), tenant=tenant, room_allowed=allowed)
                   .SerializeToString(deterministic=True))
        if b % 5 == 0:  # a room's times as read between batches (ones waiting are written)
            room = reg.rooms.get(("a", f"room-{b % N_ROOMS}"))
            out.append(repr(room and (room.last_t_ms, room.last_audio_t_ms, room.end_t_ms,
                                      room.last_seen_s)).encode())
        if action == "drop":
            for key in [k for k in reg.rooms if k[1] == "room-0"]:
                reg.drop_room(key, "closed")
    for tenant in ("a", "b"):
        for r in range(N_ROOMS):
            state = reg.room_state(f"room-{r}", tenant)
            out.append(state.SerializeToString(deterministic=True) if state else b"")
    return out


@pytest.mark.skipif(wire._wire is None, reason="service/runtime/_wire.c is not built here")
@pytest.mark.parametrize("seed", range(3))
def test_rooms_kept_between_steady_batches_change_nothing(seed, monkeypatch):
    """The same rooms batch after batch: ``_step_steady`` keeps what it read of them for
    the next batch; every other change to a room drops that, and the responses and room
    states are those of the general path alone."""
    monkeypatch.setattr(rooms_mod, "STEADY_COLUMNS_MIN_TICKS", 1)
    kept = {"used": 0}
    step_steady = RoomRegistry._step_steady

    def counting(self, batch, *a):
        before = self._steady
        done = step_steady(self, batch, *a)
        kept["used"] += done and before is not None and self._steady.rooms is before.rooms
        return done

    monkeypatch.setattr(RoomRegistry, "_step_steady", counting)
    fast = _run_same_rooms(seed)
    assert kept["used"] > 30
    responses = [pb.StreamResponse.FromString(m) for m in fast[:-2 * N_ROOMS]
                 if not m.startswith((b"(", b"None"))]  # not a room's times (no field 5)
    assert sum(len(r.rejections) for r in responses) > 0  # refusals among the kept ones
    monkeypatch.setattr(rooms_mod, "STEADY_COLUMNS_MIN_TICKS", 10**9)
    monkeypatch.setattr(wire, "enabled", False)
    monkeypatch.setattr(RoomRegistry, "_roster_slots", lambda self, rooms: np.concatenate(
        [r.roster_slots for r in rooms]))
    assert _run_same_rooms(seed) == fast


@pytest.mark.skipif(wire._wire is None, reason="service/runtime/_wire.c is not built here")
def test_a_closed_room_is_not_kept_alive_by_the_rooms_stepped_with_it(monkeypatch):
    """The rooms of a kept steady batch point at what was kept of it; once that is
    dropped (a room closed), it holds none of them, so the closed room goes at once."""
    import gc
    import weakref

    monkeypatch.setattr(rooms_mod, "STEADY_COLUMNS_MIN_TICKS", 1)
    reg = RoomRegistry()
    batches = list(_same_rooms_batches(1, n=12))
    for _, q, _ in batches[:6]:
        reg.process(q, tenant="a")
    assert reg._steady is not None
    closed = weakref.ref(reg.rooms[("a", "room-0")])
    reg.drop_room(("a", "room-0"), "closed")
    gc.disable()
    try:
        for _, q, _ in batches[6:]:
            del q.ticks[0]                                   # the media server stops it too
            reg.process(q, tenant="a")
        assert reg._steady is not None and closed() is None  # without the cycle collector
    finally:
        gc.enable()


def test_a_few_rooms_slots_are_built_and_leave_the_kept_ones_of_many_rooms():
    """A group commit's drain steps a few rooms, different ones each time: their slots are
    concatenated (the same values the kept ones would give), and the kept slots of the
    batch of many rooms that comes every tick are still kept after them."""
    class Room:
        def __init__(self, slots):
            self.roster_slots = np.asarray(slots, np.int64)

    reg = RoomRegistry()
    many = [Room(range(5 * i, 5 * i + 5)) for i in range(rooms_mod.FEW_ROOMS + 4)]
    kept = reg._roster_slots(many)
    assert kept.tolist() == list(range(5 * len(many))) and not kept.flags.writeable
    few = [many[3], many[0], Room([70, 71])]
    got = reg._roster_slots(few)
    assert got.tolist() == [15, 16, 17, 18, 19, 0, 1, 2, 3, 4, 70, 71]
    assert not got.flags.writeable
    assert reg._roster_slots([]).tolist() == []
    assert reg._roster_slots(many) is kept  # the drains in between did not replace them

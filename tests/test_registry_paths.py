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

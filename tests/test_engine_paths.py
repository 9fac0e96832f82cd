"""The engine's fast paths give exactly what the general paths give.

- ActiveSpeakers: all due rooms are ranked with one sort (``Engine._ranking_rows``); the
  reference is ``Engine.ranking``, one room at a time.
- Per-slot gathers are kept between steps (``Engine._layout_for``); the reference
  gathers them afresh every step.
"""
from __future__ import annotations

import copy as copy_module
import dataclasses
import os
import subprocess
import sys

import numpy as np
import pytest

from dsp import events as ev
from dsp import forwarding, switching
from dsp import engine as engine_module
from dsp.engine import Engine, Wave
from dsp.state import NEVER_MS, NOT_LOUD_MS, NOT_RANKED
from dsp.tuning import DSI, LOUDEST, PROFILES, SPEAKERSWITCH



def _level_wave(rooms: list[int], t_ms: int, slots: list[int], dbov: list[float],
                voice: list[int]) -> Wave:
    """One 20 ms levels wave of ``rooms`` (one frame per listed slot)."""
    return Wave(rooms=np.array(rooms), t_ms=np.full(len(rooms), t_ms),
                duration_ms=np.full(len(rooms), 20), level_slots=np.array(slots, np.int64),
                level_dbov=np.array(dbov, np.float32), level_voice=np.array(voice, np.int8))


def _state_copy(st) -> dict[str, np.ndarray]:
    """Every per-slot and per-room array of the engine state, copied."""
    return {name: getattr(st, name).copy() for name in (*st.SLOT_FILL, *st.ROOM_FILL)}

def _churned_engine(rng: np.random.Generator, n_rooms: int = 12) -> Engine:
    """Rooms whose members joined and left in random order, so that slot numbers no
    longer follow the join order (the last tie-break of a ranking)."""
    eng = Engine()
    rooms = [eng.add_room(PROFILES["meeting"].replace(active_speakers=int(rng.integers(1, 8))))
             for _ in range(n_rooms)]
    for _ in range(300):
        r = rooms[int(rng.integers(n_rooms))]
        members = eng.st.room_slots[r]
        if members and rng.random() < 0.4:
            eng.remove_participant(members[int(rng.integers(len(members)))], 0)
        else:
            eng.add_participant(r)
    return eng


@pytest.mark.parametrize("seed", range(20))
def test_rankings_of_all_rooms_at_once_equal_one_room_at_a_time(seed):
    rng = np.random.default_rng(seed)
    eng = _churned_engine(rng)
    st = eng.st
    used = st.slot_room >= 0
    n = st.n_slots
    # few distinct values, so that every key ties somewhere
    st.speaking[:] = rng.random(n) < 0.4
    st.last_active_ms[:] = np.where(rng.random(n) < 0.3, NEVER_MS, rng.integers(0, 4, n) * 20)
    st.level_smooth[:] = rng.choice(np.float32([-127.0, -60.5, -40.25, -30.0]), n)
    rooms = np.flatnonzero(np.bincount(st.slot_room[used], minlength=st.n_rooms) >= 0)
    idx = np.flatnonzero(used)
    rows = eng._ranking_rows(rooms, idx, st.slot_room[idx].astype(np.int64))
    for row, room in zip(rows, rooms.tolist()):
        slots, _levels, speaking, _act = eng.ranking(room)
        assert row[row != NOT_RANKED].tolist() == [2 * s + b for s, b in zip(slots, speaking)]
        assert (row[len(slots):] == NOT_RANKED).all()


def _events_and_state(eng: Engine, fresh_layout: bool, seed: int, per_room: bool = False
                      ) -> tuple[list, dict]:
    """``per_room``: a wave per room (a media server sending a message per room), else one
    wave of the rooms that have a tick."""
    rng = np.random.default_rng(seed)
    rooms = [eng.add_room(PROFILES[name], ranking_phase_ms=int(rng.integers(0, 1000)))
             for name in ("meeting", "podcast", "debate") * 4]
    slots = {r: [eng.add_participant(r) for _ in range(int(rng.integers(1, 9)))] for r in rooms}
    talker = {r: 0 for r in rooms}
    out: list[ev.Event] = []
    for k in range(600):
        if fresh_layout:
            eng._layouts.clear()  # every step gathers its layout afresh
        if k % 50 == 25:  # membership and tuning change now and then
            r = rooms[int(rng.integers(len(rooms)))]
            if len(slots[r]) > 1 and rng.random() < 0.5:
                out += eng.remove_participant(slots[r].pop(0), k * 20)
            else:
                slots[r].append(eng.add_participant(r))
            eng.set_tuning(rooms[k % len(rooms)], PROFILES["debate"].replace(
                active_speakers=int(rng.integers(1, 9))))
        if rng.random() < 0.05:
            r = rooms[int(rng.integers(len(rooms)))]
            talker[r] = int(rng.integers(len(slots[r])))
        # some rooms skip a tick, and some participants' packets are missing
        wave_rooms = [r for r in rooms if rng.random() < 0.9]
        frames = []
        for r in wave_rooms:
            for i, s in enumerate(slots[r]):
                if rng.random() < 0.05:
                    continue
                loud = i == talker[r] % len(slots[r])
                frames.append((r, s, -float(rng.integers(15, 35) if loud else rng.integers(50, 80)),
                               int(loud or rng.random() < 0.1)))
        for wave in ([[r] for r in wave_rooms] if per_room else [wave_rooms]):
            mine = [f for f in frames if f[0] in wave]
            out += eng.step(_level_wave(wave, k * 20, [f[1] for f in mine],
                                        [f[2] for f in mine], [f[3] for f in mine]))
    st = eng.st
    state = _state_copy(st)
    state["ranked"] = st.ranked.copy()
    return out, state


@pytest.mark.parametrize("seed,per_room,cache_slots", [
    (0, False, 100_000), (1, False, 100_000), (2, False, 100_000),
    (0, True, 100_000), (1, True, 100_000), (2, True, 12)])
def test_kept_gathers_decide_as_fresh_ones(seed, per_room, cache_slots, monkeypatch):
    """Layouts kept between steps (one per wave's set of rooms, dropped when membership or
    tuning change, or when the cache is full) decide exactly as layouts gathered afresh."""
    monkeypatch.setattr(engine_module, "LAYOUT_CACHE_SLOTS", cache_slots)
    eng = Engine()
    kept, kept_state = _events_and_state(eng, False, seed, per_room)
    assert eng._layouts_slots <= cache_slots
    assert len(eng._layouts) > (1 if per_room and cache_slots > 1000 else 0)
    fresh, fresh_state = _events_and_state(Engine(), True, seed, per_room)
    assert len(kept) > 50 and any(isinstance(e, ev.ActiveSpeakersUpdate) for e in kept)
    assert kept == fresh
    for name, a in kept_state.items():
        np.testing.assert_array_equal(a, fresh_state[name], err_msg=name)


def _dense_run(seed: int, general: bool, monkeypatch) -> tuple[list, dict]:
    """Every room ticks with every participant: contiguous slots, levels in slot order.
    ``general``: the same frames in shuffled order, and the slots addressed by index."""
    if general:
        layout_for = Engine._layout_for

        def by_index(self, rooms, duration_ms):
            layout = layout_for(self, rooms, duration_ms)
            return dataclasses.replace(layout, rows=layout.idx)

        monkeypatch.setattr(Engine, "_layout_for", by_index)
    rng = np.random.default_rng(seed)
    eng = Engine()
    rooms = np.array([eng.add_room(PROFILES[name], ranking_phase_ms=int(rng.integers(0, 1000)))
                      for name in ("meeting", "podcast", "debate") * 5])
    slots = np.array([eng.add_participant(r) for r in rooms for _ in range(6)])
    talker = rng.integers(0, 6, len(rooms))
    out: list[ev.Event] = []
    for k in range(500):
        if k == 250:  # a mute changes who may speak, not the layout
            out += eng.set_muted(int(slots[3]), True, k * 20)
        talker = np.where(rng.random(len(rooms)) < 0.03, rng.integers(0, 6, len(rooms)), talker)
        loud = np.zeros((len(rooms), 6), bool)
        loud[np.arange(len(rooms)), talker] = True
        dbov = np.where(loud, -rng.integers(15, 35, loud.shape), -rng.integers(50, 80, loud.shape))
        voice = (loud | (rng.random(loud.shape) < 0.1)).astype(np.int8).ravel()
        shuffled = rng.permutation(len(slots))  # drawn in both runs: the same frames
        order = shuffled if general else np.arange(len(slots))
        out += eng.step(Wave(rooms=rooms, t_ms=np.full(len(rooms), k * 20),
                             duration_ms=np.full(len(rooms), 20), level_slots=slots[order],
                             level_dbov=dbov.ravel().astype(np.float32)[order],
                             level_voice=voice[order]))
    return out, _state_copy(eng.st)


@pytest.mark.parametrize("seed", range(3))
def test_contiguous_slots_and_ordered_levels_decide_as_the_general_path(seed, monkeypatch):
    fast, fast_state = _dense_run(seed, False, monkeypatch)
    general, general_state = _dense_run(seed, True, monkeypatch)
    assert sum(isinstance(e, ev.FloorChange) for e in fast) > 20
    assert fast == general
    for name, a in fast_state.items():
        np.testing.assert_array_equal(a, general_state[name], err_msg=name)


def _takeovers_and_reference(seed: int, evidence_p: list[float], holder_share: float,
                             last_active: list[int], held_share: float = 0.8
                             ) -> tuple[list, list, int]:
    """switching.takeovers on a random state, and the same decided one room at a time;
    also how many rooms change only because an interrupter outlasted the holder."""
    rng = np.random.default_rng(seed)
    eng = _churned_engine(rng, n_rooms=30)
    st = eng.st
    idx = np.flatnonzero(st.slot_room >= 0)
    room_of = st.slot_room[idx].astype(np.int64)
    rooms = np.unique(room_of)
    st.evidence_ms[:] = rng.choice(np.float32([0, 200, 400, 1300]), st.n_slots, p=evidence_p)
    st.level_smooth[:] = rng.choice(np.float32([-40.0, -30.0]), st.n_slots)
    st.last_active_ms[:] = rng.choice(last_active, st.n_slots)
    st.loud_since_ms[:] = rng.choice([-500, 500], st.n_slots)
    st.modulation_db[:] = rng.choice(np.float32([1.0, 3.0]), st.n_slots, p=[0.2, 0.8])
    st.holder[rooms] = np.where(rng.random(len(rooms)) < holder_share,
                                [st.room_slots[r][0] for r in rooms], -1)
    # a few have talked long, but never within overlap_margin_db of their holder
    st.loud_since_ms[np.random.default_rng(seed).random(st.n_slots) < 0.1] = NOT_LOUD_MS
    # most have held their room's floor before; the others need newcomer_speech_ms more
    st.has_held[:] = np.random.default_rng(seed + 100).random(st.n_slots) < held_share
    # turns of 1, 21 and 41 s: none, part and all of long_turn_hold_ms added to the hold
    st.floor_since_ms[rooms] = np.random.default_rng(seed + 200).choice(
        [0, -20000, -40000], len(rooms))
    t_end = np.full(len(rooms), 1000)
    tuning = {"takeover_recency_ms": np.full(len(idx), 100.0),
              "min_modulation_db": np.full(len(idx), 1.75)}
    got = switching.takeovers(st, rooms, t_end, idx, room_of, np.full(len(idx), 1000), tuning)

    # only those talking now, and sounding like speech, count
    holder_mod = np.where(st.holder[room_of] >= 0,
                          st.modulation_db[np.maximum(st.holder[room_of], 0)], 0.0)
    evidence = np.where((1000 - st.last_active_ms[idx] <= 100)
                        & ((st.modulation_db[idx] >= 1.75) | (holder_mod < 1.75)),
                        st.evidence_ms[idx], 0.0)
    large = np.bincount(room_of)[room_of] >= switching.NEWCOMER_ROOM_SIZE
    evidence = np.where(st.has_held[idx] | ~large, evidence,
                        np.maximum(evidence - st.tuning["newcomer_speech_ms"][room_of], 0.0))
    want, n_outlasted = [], 0
    for r, (room_t, holder) in zip(rooms.tolist(), zip(t_end, st.holder[rooms])):
        mine = room_of == r
        best = evidence[mine].max()
        turn = room_t - st.floor_since_ms[r]
        long_ms = st.tuning["long_turn_ms"][r]
        hold = st.tuning["hold_ms"][r] + st.tuning["long_turn_hold_ms"][r] * min(
            max((turn - long_ms) / long_ms, 0.0), 1.0)
        quiet = holder < 0 or room_t - st.last_active_ms[holder] >= hold
        need = st.tuning["min_speech_ms" if quiet else "interrupt_ms"][r]
        slots = idx[mine]
        outlasted = np.array([
            holder >= 0 and e >= st.tuning["min_speech_ms"][r]
            and room_t - st.last_active_ms[holder] >= st.tuning["outlast_ms"][r]
            and st.loud_since_ms[s] != NOT_LOUD_MS
            and (room_t - st.loud_since_ms[s] + room_t - st.last_active_ms[holder]
                 >= st.tuning["outlast_total_ms"][r])
            for s, e in zip(slots, evidence[mine])], dtype=bool)
        if not (best > 0 and best >= need):
            if not outlasted.any():
                continue
            n_outlasted += 1  # the room changes because of those; most evidence wins it
        want.append((r, int(slots[np.lexsort((-st.level_smooth[slots],
                                              -evidence[mine]))[0]])))
    return got, want, n_outlasted


@pytest.mark.parametrize("seed", range(10))
def test_takeover_winners_of_all_rooms_equal_one_room_at_a_time(seed):
    """switching.takeovers picks every changing room's new holder with one sort; the
    reference scans the batch once per room. Evidence and levels tie often here."""
    got, want, _ = _takeovers_and_reference(seed, [0.6, 0.15, 0.15, 0.1], 0.5, [0, 1000])
    assert len(want) > 3
    assert got == want


@pytest.mark.parametrize("seed", range(5))
def test_interrupters_that_outlasted_the_holder_take_the_floor_as_one_room_at_a_time(seed):
    """Holders silent for 300 ms (past outlast_ms, short of hold_ms), challengers with
    turn-change evidence that started 1.5 s or 0.5 s ago: only the former may switch."""
    got, want, n_outlasted = _takeovers_and_reference(seed, [0.5, 0.25, 0.25, 0.0], 1.0,
                                                      [700, 1000], held_share=1.0)
    assert n_outlasted >= 2
    assert got == want


def _forwarding_run(seed: int, prefilter: bool, monkeypatch, kernel: str | None = None
                    ) -> tuple[list, dict, list]:
    """Moving talkers in rooms with small forwarding sets, cameras turned off and on, pins,
    N changed, leaves and joins. ``prefilter`` False: every refresh runs (the reference),
    on the numpy path (the compiled kernel has its own prefilter, which the default
    engine runs). ``kernel``: the path to run ("c" or "numpy"), else the default."""
    if not prefilter:
        monkeypatch.setattr(forwarding, "unchanged",
                            lambda st, rooms, started: np.zeros(len(rooms), bool))
        kernel = "numpy"
    if kernel is not None:
        monkeypatch.setattr(engine_module, "KERNEL", kernel)
    rng = np.random.default_rng(seed)
    eng = Engine()
    tunings = [PROFILES[name].replace(forwarding_size=int(rng.integers(1, 4)),
                                      forwarding_min_ms=float(rng.choice([0, 400, 2000])))
               for name in ("meeting", "podcast", "debate") * 3]
    rooms = [eng.add_room(t, ranking_phase_ms=int(rng.integers(0, 1000))) for t in tunings]
    slots = {r: [eng.add_participant(r) for _ in range(int(rng.integers(2, 8)))] for r in rooms}
    out: list[ev.Event] = []
    for k in range(800):
        t = k * 20
        r = rooms[int(rng.integers(len(rooms)))]
        s = slots[r][int(rng.integers(len(slots[r])))]
        u = rng.random()
        if u < 0.03:
            out += eng.set_video(s, not eng.st.video[s], t)
        elif u < 0.04:
            out += eng.set_pinned(r, s if eng.st.pinned[r] < 0 else -1, t)
        elif u < 0.045:
            eng.set_tuning(r, eng.tuning(r).replace(forwarding_size=int(rng.integers(1, 4))))
        elif u < 0.05 and len(slots[r]) > 1:
            slots[r].remove(s)
            out += eng.remove_participant(s, t)
        elif u < 0.055:
            slots[r].append(eng.add_participant(r))
        elif u < 0.06:
            out += eng.set_muted(s, not eng.st.muted[s], t)
        elif u < 0.065:  # a failover: the room's decisions come from another process
            video = [m for m in slots[r] if eng.st.video[m]]
            keep = list(rng.permutation(video)[:eng.tuning(r).forwarding_size])
            main = int(rng.choice(slots[r]))
            eng.restore_decisions(r, t, shown=main, holder=main, pinned=-1, presenters=[],
                                  forwarding=[int(m) for m in keep])
        # one to three talkers per room, changing often
        lv_slots, dbov, voice = [], [], []
        for room in rooms:
            for s in slots[room]:
                loud = rng.random() < 0.3
                lv_slots.append(s)
                dbov.append(-float(rng.integers(15, 35) if loud else rng.integers(50, 80)))
                voice.append(int(loud))
        out += eng.step(_level_wave(rooms, t, lv_slots, dbov, voice))
    st = eng.st
    state = _state_copy(st)
    lists = [st.forwarding, st.forwarding_since, st.last_forwarding]
    return out, state, lists


@pytest.mark.parametrize("seed", range(4))
def test_every_refresh_the_prefilter_skips_would_change_nothing(seed, monkeypatch):
    """Wherever ``forwarding.unchanged`` lets Engine.step skip a refresh (a room whose one
    starter it clears), that refresh, run on a copy of the state, makes no event and
    leaves the set, its times and the last one sent as they were. On the numpy path: the
    compiled kernel judges the same without calling it (the next test checks it)."""
    checked = []
    prefilter = forwarding.unchanged

    def checking(st, rooms, started):
        skip = prefilter(st, rooms, started)
        alone = np.bincount(rooms)[rooms] == 1
        for room, slot in zip(rooms[skip & alone].tolist(), started[skip & alone].tolist()):
            copy = copy_module.deepcopy(st)
            assert forwarding.refresh(copy, room, int(st.room_t_ms[room]), [slot]) is None
            assert (copy.forwarding[room], copy.forwarding_since[room],
                    copy.last_forwarding[room]) == (st.forwarding[room],
                                                    st.forwarding_since[room],
                                                    st.last_forwarding[room])
            checked.append(room)
        return skip

    monkeypatch.setattr(forwarding, "unchanged", checking)
    _forwarding_run(seed, True, monkeypatch, kernel="numpy")
    assert len(checked) > 50


@pytest.mark.parametrize("seed", range(4))
def test_forwarding_prefilter_skips_only_refreshes_that_change_nothing(seed, monkeypatch):
    """Engine.step leaves out the forwarding refreshes that ``forwarding.unchanged`` (or
    the compiled kernel's equivalent, on the default path) says would change nothing; the
    reference runs them all."""
    fast, fast_state, fast_lists = _forwarding_run(seed, True, monkeypatch)
    general, general_state, general_lists = _forwarding_run(seed, False, monkeypatch)
    assert sum(isinstance(e, ev.ForwardingChange) for e in fast) > 50
    assert fast == general
    assert fast_lists == general_lists
    for name, a in fast_state.items():
        np.testing.assert_array_equal(a, general_state[name], err_msg=name)


def test_events_made_by_columns_equal_events_made_one_by_one():
    """dsp.events.many (a column per field, for the engine's bulk events) makes the same
    frozen events as calling the class."""
    rows = {ev.SpeakingChange: [(3, 40, 7, True), (4, 60, 9, False)],
            ev.ActiveSpeakersUpdate: [(1, 20, (5, 6), (-20.5, -31.0), (True, False),
                                       (0.5, 0.25)), (2, 20, (), (), (), ())],
            ev.SwitchDecision: [(1, 20, 5, -1, ev.FIRST_SPEAKER, -20.5, 5, 0, True)]}
    for cls, values in rows.items():
        made = ev.many(cls, *(list(column) for column in zip(*values)))
        assert made == [cls(*row) for row in values]
        assert [hash(e) for e in made] == [hash(cls(*row)) for row in values]
        assert [repr(e) for e in made] == [repr(cls(*row)) for row in values]
        with pytest.raises(dataclasses.FrozenInstanceError):
            made[0].room = 0
    assert ev.many(ev.SpeakingChange, [], [], [], []) == []


@pytest.mark.parametrize("field,value", [("forwarding_size", 0), ("evidence_decay", -1.0)])
def test_tuning_the_engine_cannot_run_is_refused_by_name(field, value):
    eng = Engine()
    room = eng.add_room()
    before = eng.tuning(room)
    with pytest.raises(ValueError, match=field):
        eng.set_tuning(room, before.replace(**{field: value}))
    assert eng.tuning(room) == before
    with pytest.raises(ValueError, match=field):
        eng.add_room(before.replace(**{field: value}))
    assert eng.add_room() == room + 1  # the refused room took no index


@pytest.mark.parametrize("speaking,activity_share,run_start", [
    (True, 0.9, 1000), (False, 0.3, 1000), (False, 0.0, NEVER_MS)])
def test_a_restored_run_counts_from_the_restore_not_from_never(speaking, activity_share,
                                                              run_start):
    """A participant restored mid-run (activity above the onset reset) starts no new run
    with its next frame: without a start, it would count as having talked forever (and
    outlast the holder at once)."""
    eng = Engine()
    room = eng.add_room()
    slot = eng.add_participant(room)
    eng.restore_participant(slot, 1000, video=True, muted=False, speaking=speaking,
                            noise_floor_dbov=-60.0, level_dbov=-30.0,
                            activity_share=activity_share)
    assert eng.st.run_start_ms[slot] == run_start


@pytest.mark.parametrize("seed", range(5))
def test_ranking_events_built_by_row_length_come_in_row_order(seed):
    """_active_speakers_updates groups rows by length to build them; the events must still
    be those of the rows, each cut at its own length, in the rows' order."""
    rng = np.random.default_rng(seed)
    n_rows, width = 40, 6
    n = rng.integers(0, width + 1, n_rows)
    columns = (rng.integers(0, 500, (n_rows, width)), rng.normal(-30, 5, (n_rows, width)),
               rng.random((n_rows, width)) < 0.5, rng.random((n_rows, width)))
    rooms, t_ms = rng.permutation(n_rows), rng.integers(0, 10_000, n_rows)
    got = engine_module._active_speakers_updates(rooms, t_ms, n, *columns)
    want = [ev.ActiveSpeakersUpdate(int(rooms[i]), int(t_ms[i]),
                                    *(tuple(c[i, :n[i]].tolist()) for c in columns))
            for i in range(n_rows)]
    assert len(set(n.tolist())) > 3
    assert got == want


def _mixed_run(kernel: str, seed: int, monkeypatch) -> tuple[list, dict]:
    """Rooms of every profile and algorithm (ours, DSI, loudest) in one wave or a wave
    per room, with packet loss and long gaps (the no-audio timeout), unknown voice,
    mutes, cameras, pins, presenters, tuning changes, leaves, joins and a restored room,
    on the level path ``kernel``."""
    monkeypatch.setattr(engine_module, "KERNEL", kernel)
    rng = np.random.default_rng(seed)
    eng = Engine()
    assert eng.kernel == kernel
    tunings = [PROFILES[name].replace(algorithm=algorithm,
                                      active_speakers=int(rng.integers(1, 6)),
                                      forwarding_size=int(rng.integers(1, 5)))
               for name in ("meeting", "podcast", "debate")
               for algorithm in (SPEAKERSWITCH, SPEAKERSWITCH, DSI, LOUDEST)]
    rooms = [eng.add_room(t, ranking_phase_ms=int(rng.integers(0, 1000))) for t in tunings]
    slots = {r: [eng.add_participant(r) for _ in range(int(rng.integers(1, 9)))] for r in rooms}
    talkers = {r: {0} for r in rooms}
    gap = {r: -1 for r in rooms}   # a participant index whose packets stop for a while
    out: list[ev.Event] = []
    leaking_steps = quick_steps = impulse_steps = 0
    for k in range(900):
        t = k * 20
        r = rooms[int(rng.integers(len(rooms)))]
        s = slots[r][int(rng.integers(len(slots[r])))]
        u = rng.random()
        if u < 0.02:
            out += eng.set_muted(s, not eng.st.muted[s], t)
        elif u < 0.04:
            out += eng.set_video(s, not eng.st.video[s], t)
        elif u < 0.045:
            out += eng.set_pinned(r, s if eng.st.pinned[r] < 0 else -1, t)
        elif u < 0.05:
            out += eng.set_presenting(s, s not in eng.st.presenters[r], t)
        elif u < 0.055:
            eng.set_tuning(r, eng.tuning(r).replace(active_speakers=int(rng.integers(1, 6))))
        elif u < 0.065 and len(slots[r]) > 1:
            slots[r].remove(s)
            out += eng.remove_participant(s, t)
        elif u < 0.075:
            slots[r].append(eng.add_participant(r))
        elif u < 0.078:
            main = int(rng.choice(slots[r]))
            eng.restore_decisions(r, t, shown=main, holder=main, pinned=-1, presenters=[],
                                  forwarding=[main])
        if rng.random() < 0.04:
            r = rooms[int(rng.integers(len(rooms)))]
            talkers[r] = set(rng.integers(0, 8, int(rng.integers(0, 3))).tolist())
        if rng.random() < 0.01:
            r = rooms[int(rng.integers(len(rooms)))]
            gap[r] = -1 if gap[r] >= 0 else int(rng.integers(0, 8))
        wave_rooms = [r for r in rooms if rng.random() < 0.9]
        frames = []
        for r in wave_rooms:
            first_dbov = None
            for i, s in enumerate(slots[r]):
                if i == gap[r] or rng.random() < 0.04:
                    continue  # packet loss
                loud = i in talkers[r]
                dbov = -float(rng.integers(12, 38) if loud else rng.integers(45, 90))
                if rng.random() < 0.01:
                    dbov = -127.0  # digital silence
                voice = int(rng.choice([-1, 0, 1])) if rng.random() < 0.2 else int(loud)
                if i == 0:
                    first_dbov = dbov
                elif i == 1 and r % 2 == 0 and first_dbov is not None and first_dbov > -40:
                    # the first one's voice leaking into this microphone (one room)
                    dbov, voice = first_dbov - float(rng.integers(3, 11)), 1
                frames.append((r, s, dbov, voice))
        per_room = k % 7 == 3
        for wave in ([[r] for r in wave_rooms] if per_room else [wave_rooms]):
            if not wave:
                continue
            mine = [f for f in frames if f[0] in wave]
            if rng.random() < 0.5:  # not in slot order, as a client may send them
                mine = [mine[j] for j in rng.permutation(len(mine))]
            out += eng.step(_level_wave(wave, t, [f[1] for f in mine],
                                        [f[2] for f in mine], [f[3] for f in mine]))
            st = eng.st  # a participant whose frames follow its room's loudest one's
            leaking_steps += bool(((st.follow_db < 0.5 * st.move_db) & (st.move_db >= 2.0)).any())
            # a room in a quick exchange (a short turn answering a short turn)
            quick_steps += bool(((st.previous_holder >= 0)
                                 & (st.previous_turn_ms < PROFILES["meeting"].reply_turn_ms)
                                 ).any())
            impulse_steps += bool(st.impulse.any())  # a sound taken for a cough
    state = _state_copy(eng.st)
    state["ranked"] = eng.st.ranked.copy()
    state["leaking_steps"] = np.array(leaking_steps)
    state["quick_steps"] = np.array(quick_steps)
    state["impulse_steps"] = np.array(impulse_steps)
    return out, state


@pytest.mark.skipif(engine_module._kernel is None, reason="dsp._kernel is not built")
@pytest.mark.parametrize("seed", range(4))
def test_the_compiled_kernel_decides_as_the_numpy_path(seed, monkeypatch):
    """dsp/_kernel.c (Engine.step's default when built) makes exactly the events and
    the state that the numpy path makes, bit for bit."""
    fast, fast_state = _mixed_run("c", seed, monkeypatch)
    reference, reference_state = _mixed_run("numpy", seed, monkeypatch)
    kinds = {type(e) for e in reference}
    assert {ev.SpeakingChange, ev.FloorChange, ev.ActiveSpeakersUpdate,
            ev.ForwardingChange} <= kinds, kinds
    assert len(reference) > 500
    assert reference_state["leaking_steps"] > 50  # frames taken for a leak: in both paths
    assert reference_state["quick_steps"] > 50    # rooms in a quick exchange
    assert reference_state["impulse_steps"] > 50  # sounds taken for coughs
    assert fast == reference
    for name, a in fast_state.items():
        np.testing.assert_array_equal(a, reference_state[name], err_msg=name)
        assert a.tobytes() == reference_state[name].tobytes(), name


def test_dsp_kernel_numpy_forces_the_numpy_path():
    """DSP_KERNEL=numpy (not a SPEAKERSWITCH_* name: serve refuses unknown ones) makes
    the engine run numpy even where the kernel is built."""
    code = "import dsp.engine as e; print(e.KERNEL, e.Engine().kernel)"
    env = {k: v for k, v in os.environ.items() if k != "DSP_KERNEL"}
    forced = subprocess.run([sys.executable, "-c", code], env={**env, "DSP_KERNEL": "numpy"},
                            capture_output=True, text=True, check=True).stdout.split()
    assert forced == ["numpy", "numpy"]
    default = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, check=True).stdout.split()
    assert default == ["c" if engine_module._kernel is not None else "numpy"] * 2


@pytest.mark.skipif(engine_module._kernel is None, reason="dsp/_kernel.c is not built here")
def test_the_kernels_constants_are_dsps():
    """dsp/_kernel.c compiles in the constants of the rule it implements: a change to one
    of them in Python must be made in C too, or the two paths would part."""
    from dsp import activity, rfc6464, state
    c = engine_module._kernel.CONSTANTS
    python = {"NEVER_MS": state.NEVER_MS, "NOT_LOUD_MS": state.NOT_LOUD_MS,
              "NOT_RANKED": state.NOT_RANKED,
              "SILENCE_DBOV": rfc6464.SILENCE_DBOV,
              "SMOOTH_FLOOR_DBOV": activity.SMOOTH_FLOOR_DBOV,
              "INITIAL_FLOOR_DBOV": activity.INITIAL_FLOOR_DBOV,
              "INITIAL_SPEECH_MAX_DBOV": activity.INITIAL_SPEECH_MAX_DBOV,
              "ONSET_RESET_ACTIVITY": activity.ONSET_RESET_ACTIVITY,
              "ONSET_MODULATION_DB": state.ONSET_MODULATION_DB,
              "LEAK_MIN_DB": activity.LEAK_MIN_DB,
              "LEAK_FOLLOW_SHARE": activity.LEAK_FOLLOW_SHARE,
              "LEAK_MIN_MOVE_DB": activity.LEAK_MIN_MOVE_DB}
    python.update({name: getattr(activity, name) for name in dir(activity)
                   if name.startswith(("ECHO_", "IMPULSE_"))})
    assert set(c) == set(python)
    for name, value in python.items():  # the state is float32: compare as float32
        assert np.float32(c[name]) == np.float32(value), name

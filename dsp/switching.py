"""Who holds the floor, and who is shown: the switching logic, in one place.

Floor (audio). Each participant gathers *evidence*: media time during which it is speaking
and louder (smoothed level) than the floor holder by a margin. Evidence drains when that
stops, so scattered interjections do not add up. A challenger takes the floor when its
evidence reaches
  - ``min_speech_ms`` if the holder has been silent for ``hold_ms`` (a turn change, the
    common case: switch fast) and its voice is not coming back in this very frame, or if
    nobody holds the floor; in a quick exchange (the holder's turn and the one before it
    both under ``reply_turn_ms``) the previous holder's answer, begun after the holder's
    last word, needs only ``reply_hold_ms`` of that silence;
  - ``interrupt_ms`` while the holder is still talking or only pausing briefly (a 'yeah',
    a cough or a failed interruption never lasts that long);
  - ``min_speech_ms`` also once the holder has been silent for ``outlast_ms`` and the
    challenger's talk plus that silence reach ``outlast_total_ms``: an interrupter that
    outlasted the holder need not wait out the whole ``hold_ms`` (in overlapping turn
    changes that wait was most of the switch delay), and the shorter the overlap was, the
    longer the silence it must outlast.
In a room of ``NEWCOMER_ROOM_SIZE`` or more, a challenger that has never held the floor
needs ``newcomer_speech_ms`` more evidence than these.
A challenger must also sound like speech: its level modulated by syllables
(``min_modulation_db``), which a breath before a turn or a hum is not, if the holder's is;
and its sound must not be an impulse that starts at its loudest and dies away (a cough, a
knock: ``activity.IMPULSE_DROP_DB``).
This is evidence accumulated over time instead of a fixed hold after each switch, the
shape Volfin & Cohen argue for (Computer Speech & Language 27 (2013) 895-910), kept simple
enough to vectorize over every room of a batch.

A muted participant, or one sending digital silence, is no speaker: it gathers no evidence.
As holder, a muted one keeps the floor only until someone else talks for
``min_speech_ms``; one sending digital silence, only ``silent_hold_ms`` after its last
speech (zeros between two words, from a noise gate or DTX, are not a mute).

Shown (video). The pinned participant if any; else the floor holder if its camera is on;
else whoever was shown, if its camera is still on (the feed stays on the last speaker with
video); else the most recently active participant with video on. While someone presents
(screen share), the presentation is the main feed and the shown speaker goes to the
thumbnail slot; the latest presenter wins, and when it stops the previous one comes back.
"""
from __future__ import annotations

import numpy as np

from . import events as ev
from .state import LONG_TURN_MS, NEVER_MS, NO_SLOT, NOT_LOUD_MS, EngineState, Rows

NEWCOMER_ROOM_SIZE = 8
"""Rooms of at least this many participants (an audience, a space) ask more evidence of
those who have never held the floor (``Tuning.newcomer_speech_ms``): there, most never
speak, and their coughs and 'yeah's outnumber their first turns. In a meeting of a few,
everyone is a likely speaker and a first turn is not delayed."""


def accumulate_evidence(st: EngineState, idx: np.ndarray, room_of: np.ndarray,
                        active: np.ndarray, dt_ms: np.ndarray, t_end_ms: np.ndarray,
                        tuning: dict[str, np.ndarray], rows: Rows | None = None) -> None:
    """Add or drain the evidence of participants ``idx`` (all of their rooms' slots;
    ``rows``: the same as a slice if contiguous), whose frames end at ``t_end_ms``, and
    note when each speaker first sounds comparably loud to its holder (``loud_since_ms``).

    Only frames with speech add evidence; a speaker's unvoiced frames keep it; it drains
    once the speaker stops. (Counting the release tail of the speaking flag would let a
    remark win the floor after its speaker has already fallen silent.)

    Evidence at 0 stays there unless its participant dominates (it drains, with
    ``evidence_decay`` >= 0): only the few speakers and the few with evidence are looked
    at, not the whole batch."""
    rows = idx if rows is None else rows
    # the holder's score per room (a muted or silent holder scores nothing)
    has_holder = st.holder >= 0
    safe_holder = np.where(has_holder, st.holder, 0)
    holder_out = st.muted[safe_holder] | st.silent[safe_holder]
    room_score = np.where(has_holder & ~holder_out, st.level_smooth[safe_holder], -np.inf)
    # talk over the holder counts from the first run within overlap_margin_db of it
    speaking = st.speaking[rows]
    loud_since = np.where(speaking, st.loud_since_ms[rows], NOT_LOUD_MS)
    a = np.flatnonzero(active & (loud_since == NOT_LOUD_MS))
    a = a[st.level_smooth[idx[a]]
          >= room_score[room_of[a]] - st.tuning["overlap_margin_db"][room_of[a]]]
    loud_since[a] = t_end_ms[a] - st.voiced_run_ms[idx[a]].astype(np.int64)
    st.loud_since_ms[rows] = loud_since
    evidence = st.evidence_ms[rows]  # (maybe a view: every value is computed before writing)
    # everyone with evidence drains...
    e = np.flatnonzero(evidence)
    drained = np.maximum(evidence[e] - tuning["evidence_decay"][e] * dt_ms[e], 0.0)
    drained[idx[e] == st.holder[room_of[e]]] = 0.0
    # ...but for the dominant challengers
    k = np.flatnonzero(speaking)
    slot, room = idx[k], room_of[k]
    k = k[(slot != st.holder[room]) & ~st.muted[slot]
          & (st.level_smooth[slot] > room_score[room] + tuning["switch_margin_db"][k])]
    run_ms, step_ms = st.voiced_run_ms[idx[k]], dt_ms[k]
    # A run confirmed on this frame brings all its frames at once.
    speech_ms = np.where(run_ms - step_ms < tuning["min_run_ms"][k], run_ms, step_ms)
    credited = np.where(active[k], evidence[k] + speech_ms, evidence[k])
    st.evidence_ms[idx[e]] = drained
    st.evidence_ms[idx[k]] = credited


def takeovers(st: EngineState, rooms: np.ndarray, t_end_ms: np.ndarray, idx: np.ndarray,
              room_of: np.ndarray, slot_t_end_ms: np.ndarray, tuning: dict[str, np.ndarray],
              rows: Rows | None = None) -> list[tuple[int, int]]:
    """Rooms (of ``rooms``) whose floor changes now, with the new holder's slot."""
    rows = idx if rows is None else rows
    # the evidence of those talking now: few challengers have any (none has less than 0),
    # so who is talking is looked at for those only
    stored = st.evidence_ms[rows]
    k = np.flatnonzero(stored)
    k = k[slot_t_end_ms[k] - st.last_active_ms[idx[k]] <= tuning["takeover_recency_ms"][k]]
    # ...and, in a room whose holder speaks with modulated levels, those whose levels are
    # modulated too (levels that are smooth for everyone, e.g. averaged by the sender, are
    # not judged on it)
    holder_k = st.holder[room_of[k]]
    min_mod = tuning["min_modulation_db"][k]
    k = k[((st.modulation_db[idx[k]] >= min_mod) | (holder_k < 0)
           | (st.modulation_db[np.maximum(holder_k, 0)] < min_mod))
          & ~st.impulse[idx[k]]]  # ...and none whose sound is a cough or a knock
    evidence = np.zeros(len(idx), dtype=np.float32)
    evidence[k] = stored[k]
    # in a large room, one who has never held its floor needs newcomer_speech_ms more
    new = k[~st.has_held[idx[k]]]
    if new.size:  # (few: the room's size is looked up for these only)
        size = np.fromiter((len(st.room_slots[r]) for r in room_of[new].tolist()), np.int64,
                           new.size)
        new = new[size >= NEWCOMER_ROOM_SIZE]
        evidence[new] = np.maximum(
            evidence[new] - st.tuning["newcomer_speech_ms"][room_of[new]], 0.0)
    best = np.zeros(st.n_rooms, dtype=np.float32)
    np.maximum.at(best, room_of[k], evidence[k])
    best_r = best[rooms]
    holder = st.holder[rooms]
    safe = np.where(holder >= 0, holder, 0)
    holder_silent_ms = t_end_ms - st.last_active_ms[safe]
    hold_ms = st.tuning["hold_ms"][rooms]
    # a long turn: its pauses are longer, and so is its hold (Tuning.long_turn_ms)
    turn_ms = (t_end_ms - st.floor_since_ms[rooms]).astype(np.float64)
    long_ms = st.tuning["long_turn_ms"][rooms]
    hold_ms = hold_ms + st.tuning["long_turn_hold_ms"][rooms] * np.clip(
        (turn_ms - long_ms) / np.maximum(long_ms, 1.0), 0.0, 1.0)
    # a quick exchange: the previous holder answering (talking since the holder's last
    # word, not over it) a short turn that answered its own
    previous = st.previous_holder[rooms]
    safe_previous = np.maximum(previous, 0)
    reply_turn = st.tuning["reply_turn_ms"][rooms]
    reply = ((previous >= 0) & (t_end_ms - st.floor_since_ms[rooms] < reply_turn)
             & (st.previous_turn_ms[rooms] < reply_turn)
             & (st.evidence_ms[safe_previous] > 0)
             & (st.run_start_ms[safe_previous] > st.last_active_ms[safe]))
    if reply.any():
        hold_ms = np.where(reply, np.minimum(hold_ms, st.tuning["reply_hold_ms"][rooms]),
                           hold_ms)
    # a holder whose voice is back (speech-like frames, not yet a 60 ms run) keeps the
    # floor when its hold runs out: the listener who spoke into its pause has not won it
    quiet = ((holder < 0) | st.muted[safe]
             | (st.silent[safe] & (holder_silent_ms >= st.tuning["silent_hold_ms"][rooms]))
             | ((holder_silent_ms >= hold_ms)
                & (st.voiced_run_ms[safe] == 0)))
    need = np.where(quiet, st.tuning["min_speech_ms"][rooms], st.tuning["interrupt_ms"][rooms])
    ready = (best_r > 0) & (best_r >= need)
    # a challenger still talking outlast_ms after the holder stopped, whose talk and the
    # holder's silence add up to outlast_total_ms, needs no more than the turn-change
    # evidence. The room then goes, as always, to the challenger with most evidence: the
    # one that outlasted may only be carrying the echo of the real newcomer. (A room without a holder, or with a muted or silent one, is
    # quiet already: ready or not by evidence alone.)
    c = k[evidence[k] >= st.tuning["min_speech_ms"][room_of[k]]]
    if c.size:
        r_c = room_of[c]
        t_c = slot_t_end_ms[c]
        holder_silent = t_c - st.last_active_ms[st.holder[r_c]]
        loud_since = st.loud_since_ms[idx[c]]
        out = ((holder_silent >= st.tuning["outlast_ms"][r_c])
               & (loud_since != NOT_LOUD_MS)
               & (t_c - loud_since + holder_silent >= st.tuning["outlast_total_ms"][r_c]))
        if out.any():
            outlasted = np.zeros(st.n_rooms, dtype=bool)
            outlasted[r_c[out]] = True
            ready |= outlasted[rooms]
    changing = rooms[ready]
    if len(changing) == 0:
        return []
    # the winner of every changing room with one sort (a scan of the batch per room was
    # quadratic when thousands of rooms changed at once): by room, most evidence, then
    # the louder one, then the first in slot order
    in_changing = np.zeros(st.n_rooms, dtype=bool)
    in_changing[changing] = True
    k = np.flatnonzero(in_changing[room_of])
    k = k[np.lexsort((-st.level_smooth[idx[k]], -evidence[k], room_of[k]))]
    first = k[np.flatnonzero(np.diff(room_of[k], prepend=-1))]
    winner = dict(zip(room_of[first].tolist(), idx[first].tolist()))
    return [(r, winner[r]) for r in changing.tolist()]


def best_eligible(st: EngineState, room: int, exclude: int = NO_SLOT) -> int:
    """The most recently active participant of ``room`` with video on, or NO_SLOT."""
    cands = [s for s in st.room_slots[room] if s != exclude and st.video[s]]
    if not cands:
        return NO_SLOT
    last = st.last_active_ms[cands]
    return cands[int(np.argmax(last))]


def shown_target(st: EngineState, room: int) -> int:
    pin = int(st.pinned[room])
    if pin >= 0:
        return pin
    holder = int(st.holder[room])
    if holder >= 0 and st.video[holder]:
        return holder
    shown = int(st.shown[room])
    if shown >= 0 and st.video[shown]:
        return shown
    return best_eligible(st, room)


def set_holder(st: EngineState, room: int, slot: int, t_ms: int) -> ev.FloorChange | None:
    """Give ``slot`` (or nobody) the floor; the room's evidence starts over."""
    previous = int(st.holder[room])
    if slot == previous:
        return None
    st.holder[room] = slot
    if slot >= 0:
        st.has_held[slot] = True
    since = int(st.floor_since_ms[room])
    st.previous_holder[room] = previous
    st.previous_turn_ms[room] = t_ms - since if since != NEVER_MS and previous >= 0 \
        else LONG_TURN_MS
    st.floor_since_ms[room] = t_ms
    st.evidence_ms[st.room_slots[room]] = 0.0
    if slot < 0:
        return ev.FloorChange(room, t_ms, NO_SLOT, previous, False, -127.0, 0)
    return ev.FloorChange(room, t_ms, slot, previous, bool(st.video[slot]),
                          float(st.level_smooth[slot]), int(st.onset_ms[slot]))


def update_shown(st: EngineState, room: int, t_ms: int, reason: str
                 ) -> ev.SwitchDecision | None:
    """Re-evaluate the main feed after a change of floor, video, pin or membership."""
    target = shown_target(st, room)
    previous = int(st.shown[room])
    if target == previous:
        return None
    st.shown[room] = target
    if previous < 0 and reason == ev.DOMINANT_SPEAKER:
        reason = ev.FIRST_SPEAKER
    by_speech = reason in (ev.FIRST_SPEAKER, ev.DOMINANT_SPEAKER) and target >= 0
    return ev.SwitchDecision(
        room, t_ms, target, previous, reason,
        float(st.level_smooth[target]) if target >= 0 else -127.0,
        int(st.holder[room]), int(st.onset_ms[target]) if by_speech else 0,
        bool(st.presenters[room]))


def presenter(st: EngineState, room: int) -> int:
    return st.presenters[room][-1] if st.presenters[room] else NO_SLOT


def set_presenting(st: EngineState, room: int, slot: int, on: bool, t_ms: int
                   ) -> ev.PresentationChange | None:
    """Start or stop ``slot``'s presentation; an event if the main feed's changes."""
    before = presenter(st, room)
    presenters = st.presenters[room]
    if slot in presenters:
        presenters.remove(slot)
    if on:
        presenters.append(slot)
    after = presenter(st, room)
    return ev.PresentationChange(room, t_ms, after, before) if after != before else None

"""The forwarding set (last-N): whose camera the media server should forward.

SFUs cannot forward every camera to every viewer (jitsi-videobridge calls this last-N).
The set holds at most N participants with video on: the one in the main feed (pinned or
shown) first, then the others by how recently they started speaking. A participant enters
only by starting to speak (or by being pinned or shown); once in, it stays for at least
``forwarding_min_ms`` so that a remark does not make the SFU start and stop a stream
(each start costs a keyframe); when the set is full, the least recent speaker that has been
in it that long makes room, and if nobody has, the newcomer waits for its next turn.
"""
from __future__ import annotations

import numpy as np

from . import events as ev
from .state import NO_SLOT, EngineState, grown_table


def refresh(st: EngineState, room: int, t_ms: int, started: list[int] | tuple[int, ...] = ()
            ) -> ev.ForwardingChange | None:
    """Admit the participants of ``started`` (who just started speaking), keep the main
    feed's participant in, drop those who cannot be forwarded; an event if the list changed."""
    n = int(st.tuning["forwarding_size"][room])
    min_ms = st.tuning["forwarding_min_ms"][room]
    members = st.forwarding[room]
    since = st.forwarding_since[room]
    slot_room = st.slot_room  # membership in O(1), not a scan of a big room's member list
    for s in [s for s in members if slot_room[s] != room or not st.video[s]]:
        members.remove(s)
        del since[s]
    pin = int(st.pinned[room])
    main = pin if pin >= 0 else int(st.shown[room])

    def admit(slot: int, force: bool) -> None:
        if slot in members:
            members.remove(slot)
            members.insert(0, slot)
            return
        if len(members) >= n:
            victims = [s for s in reversed(members)
                       if s != main and (force or t_ms - since[s] >= min_ms)]
            if not victims:
                return
            members.remove(victims[0])
            del since[victims[0]]
        members.insert(0, slot)
        since[slot] = t_ms

    for s in started:
        if st.video[s] and slot_room[s] == room:
            admit(s, force=False)
    if main != NO_SLOT and st.video[main] and main not in members:
        admit(main, force=True)
    while len(members) > n:  # N was lowered
        victim = next(s for s in reversed(members) if s != main)
        members.remove(victim)
        del since[victim]
    order = tuple(([main] if main in members else []) + [s for s in members if s != main])
    _copy(st, room, members, main)
    if order == st.last_forwarding[room]:
        return None
    st.last_forwarding[room] = order
    return ev.ForwardingChange(room, t_ms, order)


def _copy(st: EngineState, room: int, members: list[int], main: int) -> None:
    """Keep ``st.forwarded`` (the arrays ``unchanged`` reads) equal to the list."""
    st.forwarded = grown_table(st.forwarded, 0, len(members), NO_SLOT)
    row = st.forwarded[room]
    row[:] = NO_SLOT
    row[: len(members)] = members
    st.forwarded_main[room] = main


def unchanged(st: EngineState, rooms: np.ndarray, started: np.ndarray) -> np.ndarray:
    """Which of ``rooms`` ``refresh(st, room, t, [slot])`` would leave exactly as they are
    (no event, no change of state), ``started[i]`` being the one slot of ``rooms[i]``
    that started speaking (NO_SLOT: none); for all rooms at once, from arrays.

    Since its last refresh (the copy in ``st.forwarded``): no member may have left or
    turned its camera off, the main feed's participant must be the same and either in
    the set or without video, the set no larger than N; and the starter must be already
    first in the set (then ``refresh`` moves it to where it is) or have no video. Then the
    set, its order and the last one sent are all as that refresh left them, which it
    would leave again. Conservative: ``refresh`` decides the other rooms."""
    members = st.forwarded[rooms]
    listed = members >= 0
    listed_slot = np.where(listed, members, 0)
    stay = ~listed | ((st.slot_room[listed_slot] == rooms[:, None]) & st.video[listed_slot])
    pin = st.pinned[rooms]
    main = np.where(pin >= 0, pin, st.shown[rooms])
    main_kept = ((main < 0) | (members == main[:, None]).any(axis=1)
                 | ~st.video[np.maximum(main, 0)])
    starter_kept = ((started < 0) | (started == members[:, 0])
                    | ~st.video[np.maximum(started, 0)])
    return ((st.forwarded_main[rooms] == main) & stay.all(axis=1) & main_kept & starter_kept
            & (listed.sum(axis=1) <= st.tuning["forwarding_size"][rooms]))

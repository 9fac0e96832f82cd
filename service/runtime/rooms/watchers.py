"""Who follows a room: watchers subscribed from a snapshot or resumed after a sequence (from
the room's history, kept from its first watcher on), and their end when the room goes. The
events reach them through ``events.emit``."""
from __future__ import annotations

from collections import deque

from ...api import speakerswitch_pb2 as pb
from .model import Room, Watcher


def subscribe(room: Room, watcher: Watcher, history_events: int) -> None:
    """From now on (the room keeps its last ``history_events`` events from its first
    watcher on, for those that resume)."""
    if room.history is None:
        room.history = deque(maxlen=history_events)
    room.watchers.append(watcher)


def missed_after(room: Room, after_sequence: int) -> list[pb.RoomEvent]:
    """The retained events after ``after_sequence``, for a watcher that resumes; raises
    LookupError when those events are no longer all retained."""
    history = room.history or ()
    first = history[0].sequence if history else room.sequence + 1
    if after_sequence > room.sequence:
        raise LookupError(f"after_sequence {after_sequence} is past the room's last "
                          f"sequence {room.sequence}")
    if after_sequence + 1 < first:
        raise LookupError(f"events after sequence {after_sequence} are no longer retained "
                          f"(oldest kept: {first})")
    return [m for m in history if m.sequence > after_sequence]


def unsubscribe(room: Room, watcher: Watcher) -> None:
    if watcher in room.watchers:
        room.watchers.remove(watcher)


def close_watchers(room: Room) -> None:
    """The room is gone: each watcher that can be closed is (after its room_closed event)."""
    for w in room.watchers:
        close = getattr(w, "close", None)
        if close is not None:
            close()

"""What a room and a batch are: the room's bookkeeping beside its engine state, one request
with who sent it, the refusal of a tick, and the bounds every tick is held to."""
from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import NamedTuple, Protocol

import grpc
import numpy as np

from ...api import speakerswitch_pb2 as pb

MAX_ID_BYTES = 128
DEFAULT_DURATION_MS = 20
MAX_TIMESTAMP_MS = 2**53
"""Media time must fit a double exactly; far beyond any RTP-derived clock."""
TICK_DURATIONS_MS = (10, 20, 30)


class TickError(Exception):
    """A tick is refused: gRPC status code, field path, reason."""

    def __init__(self, code: grpc.StatusCode, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.code, self.field, self.message = code, field, message


Watcher = Callable[[pb.RoomEvent], bool]
"""Receives a room's events; returns False to be dropped (e.g. its queue is full)."""


RoomKey = tuple[str, str]
"""(tenant, room_id): the same room id under two tenants is two rooms."""


class Room:
    """A room's bookkeeping beside its engine state. A room is itself: compared by
    identity (and found fast in lists).

    Its media times and last activity (``last_t_ms``, ``last_audio_t_ms``, ``end_t_ms``,
    ``last_seen_s``) are read and written as attributes; while the registry steps the same
    rooms batch after batch as columns, the latest of them wait there (``kept``, a
    registry._SteadyRooms) and are written into the room on its first read."""

    def __init__(self, room_id: str, index: int, config: pb.RoomConfig,
                 slots: dict[str, int] | None = None, names: dict[int, str] | None = None,
                 roster: tuple[str, ...] = (), roster_slots: np.ndarray | None = None,
                 last_t_ms: int | None = None, last_audio_t_ms: int | None = None,
                 end_t_ms: int = 0, sequence: int = 0, last_seen_s: float = 0.0,
                 watchers: list[Watcher] | None = None, tenant: str = "",
                 history: deque[pb.RoomEvent] | None = None) -> None:
        self.room_id = room_id
        self.index = index
        self.config = config
        self.slots = {} if slots is None else slots
        self.names = {} if names is None else names
        self.roster = roster
        self.roster_slots = np.zeros(0, np.int64) if roster_slots is None else roster_slots
        self.kept: _Kept | None = None
        self._last_t_ms = last_t_ms
        self._last_audio_t_ms = last_audio_t_ms
        self._end_t_ms = end_t_ms
        self._last_seen_s = last_seen_s
        self.sequence = sequence
        self.watchers = [] if watchers is None else watchers
        self.tenant = tenant
        self.history = history
        """The room's last events, kept from its first Watch on, for subscribers that
        resume."""

    def __repr__(self) -> str:
        return f"Room({self.room_id!r}, index={self.index}, tenant={self.tenant!r})"

    def _settled(self) -> Room:
        kept = self.kept
        if kept is not None and kept.pending:
            kept.settle()
        return self

    @property
    def last_t_ms(self) -> int | None:
        return self._settled()._last_t_ms

    @last_t_ms.setter
    def last_t_ms(self, value: int | None) -> None:
        self._settled()._last_t_ms = value

    @property
    def last_audio_t_ms(self) -> int | None:
        return self._settled()._last_audio_t_ms

    @last_audio_t_ms.setter
    def last_audio_t_ms(self, value: int | None) -> None:
        self._settled()._last_audio_t_ms = value

    @property
    def end_t_ms(self) -> int:
        return self._settled()._end_t_ms

    @end_t_ms.setter
    def end_t_ms(self, value: int) -> None:
        self._settled()._end_t_ms = value

    @property
    def last_seen_s(self) -> float:
        return self._settled()._last_seen_s

    @last_seen_s.setter
    def last_seen_s(self, value: float) -> None:
        self._settled()._last_seen_s = value


class _Kept(Protocol):
    """What a room needs of the columns its times may wait in."""
    pending: bool

    def settle(self) -> None:
        """Write the waiting times into their rooms."""


class Batch(NamedTuple):
    """One StreamRequest with who sent it: the unit ``process_many`` steps together. (A
    named tuple: made for every message a server receives, in a third of the time of a
    frozen dataclass.)"""
    request: pb.StreamRequest
    now_s: float = 0.0
    """Wall clock of its arrival: dates room activity for idle collection only."""
    tenant: str = ""
    room_allowed: Callable[[str], bool] | None = None
    """The caller's room pattern; ticks of other rooms are refused."""
    raw: bytes | None = None
    """The request's bytes as received, if at hand (else it is serialized again)."""


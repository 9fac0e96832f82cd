"""What a room and a batch are: the room's bookkeeping beside its engine state, one request
with who sent it, the refusal of a tick, and the bounds every tick is held to."""
from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

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


@dataclass(eq=False)  # a room is itself: compared by identity (and found fast in lists)
class Room:
    room_id: str
    index: int
    config: pb.RoomConfig
    slots: dict[str, int] = field(default_factory=dict)
    names: dict[int, str] = field(default_factory=dict)
    roster: tuple[str, ...] = ()
    roster_slots: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    last_t_ms: int | None = None
    last_audio_t_ms: int | None = None
    end_t_ms: int = 0
    sequence: int = 0
    last_seen_s: float = 0.0
    watchers: list[Watcher] = field(default_factory=list)
    tenant: str = ""
    history: deque[pb.RoomEvent] | None = None
    """The room's last events, kept from its first Watch on, for subscribers that resume."""



@dataclass(frozen=True)
class Batch:
    """One StreamRequest with who sent it: the unit ``process_many`` steps together."""
    request: pb.StreamRequest
    now_s: float = 0.0
    """Wall clock of its arrival: dates room activity for idle collection only."""
    tenant: str = ""
    room_allowed: Callable[[str], bool] | None = None
    """The caller's room pattern; ticks of other rooms are refused."""
    raw: bytes | None = None
    """The request's bytes as received, if at hand (else it is serialized again)."""


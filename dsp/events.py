"""What the engine decides, in media time. Slots and rooms are engine indexes; the service
maps them to ids."""
from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import TypeVar

# Why the main video feed changed (names match the proto's SwitchReason without prefix).
FIRST_SPEAKER = "FIRST_SPEAKER"
DOMINANT_SPEAKER = "DOMINANT_SPEAKER"
VIDEO_ON = "VIDEO_ON"
VIDEO_OFF = "VIDEO_OFF"
LEFT = "LEFT"
PINNED = "PINNED"
UNPINNED = "UNPINNED"


@dataclass(frozen=True, slots=True)
class SpeakingChange:
    room: int
    t_ms: int
    slot: int
    speaking: bool


@dataclass(frozen=True, slots=True)
class FloorChange:
    """The dominant audio speaker changed (slot -1: nobody holds the floor)."""
    room: int
    t_ms: int
    slot: int
    previous: int
    has_video: bool
    score: float
    onset_ms: int


@dataclass(frozen=True, slots=True)
class SwitchDecision:
    """The main video feed changed to ``slot`` (-1: nobody)."""
    room: int
    t_ms: int
    slot: int
    previous: int
    reason: str
    score: float
    audio_slot: int
    onset_ms: int
    thumbnail: bool = False
    """True while a presentation holds the main feed: the speaker video goes to the
    thumbnail slot."""


@dataclass(frozen=True, slots=True)
class ActiveSpeakersUpdate:
    room: int
    t_ms: int
    slots: tuple[int, ...]
    levels_dbov: tuple[float, ...]
    speaking: tuple[bool, ...]
    activity: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class PresentationChange:
    """The main feed's presentation changed (slot -1: none, the speaker video is main)."""
    room: int
    t_ms: int
    slot: int
    previous: int


@dataclass(frozen=True, slots=True)
class ForwardingChange:
    """The ordered set of cameras to forward changed."""
    room: int
    t_ms: int
    slots: tuple[int, ...]


Event = (SpeakingChange | FloorChange | SwitchDecision | ActiveSpeakersUpdate
         | PresentationChange | ForwardingChange)


E = TypeVar("E")


def many(cls: type[E], first: Sequence, *rest: Iterable) -> list[E]:
    """``[cls(*row) for row in zip(first, *rest)]``, one column per field (all of them, in
    order), for the hundreds of events of one kind a step can make at once (rankings,
    speaking changes). The generated ``__init__`` of a frozen dataclass sets each field
    through ``object.__setattr__`` (~1 us an event); here each column goes in through
    its slot, in C loops (~0.3 us an event). The events are the same."""
    fields = dataclasses.fields(cls)
    assert len(fields) == 1 + len(rest), f"{cls.__name__}: one column per field"
    events = list(map(object.__new__, repeat(cls, len(first))))
    for f, column in zip(fields, (first, *rest)):
        deque(map(getattr(cls, f.name).__set__, events, column), maxlen=0)
    return events

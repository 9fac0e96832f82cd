"""What the engine decides, in media time. Slots and rooms are engine indexes; the service
maps them to ids."""
from __future__ import annotations

from dataclasses import dataclass

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

"""Per-room and per-participant state as the decisions describe it, in the shape LiveKit's
SDKs give (``is_speaking``, ``audio_level``, ``last_spoke_at``), kept up to date by
``RoomView.apply`` for every event of the room, in order."""
from __future__ import annotations

from dataclasses import dataclass, field

from .api import speakerswitch_pb2 as pb


@dataclass
class Participant:
    participant_id: str
    is_speaking: bool = False
    level_dbov: float = -127.0
    """Smoothed level in dBov (-127..0), from the latest ActiveSpeakers ranking it was in."""
    last_spoke_at_ms: int | None = None
    """Media time it was last speaking (``is_speaking``): when it stopped, or while it
    speaks the latest event saying so. None while it has not spoken. (GetRoom's
    ``last_spoke_at_ms`` is the end of its last speech-like frame: earlier by the speaking
    hysteresis, a few hundred ms.)"""

    @property
    def audio_level(self) -> float:
        """The smoothed level as a linear amplitude, 0..1 (LiveKit's ``audioLevel``)."""
        return 10.0 ** (self.level_dbov / 20.0) if self.level_dbov > -127.0 else 0.0

    @property
    def last_spoke_at(self) -> int | None:
        return self.last_spoke_at_ms


@dataclass
class RoomView:
    room_id: str
    sequence: int = 0
    timestamp_ms: int = 0
    speaker_id: str = ""
    """Shown in the main video feed (empty: nobody)."""
    audio_speaker_id: str = ""
    """Holds the audio floor (the dominant speaker)."""
    presenter_id: str = ""
    forwarding: list[str] = field(default_factory=list)
    active_speakers: list[Participant] = field(default_factory=list)
    participants: dict[str, Participant] = field(default_factory=dict)
    closed: bool = False

    def participant(self, participant_id: str) -> Participant:
        p = self.participants.get(participant_id)
        if p is None:
            p = self.participants[participant_id] = Participant(participant_id)
        return p

    def apply(self, event: pb.RoomEvent) -> str:
        """Update from one event; returns which one it was (the ``event`` oneof's name)."""
        kind = event.WhichOneof("event") or ""
        if event.sequence:
            self.sequence = event.sequence
        self.timestamp_ms = max(self.timestamp_ms, event.timestamp_ms)
        t = event.timestamp_ms
        if kind == "switch":
            self.speaker_id = event.switch.speaker_id
            self.audio_speaker_id = event.switch.audio_speaker_id
        elif kind == "floor_change":
            self.audio_speaker_id = event.floor_change.speaker_id
        elif kind == "speaking_changed":
            sc = event.speaking_changed
            p = self.participant(sc.participant_id)
            if sc.speaking or p.is_speaking:  # a start, or the end of its speech
                p.last_spoke_at_ms = t
            p.is_speaking = sc.speaking
        elif kind == "active_speakers":
            ranked = []
            for r in event.active_speakers.speakers:
                p = self.participant(r.participant_id)
                p.level_dbov, p.is_speaking = r.level_dbov, r.speaking
                if r.speaking:
                    p.last_spoke_at_ms = t
                ranked.append(p)
            self.active_speakers = ranked
        elif kind == "forwarding":
            self.forwarding = list(event.forwarding.participant_ids)
        elif kind == "presentation":
            self.presenter_id = event.presentation.presenter_id
        elif kind == "room_closed":
            self.closed = True
        elif kind == "snapshot":
            self._restore(event.snapshot)
        return kind

    def _restore(self, s: pb.RoomState) -> None:
        self.sequence, self.timestamp_ms = s.sequence, s.timestamp_ms
        self.speaker_id, self.audio_speaker_id = s.speaker_id, s.audio_speaker_id
        self.presenter_id, self.forwarding = s.presenter_id, list(s.forwarding)
        self.participants = {}
        for ps in s.participants:
            p = self.participant(ps.participant_id)
            p.is_speaking, p.level_dbov = ps.speaking, ps.level_dbov
            if ps.HasField("last_spoke_at_ms"):
                p.last_spoke_at_ms = ps.last_spoke_at_ms
        self.active_speakers = [self.participant(r.participant_id)
                                for r in s.active_speakers]
